"""init_weights in a training run: the model starts from the file; --resume ignores it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from conftest import tiny_settings
from flair2.config import config_from_dict
from flair2.errors import CheckpointError
from flair2.training import train
from flair2.training.model import build_model


def test_training_starts_from_the_file_and_resume_ignores_it(
    tiny_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = tiny_settings(tiny_root, tmp_path / "out", arch="unet", aerial_metadata=False)
    cfg = config_from_dict(settings)
    torch.manual_seed(5)
    source = build_model(cfg, patch_size=64).state_dict()
    key = "arch_vhr.encoder.bn1.num_batches_tracked"
    source[key] = torch.tensor(1000)  # a count no fresh model has
    foreign = tmp_path / "flair1.pth"  # FLAIR-1's layout: the smp network as seg_model
    prefix = "arch_vhr."
    torch.save({"seg_model." + k[len(prefix) :]: v for k, v in source.items()}, foreign)
    started = config_from_dict({**settings, "init_weights": str(foreign), "num_epochs": 1})
    with caplog.at_level(logging.INFO, logger="flair2.models.foreign"):
        result = train(started)
    assert "layout flair-1" in caplog.text and "left at their initialisation" in caplog.text
    assert result.last_checkpoint is not None
    # One epoch later the BatchNorm counter has moved on from the file's, not from zero.
    ckpt = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)
    steps = int(ckpt["global_step"])
    assert steps > 0
    assert int(ckpt["state_dict"]["model." + key]) == 1000 + steps
    # A resumed run keeps its own weights: the file is not read again.
    foreign.unlink()
    caplog.clear()
    two = config_from_dict({**settings, "init_weights": str(foreign), "num_epochs": 2})
    train(two, resume="last")
    assert "layout" not in caplog.text


def test_a_missing_init_weights_file_stops_the_run(tiny_root: Path, tmp_path: Path) -> None:
    settings = tiny_settings(tiny_root, tmp_path / "out", arch="unet", aerial_metadata=False)
    cfg = config_from_dict({**settings, "init_weights": str(tmp_path / "nowhere.pth")})
    with pytest.raises(CheckpointError, match="init_weights: .*nowhere.pth"):
        train(cfg)
