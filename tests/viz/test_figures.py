"""Drawing helpers and the report's worst/best example patches."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from flair2.classes import FULL_PALETTE, class_colours, class_names_for
from flair2.errors import DataError
from flair2.evaluation import evaluate_predictions
from flair2.prediction.writer import write_prediction
from flair2.rasters import read_bands, read_mask, read_prediction
from flair2.viz.figures import (
    DPI,
    build_comparison_figure,
    find_named_files,
    percentile_limits,
    present_classes,
    save_figure,
    select_examples,
    stretch,
)

NAMES = class_names_for(13)
GEO = {"crs": CRS.from_epsg(2154), "transform": from_origin(843000.0, 6520000.0, 0.2, 0.2)}


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255.0


def test_stretch_percentile_joint_and_per_channel():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(20, 30, 3)).astype(np.uint8)
    image[..., 2] //= 4  # a dim blue channel
    lo, hi = np.percentile(image.astype(np.float64), [2, 98])
    expected = np.clip((image - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(stretch(image), expected, atol=1e-6)
    # Per channel, each channel spans 0–1 on its own.
    per = stretch(image, per_channel=True)
    for c in range(3):
        clo, chi = np.percentile(image[..., c].astype(np.float64), [2, 98])
        np.testing.assert_allclose(per[..., c], np.clip((image[..., c] - clo) / (chi - clo), 0, 1))
    # Given limits win; a flat range gives 0; "none" divides 8-bit values by 255.
    limits = (np.array([0.0, 0.0, 0.0]), np.array([255.0, 255.0, 0.0]))
    out = stretch(image, limits=limits)
    np.testing.assert_allclose(out[..., 0], image[..., 0] / 255.0, atol=1e-6)
    assert (out[..., 2] == 0).all()
    np.testing.assert_allclose(stretch(image, "none"), image / 255.0, atol=1e-6)
    with pytest.raises(ValueError, match="percentile"):
        stretch(image, "log")  # type: ignore[arg-type]


def test_percentile_limits_ignore_nan_and_empty():
    values = np.array([[0.0, np.nan], [10.0, 5.0], [20.0, 5.0]])
    lo, hi = percentile_limits(values, 0, 100, per_channel=True)
    np.testing.assert_array_equal(lo, [0.0, 5.0])
    np.testing.assert_array_equal(hi, [20.0, 5.0])
    lo, hi = percentile_limits(np.zeros((0, 3)))
    assert lo.shape == hi.shape == (3,)


def test_select_examples_splits_without_overlap():
    scores = {"a": 0.9, "b": 0.1, "c": None, "d": 0.5, "e": 0.7, "f": 0.3, "g": 0.2, "h": 1.0}
    assert select_examples(scores, 3) == (["b", "g", "f"], ["h", "a", "e"])
    assert select_examples({"a": 0.2, "b": 0.8}, 3) == (["a"], ["b"])
    assert select_examples({"a": 0.2, "b": 0.8, "c": 0.5}, 3) == (["a", "c"], ["b"])
    assert select_examples({"a": None}, 3) == ([], [])
    assert select_examples(scores, 0) == ([], [])


def test_class_colours_and_present_classes():
    colours = class_colours(13)
    assert colours[0] == FULL_PALETTE[1] and colours[11] == FULL_PALETTE[12]
    assert colours[12] == "#000000" and len(colours) == 13
    assert present_classes(np.array([[0, 3], [3, 12]]), np.array([[5, 99]]), num_classes=13) == [
        0,
        3,
        5,
        12,
    ]


def test_comparison_figure_panels_and_legend_pixels(tmp_path):
    truth = np.zeros((32, 32), np.uint8)
    truth[:, 16:] = 4  # building | water
    pred = truth.copy()
    pred[:8, :8] = 6  # deciduous where building is
    rgb = np.random.default_rng(1).random((32, 32, 3))
    fig = build_comparison_figure(truth, pred, NAMES, rgb=rgb, title="worst #1")
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["aerial (R, G, B)", "labels", "prediction"]
    assert titles[3] == f"errors (accuracy {100 * (1 - 64 / 1024):.1f}%)"
    legend = fig.axes[-1].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [
        "building",
        "water",
        "deciduous",
        "correct",
        "wrong",
    ]
    assert len(build_comparison_figure(truth, pred, NAMES).axes) == 4  # no RGB panel

    fig.set_dpi(DPI)
    image = matplotlib.image.imread(save_figure(fig, tmp_path / "cmp.png", tight=False))[..., :3]
    box = fig.axes[-1].get_legend().get_window_extent()
    region = image[int(image.shape[0] - box.y1) : int(image.shape[0] - box.y0), int(box.x0) :]
    for colour in (class_colours(13)[0], class_colours(13)[4], class_colours(13)[6]):
        assert (np.abs(region - _rgb(colour)).max(axis=-1) < 0.02).sum() >= 20, colour


def test_read_bands_and_find_named_files(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / "a" / "b" / "IMG_1.tif"
    path.parent.mkdir(parents=True)
    profile = {"driver": "GTiff", "count": 2, "height": 3, "width": 4, "dtype": "uint8"}
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning):  # noqa: SIM117
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
    np.testing.assert_array_equal(read_bands(path, (1, 0)), np.stack([data[1], data[0]], -1))
    assert read_bands(path).shape == (3, 4, 2)
    with pytest.raises(DataError, match=r"band index 2 out of range.*2 band"):
        read_bands(path, (2,))
    assert find_named_files(tmp_path, {"IMG_1.tif", "IMG_2.tif"}) == {"IMG_1.tif": path}


# ---------------------------------------------------------------------------
# The report's example patches, on the toy test split


@pytest.fixture
def scored(tiny_root: Path, tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """Predictions of the toy test patches: perfect, half wrong, all wrong (kind → id)."""
    labels = tiny_root / "flair_2_labels_test"
    preds = tmp_path / "preds"
    masks = sorted(labels.rglob("MSK_*.tif"))
    assert len(masks) == 3
    expected = {}
    for i, mask in enumerate(masks):
        truth = read_mask(mask)
        pred = truth.copy()
        if i == 1:
            pred[:, :32] = (truth[:, :32] + 1) % 12
        elif i == 2:
            pred = (truth + 1) % 12
        pid = mask.stem[4:]
        write_prediction(preds / f"PRED_{pid}.tif", pred, **GEO)
        expected[["perfect", "half", "wrong"][i]] = pid
    return preds, labels, expected


def test_per_patch_miou_and_example_figures(scored, tiny_root, tmp_path):
    preds, labels, ids = scored
    out = tmp_path / "metrics"
    result = evaluate_predictions(
        preds, labels, out, example_patches=3, aerial_root=tiny_root / "flair_2_aerial_test"
    )
    per_patch = result["per_patch"]
    assert set(per_patch) == set(ids.values())
    assert per_patch[ids["perfect"]] == 1.0 and per_patch[ids["wrong"]] == 0.0
    assert 0.0 < per_patch[ids["half"]] < 1.0

    examples = result["example_patches"]
    assert [e["id"] for e in examples["worst"]] == [ids["wrong"], ids["half"]]
    assert [e["id"] for e in examples["best"]] == [ids["perfect"]]
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["per_patch"] == per_patch
    assert on_disk["example_patches"] == examples

    report = (out / "report.md").read_text()
    assert "## Worst and best patches" in report
    for kind, entries in examples.items():
        for rank, entry in enumerate(entries, start=1):
            figure = out / entry["figure"]
            assert figure.parent == out / "patches" and figure.name.startswith(f"{kind}_{rank}_")
            assert f"]({entry['figure']})" in report
            image = matplotlib.image.imread(figure)
            # Four panels (aerial RGB included) and a legend: 14.6 × 3.4 in at 120 dpi,
            # less the margins of the tight crop; without the RGB panel it is 11.6 in wide.
            assert image.shape[0] >= 300 and image.shape[1] >= 1500, image.shape
    worst = examples["worst"][0]
    assert f"| worst 1 | [IMG_{worst['id']}]({worst['figure']}) |" in report
    assert "| 0.0000 |" in report


def test_no_examples_by_default_and_bad_aerial_root(scored, tmp_path):
    preds, labels, _ = scored
    result = evaluate_predictions(preds, labels, tmp_path / "m")
    assert "example_patches" not in result and not (tmp_path / "m" / "patches").exists()
    assert "Worst and best" not in (tmp_path / "m" / "report.md").read_text()
    with pytest.raises(DataError, match="aerial folder not found"):
        evaluate_predictions(
            preds, labels, tmp_path / "n", example_patches=1, aerial_root=tmp_path / "nope"
        )


def test_read_prediction_follows_values_tag(tmp_path):
    classes = np.array([[0, 1], [12, 4]], np.uint8)
    write_prediction(tmp_path / "m.tif", classes, **GEO, values="model")
    write_prediction(tmp_path / "l.tif", classes, **GEO, values="labels")
    np.testing.assert_array_equal(read_prediction(tmp_path / "m.tif"), classes)
    np.testing.assert_array_equal(read_prediction(tmp_path / "l.tif"), classes)
