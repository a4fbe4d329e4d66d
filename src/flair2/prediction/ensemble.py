"""Ensembles: the weighted mean of several checkpoints' class probabilities.

Each member is a checkpoint with its own model: a flair2 checkpoint brings the
configuration it was trained with (architecture, encoder, decoder, U-TAE,
Sentinel-2 preprocessing) and its patch size; a checkpoint without one (the
FLAIR #2 reference's) takes the command's ``--config``. Settings of the run
itself (data paths, devices, batch size, workers, precision: :data:`RUN_KEYS`)
always come from ``--config``.

Members whose inputs are prepared alike share one reading of the files; members
that need other inputs (another Sentinel-2 crop, scaling or filter, no
Sentinel-2 at all) get their own view of the same patches, in the same batch.
Every member averages its own test-time augmentation first (``tta``), then the
members are averaged with their weights, normalised to sum to 1.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import lightning.pytorch as pl
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from flair2.config import Config
from flair2.data.batch import normalize_batch
from flair2.data.datamodule import FlairDataModule, ShareSampler, collate_valid
from flair2.data.dataset import INVALID_KEY, SKIPPED_KEY, FlairDataset
from flair2.data.discovery import Splits
from flair2.data.records import PatchRecord
from flair2.errors import CheckpointError
from flair2.models import load_checkpoint_weights, set_channels_last
from flair2.prediction.members import input_signature, load_members
from flair2.training.task import SegmentationTask

log = logging.getLogger(__name__)


class ViewsDataset(Dataset):
    """The same patches read once per input view: item ``i`` is ``{"views": [...]}``."""

    def __init__(self, views: list[FlairDataset]) -> None:
        self.views = views

    def __len__(self) -> int:
        return len(self.views[0])

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"views": [view[index] for view in self.views]}


def collate_views(items: list[dict[str, Any]], pad_values: Sequence[float]) -> dict[str, Any]:
    """One batch per view of the patches readable in every view.

    Returns:
        ``{"patch_id": [...], "views": [batch, ...], "skipped": [...]}``; without
        ``views`` when no patch of the batch is readable (see
        :func:`~flair2.data.datamodule.collate_valid`).
    """
    skipped: list[str] = []
    readable = []
    for item in items:
        bad = next((v[INVALID_KEY] for v in item["views"] if INVALID_KEY in v), None)
        if bad is not None:
            skipped.append(bad)
        else:
            readable.append(item["views"])
    batch: dict[str, Any] = {"patch_id": []}
    if readable:
        views = [
            collate_valid([sample[i] for sample in readable], pad_value=pad)
            for i, pad in enumerate(pad_values)
        ]
        # Substituted samples are the same in every view: report them once.
        skipped.extend(views[0].pop(SKIPPED_KEY, []))
        for view in views[1:]:
            view.pop(SKIPPED_KEY, None)
        batch = {"patch_id": views[0]["patch_id"], "views": views}
    if skipped:
        batch[SKIPPED_KEY] = skipped
    return batch


class EnsembleDataModule(pl.LightningDataModule):
    """Prediction batches holding one view of the patches per input preparation.

    Args:
        cfg: the run's configuration (batch size, workers, devices).
        views: one dataset per distinct input preparation, over the same records.
        pad_values: the value padded dates take in each view's batches.
    """

    def __init__(self, cfg: Config, views: list[FlairDataset], pad_values: list[float]) -> None:
        super().__init__()
        self.cfg = cfg
        self.dataset = ViewsDataset(views)
        self.pad_values = pad_values
        self.allow_zero_length_dataloader_with_multiple_devices = True

    def predict_dataloader(self) -> DataLoader:
        """Unshuffled batches of every view, each patch on one process."""
        sampler = None
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            sampler = ShareSampler(
                self.dataset, num_replicas=trainer.world_size, rank=trainer.global_rank
            )
        workers = self.cfg.num_workers
        return DataLoader(
            self.dataset,
            batch_size=self.cfg.batch_size_inference,
            shuffle=False,
            sampler=sampler,
            num_workers=workers,
            collate_fn=functools.partial(collate_views, pad_values=self.pad_values),
            pin_memory=self.cfg.pin_memory and self.cfg.accelerator not in ("cpu",),
            persistent_workers=self.cfg.persistent_workers and workers > 0,
        )

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Scale each view's uint8 aerial batch to float on the device."""
        for view in batch.get("views", []):
            normalize_batch(view)
        return batch


