"""Whole-area detection: a trained model slid over an aerial raster of any size.

``detect(settings)`` cuts the raster into windows of the model's patch size
that overlap by ``overlap`` pixels (:mod:`~flair2.detection.grid`), reads
them with their Sentinel-2 series and metadata (:mod:`~flair2.detection.reader`),
runs the model through Lightning's ``Trainer.predict`` (CPU, GPU, several
devices or machines: the engine of training; :mod:`~flair2.detection.loop`),
blends the class probabilities of overlapping windows with a smooth weight
highest in the window centre, and writes one Cloud-Optimized GeoTIFF on the
raster's grid (:mod:`~flair2.detection.writer`).

A row of windows (a *strip*) is the unit of work: its results go to part files
as soon as it is done, so memory does not grow with the raster, a re-run skips
the finished strips, and under DDP each process takes every N-th strip and
writes its own parts; process 0 assembles the output at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import rasterio
import torch.distributed as dist
from torch import nn

from flair2.config import Config, MonthEncoding, config_from_dict, load_config
from flair2.detection.grid import WindowGrid, blend_weights
from flair2.detection.loop import StripAccumulator, WindowPredictor, ZonalDataModule
from flair2.detection.metadata import AreaMetadata, band_elevation, window_metadata
from flair2.detection.output import assemble_output
from flair2.detection.reader import (
    GDAL_CACHE_BYTES,
    AerialInfo,
    AerialReader,
    inspect_aerial,
)
from flair2.detection.sentinel import AreaSentinel
from flair2.detection.settings import DetectSettings
from flair2.detection.writer import OutputSpec, PartsFolder
from flair2.errors import ConfigError, Flair2Error
from flair2.io import check_output_outside, output_lock
from flair2.models import compile_unet, load_checkpoint_weights, set_channels_last
from flair2.models.checkpoint_files import read_checkpoint_file
from flair2.models.checkpoints import (
    guess_configuration,
    map_reference_state_dict,
)
from flair2.ranks import process_rank
from flair2.settings import SentinelSettings
from flair2.training.model import build_model
from flair2.training.task import stored_settings
from flair2.training.trainer import create_trainer, handle_trainer_failure, quiet_lightning

log = logging.getLogger(__name__)

#: Index of the elevation band among the model's aerial bands (R, G, B, NIR, elevation).
ELEVATION_BAND = 4
#: Window size when neither the settings, the model config nor the checkpoint tell (FLAIR #2's).
DEFAULT_PATCH_SIZE = 512


@dataclass
class DetectResult:
    """What a detection run did (all processes together).

    Attributes:
        output: the output GeoTIFF.
        windows: windows of the whole grid.
        processed: windows of the strips this run did (the rest were done before).
        predicted: windows run through the model (the others held only nodata).
        seconds: wall-clock time of the prediction loop.
    """

    output: Path
    windows: int
    processed: int
    predicted: int
    seconds: float

    @property
    def windows_per_second(self) -> float:
        """Windows processed per second of the loop; NaN when no time was measured."""
        return self.processed / self.seconds if self.seconds > 0 else float("nan")


# ---------------------------------------------------------------------------
# The model


def load_detection_model(settings: DetectSettings) -> tuple[Config, nn.Module, int]:
    """The model config, the model with the checkpoint's weights, and the window size.

    The config is ``model_config`` when given, else the one a flair2 checkpoint
    stores. The window size is ``patch_size`` of the settings, else of the model
    config, else the checkpoint's, else what the weights show (metadata MLP),
    else 512.

    Raises:
        ConfigError: no config can be had (a reference checkpoint without ``model_config``).
        CheckpointError: the checkpoint is unreadable or does not fit the model.
    """
    # Memory-mapped: the tensors are copied into the model, then the dict is dropped.
    raw = read_checkpoint_file(settings.checkpoint, mmap=True)
    stored, stored_patch = stored_settings(raw)
    if settings.model_config:
        cfg = load_config(settings.model_config)
    elif stored is not None:
        cfg = config_from_dict(stored)
    else:
        raise ConfigError(
            f"config key 'model_config': {settings.checkpoint} holds no flair2 configuration "
            "(a reference checkpoint?): give the YAML the model was trained with"
        )
    patch = settings.patch_size or cfg.patch_size or stored_patch
    if not patch:
        patch = guess_configuration(map_reference_state_dict(raw)).get("patch_size")
    if not patch:
        patch = DEFAULT_PATCH_SIZE
        log.info("window size not given by the model: %d px (set patch_size)", patch)
    model = build_model(cfg, int(patch))
    load_checkpoint_weights(model, raw, name=settings.checkpoint)
    set_channels_last(model, settings.channels_last)
    if settings.compile_model:
        compile_unet(model)
    return cfg, model, int(patch)


# ---------------------------------------------------------------------------
# Inputs besides the aerial raster


class MetadataEncoder:
    """The 45-value metadata of a window from its centre and the area's flight.

    Without ``metadata.altitude``, the altitude comes from the window's
    elevation band (the model's 5th band) as A2's ``band_elevation`` defines it.
    """

    def __init__(self, metadata: AreaMetadata, crs: Any, month_encoding: MonthEncoding) -> None:
        self.metadata = metadata
        self.crs = crs
        self.month_encoding = month_encoding

    def __call__(self, x: float, y: float, pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The (45,) float32 encoding of the window centred on (x, y), pixels C×P×P, valid P×P."""
        elevation = None
        if self.metadata.altitude is None:
            elevation = band_elevation(pixels[ELEVATION_BAND], self.metadata, valid)
        return window_metadata(
            self.metadata, x, y, self.crs, elevation, month_encoding=self.month_encoding
        )


def _open_metadata(settings: DetectSettings, cfg: Config, info: AerialInfo) -> MetadataEncoder:
    meta = settings.metadata
    if meta is None:
        raise ConfigError(
            "config key 'metadata': the model was trained with aerial metadata "
            "(aerial_metadata: true): give the flight's date (and time, camera, altitude)"
        )
    if meta.altitude is None and cfg.num_channels_aerial <= ELEVATION_BAND:
        raise ConfigError(
            "config key 'metadata.altitude': null, and the model has no elevation band to "
            "derive it from; set the area's altitude in metres"
        )
    if info.crs is None:
        raise ConfigError(
            f"config key 'aerial': {info.path} has no CRS, so windows have no position for "
            "the metadata; assign one (gdal_edit.py -a_srs EPSG:2154)"
        )
    return MetadataEncoder(meta, info.crs, cfg.month_encoding)


def _open_sentinel(source: str, settings: DetectSettings, cfg: Config) -> AreaSentinel:
    return AreaSentinel.open(
        source,
        SentinelSettings.from_config(cfg),
        masks=settings.sentinel2_masks,
        products=settings.sentinel2_products,
        sidecar=settings.sentinel2_sidecar,
    )


def _manifest(
    settings: DetectSettings, info: AerialInfo, grid: WindowGrid, spec: OutputSpec, model: nn.Module
) -> dict[str, Any]:
    """What the part files depend on: a re-run with a different value must not reuse them."""
    checkpoint = Path(settings.checkpoint)
    stat = checkpoint.stat() if checkpoint.is_file() else None
    return {
        "aerial": str(info.path.resolve()),
        "aerial_bands": list(info.bands),
        "grid": [info.width, info.height, *info.transform.to_gdal()],
        "crs": info.crs.to_wkt() if info.crs else None,
        "patch_size": grid.patch,
        "overlap": grid.overlap,
        "output_type": "probabilities" if spec.probabilities else "argmax",
        "values": spec.values,
        "num_classes": spec.num_classes,
        "checkpoint": [str(checkpoint.resolve()), stat.st_size, stat.st_mtime] if stat else None,
        "model": type(model).__name__,
        "sentinel2": settings.sentinel2,
        "metadata": dataclasses.asdict(settings.metadata) if settings.metadata else None,
    }


def _parts_folder(output: Path) -> PartsFolder:
    return PartsFolder(output.with_name(output.name + ".parts"))


# ---------------------------------------------------------------------------
# The run


def _gather_counts(trainer: pl.Trainer, counts: list[int]) -> list[int]:
    if trainer.world_size <= 1 or not (dist.is_available() and dist.is_initialized()):
        return counts
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, counts)
    return [sum(c[i] for c in gathered) for i in range(len(counts))]


