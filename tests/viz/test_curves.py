"""Training curves from a Lightning CSVLogger metrics.csv."""

from __future__ import annotations

import os
import time
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from flair2.errors import DataError
from flair2.viz.curves import (
    build_training_figure,
    find_metrics_csv,
    find_metrics_csvs,
    merge_training_logs,
    plot_training_curves,
    read_training_log,
)

# The layout Lightning's CSVLogger writes: sparse rows, 4 steps per epoch, validation
# logged at the last step of each epoch, then the epoch's mean training loss.
TRAIN_LOSS = [2.0, 1.2, 0.9]
VAL_LOSS = [1.5, 1.0, 1.1]
VAL_MIOU = [0.20, 0.35, 0.40]


def _metrics_csv() -> str:
    lines = ["epoch,step,train_loss,train_loss_step,val_loss,val_miou"]
    step = 0
    for epoch in range(3):
        for i in range(4):
            lines.append(f"{epoch},{step},,{TRAIN_LOSS[epoch] + 0.1 * (2 - i)},,")
            step += 1
        lines.append(f"{epoch},{step - 1},,,{VAL_LOSS[epoch]},{VAL_MIOU[epoch]}")
        lines.append(f"{epoch},{step - 1},{TRAIN_LOSS[epoch]},,,")
    return "\n".join(lines) + "\n"


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    csv = tmp_path / "run" / "logs" / "csv" / "metrics.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text(_metrics_csv())
    return tmp_path / "run"


def test_read_groups_sparse_rows_by_epoch(run_dir):
    log = read_training_log(find_metrics_csv(run_dir))
    epochs, values = log.series("train_loss")
    np.testing.assert_array_equal(epochs, [0, 1, 2])
    np.testing.assert_allclose(values, TRAIN_LOSS)
    np.testing.assert_allclose(log.series("val_loss")[1], VAL_LOSS)
    np.testing.assert_allclose(log.series("val_miou")[1], VAL_MIOU)
    assert len(log.steps["train_loss_step"]) == 12
    assert log.steps["train_loss_step"][5] == (1, 5, pytest.approx(1.3))
    assert log.series("absent")[0].size == 0


def test_figure_panels_lines_and_best_marks(run_dir):
    fig = build_training_figure(read_training_log(find_metrics_csv(run_dir)))
    ax_loss, ax_miou = fig.axes
    assert ax_loss.get_title() == "loss per epoch"
    assert ax_miou.get_title() == "validation mIoU per epoch"
    lines = {line.get_label(): line for line in ax_loss.get_lines()}
    np.testing.assert_allclose(lines["train_loss"].get_ydata(), TRAIN_LOSS)
    np.testing.assert_allclose(lines["val_loss"].get_ydata(), VAL_LOSS)
    # Step losses spread inside each epoch's interval, around its centre.
    steps_x = lines["train_loss_step"].get_xdata()
    assert len(steps_x) == 12 and steps_x.min() > -0.5 and steps_x.max() < 2.5
    best_loss = next(label for label in lines if label.startswith("best val_loss"))
    assert best_loss == "best val_loss 1.0000 (epoch 1)"
    miou_labels = [line.get_label() for line in ax_miou.get_lines()]
    assert miou_labels == ["val_miou", "best val_miou 0.4000 (epoch 2)"]


def test_plot_writes_default_png(run_dir):
    out = plot_training_curves(run_dir)
    assert out == run_dir / "training_curves.png"
    image = matplotlib.image.imread(out)
    assert image.shape[0] > 400 and image.shape[1] > 1200
    # The validation curve's orange is drawn.
    orange = np.array([255, 127, 14]) / 255.0
    assert (np.abs(image[..., :3] - orange).max(axis=-1) < 0.02).sum() > 100
    explicit = plot_training_curves(run_dir / "logs" / "csv" / "metrics.csv", run_dir / "x.png")
    assert explicit == run_dir / "x.png" and explicit.is_file()


def test_missing_metrics_csv_names_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no metrics\.csv under .*empty"):
        plot_training_curves(tmp_path / "empty")
    with pytest.raises(DataError, match="log folder not found"):
        plot_training_curves(tmp_path / "nope")
    bad = tmp_path / "bad" / "metrics.csv"
    bad.parent.mkdir()
    bad.write_text("step,loss\n0,1.0\n")
    with pytest.raises(DataError, match="no 'epoch' column"):
        plot_training_curves(tmp_path / "bad")


def test_newest_csv_wins_and_missing_columns_are_noted(tmp_path):
    old = tmp_path / "version_0" / "metrics.csv"
    new = tmp_path / "version_1" / "metrics.csv"
    for path in (old, new):
        path.parent.mkdir()
    old.write_text(_metrics_csv())
    new.write_text("epoch,step,train_loss\n0,3,1.0\n1,7,0.5\n")
    past = time.time() - 100
    os.utime(old, (past, past))
    assert find_metrics_csv(tmp_path) == new
    fig = build_training_figure(read_training_log(new))
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert texts == ["no *miou column logged"]


def test_resumed_run_logs_are_merged(tmp_path):
    first = tmp_path / "csv" / "version_0" / "metrics.csv"
    resumed = tmp_path / "csv" / "version_1" / "metrics.csv"
    for path in (first, resumed):
        path.parent.mkdir(parents=True)
    first.write_text("epoch,step,train_loss,train_loss_step,val_loss\n0,0,,2.0,\n0,0,1.9,,1.5\n")
    resumed.write_text("epoch,step,train_loss,train_loss_step,val_loss\n1,1,,1.2,\n1,1,1.1,,1.0\n")
    past = time.time() - 100
    os.utime(first, (past, past))
    assert find_metrics_csvs(tmp_path) == [first, resumed]
    merged = merge_training_logs([read_training_log(p) for p in (first, resumed)])
    np.testing.assert_array_equal(merged.series("val_loss")[0], [0, 1])
    np.testing.assert_allclose(merged.series("val_loss")[1], [1.5, 1.0])
    assert [p[0] for p in merged.steps["train_loss_step"]] == [0, 1]
    out = plot_training_curves(tmp_path)
    assert out == tmp_path / "training_curves.png" and out.is_file()


def test_loss_axis_turns_logarithmic_when_an_early_loss_dwarfs_the_rest(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,train_loss,val_loss\n0,1,5.0,20000.0\n1,2,3.0,4.0\n2,3,2.0,2.5\n")
    fig = build_training_figure(read_training_log(path))
    assert fig.axes[0].get_yscale() == "log"
    path.write_text("epoch,step,train_loss,val_loss\n0,1,5.0,6.0\n1,2,3.0,4.0\n")
    flat = build_training_figure(read_training_log(path))
    assert flat.axes[0].get_yscale() == "linear"
