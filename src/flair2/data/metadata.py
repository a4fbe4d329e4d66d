"""The 45-value encoding of an aerial patch's metadata (position, altitude, camera, date).

Layout (float32):

====== ======================================================================
0–31   position: x then y (``patch_centroid_x``/``_y`` in metres / 1e8), each as
       8 sin/cos pairs (sin at even, cos at odd indices) at frequencies
       ``1 / 1e8 ** (2i/16)``, i = 0..7
32     altitude: ``patch_centroid_z / 3164.9099121094`` (the dataset's maximum)
33–34  camera: [1, 0] for a UCE camera, else [0, 1]
35–38  year: one-hot over 2018, 2019, 2020, 2021
39–44  sin/cos of month, day (2π·day/31) and time of day (2π·s/86400), each
       mapped from [−1, 1] to [0, 1]
====== ======================================================================

The reference encodes the month as the angle 2π·(month − 1/12), the same angle for
every integer month (a slip for 2π·(month − 1)/12), so its month values are
constant. Reference checkpoints were trained with that, so it is the default
(``month_encoding="reference"``); ``"corrected"`` gives the intended encoding.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from flair2.config import MonthEncoding
from flair2.errors import DataError
from flair2.formats import flight_date, flight_time

logger = logging.getLogger(__name__)

#: Length of the encoding.
METADATA_SIZE = 45
#: Length of the position part (the reference's ``geo_enc_size``).
GEO_ENC_SIZE = 32
#: The reference's scale of Lambert-93 coordinates (written ``10e7`` there).
_COORD_SCALE = 1e8
#: The dataset's highest patch altitude, metres: altitudes are divided by it.
_MAX_ALTITUDE = 3164.9099121094
#: Flight years with a one-hot slot.
_YEARS = (2018, 2019, 2020, 2021)

_FIX = "fix the record in the metadata JSON, or set aerial_metadata: false"

_warned_years: set[int] = set()


def _fail(name: str, field: str, value: Any, expected: str) -> DataError:
    return DataError(
        f"aerial metadata of {name}: field '{field}' is {value!r}, expected {expected}; {_FIX}"
    )


def _number(record: dict[str, Any], name: str, field: str) -> float:
    if field not in record:
        raise DataError(f"aerial metadata of {name}: field '{field}' is missing; {_FIX}")
    value = record[field]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(name, field, value, "a finite number")
    return float(value)


def _text(record: dict[str, Any], name: str, field: str) -> str:
    if field not in record:
        raise DataError(f"aerial metadata of {name}: field '{field}' is missing; {_FIX}")
    value = record[field]
    if not isinstance(value, str):
        raise _fail(name, field, value, "a string")
    return value


def _position(x: float, y: float) -> np.ndarray:
    """Sin/cos encoding of the scaled coordinates, (32,) float64."""
    half = GEO_ENC_SIZE // 2
    freqs = 1.0 / _COORD_SCALE ** (2.0 * np.arange(half // 2) / half)
    enc = np.empty(GEO_ENC_SIZE, dtype=np.float64)
    for offset, coord in ((0, x / _COORD_SCALE), (half, y / _COORD_SCALE)):
        enc[offset : offset + half : 2] = np.sin(coord * freqs)
        enc[offset + 1 : offset + half : 2] = np.cos(coord * freqs)
    return enc


def _year_slot(year: int) -> int:
    """Index of the one-hot slot of a flight year; the nearest year outside 2018–2021."""
    if year in _YEARS:
        return _YEARS.index(year)
    nearest = min(_YEARS, key=lambda y: abs(y - year))
    if year not in _warned_years:
        _warned_years.add(year)
        logger.warning(
            "aerial metadata: flight year %d has no slot in the year encoding (2018-2021); "
            "encoding it as %d",
            year,
            nearest,
        )
    return _YEARS.index(nearest)


def encode_metadata(
    record: dict[str, Any], name: str, month_encoding: MonthEncoding = "reference"
) -> np.ndarray:
    """Encode one patch's aerial metadata record as the reference's 45 values.

    A flight year outside 2018–2021 (which crashes the reference) takes the one-hot
    slot of the nearest of those years: the closest acquisition conditions the model
    has seen. One warning is logged per such year.

    Args:
        record: the patch's entry of the aerial metadata JSON; uses
            ``patch_centroid_x``, ``patch_centroid_y``, ``patch_centroid_z``,
            ``camera``, ``date`` (YYYY-MM-DD) and ``time`` (e.g. ``10h45``).
        name: the patch name (``IMG_077413``), for error messages.
        month_encoding: ``"reference"`` (the constant 2π·(month − 1/12), as
            checkpoints were trained) or ``"corrected"`` (2π·(month − 1)/12).

    Returns:
        float32 (45,), laid out as in the module docstring.

    Raises:
        DataError: a field is missing or malformed (the message names the patch,
            the field, the value and the fix).
        ValueError: ``month_encoding`` is unknown.
    """
    if month_encoding not in ("reference", "corrected"):
        raise ValueError(f"unknown month encoding {month_encoding!r}")
    if not isinstance(record, dict):
        raise DataError(
            f"aerial metadata of {name}: expected a JSON object, got {record!r}; {_FIX}"
        )
    x = _number(record, name, "patch_centroid_x")
    y = _number(record, name, "patch_centroid_y")
    z = _number(record, name, "patch_centroid_z")
    camera = _text(record, name, "camera")

    date_text = _text(record, name, "date")
    try:
        date = flight_date(date_text)
    except ValueError:
        raise _fail(name, "date", date_text, "a date YYYY-MM-DD such as 2021-05-05") from None

    time_text = _text(record, name, "time")
    try:
        hours, minutes = flight_time(time_text)
    except ValueError:
        raise _fail(name, "time", time_text, "a time of day like 10h45") from None

    if month_encoding == "reference":
        month_angle = 2 * math.pi * (date.month - 1 / 12)
    else:
        month_angle = 2 * math.pi * (date.month - 1) / 12
    day_angle = 2 * math.pi * date.day / 31
    time_angle = 2 * math.pi * (hours * 3600 + minutes * 60) / 86400
    cyclic = [f(a) for a in (month_angle, day_angle, time_angle) for f in (math.sin, math.cos)]

    enc = np.zeros(METADATA_SIZE, dtype=np.float64)
    enc[:GEO_ENC_SIZE] = _position(x, y)
    enc[32] = z / _MAX_ALTITUDE
    enc[33 if "UCE" in camera else 34] = 1.0
    enc[35 + _year_slot(date.year)] = 1.0
    # sin/cos live in [-1, 1]; the reference maps them to [0, 1].
    enc[39:45] = (np.asarray(cyclic) + 1.0) / 2.0
    return enc.astype(np.float32)