def _finish(trainer: pl.Trainer, assemble: Any) -> None:
    """Once every process is done: process 0 assembles the output; all see its error."""
    distributed = trainer.world_size > 1 and dist.is_available() and dist.is_initialized()
    if distributed:
        trainer.strategy.barrier("flair2-detect-done")
    failure: BaseException | None = None
    message: str | None = None
    if trainer.is_global_zero:
        try:
            assemble()
        except BaseException as exc:
            failure, message = exc, f"{type(exc).__name__}: {exc}"
    if distributed:
        message = trainer.strategy.broadcast(message, src=0)
    if failure is not None:
        raise failure
    if message is not None:
        # Process 0 reports the error itself; the others stop quietly with it.
        raise Flair2Error(f"process 0 could not assemble the output: {message}")


def detect(
    settings: DetectSettings,
    *,
    model: nn.Module | None = None,
    model_cfg: Config | None = None,
) -> DetectResult:
    """Predict a whole aerial raster into one GeoTIFF.

    Args:
        settings: the detect settings (see :class:`DetectSettings`).
        model: a model to use instead of the checkpoint's (tests, custom
            models); called like the :mod:`flair2.models` ones.
        model_cfg: the configuration of ``model`` (default: ``model_config``
            when given, else the defaults); its ``patch_size`` or the settings'
            is the window size.

    Returns:
        The output path, window counts and time.

    Raises:
        ConfigError: a bad setting (the message names the key), an existing
            output without ``overwrite``, parts of a run with other settings.
        DataError: an unreadable or unsuitable input (the message names the file).
        CheckpointError: the checkpoint does not fit the model.
    """
    quiet_lightning()
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        output = Path(settings.output)
        check_output_outside(output, _inputs(settings), name="config key 'output'")
        # Two runs on one output would delete each other's part files.
        lock_file = output.with_name(f".{output.name}.lock")
        with output_lock(lock_file, "flair2 detect") if process_rank() == 0 else nullcontext():
            return _detect(settings, model, model_cfg)


