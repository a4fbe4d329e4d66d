"""Figures of a scoring run: the row-normalised confusion matrix and per-class IoU.

Figures are built on the Agg canvas directly (no ``pyplot``), so nothing
depends on a display or on global pyplot state, and each PNG is written
atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from flair2.classes import class_colours
from flair2.viz.figures import save_figure

_DPI = 120


def row_normalise(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its sum (the recall view); rows without pixels become NaN."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    out = np.full_like(cm, np.nan)
    np.divide(cm, rows, out=out, where=rows != 0)
    return out


def plot_confusion_matrix(
    cm: np.ndarray, class_names: Sequence[str], path: str | os.PathLike[str], title: str = ""
) -> None:
    """Draw the row-normalised confusion matrix with a percentage in each cell.

    Args:
        cm: (K, K) counts, rows = truth, columns = prediction.
        class_names: K names for the axes.
        path: the PNG to write.
        title: optional title.
    """
    cm = np.asarray(cm)
    norm = row_normalise(cm)
    k = norm.shape[0]
    size = max(6.0, 0.6 * k + 2.5)
    fig = Figure(figsize=(size + 1.0, size))
    ax = fig.add_subplot()
    shown = np.ma.masked_invalid(norm * 100.0)
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=100.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="% of true pixels")
    ax.set_xticks(range(k), labels=list(class_names), rotation=60, ha="right")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    font = 8 if k <= 15 else 6
    for row in range(k):
        for col in range(k):
            value = norm[row, col]
            if np.isnan(value):
                text, colour = "–", "grey"
            else:
                # Empty cells stay blank so the few confusions stand out.
                text = f"{100 * value:.1f}" if cm[row, col] else ""
                colour = "white" if value > 0.5 else "black"
            ax.text(col, row, text, ha="center", va="center", fontsize=font, color=colour)
    ax.set_title(title or "Confusion matrix (rows normalised, %)")
    save_figure(fig, path, dpi=_DPI)


def plot_per_class_iou(
    iou: np.ndarray,
    class_names: Sequence[str],
    miou: float,
    path: str | os.PathLike[str],
    miou_classes: Sequence[int] | None = None,
    colours: Sequence[str] | None = None,
) -> None:
    """Draw one horizontal bar per class IoU, in the class colours, with the mIoU line.

    Args:
        iou: (K,) IoU per class, NaN where undefined.
        class_names: K names.
        miou: the mean IoU, drawn as a vertical line.
        path: the PNG to write.
        miou_classes: the classes averaged into the mIoU; the others are hatched.
        colours: K bar colours; default the model palette.
    """
    iou = np.asarray(iou, dtype=np.float64)
    k = iou.size
    kept = set(range(k - 1) if miou_classes is None else miou_classes)
    fig = Figure(figsize=(8.0, max(4.0, 0.45 * k + 1.5)))
    ax = fig.add_subplot()
    positions = np.arange(k)
    if colours is None:
        colours = class_colours(k)
    bars = ax.barh(positions, np.nan_to_num(iou), color=colours, edgecolor="black")
    for i, bar in enumerate(bars):
        if i not in kept:
            bar.set_hatch("//")
            bar.set_alpha(0.5)
        label = "n/a" if np.isnan(iou[i]) else f"{iou[i]:.3f}"
        ax.text(min(bar.get_width(), 0.88) + 0.01, i, label, va="center", fontsize=8)
    if not np.isnan(miou):
        ax.axvline(miou, color="crimson", linestyle="--", label=f"mIoU {miou:.4f}")
        ax.legend(loc="lower right")
    names = [n if i in kept else f"{n} (not in mIoU)" for i, n in enumerate(class_names)]
    ax.set_yticks(positions, labels=names)
    ax.invert_yaxis()
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("IoU")
    ax.set_title("IoU per class")
    ax.grid(axis="x", alpha=0.3)
    save_figure(fig, path, dpi=_DPI)
