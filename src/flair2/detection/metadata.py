"""The 45-value aerial metadata of a sliding window: its position plus the area's flight.

Training reads each patch's metadata from the dataset's JSON (see
:mod:`flair2.data.metadata`); a whole-area raster has no such record, so one is
built per window: the position is the window centre, converted to Lambert-93
(EPSG:2154) metres, the frame the encoding was trained on; date, time and camera
are the flight's, given once for the area (:class:`AreaMetadata`).

Altitude (``patch_centroid_z`` in training) is the terrain altitude above sea
level, 0–3165 m. The aerial raster's elevation band cannot supply it as such:
DATA-FORMAT.md describes it as 8-bit at about 0.2 m per unit, so at most 51 m,
a height above ground (a normalised surface model) rather than an altitude. Hence:

- ``altitude`` set (the recommended way): used for every window. Within an area of
  a few kilometres the terrain varies by tens of metres, under 0.01 of the encoded
  value (altitude / 3164.9).
- ``altitude`` null: each window's altitude is derived from its elevation band by
  :func:`band_elevation`, ``elevation_offset + elevation_scale × median(band)``,
  which is meaningful when band 5 holds an altitude on a known scale (a DEM
  band, or a FLAIR band with the area's base altitude as ``elevation_offset``).
  With the defaults (scale 0.2, offset 0) it is the height above ground.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform

from flair2.config import MonthEncoding
from flair2.data.metadata import encode_metadata
from flair2.detection.sentinel import as_crs
from flair2.errors import ConfigError, DataError
from flair2.formats import flight_date, flight_time

#: The CRS of the position encoding: Lambert-93 metres.
LAMBERT93 = CRS.from_epsg(2154)
#: Altitudes accepted, metres (the Dead Sea shore to above Mont Blanc).
_ALTITUDE_RANGE = (-500.0, 9000.0)


def _fail(key: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"config key 'metadata.{key}': expected {expected}, got {value!r}")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class AreaMetadata:
    """The flight of an area: what every window's metadata shares.

    Attributes:
        date: flight date, ``YYYY-MM-DD`` (its year, month and day are encoded).
        time: flight time of day, ``HHhMM``; default ``12h00``, mid-flight for
            the day-time surveys of the dataset.
        camera: camera name; only whether it contains ``UCE`` is encoded. Default
            ``UCE-M3-f100-s06``, the camera of most of the dataset.
        altitude: terrain altitude above sea level, metres; null derives it per
            window from the elevation band (see the module docstring).
        elevation_scale: metres per unit of the elevation band (DATA-FORMAT.md:
            about 0.2), used when ``altitude`` is null.
        elevation_offset: metres added to the scaled band, same use.

    Raises:
        ConfigError: a value is malformed (the message names ``metadata.<key>``).
    """

    date: str
    time: str = "12h00"
    camera: str = "UCE-M3-f100-s06"
    altitude: float | None = None
    elevation_scale: float = 0.2
    elevation_offset: float = 0.0

    def __post_init__(self) -> None:
        try:
            flight_date(self.date)
        except (ValueError, AttributeError):
            raise _fail("date", self.date, "a date YYYY-MM-DD such as 2021-05-05") from None
        try:
            flight_time(self.time)
        except (ValueError, AttributeError):
            raise _fail("time", self.time, "a time of day HHhMM such as 10h45") from None
        if not isinstance(self.camera, str) or not self.camera.strip():
            raise _fail("camera", self.camera, "a camera name such as UCE-M3-f100-s06")
        if self.altitude is not None:
            low, high = _ALTITUDE_RANGE
            if not _finite(self.altitude) or not low <= self.altitude <= high:
                raise _fail("altitude", self.altitude, f"metres in [{low:g}, {high:g}] or null")
        if not _finite(self.elevation_scale) or self.elevation_scale <= 0:
            raise _fail("elevation_scale", self.elevation_scale, "metres per unit, > 0")
        if not _finite(self.elevation_offset):
            raise _fail("elevation_offset", self.elevation_offset, "metres, a finite number")


def band_elevation(
    band: np.ndarray, meta: AreaMetadata, valid: np.ndarray | None = None
) -> float | None:
    """A window's altitude from its elevation band: offset + scale × median.

    The median, not the mean, so that buildings and trees of a surface model
    move it little.

    Args:
        band: (H, W) raw values of the window's elevation band.
        meta: gives ``elevation_scale`` and ``elevation_offset``.
        valid: optional bool (H, W), False on nodata pixels.

    Returns:
        Metres, or None when no pixel is valid.
    """
    values = np.asarray(band)
    if valid is not None:
        values = values[np.asarray(valid, dtype=bool)]
    if values.size == 0:
        return None
    return meta.elevation_offset + meta.elevation_scale * float(np.median(values))


def to_lambert93(x: float, y: float, crs: Any) -> tuple[float, float]:
    """A point of ``crs`` in Lambert-93 metres.

    Raises:
        DataError: the CRS is unknown or the point has no Lambert-93 position.
    """
    source = as_crs(crs)
    if source == LAMBERT93:
        return float(x), float(y)
    (lx,), (ly,) = warp_transform(source, LAMBERT93, [x], [y])
    if not (math.isfinite(lx) and math.isfinite(ly)):
        raise DataError(f"point ({x}, {y}) of {source} has no Lambert-93 position")
    return float(lx), float(ly)


def window_metadata(
    meta: AreaMetadata,
    x: float,
    y: float,
    crs: Any,
    elevation: float | None = None,
    month_encoding: MonthEncoding = "reference",
) -> np.ndarray:
    """The encoded metadata of one window, as training encodes a patch's record.

    Args:
        meta: the area's flight.
        x: the window centre's x (easting) in ``crs``.
        y: the window centre's y (northing) in ``crs``.
        crs: the aerial raster's CRS (anything rasterio's ``CRS.from_user_input`` takes).
        elevation: the window's altitude in metres (e.g. from :func:`band_elevation`);
            used only when ``meta.altitude`` is null.
        month_encoding: ``cfg.month_encoding``.

    Returns:
        float32 (45,): :func:`flair2.data.metadata.encode_metadata` of the record
        ``patch_centroid_x/y`` (Lambert-93), ``patch_centroid_z``, ``date``,
        ``time``, ``camera``.

    Raises:
        ConfigError: ``altitude`` is null and no elevation is given.
        DataError: the position or the elevation is not a finite number.
    """
    if not (_finite(x) and _finite(y)):
        raise DataError(f"window centre ({x!r}, {y!r}) is not a pair of finite coordinates")
    lx, ly = to_lambert93(x, y, crs)
    altitude = meta.altitude
    if altitude is None:
        if elevation is None:
            raise ConfigError(
                "config key 'metadata.altitude': null and no elevation derived for the window "
                f"at ({x:.1f}, {y:.1f}); set the area's altitude in metres"
            )
        if not _finite(elevation):
            raise DataError(
                f"window at ({x:.1f}, {y:.1f}): elevation {elevation!r} is not a finite number; "
                "check the elevation band or set metadata.altitude"
            )
        altitude = float(elevation)
    record = {
        "patch_centroid_x": lx,
        "patch_centroid_y": ly,
        "patch_centroid_z": float(altitude),
        "date": meta.date,
        "time": meta.time,
        "camera": meta.camera,
    }
    return encode_metadata(record, f"window at ({x:.1f}, {y:.1f})", month_encoding)