class EnsembleTask(pl.LightningModule):
    """Predicts the weighted mean of its members' probabilities.

    Args:
        members: one task per checkpoint, weights loaded.
        weights: their shares (summing to 1).
        view_of: index of the input view each member reads.
    """

    def __init__(
        self, members: list[SegmentationTask], weights: list[float], view_of: list[int]
    ) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.weights = list(weights)
        self.view_of = list(view_of)
        #: Average each member over flips and 90° rotations first (set by predict).
        self.predict_tta = False

    def ensemble_probabilities(self, views: list[dict[str, Any]], tta: bool = False) -> Tensor:
        """Σ weight_m · softmax_m: (B, K, H, W) float32 probabilities."""
        total: Tensor | None = None
        members = cast(list[SegmentationTask], list(self.members))
        for member, weight, view in zip(members, self.weights, self.view_of, strict=True):
            probs = member.predict_probabilities(views[view], tta=tta) * weight
            total = probs if total is None else total + probs
        if total is None:
            raise ValueError("EnsembleTask: no member")
        return total

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Any:
        """``{"patch_id", "scores"}``: (B, K, H, W) ensemble probabilities; None if all skipped."""
        if "views" not in batch:  # every sample of the batch was unreadable and skipped
            return {"patch_id": [], "scores": None}
        probs = self.ensemble_probabilities(batch["views"], tta=self.predict_tta)
        return {"patch_id": batch["patch_id"], "scores": probs}


def build_ensemble(
    cfg: Config,
    checkpoints: Sequence[str | Path],
    records: list[PatchRecord],
    weights: Sequence[float] | None = None,
) -> tuple[EnsembleTask, EnsembleDataModule]:
    """The task and the data of an ensemble prediction over ``records``.

    Args:
        cfg: the run's configuration (``--config``).
        checkpoints: two or more checkpoint files (one is allowed too).
        records: the patches to predict.
        weights: one per checkpoint (normalised), or None for equal weights.

    Raises:
        ConfigError: bad weights.
        CheckpointError: a checkpoint that cannot be read or loaded, members of
            different classes, or one trained on patches of another size.
    """
    members = load_members(cfg, checkpoints, weights)
    views: list[FlairDataset] = []
    pad_values: list[float] = []
    signatures: dict[str, int] = {}
    tasks, view_of = [], []
    for member in members:
        datamodule = FlairDataModule(member.cfg, splits=Splits(test=records))
        data_size = datamodule.patch_size()
        if member.patch_size is not None and member.patch_size != data_size:
            raise CheckpointError(
                f"checkpoint {member.checkpoint} was trained on {member.patch_size} px patches "
                f"but the test patches are {data_size} px"
            )
        signature = input_signature(member.cfg, data_size)
        if signature not in signatures:
            datamodule.setup("predict")
            if datamodule.predict_dataset is None:
                raise RuntimeError("FlairDataModule.setup('predict') built no dataset")
            signatures[signature] = len(views)
            views.append(datamodule.predict_dataset)
            pad_values.append(float(member.cfg.pad_value))
        task = SegmentationTask(member.cfg, patch_size=data_size)
        load_checkpoint_weights(task.model, member.checkpoint)
        set_channels_last(task.model, member.cfg.channels_last_for("predict"))
        tasks.append(task)
        view_of.append(signatures[signature])
        log.info(
            "ensemble member %s: weight %.3f, %s %s/%s (%s), input view %d",
            member.checkpoint,
            member.weight,
            member.cfg.arch,
            member.cfg.encoder_name,
            member.cfg.decoder_name,
            "its own settings" if member.own_config else "settings of --config",
            view_of[-1],
        )
    ensemble = EnsembleTask(tasks, [m.weight for m in members], view_of)
    return ensemble, EnsembleDataModule(cfg, views, pad_values)
