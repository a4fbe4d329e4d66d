"""DDP on the CPU: two processes (gloo) train one epoch and predict, like one process would.

``flair2 run`` (train, predict with the best checkpoint, evaluate) runs as
``python -m flair2.cli`` in a subprocess with ``accelerator: cpu``, ``gpus_per_node: 2``
and ``strategy: ddp``; Lightning starts the second process at the training and the
prediction reuses both.
The dataset has an odd number of validation patches (3) and of test patches (3), so a
sampler that pads the shares with repeats would count a patch twice.

What "equal to one process" means here: a DDP epoch does not train the same weights as
a one-process epoch with the same seed (each process draws its own dropout masks and
BatchNorm statistics from its half of the batch), so the comparison is made on what DDP
must not change: the validation metrics and the predictions of given weights. The
checkpoint the DDP run wrote is validated and predicted again by a single process; the
metrics agree to float32 rounding (the loss is summed in another order: relative
tolerance 1e-5), the mIoU (from an integer confusion matrix) and every predicted pixel
exactly.

The validation loss is, as in the reference, the mean of per-batch losses, each a
class-weighted mean over its batch's pixels: it depends on how patches are grouped
into batches, and two processes group them differently (process 0 gets patches 0
and 2, process 1 patch 1). With one patch per batch the grouping is the same.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pytest
import rasterio
import yaml

from conftest import tiny_settings
from flair2.config import config_from_dict
from flair2.data.datamodule import FlairDataModule, ShareSampler
from flair2.models import load_checkpoint_weights
from flair2.training.task import SegmentationTask

VAL_DOMAIN = "D049_2018"
DDP = {"accelerator": "cpu", "gpus_per_node": 2, "strategy": "ddp"}


def _add_patch(root: Path, source_id: str, new_id: str) -> None:
    """Copy a training patch (image, mask, centroid, metadata) under a new id."""
    image = next(root.glob(f"flair_aerial_train/*/*/img/IMG_{source_id}.tif"))
    mask = next(root.glob(f"flair_labels_train/*/*/msk/MSK_{source_id}.tif"))
    shutil.copy(image, image.with_name(f"IMG_{new_id}.tif"))
    shutil.copy(mask, mask.with_name(f"MSK_{new_id}.tif"))
    for name, key in (
        ("flair-2_centroids_sp_to_patch.json", "IMG_{}.tif"),
        ("flair-2_aerial_metadata.json", "IMG_{}"),
    ):
        path = root / name
        data = json.loads(path.read_text())
        data[key.format(new_id)] = data[key.format(source_id)]
        path.write_text(json.dumps(data))


def _run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="250", PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "flair2.cli", *args],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def ddp_run(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`flair2 run` with two DDP processes: train one epoch, predict, evaluate."""
    base = tmp_path_factory.mktemp("ddp")
    root = base / "data"
    shutil.copytree(tiny_root, root)
    _add_patch(root, "559916", "559917")  # the validation domain now has 3 patches
    settings = tiny_settings(root, base / "out", val_domains=[VAL_DOMAIN], batch_size=1, **DDP)
    config = base / "ddp.yml"
    config.write_text(yaml.safe_dump(settings))
    run = _run_cli(["run", "--config", str(config)], base)
    assert run.returncode == 0, run.stderr[-3000:]
    single = {k: v for k, v in settings.items() if k not in DDP}
    out = base / "out" / "run"
    return {
        "root": root,
        "base": base,
        "out": out,
        "logged": run.stdout + run.stderr,
        "single": config_from_dict({**single, "accelerator": "cpu"}),
    }


def test_ddp_training_logs_once_and_validates_each_patch_once(ddp_run: dict[str, Any]) -> None:
    out: Path = ddp_run["out"]
    # Logs and checkpoints come from rank 0 only: one version, one best, one last.
    assert [p.name for p in (out / "logs" / "csv").iterdir()] == ["version_0"]
    assert [p.name for p in (out / "logs" / "tensorboard").iterdir()] == ["version_0"]
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert len(names) == 2 and names[0].startswith("best-epoch=00") and names[1] == "last.ckpt"
    assert (out / "training_curves.png").is_file()
    # Rank 1 keeps its INFO messages to itself.
    assert ddp_run["logged"].count("training utt for up to 1 epochs") == 1

    rows = [r for r in csv.DictReader((out / "logs/csv/version_0/metrics.csv").open())]
    val = [r for r in rows if r["val_loss"]]
    assert len(val) == 1
    ddp_loss, ddp_miou = float(val[0]["val_loss"]), float(val[0]["val_miou"])

    # The same weights validated by one process over the same 3 patches.
    cfg = ddp_run["single"]
    datamodule = FlairDataModule(cfg)
    datamodule.setup("fit")
    assert len(datamodule.val_dataset) == 3
    task = SegmentationTask(cfg, patch_size=64)
    load_checkpoint_weights(task.model, out / "checkpoints" / "last.ckpt")
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    (single,) = trainer.validate(task, datamodule=datamodule, verbose=False)
    assert ddp_loss == pytest.approx(single["val_loss"], rel=1e-5)
    assert ddp_miou == pytest.approx(single["val_miou"], abs=1e-7)


def test_ddp_prediction_writes_each_patch_once(ddp_run: dict[str, Any]) -> None:
    from flair2.pipeline import evaluate
    from flair2.prediction.patches import predict

    out: Path = ddp_run["out"]
    pred_dir = out / "predictions"
    (best,) = (out / "checkpoints").glob("best-*.ckpt")
    files = sorted(p.name for p in pred_dir.glob("PRED_*.tif"))
    aerials = sorted((ddp_run["root"] / "flair_2_aerial_test").rglob("IMG_*.tif"))
    assert files == [f"PRED_{a.name[4:]}" for a in aerials] and len(files) == 3
    # Each process counted its own writes: 2 + 1, so no patch was written twice.
    logged = ddp_run["logged"]
    assert "predicted 3 patches" in logged
    assert "files written per process (rank order): 2, 1" in logged
    assert not list(pred_dir.glob(".*.tmp"))

    # One process, same checkpoint: the same pixels and the same scores.
    cfg = ddp_run["single"]
    single_dir = ddp_run["base"] / "pred_single"
    result = predict(cfg, best, single_dir)
    assert (result.written, result.per_process) == (3, (3,))
    for name in files:
        with rasterio.open(pred_dir / name) as a, rasterio.open(single_dir / name) as b:
            assert np.array_equal(a.read(), b.read())
    evaluate(cfg, single_dir, ddp_run["base"] / "metrics_single")
    saved = [
        json.loads((folder / "metrics.json").read_text())
        for folder in (out / "metrics", ddp_run["base"] / "metrics_single")
    ]
    assert saved[0].pop("predictions_dir") != saved[1].pop("predictions_dir")
    assert saved[0] == saved[1]  # every score, per class and per domain


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_share_sampler_splits_without_repeats(world: int) -> None:
    for size in range(0, 9):
        dataset = list(range(size))
        shares = [list(ShareSampler(dataset, world, rank)) for rank in range(world)]
        assert sorted(i for share in shares for i in share) == dataset
        assert [len(ShareSampler(dataset, world, r)) for r in range(world)] == [
            len(s) for s in shares
        ]
        assert max(map(len, shares)) - min(map(len, shares)) <= 1
