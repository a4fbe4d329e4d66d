"""Lightning add-ons that make training runs survive interruptions.

- :class:`AtomicCheckpointIO` writes every checkpoint (``best-*.ckpt``,
  ``last.ckpt``) under a temporary name and renames it into place, so a
  process killed while saving never leaves a truncated checkpoint.
- :class:`RandomStateCheckpoint` stores the random generators' states in each
  checkpoint and puts them back when a resumed run starts its next epoch, so the
  data order, augmentations and dropout masks continue as if the run had never
  stopped.
- :class:`SkippedPatchCounter` reports the samples a training run skipped
  (``skip_invalid_patches``), once per epoch (prediction counts its own).
"""

from __future__ import annotations

import logging
import random
import zipfile
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from flair2.errors import OutputError
from flair2.io import atomic_path

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, but atomic and flushed to the disk.

    Lightning serialises a checkpoint to memory and then writes the bytes into
    the final file, so a process killed during the write (the scheduler's time
    limit, a pre-empted node) leaves a truncated ``last.ckpt`` that no resume
    can read. Here the bytes go to a hidden file beside it, are ``fsync``-ed and
    renamed over the final name once read back complete (every entry's CRC
    checked: a full disk does not always make the writer fail): the old
    checkpoint stays valid until the new one is complete. Under DDP, Lightning
    calls this on global rank 0 only.

    Remote paths (``s3://`` …) are left to Lightning's own writer.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` atomically and durably; remote paths go to Lightning's writer."""
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        with (
            atomic_path(path, durable=True, verify=_check_zip) as tmp,
            open(tmp, "wb") as handle,
        ):
            try:
                torch.save(checkpoint, handle)
            except RuntimeError as exc:
                # torch's zip writer reports a failed write (a full disk) this way.
                raise OutputError(f"checkpoint {path}: cannot be written ({exc})") from exc


def _check_zip(path: Path) -> None:
    """Read a checkpoint just written back, checking every entry's CRC."""
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
    if bad is not None:
        raise ValueError(f"entry {bad} of the archive is damaged")


def collect_random_states() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's (CPU and CUDA) global generators.

    Only tensors and plain Python values, so a checkpoint holding them still
    loads with ``torch.load(weights_only=True)``.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_random_states(states: dict[str, Any]) -> None:
    """Set the global generators to states from :func:`collect_random_states`."""
    py = states["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    npy = states["numpy"]
    np.random.set_state(
        (
            npy["kind"],
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gaussian"],
        )
    )
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:
            log.warning(
                "the checkpoint holds random states of %d GPUs, %d are visible: "
                "GPU random numbers will not continue the interrupted run's",
                len(cuda),
                torch.cuda.device_count(),
            )


class RandomStateCheckpoint(pl.Callback):
    """Save the random generators with each checkpoint; restore them when resuming.

    Checkpoints are written at the end of an epoch's validation; from that moment
    until the next epoch's training loader starts (which draws the epoch's data
    order and the workers' seeds), nothing draws a random number. A resumed run
    restores the states when Lightning hands the callback its checkpoint state,
    after the run's own seeding and model construction and before the training
    loader starts, so the loader, the augmentations and the dropout masks carry
    on exactly as the uninterrupted run's would have.

    Under DDP every process starts from the same seed and draws the same
    numbers, so rank 0's states (the ones saved) stand for all of them.
    """

    def state_dict(self) -> dict[str, Any]:
        """The callback's checkpoint state: the global generators' current states."""
        return {"random_states": collect_random_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the generators saved in a checkpoint (a checkpoint without them: no-op)."""
        states = state_dict.get("random_states")
        if states is not None:
            restore_random_states(states)
            log.debug("random generator states restored from the checkpoint")


class SkippedPatchCounter(pl.Callback):
    """Warn, once per epoch and stage, about the patches the loaders skipped.

    With ``skip_invalid_patches``, a sample whose files cannot be read is left
    out of its batch (validation, prediction) or replaced by the next readable
    one (training); the batch lists the reasons under ``"skipped"``.
    """

    def __init__(self) -> None:
        self.messages: dict[str, list[str]] = {"train": [], "validation": []}

    @property
    def total(self) -> int:
        """Samples skipped so far (all stages)."""
        return sum(len(m) for m in self.messages.values())

    def _add(self, stage: str, batch: Any) -> None:
        if isinstance(batch, dict) and batch.get("skipped"):
            self.messages[stage].extend(batch["skipped"])

    def _report(self, trainer: pl.Trainer, stage: str) -> None:
        # A broken patch can be met twice in an epoch (its own turn, and while looking
        # for a substitute): count each problem once.
        found = list(dict.fromkeys(self.messages[stage]))
        if found:
            log.warning(
                "%s, epoch %d: skipped %d unreadable patch(es) (skip_invalid_patches); first: %s",
                stage,
                trainer.current_epoch,
                len(found),
                found[0],
            )

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: Any, batch: Any, *_: Any
    ) -> None:
        """Note the training batch's skipped samples."""
        self._add("train", batch)

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: Any, batch: Any, *_: Any
    ) -> None:
        """Note the validation batch's skipped samples."""
        self._add("validation", batch)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        """Start the epoch's training count afresh."""
        self.messages["train"] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        """Warn about the patches skipped during the epoch's training."""
        self._report(trainer, "train")

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        """Start the validation count afresh."""
        self.messages["validation"] = []

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        """Warn about the patches skipped during this validation."""
        self._report(trainer, "validation")
