"""Pair prediction files with label masks by patch id.

Masks ``MSK_<id>.tif`` are searched recursively under a labels root (official
layout ``<domain>/<zone>/msk/MSK_<id>.tif``), predictions ``PRED_<id>.tif``
recursively under a predictions folder. Pairs are made by id, never by sorted
order (the reference pairs by order and only checks the first and last names),
and every mismatch is reported with the files concerned.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from flair2.errors import DataError
from flair2.formats import DOMAIN_PATTERN, MSK_PATTERN, PRED_PATTERN, prediction_name

#: How many file names an error message lists.
_MAX_LISTED = 5
#: Domain given to masks lying directly in a labels root that names no domain.
NO_DOMAIN = "(none)"


@dataclass(frozen=True)
class Pair:
    """A prediction and its ground-truth mask.

    Attributes:
        patch_id: the digits shared by ``PRED_<id>.tif`` and ``MSK_<id>.tif``.
        prediction: path of the prediction.
        mask: path of the mask.
        domain: the mask's domain (e.g. ``D004_2021``).
    """

    patch_id: str
    prediction: Path
    mask: Path
    domain: str


def _sort_key(patch_id: str) -> tuple[int, str]:
    return (int(patch_id), patch_id)


def _find(root: Path, pattern: re.Pattern[str], what: str) -> dict[str, Path]:
    """Map id → path for every file under ``root`` whose name matches ``pattern``."""
    if not root.is_dir():
        raise DataError(f"{what} folder not found: {root}")
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            match = pattern.match(name)
            if match is None:
                continue
            path = Path(dirpath) / name
            patch_id = match.group(1)
            if patch_id in found:
                raise DataError(
                    f"duplicate patch id {patch_id} in {what} folder {root}: "
                    f"{found[patch_id]} and {path}; keep one file per id"
                )
            found[patch_id] = path
    return found


def domain_of(mask: Path, labels_root: Path) -> str:
    r"""The domain of a mask: the path part matching ``D\d{3}_\d{4}``.

    Looked up below the labels root first, then in the root's own path (when the
    root is a domain or zone folder), else the first folder below the root.
    """
    relative = mask.relative_to(labels_root).parts[:-1]
    for part in relative:
        if DOMAIN_PATTERN.match(part):
            return part
    for part in reversed(labels_root.resolve().parts):
        if DOMAIN_PATTERN.match(part):
            return part
    return relative[0] if relative else NO_DOMAIN


def find_masks(labels_root: str | os.PathLike[str]) -> dict[str, Path]:
    """Map patch id → ``MSK_<id>.tif`` path under ``labels_root`` (recursive)."""
    return _find(Path(labels_root), MSK_PATTERN, "labels")


def find_predictions(predictions_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Map patch id → ``PRED_<id>.tif`` path under ``predictions_dir`` (recursive)."""
    return _find(Path(predictions_dir), PRED_PATTERN, "predictions")


def _listing(paths: list[Path]) -> str:
    shown = ", ".join(str(p) for p in paths[:_MAX_LISTED])
    return shown + (", …" if len(paths) > _MAX_LISTED else "")


def pair_predictions(
    predictions_dir: str | os.PathLike[str], labels_root: str | os.PathLike[str]
) -> list[Pair]:
    """Pair every prediction with its mask, sorted by numeric id.

    Args:
        predictions_dir: folder holding ``PRED_<id>.tif`` files (searched recursively).
        labels_root: folder holding ``MSK_<id>.tif`` files (searched recursively).

    Returns:
        One :class:`Pair` per patch.

    Raises:
        DataError: when a folder is missing or holds no file, an id appears twice,
            a mask has no prediction or a prediction has no mask.
    """
    pred_root, labels = Path(predictions_dir), Path(labels_root)
    masks = find_masks(labels)
    preds = find_predictions(pred_root)
    if not masks:
        raise DataError(f"no MSK_<id>.tif file found under {labels}; check the labels path")
    if not preds:
        raise DataError(f"no PRED_<id>.tif file found under {pred_root}; run the prediction first")

    missing = sorted(set(masks) - set(preds), key=_sort_key)
    extra = sorted(set(preds) - set(masks), key=_sort_key)
    problems = []
    if missing:
        expected = [pred_root / prediction_name(i) for i in missing]
        problems.append(
            f"{len(missing)} of {len(masks)} masks have no prediction "
            f"(missing {_listing(expected)})"
        )
    if extra:
        problems.append(
            f"{len(extra)} of {len(preds)} predictions have no mask under {labels} "
            f"(extra {_listing([preds[i] for i in extra])})"
        )
    if problems:
        raise DataError("; ".join(problems) + "; predictions and labels must cover the same ids")

    return [
        Pair(patch_id=i, prediction=preds[i], mask=masks[i], domain=domain_of(masks[i], labels))
        for i in sorted(masks, key=_sort_key)
    ]
