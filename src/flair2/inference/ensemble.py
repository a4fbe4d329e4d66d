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
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from flair2.config import Config, config_from_dict
from flair2.data.batch import normalize_batch
from flair2.data.datamodule import FlairDataModule, ShareSampler, collate_valid
from flair2.data.dataset import INVALID_KEY, SKIPPED_KEY, FlairDataset
from flair2.data.discovery import Splits
from flair2.data.records import PatchRecord
from flair2.errors import CheckpointError, ConfigError
from flair2.models import load_checkpoint_weights, set_channels_last
from flair2.models.checkpoints import read_checkpoint_file
from flair2.task import SegmentationTask

log = logging.getLogger(__name__)

#: Keys of the run, not of a model: taken from ``--config`` for every member.
RUN_KEYS = (
    "data",
    "out_folder",
    "out_model_name",
    "num_workers",
    "accelerator",
    "gpus_per_node",
    "num_nodes",
    "strategy",
    "batch_size_inference",
    "enable_progress_bar",
    "progress_rate",
    "skip_invalid_patches",
    "pin_memory",
    "persistent_workers",
    "precision",
    "channels_last",
    "compile_model",
    "tta",
)
#: Keys that shape the model or its training but not the inputs of prediction:
#: members differing only in these share one reading of the files.
MODEL_ONLY_KEYS = frozenset(
    {
        "encoder_name",
        "encoder_weights",
        "decoder_name",
        "encoder_widths",
        "decoder_widths",
        "out_conv",
        "str_conv_k",
        "str_conv_s",
        "str_conv_p",
        "agg_mode",
        "encoder_norm",
        "n_head",
        "d_model",
        "d_k",
        "padding_mode",
        "w_unet_utae",
        "drop_utae_modality",
        "weights_aerial_satellite",
        "num_epochs",
        "batch_size",
        "lr",
        "optimizer",
        "momentum",
        "weight_decay",
        "scheduler",
        "warmup_epochs",
        "gradient_clip_val",
        "early_stopping_patience",
        "limit_train_batches",
        "limit_val_batches",
        "seed",
        "val_fraction",
        "val_domains",
        "train_domains",
        "use_augmentation",
        "augmentation_mode",
        "loss_weights",
        "label_smoothing",
        "sat_date_dropout",
        "sat_date_jitter",
        "ema_decay",
    }
)


@dataclass
class Member:
    """One checkpoint of an ensemble.

    Attributes:
        checkpoint: its file.
        weight: its share of the mean (the weights sum to 1).
        cfg: the model and input settings it is run with.
        patch_size: aerial patch side it was trained on (None when not recorded).
        own_config: True when ``cfg`` comes from the checkpoint, False from ``--config``.
    """

    checkpoint: Path
    weight: float
    cfg: Config
    patch_size: int | None
    own_config: bool


def normalised_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """``weights`` divided by their sum (equal weights when None).

    Raises:
        ConfigError: not one weight per checkpoint, a negative or non-finite weight,
            or weights that sum to 0.
    """
    if weights is None:
        return [1.0 / count] * count
    values = [float(w) for w in weights]
    if len(values) != count:
        raise ConfigError(
            f"--weights: {len(values)} value(s) for {count} checkpoint(s); give one per "
            "--checkpoint, in the same order"
        )
    if any(not math.isfinite(w) or w < 0 for w in values) or sum(values) <= 0:
        raise ConfigError(f"--weights: {values} must be finite, >= 0 and not all 0")
    total = sum(values)
    return [w / total for w in values]


def member_config(cfg: Config, raw: Mapping[str, Any], path: Path) -> tuple[Config, int | None]:
    """The settings a checkpoint is run with, and the patch size it was trained on.

    Returns:
        (its stored configuration with :data:`RUN_KEYS` from ``cfg``, its patch
        size), or ``(cfg, None)`` for a checkpoint that stores none.

    Raises:
        CheckpointError: the stored configuration is not valid here.
    """
    hparams = raw.get("hyper_parameters")
    stored = hparams.get("config") if isinstance(hparams, Mapping) else None
    if not isinstance(stored, Mapping):
        return cfg, None
    merged = dict(stored)
    command = cfg.to_dict()
    for key in RUN_KEYS:
        if key in command:
            merged[key] = command[key]
    try:
        member = config_from_dict(merged)
    except ConfigError as exc:
        raise CheckpointError(
            f"checkpoint {path}: the configuration it was trained with does not load here "
            f"({exc}); predict with it alone and a matching --config"
        ) from None
    size = hparams.get("patch_size") if isinstance(hparams, Mapping) else None
    return member, size if isinstance(size, int) else None


def load_members(
    cfg: Config, checkpoints: Sequence[str | Path], weights: Sequence[float] | None = None
) -> list[Member]:
    """Read each checkpoint's settings and check that the members can be averaged.

    Raises:
        ConfigError: bad ``weights``.
        CheckpointError: an unreadable checkpoint, or members (or ``--config``)
            with different numbers of classes; the message names the checkpoints.
    """
    shares = normalised_weights(weights, len(checkpoints))
    members = []
    for path, share in zip(checkpoints, shares, strict=True):
        path = Path(path)
        # Memory-mapped: only the stored settings are read here, not the tensors.
        raw = read_checkpoint_file(path, mmap=True)
        member_cfg, size = member_config(cfg, raw, path)
        members.append(Member(path, share, member_cfg, size, member_cfg is not cfg))
    first = members[0]
    for other in members[1:]:
        if other.cfg.num_classes != first.cfg.num_classes:
            raise CheckpointError(
                f"checkpoints {first.checkpoint} ({first.cfg.num_classes} classes) and "
                f"{other.checkpoint} ({other.cfg.num_classes} classes) cannot be averaged: "
                "an ensemble needs models of the same classes"
            )
    if first.cfg.num_classes != cfg.num_classes:
        raise CheckpointError(
            f"checkpoint {first.checkpoint} predicts {first.cfg.num_classes} classes but "
            f"--config says num_classes: {cfg.num_classes}"
        )
    return members


def input_signature(member_cfg: Config, patch_size: int) -> str:
    """Equal for members whose prediction inputs are prepared alike."""
    settings = {k: v for k, v in member_cfg.to_dict().items() if k not in MODEL_ONLY_KEYS}
    settings["patch_size"] = patch_size
    return json.dumps(settings, sort_keys=True, default=str)


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
    """

    def __init__(self, cfg: Config, views: list[FlairDataset]) -> None:
        super().__init__()
        self.cfg = cfg
        self.dataset = ViewsDataset(views)
        self.pad_values = [float(v.cfg.pad_value) for v in views]
        self.allow_zero_length_dataloader_with_multiple_devices = True

    def predict_dataloader(self) -> DataLoader:
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
        for member, weight, view in zip(self.members, self.weights, self.view_of, strict=True):
            probs = member.predict_probabilities(views[view], tta=tta) * weight
            total = probs if total is None else total + probs
        if total is None:
            raise ValueError("EnsembleTask: no member")
        return total

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> Any:
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
    task = EnsembleTask(tasks, [m.weight for m in members], view_of)
    return task, EnsembleDataModule(cfg, views)
