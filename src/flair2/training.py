"""Training runs: the Lightning Trainer, callbacks, loggers and output layout.

A run writes everything under ``<out_folder>/<out_model_name>/``:
``config.yaml`` (the resolved config), ``checkpoints/best-*.ckpt`` (lowest
validation loss) and ``checkpoints/last.ckpt`` (rewritten after every epoch's
validation, improved or not), ``logs/tensorboard/`` and
``logs/csv/version_N/metrics.csv`` (one version per invocation, resumes included).

Checkpoints are written atomically and carry the random generators' states, so
a run killed at any point resumes (``flair2 train --resume last``) from its last
epoch as if it had not stopped. Several processes (DDP, ``strategy: ddp``) share
the work on one or several machines; logs, checkpoints and plots come from
global rank 0 only.
"""

from __future__ import annotations

import logging
import signal
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

from flair2.callbacks import AtomicCheckpointIO, RandomStateCheckpoint, SkippedPatchCounter
from flair2.config import Config, save_config
from flair2.data.datamodule import FlairDataModule
from flair2.errors import CheckpointError, ConfigError
from flair2.io import remove_stale_temporaries
from flair2.models.checkpoints import (
    guess_configuration,
    map_reference_state_dict,
    read_checkpoint_file,
    shape_report,
)
from flair2.ranks import process_rank
from flair2.task import SegmentationTask

log = logging.getLogger(__name__)

#: Environment variables holding a process's global rank, by launcher: torchrun
#: (and Lightning's own launcher), SLURM's srun, IBM's jsrun.


def quiet_lightning() -> None:
    """Send Lightning's messages through the application's log handlers, once; quiet GDAL.

    Lightning attaches a handler of its own to the "lightning" logger, so every
    message would print twice beside ours; its INFO chatter (accelerators, tips)
    is hidden unless debug logging is on. Processes other than rank 0 keep only
    warnings and errors, so a DDP run prints each message once.
    """
    # Epoch metrics come from torchmetrics, which already sums the states of all
    # processes: Lightning's advice to sync them again does not apply.
    warnings.filterwarnings("ignore", message=r".*recommended to use `self\.log\('(val|train)_")
    # Resuming, or training again into the same run folder, is how flair2 is used.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
    if not logging.getLogger().handlers:
        return
    # GDAL reports a damaged file line by line through rasterio's logger; the error
    # flair2 raises for it already names the file and the fix.
    logging.getLogger("rasterio").setLevel(logging.ERROR)
    lightning_log = logging.getLogger("lightning")
    for handler in list(lightning_log.handlers):
        lightning_log.removeHandler(handler)
    if logging.getLogger().level > logging.DEBUG:
        for name in ("lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)
        if process_rank() != 0:
            logging.getLogger("flair2").setLevel(logging.WARNING)


@dataclass
class TrainResult:
    """Where a training run left its outputs."""

    out_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    best_val_loss: float | None
    epochs: int


def trainer_kwargs(cfg: Config) -> dict[str, Any]:
    """Lightning Trainer settings shared by training and prediction.

    Raises:
        ConfigError: the config asks for a GPU where none is visible.
    """
    accelerator = cfg.accelerator
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"config key 'accelerator': '{accelerator}' but no GPU is visible here; "
            "use --set accelerator=cpu (or auto)"
        )
    strategy = cfg.strategy or "auto"
    if strategy == "ddp":
        # Some parameters never get a gradient (U-TAE's output conv, kept so reference
        # checkpoints load; the fusion terms of the U-Net input stage, which smp's
        # decoder skips): plain DDP would stop with an error about them.
        strategy = "ddp_find_unused_parameters_true"
    return {
        "accelerator": accelerator,
        "devices": cfg.gpus_per_node,
        "num_nodes": cfg.num_nodes,
        "strategy": strategy,
        "precision": cfg.precision,
        "enable_progress_bar": cfg.enable_progress_bar,
    }


