"""End to end through the command line: train, resume, predict, evaluate, run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import yaml

from conftest import tiny_settings
from flair2.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def config_file(tiny_root: Path, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump(tiny_settings(tiny_root, tmp_path / "out")))
    return path


def test_train_predict_evaluate(config_file: Path, tiny_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "run"
    assert main(["train", "--config", str(config_file)]) == 0
    ckpts = sorted((out / "checkpoints").glob("best-*.ckpt"))
    assert len(ckpts) == 1 and (out / "checkpoints" / "last.ckpt").is_file()
    assert (out / "config.yaml").is_file()
    assert (out / "logs" / "csv" / "version_0" / "metrics.csv").is_file()
    assert list((out / "logs" / "tensorboard").rglob("events.out.tfevents.*"))
    metrics_csv = (out / "logs" / "csv" / "version_0" / "metrics.csv").read_text()
    assert "val_loss" in metrics_csv and "val_miou" in metrics_csv

    assert main(["predict", "--config", str(config_file), "--checkpoint", str(ckpts[0])]) == 0
    preds = sorted((out / "predictions").glob("PRED_*.tif"))
    aerials = sorted((tiny_root / "flair_2_aerial_test").rglob("IMG_*.tif"))
    assert [p.name[5:] for p in preds] == [a.name[4:] for a in aerials]
    for pred, aerial in zip(preds, aerials):
        with rasterio.open(pred) as p, rasterio.open(aerial) as a:
            assert p.count == 1 and p.dtypes[0] == "uint8" and p.shape == (64, 64)
            assert p.crs == a.crs and p.transform == a.transform
            assert p.compression.name.lower() == "lzw"
            values = p.read(1)
            assert values.max() <= 12
            assert p.colormap(1)[0][:3] == (0xDB, 0x0E, 0x9A)  # building

    assert (
        main(["evaluate", "--config", str(config_file), "--predictions", str(out / "predictions")])
        == 0
    )
    metrics = json.loads((out / "metrics" / "metrics.json").read_text())
    assert 0.0 <= metrics["miou"] <= 1.0 and 0.0 <= metrics["overall_accuracy"] <= 1.0
    assert set(metrics["per_class"]["building"]) >= {"iou", "precision", "recall", "f1"}
    assert list(metrics["per_domain"]) == sorted({a.parts[-4] for a in aerials})
    cm = np.load(out / "metrics" / "confusion_matrix.npy")
    assert cm.shape == (13, 13) and cm.sum() == 64 * 64 * len(aerials)
    for name in ("confusion_matrix.csv", "confusion_matrix.png", "report.md"):
        assert (out / "metrics" / name).is_file()


def test_predict_skips_existing_and_writes_labels_values(config_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "run"
    assert main(["train", "--config", str(config_file)]) == 0
    ckpt = str(out / "checkpoints" / "last.ckpt")
    pred_dir = tmp_path / "preds"
    args = ["predict", "--config", str(config_file), "--checkpoint", ckpt, "--out", str(pred_dir)]
    args += ["--values", "labels"]
    assert main(args) == 0
    first = sorted(pred_dir.glob("PRED_*.tif"))
    with rasterio.open(first[0]) as src:
        assert src.read(1).min() >= 1
    stamp = first[0].stat().st_mtime_ns
    first[1].unlink()  # as if the run had been interrupted before this patch
    assert main(args) == 0
    assert first[0].stat().st_mtime_ns == stamp  # finished files are not rewritten
    assert first[1].is_file()


def test_resume_continues_epochs_optimizer_and_best_score(
    config_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "run"
    settings = ["--set", "optimizer=adamw"]
    assert main(["train", "--config", str(config_file), *settings]) == 0
    first = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert first["epoch"] == 0
    assert (
        main(
            [
                "train",
                "--config",
                str(config_file),
                *settings,
                "--set",
                "num_epochs=2",
                "--resume",
                "last",
            ]
        )
        == 0
    )
    second = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    # Exactly one more epoch ran: last.ckpt is the second epoch's (index 1), written after
    # its validation, with twice the optimiser steps.
    assert second["epoch"] == 1
    assert second["global_step"] == 2 * first["global_step"]
    # AdamW's step counter continued from the first run's state.
    step = lambda ck: next(iter(ck["optimizer_states"][0]["state"].values()))["step"]  # noqa: E731
    assert float(step(second)) == 2 * float(step(first))
    ckpt_state = next(v for k, v in second["callbacks"].items() if k.startswith("ModelCheckpoint"))
    first_state = next(v for k, v in first["callbacks"].items() if k.startswith("ModelCheckpoint"))
    assert ckpt_state["best_model_score"] <= first_state["best_model_score"]
    # The first run's logs are kept beside the resumed run's.
    logs = sorted((out / "logs" / "csv").glob("version_*/metrics.csv"))
    assert len(logs) == 2
    epochs = {row["epoch"] for row in csv.DictReader(logs[1].open()) if row["epoch"]}
    assert epochs == {"1"}


def test_errors_are_one_line_naming_the_key(
    config_file: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["train", "--config", str(config_file), "--set", "sat_patch_size=42"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "config key 'sat_patch_size': must be a multiple of 8 in [8, 112]" in err[0]
    assert main(["train", "--config", str(config_file), "--set", "accelerator=gpu"]) == 2 or (
        torch.cuda.is_available()
    )


def test_main_py_and_run(config_file: Path, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), f"--config_file={config_file}"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "out" / "run"
    assert (out / "metrics" / "metrics.json").is_file()
    assert len(list((out / "predictions").glob("PRED_*.tif"))) == 3
    assert "mIoU" in proc.stdout


def test_toy_and_check_data_commands(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = tmp_path / "toy"
    args = ["toy", "--out", str(root), "--patch-size", "64", "--domains", "2", "--zones", "1"]
    assert main([*args, "--patches", "2", "--test-domains", "1", "--dates", "4"]) == 0
    assert (root / "toy.yml").is_file()
    assert main(["check-data", "--config", str(root / "toy.yml")]) == 0
    capsys.readouterr()
    victim = next((root / "flair_labels_train").rglob("MSK_*.tif"))
    victim.unlink()
    assert main(["check-data", "--config", str(root / "toy.yml")]) == 1
    assert victim.name.replace("MSK", "IMG") in capsys.readouterr().out


def test_model_info_command(config_file: Path, capsys: pytest.CaptureFixture) -> None:
    assert (
        main(["model-info", "--config", str(config_file), "--patch-size", "64", "--dates", "2"])
        == 0
    )
    out = capsys.readouterr().out
    assert "parameters:" in out and "GFLOP per forward" in out and "arch: utt" in out


def test_predict_with_tta_and_probabilities(config_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "run"
    assert main(["train", "--config", str(config_file)]) == 0
    ckpt = str(out / "checkpoints" / "last.ckpt")
    args = ["predict", "--config", str(config_file), "--checkpoint", ckpt]
    assert main([*args, "--out", str(tmp_path / "plain"), "--probabilities"]) == 0
    assert main([*args, "--out", str(tmp_path / "tta"), "--probabilities", "--tta"]) == 0
    probs = sorted((tmp_path / "tta").glob("PROB_*.tif"))
    assert len(probs) == 3
    with rasterio.open(probs[0]) as src:
        stack = src.read().astype(int)
    assert stack.shape == (13, 64, 64)
    assert np.all(np.abs(stack.sum(0) - 255) <= 13)  # rounded probabilities sum to ~255
    with rasterio.open(tmp_path / "plain" / probs[0].name) as src:
        assert not np.array_equal(src.read().astype(int), stack)  # TTA changed them
    assert (tmp_path / "tta" / "predictions.qml").is_file()
