"""The Lightning DataModule: discovery, datasets and loaders for fit, validate and predict."""

from __future__ import annotations

import functools
import logging
from typing import Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from flair2.config import Config
from flair2.data.batch import collate, normalize_batch
from flair2.data.dataset import FlairDataset, raster_size
from flair2.data.discovery import Splits, discover
from flair2.errors import DataError

log = logging.getLogger(__name__)


class FlairDataModule(pl.LightningDataModule):
    """Train/validation/test loaders of a FLAIR #2 dataset described by a config.

    Args:
        cfg: the configuration (data paths, batch sizes, workers, augmentation).
        splits: already discovered records; discovered from ``cfg`` when None.

    The aerial patch travels as uint8 and is scaled on the device
    (:meth:`on_after_batch_transfer`), which keeps workers and host copies cheap.
    """

    def __init__(self, cfg: Config, splits: Splits | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.splits = splits
        self._patch_size: int | None = cfg.patch_size
        self.train_dataset: FlairDataset | None = None
        self.val_dataset: FlairDataset | None = None
        self.predict_dataset: FlairDataset | None = None

    @property
    def with_sentinel(self) -> bool:
        """Whether samples carry the Sentinel-2 series (only U-T&T uses it)."""
        return self.cfg.arch == "utt"

    def _discover(self, stage: str) -> Splits:
        if self.splits is None:
            self.splits = Splits()
        if stage in ("fit", "validate") and not self.splits.train:
            found = discover(self.cfg, stages=("fit",))
            self.splits.train, self.splits.val = found.train, found.val
        if stage in ("predict", "test") and not self.splits.test:
            self.splits.test = discover(self.cfg, stages=("test",)).test
        return self.splits

    def patch_size(self) -> int:
        """The aerial patch size: from the config, else read from the first patch."""
        if self._patch_size is None:
            splits = self.splits
            groups = (splits.train, splits.val, splits.test) if splits else ()
            first = next((g[0] for g in groups if g), None)
            if first is None:
                raise DataError(
                    "cannot infer patch_size: no patch found; set config key 'patch_size'"
                )
            size = raster_size(first.aerial)
            if size % 32:
                raise DataError(
                    f"{first.aerial}: patch size {size} is not a multiple of 32 "
                    "(the U-Net needs one)"
                )
            self._patch_size = size
        return self._patch_size

    def setup(self, stage: str | None = None) -> None:
        """Discover records and build the datasets of a stage (fit, validate, predict, test)."""
        stage = stage or "fit"
        splits = self._discover(stage)
        size = self.patch_size()
        if stage in ("fit", "validate"):
            self.train_dataset = FlairDataset(
                splits.train,
                self.cfg,
                patch_size=size,
                augment=self.cfg.use_augmentation,
                with_sentinel=self.with_sentinel,
            )
            self.val_dataset = FlairDataset(
                splits.val, self.cfg, patch_size=size, with_sentinel=self.with_sentinel
            )
        if stage in ("predict", "test"):
            has_labels = all(r.label is not None for r in splits.test)
            self.predict_dataset = FlairDataset(
                splits.test,
                self.cfg,
                patch_size=size,
                with_labels=has_labels and stage == "test",
                with_sentinel=self.with_sentinel,
            )

    def _loader(self, dataset: FlairDataset | None, *, batch_size: int, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError("setup() must run before asking for a loader")
        workers = self.cfg.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train,
            # Training drops a last incomplete batch (BatchNorm on one sample); prediction
            # never does, so every test patch gets its file (reference defect 13).
            drop_last=train and len(dataset) > batch_size,
            num_workers=workers,
            collate_fn=functools.partial(collate, pad_value=float(self.cfg.pad_value)),
            pin_memory=self.cfg.pin_memory and self.cfg.accelerator not in ("cpu",),
            persistent_workers=self.cfg.persistent_workers and workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, batch_size=self.cfg.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        if self.val_dataset is not None and len(self.val_dataset) == 0:
            raise DataError(
                "the validation split is empty: give val_domains, "
                "or more domains in the train folder"
            )
        return self._loader(self.val_dataset, batch_size=self.cfg.batch_size, train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(
            self.predict_dataset, batch_size=self.cfg.batch_size_inference, train=False
        )

    def test_dataloader(self) -> DataLoader:
        return self.predict_dataloader()

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Scale the uint8 aerial batch to float on the device."""
        return normalize_batch(batch)
