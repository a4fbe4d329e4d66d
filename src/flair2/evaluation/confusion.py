"""The confusion matrix of a label map against a prediction, by ``np.bincount``."""

from __future__ import annotations

import numpy as np

from flair2.errors import DataError

#: How many offending values an error message lists.
_MAX_LISTED = 10


def _out_of_range(values: np.ndarray, num_classes: int) -> np.ndarray:
    """The distinct values of ``values`` outside [0, num_classes), sorted."""
    bad = values[(values < 0) | (values >= num_classes)]
    return np.unique(bad)


def _describe(bad: np.ndarray) -> str:
    shown = ", ".join(str(int(v)) for v in bad[:_MAX_LISTED])
    more = f" and {bad.size - _MAX_LISTED} more" if bad.size > _MAX_LISTED else ""
    return shown + more


def confusion_matrix(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Count pixels per (true class, predicted class).

    Args:
        truth: integer class indices, any shape.
        pred: integer class indices, the same shape as ``truth``.
        num_classes: K; valid indices are 0..K-1.

    Returns:
        int64 array (K, K): rows are the true class, columns the predicted class.

    Raises:
        ValueError: when the shapes differ or ``num_classes`` < 1.
        DataError: when a value lies outside [0, K); the message lists the values
            (the caller adds the file name).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    truth = np.asarray(truth)
    pred = np.asarray(pred)
    if truth.shape != pred.shape:
        raise ValueError(f"truth shape {truth.shape} differs from prediction shape {pred.shape}")
    for name, array in (("truth", truth), ("prediction", pred)):
        if not np.issubdtype(array.dtype, np.integer):
            raise DataError(f"{name} must hold integer classes, got dtype {array.dtype}")
        if array.size and (array.min() < 0 or array.max() >= num_classes):
            bad = _out_of_range(array, num_classes)
            raise DataError(f"{name} has values outside 0..{num_classes - 1}: {_describe(bad)}")
    # One flat index per pixel, then a single histogram: K² bins, no Python loop.
    flat = truth.astype(np.int64).ravel() * num_classes + pred.astype(np.int64).ravel()
    counts = np.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64, copy=False)
