"""The Sentinel-2 series of a patch: its zone's files, crop, cloud filter, periods, scaling.

:class:`SentinelProcessor` turns a zone's files and a patch centroid into the
model's series; the functions it is made of are public, for the patch view,
the statistics and the whole-area detection.
"""

from flair2.data.sentinel.augment import augment_dates
from flair2.data.sentinel.files import load_npy, read_products
from flair2.data.sentinel.operations import (
    cloud_cover,
    cloud_filter,
    crop_centered,
    day_positions,
    monthly_average,
    scale_series,
)
from flair2.data.sentinel.periods import period_keys, period_means
from flair2.data.sentinel.processor import SentinelProcessor

__all__ = [
    "SentinelProcessor",
    "augment_dates",
    "cloud_cover",
    "cloud_filter",
    "crop_centered",
    "day_positions",
    "load_npy",
    "monthly_average",
    "period_keys",
    "period_means",
    "read_products",
    "scale_series",
]
