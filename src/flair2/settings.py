"""Small typed settings handed to components, each built from the flat :class:`Config`.

The YAML stays flat (the reference's ``flair-2-config.yml`` loads unchanged), but a
component takes only what it uses: a Sentinel-2 processor gets
:class:`SentinelSettings`, a Lightning Trainer :class:`TrainerSettings`, and so on.
Defaults live in the schema (:mod:`flair2.config`, :mod:`flair2.detection.settings`),
never here: every field below is required, and ``from_config`` copies it.
"""

from __future__ import annotations

from dataclasses import dataclass

from flair2.config import (
    AugmentationMode,
    Config,
    DataConfig,
    MonthEncoding,
    OptimizerName,
    Period,
    Precision,
    Scaling,
    SchedulerName,
)


@dataclass(frozen=True)
class SentinelSettings:
    """How a patch's Sentinel-2 series is cropped, filtered, averaged and scaled.

    Attributes:
        sat_patch_size: side of the crop around the patch centroid, in Sentinel-2 pixels.
        num_channels_sat: bands of the series (10).
        filter_clouds: drop dates covered by clouds or snow.
        cloud_proba_threshold: a pixel counts as covered at this probability (0–100).
        cloud_area_threshold: a date is dropped when the covered fraction reaches this.
        average_month: replace the series by its period means.
        average_period: ``month`` or ``half_month``.
        sen2_scaling: ``reference``, ``reflectance`` or ``standardize``.
        sat_mean: per-band means for ``standardize``.
        sat_std: per-band standard deviations for ``standardize``.
        ref_year: year of the reference date (day positions count from it).
        ref_month: month of the reference date.
        ref_day: day of the reference date.
    """

    sat_patch_size: int
    num_channels_sat: int
    filter_clouds: bool
    cloud_proba_threshold: int
    cloud_area_threshold: float
    average_month: bool
    average_period: Period
    sen2_scaling: Scaling
    sat_mean: tuple[float, ...] | None
    sat_std: tuple[float, ...] | None
    ref_year: int
    ref_month: int
    ref_day: int

    @classmethod
    def from_config(cls, cfg: Config) -> SentinelSettings:
        """The Sentinel-2 keys of a configuration."""
        month, day = cfg.ref_month_day()
        return cls(
            sat_patch_size=cfg.sat_patch_size,
            num_channels_sat=cfg.num_channels_sat,
            filter_clouds=cfg.filter_clouds,
            cloud_proba_threshold=cfg.cloud_proba_threshold,
            cloud_area_threshold=cfg.cloud_area_threshold,
            average_month=cfg.average_month,
            average_period=cfg.average_period,
            sen2_scaling=cfg.sen2_scaling,
            sat_mean=tuple(cfg.sat_mean) if cfg.sat_mean is not None else None,
            sat_std=tuple(cfg.sat_std) if cfg.sat_std is not None else None,
            ref_year=cfg.ref_year,
            ref_month=month,
            ref_day=day,
        )


@dataclass(frozen=True)
class SplitSettings:
    """Where the patches are and how the training domains are split.

    Attributes:
        data: the dataset roots (the config's ``data:`` section).
        seed: seeds the domain split.
        val_fraction: fraction of the train domains held out for validation.
        val_domains: explicit validation domains (``val_fraction`` is then ignored).
        train_domains: explicit training domains.
        aerial_metadata: the model takes the aerial metadata (its file is then needed).
        skip_invalid_patches: skip patches with missing files instead of failing.
    """

    data: DataConfig
    seed: int
    val_fraction: float
    val_domains: tuple[str, ...] | None
    train_domains: tuple[str, ...] | None
    aerial_metadata: bool
    skip_invalid_patches: bool

    @classmethod
    def from_config(cls, cfg: Config) -> SplitSettings:
        """The discovery and split keys of a configuration."""
        return cls(
            data=cfg.data,
            seed=cfg.seed,
            val_fraction=cfg.val_fraction,
            val_domains=tuple(cfg.val_domains) if cfg.val_domains is not None else None,
            train_domains=tuple(cfg.train_domains) if cfg.train_domains is not None else None,
            aerial_metadata=cfg.aerial_metadata,
            skip_invalid_patches=cfg.skip_invalid_patches,
        )


