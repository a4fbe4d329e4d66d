"""Files → numbers and figures: score predictions against the ground-truth masks.

This layer reads ``PRED_<id>.tif`` and ``MSK_<id>.tif`` files and never imports
``flair2.models``, ``flair2.training.task`` or ``flair2.data``: it scores any tool's
predictions, the reference's included.
"""

from __future__ import annotations

from flair2.evaluation.confusion import confusion_matrix
from flair2.evaluation.evaluate import evaluate_predictions, metrics_to_dict
from flair2.evaluation.metrics import Metrics, compute_metrics
from flair2.evaluation.pairing import Pair, find_masks, find_predictions, pair_predictions
from flair2.evaluation.report import format_table, render_markdown

__all__ = [
    "Metrics",
    "Pair",
    "compute_metrics",
    "confusion_matrix",
    "evaluate_predictions",
    "find_masks",
    "find_predictions",
    "format_table",
    "metrics_to_dict",
    "pair_predictions",
    "render_markdown",
]
