"""Training curves from Lightning's CSV log: losses and validation mIoU per epoch.

Lightning's ``CSVLogger`` writes one ``metrics.csv`` whose rows are sparse: a row
per logging step holds ``train_loss_step``, the end of each training epoch
``train_loss``, the end of each validation ``val_loss`` and ``val_miou``; cells of
metrics not logged in that row are empty. Rows are grouped here by ``epoch``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from flair2.errors import DataError
from flair2.viz.figures import save_figure

log = logging.getLogger(__name__)

#: Name of the file Lightning's CSVLogger writes.
METRICS_FILE = "metrics.csv"


@dataclass
class TrainingLog:
    """Metrics of a training run, read from a ``metrics.csv``.

    Attributes:
        path: the file read.
        epochs: metric name → (epoch → value) of the per-epoch metrics (every column
            but ``epoch``, ``step`` and the ``*_step`` ones; several values in one
            epoch are averaged).
        steps: metric name → list of (epoch, step, value) of the ``*_step`` columns.
    """

    path: Path
    epochs: dict[str, dict[int, float]] = field(default_factory=dict)
    steps: dict[str, list[tuple[int, int, float]]] = field(default_factory=dict)

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(epochs, values) of a per-epoch metric, sorted by epoch; empty when absent."""
        values = self.epochs.get(name, {})
        epochs = np.array(sorted(values), dtype=np.int64)
        return epochs, np.array([values[e] for e in epochs], dtype=np.float64)


def find_metrics_csvs(log_dir: str | os.PathLike[str]) -> list[Path]:
    """Every ``metrics.csv`` below ``log_dir`` (or the file itself), oldest first.

    A resumed training writes a new logger version beside the first run's, so a
    run's history can span several files.

    Raises:
        DataError: ``log_dir`` does not exist or holds no ``metrics.csv``.
    """
    root = Path(log_dir)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DataError(f"log folder not found: {root}")
    found = sorted(root.rglob(METRICS_FILE), key=lambda p: (p.stat().st_mtime, str(p)))
    if not found:
        raise DataError(
            f"no {METRICS_FILE} under {root}: pass a training run's folder "
            "(<out_folder>/<out_model_name>) or its logs/ folder"
        )
    return found


def merge_training_logs(logs: list[TrainingLog]) -> TrainingLog:
    """One history from several logs, oldest first: a later log's value for an epoch wins.

    Raises:
        ValueError: no log given.
    """
    if not logs:
        raise ValueError("merge_training_logs: no log given")
    merged = TrainingLog(path=logs[-1].path)
    for part in logs:
        for name, values in part.epochs.items():
            merged.epochs.setdefault(name, {}).update(values)
        for name, points in part.steps.items():
            redone = {e for e, _, _ in points}
            kept = [p for p in merged.steps.get(name, []) if p[0] not in redone]
            merged.steps[name] = kept + points
    return merged


def find_metrics_csv(log_dir: str | os.PathLike[str]) -> Path:
    """The newest ``metrics.csv`` of a run: ``log_dir`` itself if it is the file.

    Raises:
        DataError: ``log_dir`` does not exist or holds no ``metrics.csv``.
    """
    return find_metrics_csvs(log_dir)[-1]


def _number(cell: str | None) -> float | None:
    """A CSV cell as a finite float, None when empty or not a number."""
    if cell is None or not cell.strip():
        return None
    try:
        value = float(cell)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_training_log(path: str | os.PathLike[str]) -> TrainingLog:
    """Parse a Lightning ``metrics.csv``.

    Raises:
        DataError: the file is unreadable or has no ``epoch`` column.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not rows or "epoch" not in rows[0]:
        raise DataError(f"{path}: no 'epoch' column; expected a Lightning CSVLogger metrics.csv")
    sums: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    steps: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
    for row in rows:
        epoch = _number(row.get("epoch"))
        if epoch is None:
            continue
        step = _number(row.get("step"))
        for name, cell in row.items():
            value = _number(cell)
            if name in ("epoch", "step") or name is None or value is None:
                continue
            if name.endswith("_step"):
                steps[name].append((int(epoch), int(step or 0), value))
            else:
                sums[name][int(epoch)].append(value)
    epochs = {n: {e: float(np.mean(v)) for e, v in by.items()} for n, by in sums.items()}
    return TrainingLog(path=path, epochs=epochs, steps=dict(steps))


def _step_positions(points: list[tuple[int, int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The x positions of step values: spread evenly over (epoch − 0.5, epoch + 0.5)."""
    by_epoch: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for epoch, step, value in points:
        by_epoch[epoch].append((step, value))
    xs: list[float] = []
    ys: list[float] = []
    for epoch in sorted(by_epoch):
        items = sorted(by_epoch[epoch])
        n = len(items)
        for i, (_, value) in enumerate(items):
            xs.append(epoch - 0.5 + (i + 0.5) / n)
            ys.append(value)
    return np.array(xs), np.array(ys)


