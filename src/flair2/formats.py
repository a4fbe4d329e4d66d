"""File names, tags and size rules of the FLAIR #2 layout and of flair2's outputs.

Every pattern that names a file (``IMG_<id>.tif``, ``MSK_<id>.tif``,
``PRED_<id>.tif``, ``PROB_<id>.tif``, the Sentinel-2 ``SEN2_*`` files), the tag
giving a prediction's value convention, the date formats of products and flights,
and the patch-size rule live here, once; readers and writers import them.
"""

from __future__ import annotations

import datetime
import re
from typing import Literal

#: ``.tif`` and ``.tiff``, any case, are both read.
TIF_SUFFIX = r"\.tiff?"
IMG_PATTERN = re.compile(rf"^IMG_(\d+){TIF_SUFFIX}$", re.IGNORECASE)
MSK_PATTERN = re.compile(rf"^MSK_(\d+){TIF_SUFFIX}$", re.IGNORECASE)
PRED_PATTERN = re.compile(rf"^PRED_(\d+){TIF_SUFFIX}$", re.IGNORECASE)
_KNOWN_PREFIX = re.compile(r"^(?:IMG|MSK|PRED|PROB)_", re.IGNORECASE)
_SUFFIX = re.compile(rf"{TIF_SUFFIX}$", re.IGNORECASE)

#: Domain folders of the official layout: ``D004_2021``.
DOMAIN_PATTERN = re.compile(r"^D\d{3}_\d{4}$")

#: The three files of a zone's Sentinel-2 series, ``SEN2_sp_<domain>-<zone>_<suffix>``.
SENTINEL_DATA = "data.npy"
SENTINEL_MASKS = "masks.npy"
SENTINEL_PRODUCTS = "products.txt"
SENTINEL_SUFFIXES = (SENTINEL_DATA, SENTINEL_MASKS, SENTINEL_PRODUCTS)
#: Glob of a zone's Sentinel-2 file with a given suffix (``*`` for any prefix).
SENTINEL_GLOB = "SEN2*_{suffix}"

#: GeoTIFF tag of a prediction's value convention, and its two values.
VALUES_TAG = "FLAIR2_VALUES"
VALUES_MODEL = "model"
VALUES_LABELS = "labels"
Values = Literal["model", "labels"]
#: Probabilities are written as round(p × this) in uint8.
PROBABILITY_SCALE = 255

#: Aerial patch and window sides are multiples of this (the encoders' downsampling).
PATCH_MULTIPLE = 32

_PRODUCT_DATE = slice(11, 19)
_FLIGHT_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_FLIGHT_TIME = re.compile(r"^(\d{1,2})h(\d{1,2})$")


def patch_id(name: str | int) -> str:
    """Reduce ``IMG_077413.tif``, ``PRED_077413.tiff``, ``077413`` … to the bare id ``077413``.

    Raises:
        ValueError: nothing is left, or the rest could leave its folder (``/``, ``..``).
    """
    text = _SUFFIX.sub("", _KNOWN_PREFIX.sub("", str(name).strip()))
    if not text or "/" in text or "\\" in text or text in {".", ".."}:
        raise ValueError(f"invalid patch id {name!r}: expected e.g. '077413'")
    return text


def image_stem(pid: str | int) -> str:
    """``IMG_<id>``, the key of a patch in the aerial metadata index."""
    return f"IMG_{patch_id(pid)}"


def sentinel_name(domain: str, zone: str, suffix: str) -> str:
    """``SEN2_sp_<domain>-<zone>_<suffix>``: a zone's Sentinel-2 file, as the archives name it."""
    return f"SEN2_sp_{domain}-{zone}_{suffix}"


def image_name(pid: str | int) -> str:
    """``IMG_<id>.tif``, the aerial patch's file name."""
    return f"IMG_{patch_id(pid)}.tif"


def mask_name(pid: str | int) -> str:
    """``MSK_<id>.tif``, the label mask's file name."""
    return f"MSK_{patch_id(pid)}.tif"


def prediction_name(pid: str | int) -> str:
    """``PRED_<id>.tif``, the class prediction's file name."""
    return f"PRED_{patch_id(pid)}.tif"


def probability_name(pid: str | int) -> str:
    """``PROB_<id>.tif``, the class probabilities' file name."""
    return f"PROB_{patch_id(pid)}.tif"


def is_patch_multiple(size: int) -> bool:
    """Whether ``size`` is a valid aerial patch side: a positive multiple of 32."""
    return size >= PATCH_MULTIPLE and size % PATCH_MULTIPLE == 0


def check_patch_multiple(size: int) -> None:
    """Raise ValueError unless ``size`` is a positive multiple of 32."""
    if not is_patch_multiple(size):
        raise ValueError(f"patch size must be a multiple of {PATCH_MULTIPLE}, got {size}")


def product_date(name: str) -> datetime.date:
    """Acquisition date of a Sentinel-2 product name: characters 11–18, YYYYMMDD.

    ``S2A_MSIL2A_20210415T105021_N0300_R051_T31UDP_20210415T135122`` → 2021-04-15.

    Raises:
        ValueError: the characters are not a valid date.
    """
    digits = name.strip()[_PRODUCT_DATE]
    if len(digits) != 8 or not digits.isdigit():
        raise ValueError(f"no date YYYYMMDD at characters 11-18 of {name!r}")
    return datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))


def flight_date(text: str) -> datetime.date:
    """A flight date ``YYYY-MM-DD`` of the aerial metadata.

    Raises:
        ValueError: not such a date.
    """
    match = _FLIGHT_DATE.match(text.strip())
    if match is None:
        raise ValueError(f"not a date YYYY-MM-DD: {text!r}")
    return datetime.date(*(int(g) for g in match.groups()))


def flight_time(text: str) -> tuple[int, int]:
    """A flight time of day ``HHhMM`` (e.g. ``10h45``) as (hours, minutes).

    Raises:
        ValueError: not such a time.
    """
    match = _FLIGHT_TIME.match(text.strip())
    hours, minutes = (int(g) for g in match.groups()) if match else (-1, -1)
    if not (0 <= hours <= 23 and 0 <= minutes <= 59):
        raise ValueError(f"not a time of day HHhMM: {text!r}")
    return hours, minutes