def progress_callbacks(cfg: Config) -> list[pl.Callback]:
    if not cfg.enable_progress_bar:
        return []
    return [RichProgressBar(refresh_rate=cfg.progress_rate, leave=True)]


def build_trainer(cfg: Config, out_dir: Path, max_epochs: int | None = None) -> pl.Trainer:
    """A Trainer with checkpointing (best by val_loss + last), early stopping and loggers.

    Checkpoints are written atomically (:class:`~flair2.callbacks.AtomicCheckpointIO`)
    and hold the random states (:class:`~flair2.callbacks.RandomStateCheckpoint`).
    """
    quiet_lightning()
    ckpt_dir = out_dir / "checkpoints"
    best = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best-{epoch:02d}-{val_loss:.4f}",
        monitor="val_loss",
        mode="min",
        save_top_k=1,
        auto_insert_metric_name=True,
    )
    # Lightning (2.6) refreshes a save_last file only when a best file is written in the
    # same step, so an epoch without improvement would leave last.ckpt behind. A second
    # checkpoint without a monitor rewrites checkpoints/last.ckpt after every validation.
    latest = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="last",
        monitor=None,
        save_top_k=1,
        enable_version_counter=False,
    )
    stop = EarlyStopping(monitor="val_loss", mode="min", patience=cfg.early_stopping_patience)
    loggers = [
        # One version folder per invocation, so a resumed run adds its logs beside the
        # first run's instead of overwriting them.
        TensorBoardLogger(save_dir=out_dir / "logs", name="tensorboard"),
        CSVLogger(save_dir=out_dir / "logs", name="csv"),
    ]
    return pl.Trainer(
        **trainer_kwargs(cfg),
        max_epochs=max_epochs if max_epochs is not None else cfg.num_epochs,
        callbacks=[
            best,  # first: trainer.checkpoint_callback, the best checkpoint
            latest,
            stop,
            RandomStateCheckpoint(),
            SkippedPatchCounter(),
            *progress_callbacks(cfg),
        ],
        plugins=[AtomicCheckpointIO()],
        logger=loggers,
        num_sanity_val_steps=0,
        gradient_clip_val=cfg.gradient_clip_val,
        limit_train_batches=cfg.limit_train_batches,
        limit_val_batches=cfg.limit_val_batches,
        log_every_n_steps=1,
        default_root_dir=out_dir,
    )


def _plot_curves(out_dir: Path) -> None:
    """Draw the loss and mIoU curves; a plotting failure never fails a finished training."""
    from flair2.evaluation.curves import plot_training_curves

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


def stop_other_processes(trainer: pl.Trainer) -> None:
    """After a failure on rank 0, end the processes Lightning started beside it.

    They would otherwise wait in a collective operation for a partner that is
    gone (until the 30-minute timeout). Lightning does this itself on Ctrl-C
    only; a failure of another rank is already handled by its process observer.
    """
    launcher = trainer.strategy.launcher
    if isinstance(launcher, _SubprocessScriptLauncher) and trainer.is_global_zero:
        launcher.kill(getattr(signal, "SIGKILL", signal.SIGTERM))


def train(cfg: Config, resume: str | Path | None = None) -> TrainResult:
    """Train the configured model; resume from a checkpoint when given.

    Args:
        cfg: the configuration.
        resume: a checkpoint of this run (``last.ckpt``) to continue from, with
            its epoch counter, optimiser, scheduler and callback states; "last"
            picks ``checkpoints/last.ckpt`` of the output folder.

    Returns:
        The run's output folder, checkpoints and best validation loss.
    """
    quiet_lightning()
    out_dir = cfg.output_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
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
    if process_rank() == 0:
        save_config(cfg, out_dir / "config.yaml")
    trainer = build_trainer(cfg, out_dir)
    log.info("training %s for up to %d epochs; outputs in %s", cfg.arch, cfg.num_epochs, out_dir)
    try:
        trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
    except BaseException:
        stop_other_processes(trainer)
        raise
    if trainer.is_global_zero:
        _plot_curves(out_dir)
    ckpt_cb = trainer.checkpoint_callback
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
