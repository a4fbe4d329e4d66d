"""Sentinel-2 time series of one patch: crop, day positions, cloud filter, period means.

Every zone has one Sentinel-2 "super-area" (``*_data.npy``, (T, 10, H, W) uint16;
``*_masks.npy``, (T, 2, H, W) uint8 cloud and snow probabilities; ``*_products.txt``,
one product name per date). A patch's series is the ``sat_patch_size`` square crop
around its centroid, optionally without its cloudy dates and reduced to monthly (or
half-monthly) means (:mod:`flair2.data.sentinel_periods`).

This runs once per training sample, so the per-call work is vectorised over dates,
arrays are memory-mapped (only the crop window is read) and everything that depends
only on the zone (product dates, day positions, period groups) is computed once.

Departures from the reference, each on purpose:

- a window that leaves the super-area is completed by edge replication, so every
  crop is ``size`` × ``size`` (the reference returned a smaller crop, which then
  could not be batched);
- when every date is cloudy, the least covered date is kept (the reference returned
  an empty series and monthly averaging failed).
"""

from __future__ import annotations

import datetime
import functools
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from flair2.data.sentinel_periods import Period, period_keys, period_means
from flair2.data.sentinel_periods import in_year as _in_year
from flair2.data.sentinel_periods import monthly_average as monthly_average  # re-exported
from flair2.errors import DataError

if TYPE_CHECKING:
    from flair2.config import Config
    from flair2.data.records import SentinelFiles

logger = logging.getLogger(__name__)

#: Characters of a product name holding the acquisition date, YYYYMMDD.
_DATE_SLICE = slice(11, 19)

Scaling = Literal["reference", "reflectance", "standardize"]


# ---------------------------------------------------------------------------
# Products and day positions


def read_products(path: str | os.PathLike[str]) -> tuple[datetime.date, ...]:
    """Acquisition dates of a zone's ``*_products.txt``, one per line, in file order.

    The date is read from characters 11–18 (YYYYMMDD) of each product name, e.g.
    ``S2A_MSIL2A_20210415T105021_N0300_R051_T31UDP_20210415T135122`` → 2021-04-15.
    Blank lines at the end of the file are ignored. The result is cached per
    resolved path: all patches of a zone share the file.

    Args:
        path: the products file.

    Returns:
        One date per line.

    Raises:
        DataError: the file is missing or unreadable, or a line holds no valid date
            (the message names the file, the line number and the line).
    """
    return _read_products_cached(str(Path(path).resolve()))


