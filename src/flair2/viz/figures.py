"""Drawing helpers shared by every flair2 figure, and the report's example-patch panels.

Data-free on purpose: this module reads GeoTIFF bands and draws arrays, but knows
nothing of the dataset layout or the Sentinel-2 files (``flair2.viz.patch`` does),
so the evaluation layer can use it to show any tool's predictions.

Figures are built on the Agg canvas directly (no ``pyplot``): nothing depends on a
display or on global pyplot state, and every file is written atomically.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.patches import Patch

from flair2.classes import class_colours
from flair2.io import atomic_path

log = logging.getLogger(__name__)

#: Resolution of every saved figure.
DPI = 120
#: Colours of the error map: correct pixels light grey, wrong ones red.
CORRECT_COLOUR = "#e6e6e6"
WRONG_COLOUR = "#d7191c"

Stretch = Literal["percentile", "none"]


# ---------------------------------------------------------------------------
# Saving


def save_figure(
    fig: Figure, path: str | os.PathLike[str], *, dpi: int = DPI, tight: bool = True
) -> Path:
    """Write a figure atomically; the format comes from the suffix (``.png``, ``.jpg``, ``.pdf``…).

    Args:
        fig: the figure.
        path: the output file.
        dpi: dots per inch.
        tight: crop the canvas to the drawn content (``bbox_inches="tight"``).

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        # The temporary name ends in .tmp: the format must be named explicitly.
        fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight" if tight else None)
    return path


# ---------------------------------------------------------------------------
# Images