def _inputs(settings: DetectSettings) -> dict[str, str | None]:
    """What a detection reads, by config key: the output may be none of them."""
    inputs: dict[str, str | None] = {
        "aerial": settings.aerial,
        "sentinel2": settings.sentinel2,
        "checkpoint": settings.checkpoint,
        "model_config": settings.model_config,
    }
    # A mosaic (VRT) reads its tiles: the output must not replace one of them either.
    with contextlib.suppress(Exception), rasterio.open(settings.aerial) as src:
        for i, name in enumerate(src.files[1:]):
            inputs[f"aerial (tile {i + 1}: {Path(name).name})"] = name
    return inputs


def _detect(
    settings: DetectSettings, model: nn.Module | None, model_cfg: Config | None
) -> DetectResult:
    output = Path(settings.output)
    if output.exists() and not settings.overwrite:
        raise ConfigError(
            f"config key 'output': {output} exists; set overwrite: true to replace it"
        )
    if model is None:
        cfg, model, patch = load_detection_model(settings)
    else:
        cfg = model_cfg or (
            load_config(settings.model_config) if settings.model_config else Config()
        )
        patch = settings.patch_size or cfg.patch_size or 0
        if not patch:
            raise ConfigError("config key 'patch_size': give the window size of the model")
    if settings.overlap >= patch:
        raise ConfigError(
            f"config key 'overlap': {settings.overlap} px, must be smaller than the window "
            f"({patch} px); half of it or less is usual"
        )
    info = inspect_aerial(
        settings.aerial, settings.aerial_bands, cfg.num_channels_aerial, cfg.aerial_resolution
    )
    sentinel = None
    if settings.sentinel2:
        sentinel = _open_sentinel(settings.sentinel2, settings, cfg)
        sentinel.close()  # checked; reopened where windows are read
    elif cfg.with_sentinel():
        model_name = "U-T&T" if cfg.arch == "utt" else "U-TAE"
        raise ConfigError(
            f"config key 'sentinel2': the model is {model_name} (arch: {cfg.arch}) and needs the "
            "area's Sentinel-2 series"
        )
    metadata = _open_metadata(settings, cfg, info) if cfg.aerial_metadata else None
    grid = WindowGrid(info.height, info.width, patch, settings.overlap)
    spec = OutputSpec(cfg.num_classes, settings.output_type == "probabilities", settings.values)
    parts = _parts_folder(output)
    if process_rank() == 0:
        parts.prepare(_manifest(settings, info, grid, spec, model), settings.overwrite)
    reader = AerialReader(info)
    module = WindowPredictor(model, blend_weights(patch, settings.overlap), cfg.aerial_metadata)
    datamodule = ZonalDataModule(
        reader,
        grid,
        parts,
        settings,
        sentinel=sentinel,
        metadata=metadata,
        pad_value=float(cfg.pad_value),
    )
    writer = StripAccumulator(grid, parts, spec, info, settings.enable_progress_bar)
    trainer = create_trainer(
        settings.trainer(),
        callbacks=[writer],
        logger=False,
        inference_mode=True,
        use_distributed_sampler=False,
    )
    log.info(
        "detect: %d × %d px, %d windows of %d px (overlap %d) in %d strips → %s",
        info.width,
        info.height,
        grid.num_windows,
        patch,
        settings.overlap,
        grid.num_strips,
        output,
    )
    start = time.perf_counter()
    try:
        with handle_trainer_failure(trainer):
            trainer.predict(module, datamodule=datamodule, return_predictions=False)
            seconds = time.perf_counter() - start
            processed, predicted = _gather_counts(trainer, [writer.processed, writer.predicted])
            _finish(
                trainer,
                lambda: assemble_output(parts, grid, spec, info.transform, info.crs, output),
            )
    finally:
        reader.close()
    result = DetectResult(output, grid.num_windows, processed, predicted, seconds)
    log.info(
        "detected %d windows in %.1f s (%.2f windows/s, %d with data) into %s",
        processed,
        seconds,
        result.windows_per_second,
        predicted,
        output,
    )
    return result