@functools.lru_cache(maxsize=4096)
def _read_products_cached(path: str) -> tuple[datetime.date, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(
            f"{path}: Sentinel-2 products file not found; re-extract the zone's sen/ folder"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: cannot read the Sentinel-2 products file ({exc}); re-extract it"
        ) from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    dates = []
    for number, line in enumerate(lines, start=1):
        digits = line[_DATE_SLICE]
        try:
            if len(digits) != 8 or not digits.isdigit():
                raise ValueError
            date = datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
        except ValueError:
            raise DataError(
                f"{path}, line {number}: {line!r} is not a Sentinel-2 product name with the "
                "acquisition date YYYYMMDD at characters 11-18 "
                "(e.g. S2A_MSIL2A_20210415T105021_...); fix the line or re-extract the file"
            ) from None
        dates.append(date)
    return tuple(dates)


def day_positions(
    dates: Sequence[datetime.date], ref_year: int, ref_month: int, ref_day: int
) -> np.ndarray:
    """Day positions of acquisitions relative to the reference date.

    Like the reference, the acquisition's year is replaced by ``ref_year`` before
    subtracting, so positions only depend on the day of the year.

    Args:
        dates: acquisition dates (T,).
        ref_year, ref_month, ref_day: the reference date.

    Returns:
        int64 (T,): reference date − acquisition date, in days; positive before the
        reference date, negative after.
    """
    ref = datetime.date(ref_year, ref_month, ref_day)
    return np.array([(ref - _in_year(d, ref_year)).days for d in dates], dtype=np.int64)


# ---------------------------------------------------------------------------
# Crop


def crop_centered(
    array: np.ndarray,
    centroid: Sequence[int],
    size: int,
    times: np.ndarray | None = None,
) -> np.ndarray:
    """The ``size`` × ``size`` window of a (T, C, H, W) array around a centroid.

    Rows ``row - size//2 : row - size//2 + size`` (for the even sizes used, the
    reference's ``row - size/2 : row + size/2``), columns likewise. Only the window
    is read, so ``array`` may be a memory map. Where the window leaves the array,
    the missing rows and columns repeat the nearest edge values: the result is
    always full size.

    Args:
        array: (T, C, H, W), e.g. ``np.load(..., mmap_mode="r")``.
        centroid: (row, col) of the window centre. Window edges sit on pixel
            boundaries, so any centroid in [0, H] × [0, W] is inside the array.
        size: the window side, >= 1.
        times: optional indices along the first axis: only these dates are read.

    Returns:
        A new array (T, C, size, size) (T = ``len(times)`` when given), same dtype
        as ``array``.

    Raises:
        DataError: the centroid lies outside the array.
        ValueError: ``array`` is not 4-D or ``size`` < 1.
    """
    if array.ndim != 4:
        raise ValueError(f"expected a (T, C, H, W) array, got shape {array.shape}")
    if size < 1:
        raise ValueError(f"crop size must be >= 1, got {size}")
    height, width = array.shape[-2:]
    row, col = int(centroid[0]), int(centroid[1])
    r0, c0 = row - size // 2, col - size // 2
    r1, c1 = r0 + size, c0 + size
    a0, a1 = max(r0, 0), min(r1, height)
    b0, b1 = max(c0, 0), min(c1, width)
    if not (0 <= row <= height and 0 <= col <= width) or a1 <= a0 or b1 <= b0:
        raise DataError(
            f"centroid (row {row}, col {col}) lies outside the Sentinel-2 super-area of shape "
            f"{tuple(array.shape)}; check the centroids JSON entry of this patch"
        )
    if times is None:
        window = np.array(array[:, :, a0:a1, b0:b1])
    else:
        # Mixed advanced/basic indexing reads only the selected dates' windows and
        # already returns a fresh array.
        window = np.asarray(array[np.asarray(times, dtype=np.intp), :, a0:a1, b0:b1])
    pad = ((0, 0), (0, 0), (a0 - r0, r1 - a1), (b0 - c0, c1 - b1))
    if any(p for pair in pad for p in pair):
        return np.pad(window, pad, mode="edge")
    return window


# ---------------------------------------------------------------------------
# Cloud and snow filter


def cloud_cover(masks: np.ndarray, proba_threshold: int = 60) -> np.ndarray:
    """Fraction of a crop covered by clouds plus snow, per date.

    A pixel counts once for a cloud probability >= ``proba_threshold`` and once more
    for a snow probability >= ``proba_threshold`` (as the reference), so the cover
    can exceed 1.

    Args:
        masks: (T, 2, S, S) cloud and snow probabilities (0–100).
        proba_threshold: probability at which a pixel counts as covered.

    Returns:
        float64 (T,): covered pixel count / (S × S).
    """
    if masks.ndim != 4 or masks.shape[1] != 2:
        raise ValueError(f"expected (T, 2, H, W) cloud/snow masks, got shape {masks.shape}")
    area = masks.shape[2] * masks.shape[3]
    counts = np.count_nonzero(masks >= proba_threshold, axis=(1, 2, 3))
    return counts / float(area)


def cloud_filter(
    masks: np.ndarray, proba_threshold: int = 60, area_threshold: float = 0.5
) -> np.ndarray:
    """Which dates to keep: those whose cloud + snow cover is below ``area_threshold``.

    A date covered exactly at the threshold is dropped. When every date would be
    dropped, the least covered one (the first on ties) is kept so the series is
    never empty.

    Args:
        masks: (T, 2, S, S) cloud and snow probabilities (0–100).
        proba_threshold: see :func:`cloud_cover`.
        area_threshold: the cover at which a date is dropped.

    Returns:
        bool (T,): True for the dates to keep.
    """
    cover = cloud_cover(masks, proba_threshold)
    keep = cover < area_threshold
    if cover.size and not keep.any():
        best = int(np.argmin(cover))
        logger.debug(
            "every date is covered >= %s; keeping the least covered (date %d, cover %.3f)",
            area_threshold,
            best,
            cover[best],
        )
        keep[best] = True
    return keep


def _month_keys(dates: Sequence[datetime.date]) -> np.ndarray:
    """Month index ``year * 12 + month - 1`` of each date (T,), int64."""
    return period_keys(dates, "month")


#: Monthly means from month keys (:func:`~flair2.data.sentinel_periods.period_means`).
_monthly_from_keys = period_means


# ---------------------------------------------------------------------------
# Scaling


def scale_series(
    series: np.ndarray,
    mode: Scaling,
    averaged: bool,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> np.ndarray:
    """Scale a Sentinel-2 series to the values the model expects.

    Modes:
        ``reference``: as the reference's skimage ``img_as_float``: an unsigned
            integer series (not averaged) is divided by its dtype's maximum
            (65535 for uint16); an averaged (float) series is left as raw
            reflectance (0–10000). Reference checkpoints were trained that way.
        ``reflectance``: divided by 10000 (surface reflectance), averaged or not.
        ``standardize``: ``(x - mean[c]) / std[c]`` per band.

    Args:
        series: (T, C, S, S).
        mode: one of the modes above.
        averaged: whether ``series`` holds monthly means.
        mean, std: per-band statistics (C,), for ``standardize``.

    Returns:
        float32 (T, C, S, S).
    """
    if mode == "reference":
        if not averaged and np.issubdtype(series.dtype, np.unsignedinteger):
            return series.astype(np.float32) * np.float32(1.0 / np.iinfo(series.dtype).max)
        return series.astype(np.float32, copy=False)
    if mode == "reflectance":
        return series.astype(np.float32) * np.float32(1.0 / 10000.0)
    if mode == "standardize":
        channels = series.shape[1]
        if mean is None or std is None or len(mean) != channels or len(std) != channels:
            raise ValueError(f"standardize needs sat_mean and sat_std with {channels} values")
        m = np.asarray(mean, dtype=np.float32).reshape(1, channels, 1, 1)
        s = np.asarray(std, dtype=np.float32).reshape(1, channels, 1, 1)
        return (series.astype(np.float32) - m) / s
    raise ValueError(f"unknown Sentinel-2 scaling {mode!r}")


# ---------------------------------------------------------------------------
# Arrays on disk


def load_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """Memory-map a numeric ``.npy`` array, turning load failures into DataError."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: not found; re-extract the zone's Sentinel-2 files") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(
            f"{path} is not a readable .npy array ({exc}): re-extract it or remove the patch"
        ) from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "uif":
        kind = type(array).__name__ if not isinstance(array, np.ndarray) else array.dtype
        raise DataError(
            f"{path} is not a readable .npy array (expected a numeric array, got {kind}): "
            "re-extract it or remove the patch"
        )
    return array


class SentinelProcessor:
    """Turns a zone's Sentinel-2 files and a patch centroid into the model's series.

    Memory maps are opened lazily and cached per process (a bounded LRU: each map
    holds a file descriptor); pickling drops the caches, so an instance can be sent
    to DataLoader workers.

    Args:
        cfg: uses ``sat_patch_size``, ``filter_clouds``, ``average_month``,
            ``average_period``, ``cloud_proba_threshold``, ``cloud_area_threshold``, ``ref_year``,
            ``ref_date``, ``sen2_scaling``, ``sat_mean`` and ``sat_std``.
        max_open_arrays: how many memory maps to keep open.
    """

    def __init__(self, cfg: Config, max_open_arrays: int = 64) -> None:
        self.sat_patch_size = cfg.sat_patch_size
        self.filter_clouds = cfg.filter_clouds
        self.average_month = cfg.average_month
        self.average_period: Period = cfg.average_period
        self.cloud_proba_threshold = cfg.cloud_proba_threshold
        self.cloud_area_threshold = cfg.cloud_area_threshold
        self.ref_year = cfg.ref_year
        self.ref_month, self.ref_day = cfg.ref_month_day()
        self.sen2_scaling: Scaling = cfg.sen2_scaling
        self.sat_mean = tuple(cfg.sat_mean) if cfg.sat_mean is not None else None
        self.sat_std = tuple(cfg.sat_std) if cfg.sat_std is not None else None
        self.max_open_arrays = max_open_arrays
        self._arrays: OrderedDict[str, np.ndarray] = OrderedDict()
        # products path -> (T, day positions (T,), period keys (T,))
        self._zones: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_arrays"] = OrderedDict()
        state["_zones"] = {}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _array(self, path: Path) -> np.ndarray:
        key = os.fspath(path)
        array = self._arrays.get(key)
        if array is None:
            array = load_npy(path)
            self._arrays[key] = array
            if len(self._arrays) > self.max_open_arrays:
                self._arrays.popitem(last=False)
        else:
            self._arrays.move_to_end(key)
        return array

    def _zone_dates(self, path: Path) -> tuple[int, np.ndarray, np.ndarray]:
        """(T, day positions, period keys) of a products file, computed once per file."""
        key = os.fspath(path)
        cached = self._zones.get(key)
        if cached is None:
            dates = read_products(path)
            positions = day_positions(dates, self.ref_year, self.ref_month, self.ref_day)
            cached = (len(dates), positions, period_keys(dates, self.average_period))
            self._zones[key] = cached
        return cached

    def __call__(
        self, files: SentinelFiles, centroid: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The scaled series and day positions of one patch.

        Args:
            files: the zone's data, masks and products files.
            centroid: (row, col) of the patch centre in the super-area.

        Returns:
            (series float32 (T', C, S, S), positions int64 (T',)), T' the dates kept
            (or periods, with averaging).

        Raises:
            DataError: a file is missing, unreadable or inconsistent with the others,
                or the centroid lies outside the super-area.
        """
        data = self._array(files.data)
        masks = self._array(files.masks)
        count, positions, keys = self._zone_dates(files.products)
        if data.ndim != 4:
            raise DataError(
                f"{files.data}: expected a (T, C, H, W) Sentinel-2 array, got shape "
                f"{tuple(data.shape)}; re-extract the zone's Sentinel-2 files"
            )
        t, _, height, width = data.shape
        if masks.shape != (t, 2, height, width):
            raise DataError(
                f"{files.masks}: masks shape {tuple(masks.shape)} does not match data shape "
                f"{tuple(data.shape)} of {files.data} (expected {(t, 2, height, width)}); "
                "re-extract the zone's Sentinel-2 files"
            )
        if count != t:
            raise DataError(
                f"{files.products}: {count} products listed but {files.data} holds {t} dates "
                f"(shape {tuple(data.shape)}); re-extract the zone's Sentinel-2 files"
            )
        if t == 0:
            raise DataError(f"{files.data}: the Sentinel-2 series holds no date")
        try:
            kept = None
            if self.filter_clouds:
                mask_crop = crop_centered(masks, centroid, self.sat_patch_size)
                keep = cloud_filter(
                    mask_crop, self.cloud_proba_threshold, self.cloud_area_threshold
                )
                if not keep.all():
                    kept = np.flatnonzero(keep)
            # Only the kept dates are read: the crop read dominates the cost.
            series = crop_centered(data, centroid, self.sat_patch_size, times=kept)
        except DataError as exc:
            raise DataError(f"{files.data}: {exc}") from None
        except (OSError, ValueError) as exc:
            raise DataError(
                f"{files.data} is not a readable .npy array ({exc}): "
                "re-extract it or remove the patch"
            ) from None
        if kept is not None:
            positions, keys = positions[kept], keys[kept]
        else:
            positions = positions.copy()  # the zone's cached array must not leak out
        if self.average_month:
            ref = datetime.date(self.ref_year, self.ref_month, self.ref_day)
            series, positions = period_means(series, keys, None, ref, self.average_period)
        scaled = scale_series(
            series, self.sen2_scaling, self.average_month, self.sat_mean, self.sat_std
        )
        return scaled, positions
