"""Inference cost of test-time augmentation and of a 2-model ensemble: seconds per patch.

Runs ``flair2.prediction.patches.predict`` (the code behind ``flair2 predict``) on the
test split of a toy dataset with randomly initialised models of the toy configuration
(the shipped ``toy.yml``: U-T&T, ResNet34 U-Net, a small U-TAE), in four set-ups: one
model, one model with TTA (8 flips/rotations), an ensemble of two models (two
checkpoints, averaged probabilities), and the ensemble with TTA. Each set-up first
predicts one patch untimed (caches, lazy initialisation); then ``--repeats`` rounds
predict the whole split in each set-up, and the fastest run of each set-up counts (the
slower ones lost time to other processes).
Times cover what ``flair2 predict`` reports: reading the inputs, the models, writing
the GeoTIFFs.

Prints one JSON line: ``s_per_patch`` (``one_model``, ``one_model_tta``,
``two_models``, ``two_models_tta``), ``tta_factor`` and ``ensemble_factor`` (against
one model), ``patch_size``, ``patches``, ``threads``, ``device``.

    python bench/ensemble.py               # 128 px toy patches (as `flair2 demo`), 20 test patches
    python bench/ensemble.py --quick       # 64 px, 6 test patches, one round (smoke run)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from flair2.config import Config
from flair2.data.discovery import discover
from flair2.data.records import PatchRecord
from flair2.prediction.patches import predict
from flair2.synthetic import generate_toy_dataset, toy_config
from flair2.training.task import SegmentationTask


def save_random_checkpoint(cfg: Config, patch_size: int, seed: int, path: Path) -> Path:
    """A checkpoint in the layout flair2's training writes, with random weights."""
    torch.manual_seed(seed)
    task = SegmentationTask(cfg, patch_size=patch_size)
    hparams = {"config": cfg.to_dict(), "patch_size": patch_size}
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": hparams}, path)
    return path


def seconds_per_patch(
    cfg: Config, checkpoints: list[Path], out: Path, tta: bool, records: list[PatchRecord]
) -> float:
    """Seconds per patch of one prediction of ``records`` into ``out`` (files replaced)."""
    result = predict(cfg, checkpoints, out, tta=tta, records=records, overwrite=True)
    return result.seconds_per_patch


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 px, 6 test patches, one round")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; the best run counts")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    patch = 64 if args.quick else 128
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "toy"
        toy: dict[str, Any] = {"num_domains": 1, "zones_per_domain": 2, "patches_per_zone": 1}
        if args.quick:
            toy.update(num_test_domains=1, test_patches_per_zone=3, num_dates=4)
        generate_toy_dataset(root, patch_size=patch, seed=0, **toy)
        cfg = toy_config(root, Path(tmp) / "runs", "bench", enable_progress_bar=False)
        a = save_random_checkpoint(cfg, patch, 1, Path(tmp) / "a.ckpt")
        b = save_random_checkpoint(cfg, patch, 2, Path(tmp) / "b.ckpt")
        setups = {
            "one_model": ([a], False),
            "one_model_tta": ([a], True),
            "two_models": ([a, b], False),
            "two_models_tta": ([a, b], True),
        }
        records = discover(cfg, stages=("test",)).test
        for ckpts, tta in setups.values():  # warm-up: caches, lazy initialisation
            seconds_per_patch(cfg, ckpts, Path(tmp) / "warm-up", tta, records[:1])
        # Rounds of the four set-ups, so that a burst of other work slows one round of
        # each rather than every run of one; the fastest run of each counts.
        runs: dict[str, list[float]] = {name: [] for name in setups}
        for _ in range(1 if args.quick else args.repeats):
            for name, (ckpts, tta) in setups.items():
                runs[name].append(seconds_per_patch(cfg, ckpts, Path(tmp) / name, tta, records))
        figures = {name: min(times) for name, times in runs.items()}
        patches = len(records)
    one = figures["one_model"]
    report = {
        "s_per_patch": {k: round(v, 4) for k, v in figures.items()},
        "tta_factor": round(figures["one_model_tta"] / one, 2),
        "ensemble_factor": round(figures["two_models"] / one, 2),
        "patch_size": patch,
        "patches": patches,
        "threads": torch.get_num_threads(),
        "device": "cpu",
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
