"""What produced a predictions folder: ``prediction_run.json``, so runs are never mixed.

``flair2 predict`` skips the patches whose files exist, which makes an
interrupted run cheap to finish. That is only right when the files come from
the same model and settings: a re-run with another checkpoint (or the same path
retrained), other ensemble weights, TTA or pixel values would otherwise leave a
folder half of one model and half of another, and a run "finish" without ever
reading its checkpoint. The record names each checkpoint by content (SHA-256,
see :func:`flair2.io.file_fingerprint`) and is written before the first file; a run
whose record differs is refused unless ``--overwrite`` starts the folder afresh.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flair2.errors import CheckpointError, ConfigError
from flair2.formats import PRED_PATTERN, Values
from flair2.io import file_fingerprint, write_json_atomic
from flair2.models.checkpoint_files import checkpoint_content_file

#: The record's file name, in the predictions folder.
RECORD_NAME = "prediction_run.json"
#: Bump when the record's meaning changes.
RECORD_VERSION = 1


def run_record(
    checkpoints: Sequence[str | Path],
    *,
    weights: Sequence[float] | None,
    tta: bool,
    values: Values,
) -> dict[str, Any]:
    """The record of a run: what decides the pixels of its files.

    Args:
        checkpoints: the checkpoint files (several for an ensemble), in order.
        weights: the ensemble weights as given (None: equal).
        tta: whether test-time augmentation is on.
        values: ``model`` (0–12) or ``labels`` (1–13).

    Raises:
        CheckpointError: a checkpoint file does not exist.
    """
    prints = []
    for path in checkpoints:
        content = checkpoint_content_file(path)  # an exported folder: its weights file
        if not content.is_file():
            raise CheckpointError(f"checkpoint file {path}: not found")
        prints.append(file_fingerprint(content))
    return {
        "version": RECORD_VERSION,
        "checkpoints": prints,
        "weights": None if weights is None else [float(w) for w in weights],
        "tta": bool(tta),
        "values": values,
    }


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Human-readable differences between two records."""
    out = []
    old_ck = [c.get("sha256") for c in old.get("checkpoints", [])]
    new_ck = [c["sha256"] for c in new["checkpoints"]]
    if old_ck != new_ck:
        names = ", ".join(c.get("name", "?") for c in old.get("checkpoints", []))
        out.append(f"checkpoint (the folder's files come from {names or 'another model'})")
    for key in ("weights", "tta", "values"):
        if old.get(key) != new[key]:
            out.append(f"{key} ({old.get(key)!r} there, {new[key]!r} now)")
    return out


def check_and_write_record(out_dir: Path, record: dict[str, Any], *, overwrite: bool) -> None:
    """Refuse to add to a folder another run wrote; then record this run in it.

    Call it on one process, holding the folder's lock, before any file is written.

    Args:
        out_dir: the predictions folder (it exists).
        record: this run's :func:`run_record`.
        overwrite: every patch will be predicted again: any record is replaced.

    Raises:
        ConfigError: the folder's record differs from this run's, or the folder
            holds prediction files and no record (an older or another tool's
            run); the message names the option that resolves it.
    """
    path = out_dir / RECORD_NAME
    if not overwrite:
        if path.is_file():
            try:
                old = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"{path}: unreadable ({exc}); pass --overwrite to predict the folder afresh"
                ) from None
            differ = _differences(old if isinstance(old, dict) else {}, record)
            if differ:
                raise ConfigError(
                    f"{out_dir} holds predictions of another run ({'; '.join(differ)} differ): "
                    "predict into another --out, or pass --overwrite to replace them"
                )
        elif any(PRED_PATTERN.match(p.name) for p in out_dir.iterdir()):
            raise ConfigError(
                f"{out_dir} holds prediction files of an unrecorded run (no {RECORD_NAME}): "
                "predict into another --out, or pass --overwrite to replace them"
            )
    write_json_atomic(path, record)