@dataclass(frozen=True)
class SampleSettings:
    """What a dataset item holds and how it is augmented.

    Attributes:
        num_classes: classes of the model (labels above are folded into "other").
        num_channels_aerial: aerial bands read from each patch.
        aerial_metadata: encode the flight metadata (45 values).
        path_metadata_aerial: the metadata JSON file.
        month_encoding: ``reference`` or ``corrected``.
        augmentation_mode: ``consistent`` or ``reference``.
        sat_date_dropout: probability of dropping each Sentinel-2 date in training.
        sat_date_jitter: largest random shift of a date's position, in days.
        sentinel: how the Sentinel-2 series is prepared.
    """

    num_classes: int
    num_channels_aerial: int
    aerial_metadata: bool
    path_metadata_aerial: str
    month_encoding: MonthEncoding
    augmentation_mode: AugmentationMode
    sat_date_dropout: float
    sat_date_jitter: int
    sentinel: SentinelSettings

    @classmethod
    def from_config(cls, cfg: Config) -> SampleSettings:
        """The sample keys of a configuration."""
        return cls(
            num_classes=cfg.num_classes,
            num_channels_aerial=cfg.num_channels_aerial,
            aerial_metadata=cfg.aerial_metadata,
            path_metadata_aerial=cfg.data.path_metadata_aerial,
            month_encoding=cfg.month_encoding,
            augmentation_mode=cfg.augmentation_mode,
            sat_date_dropout=cfg.sat_date_dropout,
            sat_date_jitter=cfg.sat_date_jitter,
            sentinel=SentinelSettings.from_config(cfg),
        )


@dataclass(frozen=True)
class LossSettings:
    """The loss of both branches.

    Attributes:
        aerial_weights: per-class weights of the aerial (U-Net) branch, model order.
        satellite_weights: per-class weights of the satellite (U-TAE) branch.
        loss_weights: factor of each loss term (``ce``, ``dice``, ``lovasz``).
        label_smoothing: label smoothing of the cross-entropy term.
    """

    aerial_weights: tuple[float, ...]
    satellite_weights: tuple[float, ...]
    loss_weights: dict[str, float]
    label_smoothing: float

    @classmethod
    def from_config(cls, cfg: Config) -> LossSettings:
        """The loss keys of a configuration."""
        aerial, satellite = cfg.class_weights()
        return cls(
            aerial_weights=tuple(aerial),
            satellite_weights=tuple(satellite),
            loss_weights=dict(cfg.loss_weights),
            label_smoothing=cfg.label_smoothing,
        )


@dataclass(frozen=True)
class OptimizerSettings:
    """The optimiser and its learning-rate schedule.

    Attributes:
        optimizer: ``sgd`` or ``adamw``.
        lr: learning rate.
        momentum: SGD momentum.
        weight_decay: weight decay.
        scheduler: ``none``, ``cosine`` (with linear warm-up) or ``plateau``.
        warmup_epochs: epochs of linear warm-up before the cosine decay.
        num_epochs: epochs the cosine decay spans.
    """

    optimizer: OptimizerName
    lr: float
    momentum: float
    weight_decay: float
    scheduler: SchedulerName
    warmup_epochs: int
    num_epochs: int

    @classmethod
    def from_config(cls, cfg: Config) -> OptimizerSettings:
        """The optimiser keys of a configuration."""
        return cls(
            optimizer=cfg.optimizer,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            scheduler=cfg.scheduler,
            warmup_epochs=cfg.warmup_epochs,
            num_epochs=cfg.num_epochs,
        )


@dataclass(frozen=True)
class TrainerSettings:
    """Where and how Lightning runs: the settings training, prediction and detection share.

    The main config names them after the reference (``accelerator``,
    ``gpus_per_node``, ``num_nodes``, ``strategy``); the detection config after
    Lightning (``devices``). Both are turned into this one type.

    Attributes:
        accelerator: ``cpu``, ``gpu``, ``cuda``, ``auto``…
        devices: processes (devices) per machine.
        num_nodes: machines.
        strategy: Lightning's strategy (``ddp``…), None for Lightning's choice.
        precision: ``32``, ``16-mixed``, ``bf16-mixed``, ``32-true``.
        enable_progress_bar: show a rich progress bar.
        progress_rate: refresh the bar every N batches.
    """

    accelerator: str
    devices: int
    num_nodes: int
    strategy: str | None
    precision: Precision
    enable_progress_bar: bool
    progress_rate: int

    @classmethod
    def from_config(cls, cfg: Config) -> TrainerSettings:
        """The computation keys of the main configuration."""
        return cls(
            accelerator=cfg.accelerator,
            devices=cfg.gpus_per_node,
            num_nodes=cfg.num_nodes,
            strategy=cfg.strategy,
            precision=cfg.precision,
            enable_progress_bar=cfg.enable_progress_bar,
            progress_rate=cfg.progress_rate,
        )
