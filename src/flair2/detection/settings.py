"""The configuration of ``flair2 detect``: a YAML file of its own, validated like the main one.

Unknown or mistyped keys raise :class:`~flair2.errors.ConfigError` naming the
key's dotted path (the machinery of :mod:`flair2.config`). Relative paths in the
file are relative to the file's folder; paths given with ``--set`` are relative
to the current folder.

Example::

    aerial: zone/ortho.vrt
    sentinel2: zone/sentinel2/       # null for aerial-only models
    checkpoint: runs/utt/checkpoints/best.ckpt
    model_config: runs/utt/config.yaml
    output: zone/landcover.tif
    overlap: 128
    batch_size: 8
    output_type: argmax
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from flair2.config import Precision
from flair2.config_checks import check_patch_size
from flair2.detection.metadata import AreaMetadata
from flair2.errors import ConfigError
from flair2.schema import apply_overrides, build_dataclass, check, load_yaml_file
from flair2.settings import TrainerSettings

#: Keys holding file or folder paths, resolved against the YAML file's folder.
PATH_KEYS = (
    "aerial",
    "sentinel2",
    "sentinel2_masks",
    "sentinel2_products",
    "sentinel2_sidecar",
    "checkpoint",
    "model_config",
    "output",
)


@dataclass
class DetectSettings:
    """Every setting of a whole-area detection.

    Attributes:
        aerial: the aerial raster (GeoTIFF, VRT…), uint8 bands.
        aerial_bands: 1-based bands fed to the model, in its order (R, G, B,
            NIR, elevation); null: bands 1..``num_channels_aerial``.
        sentinel2: the Sentinel-2 series of the area (U-T&T models); null for
            aerial-only models.
        sentinel2_masks, sentinel2_products, sentinel2_sidecar: optional
            companions of ``sentinel2`` (cloud masks, product list, sidecar).
        checkpoint: a flair2 or reference checkpoint.
        model_config: the training configuration of the model; null reads it
            from a flair2 checkpoint.
        output: the output GeoTIFF.
        patch_size: window size in pixels; null: the model's patch size.
        overlap: pixels shared by neighbouring windows, blended.
        batch_size: windows per forward pass.
        output_type: ``argmax`` (uint8 classes, palette) or ``probabilities``
            (one uint8 band per class, ``round(p·255)``).
        values: class values of ``argmax``: ``model`` (0..K-1) or ``labels`` (1..K).
        metadata: the flight of the area (``date``, ``time``, ``camera``,
            ``altitude``…, see :class:`~flair2.detection.metadata.AreaMetadata`),
            for models trained with ``aerial_metadata``.
        accelerator, devices, num_nodes, strategy, precision: Lightning's.
        channels_last: run the aerial U-Net channels-last (faster; logits equal
            to 1e-5, see :func:`flair2.models.set_channels_last`).
        compile_model: compile the aerial U-Net (:func:`flair2.models.compile_unet`):
            the first batch waits for the compiler, the rest run faster.
        num_workers: DataLoader processes reading windows.
        overwrite: replace an existing output and discard the parts of an
            interrupted run (default: resume them).
        enable_progress_bar: show the progress bar (windows/s).
    """

    aerial: str = ""
    aerial_bands: list[int] | None = None
    sentinel2: str | None = None
    sentinel2_masks: str | None = None
    sentinel2_products: str | None = None
    sentinel2_sidecar: str | None = None
    checkpoint: str = ""
    model_config: str | None = None
    output: str = ""
    patch_size: int | None = None
    overlap: int = 128
    batch_size: int = 4
    output_type: Literal["argmax", "probabilities"] = "argmax"
    values: Literal["model", "labels"] = "model"
    metadata: AreaMetadata | None = None
    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str | None = None
    num_workers: int = 0
    precision: Precision = "32"
    channels_last: bool = True
    compile_model: bool = False
    overwrite: bool = False
    enable_progress_bar: bool = True

    def trainer(self) -> TrainerSettings:
        """The Lightning settings of the run (the detection draws its own progress bar)."""
        return TrainerSettings(
            accelerator=self.accelerator,
            devices=self.devices,
            num_nodes=self.num_nodes,
            strategy=self.strategy,
            precision=self.precision,
            enable_progress_bar=False,
            progress_rate=1,
        )


def validate_detect_settings(settings: DetectSettings) -> DetectSettings:
    """Check required keys and ranges; return the settings or raise ConfigError."""
    for key in ("aerial", "checkpoint", "output"):
        check(bool(getattr(settings, key)), key, "is required (a file path)")
    if settings.aerial_bands is not None:
        check(len(settings.aerial_bands) >= 1, "aerial_bands", "give at least one band")
        check(
            all(b >= 1 for b in settings.aerial_bands),
            "aerial_bands",
            f"bands are 1-based, got {settings.aerial_bands}",
        )
    check_patch_size(settings.patch_size)
    check(settings.overlap >= 0, "overlap", f"must be >= 0, got {settings.overlap}")
    for key in ("batch_size", "devices", "num_nodes"):
        check(getattr(settings, key) >= 1, key, f"must be >= 1, got {getattr(settings, key)}")
    check(settings.num_workers >= 0, "num_workers", "must be >= 0")
    if settings.sentinel2 is None:
        for key in ("sentinel2_masks", "sentinel2_products", "sentinel2_sidecar"):
            check(getattr(settings, key) is None, key, "needs 'sentinel2'")
    return settings


def _resolve_paths(raw: dict[str, Any], folder: Path) -> dict[str, Any]:
    out = dict(raw)
    for key in PATH_KEYS:
        value = out.get(key)
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            out[key] = str(folder / value)
        elif isinstance(value, str) and value:
            out[key] = str(Path(value).expanduser())
    return out


def _area_metadata(raw: Any) -> AreaMetadata | None:
    """The ``metadata`` section as :class:`AreaMetadata`; errors name ``metadata.<key>``."""
    if raw is None or isinstance(raw, AreaMetadata):
        return raw
    if not isinstance(raw, dict):
        raise ConfigError(f"config key 'metadata': expected a mapping, got {raw!r}")
    if "date" not in raw:
        raise ConfigError("config key 'metadata.date': is required (the flight date, YYYY-MM-DD)")
    return build_dataclass(AreaMetadata, raw, "metadata.")


def detect_settings_from_dict(
    raw: dict[str, Any] | None,
    overrides: list[str] | None = None,
    *,
    base: str | Path | None = None,
) -> DetectSettings:
    """Build and validate settings from plain data (parsed YAML) plus ``--set`` overrides.

    Args:
        raw: the mapping of keys to values.
        overrides: ``KEY=VALUE`` strings (values parsed as YAML).
        base: folder that relative paths of ``raw`` are relative to (the
            overrides' stay relative to the current folder).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("detect config: the file must hold a YAML mapping of keys to values")
    if base is not None:
        raw = _resolve_paths(raw, Path(base))
    raw = apply_overrides(dict(raw), overrides)
    metadata = raw.pop("metadata", None)
    settings = build_dataclass(DetectSettings, raw)
    settings.metadata = _area_metadata(metadata)
    return validate_detect_settings(settings)


def load_detect_settings(path: str | Path, overrides: list[str] | None = None) -> DetectSettings:
    """Load a detect YAML file, apply ``--set`` overrides and validate it.

    Raises:
        ConfigError: the file is missing or not YAML, or a key is unknown,
            mistyped or out of range (the message names the file and the key).
    """
    path = Path(path)
    return load_yaml_file(
        path,
        "detect config",
        lambda raw: detect_settings_from_dict(raw, overrides, base=path.parent),
    )
