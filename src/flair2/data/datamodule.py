"""The Lightning DataModule: discovery, datasets and loaders for fit, validate and predict.

Under DDP (several processes), Lightning gives each process its share of the
training set (``DistributedSampler``: shuffled with the seed and the epoch,
padded with repeats so every process takes the same number of steps).
Validation and prediction get :class:`ShareSampler` here, which repeats no
patch: Lightning's default for validation repeats some (the metrics would count
them twice) and its prediction sampler fails when there are fewer patches than
processes (a resumed prediction with a few files left).
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Any

import lightning.pytorch as pl
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from flair2.config import Config
from flair2.data.batch import collate, normalize_batch
from flair2.data.dataset import INVALID_KEY, SKIPPED_KEY, FlairDataset, OnInvalid, raster_size
from flair2.data.discovery import Splits, discover
from flair2.errors import DataError
from flair2.formats import PATCH_MULTIPLE, is_patch_multiple
from flair2.settings import SampleSettings

log = logging.getLogger(__name__)


class ShareSampler(DistributedSampler):
    """Process ``rank``'s share of a dataset: indices ``rank, rank + n, rank + 2n...``.

    Every index goes to exactly one process and none is repeated, so the shares
    differ by at most one sample; a share may be empty when the dataset has
    fewer samples than processes. Being a ``DistributedSampler``, Lightning
    keeps it instead of injecting its own.

    Args:
        dataset: the dataset (only its length is used).
        num_replicas: number of processes.
        rank: this process's global rank.
    """

    def __init__(self, dataset: Any, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Any:
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


def collate_valid(samples: list[dict[str, Any]], pad_value: float = 0.0) -> dict[str, Any]:
    """:func:`~flair2.data.batch.collate` of the readable samples; skipped ones are listed.

    Placeholders of unreadable samples (``skip_invalid_patches``) are left out and
    their messages, with those of substituted samples, go to ``batch["skipped"]``.
    When nothing is readable the batch holds only ``patch_id`` (empty) and
    ``skipped``; the task passes over it.
    """
    skipped: list[str] = []
    valid = []
    for sample in samples:
        if INVALID_KEY in sample:
            skipped.append(sample[INVALID_KEY])
            continue
        skipped.extend(sample.pop(SKIPPED_KEY, []))
        valid.append(sample)
    batch: dict[str, Any] = collate(valid, pad_value=pad_value) if valid else {"patch_id": []}
    if skipped:
        batch[SKIPPED_KEY] = skipped
    return batch


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
        self.samples = SampleSettings.from_config(cfg)
        self.splits = splits
        self._patch_size: int | None = cfg.patch_size
        self.train_dataset: FlairDataset | None = None
        self.val_dataset: FlairDataset | None = None
        self.predict_dataset: FlairDataset | None = None
        # A prediction resumed with fewer patches left than processes gives some
        # processes nothing to do; Lightning refuses that unless told it is intended.
        self.allow_zero_length_dataloader_with_multiple_devices = True

    @property
    def with_sentinel(self) -> bool:
        """Whether samples carry the Sentinel-2 series (U-T&T and U-TAE use it)."""
        return self.cfg.with_sentinel()

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
            if not is_patch_multiple(size):
                raise DataError(
                    f"{first.aerial}: patch size {size} is not a multiple of {PATCH_MULTIPLE} "
                    "(the U-Net needs one)"
                )
            self._patch_size = size
        return self._patch_size

    def _on_invalid(self, train: bool) -> OnInvalid:
        if not self.cfg.skip_invalid_patches:
            return "raise"
        return "substitute" if train else "drop"

    def setup(self, stage: str | None = None) -> None:
        """Discover records and build the datasets of a stage (fit, validate, predict, test)."""
        stage = stage or "fit"
        splits = self._discover(stage)
        size = self.patch_size()
        if stage in ("fit", "validate"):
            self.train_dataset = FlairDataset(
                splits.train,
                self.samples,
                patch_size=size,
                augment=self.cfg.use_augmentation,
                with_sentinel=self.with_sentinel,
                on_invalid=self._on_invalid(train=True),
            )
            self.val_dataset = FlairDataset(
                splits.val,
                self.samples,
                patch_size=size,
                with_sentinel=self.with_sentinel,
                on_invalid=self._on_invalid(train=False),
            )
        if stage in ("predict", "test"):
            has_labels = all(r.label is not None for r in splits.test)
            self.predict_dataset = FlairDataset(
                splits.test,
                self.samples,
                patch_size=size,
                with_labels=has_labels and stage == "test",
                with_sentinel=self.with_sentinel,
                on_invalid=self._on_invalid(train=False),
            )

    def _world(self) -> tuple[int, int]:
        """(number of processes, global rank of this one): (1, 0) outside DDP."""
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def _loader(
        self,
        dataset: FlairDataset | None,
        *,
        batch_size: int,
        train: bool,
        sampler: Sampler[int] | None = None,
    ) -> DataLoader:
        if dataset is None:
            raise RuntimeError("setup() must run before asking for a loader")
        workers = self.cfg.num_workers
        # Each process sees its share of the set: ceil(N / processes) samples.
        per_process = math.ceil(len(dataset) / self._world()[0])
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=train and sampler is None,
            sampler=sampler,
            # Training drops a last incomplete batch (BatchNorm on one sample) unless the
            # process's share fits in one batch; prediction never does, so every test
            # patch gets its file (reference defect 13).
            drop_last=train and per_process > batch_size,
            num_workers=workers,
            collate_fn=functools.partial(collate_valid, pad_value=float(self.cfg.pad_value)),
            pin_memory=self.cfg.pin_memory and self.cfg.accelerator not in ("cpu",),
            persistent_workers=self.cfg.persistent_workers and workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches; a last short batch is dropped (BatchNorm on one sample)."""
        return self._loader(self.train_dataset, batch_size=self.cfg.batch_size, train=True)

    def val_dataloader(self) -> DataLoader:
        """Validation batches, split without repeats between processes so no patch counts twice."""
        if self.val_dataset is not None and len(self.val_dataset) == 0:
            raise DataError(
                "the validation split is empty: give val_domains, "
                "or more domains in the train folder"
            )
        sampler = None
        world, rank = self._world()
        if world > 1 and self.val_dataset is not None:
            if len(self.val_dataset) < world:
                # A process without a validation batch would leave the others waiting
                # for it in the metric synchronisation.
                raise DataError(
                    f"the validation split has {len(self.val_dataset)} patch(es), fewer than "
                    f"the {world} processes (gpus_per_node × num_nodes): give more "
                    "val_domains or use fewer devices"
                )
            # Without repeats: Lightning's default sampler pads the shares to equal
            # length with repeated patches, which the metrics would count twice.
            sampler = ShareSampler(self.val_dataset, num_replicas=world, rank=rank)
        return self._loader(
            self.val_dataset, batch_size=self.cfg.batch_size, train=False, sampler=sampler
        )

    def predict_dataloader(self) -> DataLoader:
        """Test batches of ``batch_size_inference``, each patch on one process, none dropped."""
        sampler = None
        world, rank = self._world()
        if world > 1 and self.predict_dataset is not None:
            # Each patch predicted by one process; a process may get none (nothing
            # synchronises processes while predicting, so it simply finishes early).
            sampler = ShareSampler(self.predict_dataset, num_replicas=world, rank=rank)
        return self._loader(
            self.predict_dataset,
            batch_size=self.cfg.batch_size_inference,
            train=False,
            sampler=sampler,
        )

    def test_dataloader(self) -> DataLoader:
        """The prediction loader: testing reads the same test split."""
        return self.predict_dataloader()

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Scale the uint8 aerial batch to float on the device."""
        if "aerial" not in batch:  # every sample was skipped (see collate_valid)
            return batch
        return normalize_batch(batch)
