"""Scores derived from a confusion matrix: IoU, precision, recall, F1, accuracy, mIoU.

The mIoU follows the reference (IGNF/FLAIR-2 ``src/metrics.py``): the mean of
the per-class IoUs over the first K−1 classes ("other", the last index, is left
out), skipping classes whose IoU is undefined (absent from both truth and
prediction). A class predicted but absent from the truth has IoU 0 and counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise numerator / denominator as float64, NaN where 0/0."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


@dataclass(frozen=True)
class Metrics:
    """Scores of one confusion matrix; arrays are (K,) float64 with NaN where undefined.

    Attributes:
        iou: TP / (TP + FP + FN) per class.
        precision: TP / (TP + FP) per class (NaN when the class is never predicted).
        recall: TP / (TP + FN) per class (NaN when the class is absent from the truth).
        f1: 2·TP / (2·TP + FP + FN) per class.
        support: (K,) int64, true pixels per class (row sums).
        predicted: (K,) int64, predicted pixels per class (column sums).
        overall_accuracy: correct pixels / all pixels (every class, "other" included).
        miou: mean IoU over ``miou_classes``, ignoring NaN; NaN when none is defined.
        miou_classes: the class indices averaged into ``miou``.
        num_pixels: total pixels counted.
    """

    iou: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    support: np.ndarray
    predicted: np.ndarray
    overall_accuracy: float
    miou: float
    miou_classes: tuple[int, ...]
    num_pixels: int


def nanmean(values: np.ndarray) -> float:
    """Mean of the non-NaN entries; NaN (without a warning) when there are none."""
    values = np.asarray(values, dtype=np.float64)
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else float("nan")


def miou(cm: np.ndarray, miou_classes: Sequence[int] | None = None) -> float:
    """The mIoU of a (K, K) confusion matrix, as the reference scores it.

    The one definition of flair2's mIoU (training's ``val_miou`` and the reports
    use it): the mean IoU over the first K−1 classes ("other" left out) unless
    ``miou_classes`` says otherwise, skipping classes absent from both truth and
    prediction; NaN when no class is defined.
    """
    return compute_metrics(cm, miou_classes).miou


def compute_metrics(cm: np.ndarray, miou_classes: Sequence[int] | None = None) -> Metrics:
    """Compute every score from a confusion matrix.

    Args:
        cm: (K, K) pixel counts, rows = truth, columns = prediction.
        miou_classes: indices averaged into the mIoU; default the first K−1
            (all but "other"), as the reference.

    Returns:
        The :class:`Metrics`.

    Raises:
        ValueError: when ``cm`` is not square or holds negative counts.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or cm.shape[0] < 1:
        raise ValueError(f"confusion matrix must be (K, K), got shape {cm.shape}")
    if np.any(cm < 0):
        raise ValueError("confusion matrix holds negative counts")
    num_classes = cm.shape[0]
    if miou_classes is None:
        miou_classes = range(max(num_classes - 1, 1))
    kept = tuple(int(c) for c in miou_classes)
    if any(c < 0 or c >= num_classes for c in kept):
        raise ValueError(f"miou_classes {kept} outside 0..{num_classes - 1}")

    cm = cm.astype(np.int64)
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    fp = predicted - tp
    fn = support - tp
    iou = _ratio(tp, tp + fp + fn)
    total = int(cm.sum())
    return Metrics(
        iou=iou,
        precision=_ratio(tp, predicted),
        recall=_ratio(tp, support),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        support=support,
        predicted=predicted,
        overall_accuracy=float(tp.sum() / total) if total else float("nan"),
        miou=nanmean(iou[list(kept)]) if kept else float("nan"),
        miou_classes=kept,
        num_pixels=total,
    )
