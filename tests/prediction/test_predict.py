"""Prediction's fast path (channels-last U-Net, logits' argmax, no auxiliary head)
writes the classes of the straightforward one: a plain forward and a softmax."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from conftest import tiny_settings
from flair2.config import Config, config_from_dict
from flair2.data.batch import normalize_batch
from flair2.data.datamodule import FlairDataModule
from flair2.models import set_channels_last
from flair2.prediction import patches as predict_module
from flair2.prediction.patches import predict
from flair2.training.task import SegmentationTask


@pytest.fixture
def setup(tiny_root: Path, tmp_path: Path) -> tuple[Config, Path]:
    cfg = config_from_dict(tiny_settings(tiny_root, tmp_path / "out"))
    torch.manual_seed(0)
    task = SegmentationTask(cfg, patch_size=64)
    # Non-trivial batch-norm statistics, so that the layout of every layer matters.
    for module in task.model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    checkpoint = tmp_path / "weights.pt"
    torch.save(task.model.state_dict(), checkpoint)
    return cfg, checkpoint


def straightforward(cfg: Config, checkpoint: Path) -> dict[str, np.ndarray]:
    """patch id → (K, H, W) softmax of a default-order fp32 forward, auxiliary head included."""
    cfg = dataclasses.replace(cfg, channels_last=False)
    dm = FlairDataModule(cfg)
    dm.setup("predict")
    task = SegmentationTask(cfg, patch_size=64).eval()
    task.model.load_state_dict(torch.load(checkpoint, weights_only=True))
    out = {}
    with torch.inference_mode():
        for batch in dm.predict_dataloader():
            probs = task(normalize_batch(batch)).logits.softmax(1)
            out.update(zip(batch["patch_id"], probs.numpy(), strict=True))
    return out


def read_classes(folder: Path) -> dict[str, np.ndarray]:
    found = {}
    for path in sorted(folder.glob("PRED_*.tif")):
        with rasterio.open(path) as src:
            found[path.stem[len("PRED_") :]] = src.read(1)
    return found


def test_fast_path_writes_the_straightforward_classes(
    setup: tuple[Config, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, checkpoint = setup
    assert cfg.channels_last == "auto" and cfg.channels_last_for("predict")
    assert not cfg.channels_last_for("fit")
    expected = straightforward(cfg, checkpoint)
    assert len(expected) == 3
    layouts: list[bool] = []

    def spy(model: torch.nn.Module, enabled: bool) -> None:
        layouts.append(enabled)
        set_channels_last(model, enabled)

    monkeypatch.setattr(predict_module, "set_channels_last", spy)
    fast = predict(cfg, checkpoint, tmp_path / "fast")
    plain = predict(dataclasses.replace(cfg, channels_last=False), checkpoint, tmp_path / "plain")
    assert layouts == [True, False]
    assert fast.written == plain.written == 3
    for folder in ("fast", "plain"):
        classes = read_classes(tmp_path / folder)
        assert set(classes) == set(expected)
        for patch_id, probs in expected.items():
            np.testing.assert_array_equal(classes[patch_id], probs.argmax(0))


def test_probability_files_are_the_straightforward_softmax(
    setup: tuple[Config, Path], tmp_path: Path
) -> None:
    cfg, checkpoint = setup
    expected = straightforward(cfg, checkpoint)
    predict(cfg, checkpoint, tmp_path / "p", probabilities=True)
    for patch_id, probs in expected.items():
        with rasterio.open(tmp_path / "p" / f"PROB_{patch_id}.tif") as src:
            stored = src.read().astype(int)
        # uint8 round(p·255): off by at most one step from the fp32 softmax.
        assert np.abs(stored - np.round(probs * 255)).max() <= 1
