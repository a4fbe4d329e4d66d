"""Training runs: ``train()`` and the output layout of a run.

A run writes everything under ``<out_folder>/<out_model_name>/``:
``config.yaml`` (the resolved config), ``checkpoints/best-*.ckpt`` (lowest
validation loss, or highest validation mIoU with ``checkpoint_monitor: val_miou``)
and ``checkpoints/last.ckpt`` (rewritten after every epoch's validation, improved
or not), ``logs/tensorboard/`` and
``logs/csv/version_N/metrics.csv`` (one version per invocation, resumes included).

Checkpoints are written atomically and carry the random generators' states, so
a run killed at any point resumes (``flair2 train --resume last``) from its last
epoch as if it had not stopped. Several processes (DDP, ``strategy: ddp``) share
the work on one or several machines; logs, checkpoints and plots come from
global rank 0 only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint

from flair2.config import Config, save_config
from flair2.data.datamodule import FlairDataModule
from flair2.errors import CheckpointError, ConfigError, UnsafeCheckpointError
from flair2.io import LOCK_NAME, check_output_outside, output_lock, remove_stale_temporaries
from flair2.models.aerial_init import load_aerial_weights
from flair2.models.checkpoint_files import (
    checkpoint_safe_globals,
    checkpoints_trusted,
    read_checkpoint_file,
)
from flair2.models.checkpoints import (
    guess_configuration,
    map_reference_state_dict,
    shape_report,
)
from flair2.models.foreign import load_foreign_weights
from flair2.ranks import process_rank
from flair2.training.task import SegmentationTask
from flair2.training.trainer import fit_trainer, handle_trainer_failure, quiet_lightning
from flair2.viz.curves import plot_training_curves

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """Where a training run left its outputs."""

    out_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    best_val_loss: float | None
    epochs: int


def _plot_curves(out_dir: Path) -> None:
    """Draw the loss and mIoU curves; a plotting failure never fails a finished training."""
    try:
        plot_training_curves(out_dir / "logs", out_dir / "training_curves.png")
    except Exception as exc:  # any plotting problem is only worth a warning
        log.warning("could not draw the training curves: %s", exc)


def check_resume_checkpoint(path: Path, task: SegmentationTask) -> None:
    """Make sure a checkpoint can continue this run before Lightning loads it.

    Raises:
        CheckpointError: unreadable or truncated, not a training checkpoint (no
            optimiser or loop state), or weights of another model (the message
            says which keys differ and what the checkpoint looks like).
    """
    try:
        raw = read_checkpoint_file(path)
    except UnsafeCheckpointError:
        raise
    except CheckpointError as exc:
        raise CheckpointError(
            f"--resume: {exc}; the file is damaged or truncated: resume from another "
            "checkpoint of the run (checkpoints/best-*.ckpt) or start it again"
        ) from None
    state = raw.get("state_dict")
    if not isinstance(state, Mapping) or "loops" not in raw or "optimizer_states" not in raw:
        raise CheckpointError(
            f"--resume: {path} is not a flair2 training checkpoint (no optimiser or loop state): "
            "resume from the run's checkpoints/last.ckpt, or start a new run"
        )
    report = shape_report(state, task.state_dict())
    if report:
        guess = guess_configuration(map_reference_state_dict(state))
        hint = ", ".join(f"{k}={v}" for k, v in guess.items())
        raise CheckpointError(
            f"--resume: checkpoint {path} does not fit the configured model ({report})"
            + (f"; it looks like a checkpoint of {hint}" if hint else "")
            + "; resume with the configuration the run was trained with (its config.yaml)"
        )


def train(cfg: Config, resume: str | Path | None = None) -> TrainResult:
    """Train the configured model; resume from a checkpoint when given.

    Args:
        cfg: the configuration.
        resume: a checkpoint of this run (``last.ckpt``) to continue from, with
            its epoch counter, optimiser, scheduler and callback states; "last"
            picks ``checkpoints/last.ckpt`` of the output folder.

    Returns:
        The run's output folder, checkpoints and best monitored score
        (``best_val_loss``: the validation loss, or mIoU with
        ``checkpoint_monitor: val_miou``).
    """
    quiet_lightning()
    out_dir = cfg.output_dir()
    check_output_outside(
        out_dir,
        cfg.data.inputs(),
        name="config keys 'out_folder'/'out_model_name'",
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    # A second run into the same folder would interleave checkpoints and logs.
    lock = (
        output_lock(out_dir / LOCK_NAME, "flair2 train") if process_rank() == 0 else nullcontext()
    )
    with lock:
        return _train(cfg, resume, out_dir)


def _train(cfg: Config, resume: str | Path | None, out_dir: Path) -> TrainResult:
    ckpt_dir = out_dir / "checkpoints"
    ckpt_path: str | None = None
    if resume is not None:
        ckpt_path = str(ckpt_dir / "last.ckpt") if str(resume) == "last" else str(resume)
        if not Path(ckpt_path).is_file():
            raise ConfigError(
                f"--resume: checkpoint {ckpt_path} not found"
                + (
                    "; nothing to resume: start the run without --resume"
                    if resume == "last"
                    else ""
                )
            )
    if process_rank() == 0:
        # Half-written checkpoints of a killed run: the complete ones are intact.
        for stale in remove_stale_temporaries(ckpt_dir, "*.ckpt"):
            log.info("removed %s, left by an interrupted checkpoint write", stale.name)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = FlairDataModule(cfg)
    datamodule.setup("fit")
    task = SegmentationTask(cfg, patch_size=datamodule.patch_size())
    if ckpt_path is not None:
        check_resume_checkpoint(Path(ckpt_path), task)
    else:
        # A resumed run has its own weights; a new one may start from other files:
        # a foreign checkpoint (IGN's layouts), then a trained U-Net's aerial network.
        if cfg.init_weights:
            load_foreign_weights(task.model, cfg.init_weights, cfg.init_weights_classes)
        if cfg.init_aerial_from:
            load_aerial_weights(task.model, cfg.init_aerial_from)
    if process_rank() == 0:
        save_config(cfg, out_dir / "config.yaml")
    trainer = fit_trainer(cfg, out_dir)
    log.info("training %s for up to %d epochs; outputs in %s", cfg.arch, cfg.num_epochs, out_dir)
    with handle_trainer_failure(trainer), checkpoint_safe_globals():
        # Lightning reads the resumed file itself: as safely as read_checkpoint_file
        # did in check_resume_checkpoint (it refused it unless trusted).
        trainer.fit(
            task,
            datamodule=datamodule,
            ckpt_path=ckpt_path,
            weights_only=not checkpoints_trusted(),
        )
    if trainer.is_global_zero:
        _plot_curves(out_dir)
    ckpt_cb = trainer.checkpoint_callback
    if not isinstance(ckpt_cb, ModelCheckpoint):
        ckpt_cb = None
    best = Path(ckpt_cb.best_model_path) if ckpt_cb and ckpt_cb.best_model_path else None
    last = out_dir / "checkpoints" / "last.ckpt"
    score = ckpt_cb.best_model_score if ckpt_cb else None
    return TrainResult(
        out_dir=out_dir,
        best_checkpoint=best,
        last_checkpoint=last if last.is_file() else None,
        best_val_loss=float(score) if score is not None else None,
        epochs=trainer.current_epoch,
    )
