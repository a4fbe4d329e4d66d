"""The typed configuration schema: YAML loading, validation and ``--set`` overrides.

The schema is the reference ``flair-2-config.yml`` (a flat mapping plus a
``data:`` section of paths) extended with flair2's own keys. The reference file
loads unchanged and means the same. Every default lives in the dataclasses
below, and nowhere else.

Validation happens at load: an unknown key, a value of the wrong type or out of
range raises :class:`~flair2.errors.ConfigError` naming the key's dotted path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from flair2.classes import CLASSES, canonical_class_name
from flair2.config_checks import validate
from flair2.errors import ConfigError
from flair2.schema import apply_overrides, build_dataclass, load_yaml_file

#: Value sets of the keys the typed settings (:mod:`flair2.settings`) carry too.
Scaling = Literal["reference", "reflectance", "standardize"]
Period = Literal["month", "half_month"]
MonthEncoding = Literal["reference", "corrected"]
AugmentationMode = Literal["consistent", "reference"]
OptimizerName = Literal["sgd", "adamw"]
SchedulerName = Literal["none", "cosine", "plateau"]
Precision = Literal["32", "16-mixed", "bf16-mixed", "32-true"]


def _default_class_weights() -> dict[str, list[float]]:
    weights = {name: [1.0, 1.0] for name in CLASSES}
    weights["plowed land"] = [1.0, 0.0]
    weights["other"] = [0.0, 0.0]
    return weights


@dataclass
class DataConfig:
    """Dataset locations (the reference's ``data:`` section).

    Empty strings mean "not given". Train roots are needed to train, test roots
    to predict (labels only to score).
    """

    path_aerial_train: str = ""
    path_sen_train: str = ""
    path_labels_train: str = ""
    path_aerial_test: str = ""
    path_sen_test: str = ""
    path_labels_test: str = ""
    path_sp_centroids: str = ""
    path_metadata_aerial: str = ""

    def inputs(self) -> dict[str, str]:
        """Every path given, by its dotted key: what no output may replace or lie inside."""
        return {
            f"data.{f.name}": value
            for f in dataclasses.fields(self)
            if (value := getattr(self, f.name))
        }


@dataclass
class Config:
    """Every setting of a flair2 run. Field order follows the reference file.

    Keys marked "flair2" are additions to the reference schema.
    """

    data: DataConfig = field(default_factory=DataConfig)
    out_folder: str = "./flair2/"
    out_model_name: str = "flair-2-baseline"

    # Fusion
    sat_patch_size: int = 40
    w_unet_utae: list[float] = field(default_factory=lambda: [1.0, 1.0])
    drop_utae_modality: float = 0.0

    # Metadata and augmentation
    aerial_metadata: bool = True
    geo_enc_size: int = 32
    use_augmentation: bool = True

    # Sentinel-2 time-series filtering
    filter_clouds: bool = True
    average_month: bool = True

    # Per-class loss weights: class name -> [aerial (U-Net) weight, satellite (U-TAE) weight]
    weights_aerial_satellite: dict[str, list[float]] = field(default_factory=_default_class_weights)

    # Inputs
    num_classes: int = 13
    num_channels_aerial: int = 5
    num_channels_sat: int = 10

    # Training
    num_epochs: int = 100
    batch_size: int = 10
    batch_size_inference: int = 1
    lr: float = 0.001

    # Computation (Lightning Trainer)
    num_workers: int = 10
    accelerator: str = "gpu"
    gpus_per_node: int = 1
    num_nodes: int = 1
    strategy: str | None = None

    # U-TAE
    encoder_widths: list[int] = field(default_factory=lambda: [64, 64, 128, 128])
    decoder_widths: list[int] = field(default_factory=lambda: [64, 64, 128, 128])
    out_conv: list[int] = field(default_factory=lambda: [32, 13])
    str_conv_k: int = 4
    str_conv_s: int = 2
    str_conv_p: int = 1
    agg_mode: Literal["att_group", "att_mean", "mean"] = "att_group"
    encoder_norm: Literal["group", "batch", "instance"] = "group"
    n_head: int = 16
    d_model: int = 256
    d_k: int = 4
    ref_year: int = 2021
    ref_date: str = "05-15"
    pad_value: float = 0
    padding_mode: Literal["reflect", "zeros", "replicate", "circular"] = "reflect"

    # Tracking
    enable_progress_bar: bool = True
    progress_rate: int = 10

    # ---- flair2 additions -------------------------------------------------
    #: Model: U-T&T (aerial + Sentinel-2), aerial-only U-Net or Sentinel-2-only U-TAE.
    arch: Literal["utt", "unet", "utae"] = "utt"
    #: How U-T&T fuses the sources: "reference" (the FLAIR #2 additive early fusion),
    #: "gated" (its terms behind per-channel gates that start closed) or "late" (each
    #: source segments; per-class weighted geometric mean of their probabilities).
    fusion: Literal["reference", "gated", "late"] = "reference"
    #: Start the aerial network (and metadata MLP) from this checkpoint's (a U-Net's or
    #: U-T&T's); null: from ``encoder_weights``.
    init_aerial_from: str | None = None
    #: Learning rate of the aerial network's parameters, as a multiple of ``lr``.
    aerial_lr_scale: float = 1.0
    #: Keep the aerial network's weights fixed for the first N epochs.
    freeze_aerial_epochs: int = 0
    #: Which validation figure picks the best checkpoint (and stops early).
    checkpoint_monitor: Literal["val_loss", "val_miou"] = "val_loss"
    #: Optimiser step every N batches: effective batch = gpus_per_node × num_nodes ×
    #: batch_size × accumulate_grad_batches (BatchNorm still sees batch_size samples).
    accumulate_grad_batches: int = 1
    #: Seed of everything (domain split, weights, data order). The reference uses 2022.
    seed: int = 2022
    #: Fraction of the train folder's domains held out for validation (reference: 0.2).
    val_fraction: float = 0.2
    #: Explicit validation domains; when given, ``val_fraction`` is ignored.
    val_domains: list[str] | None = None
    #: Explicit training domains; default: every train domain not in validation.
    train_domains: list[str] | None = None
    #: Aerial encoder, any segmentation_models_pytorch encoder name.
    encoder_name: str = "resnet34"
    #: Encoder weights: null (random init), "imagenet" (needs internet) or a local file path.
    encoder_weights: str | None = None
    #: flair2: start training from another code's checkpoint (IGN's FLAIR-1 / FLAIR-INC,
    #: FLAIR-HUB, a bare smp state dict, flair2): what fits is loaded, the rest keeps its
    #: initialisation (:mod:`flair2.models.foreign`); not applied on ``--resume``. null = off.
    init_weights: str | None = None
    #: flair2: the nomenclature of ``init_weights``' classification head
    #: (``flair2.classes.NOMENCLATURES``); null = from its number of classes.
    init_weights_classes: str | None = None
    #: Aerial decoder (smp; ``flair2.models.networks.DECODERS``), fed with the fused encoder maps.
    decoder_name: Literal[
        "unet",
        "unetplusplus",
        "manet",
        "linknet",
        "fpn",
        "pspnet",
        "deeplabv3",
        "deeplabv3plus",
        "pan",
        "upernet",
        "segformer",
    ] = "unet"
    #: Predict with test-time augmentation (flips and 90° rotations), as ``predict --tta``.
    tta: bool = False
    #: Aerial patch size in pixels; null infers it from the first aerial file.
    patch_size: int | None = None
    #: Ground sampling distance of the aerial patches and of Sentinel-2, in metres.
    aerial_resolution: float = 0.2
    sat_resolution: float = 10.0
    #: Cloud/snow filter: a pixel counts as covered at this probability (0–100) ...
    cloud_proba_threshold: int = 60
    #: ... and a date is dropped when the covered fraction reaches this value.
    cloud_area_threshold: float = 0.5
    #: Sentinel-2 scaling: "reference" reproduces the reference exactly (divide by
    #: 65535 without monthly averaging, raw reflectance with it); "reflectance"
    #: divides by 10000 always; "standardize" uses ``sat_mean``/``sat_std``.
    sen2_scaling: Scaling = "reference"
    sat_mean: list[float] | None = None
    sat_std: list[float] | None = None
    #: Aerial metadata month encoding: "reference" (a constant, as checkpoints were
    #: trained) or "corrected" (sin/cos of 2π(month−1)/12).
    month_encoding: MonthEncoding = "reference"
    #: Augmentation: "consistent" flips/rotates the Sentinel-2 crop with the aerial
    #: patch; "reference" transforms only the aerial patch and mask, as the reference.
    augmentation_mode: AugmentationMode = "consistent"
    #: Skip patches with missing or broken files (counted in a warning) instead of failing.
    skip_invalid_patches: bool = False
    #: Optimiser, schedule and training options.
    optimizer: OptimizerName = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    scheduler: SchedulerName = "none"
    warmup_epochs: int = 0
    gradient_clip_val: float | None = None
    precision: Precision = "32"
    #: Speed options (see bench/README.md): keep the aerial U-Net's activations in
    #: channels-last memory order (faster convolutions on recent CPUs and GPUs): true,
    #: false, or "auto": in prediction and detection, not in training (where it was
    #: slower on a CPU and mixed on a GPU) ...
    channels_last: bool | Literal["auto"] = "auto"
    #: ... and compile the aerial U-Net with ``torch.compile`` (static shapes; the first
    #: batch waits for the compiler; the U-TAE stays eager: see bench/README.md).
    compile_model: bool = False
    #: Training memory: the last blocks of the U-Net decoder (decoder_name unet, 0–5) are
    #: recomputed in backward instead of stored (same numbers; see
    #: flair2/models/memory.py).
    checkpoint_decoder_blocks: int = 0
    early_stopping_patience: int = 30
    #: Limit the number of batches per epoch (fraction or count; null = all).
    limit_train_batches: float | None = None
    limit_val_batches: float | None = None
    #: DataLoader options.
    pin_memory: bool = True
    persistent_workers: bool = False
    # Winners' techniques: losses, Sentinel-2 augmentation, weight averaging
    #: Loss terms summed on each branch (U-Net and U-TAE auxiliary head), each with the
    #: branch's class weights: "ce" (weighted cross-entropy, the reference's loss),
    #: "dice", "lovasz" (segmentation_models_pytorch); a missing term counts 0.
    loss_weights: dict[str, float] = field(
        default_factory=lambda: {"ce": 1.0, "dice": 0.0, "lovasz": 0.0}
    )
    #: Label smoothing of the cross-entropy term, in [0, 1).
    label_smoothing: float = 0.0
    #: Training only (with ``use_augmentation``): probability of dropping each date of
    #: the Sentinel-2 series (one date is always kept) ...
    sat_date_dropout: float = 0.0
    #: ... and the largest random shift, in days, added to each date's position.
    sat_date_jitter: int = 0
    #: Period of the Sentinel-2 means with ``average_month``: "month" or "half_month".
    average_period: Period = "month"
    #: Exponential moving average of the weights (e.g. 0.999): validated, checkpointed
    #: and predicted with; null = off.
    ema_decay: float | None = None
    #: Ramp the average's decay up with the step count, min(ema_decay, (1 + n) / (10 + n))
    #: (timm's warm-up), so that a short run does not keep its initial weights.
    ema_warmup: bool = True

    # -----------------------------------------------------------------------
    def class_weights(self) -> tuple[list[float], list[float]]:
        """Per-class loss weights in model-index order: (aerial, satellite)."""
        by_name = {canonical_class_name(k): v for k, v in self.weights_aerial_satellite.items()}
        names = CLASSES[: self.num_classes]
        aerial = [float(by_name[n][0]) for n in names]
        satellite = [float(by_name[n][1]) for n in names]
        return aerial, satellite

    def with_sentinel(self) -> bool:
        """Whether the model reads the Sentinel-2 series (U-T&T and U-TAE)."""
        return self.arch in ("utt", "utae")

    def ref_month_day(self) -> tuple[int, int]:
        """The reference date as (month, day)."""
        month, day = self.ref_date.split("-")
        return int(month), int(day)

    def channels_last_for(self, stage: Literal["fit", "predict"]) -> bool:
        """Whether the aerial U-Net runs channels-last in training or in prediction."""
        if self.channels_last == "auto":
            return stage == "predict"
        return bool(self.channels_last)

    def output_dir(self) -> Path:
        """``out_folder/out_model_name``: where a run writes everything."""
        return Path(self.out_folder) / self.out_model_name

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain Python data (YAML-serialisable)."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The resolved configuration as YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---------------------------------------------------------------------------
# Loading


def config_from_dict(raw: dict[str, Any], overrides: list[str] | None = None) -> Config:
    """Build and validate a Config from plain data (e.g. parsed YAML) plus overrides."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("config: the file must hold a YAML mapping of keys to values")
    raw = apply_overrides(dict(raw), overrides)
    return validate(build_dataclass(Config, raw))


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Load a YAML config file, apply ``--set`` overrides and validate it.

    Args:
        path: the YAML file (the reference ``flair-2-config.yml`` works as is).
        overrides: ``KEY=VALUE`` strings; dotted keys reach nested sections
            (``data.path_aerial_test=/x``); values are parsed as YAML.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: the file is missing or not YAML, or a key is unknown,
            mistyped or out of range (the message names it).
    """
    return load_yaml_file(path, "config", lambda raw: config_from_dict(raw, overrides))


def save_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from flair2.io import write_text_atomic

    write_text_atomic(path, cfg.to_yaml())
