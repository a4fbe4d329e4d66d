"""flair2-plus against the reference U-T&T preset on the toy dataset, equal time or epochs.

Generates the 128 px toy dataset of ``flair2 demo`` (48 train, 16 validation, 20 test
patches), then for each preset (default: ``configs/leaderboard-4-utt-filter-avg-aug.yml``,
the best published baseline, and ``configs/flair2-plus.yml``):

1. measures the time of one training epoch (two short runs, 1 and 2 epochs: the
   difference is an epoch, the rest the start-up) and sets ``num_epochs`` so that
   training fits ``--budget`` seconds; the learning-rate schedule (cosine and
   warm-up for flair2-plus) then runs to its end, as it would on the real data;
2. trains, predicts the test split with the best checkpoint (by validation loss,
   with the preset's ``tta``) and scores it (mIoU over 12 classes, per-class IoU).

What the CPU and the toy data impose is changed and listed under ``overrides`` in
the output: the data paths, ``accelerator: cpu``, ``num_workers: 0``, no ImageNet
weights (``encoder_weights: null``: no network), ``precision: "32"`` (bf16 autocast
is slow on most CPUs) and, for a preset with a weight average, ``ema_decay: 0.95``
(0.999 spans a fraction of an epoch of FLAIR #2 but hundreds of toy epochs).

With ``--epochs N`` both presets train N epochs instead (no calibration) and keep
their own ``ema_decay`` (flair2-plus: 0.999, with the warm-up of ``ema_warmup``): the
comparison of the presets as they are written, at equal epochs.

Prints one JSON line: per preset ``miou``, ``per_class`` (IoU), ``epochs``,
``train_seconds``, ``predict_seconds``, ``epoch_seconds``; plus ``budget_s``,
``overrides``, ``patch_size``, ``threads``.

    python bench/preset_compare.py --budget 1200 --out preset-compare   # ~45 min on 2 cores
    python bench/preset_compare.py --epochs 12 --patch 64 --out preset-epochs  # equal epochs
    python bench/preset_compare.py --quick                              # 64 px smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

from flair2.config import Config, config_from_dict
from flair2.evaluation.evaluate import evaluate_predictions
from flair2.prediction.patches import predict
from flair2.synthetic import generate_toy_dataset, toy_config_dict
from flair2.training import train

ROOT = Path(__file__).resolve().parents[1]
PRESETS = (
    ROOT / "configs" / "leaderboard-4-utt-filter-avg-aug.yml",
    ROOT / "configs" / "flair2-plus.yml",
)
#: What the CPU and the absence of network impose on every preset.
CPU_OVERRIDES: dict[str, Any] = {
    "accelerator": "cpu",
    "gpus_per_node": 1,
    "num_nodes": 1,
    "strategy": None,
    "num_workers": 0,
    "encoder_weights": None,
    "precision": "32",
    "enable_progress_bar": False,
}
#: A weight average's decay sized for the toy's few steps (see the module docstring).
TOY_EMA_DECAY = 0.95


def preset_config(
    preset: Path, root: Path, out: Path, name: str, toy_ema: bool = True, **extra: Any
) -> Config:
    """The preset with the data paths of ``root`` and the CPU overrides.

    ``toy_ema``: replace the preset's ``ema_decay`` (if any) by :data:`TOY_EMA_DECAY`.
    """
    raw = yaml.safe_load(preset.read_text(encoding="utf-8"))
    raw["data"] = toy_config_dict(root)
    raw.update(CPU_OVERRIDES, out_folder=str(out), out_model_name=name)
    if toy_ema and raw.get("ema_decay") is not None:
        raw["ema_decay"] = TOY_EMA_DECAY
    raw.update(extra)
    return config_from_dict(raw)


def timed_training(cfg: Config) -> tuple[float, Any]:
    start = time.perf_counter()
    result = train(cfg)
    return time.perf_counter() - start, result


def epochs_for_budget(preset: Path, root: Path, out: Path, budget: float) -> tuple[int, float]:
    """(epochs that fit ``budget`` seconds, seconds per epoch), from 1- and 2-epoch runs."""
    one, _ = timed_training(preset_config(preset, root, out, "calibrate-1", num_epochs=1))
    two, _ = timed_training(preset_config(preset, root, out, "calibrate-2", num_epochs=2))
    epoch = max(two - one, 1e-3)
    start_up = max(one - epoch, 0.0)
    return max(1, int((budget - start_up) // epoch)), epoch


def run_preset(
    preset: Path, root: Path, out: Path, budget: float, epochs: int | None = None
) -> dict[str, Any]:
    """Train (for ``budget`` seconds, or ``epochs`` epochs), predict and score one preset."""
    if epochs is None:
        epochs, epoch_seconds = epochs_for_budget(preset, root, out / "calibration", budget)
        cfg = preset_config(preset, root, out, preset.stem, num_epochs=epochs)
    else:
        epoch_seconds = None  # not measured: no calibration runs
        cfg = preset_config(preset, root, out, preset.stem, toy_ema=False, num_epochs=epochs)
    train_seconds, result = timed_training(cfg)
    checkpoint = result.best_checkpoint or result.last_checkpoint
    predictions = result.out_dir / "predictions"
    predicted = predict(cfg, checkpoint, predictions, overwrite=True)
    metrics = evaluate_predictions(
        predictions, cfg.data.path_labels_test, result.out_dir / "metrics", cfg.num_classes
    )
    return {
        "miou": metrics["miou"],
        "per_class": {name: c["iou"] for name, c in metrics["per_class"].items()},
        "epochs": epochs,
        "epochs_run": result.epochs,
        "epoch_seconds": None if epoch_seconds is None else round(epoch_seconds, 2),
        "ema_decay": cfg.ema_decay,
        "ema_warmup": cfg.ema_warmup,
        "train_seconds": round(train_seconds, 1),
        "predict_seconds": round(predicted.seconds, 2),
        "tta": cfg.tta,
        "encoder": f"{cfg.encoder_name}/{cfg.decoder_name}",
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=1200.0, help="training seconds each")
    parser.add_argument("--out", type=Path, default=None, help="keep data and runs here")
    parser.add_argument("--epochs", type=int, default=None, help="equal epochs, not time")
    parser.add_argument("--patch", type=int, default=None, help="toy patch side (default 128)")
    parser.add_argument("--quick", action="store_true", help="64 px tiny data, 20 s budget")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--preset", type=Path, action="append", help="default: the two presets")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    presets = args.preset or list(PRESETS)
    budget = 20.0 if args.quick else args.budget
    patch = args.patch or (64 if args.quick else 128)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        root = out / "data"
        if not (root / "flair_aerial_train").is_dir():
            toy: dict[str, Any] = {}
            if args.quick:
                toy = {"num_domains": 3, "zones_per_domain": 1, "patches_per_zone": 4}
                toy.update(num_test_domains=1, test_patches_per_zone=3, num_dates=6)
            generate_toy_dataset(root, patch_size=patch, seed=0, **toy)
        # Lightning prints model summaries on stdout: keep it for the JSON line.
        with contextlib.redirect_stdout(sys.stderr):
            results = {
                p.stem: run_preset(p, root, out / "runs", budget, args.epochs) for p in presets
            }
    overrides = {k: v for k, v in CPU_OVERRIDES.items() if k != "enable_progress_bar"}
    if args.epochs is None:
        overrides["ema_decay"] = f"{TOY_EMA_DECAY} where the preset averages weights"
    report = {
        "presets": results,
        "budget_s": None if args.epochs else budget,
        "epochs": args.epochs,
        "patch_size": patch,
        "threads": torch.get_num_threads(),
        "overrides": overrides,
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
