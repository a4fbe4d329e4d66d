"""Operations on a Sentinel-2 series: day positions, crops, cloud filter, scaling.

Vectorised over dates: they run once per training sample. Departures from the
reference, each on purpose:

- a window that leaves the super-area is completed by edge replication, so every
  crop is ``size`` × ``size`` (the reference returned a smaller crop, which then
  could not be batched);
- when every date is cloudy, the least covered date is kept (the reference returned
  an empty series and monthly averaging failed).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence

import numpy as np

from flair2.config import Scaling
from flair2.data.sentinel.periods import in_year as _in_year
from flair2.data.sentinel.periods import monthly_average as monthly_average  # re-exported
from flair2.errors import DataError

logger = logging.getLogger(__name__)


def day_positions(
    dates: Sequence[datetime.date], ref_year: int, ref_month: int, ref_day: int
) -> np.ndarray:
    """Day positions of acquisitions relative to the reference date.

    Like the reference, the acquisition's year is replaced by ``ref_year`` before
    subtracting, so positions only depend on the day of the year.

    Args:
        dates: acquisition dates (T,).
        ref_year: year of the reference date; it also replaces each acquisition's year.
        ref_month: month of the reference date.
        ref_day: day of the month of the reference date.

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
    centroid: Sequence[int] | np.ndarray,
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
        mean: per-band means (C,), for ``standardize``.
        std: per-band standard deviations (C,), for ``standardize``.

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
