"""The Sentinel-2 time series of a whole area, cropped for each sliding window.

Whole-area inference (``flair2 detect``) slides aerial windows over a large
raster; a U-T&T model also needs, per window, the Sentinel-2 crop that training
would have given a patch at the same place. :class:`AreaSentinel` opens a series
once, checks it, keeps it open and returns that crop, processed exactly as
:class:`flair2.data.sentinel.processor.SentinelProcessor` processes a training patch (same
functions: crop, cloud filter, period (monthly) means, scaling, day positions).

Two forms of series are accepted.

**A folder of per-date GeoTIFFs** (``source`` a folder):

- data files: every ``*.tif``/``*.tiff`` in the folder whose name does not contain
  ``mask`` (any case); ``num_channels_sat`` (10) bands each, B2, B3, B4, B5, B6,
  B7, B8, B8A, B11, B12, reflectance × 10 000 (uint16, as training), all on one
  grid (same CRS, transform, size, dtype), in any CRS (a UTM zone, typically);
- dates: the first ``YYYYMMDD`` or ``YYYY-MM-DD`` in each file name (a Sentinel-2
  product name such as ``S2A_MSIL2A_20210415T105021_..._T31UDP_....tif`` works);
  files are ordered by date, and two files of one date are an error;
- or a ``products`` text file: one file per line, in series order; a line is a
  file name (relative to the folder; ``.tif``/``.tiff`` may be left out) whose name
  holds the date, or a file name followed by whitespace and its date. Blank lines
  and lines starting with ``#`` are skipped. Only the listed files are used;
- cloud/snow masks (optional): per-date 2-band GeoTIFFs (cloud then snow
  probability, 0–100) on the same grid, matched to the data by the date in their
  name; taken from ``masks`` (a folder) when given, else from ``source/masks/``
  when it exists, else from the files of ``source`` whose name contains ``mask``.

**One array** (``source`` a ``.npy`` file): (T, 10, H, W), as training's
``*_data.npy``, with a JSON sidecar (``sidecar``; default: the same path with
``.json``)::

    {"crs": "EPSG:32631",
     "transform": [10.0, 0.0, 448640.0, 0.0, -10.0, 5415360.0],
     "dates": ["2021-01-03", "2021-01-18", ...],
     "masks": "area_masks.npy",
     "products": "area_products.txt"}

``transform`` is the affine transform ``[a, b, c, d, e, f]`` of pixel corners
(rasterio order: x = a·col + b·row + c, y = d·col + e·row + f; the 9 values of
``list(affine)`` are accepted too). Dates come from
``dates``, or from a products file in training's format (product names, the date
at characters 11–18): ``products``, else the sidecar's ``products``, else
``<name>_products.txt`` beside a ``<name>_data.npy``. Masks, (T, 2, H, W)
probabilities 0–100, come from ``masks``, else the sidecar's ``masks``, else
``<name>_masks.npy`` beside a ``<name>_data.npy``. Relative sidecar paths are
relative to the sidecar. Repeated dates are allowed here, as in training.

Without masks the cloud filter is skipped (a warning says so when
``filter_clouds`` is on).

How a window maps to the series: the window's centre is transformed into the
series' CRS and rounded to the nearest pixel corner (row, col); that is the
"centroid" of training's centroids JSON, and the crop is the ``sat_patch_size``
square around it (rows ``row - S//2 .. row - S//2 + S``), completed by edge
replication where it leaves the series, as in training. A window whose centre
lies outside the series is an error.

Reads go through a cache of tiles (``TILE`` pixels square, every date of data and
masks): neighbouring windows share tiles, so a tile is read about once and a
window costs a few copies. Instances keep their files open; they are not
thread-safe, but they pickle (without open files or cache, reopened on first
use), so each DataLoader worker gets its own.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from rasterio.warp import transform as warp_transform

from flair2.data.sentinel import (
    cloud_filter,
    crop_centered,
    day_positions,
    scale_series,
)
from flair2.data.sentinel.periods import Period, period_keys, period_means
from flair2.detection.sentinel_files import (
    SeriesFiles,
    as_crs,
    check_folder,
    check_npy,
    date_in_name,
)
from flair2.detection.tiles import TILE, TileReader
from flair2.errors import DataError
from flair2.settings import SentinelSettings

__all__ = ["TILE", "AreaSentinel", "Bounds", "as_crs", "date_in_name"]

logger = logging.getLogger(__name__)

Bounds = tuple[float, float, float, float]


class AreaSentinel:
    """A Sentinel-2 series of an area, opened and checked once, cropped per window.

    Build it with :meth:`open`; see the module docstring for the accepted layouts.

    Attributes:
        name: the source path, for messages.
        dates: acquisition dates (T,), in series order.
        crs, transform: the series grid (pixel corners).
        height, width: the series size in pixels.
    """

    def __init__(
        self, settings: SentinelSettings, files: SeriesFiles, cache_mb: float = 256.0
    ) -> None:
        self.name = files.name
        self.crs, self.transform = files.grid.crs, files.grid.transform
        self.height, self.width = files.grid.height, files.grid.width
        self.dates = tuple(files.dates)
        self.sat_patch_size = settings.sat_patch_size
        self.filter_clouds = settings.filter_clouds and files.masks is not None
        self.average_month = settings.average_month
        self.average_period: Period = settings.average_period
        self.cloud_proba_threshold = settings.cloud_proba_threshold
        self.cloud_area_threshold = settings.cloud_area_threshold
        month, day = settings.ref_month, settings.ref_day
        self._ref = datetime.date(settings.ref_year, month, day)
        self.sen2_scaling = settings.sen2_scaling
        self.sat_mean = settings.sat_mean
        self.sat_std = settings.sat_std
        self._positions = day_positions(self.dates, settings.ref_year, month, day)
        self._keys = period_keys(self.dates, self.average_period)
        self._inverse = ~self.transform
        self.reader = TileReader(
            files.data, files.masks, self.height, self.width, len(self.dates), cache_mb
        )

    # -- opening ------------------------------------------------------------

    @classmethod
    def open(
        cls,
        source: str | Path,
        settings: SentinelSettings,
        *,
        masks: str | Path | None = None,
        products: str | Path | None = None,
        sidecar: str | Path | None = None,
        cache_mb: float = 256.0,
    ) -> AreaSentinel:
        """Open and check a series: a folder of per-date GeoTIFFs or a ``.npy`` array.

        Every file is opened and its header checked, and the last block of every
        GeoTIFF decoded (which catches truncated files); pixel data is read later,
        per window.

        Args:
            source: the folder, or the ``.npy`` (T, C, H, W) array.
            settings: crop size, bands, cloud filter, averaging, scaling and
                reference date, as in training.
            masks: cloud/snow masks: a folder (folder form) or a ``.npy`` (T, 2, H, W).
            products: the products list (see the module docstring for each form).
            sidecar: the JSON georeferencing of a ``.npy`` series.
            cache_mb: memory for the tiles read (``TILE`` pixels square, every date
                of data and masks); neighbouring windows share them, so each tile is
                read about once when the cache holds two rows of tiles across the
                area. 0 reads every window's box directly.

        Returns:
            The opened series.

        Raises:
            DataError: a file is missing, unreadable, truncated, on another grid
                (mis-georeferenced), has the wrong band count or dtype, or a date
                is missing, unparseable or repeated; the message names the file.
        """
        path = Path(source)
        masks_path = Path(masks) if masks is not None else None
        products_path = Path(products) if products is not None else None
        if path.is_dir():
            files = check_folder(path, settings.num_channels_sat, masks_path, products_path)
        elif path.suffix.lower() == ".npy":
            sidecar_path = Path(sidecar) if sidecar is not None else None
            files = check_npy(
                path, settings.num_channels_sat, sidecar_path, masks_path, products_path
            )
        elif not path.exists():
            raise DataError(
                f"{path}: Sentinel-2 series not found; give a folder of per-date GeoTIFFs "
                "or a .npy (T, 10, H, W) array"
            )
        else:
            raise DataError(
                f"{path}: not a Sentinel-2 series; give a folder of per-date GeoTIFFs "
                "or a .npy (T, 10, H, W) array with a JSON sidecar"
            )
        series = cls(settings, files, cache_mb)
        if settings.filter_clouds and not series.filter_clouds:
            logger.warning(
                "%s: no cloud/snow masks; every date is kept (filter_clouds needs masks)", path
            )
        logger.info(
            "Sentinel-2 series %s: %d dates (%s to %s), %d×%d px, %s",
            path,
            len(series.dates),
            min(series.dates),
            max(series.dates),
            series.width,
            series.height,
            series.crs,
        )
        return series

    # -- lifetime -----------------------------------------------------------

    def close(self) -> None:
        """Close the open files (they reopen on next use)."""
        self.reader.close()

    def __enter__(self) -> AreaSentinel:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"AreaSentinel({self.name!r}, {len(self.dates)} dates, "
            f"{self.width}×{self.height} px, {self.crs})"
        )

    # -- geometry -----------------------------------------------------------

    @property
    def bounds(self) -> Bounds:
        """(left, bottom, right, top) of the series in its own CRS."""
        xs, ys = self.transform @ (
            np.array([0, self.width, 0, self.width]),
            np.array([0, 0, self.height, self.height]),
        )
        return (float(np.min(xs)), float(np.min(ys)), float(np.max(xs)), float(np.max(ys)))

    def _pixels(self, xs: np.ndarray, ys: np.ndarray, crs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (row, col) of points given in ``crs``."""
        if crs is None:
            raise DataError(
                f"{self.name}: the windows have no CRS, so they cannot be placed on the "
                "Sentinel-2 series; assign the aerial raster its CRS (gdal_edit.py -a_srs ...)"
            )
        crs = as_crs(crs)
        if crs != self.crs:
            xs, ys = (np.asarray(v) for v in warp_transform(crs, self.crs, xs, ys))
        cols, rows = self._inverse @ (np.asarray(xs, float), np.asarray(ys, float))
        return np.asarray(rows, float), np.asarray(cols, float)

    def centroids(self, bounds_list: Sequence[Bounds], crs: Any) -> np.ndarray:
        """The (row, col) pixel corner nearest each window centre, int64 (N, 2).

        Args:
            bounds_list: windows (left, bottom, right, top) in ``crs``.
            crs: the windows' CRS (anything :func:`as_crs` accepts).

        Returns:
            Row and column of each window's crop centre; may lie outside the series.
        """
        b = np.asarray(bounds_list, dtype=float).reshape(-1, 4)
        rows, cols = self._pixels((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, crs)
        if not (np.isfinite(rows).all() and np.isfinite(cols).all()):
            raise DataError(f"{self.name}: a window centre has no position in {self.crs}")
        return np.floor(np.stack([rows, cols], axis=1) + 0.5).astype(np.int64)

    def covers(self, bounds: Bounds, crs: Any) -> bool:
        """Whether the rectangle ``bounds`` (in ``crs``) lies wholly inside the series.

        Its outline (21 points a side) is transformed, so a rotation between the
        two CRSs is accounted for. Windows whose centre is inside but whose crop
        leaves the series still work (edge-padded); see :meth:`window`.
        """
        left, bottom, right, top = bounds
        t = np.linspace(0.0, 1.0, 21)
        xs = np.concatenate([left + (right - left) * t, np.full(21, right)])
        xs = np.concatenate([xs, right - (right - left) * t, np.full(21, left)])
        ys = np.concatenate([np.full(21, top), top - (top - bottom) * t])
        ys = np.concatenate([ys, np.full(21, bottom), bottom + (top - bottom) * t])
        rows, cols = self._pixels(xs, ys, crs)
        inside = (rows >= 0) & (rows <= self.height) & (cols >= 0) & (cols <= self.width)
        return bool(np.isfinite(rows).all() and inside.all())

    # -- reading ------------------------------------------------------------

    def window(self, bounds: Bounds, crs: Any) -> tuple[np.ndarray, np.ndarray]:
        """The processed series of one aerial window; see :meth:`strip`."""
        return self.strip([bounds], crs)[0]

    def strip(self, bounds_list: Sequence[Bounds], crs: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        """The processed series of several aerial windows, reading their union once.

        For N windows, each file is read once (the box covering every crop)
        instead of N times: pass a row of windows, or a batch, for speed. The
        memory held is about T × 12 × box area × 2 bytes.

        Each result is what :class:`~flair2.data.sentinel.processor.SentinelProcessor` gives
        a training patch whose centroid is the window's (see the module
        docstring): cloud filter on the crop's masks, period means, scaling.

        Args:
            bounds_list: windows (left, bottom, right, top) in ``crs``.
            crs: the windows' CRS, e.g. the aerial raster's.

        Returns:
            Per window: (series float32 (T', C, S, S), positions int64 (T',)), T' the
            dates kept (or periods, with averaging), S = ``sat_patch_size``.

        Raises:
            DataError: a window's centre lies outside the series, or a read fails
                (the message names the source or the file).
        """
        if not len(bounds_list):
            return []
        cents = self.centroids(bounds_list, crs)
        outside = (
            (cents[:, 0] < 0)
            | (cents[:, 0] > self.height)
            | (cents[:, 1] < 0)
            | (cents[:, 1] > self.width)
        )
        if outside.any():
            i = int(np.argmax(outside))
            raise DataError(
                f"{self.name}: the window {tuple(round(v, 2) for v in bounds_list[i])} "
                f"({as_crs(crs)}) lies outside the Sentinel-2 series (its centre falls on "
                f"pixel {tuple(int(v) for v in cents[i])} of a {self.height}×{self.width} grid); "
                "give a series that covers the whole aerial raster"
            )
        s = self.sat_patch_size
        r0 = max(int(cents[:, 0].min()) - s // 2, 0)
        r1 = min(int(cents[:, 0].max()) - s // 2 + s, self.height)
        c0 = max(int(cents[:, 1].min()) - s // 2, 0)
        c1 = min(int(cents[:, 1].max()) - s // 2 + s, self.width)
        rows, cols = slice(r0, r1), slice(c0, c1)
        local = cents - np.array([r0, c0])
        all_dates = np.arange(len(self.dates))
        keeps: list[np.ndarray | None] = [None] * len(local)
        if self.filter_clouds:
            mask_box = self.reader.read("masks", rows, cols, all_dates)
            for i, centroid in enumerate(local):
                keep = cloud_filter(
                    crop_centered(mask_box, centroid, s),
                    self.cloud_proba_threshold,
                    self.cloud_area_threshold,
                )
                keeps[i] = None if keep.all() else np.flatnonzero(keep)
            del mask_box
        # Without the cache, only dates some window keeps are read; with it, tiles hold
        # every date already and copying them all is the cheaper way.
        needed = all_dates
        if self.reader.cache_bytes <= 0 and all(k is not None for k in keeps):
            needed = np.unique(np.concatenate([k for k in keeps if k is not None]))
        box = self.reader.read("data", rows, cols, needed)
        slot = np.full(len(self.dates), -1, dtype=np.intp)
        slot[needed] = np.arange(len(needed))
        return [self._process(box, centroid, keep, slot) for centroid, keep in zip(local, keeps)]

    def _process(
        self, box: np.ndarray, centroid: np.ndarray, kept: np.ndarray | None, slot: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One window's crop of the box, then SentinelProcessor's steps after its crop."""
        # kept is None only when every date was read, in order (see strip).
        times = slot[kept] if kept is not None else None
        series = crop_centered(box, centroid, self.sat_patch_size, times=times)
        positions, keys = self._positions, self._keys
        if kept is not None:
            positions, keys = positions[kept], keys[kept]
        else:
            positions = positions.copy()
        if self.average_month:
            series, positions = period_means(series, keys, None, self._ref, self.average_period)
        scaled = scale_series(
            series, self.sen2_scaling, self.average_month, self.sat_mean, self.sat_std
        )
        return scaled, positions
