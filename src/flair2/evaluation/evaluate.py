"""Score a folder of predictions against the ground-truth masks.

Each ``PRED_<id>.tif`` is paired with its ``MSK_<id>.tif`` by id; the masks are
mapped to model indices as the reference does (label − 1, values above 13 become
"other"); one confusion matrix is summed over all patches (plus one per domain)
and every score is derived from it. Predictions may hold model indices 0–12 (the
reference's files, no tag) or label values 1–13 (tag ``FLAIR2_VALUES=labels``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flair2.classes import NUM_CLASSES, class_colours, class_names_for, labels_to_model
from flair2.errors import DataError
from flair2.evaluation.confusion import confusion_matrix
from flair2.evaluation.metrics import Metrics, compute_metrics
from flair2.evaluation.pairing import Pair, pair_predictions
from flair2.evaluation.report import format_table, render_markdown
from flair2.evaluation.values import (
    READINGS,
    UntaggedEvidence,
    ValuesOption,
    as_indices,
    file_reading,
)
from flair2.formats import VALUES_TAG, Values, image_name
from flair2.io import atomic_path, write_text_atomic
from flair2.rasters import (
    check_mask_values,
    read_bands,
    read_mask,
    read_prediction,
    read_single_band,
)
from flair2.viz.figures import (
    build_comparison_figure,
    find_named_files,
    save_figure,
    select_examples,
    stretch,
)
from flair2.viz.plots import plot_confusion_matrix, plot_per_class_iou

log = logging.getLogger(__name__)

__all__ = [
    "evaluate_predictions",
    "format_table",
    "metrics_to_dict",
]


def _clean(value: float) -> float | None:
    """A JSON-safe float: NaN becomes None."""
    return None if math.isnan(value) else float(value)


def _write_examples(
    pairs: Sequence[Pair],
    per_patch: dict[str, float | None],
    out_dir: Path,
    names: list[str],
    aerial_root: str | os.PathLike[str] | None,
    count: int,
    untagged: Values,
) -> dict[str, list[dict[str, Any]]]:
    """Draw the ``count`` worst and best patches by mIoU into ``out_dir/patches``.

    Untagged predictions are drawn as ``untagged`` says: the reading they were scored with.

    Returns:
        ``{"worst": [...], "best": [...]}``, each entry ``id``, ``domain``, ``miou`` and
        ``figure`` (path relative to ``out_dir``), as recorded in metrics.json.
    """
    worst, best = select_examples(per_patch, count)
    by_id = {p.patch_id: p for p in pairs}
    aerial: dict[str, Path] = {}
    if aerial_root is not None:
        if not Path(aerial_root).is_dir():
            raise DataError(f"aerial folder not found: {aerial_root}")
        aerial = find_named_files(aerial_root, {image_name(i) for i in worst + best})
    examples: dict[str, list[dict[str, Any]]] = {"worst": [], "best": []}
    for kind, ids in (("worst", worst), ("best", best)):
        for rank, patch_id in enumerate(ids, start=1):
            pair = by_id[patch_id]
            image = aerial.get(image_name(patch_id))
            rgb = None if image is None else stretch(read_bands(image, (0, 1, 2)))
            miou = per_patch[patch_id]
            fig = build_comparison_figure(
                read_mask(pair.mask, len(names)),
                read_prediction(pair.prediction, untagged=untagged),
                names,
                rgb=rgb,
                title=f"{kind} #{rank}: IMG_{patch_id} ({pair.domain}), mIoU {miou:.3f}",
            )
            rel = f"patches/{kind}_{rank}_IMG_{patch_id}.png"
            save_figure(fig, out_dir / rel)
            examples[kind].append(
                {"id": patch_id, "domain": pair.domain, "miou": miou, "figure": rel}
            )
    if aerial_root is not None and len(aerial) < len(worst) + len(best):
        log.warning(
            "%d example patch(es) have no IMG_<id>.tif under %s: drawn without the aerial image",
            len(worst) + len(best) - len(aerial),
            aerial_root,
        )
    return examples


def _read_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    """A pair's raw mask and prediction values, and the prediction's tags."""
    truth, _ = read_single_band(pair.mask)
    pred, tags = read_single_band(pair.prediction)
    if truth.shape != pred.shape:
        raise DataError(
            f"shape mismatch: mask {pair.mask} is {truth.shape[0]}×{truth.shape[1]} but "
            f"prediction {pair.prediction} is {pred.shape[0]}×{pred.shape[1]}"
        )
    check_mask_values(truth, pair.mask)
    return truth, pred, tags


def _confusion(pair: Pair, truth: np.ndarray, indices: np.ndarray, num_classes: int) -> np.ndarray:
    try:
        return confusion_matrix(truth, indices, num_classes)
    except ValueError as exc:
        raise DataError(f"{pair.prediction}: {exc}") from exc


def _score_pairs(
    pairs: Sequence[Pair], num_classes: int, values: ValuesOption, progress: bool
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The (K, K) confusion matrix of each pair, in order, and how untagged files were read.

    Tagged files are read as their tag says; untagged ones as ``values`` says, or,
    with ``auto``, as :mod:`flair2.evaluation.values` decides over all of them: both
    readings are scored until then.
    """
    cms: list[np.ndarray | dict[str, np.ndarray | DataError]] = []
    evidence = UntaggedEvidence(num_classes)
    untagged = 0
    overridden: list[Path] = []  # tagged files whose tag contradicts a forced ``values``
    for pair in _iterate(pairs, progress):
        truth, pred, tags = _read_pair(pair)
        untagged += VALUES_TAG not in tags
        try:
            reading = file_reading(tags, values)
        except DataError as exc:
            raise DataError(f"{pair.prediction}: {exc}") from None
        if VALUES_TAG in tags and values != "auto" and reading != values:
            overridden.append(pair.prediction)
        truth = labels_to_model(truth, num_classes)
        if reading is not None:
            cms.append(_confusion(pair, truth, as_indices(pred, reading), num_classes))
            continue
        evidence.add(pair.prediction, pred, truth)
        options: dict[str, np.ndarray | DataError] = {}
        for option in READINGS:
            try:
                options[option] = _confusion(pair, truth, as_indices(pred, option), num_classes)
            except DataError as exc:  # raised only if this reading is the one chosen
                options[option] = exc
        if all(isinstance(v, DataError) for v in options.values()):
            # Out of range whichever way it is read (a 255 nodata, a 0 beside a 13):
            # say so now, in the file's raw values, rather than after a decision.
            raise DataError(
                f"{pair.prediction}: values fit neither model indices 0–{num_classes - 1} nor "
                f"labels 1–{num_classes} ({_raw_range(pred)}); write them in one of the two"
            )
        cms.append(options)
    if overridden:
        log.warning(
            "%d tagged prediction file(s) (e.g. %s) are read as their %s tag says, not as "
            "--values %s: the option applies to untagged files only",
            len(overridden),
            overridden[0],
            VALUES_TAG,
            values,
        )
    record: dict[str, Any] = {"untagged_files": untagged, "reading": None, "decided_by": None}
    if untagged:
        if values == "auto":
            record["reading"], record["decided_by"] = evidence.decide()
        else:
            record["reading"], record["decided_by"] = values, "option"
    resolved: list[np.ndarray] = []
    for entry in cms:
        if isinstance(entry, dict):
            chosen_cm = entry[record["reading"]]
            if isinstance(chosen_cm, DataError):
                raise chosen_cm
            entry = chosen_cm
        resolved.append(entry)
    return resolved, record


