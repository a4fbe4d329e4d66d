"""Sentinel-2 time series of one patch: crop, cloud filter, period means, scaling.

A patch's series is the ``sat_patch_size`` square crop around its centroid in its
zone's super-area (:mod:`~flair2.data.sentinel.files`), optionally without its
cloudy dates and reduced to monthly (or half-monthly) means
(:mod:`~flair2.data.sentinel.periods`), scaled for the model
(:mod:`~flair2.data.sentinel.operations`). Arrays are memory-mapped (only the crop
window is read) and everything that depends only on the zone (product dates, day
positions, period groups) is computed once.
"""

from __future__ import annotations

import datetime
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from flair2.config import Scaling
from flair2.data.records import SentinelFiles
from flair2.data.sentinel.files import load_npy, read_products, zone_shape_problems
from flair2.data.sentinel.operations import (
    cloud_filter,
    crop_centered,
    day_positions,
    scale_series,
)
from flair2.data.sentinel.periods import Period, period_keys, period_means
from flair2.errors import DataError
from flair2.settings import SentinelSettings


class SentinelProcessor:
    """Turns a zone's Sentinel-2 files and a patch centroid into the model's series.

    Memory maps are opened lazily and cached per process (a bounded LRU: each map
    holds a file descriptor); pickling drops the caches, so an instance can be sent
    to DataLoader workers.

    Args:
        settings: crop size, cloud filter, averaging, scaling and reference date
            (:meth:`SentinelSettings.from_config <flair2.settings.SentinelSettings.from_config>`).
        max_open_arrays: how many memory maps to keep open.
    """

    def __init__(self, settings: SentinelSettings, max_open_arrays: int = 64) -> None:
        self.sat_patch_size = settings.sat_patch_size
        self.filter_clouds = settings.filter_clouds
        self.average_month = settings.average_month
        self.average_period: Period = settings.average_period
        self.cloud_proba_threshold = settings.cloud_proba_threshold
        self.cloud_area_threshold = settings.cloud_area_threshold
        self.ref_year = settings.ref_year
        self.ref_month, self.ref_day = settings.ref_month, settings.ref_day
        self.sen2_scaling: Scaling = settings.sen2_scaling
        self.sat_mean = settings.sat_mean
        self.sat_std = settings.sat_std
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
        problems = zone_shape_problems(files, tuple(data.shape), tuple(masks.shape), count)
        if problems:
            file, message = problems[0]
            raise DataError(f"{file}: {message}; re-extract the zone's Sentinel-2 files")
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
