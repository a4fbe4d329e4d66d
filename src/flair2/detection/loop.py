"""The prediction loop of whole-area detection: the model step, the strip accumulator, the loader.

:class:`WindowPredictor` runs the model on a chunk of windows and returns the
weighted class probabilities; :class:`StripAccumulator` (a callback) adds them
into their strip and writes the finished columns to the strip's part files;
:class:`ZonalDataModule` gives each process the chunks of its strips. They run
inside Lightning's ``Trainer.predict`` (see :func:`flair2.detection.runner.detect`).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from torch import Tensor, nn
from torch.utils.data import DataLoader

from flair2.data.batch import normalize_batch
from flair2.detection.grid import ColumnAccumulator, WindowGrid, flush_limit
from flair2.detection.reader import (
    AerialInfo,
    AerialReader,
    ChunkDataset,
    Chunks,
    first_item,
)
from flair2.detection.settings import DetectSettings
from flair2.detection.writer import OutputSpec, PartsFolder, StripWriter, merge_segment
from flair2.errors import ConfigError


class WindowPredictor(pl.LightningModule):
    """Runs the model on a chunk of windows; returns weighted class probabilities.

    Args:
        model: called as ``model(aerial, sen2, positions, pad_mask, metadata,
            with_aux=False)``
            (the :mod:`flair2.models` contract); returns logits (B, K, P, P) or
            an object with ``.logits``.
        weights: (P, P) blending weight.
        use_metadata: pass the metadata vectors to the model.
    """

    def __init__(self, model: nn.Module, weights: np.ndarray, use_metadata: bool) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("blend", torch.from_numpy(weights), persistent=False)
        self.use_metadata = use_metadata

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor | None:
        """(b, K, P, P) float32 ``w · valid · softmax(logits)``, or None for a chunk of nodata."""
        if "aerial" not in batch:
            return None
        out = self.model(
            batch["aerial"],
            batch.get("sen2"),
            batch.get("positions"),
            batch.get("pad_mask"),
            batch["metadata"] if self.use_metadata else None,
            with_aux=False,
        )
        logits = getattr(out, "logits", out)
        weight = self.blend * batch["valid"]
        return logits.float().softmax(1) * weight[:, None]


class _Speed(ProgressColumn):
    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text(
            f"{speed:.1f} windows/s" if speed else "– windows/s", style="progress.data.speed"
        )


class StripAccumulator(pl.Callback):
    """Adds each chunk's weighted probabilities into its strip and writes finished columns.

    When a strip's last chunk is in, its part files are committed and the
    segments it shares with already finished strips are merged.
    """

    def __init__(
        self,
        grid: WindowGrid,
        parts: PartsFolder,
        spec: OutputSpec,
        info: AerialInfo,
        progress: bool,
    ) -> None:
        self.grid = grid
        self.parts = parts
        self.spec = spec
        self.info = info
        self.progress = progress
        self.acc: ColumnAccumulator | None = None
        self.writer: StripWriter | None = None
        self._bar: Progress | None = None
        self._task: Any = None
        self.processed = 0
        self.predicted = 0

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Reset the window counters and start the progress bar (on the global-zero process)."""
        self.processed = self.predicted = 0
        if self.progress and trainer.is_global_zero:
            total = getattr(getattr(trainer, "datamodule", None), "windows_to_do", None)
            self._bar = Progress(
                TextColumn("detect"),
                BarColumn(),
                MofNCompleteColumn(),
                _Speed(),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            )
            self._bar.start()
            self._task = self._bar.add_task("windows", total=total)

    def _start_strip(self, strip: int, device: torch.device) -> None:
        if self.writer is not None:
            self.writer.abort()
        rows = self.grid.strip_stop(strip) - self.grid.rows[strip]
        self.acc = ColumnAccumulator(self.spec.num_classes, rows, device)
        self.writer = StripWriter(
            self.parts, self.grid, strip, self.spec, self.info.transform, self.info.crs
        )

    def on_predict_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Add a chunk's scores (B×K×H×W), flush finished columns; commit the strip at its end."""
        grid = self.grid
        strip, first, stop = int(batch["strip"]), int(batch["first"]), int(batch["stop"])
        if first == 0:
            self._start_strip(strip, pl_module.device)
        if self.acc is None or self.writer is None or self.writer.strip != strip:
            raise RuntimeError(f"chunk of strip {strip} arrived out of order")
        rows = self.acc.rows
        if outputs is not None:
            values = outputs.detach().float()
            if values.shape[1] != self.spec.num_classes:
                raise ConfigError(
                    f"the model gives {values.shape[1]} classes, its config says "
                    f"num_classes {self.spec.num_classes}"
                )
            for i, j in enumerate(batch["windows"].tolist()):
                width = grid.col_stop(j) - grid.cols[j]
                self.acc.add(grid.cols[j], values[i, :, :rows, :width])
            self.predicted += len(values)
        last = stop == len(grid.cols)
        col, sums = self.acc.flush(flush_limit(None if last else grid.cols[stop], grid.width))
        self.writer.write(col, sums)
        self.processed += stop - first
        if self._bar is not None:
            self._bar.update(self._task, advance=stop - first)
        if last:
            self.writer.commit()
            self.writer = self.acc = None
            for seg in grid.strip_segments(strip):
                if seg.shared:
                    merge_segment(self.parts, grid, seg, self.spec)

    def _stop_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Stop the progress bar and abort a strip left incomplete, so it is never committed."""
        self._stop_bar()
        if self.writer is not None:  # a strip left incomplete: never commit it
            self.writer.abort()
            self.writer = None

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        """Stop the progress bar and abort the open strip's part files."""
        self._stop_bar()
        if self.writer is not None:
            self.writer.abort()
            self.writer = None


class ZonalDataModule(pl.LightningDataModule):
    """The chunks of this process's strips: every N-th strip not yet done.

    The done strips are read when Lightning asks for the loader, after every
    process has started, so all processes see the same list.
    """

    def __init__(
        self,
        reader: AerialReader,
        grid: WindowGrid,
        parts: PartsFolder,
        settings: DetectSettings,
        *,
        sentinel: Any = None,
        metadata: Any = None,
        pad_value: float = 0.0,
    ) -> None:
        super().__init__()
        self.reader = reader
        self.grid = grid
        self.parts = parts
        self.settings = settings
        self.sentinel = sentinel
        self.metadata = metadata
        self.pad_value = pad_value
        self.windows_to_do = 0
        # A process may get no strip (few strips left): that is fine.
        self.allow_zero_length_dataloader_with_multiple_devices = True

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Scale the uint8 aerial windows on the device, as training does."""
        return normalize_batch(batch) if "aerial" in batch else batch

    def predict_dataloader(self) -> DataLoader:
        """Chunks of this process's share of the strips not yet done (every N-th one)."""
        trainer = self.trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        done = self.parts.done_strips()
        todo = [k for k in range(self.grid.num_strips) if k not in done]
        chunks = Chunks(self.grid, todo[rank::world], self.settings.batch_size)
        #: Windows this process predicts (for the progress bar).
        self.windows_to_do = chunks.windows
        dataset = ChunkDataset(
            self.reader,
            self.grid,
            chunks,
            sentinel=self.sentinel,
            metadata=self.metadata,
            pad_value=self.pad_value,
        )
        workers = self.settings.num_workers
        return DataLoader(
            dataset,
            batch_size=1,
            collate_fn=first_item,
            num_workers=workers,
            pin_memory=self.settings.accelerator not in ("cpu",) and torch.cuda.is_available(),
            # Workers read ahead; a strip's chunks still arrive in order.
            prefetch_factor=2 if workers else None,
        )
