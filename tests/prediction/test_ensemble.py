"""Ensembles: several checkpoints, each with its own model and inputs, averaged with weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
import yaml

from conftest import tiny_settings
from flair2.classes import CLASSES
from flair2.cli import main
from flair2.config import Config
from flair2.data.datamodule import FlairDataModule
from flair2.data.discovery import Splits, discover
from flair2.errors import CheckpointError, ConfigError
from flair2.models import load_checkpoint_weights
from flair2.prediction.ensemble import build_ensemble
from flair2.prediction.members import load_members, normalised_weights
from flair2.prediction.patches import predict
from flair2.training.task import SegmentationTask


@pytest.fixture(autouse=True)
def one_thread() -> Any:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _save(path: Path, cfg: Config, seed: int, *, patch: int = 64, stored: bool = True) -> Path:
    """A checkpoint as flair2's training writes it (or, without ``stored``, a bare one)."""
    torch.manual_seed(seed)
    task = SegmentationTask(cfg, patch_size=patch)
    raw: dict[str, Any] = {"state_dict": task.state_dict(), "epoch": 3}
    if stored:
        raw["hyper_parameters"] = {"config": cfg.to_dict(), "patch_size": patch}
    torch.save(raw, path)
    return path


def _first_batch(loader: Any, datamodule: Any) -> dict[str, Any]:
    return datamodule.on_after_batch_transfer(next(iter(loader)), 0)


def _single_probabilities(cfg: Config, ckpt: Path, tta: bool = False) -> torch.Tensor:
    """Probabilities of the first batch of the test split, the single-checkpoint way."""
    records = discover(cfg, stages=("test",)).test
    dm = FlairDataModule(cfg, splits=Splits(test=records))
    dm.setup("predict")
    task = SegmentationTask(cfg, patch_size=dm.patch_size())
    load_checkpoint_weights(task.model, ckpt)
    with torch.no_grad():
        return task.eval().predict_probabilities(_first_batch(dm.predict_dataloader(), dm), tta)


def _ensemble_probabilities(
    cfg: Config, ckpts: list[Path], weights: list[float] | None = None, tta: bool = False
) -> tuple[torch.Tensor, Any]:
    records = discover(cfg, stages=("test",)).test
    task, dm = build_ensemble(cfg, ckpts, records, weights)
    with torch.no_grad():
        batch = _first_batch(dm.predict_dataloader(), dm)
        return task.eval().ensemble_probabilities(batch["views"], tta), dm


