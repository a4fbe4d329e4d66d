"""Range and consistency checks of a configuration, run when it is loaded.

Each failure is a :class:`~flair2.errors.ConfigError` naming the key's dotted
path and what is wrong (:func:`flair2.schema.check`).
"""

from __future__ import annotations

import datetime
from typing import TYPE_CHECKING

from flair2.classes import CLASSES, NOMENCLATURES, canonical_class_name
from flair2.errors import ConfigError
from flair2.formats import PATCH_MULTIPLE, is_patch_multiple
from flair2.schema import check

if TYPE_CHECKING:
    from flair2.config import Config

#: Decoders that batch-normalise image-level pooled features: in training they need
#: batches of two or more samples.
POOLED_NORM_DECODERS = frozenset({"deeplabv3", "deeplabv3plus", "pan", "upernet"})


def check_patch_size(size: int | None, key: str = "patch_size") -> None:
    """An aerial patch (or window) size: null, or a multiple of 32 (the encoder's stride)."""
    if size is not None:
        check(is_patch_multiple(size), key, f"must be a multiple of {PATCH_MULTIPLE}, got {size}")


def validate(cfg: Config) -> Config:
    """Check ranges and consistency of a typed config; return it or raise ConfigError."""
    s = cfg.sat_patch_size
    check(
        s % 8 == 0 and 8 <= s <= 112,
        "sat_patch_size",
        f"must be a multiple of 8 in [8, 112], got {s}",
    )
    check(len(cfg.w_unet_utae) == 2, "w_unet_utae", "must be two weights [U-TAE, U-Net]")
    check(
        all(0 <= w < float("inf") for w in cfg.w_unet_utae),
        "w_unet_utae",
        "weights must be finite and >= 0",
    )
    check(0.0 <= cfg.drop_utae_modality <= 1.0, "drop_utae_modality", "must be in [0, 1]")
    check(cfg.geo_enc_size == 32, "geo_enc_size", "only 32 is supported (the reference encoding)")
    check(2 <= cfg.num_classes <= 19, "num_classes", f"must be in [2, 19], got {cfg.num_classes}")
    check(cfg.num_channels_aerial >= 1, "num_channels_aerial", "must be >= 1")
    check(cfg.num_channels_sat >= 1, "num_channels_sat", "must be >= 1")
    for key in ("num_epochs", "batch_size", "batch_size_inference", "gpus_per_node", "num_nodes"):
        check(getattr(cfg, key) >= 1, key, f"must be >= 1, got {getattr(cfg, key)}")
    check(cfg.num_workers >= 0, "num_workers", "must be >= 0")
    check(
        cfg.accumulate_grad_batches >= 1,
        "accumulate_grad_batches",
        f"must be >= 1, got {cfg.accumulate_grad_batches}",
    )
    check(cfg.aerial_lr_scale >= 0, "aerial_lr_scale", f"must be >= 0, got {cfg.aerial_lr_scale}")
    check(
        cfg.freeze_aerial_epochs >= 0,
        "freeze_aerial_epochs",
        f"must be >= 0, got {cfg.freeze_aerial_epochs}",
    )
    check(
        cfg.init_aerial_from is None or cfg.arch != "utae",
        "init_aerial_from",
        "the U-TAE model (arch: utae) has no aerial network to initialise",
    )
    check(cfg.lr > 0, "lr", f"must be > 0, got {cfg.lr}")
    check(cfg.progress_rate >= 1, "progress_rate", "must be >= 1")
    check(len(cfg.encoder_widths) >= 2, "encoder_widths", "needs at least two stages")
    check(
        len(cfg.decoder_widths) == len(cfg.encoder_widths),
        "decoder_widths",
        "must have as many entries as encoder_widths",
    )
    check(
        cfg.encoder_widths[-1] == cfg.decoder_widths[-1],
        "decoder_widths",
        "the last width must equal the last of encoder_widths",
    )
    check(len(cfg.out_conv) >= 1, "out_conv", "needs at least one width")
    check(
        cfg.out_conv[-1] == cfg.num_classes,
        "out_conv",
        f"the last value ({cfg.out_conv[-1]}) must equal num_classes ({cfg.num_classes})",
    )
    check(cfg.d_model % cfg.n_head == 0, "d_model", f"must be divisible by n_head ({cfg.n_head})")
    try:
        month, day = cfg.ref_month_day()
        datetime.date(cfg.ref_year, month, day)
    except ValueError:
        raise ConfigError(
            f"config key 'ref_date': expected MM-DD (e.g. 05-15), got {cfg.ref_date!r}"
        ) from None
    # Class weights: every model class named once (aliases accepted).
    names = CLASSES[: cfg.num_classes]
    seen: dict[str, str] = {}
    for key, pair in cfg.weights_aerial_satellite.items():
        canon = canonical_class_name(key)
        path = f"weights_aerial_satellite.{key}"
        check(canon in names, path, "unknown class; expected one of " + ", ".join(names))
        check(canon not in seen, path, f"class given twice (also as '{seen.get(canon)}')")
        check(len(pair) == 2, path, "must be [aerial weight, satellite weight]")
        check(all(w >= 0 for w in pair), path, "weights must be >= 0")
        seen[canon] = key
    missing = [n for n in names if n not in seen]
    check(not missing, "weights_aerial_satellite", "missing classes: " + ", ".join(missing))
    check(0.0 <= cfg.val_fraction < 1.0, "val_fraction", "must be in [0, 1)")
    # These decoders batch-normalise image-level pooled maps: one sample is not a batch.
    check(
        cfg.batch_size >= 2 or cfg.decoder_name not in POOLED_NORM_DECODERS,
        "batch_size",
        f"decoder_name '{cfg.decoder_name}' needs training batches of at least 2",
    )
    check_patch_size(cfg.patch_size)
    check(cfg.aerial_resolution > 0, "aerial_resolution", "must be > 0")
    check(cfg.sat_resolution > 0, "sat_resolution", "must be > 0")
    check(0 <= cfg.cloud_proba_threshold <= 100, "cloud_proba_threshold", "must be in [0, 100]")
    check(0.0 < cfg.cloud_area_threshold <= 2.0, "cloud_area_threshold", "must be in (0, 2]")
    if cfg.sen2_scaling == "standardize":
        for key in ("sat_mean", "sat_std"):
            vals = getattr(cfg, key)
            check(
                vals is not None and len(vals) == cfg.num_channels_sat,
                key,
                f"sen2_scaling 'standardize' needs {cfg.num_channels_sat} values "
                "(run `flair2 stats` or give them)",
            )
        check(all(v > 0 for v in cfg.sat_std or []), "sat_std", "must be > 0")
    check(
        0 <= cfg.checkpoint_decoder_blocks <= 5,
        "checkpoint_decoder_blocks",
        f"must be in [0, 5] (the Unet decoder's blocks), got {cfg.checkpoint_decoder_blocks}",
    )
    check(
        cfg.checkpoint_decoder_blocks == 0 or cfg.decoder_name == "unet",
        "checkpoint_decoder_blocks",
        f"needs decoder_name: unet, got '{cfg.decoder_name}'",
    )
    check(cfg.momentum >= 0, "momentum", "must be >= 0")
    check(cfg.weight_decay >= 0, "weight_decay", "must be >= 0")
    check(cfg.warmup_epochs >= 0, "warmup_epochs", "must be >= 0")
    check(cfg.early_stopping_patience >= 1, "early_stopping_patience", "must be >= 1")
    if cfg.gradient_clip_val is not None:
        check(cfg.gradient_clip_val > 0, "gradient_clip_val", "must be > 0")
    check_loss_weights(cfg.loss_weights)
    check(0.0 <= cfg.label_smoothing < 1.0, "label_smoothing", "must be in [0, 1)")
    check(0.0 <= cfg.sat_date_dropout < 1.0, "sat_date_dropout", "must be in [0, 1)")
    check(0 <= cfg.sat_date_jitter <= 60, "sat_date_jitter", "must be in [0, 60] days")
    check(
        cfg.average_period == "month" or cfg.average_month,
        "average_period",
        "only applies to averaged series: set average_month: true, or leave it 'month'",
    )
    if cfg.init_weights_classes is not None:
        check(
            cfg.init_weights_classes in NOMENCLATURES,
            "init_weights_classes",
            f"must be one of {', '.join(NOMENCLATURES)}, or null (from the head's size)",
        )
    if cfg.ema_decay is not None:
        check(0.0 < cfg.ema_decay < 1.0, "ema_decay", "must be in (0, 1), or null (off)")
    return cfg


#: Loss terms ``loss_weights`` may name (see :mod:`flair2.training.losses`).
LOSS_NAMES = ("ce", "dice", "lovasz")


def check_loss_weights(loss_weights: dict[str, float]) -> None:
    """Raise ConfigError for an unknown loss term, a negative or non-finite factor, or no term."""
    for name, factor in loss_weights.items():
        check(
            name in LOSS_NAMES,
            f"loss_weights.{name}",
            "unknown loss; choose among " + ", ".join(LOSS_NAMES),
        )
        check(0.0 <= factor < float("inf"), f"loss_weights.{name}", "must be finite and >= 0")
    check(
        any(f > 0 for f in loss_weights.values()),
        "loss_weights",
        "at least one loss needs a weight > 0 (e.g. {ce: 1.0})",
    )
