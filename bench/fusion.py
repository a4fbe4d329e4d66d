"""U-Net, U-TAE and U-T&T with each fusion on the toy data: same epochs, several seeds.

Generates the toy dataset of ``flair2 demo`` (64 px; 48 train, 16 validation, 20 test
patches; data seed 0), then for each seed and each model trains with the demo's
configuration (``src/flair2/synthetic/toy.yml``: 12 epochs, AdamW + cosine, CPU, best
checkpoint by validation mIoU; the tiny model of :data:`flair2.synthetic.TINY_MODEL`:
ResNet-18, a 2-stage U-TAE on 8 px crops), predicts the test split with the best
checkpoint and scores it. Models:

* ``unet``: the aerial-only U-Net (``arch: unet``);
* ``utae``: the Sentinel-2-only U-TAE (``arch: utae``);
* ``utt-reference``, ``utt-gated``, ``utt-late``: U-T&T with each ``fusion``.

Prints one table per figure (mean ± half the range over the seeds, and each seed's
value): the mIoU of the class groups of :data:`flair2.synthetic.CLASS_GROUPS`
(aerial classes 1–9, Sentinel-2-only classes 10–12, all 12), then each class's IoU;
then one JSON line with every run's figures. Seed 2022 is the demo's (``toy.yml``).

    python bench/fusion.py --out fusion-bench         # the demo's configuration, 3 seeds
    python bench/fusion.py --seeds 2022 --models unet utt-late   # a part of it
    python bench/fusion.py --full-size                # 128 px and toy.yml's model (ResNet-34)
    python bench/fusion.py --quick                    # smoke run: 1 epoch, 1 seed, fewer patches
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

from flair2.classes import CLASSES
from flair2.evaluation.evaluate import evaluate_predictions
from flair2.prediction.patches import predict
from flair2.synthetic import (
    CLASS_GROUPS,
    DEMO_PATCH_SIZE,
    TINY_MODEL,
    generate_toy_dataset,
    group_scores,
    toy_config,
)
from flair2.training import train

#: Row name → config keys of the model.
MODELS: dict[str, dict[str, Any]] = {
    "unet": {"arch": "unet"},
    "utae": {"arch": "utae"},
    "utt-reference": {"arch": "utt", "fusion": "reference"},
    "utt-gated": {"arch": "utt", "fusion": "gated"},
    "utt-late": {"arch": "utt", "fusion": "late"},
}
SEEDS = (2022, 2023, 2024)


def run_model(root: Path, out: Path, name: str, seed: int, **keys: Any) -> dict[str, Any]:
    """Train one model on the toy data, predict its test split, return its scores."""
    cfg = toy_config(root, out, f"{name}-seed{seed}", seed=seed, enable_progress_bar=False, **keys)
    result = train(cfg)
    checkpoint = result.best_checkpoint or result.last_checkpoint
    if checkpoint is None:
        raise RuntimeError(f"{name}, seed {seed}: training wrote no checkpoint")
    predictions = result.out_dir / "predictions"
    predict(cfg, checkpoint, predictions, overwrite=True)
    metrics = evaluate_predictions(
        predictions, cfg.data.path_labels_test, result.out_dir / "metrics", cfg.num_classes
    )
    per_class = {c: metrics["per_class"][c]["iou"] for c in metrics["per_class"]}
    return {"miou": metrics["miou"], "groups": group_scores(per_class), "per_class": per_class}


def _cell(values: list[float]) -> str:
    mean = sum(values) / len(values)
    spread = (max(values) - min(values)) / 2.0
    return f"{mean:.3f} ± {spread:.3f}"


def table(runs: dict[str, list[dict[str, Any]]], seeds: list[int]) -> str:
    """Markdown tables: class groups, then per-class IoU (mean ± half range, per seed)."""
    names = list(runs)
    head = "| | " + " | ".join(names) + " |\n| --- |" + " --- |" * len(names)
    lines = ["Mean IoU of the class groups, mean ± half range over seeds " + str(seeds), "", head]
    for group in CLASS_GROUPS:
        cells = [_cell([r["groups"][group] for r in runs[n]]) for n in names]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    for i, seed in enumerate(seeds):
        cells = [f"{runs[n][i]['groups']['all 12 classes']:.3f}" for n in names]
        lines.append(f"| all 12, seed {seed} | " + " | ".join(cells) + " |")
    lines += ["", "IoU per class, mean ± half range over seeds", "", head]
    for number, cls in enumerate(CLASSES[:12], start=1):
        # A class neither in the masks nor predicted (None) is left out, as the mIoU does.
        scored = [[v for r in runs[n] if (v := r["per_class"].get(cls)) is not None] for n in names]
        cells = [_cell(values) if values else "-" for values in scored]
        lines.append(f"| {number}. {cls} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="keep data and runs here")
    parser.add_argument("--quick", action="store_true", help="64 px tiny data, 1 epoch, 1 seed")
    parser.add_argument(
        "--full-size", action="store_true", help="128 px patches and toy.yml's model"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=None, help="default: toy.yml's (12)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    seeds = args.seeds[:1] if args.quick else args.seeds
    extra: dict[str, Any] = {}
    if args.epochs is not None:
        extra["num_epochs"] = args.epochs
    if not args.full_size:
        extra.update(TINY_MODEL)
    if args.quick:
        extra["num_epochs"] = 1
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp)
        root = out / "data"
        if not (root / "flair_aerial_train").is_dir():
            toy: dict[str, Any] = {}
            if args.quick:
                toy = {"num_domains": 3, "zones_per_domain": 1, "patches_per_zone": 4}
                toy.update(num_test_domains=1, test_patches_per_zone=3, num_dates=6)
            size = 128 if args.full_size else DEMO_PATCH_SIZE
            generate_toy_dataset(root, patch_size=size, seed=0, **toy)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.models}
        # Lightning prints model summaries on stdout: keep it for the tables.
        with contextlib.redirect_stdout(sys.stderr):
            for seed in seeds:  # seed by seed: a stopped run leaves whole seeds behind
                for name in args.models:
                    scores = run_model(root, out / "runs", name, seed, **MODELS[name], **extra)
                    runs[name].append(scores)
                    print(f"{name}, seed {seed}: mIoU {scores['miou']:.3f}", file=sys.stderr)
                    if args.out is not None:
                        (out / "runs.json").write_text(json.dumps({"seeds": seeds, "runs": runs}))
    print(table(runs, seeds))
    report = {
        "seeds": seeds,
        "runs": runs,
        "patch_size": 128 if args.full_size else DEMO_PATCH_SIZE,
        "overrides": extra,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