def _read(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def test_two_identical_checkpoints_equal_one(tiny_config, tmp_path: Path) -> None:
    cfg = tiny_config()
    ckpt = _save(tmp_path / "a.ckpt", cfg, seed=1)
    single = _single_probabilities(cfg, ckpt)
    pair, dm = _ensemble_probabilities(cfg, [ckpt, ckpt])
    assert len(dm.dataset.views) == 1  # one reading of the files for both
    assert single.shape == (2, 13, 64, 64)
    assert torch.allclose(pair, single, rtol=0, atol=1e-6)
    # Through the files: the PRED (and PROB) files are the same.
    one = predict(cfg, ckpt, tmp_path / "one", probabilities=True)
    two = predict(cfg, [ckpt, ckpt], tmp_path / "two", probabilities=True)
    assert one.written == two.written == 3
    assert two.seconds_per_patch == pytest.approx(two.seconds / 3)
    for pred in sorted((tmp_path / "one").glob("P*_*.tif")):
        assert np.array_equal(_read(pred), _read(tmp_path / "two" / pred.name)), pred.name


def test_weights_are_normalised() -> None:
    assert normalised_weights(None, 4) == [0.25] * 4
    assert normalised_weights([2, 1, 1], 3) == [0.5, 0.25, 0.25]
    assert normalised_weights([0, 5], 2) == [0.0, 1.0]
    with pytest.raises(ConfigError, match=r"--weights: 1 value\(s\) for 2 checkpoint"):
        normalised_weights([1.0], 2)
    for bad in ([1.0, -1.0], [0.0, 0.0], [1.0, float("nan")]):
        with pytest.raises(ConfigError, match="--weights"):
            normalised_weights(bad, 2)


def test_two_architectures_each_with_its_inputs_and_weights(tiny_config, tmp_path: Path) -> None:
    # U-T&T, ResNet18 U-Net, cloud filter and monthly means; one patch per batch (cheap TTA).
    cfg_a = tiny_config(batch_size_inference=1)
    # Another encoder and decoder, fed with the raw, unfiltered series.
    cfg_b = tiny_config(
        batch_size_inference=1,
        encoder_name="mobilenet_v2",
        decoder_name="fpn",
        filter_clouds=False,
        average_month=False,
    )
    a = _save(tmp_path / "a.ckpt", cfg_a, seed=1)
    b = _save(tmp_path / "b.ckpt", cfg_b, seed=2)
    # --config describes model A; B brings its own settings, and its own view of the patches.
    # Each member averages its own test-time augmentation, then the members are weighed.
    mixed, dm = _ensemble_probabilities(cfg_a, [a, b], weights=[1.0, 3.0], tta=True)
    assert len(dm.dataset.views) == 2
    prob_a = _single_probabilities(cfg_a, a, tta=True)
    prob_b = _single_probabilities(cfg_b, b, tta=True)
    assert not torch.allclose(prob_a, prob_b, atol=1e-3)
    assert torch.allclose(mixed, 0.25 * prob_a + 0.75 * prob_b, rtol=0, atol=1e-6)
    assert torch.allclose(mixed.sum(1), torch.ones(1, 64, 64), atol=1e-5)


def test_checkpoint_without_settings_takes_the_command_config(tiny_config, tmp_path: Path) -> None:
    cfg = tiny_config()
    bare = _save(tmp_path / "bare.pt", cfg, seed=1, stored=False)
    own = _save(tmp_path / "own.ckpt", tiny_config(filter_clouds=False), seed=2)
    members = load_members(cfg, [bare, own])
    assert [m.own_config for m in members] == [False, True]
    assert members[0].cfg is cfg and members[1].cfg.filter_clouds is False
    assert members[1].patch_size == 64
    # Run settings always come from --config.
    assert members[1].cfg.data == cfg.data and members[1].cfg.batch_size_inference == 2


def test_members_of_different_classes_are_refused(tiny_config, tmp_path: Path) -> None:
    cfg = tiny_config()
    twelve = tiny_config(
        num_classes=12,
        out_conv=[16, 12],
        weights_aerial_satellite={name: [1.0, 1.0] for name in CLASSES[:12]},
    )
    a = _save(tmp_path / "thirteen.ckpt", cfg, seed=1)
    b = _save(tmp_path / "twelve.ckpt", twelve, seed=1)
    with pytest.raises(CheckpointError) as info:
        load_members(cfg, [a, b])
    message = str(info.value)
    assert "thirteen.ckpt (13 classes)" in message and "twelve.ckpt (12 classes)" in message
    with pytest.raises(CheckpointError, match=r"twelve\.ckpt predicts 12 classes.*13"):
        load_members(cfg, [b, b])


def test_a_member_trained_on_other_patches_is_refused(tiny_config, tmp_path: Path) -> None:
    cfg = tiny_config()
    a = _save(tmp_path / "a.ckpt", cfg, seed=1)
    big = _save(tmp_path / "big.ckpt", cfg, seed=1, patch=128)
    records = discover(cfg, stages=("test",)).test
    with pytest.raises(CheckpointError, match=r"big\.ckpt was trained on 128 px.*64 px"):
        build_ensemble(cfg, [a, big], records)


def test_predict_command_with_two_checkpoints(tiny_root: Path, tmp_path: Path, capsys) -> None:
    settings = tiny_settings(tiny_root, tmp_path / "out")
    config = tmp_path / "tiny.yml"
    config.write_text(yaml.safe_dump(settings))
    cfg_b = dict(settings, arch="unet", aerial_metadata=False)
    from flair2.config import config_from_dict

    a = _save(tmp_path / "a.ckpt", config_from_dict(settings), seed=1)
    b = _save(tmp_path / "b.ckpt", config_from_dict(cfg_b), seed=2)
    base = ["predict", "--config", str(config), "--checkpoint", str(a), "--checkpoint", str(b)]
    out = tmp_path / "ens"
    assert main([*base, "--weights", "1", "3", "--out", str(out)]) == 0
    preds = sorted(out.glob("PRED_*.tif"))
    assert len(preds) == 3
    assert _read(preds[0]).shape == (1, 64, 64)
    bad = tmp_path / "bad"
    assert main([*base, "--weights", "1", "--out", str(bad)]) == 2
    assert "--weights: 1 value(s) for 2 checkpoint(s)" in capsys.readouterr().err
    assert not bad.exists()  # refused before anything was written
