"""The one place that builds a Lightning Trainer: for training, prediction and detection.

:func:`create_trainer` turns :class:`~flair2.settings.TrainerSettings` into a
Trainer (accelerator check, the DDP strategy flair2's models need, the progress
bar); :func:`fit_trainer` adds what a training run needs (checkpoints, early
stopping, loggers). Lightning's own messages go through the application's
handlers (:func:`quiet_lightning`), and a failure on rank 0 ends the processes
Lightning started beside it, and Ctrl-C stays an interrupt
(:func:`handle_trainer_failure`).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher

from flair2.config import Config
from flair2.errors import ConfigError
from flair2.ranks import process_rank
from flair2.settings import TrainerSettings
from flair2.training.callbacks import (
    AtomicCheckpointIO,
    RandomStateCheckpoint,
    SkippedPatchCounter,
)


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


def create_trainer(
    settings: TrainerSettings,
    callbacks: list[pl.Callback] | None = None,
    **kwargs: Any,
) -> pl.Trainer:
    """A Lightning Trainer on the configured devices.

    Args:
        settings: accelerator, devices, nodes, strategy, precision, progress bar.
        callbacks: callbacks of the job (a progress bar is added when enabled).
        **kwargs: any other ``lightning.pytorch.Trainer`` argument.

    Returns:
        The Trainer.

    Raises:
        ConfigError: the settings ask for a GPU where none is visible.
    """
    quiet_lightning()
    accelerator = settings.accelerator
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"config key 'accelerator': '{accelerator}' but no GPU is visible here; "
            "use --set accelerator=cpu (or auto)"
        )
    strategy = settings.strategy or "auto"
    if strategy == "ddp":
        # Some parameters never get a gradient (U-TAE's output conv, kept so reference
        # checkpoints load; the fusion terms of the U-Net input stage, which smp's
        # decoder skips): plain DDP would stop with an error about them.
        strategy = "ddp_find_unused_parameters_true"
    bar: list[pl.Callback] = []
    if settings.enable_progress_bar:
        bar = [RichProgressBar(refresh_rate=settings.progress_rate, leave=True)]
    return pl.Trainer(
        accelerator=accelerator,
        devices=settings.devices,
        num_nodes=settings.num_nodes,
        strategy=strategy,
        precision=settings.precision,
        enable_progress_bar=settings.enable_progress_bar,
        callbacks=[*(callbacks or []), *bar],
        **kwargs,
    )


def fit_trainer(cfg: Config, out_dir: Path, max_epochs: int | None = None) -> pl.Trainer:
    """A training Trainer: checkpoints (best + last), early stopping, loggers.

    The best checkpoint and early stopping follow ``checkpoint_monitor``
    (``val_loss``, lowest, the reference's choice; or ``val_miou``, highest).

    Checkpoints are written atomically (:class:`~flair2.training.callbacks.AtomicCheckpointIO`)
    and hold the random states (:class:`~flair2.training.callbacks.RandomStateCheckpoint`).

    Args:
        cfg: the run's configuration.
        out_dir: the run's folder (``checkpoints/``, ``logs/``).
        max_epochs: epochs to train (default ``num_epochs``).

    Returns:
        The Trainer.
    """
    ckpt_dir = out_dir / "checkpoints"
    monitor = cfg.checkpoint_monitor
    mode = "max" if monitor == "val_miou" else "min"
    best = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best-{epoch:02d}-{" + monitor + ":.4f}",
        monitor=monitor,
        mode=mode,
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
    stop = EarlyStopping(monitor=monitor, mode=mode, patience=cfg.early_stopping_patience)
    loggers = [
        # One version folder per invocation, so a resumed run adds its logs beside the
        # first run's instead of overwriting them.
        TensorBoardLogger(save_dir=out_dir / "logs", name="tensorboard"),
        CSVLogger(save_dir=out_dir / "logs", name="csv"),
    ]
    return create_trainer(
        TrainerSettings.from_config(cfg),
        callbacks=[
            best,  # first: trainer.checkpoint_callback, the best checkpoint
            latest,
            stop,
            RandomStateCheckpoint(),
            SkippedPatchCounter(),
        ],
        max_epochs=max_epochs if max_epochs is not None else cfg.num_epochs,
        plugins=[AtomicCheckpointIO()],
        logger=loggers,
        num_sanity_val_steps=0,
        gradient_clip_val=cfg.gradient_clip_val,
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        limit_train_batches=cfg.limit_train_batches,
        limit_val_batches=cfg.limit_val_batches,
        log_every_n_steps=1,
        default_root_dir=out_dir,
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


@contextlib.contextmanager
def handle_trainer_failure(trainer: pl.Trainer) -> Iterator[None]:
    """Around a ``fit``/``predict`` call: stop the other processes on failure; Ctrl-C stays Ctrl-C.

    Lightning answers Ctrl-C by tearing down and calling ``sys.exit(1)``, with
    SIGINT then ignored: the interrupt is turned back into ``KeyboardInterrupt``
    (the command exits 130 with "interrupted") and SIGINT's default restored.
    """
    try:
        yield
    except SystemExit as exc:
        stop_other_processes(trainer)
        if trainer.interrupted:
            with contextlib.suppress(ValueError):  # not the main thread
                signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt from exc
        raise
    except BaseException:
        stop_other_processes(trainer)
        raise
