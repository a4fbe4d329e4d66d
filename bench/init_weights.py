"""The aerial U-Net started from another dataset's U-Net (``init_weights``) vs from scratch.

Stands in for starting from IGN's published weights without a network: a U-Net
trained on one toy dataset (seed 1, "source") is saved in FLAIR-1's layout (the
smp network under ``seg_model.``, as IGNF/FLAIR-1 writes it), then the aerial
U-Net is trained on a *different* toy dataset (seed 0, "target") for the same
number of epochs twice: from that file (``init_weights``) and from random weights.
Both are scored on the target's test split (mIoU over 12 classes).

Prints one JSON line: ``scratch`` and ``init_weights`` (``miou``, ``per_class``),
``epochs``, ``source_epochs``, ``source_miou`` (the source model on its own test
split), ``loaded`` (tensors loaded from the file), ``patch_size``, ``threads``.

    python bench/init_weights.py --epochs 4 --source-epochs 12 --out init-weights
    python bench/init_weights.py --quick      # 64 px, 1 epoch each: a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from flair2.config import Config
from flair2.evaluation.evaluate import evaluate_predictions
from flair2.models.checkpoint_files import read_checkpoint_file
from flair2.models.foreign import load_foreign_weights
from flair2.prediction.patches import predict
from flair2.synthetic import generate_toy_dataset, toy_config
from flair2.training import train
from flair2.training.model import build_model


def config(root: Path, out: Path, name: str, epochs: int, **extra: Any) -> Config:
    """The toy recipe for the aerial-only U-Net (no metadata: FLAIR-1's U-Nets have none)."""
    return toy_config(
        root,
        out,
        name,
        arch="unet",
        aerial_metadata=False,
        num_epochs=epochs,
        enable_progress_bar=False,
        **extra,
    )


def train_and_score(cfg: Config) -> dict[str, Any]:
    """Train, predict the test split with the best checkpoint, score it."""
    result = train(cfg)
    checkpoint = result.best_checkpoint or result.last_checkpoint
    predictions = result.out_dir / "predictions"
    predict(cfg, checkpoint, predictions, overwrite=True)
    metrics = evaluate_predictions(
        predictions, cfg.data.path_labels_test, result.out_dir / "metrics", cfg.num_classes
    )
    return {
        "miou": metrics["miou"],
        "per_class": {n: c["iou"] for n, c in metrics["per_class"].items()},
        "checkpoint": str(checkpoint),
    }


def as_flair1(checkpoint: str, path: Path) -> Path:
    """Write a flair2 U-Net checkpoint's network in FLAIR-1's layout (``seg_model.*``)."""
    state = read_checkpoint_file(checkpoint)["state_dict"]
    prefix = "model.arch_vhr."
    network = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    torch.save({f"seg_model.{k}": v for k, v in network.items()}, path)
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="target training epochs, each run")
    parser.add_argument("--source-epochs", type=int, default=12, help="source model's epochs")
    parser.add_argument("--patch", type=int, default=64, help="toy patch side (multiple of 32)")
    parser.add_argument("--out", type=Path, default=None, help="keep data and runs here")
    parser.add_argument("--quick", action="store_true", help="1 epoch each, 64 px")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.epochs, args.source_epochs, args.patch = 1, 1, 64
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        out = args.out or Path(tmp)
        roots = {"source": out / "data-source", "target": out / "data-target"}
        for seed, root in ((0, roots["target"]), (1, roots["source"])):
            if not (root / "flair_aerial_train").is_dir():
                generate_toy_dataset(root, patch_size=args.patch, seed=seed)
        runs = out / "runs"
        source = train_and_score(config(roots["source"], runs, "source", args.source_epochs))
        foreign = as_flair1(source["checkpoint"], out / "source-flair1.pth")
        probe = build_model(config(roots["target"], runs, "probe", 1), patch_size=args.patch)
        loaded = load_foreign_weights(probe, foreign)  # what the file gives the target model
        scratch = train_and_score(config(roots["target"], runs, "scratch", args.epochs))
        started = train_and_score(
            config(roots["target"], runs, "init-weights", args.epochs, init_weights=str(foreign))
        )
    report = {
        "scratch": {k: v for k, v in scratch.items() if k != "checkpoint"},
        "init_weights": {k: v for k, v in started.items() if k != "checkpoint"},
        "epochs": args.epochs,
        "source_epochs": args.source_epochs,
        "source_miou": source["miou"],
        "loaded": len(loaded.loaded),
        "left_at_init": len(loaded.initialised),
        "patch_size": args.patch,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