def _raw_range(pred: np.ndarray) -> str:
    """``values 0..255``: the smallest and largest raw value of a prediction."""
    return f"values {int(pred.min())}..{int(pred.max())}"


def metrics_to_dict(
    cm: np.ndarray, class_names: Sequence[str], metrics: Metrics | None = None
) -> dict[str, Any]:
    """The JSON-shaped scores of one confusion matrix (NaN written as None).

    Returns:
        ``miou``, ``overall_accuracy``, ``num_pixels``, ``miou_classes`` (names) and
        ``per_class``: name → ``iou``, ``precision``, ``recall``, ``f1``,
        ``support`` (true pixels), ``predicted`` (predicted pixels).
    """
    m = compute_metrics(cm) if metrics is None else metrics
    per_class = {
        name: {
            "iou": _clean(m.iou[i]),
            "precision": _clean(m.precision[i]),
            "recall": _clean(m.recall[i]),
            "f1": _clean(m.f1[i]),
            "support": int(m.support[i]),
            "predicted": int(m.predicted[i]),
        }
        for i, name in enumerate(class_names)
    }
    return {
        "miou": _clean(m.miou),
        "overall_accuracy": _clean(m.overall_accuracy),
        "num_pixels": m.num_pixels,
        "miou_classes": [class_names[i] for i in m.miou_classes],
        "per_class": per_class,
    }


def _iterate(pairs: Sequence[Pair], progress: bool) -> Iterable[Pair]:
    if not progress:
        return pairs
    from rich.progress import track

    return track(pairs, description="Scoring", total=len(pairs))


