"""Exponential moving average of the weights: recursion, validation, checkpoints, resume."""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from conftest import tiny_settings
from flair2.config import config_from_dict
from flair2.data.datamodule import FlairDataModule
from flair2.models import load_checkpoint_weights
from flair2.training import fit_trainer, train
from flair2.training.ema import WeightAverage
from flair2.training.task import SegmentationTask

DECAY = 0.6
#: A short, deterministic run: aerial-only U-Net (BatchNorm buffers included), 4 train
#: patches in batches of 2 (2 optimiser steps an epoch), 2 validation patches.
SETTINGS: dict[str, Any] = {
    "arch": "unet",
    "aerial_metadata": False,
    "ema_decay": DECAY,
    "val_domains": ["D049_2018"],
    "lr": 0.05,
    "num_epochs": 1,
}


def test_recursion_by_hand_and_swap() -> None:
    module = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = WeightAverage(0.9, warmup=False)
    ema.start(module)
    w0 = module[0].weight.detach().clone()
    history = [w0]
    for step in (1, 2):
        with torch.no_grad():
            module[0].weight.add_(float(step))
            module[1].num_batches_tracked.fill_(step)
        history.append(module[0].weight.detach().clone())
        ema.update(module)
    w1, w2 = history[1], history[2]
    expected = 0.9 * (0.9 * w0 + 0.1 * w1) + 0.1 * w2
    shadow = {k: v.clone() for k, v in ema.state_dict().items()}
    assert torch.allclose(shadow["0.weight"], expected, atol=1e-6)
    assert not torch.allclose(shadow["0.weight"], w2)
    assert shadow["1.num_batches_tracked"].item() == 2  # integer buffers are copied
    assert ema.updates == 2
    ema.swap(module)
    assert torch.equal(module[0].weight, shadow["0.weight"])
    assert torch.equal(ema.state_dict()["0.weight"], w2)
    ema.swap(module)
    assert torch.equal(module[0].weight, w2)


def test_warm_up_ramps_the_decay_to_its_ceiling() -> None:
    module = nn.Linear(1, 1, bias=False)
    ema = WeightAverage(0.999)
    ema.start(module)
    decays = []
    for _ in range(3):
        decays.append(ema.current_decay())
        ema.update(module)
    assert decays == pytest.approx([1 / 10, 2 / 11, 3 / 12])
    # The first update moves the shadow 90 % of the way to the weights.
    with torch.no_grad():
        module.weight.fill_(1.0)
    ema.start(module)
    with torch.no_grad():
        module.weight.fill_(11.0)
    ema.update(module)
    assert ema.state_dict()["weight"].item() == pytest.approx(10.0)
    ema.updates = 100_000
    assert ema.current_decay() == 0.999  # the ceiling
    assert WeightAverage(0.999, warmup=False).current_decay() == 0.999


def test_bad_decay_is_refused() -> None:
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(1.0)
    from flair2.errors import ConfigError

    with pytest.raises(ConfigError, match="ema_decay"):
        config_from_dict({"ema_decay": 0.0})


class Recorder(pl.Callback):
    """The model's weights when training starts and after every optimiser step."""

    def __init__(self) -> None:
        self.weights: list[dict[str, torch.Tensor]] = []
        self.val_first_weight: list[tuple[str, torch.Tensor]] = []

    def _snapshot(self, module: SegmentationTask) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in module.model.state_dict().items()}

    def on_train_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.weights.append(self._snapshot(pl_module))

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        self.weights.append(self._snapshot(pl_module))

    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        name, weight = next(pl_module.model.named_parameters())
        self.val_first_weight.append((name, weight.detach().clone()))


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    # Bit-for-bit comparisons of runs need the same summation order.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def first_epoch(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory, one_thread: None):
    """One epoch trained the way ``flair2.training.fit`` does, with a weight recorder."""
    out = tmp_path_factory.mktemp("ema")
    cfg = config_from_dict(tiny_settings(tiny_root, out / "resumed", **SETTINGS))
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = FlairDataModule(cfg)
    dm.setup("fit")
    task = SegmentationTask(cfg, patch_size=dm.patch_size())
    trainer = fit_trainer(cfg, cfg.output_dir())
    recorder = Recorder()
    trainer.callbacks.append(recorder)
    trainer.fit(task, datamodule=dm)
    return {"cfg": cfg, "dm": dm, "task": task, "trainer": trainer, "recorder": recorder}


def _model_part(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}


def _load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=False)


