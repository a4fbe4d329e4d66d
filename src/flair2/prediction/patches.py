"""Predict the test patches: one georeferenced ``PRED_<id>.tif`` per patch.

Files are written atomically on a background thread and read back before they
take their final name, so the model never waits for the disk and an interrupted
or failed run leaves no broken file; a re-run skips the patches whose files
exist, once the folder's record (:mod:`flair2.prediction.run_record`) shows they
come from the same checkpoint and settings. A lock file keeps a second run out
of the folder while one writes it.

Under DDP every process predicts its own share of the patches (Lightning's
sampler for prediction repeats none), writes their files itself and counts
them; the counts are added up at the end, so the summary covers the whole run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import rasterio
import torch
import torch.distributed as dist

from flair2.config import Config
from flair2.data.datamodule import FlairDataModule
from flair2.data.discovery import Splits, discover
from flair2.data.records import PatchRecord
from flair2.errors import ConfigError
from flair2.formats import Values
from flair2.io import LOCK_NAME, check_output_outside, output_lock, remove_stale_temporaries
from flair2.models import load_checkpoint_weights, set_channels_last
from flair2.prediction.ensemble import EnsembleDataModule, EnsembleTask, build_ensemble
from flair2.prediction.members import normalised_weights
from flair2.prediction.qgis import write_qml
from flair2.prediction.run_record import check_and_write_record, run_record
from flair2.prediction.writer import AsyncWriter, is_done, prediction_path, write_prediction
from flair2.ranks import process_rank
from flair2.settings import TrainerSettings
from flair2.training.task import SegmentationTask
from flair2.training.trainer import create_trainer, handle_trainer_failure, quiet_lightning

log = logging.getLogger(__name__)


@dataclass
class PredictResult:
    """What a prediction run did.

    Attributes:
        out_dir: the predictions folder.
        written: files written (all processes together).
        skipped: patches skipped because their files already existed.
        seconds: wall-clock time of the prediction loop.
        unreadable: patches left out because their inputs could not be read
            (``skip_invalid_patches``), all processes together.
        per_process: files written by each process (one entry without DDP).
    """

    out_dir: Path
    written: int
    skipped: int
    seconds: float
    unreadable: int = 0
    per_process: tuple[int, ...] = ()

    @property
    def patches_per_second(self) -> float:
        """Files written per second of the loop; NaN when no time was measured."""
        return self.written / self.seconds if self.seconds > 0 else float("nan")

    @property
    def seconds_per_patch(self) -> float:
        """Wall-clock seconds per written file: what an inference budget is counted in."""
        return self.seconds / self.written if self.written > 0 else float("nan")


class PatchWriter(pl.Callback):
    """Writes each predicted patch as a GeoTIFF with its aerial patch's CRS and transform."""

    def __init__(
        self,
        out_dir: Path,
        records: list[PatchRecord],
        *,
        values: Values = "model",
        probabilities: bool = False,
    ) -> None:
        self.out_dir = out_dir
        self.aerial_by_id = {r.patch_id: r.aerial for r in records}
        self.values = values
        self.probabilities = probabilities
        self.writer: AsyncWriter | None = None
        #: Files this process submitted for writing.
        self.count = 0
        #: Messages of the samples this process could not read (skip_invalid_patches).
        self.unreadable: list[str] = []

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Start the background writer and reset this process's counts."""
        self.writer = AsyncWriter()
        self.count = 0
        self.unreadable = []

    def on_predict_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Queue one GeoTIFF per patch: argmax of the (B, K, H, W) scores (and PROB if asked)."""
        if self.writer is None:
            raise RuntimeError("PatchWriter: predict did not start")
        if isinstance(batch, dict) and batch.get("skipped"):
            self.unreadable.extend(batch["skipped"])
        # Logits or probabilities (probabilities when PROB files are written).
        scores = outputs["scores"]
        if scores is None:  # nothing readable in this batch
            return
        classes = scores.argmax(1).to(torch.uint8).cpu().numpy()
        probs_np = scores.cpu().numpy() if self.probabilities else None
        for i, patch_id in enumerate(outputs["patch_id"]):
            with rasterio.open(self.aerial_by_id[patch_id]) as src:
                crs, transform = src.crs, src.transform
            self.writer.submit(
                write_prediction,
                prediction_path(self.out_dir, patch_id),
                np.ascontiguousarray(classes[i]),
                crs=crs,
                transform=transform,
                values=self.values,
                probabilities=None if probs_np is None else probs_np[i],
            )
            self.count += 1

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Wait for the queued files and stop the writer thread."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Finish the files already queued and stop the writer, logging (not raising) its errors."""
        # Finish the files already queued (they are complete predictions) and stop the
        # thread; the run's own error is the one reported.
        if self.writer is not None:
            writer, self.writer = self.writer, None
            try:
                writer.close()
            except Exception as exc:
                log.error("a prediction file could not be written: %s", exc)