def percentile_limits(
    values: np.ndarray, low: float = 2.0, high: float = 98.0, *, per_channel: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Low and high percentiles of a channel-last array, ignoring NaN.

    Args:
        values: (..., C) any numeric array, e.g. (H, W, 3), (T, H, W, 3) or (N, 3).
        low: lower percentile, in [0, 100].
        high: upper percentile, in [0, 100].
        per_channel: one range per channel (balances the channels, which removes the
            colour cast of a scene but also its true hue); by default one range over
            all channels, which keeps the colours as they are.

    Returns:
        (lo (C,), hi (C,)) float64.
    """
    channels = values.shape[-1]
    flat = np.asarray(values, dtype=np.float64).reshape(-1, channels)
    if flat.shape[0] == 0:
        return np.zeros(channels), np.zeros(channels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN input gives NaN limits
        if per_channel:
            lo, hi = np.nanpercentile(flat, [low, high], axis=0)
        else:
            lo, hi = np.full((2, channels), np.nanpercentile(flat, [low, high])[:, None])
    return np.nan_to_num(lo), np.nan_to_num(hi)


def stretch(
    image: np.ndarray,
    mode: Stretch = "percentile",
    limits: tuple[np.ndarray, np.ndarray] | None = None,
    low: float = 2.0,
    high: float = 98.0,
    *,
    per_channel: bool = False,
) -> np.ndarray:
    """Scale a channel-last image to [0, 1] for display.

    Modes:
        ``percentile``: the ``low``–``high`` percentile range of the image's values
            (or the given ``limits``) maps linearly to 0–1, values outside are
            clipped. One range for all channels unless ``per_channel`` (see
            :func:`percentile_limits`). A channel whose range is empty becomes 0.
        ``none``: unsigned integers are divided by 255 (8-bit imagery, as the FLAIR
            aerial patches) and clipped; floats are clipped to [0, 1].

    Args:
        image: (..., C) array.
        mode: see above.
        limits: (lo (C,), hi (C,)) to use instead of the image's own percentiles, e.g.
            computed once over a whole time series so its dates stay comparable.
        low: lower percentile, for ``percentile`` without ``limits``.
        high: upper percentile, likewise.
        per_channel: one percentile range per channel.

    Returns:
        float32 array of the same shape, values in [0, 1].
    """
    image = np.asarray(image)
    if mode == "none":
        scale = 255.0 if np.issubdtype(image.dtype, np.integer) else 1.0
        return np.clip(image.astype(np.float32) / np.float32(scale), 0.0, 1.0)
    if mode != "percentile":
        raise ValueError(f"stretch must be 'percentile' or 'none', got {mode!r}")
    if limits is None:
        limits = percentile_limits(image, low, high, per_channel=per_channel)
    lo, hi = limits
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    span = hi - lo
    safe = np.where(span > 0, span, 1.0)
    out = (image.astype(np.float64) - lo) / safe
    out = np.where(span > 0, out, 0.0)
    return np.clip(np.nan_to_num(out), 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------
# Class maps


def class_cmap(num_classes: int) -> tuple[ListedColormap, BoundaryNorm]:
    """A colormap and norm drawing model index ``i`` in the colour of class ``i``."""
    cmap = ListedColormap(class_colours(num_classes), name="flair2_classes")
    norm = BoundaryNorm(np.arange(num_classes + 1) - 0.5, num_classes)
    return cmap, norm


def draw_class_map(ax: Axes, indices: np.ndarray, num_classes: int, title: str) -> None:
    """Show an (H, W) map of model indices in the class palette, without ticks."""
    cmap, norm = class_cmap(num_classes)
    ax.imshow(indices, cmap=cmap, norm=norm, interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()


def present_classes(*maps: np.ndarray, num_classes: int) -> list[int]:
    """Sorted model indices that occur in any of the maps (values outside 0..K−1 ignored)."""
    found: set[int] = set()
    for m in maps:
        values = np.unique(np.asarray(m))
        found.update(int(v) for v in values if 0 <= v < num_classes)
    return sorted(found)


def class_legend(
    target: Axes | Figure,
    classes: Iterable[int],
    class_names: Sequence[str],
    *,
    extra: Sequence[tuple[str, str]] = (),
    title: str = "classes",
    **kwargs: Any,
) -> Legend:
    """A legend of coloured squares, one per class index (plus ``extra`` (label, colour)).

    Args:
        target: the axes or figure the legend belongs to.
        classes: model indices to list, in order.
        class_names: K names.
        extra: additional (label, colour) entries, e.g. the error map's colours.
        title: legend title.
        **kwargs: passed to ``legend`` (``loc``, ``ncols``, ``fontsize``…).
    """
    colours = class_colours(len(class_names))
    handles = [
        Patch(facecolor=colours[i], edgecolor="black", linewidth=0.5, label=class_names[i])
        for i in classes
    ]
    handles += [
        Patch(facecolor=colour, edgecolor="black", linewidth=0.5, label=label)
        for label, colour in extra
    ]
    kwargs.setdefault("frameon", False)
    return target.legend(handles=handles, title=title, **kwargs)


def draw_errors(ax: Axes, truth: np.ndarray, prediction: np.ndarray) -> float:
    """Show where a prediction is wrong (red) or right (grey); return the pixel accuracy."""
    wrong = np.asarray(truth) != np.asarray(prediction)
    cmap = ListedColormap([CORRECT_COLOUR, WRONG_COLOUR])
    ax.imshow(wrong.astype(np.uint8), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    accuracy = 1.0 - float(wrong.mean()) if wrong.size else float("nan")
    ax.set_title(f"errors (accuracy {100 * accuracy:.1f}%)")
    ax.set_axis_off()
    return accuracy


# ---------------------------------------------------------------------------
# The report's example patches


def select_examples(
    per_patch: Mapping[str, float | None], count: int
) -> tuple[list[str], list[str]]:
    """The ids of the worst and best patches by mIoU (patches without a score skipped).

    With few patches the two lists do not overlap: the worst half (at most ``count``)
    goes first, the best of the rest (at most ``count``) second.

    Args:
        per_patch: patch id → mIoU (None when undefined).
        count: how many of each to keep.

    Returns:
        (worst ids, lowest first; best ids, highest first). Ties keep id order.
    """
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    scored = sorted(
        ((v, k) for k, v in per_patch.items() if v is not None and not np.isnan(v)),
        key=lambda item: item[0],
    )
    n_worst = min(count, (len(scored) + 1) // 2)
    n_best = min(count, len(scored) - n_worst)
    worst = [k for _, k in scored[:n_worst]]
    best = [k for _, k in scored[len(scored) - n_best :]][::-1] if n_best else []
    return worst, best


def find_named_files(root: str | os.PathLike[str], names: Collection[str]) -> dict[str, Path]:
    """Find files by exact name under ``root`` in one walk, stopping once all are found.

    Args:
        root: the folder to search (recursively).
        names: file names, e.g. ``{"IMG_000123.tif"}``.

    Returns:
        name → path for the names found (the first one in sorted walk order).
    """
    wanted = set(names)
    found: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames.sort()
        for name in wanted.intersection(filenames):
            found.setdefault(name, Path(dirpath) / name)
        if len(found) == len(wanted):
            break
    return found


def build_comparison_figure(
    truth: np.ndarray,
    prediction: np.ndarray,
    class_names: Sequence[str],
    *,
    rgb: np.ndarray | None = None,
    title: str = "",
) -> Figure:
    """Panels of one patch: [aerial RGB,] labels, prediction, errors, and a class legend.

    Args:
        truth: (H, W) model indices of the mask.
        prediction: (H, W) model indices of the prediction.
        class_names: K names (K = number of model classes).
        rgb: optional (H, W, 3) image in [0, 1] (see :func:`stretch`).
        title: the figure title.

    Returns:
        The figure (one axes per panel, the legend on the last one).
    """
    k = len(class_names)
    panels = 3 + (rgb is not None)
    fig = Figure(figsize=(3.0 * panels + 2.6, 3.4), layout="constrained")
    axes = fig.subplots(1, panels + 1, width_ratios=[1.0] * panels + [0.8])
    i = 0
    if rgb is not None:
        axes[0].imshow(rgb, interpolation="nearest")
        axes[0].set_title("aerial (R, G, B)")
        axes[0].set_axis_off()
        i = 1
    draw_class_map(axes[i], truth, k, "labels")
    draw_class_map(axes[i + 1], prediction, k, "prediction")
    draw_errors(axes[i + 2], truth, prediction)
    legend_ax = axes[-1]
    legend_ax.set_axis_off()
    class_legend(
        legend_ax,
        present_classes(truth, prediction, num_classes=k),
        class_names,
        extra=[("correct", CORRECT_COLOUR), ("wrong", WRONG_COLOUR)],
        loc="center left",
        fontsize=8,
    )
    if title:
        fig.suptitle(title)
    return fig
