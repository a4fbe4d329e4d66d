"""Training runs: the Lightning Trainer, callbacks, loggers and output layout.

A run writes everything under ``<out_folder>/<out_model_name>/``:
``config.yaml`` (the resolved config), ``checkpoints/best-*.ckpt`` (lowest
validation loss) and ``checkpoints/last.ckpt``, ``logs/tensorboard/`` and
``logs/csv/version_N/metrics.csv`` (one version per invocation, resumes included).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from flair2.config import Config, save_config
from flair2.data.datamodule import FlairDataModule
from flair2.errors import ConfigError
from flair2.task import SegmentationTask

log = logging.getLogger(__name__)


def quiet_lightning() -> None:
    """Send Lightning's messages through the application's log handlers, once.

    Lightning attaches a handler of its own to the "lightning" logger, so every
    message would print twice beside ours; its INFO chatter (accelerators, tips)
    is hidden unless debug logging is on.
    """
    if not logging.getLogger().handlers:
        return
    lightning_log = logging.getLogger("lightning")
    for handler in list(lightning_log.handlers):
        lightning_log.removeHandler(handler)
    if logging.getLogger().level > logging.DEBUG:
        for name in ("lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)


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
    """A Trainer with checkpointing (best by val_loss + last), early stopping and loggers."""
    quiet_lightning()
    ckpt_dir = out_dir / "checkpoints"
    best = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best-{epoch:02d}-{val_loss:.4f}",
        monitor="val_loss",
        mode="min",
        save_top_k=1,
        save_last=True,
        auto_insert_metric_name=True,
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
        callbacks=[best, stop, *progress_callbacks(cfg)],
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
    out_dir = cfg.output_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path: str | None = None
    if resume is not None:
        ckpt_path = (
            str(out_dir / "checkpoints" / "last.ckpt") if str(resume) == "last" else str(resume)
        )
        if not Path(ckpt_path).is_file():
            raise ConfigError(f"--resume: checkpoint {ckpt_path} not found")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule = FlairDataModule(cfg)
    datamodule.setup("fit")
    task = SegmentationTask(cfg, patch_size=datamodule.patch_size())
    save_config(cfg, out_dir / "config.yaml")
    trainer = build_trainer(cfg, out_dir)
    log.info("training %s for up to %d epochs; outputs in %s", cfg.arch, cfg.num_epochs, out_dir)
    trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path)
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