def test_checkpoints_hold_the_hand_computed_average(first_epoch) -> None:
    recorder, task = first_epoch["recorder"], first_epoch["task"]
    assert len(recorder.weights) == 3  # the start and 2 optimiser steps
    w0, w1, w2 = recorder.weights
    ckpt_dir = first_epoch["cfg"].output_dir() / "checkpoints"
    (best,) = ckpt_dir.glob("best-*.ckpt")
    for path in (best, ckpt_dir / "last.ckpt"):
        ckpt = _load(path)
        averaged = _model_part(ckpt["state_dict"])
        trained = _model_part(ckpt["ema"]["trained_state_dict"])
        assert ckpt["ema"]["decay"] == DECAY and ckpt["ema"]["updates"] == 2
        # The warm-up's factors of the two updates: min(0.6, 1/10) and min(0.6, 2/11).
        d1, d2 = 1 / 10, 2 / 11
        differing = 0
        for key, value in averaged.items():
            if value.is_floating_point():
                expected = d2 * (d1 * w0[key] + (1 - d1) * w1[key]) + (1 - d2) * w2[key]
                assert torch.allclose(value, expected, rtol=1e-5, atol=1e-6), key
                differing += int(not torch.allclose(value, w2[key]))
            else:
                assert torch.equal(value, w2[key]), key
            # The raw weights needed to resume are kept beside the average.
            assert torch.equal(trained[key], w2[key]), key
        assert differing > 0.5 * len(averaged)
        # The loss weights are saved unchanged.
        assert torch.equal(ckpt["state_dict"]["criterion.0.weight"], task.criterion[0].weight)
    # Training left the trained (not averaged) weights in the model.
    live = task.model.state_dict()
    assert all(torch.equal(live[k], w2[k]) for k in live)


def test_validation_and_best_checkpoint_use_the_average(first_epoch) -> None:
    cfg, dm, trainer, recorder = (first_epoch[k] for k in ("cfg", "dm", "trainer", "recorder"))
    ckpt_dir = cfg.output_dir() / "checkpoints"
    (best,) = ckpt_dir.glob("best-*.ckpt")
    ckpt = _load(best)
    # The weights validation ran with were the average.
    name, weight = recorder.val_first_weight[0]
    assert torch.equal(weight, _model_part(ckpt["state_dict"])[name])
    assert not torch.equal(weight, recorder.weights[-1][name])
    logged = float(trainer.checkpoint_callback.best_model_score)

    def val_loss(state: dict[str, torch.Tensor]) -> float:
        task = SegmentationTask(config_from_dict({**cfg.to_dict(), "ema_decay": None}), 64)
        task.load_state_dict(state)
        checker = pl.Trainer(
            accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
        )
        return checker.validate(task, datamodule=dm, verbose=False)[0]["val_loss"]

    assert val_loss(ckpt["state_dict"]) == pytest.approx(logged, rel=1e-6)
    raw = {**ckpt["state_dict"], **ckpt["ema"]["trained_state_dict"]}
    # (The warm-up keeps the two close after 2 steps, but not equal.)
    assert val_loss(raw) != pytest.approx(logged, rel=1e-5)
    # Readers of the checkpoint get the average without knowing about it.
    loaded = SegmentationTask.load_from_checkpoint(best, map_location="cpu")
    model = SegmentationTask(cfg, 64).model
    load_checkpoint_weights(model, best)
    for key, value in _model_part(ckpt["state_dict"]).items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
        assert torch.equal(model.state_dict()[key], value), key


def test_resume_continues_the_average(first_epoch, tiny_root: Path) -> None:
    cfg = first_epoch["cfg"]
    out = cfg.output_dir().parent.parent
    two = {**SETTINGS, "num_epochs": 2}
    # Resume (a copy of) the one-epoch run from its last.ckpt for a second epoch ...
    shutil.copytree(cfg.output_dir(), out / "copy" / "run")
    resumed = config_from_dict(tiny_settings(tiny_root, out / "copy", **two))
    result = train(resumed, resume="last")
    # ... and train both epochs in one go.
    whole = train(config_from_dict(tiny_settings(tiny_root, out / "whole", **two)))
    a, b = _load(result.last_checkpoint), _load(whole.last_checkpoint)
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (1, 4)
    assert a["ema"]["updates"] == b["ema"]["updates"] == 4
    for key, value in b["state_dict"].items():
        assert torch.equal(a["state_dict"][key], value), key
    for key, value in b["ema"]["trained_state_dict"].items():
        assert torch.equal(a["ema"]["trained_state_dict"][key], value), key

    # Both validated the same averaged weights to the same losses.
    def val_losses(run: Path, version: int) -> list[str]:
        rows = csv.DictReader((run / "logs" / "csv" / f"version_{version}" / "metrics.csv").open())
        return [r["val_loss"] for r in rows if r["val_loss"]]

    first, second = val_losses(result.out_dir, 0), val_losses(result.out_dir, 1)
    assert len(first) == len(second) == 1
    assert val_losses(whole.out_dir, 0) == first + second
    shutil.rmtree(out / "whole")
    shutil.rmtree(out / "copy")