def _counts_of_all_processes(trainer: pl.Trainer, written: int, unreadable: int) -> list[list[int]]:
    """[written, unreadable] of every process, rank order: ``[[w0, u0], [w1, u1], ...]``.

    Every process reaches this point once its share is done (a process without
    any patch too: Lightning skips its loop but returns), so the gathering
    cannot wait for a process that never comes.
    """
    mine = [written, unreadable]
    if trainer.world_size <= 1 or not (dist.is_available() and dist.is_initialized()):
        return [mine]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, mine)
    return gathered


def predict(
    cfg: Config,
    checkpoint: str | Path | Sequence[str | Path],
    out_dir: str | Path | None = None,
    *,
    values: Values = "model",
    probabilities: bool = False,
    tta: bool | None = None,
    overwrite: bool = False,
    records: list[PatchRecord] | None = None,
    weights: Sequence[float] | None = None,
) -> PredictResult:
    """Predict every test patch of a config with a checkpoint (ours or the reference's).

    Args:
        cfg: the configuration (test paths, model keys, batch_size_inference).
        checkpoint: a flair2 or reference Lightning checkpoint, or a state dict
            file; or several, whose probabilities are averaged (an ensemble, see
            :mod:`flair2.prediction.ensemble`: each flair2 checkpoint runs with the
            model settings it was trained with).
        out_dir: output folder (default ``<out_folder>/<out_model_name>/predictions``).
        values: "model" (0–12) or "labels" (the label nomenclature, 1–13).
        probabilities: also write ``PROB_<id>.tif`` (per-class probabilities, uint8).
        tta: average over flips and 90° rotations (each ensemble member first);
            None: the config's ``tta``.
        overwrite: predict patches whose files already exist (default: skip them).
        records: the patches to predict (default: the config's test split).
        weights: one per checkpoint of an ensemble, normalised to sum to 1
            (default: equal).

    Returns:
        Counts and wall-clock time of the run.

    Raises:
        ConfigError: ``out_dir`` is (or lies inside) an input, or holds the
            predictions of another run (see :mod:`flair2.prediction.run_record`).
        CheckpointError: a checkpoint is missing, does not fit, or would run
            code when loaded (see :func:`flair2.models.trusted_checkpoints`).
        OutputError: a file could not be written, or another run holds the folder.
    """
    checkpoints = [checkpoint] if isinstance(checkpoint, (str, Path)) else list(checkpoint)
    if not checkpoints:
        raise ConfigError("predict: give at least one checkpoint")
    if weights is not None or len(checkpoints) > 1:
        normalised_weights(weights, len(checkpoints))  # bad weights fail before any output
    tta = cfg.tta if tta is None else tta
    quiet_lightning()
    out = Path(out_dir) if out_dir else cfg.output_dir() / "predictions"
    data = cfg.data
    check_output_outside(
        out,
        {
            "data.path_aerial_test": data.path_aerial_test,
            "data.path_sen_test": data.path_sen_test,
            "data.path_labels_test": data.path_labels_test,
            **{f"checkpoint {c}": c for c in checkpoints},
        },
        name="--out",
    )
    # Checked before anything is skipped: a complete folder still proves its checkpoint.
    record = run_record(checkpoints, weights=weights, tta=tta, values=values)
    out.mkdir(parents=True, exist_ok=True)
    if records is None:
        records = discover(cfg, stages=("test",)).test
    lock = output_lock(out / LOCK_NAME, "flair2 predict") if process_rank() == 0 else nullcontext()
    with lock:
        if process_rank() == 0:
            check_and_write_record(out, record, overwrite=overwrite)
            # Hidden leftovers of files being written when a previous run was killed.
            for prefix in ("PRED", "PROB"):
                remove_stale_temporaries(out, f"{prefix}_*.tif")
            # A QGIS style beside the files: drag a PRED_*.tif into QGIS and load it.
            write_qml(out / "predictions.qml", values=values, num_classes=cfg.num_classes)
        return _predict(
            cfg, checkpoints, out, records, values, probabilities, tta, overwrite, weights
        )


