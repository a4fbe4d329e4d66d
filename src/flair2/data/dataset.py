"""The FLAIR #2 torch Dataset: one patch record → one sample dict of named tensors."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.errors import RasterioError
from torch.utils.data import Dataset

from flair2.classes import MAX_LABEL, labels_to_model
from flair2.config import Config
from flair2.data.augment import flip_rotate
from flair2.data.metadata import encode_metadata
from flair2.data.records import PatchRecord
from flair2.data.sentinel import SentinelProcessor
from flair2.errors import DataError

log = logging.getLogger(__name__)

METADATA_SIZE = 45


def read_raster(path: str | Path, *, bands: int, name: str) -> np.ndarray:
    """Read a whole uint8 GeoTIFF patch as (bands, H, W), checking band count and dtype.

    Args:
        path: the file.
        bands: expected band count.
        name: what the file is ("aerial patch", "mask"), for messages.

    Raises:
        DataError: unreadable, or wrong band count or dtype (the message names the file).
    """
    try:
        with rasterio.open(path) as src:
            if src.count != bands:
                raise DataError(f"{path}: {name} has {src.count} band(s), expected {bands}")
            if src.dtypes[0] != "uint8":
                raise DataError(f"{path}: {name} is {src.dtypes[0]}, expected uint8")
            return src.read()
    except RasterioError as exc:
        raise DataError(
            f"{path}: unreadable {name} ({exc}); re-extract the file or remove the patch"
        ) from None


def raster_size(path: str | Path) -> int:
    """Side in pixels of a square patch file (used to infer ``patch_size``)."""
    try:
        with rasterio.open(path) as src:
            height, width = src.height, src.width
    except RasterioError as exc:
        raise DataError(f"{path}: unreadable aerial patch ({exc})") from None
    if height != width:
        raise DataError(f"{path}: aerial patch is {height}×{width}, expected a square patch")
    return height


class FlairDataset(Dataset[dict[str, Any]]):
    """Samples of FLAIR #2 patches: aerial, labels, Sentinel-2 series, metadata.

    Args:
        records: the patches (from :func:`flair2.data.discovery.discover`).
        cfg: the configuration.
        patch_size: expected aerial size in pixels; a file of another size is an error.
        augment: apply random flips / rot90 (training).
        with_labels: read masks (train/validation; test when labels exist).
        with_sentinel: read the Sentinel-2 series (U-T&T); the aerial-only model skips it.

    Items are dicts as described in :mod:`flair2.data`: ``aerial`` uint8 (C, H, W),
    ``labels`` uint8 (H, W), ``sen2`` float32 (T, C, S, S), ``positions`` int64 (T,),
    ``metadata`` float32 (45,), ``patch_id``, ``domain``, ``zone``.
    """

    def __init__(
        self,
        records: list[PatchRecord],
        cfg: Config,
        *,
        patch_size: int,
        augment: bool = False,
        with_labels: bool = True,
        with_sentinel: bool = True,
    ) -> None:
        self.records = list(records)
        self.cfg = cfg
        self.patch_size = patch_size
        self.augment = augment
        self.with_labels = with_labels
        self.with_sentinel = with_sentinel
        self.sentinel = SentinelProcessor(cfg) if with_sentinel else None
        # Metadata is encoded once for the whole split: a broken record fails here,
        # in the main process, with the patch named — not later inside a worker.
        self.metadata = np.zeros((len(self.records), METADATA_SIZE), dtype=np.float32)
        if cfg.aerial_metadata:
            for i, rec in enumerate(self.records):
                self.metadata[i] = encode_metadata(
                    rec.metadata, rec.name, month_encoding=cfg.month_encoding
                )

    def __len__(self) -> int:
        return len(self.records)

    def read_aerial(self, rec: PatchRecord) -> np.ndarray:
        """The aerial patch as uint8 (C, H, W), size-checked."""
        img = read_raster(rec.aerial, bands=self.cfg.num_channels_aerial, name="aerial patch")
        if img.shape[1:] != (self.patch_size, self.patch_size):
            raise DataError(
                f"{rec.aerial}: aerial patch is {img.shape[1]}×{img.shape[2]}, expected "
                f"{self.patch_size}×{self.patch_size} like the other patches "
                "(config key 'patch_size')"
            )
        return img

    def read_labels(self, rec: PatchRecord, shape: tuple[int, int]) -> np.ndarray:
        """The mask as model indices, uint8 (H, W)."""
        if rec.label is None:
            raise DataError(f"{rec.aerial}: no mask for this patch")
        raw = read_raster(rec.label, bands=1, name="mask")[0]
        if raw.shape != shape:
            raise DataError(
                f"{rec.label}: mask is {raw.shape[0]}×{raw.shape[1]}, aerial patch is "
                f"{shape[0]}×{shape[1]}"
            )
        low, high = int(raw.min()), int(raw.max())
        if low < 1 or high > MAX_LABEL:
            raise DataError(
                f"{rec.label}: label values must be in 1–{MAX_LABEL}, found {low}–{high}"
            )
        return labels_to_model(raw, self.cfg.num_classes)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        aerial = self.read_aerial(rec)
        sample: dict[str, Any] = {
            "aerial": torch.from_numpy(aerial),
            "metadata": torch.from_numpy(self.metadata[index]),
            "patch_id": rec.patch_id,
            "domain": rec.domain,
            "zone": rec.zone,
        }
        if self.with_labels:
            sample["labels"] = torch.from_numpy(self.read_labels(rec, aerial.shape[1:]))
        if self.sentinel is not None:
            series, positions = self.sentinel(rec.sentinel, rec.centroid)
            sample["sen2"] = torch.from_numpy(series)
            sample["positions"] = torch.from_numpy(positions)
        if self.augment:
            sample = flip_rotate(sample, mode=self.cfg.augmentation_mode)
        return sample
