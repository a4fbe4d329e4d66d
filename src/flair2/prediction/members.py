"""The members of an ensemble: each checkpoint's settings, patch size and weight.

A flair2 checkpoint brings the configuration it was trained with; a checkpoint
without one (the FLAIR #2 reference's) takes the command's ``--config``. Settings
of the run itself (:data:`RUN_KEYS`) always come from ``--config``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flair2.config import Config, config_from_dict
from flair2.errors import CheckpointError, ConfigError
from flair2.models.checkpoint_files import read_checkpoint_file
from flair2.training.task import stored_settings

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
    stored, size = stored_settings(raw)
    if stored is None:
        return cfg, None
    merged = stored
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
    return member, size


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