def build_training_figure(training_log: TrainingLog) -> Figure:
    """Two panels: train/validation loss per epoch, and validation mIoU per epoch.

    Every per-epoch column ending in ``loss`` goes in the first panel, every column
    ending in ``miou`` in the second; ``train_loss_step`` is drawn faintly behind.
    The best epoch (lowest ``val_loss``, highest ``val_miou``) is marked.
    """
    fig = Figure(figsize=(12.0, 4.2), layout="constrained")
    ax_loss, ax_miou = fig.subplots(1, 2)
    colours = {"train": "tab:blue", "val": "tab:orange"}

    step_points = training_log.steps.get("train_loss_step", [])
    if step_points:
        x, y = _step_positions(step_points)
        ax_loss.plot(x, y, color=colours["train"], alpha=0.25, lw=0.8, label="train_loss_step")
    for ax, suffix in ((ax_loss, "loss"), (ax_miou, "miou")):
        names = sorted(n for n in training_log.epochs if n.endswith(suffix))
        for name in names:
            epochs, values = training_log.series(name)
            colour = colours.get(name.split("_")[0])
            ax.plot(epochs, values, marker="o", ms=4, color=colour, label=name)
        if not names:
            ax.text(
                0.5,
                0.5,
                f"no *{suffix} column logged",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="grey",
            )
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)

    # Mark the best epoch: lowest validation loss, highest validation mIoU.
    for ax, name, pick in ((ax_loss, "val_loss", np.argmin), (ax_miou, "val_miou", np.argmax)):
        epochs, values = training_log.series(name)
        if epochs.size:
            best = int(pick(values))
            ax.plot(
                epochs[best],
                values[best],
                marker="*",
                ms=14,
                color="crimson",
                ls="none",
                label=f"best {name} {values[best]:.4f} (epoch {epochs[best]})",
            )
    # An early validation loss far above the rest (BatchNorm statistics of the first
    # epochs) would flatten every later point: switch to a log scale then.
    low, high = ax_loss.dataLim.y0, ax_loss.dataLim.y1
    if low > 0 and high / low > 100:
        ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("loss per epoch")
    ax_miou.set_ylabel("mIoU")
    ax_miou.set_title("validation mIoU per epoch")
    for ax in (ax_loss, ax_miou):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        # Epochs are integers: no fractional ticks on short runs.
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(f"training curves — {training_log.path}", fontsize=9)
    return fig


def plot_training_curves(
    log_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> Path:
    """Plot a run's losses and validation mIoU per epoch from its ``metrics.csv``.

    Args:
        log_dir: the run folder, its ``logs/`` folder or the ``metrics.csv`` itself
            (searched recursively; several files — a resumed run — are merged,
            the newer one winning for an epoch present in both).
        out: the image to write; default ``<log_dir>/training_curves.png`` (beside
            the CSV when ``log_dir`` is the file).

    Returns:
        The path written.

    Raises:
        DataError: no readable ``metrics.csv`` under ``log_dir``.
    """
    training_log = merge_training_logs([read_training_log(p) for p in find_metrics_csvs(log_dir)])
    if out is None:
        base = Path(log_dir)
        out = (base.parent if base.is_file() else base) / "training_curves.png"
    written = save_figure(build_training_figure(training_log), out)
    log.info("training curves: %s", written)
    return written
