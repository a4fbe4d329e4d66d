"""``flair2 export-weights``: a trained model in the layout model hubs use.

A training checkpoint holds the optimiser's state, the loop's, callbacks' and a
pickle of Python objects; what a user of the model needs is its weights, the
configuration that builds it, and a description. The export folder holds:

* ``model.safetensors``: the network's weights under flair2's model keys (no code
  can be stored in it), with the patch size in its metadata;
* ``config.yaml``: the configuration the model was trained with (``load_config`` reads it);
* ``README.md``: a model card: architecture, classes, training data and settings,
  and the per-class IoU of the run's ``metrics.json`` when there is one.

``flair2 predict`` and ``flair2 detect`` take the folder as ``--checkpoint``
(:func:`flair2.models.checkpoint_files.read_exported_folder`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from flair2.classes import CLASSES
from flair2.config import Config, config_from_dict, save_config
from flair2.errors import CheckpointError
from flair2.io import write_text_atomic
from flair2.models.checkpoint_files import EXPORTED_CONFIG, EXPORTED_WEIGHTS, read_checkpoint_file
from flair2.models.checkpoints import map_reference_state_dict
from flair2.training.task import stored_settings

logger = logging.getLogger(__name__)

#: The config keys the model card lists under "Training".
CARD_KEYS = (
    "num_epochs",
    "batch_size",
    "optimizer",
    "lr",
    "scheduler",
    "precision",
    "loss_weights",
    "ema_decay",
    "use_augmentation",
    "filter_clouds",
    "average_month",
    "init_weights",
    "seed",
)


def run_metrics(checkpoint: Path) -> Path | None:
    """The ``metrics.json`` of the run a checkpoint belongs to (``RUN/checkpoints/x.ckpt``)."""
    candidate = checkpoint.resolve().parent.parent / "metrics" / "metrics.json"
    return candidate if candidate.is_file() else None


def _card(
    cfg: Config, patch_size: int | None, parameters: int, metrics: dict[str, Any] | None
) -> str:
    classes = CLASSES[: cfg.num_classes]
    sentinel = cfg.arch == "utt"
    lines = [
        f"# {cfg.out_model_name}",
        "",
        "Land-cover segmentation model trained with flair2 on FLAIR #2 "
        "imagery (0.2 m aerial patches"
        + (" and a one-year Sentinel-2 series per patch)." if sentinel else ")."),
        "",
        "## Architecture",
        "",
        f"- `arch`: {cfg.arch} ({'U-Net + U-TAE fusion' if sentinel else 'aerial U-Net'})",
        f"- aerial encoder / decoder: `{cfg.encoder_name}` / `{cfg.decoder_name}`, "
        f"{cfg.num_channels_aerial} bands (R, G, B, NIR, elevation)",
        f"- aerial metadata: {'yes' if cfg.aerial_metadata else 'no'}",
        f"- patch size: {patch_size if patch_size else 'not recorded'} px",
        f"- values in `model.safetensors`: {parameters:,} (weights and normalisation statistics)",
        "",
        "## Classes",
        "",
        "| index | class | label value |",
        "| --- | --- | --- |",
    ]
    lines += [
        f"| {i} | {name} | {i + 1}{' (13–19)' if name == 'other' else ''} |"
        for i, name in enumerate(classes)
    ]
    domains = ", ".join(cfg.train_domains) if cfg.train_domains else "every train domain"
    lines += [
        "",
        "## Training data and settings",
        "",
        f"- aerial training data: `{cfg.data.path_aerial_train}` ({domains}; "
        + (f"validation: {', '.join(cfg.val_domains)})" if cfg.val_domains else "")
        + (f"validation fraction {cfg.val_fraction})" if not cfg.val_domains else ""),
    ]
    settings = cfg.to_dict()
    lines += [f"- `{key}`: {settings[key]}" for key in CARD_KEYS if key in settings]
    lines += ["", "The complete configuration is `config.yaml`.", "", "## Scores", ""]
    if metrics and isinstance(metrics.get("per_class"), dict):
        lines += [
            f"mIoU over {metrics.get('miou_classes', 12)} classes: {metrics['miou']:.4f} "
            f"({metrics.get('num_patches', '?')} test patches).",
            "",
            "| class | IoU |",
            "| --- | --- |",
        ]
        lines += [f"| {n} | {c['iou']:.4f} |" for n, c in metrics["per_class"].items()]
    else:
        lines.append("No `metrics.json` was found for this run: the model has not been scored.")
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        "flair2 predict --config config.yaml --checkpoint THIS_FOLDER --out predictions/",
        "```",
        "",
    ]
    return "\n".join(lines)


def export_weights(
    checkpoint: str | Path,
    out_dir: str | Path,
    cfg: Config | None = None,
    metrics: str | Path | None = None,
) -> Path:
    """Write ``model.safetensors``, ``config.yaml`` and ``README.md`` for a checkpoint.

    Args:
        checkpoint: a flair2 training checkpoint (read weights-only).
        out_dir: the folder to write (created; its three files are replaced).
        cfg: the configuration; default: the one the checkpoint stores (a reference
            checkpoint stores none: then it is required).
        metrics: a ``metrics.json`` for the card; default: the run's, if any.

    Returns:
        ``out_dir``.

    Raises:
        CheckpointError: unreadable checkpoint, or no configuration to be had.
    """
    checkpoint = Path(checkpoint)
    raw = read_checkpoint_file(checkpoint)
    stored, patch_size = stored_settings(raw)
    if cfg is None:
        if stored is None:
            raise CheckpointError(
                f"checkpoint {checkpoint} stores no configuration: give the one it was "
                "trained with (--config)"
            )
        cfg = config_from_dict(stored)
    state = map_reference_state_dict(raw)
    tensors = {k: v.detach().contiguous() for k, v in state.items() if hasattr(v, "detach")}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"format": "pt", "producer": "flair2 export-weights", "arch": cfg.arch}
    if patch_size:
        meta["patch_size"] = str(patch_size)
    weights = out / EXPORTED_WEIGHTS
    partial = weights.with_name(f".{weights.name}.partial")
    save_file(tensors, str(partial), metadata=meta)
    partial.replace(weights)
    save_config(cfg, out / EXPORTED_CONFIG)
    metrics_file = Path(metrics) if metrics else run_metrics(checkpoint)
    scores = json.loads(metrics_file.read_text(encoding="utf-8")) if metrics_file else None
    parameters = sum(int(t.numel()) for k, t in tensors.items() if t.is_floating_point())
    write_text_atomic(out / "README.md", _card(cfg, patch_size, parameters, scores))
    logger.info("exported %s to %s (%d tensors)", checkpoint, out, len(tensors))
    return out