def _predict(
    cfg: Config,
    checkpoints: list[str | Path],
    out: Path,
    records: list[PatchRecord],
    values: Values,
    probabilities: bool,
    tta: bool,
    overwrite: bool,
    weights: Sequence[float] | None,
) -> PredictResult:
    todo = [
        r
        for r in records
        if overwrite or not is_done(out, r.patch_id, with_probabilities=probabilities)
    ]
    skipped = len(records) - len(todo)
    if skipped:
        log.info("%d of %d patches already predicted in %s: skipped", skipped, len(records), out)
    if not todo:
        return PredictResult(out, 0, skipped, 0.0)
    task: SegmentationTask | EnsembleTask
    datamodule: FlairDataModule | EnsembleDataModule
    if len(checkpoints) == 1:
        datamodule = FlairDataModule(cfg, splits=Splits(test=todo))
        datamodule.setup("predict")
        task = SegmentationTask(cfg, patch_size=datamodule.patch_size())
        load_checkpoint_weights(task.model, checkpoints[0])
        set_channels_last(task.model, cfg.channels_last_for("predict"))
        task.predict_probabilities_needed = probabilities
    else:
        task, datamodule = build_ensemble(cfg, checkpoints, todo, weights)
    task.predict_tta = tta
    writer = PatchWriter(out, todo, values=values, probabilities=probabilities)
    trainer = create_trainer(
        TrainerSettings.from_config(cfg), callbacks=[writer], logger=False, inference_mode=True
    )
    start = time.perf_counter()
    with handle_trainer_failure(trainer):
        trainer.predict(task, datamodule=datamodule, return_predictions=False)
    seconds = time.perf_counter() - start
    counts = _counts_of_all_processes(trainer, writer.count, len(writer.unreadable))
    per_process = tuple(int(c[0]) for c in counts)
    unreadable = sum(int(c[1]) for c in counts)
    result = PredictResult(out, sum(per_process), skipped, seconds, unreadable, per_process)
    log.info(
        "predicted %d patches in %.1f s (%.2f patches/s, %.3f s per patch, %d model(s)%s, %s) "
        "into %s",
        result.written,
        seconds,
        result.patches_per_second,
        result.seconds_per_patch,
        len(checkpoints),
        " + TTA" if tta else "",
        trainer.accelerator.__class__.__name__.replace("Accelerator", ""),
        out,
    )
    if len(per_process) > 1:
        log.info("files written per process (rank order): %s", ", ".join(map(str, per_process)))
    if writer.unreadable:
        log.warning(
            "%d patch(es) could not be read and have no prediction (skip_invalid_patches); "
            "first: %s",
            len(writer.unreadable),
            writer.unreadable[0],
        )
    return result
