"""The training Trainer: the monitored figure and gradient accumulation come from the config."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from flair2.training.trainer import fit_trainer


@pytest.mark.parametrize(("monitor", "mode"), [("val_loss", "min"), ("val_miou", "max")])
def test_checkpoint_monitor_picks_best_and_early_stopping(
    tiny_config, tmp_path: Path, monitor: str, mode: str
) -> None:
    cfg = tiny_config(checkpoint_monitor=monitor, accumulate_grad_batches=3)
    trainer = fit_trainer(cfg, tmp_path)
    best = trainer.checkpoint_callback
    assert isinstance(best, ModelCheckpoint)
    assert (best.monitor, best.mode) == (monitor, mode)
    assert monitor in best.filename
    stops = [c for c in trainer.callbacks if isinstance(c, EarlyStopping)]
    assert [(s.monitor, s.mode) for s in stops] == [(monitor, mode)]
    assert trainer.accumulate_grad_batches == 3


def test_default_monitor_is_the_reference_validation_loss(tiny_config, tmp_path: Path) -> None:
    trainer = fit_trainer(tiny_config(), tmp_path)
    assert trainer.checkpoint_callback.monitor == "val_loss"
    assert trainer.accumulate_grad_batches == 1
