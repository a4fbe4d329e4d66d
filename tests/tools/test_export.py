"""flair2 export-weights: safetensors + config + model card, and the folder as --checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from safetensors import safe_open

from conftest import tiny_settings
from flair2.cli import main
from flair2.config import config_from_dict, load_config
from flair2.errors import CheckpointError
from flair2.prediction.patches import predict
from flair2.tools.export import export_weights
from flair2.training.task import SegmentationTask


@pytest.fixture
def run_checkpoint(tiny_root: Path, tmp_path: Path) -> Path:
    """A checkpoint as training writes it (RUN/checkpoints/best.ckpt) and the run's metrics."""
    cfg = config_from_dict(tiny_settings(tiny_root, tmp_path / "out", arch="unet"))
    torch.manual_seed(0)
    task = SegmentationTask(cfg, patch_size=64)
    for module in task.model.modules():  # non-trivial statistics: every tensor matters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "metrics").mkdir()
    path = run / "checkpoints" / "best.ckpt"
    torch.save(
        {
            "state_dict": task.state_dict(),
            "hyper_parameters": {"config": cfg.to_dict(), "patch_size": 64},
            "epoch": 3,
        },
        path,
    )
    per_class = {name: {"iou": 0.5 + i / 100} for i, name in enumerate(["building", "water"])}
    metrics = {"miou": 0.5123, "miou_classes": 12, "num_patches": 3, "per_class": per_class}
    (run / "metrics" / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    return path


def _classes(folder: Path) -> dict[str, np.ndarray]:
    found = {}
    for path in sorted(folder.glob("PRED_*.tif")):
        with rasterio.open(path) as src:
            found[path.name] = src.read(1)
    return found


def test_export_folder_predicts_as_the_checkpoint(run_checkpoint: Path, tmp_path: Path) -> None:
    out = export_weights(run_checkpoint, tmp_path / "export")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["README.md", "config.yaml", "model.safetensors"]
    with safe_open(str(out / "model.safetensors"), framework="pt") as handle:
        keys = set(handle.keys())
        assert handle.metadata()["patch_size"] == "64"
    assert "arch_vhr.encoder.conv1.weight" in keys
    assert not any(k.startswith(("criterion", "model.")) for k in keys)  # the network only
    cfg = load_config(out / "config.yaml")
    assert cfg.arch == "unet"
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "0.5123" in card and "| water | 0.5100 |" in card and "resnet18" in card
    # predict takes the folder as --checkpoint and writes the same classes.
    from_ckpt = predict(cfg, run_checkpoint, tmp_path / "a")
    from_folder = predict(cfg, out, tmp_path / "b")
    assert from_ckpt.written == from_folder.written == 3
    a, b = _classes(tmp_path / "a"), _classes(tmp_path / "b")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_cli_export_and_a_checkpoint_without_config(run_checkpoint: Path, tmp_path: Path) -> None:
    target = tmp_path / "cli-export"
    args = ["export-weights", "--checkpoint", str(run_checkpoint), "--out", str(target)]
    assert main(args) == 0
    assert (target / "model.safetensors").is_file()
    bare = tmp_path / "bare.pt"
    torch.save({"arch_vhr.encoder.conv1.weight": torch.zeros(1)}, bare)
    with pytest.raises(CheckpointError, match="stores no configuration"):
        export_weights(bare, tmp_path / "x")
