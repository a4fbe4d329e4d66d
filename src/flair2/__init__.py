"""flair2: land-cover segmentation from aerial imagery and Sentinel-2 time series (FLAIR #2).

The public API, each name imported on first use (so ``flair2 --help`` stays fast):

- :func:`load_config`: a YAML configuration (the reference's loads unchanged);
- :func:`generate_toy_dataset`: a synthetic dataset in the official layout;
- :func:`train`, :func:`predict`, :func:`evaluate`, :func:`run`: the stages of a
  run, as ``flair2 train|predict|evaluate|run``;
- :func:`detect` and :func:`load_detect_settings`: a model over a whole raster;
- :func:`create_model`: a U-T&T or U-Net from plain values;
- :func:`render_patch_figure`: one patch, its labels, prediction and Sentinel-2 dates;
- :func:`trusted_checkpoints`: within it, checkpoint files that carry Python
  objects may be unpickled (refused otherwise: unpickling can run code).

Datasets and data modules are in :mod:`flair2.data`, models in :mod:`flair2.models`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flair2.lazy import lazy_exports

__version__ = "0.1.0"

#: Public name -> the module defining it.
_EXPORTS = {
    "Config": "flair2.config",
    "load_config": "flair2.config",
    "generate_toy_dataset": "flair2.synthetic",
    "SENTINEL_ONLY_CLASSES": "flair2.synthetic",
    "TINY_MODEL": "flair2.synthetic",
    "toy_config": "flair2.synthetic",
    "train": "flair2.training.fit",
    "predict": "flair2.prediction.patches",
    "evaluate": "flair2.pipeline",
    "run": "flair2.pipeline",
    "demo": "flair2.pipeline",
    "detect": "flair2.detection.runner",
    "load_detect_settings": "flair2.detection.settings",
    "create_model": "flair2.models.create",
    "trusted_checkpoints": "flair2.models.checkpoint_files",
    "render_patch_figure": "flair2.viz.patch",
}

__all__ = [
    "SENTINEL_ONLY_CLASSES",
    "TINY_MODEL",
    "Config",
    "__version__",
    "create_model",
    "demo",
    "detect",
    "evaluate",
    "generate_toy_dataset",
    "load_config",
    "load_detect_settings",
    "predict",
    "render_patch_figure",
    "run",
    "toy_config",
    "train",
    "trusted_checkpoints",
]

if TYPE_CHECKING:
    from flair2.config import Config, load_config
    from flair2.detection.runner import detect
    from flair2.detection.settings import load_detect_settings
    from flair2.models.checkpoint_files import trusted_checkpoints
    from flair2.models.create import create_model
    from flair2.pipeline import demo, evaluate, run
    from flair2.prediction.patches import predict
    from flair2.synthetic import (
        SENTINEL_ONLY_CLASSES,
        TINY_MODEL,
        generate_toy_dataset,
        toy_config,
    )
    from flair2.training.fit import train
    from flair2.viz.patch import render_patch_figure

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