def _write_outputs(result: dict[str, Any], cm: np.ndarray, out_dir: Path) -> None:
    """metrics.json, the confusion matrix (npy, csv, png), the IoU chart and report.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    names = result["class_names"]
    write_text_atomic(out_dir / "metrics.json", json.dumps(result, indent=2, allow_nan=False))

    with atomic_path(out_dir / "confusion_matrix.npy") as tmp, open(tmp, "wb") as handle:
        # A file object: np.save would append ".npy" to the temporary name.
        np.save(handle, cm)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["truth \\ prediction", *names])
    for name, row in zip(names, cm):
        writer.writerow([name, *(int(v) for v in row)])
    write_text_atomic(out_dir / "confusion_matrix.csv", buffer.getvalue())

    plot_confusion_matrix(cm, names, out_dir / "confusion_matrix.png")
    indices = [names.index(n) for n in result["miou_classes"]]
    iou = np.array([np.nan if v["iou"] is None else v["iou"] for v in result["per_class"].values()])
    miou = np.nan if result["miou"] is None else result["miou"]
    plot_per_class_iou(
        iou,
        names,
        miou,
        out_dir / "per_class_iou.png",
        miou_classes=indices,
        colours=class_colours(len(names)),
    )
    images = {
        "Confusion matrix, rows normalised (%)": "confusion_matrix.png",
        "IoU per class": "per_class_iou.png",
    }
    write_text_atomic(out_dir / "report.md", render_markdown(result, images))


def evaluate_predictions(
    predictions_dir: str | os.PathLike[str],
    labels_root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str] | None = None,
    num_classes: int = NUM_CLASSES,
    *,
    progress: bool = False,
    example_patches: int = 0,
    aerial_root: str | os.PathLike[str] | None = None,
    values: ValuesOption = "auto",
) -> dict[str, Any]:
    """Score every ``PRED_<id>.tif`` against its ``MSK_<id>.tif``.

    Args:
        predictions_dir: folder of predictions (searched recursively).
        labels_root: folder of masks, e.g. the ``flair_2_labels_test`` root (recursive).
        out_dir: when given, write metrics.json, confusion_matrix.{npy,csv,png},
            per_class_iou.png and report.md there.
        num_classes: K (13 for the baselines); the last class is "other".
        progress: show a rich progress bar over the patches.
        example_patches: with ``out_dir``, draw this many worst and best patches (by
            mIoU) into ``out_dir/patches/`` and show them in report.md (0: none).
        aerial_root: folder searched recursively for ``IMG_<id>.tif``; when given, the
            example panels include the aerial image (R, G, B).
        values: how to read files without a ``FLAIR2_VALUES`` tag: ``auto`` decides
            from their values and the masks (see :mod:`flair2.evaluation.values`),
            ``model`` (0–12) or ``labels`` (1–13) forces it.

    Returns:
        The metrics dict (also the content of metrics.json): ``miou``,
        ``overall_accuracy``, ``num_pixels``, ``miou_classes``, ``per_class``,
        ``per_domain`` (domain → ``miou``, ``overall_accuracy``, ``num_patches``,
        ``num_pixels``, ``iou`` per class), ``confusion_matrix`` (K lists of K
        counts, rows = truth), ``num_patches``, ``num_classes``, ``class_names``,
        ``predictions_dir``, ``labels_root``, ``per_patch`` (id → mIoU),
        ``untagged_predictions`` (``untagged_files``, the ``reading`` chosen and
        what ``decided_by``: ``values``, ``masks`` or ``option``) and, with
        example patches, ``example_patches`` (``worst``/``best`` lists of ``id``,
        ``domain``, ``miou``, ``figure``). Undefined scores are None.

    Raises:
        DataError: on unpaired or duplicate files, unreadable files, shape
            mismatches or out-of-range values, or untagged files whose reading
            cannot be told; the message names the files (or ``--values``).
    """
    names = class_names_for(num_classes)
    pairs = pair_predictions(predictions_dir, labels_root)
    start = time.perf_counter()

    total = np.zeros((num_classes, num_classes), dtype=np.int64)
    by_domain: dict[str, np.ndarray] = {}
    patches_by_domain: dict[str, int] = {}
    per_patch: dict[str, float | None] = {}
    cms, untagged = _score_pairs(pairs, num_classes, values, progress)
    for pair, cm in zip(pairs, cms):
        total += cm
        per_patch[pair.patch_id] = _clean(compute_metrics(cm).miou)
        if pair.domain not in by_domain:
            by_domain[pair.domain] = np.zeros_like(total)
            patches_by_domain[pair.domain] = 0
        by_domain[pair.domain] += cm
        patches_by_domain[pair.domain] += 1

    result = metrics_to_dict(total, names)
    per_domain = {}
    for domain in sorted(by_domain):
        scores = metrics_to_dict(by_domain[domain], names)
        per_domain[domain] = {
            "miou": scores["miou"],
            "overall_accuracy": scores["overall_accuracy"],
            "num_patches": patches_by_domain[domain],
            "num_pixels": scores["num_pixels"],
            "iou": {name: s["iou"] for name, s in scores["per_class"].items()},
        }
    result.update(
        per_domain=per_domain,
        confusion_matrix=total.tolist(),
        num_patches=len(pairs),
        num_classes=num_classes,
        class_names=names,
        predictions_dir=str(predictions_dir),
        labels_root=str(labels_root),
        per_patch=per_patch,
        untagged_predictions=untagged,
    )
    elapsed = time.perf_counter() - start
    log.info(
        "scored %d patches in %.1f s: mIoU %s, overall accuracy %s",
        len(pairs),
        elapsed,
        result["miou"],
        result["overall_accuracy"],
    )
    if out_dir is not None:
        if example_patches > 0:
            result["example_patches"] = _write_examples(
                pairs,
                per_patch,
                Path(out_dir),
                names,
                aerial_root,
                example_patches,
                untagged["reading"] or "model",
            )
        _write_outputs(result, total, Path(out_dir))
    return result
