"""Files → samples: discovery, Sentinel-2 processing, metadata encoding, datasets.

Sample contract (what a dataset item holds; the collate stacks them):

- ``aerial``: uint8 tensor (C, H, W), bands R, G, B, NIR, elevation. Kept uint8
  until it reaches the device; :func:`flair2.data.batch.normalize_batch`
  scales it to [0, 1] there.
- ``labels``: uint8 tensor (H, W), model indices 0 to num_classes−1 (absent at test
  time when no labels are given).
- ``sen2``: float32 tensor (T, 10, S, S), the scaled Sentinel-2 crop around the patch.
- ``positions``: int64 tensor (T,), day positions relative to the reference date.
- ``metadata``: float32 tensor (45,), the encoded aerial metadata (zeros when off).
- ``patch_id``: str, the 6 digits of ``IMG_<id>.tif``; ``domain``, ``zone``: str.

After collate: the same keys with a batch axis, time padded with ``pad_value``
to the longest series, plus ``pad_mask``: bool (B, T), True on padded dates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flair2.lazy import lazy_exports

#: Public name -> the module defining it; imported on first use (the data module
#: needs Lightning, which ``flair2 check-data`` does not).
_EXPORTS = {
    "FlairDataset": "flair2.data.dataset",
    "FlairDataModule": "flair2.data.datamodule",
    "discover": "flair2.data.discovery",
    "Splits": "flair2.data.discovery",
    "PatchRecord": "flair2.data.records",
    "SentinelFiles": "flair2.data.records",
    "collate": "flair2.data.batch",
    "normalize_batch": "flair2.data.batch",
    "SentinelProcessor": "flair2.data.sentinel",
    "encode_metadata": "flair2.data.metadata",
}

__all__ = [
    "FlairDataModule",
    "FlairDataset",
    "PatchRecord",
    "SentinelFiles",
    "SentinelProcessor",
    "Splits",
    "collate",
    "discover",
    "encode_metadata",
    "normalize_batch",
]

if TYPE_CHECKING:
    from flair2.data.batch import collate, normalize_batch
    from flair2.data.datamodule import FlairDataModule
    from flair2.data.dataset import FlairDataset
    from flair2.data.discovery import Splits, discover
    from flair2.data.metadata import encode_metadata
    from flair2.data.records import PatchRecord, SentinelFiles
    from flair2.data.sentinel import SentinelProcessor

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
