"""End-to-end scoring of crafted GeoTIFF predictions against crafted masks."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from flair2.errors import DataError
from flair2.evaluation import evaluate_predictions, format_table
from flair2.prediction.writer import write_prediction

CRS_2154 = CRS.from_epsg(2154)
TRANSFORM = from_origin(843000.0, 6520000.0, 0.2, 0.2)

# Patch 1, domain D001_2020: label values (1–19).
TRUTH_1 = np.array(
    [
        [1, 1, 1, 1],
        [1, 1, 2, 2],
        [2, 2, 2, 2],
        [14, 19, 3, 3],  # 14 and 19 become "other" (index 12)
    ],
    dtype=np.uint8,
)
# Model indices, written like the reference: no tag, no georeferencing.
PRED_1 = np.array(
    [
        [0, 0, 0, 4],  # 4 = water, absent from every mask
        [0, 1, 1, 1],
        [1, 1, 1, 1],
        [12, 0, 2, 2],
    ],
    dtype=np.uint8,
)
# Patch 2, domain D002_2021.
TRUTH_2 = np.array(
    [
        [3, 3, 3, 3],
        [3, 3, 3, 3],
        [1, 1, 13, 13],
        [2, 2, 15, 15],
    ],
    dtype=np.uint8,
)
# Model indices, written by our writer as label values (1–13, tag "labels").
PRED_2 = np.array(
    [
        [2, 2, 2, 2],
        [2, 2, 1, 1],
        [0, 4, 12, 12],
        [1, 1, 2, 12],
    ],
    dtype=np.uint8,
)


def _write_tif(path: Path, array: np.ndarray, tags: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "GTiff",
        "count": 1,
        "height": array.shape[0],
        "width": array.shape[1],
        "dtype": "uint8",
        "crs": CRS_2154,
        "transform": TRANSFORM,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
        if tags:
            dst.update_tags(**tags)
    return path


def _write_reference_style(path: Path, array: np.ndarray) -> None:
    """A plain TIFF without georeferencing or tag, as the reference's PIL writer makes."""
    profile = {"driver": "GTiff", "count": 1, "height": 4, "width": 4, "dtype": "uint8"}
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning):  # noqa: SIM117
        with rasterio.open(path, "w", compress="lzw", **profile) as dst:
            dst.write(array, 1)


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Path]:
    labels = tmp_path / "flair_2_labels_test"
    preds = tmp_path / "predictions"
    _write_tif(labels / "D001_2020" / "Z1_UF" / "msk" / "MSK_000001.tif", TRUTH_1)
    _write_tif(labels / "D002_2021" / "Z7_NN" / "msk" / "MSK_000002.tif", TRUTH_2)
    preds.mkdir()
    _write_reference_style(preds / "PRED_000001.tif", PRED_1)
    write_prediction(
        preds / "PRED_000002.tif", PRED_2, crs=CRS_2154, transform=TRANSFORM, values="labels"
    )
    return preds, labels


# The summed confusion matrix, by hand (rows = truth, columns = prediction):
#   truth 0 (8 px):  0→5, 1→1, 4→2
#   truth 1 (8 px):  1→8
#   truth 2 (10 px): 2→8, 1→2
#   truth 12 (6 px): 12→4, 0→1, 2→1
EXPECTED_CM = np.zeros((13, 13), dtype=np.int64)
EXPECTED_CM[0, [0, 1, 4]] = [5, 1, 2]
EXPECTED_CM[1, 1] = 8
EXPECTED_CM[2, [2, 1]] = [8, 2]
EXPECTED_CM[12, [12, 0, 2]] = [4, 1, 1]


def test_metrics_equal_hand_computation(dataset, tmp_path):
    preds, labels = dataset
    out = tmp_path / "eval"
    result = evaluate_predictions(preds, labels, out_dir=out)

    np.testing.assert_array_equal(np.array(result["confusion_matrix"]), EXPECTED_CM)
    assert result["num_patches"] == 2
    assert result["num_pixels"] == 32
    assert result["class_names"][0] == "building" and result["class_names"][12] == "other"
    pc = result["per_class"]
    # IoU = tp / (tp + fp + fn)
    assert pc["building"]["iou"] == pytest.approx(5 / 9)  # tp 5, fp 1, fn 3
    assert pc["pervious surface"]["iou"] == pytest.approx(8 / 11)  # tp 8, fp 3, fn 0
    assert pc["impervious surface"]["iou"] == pytest.approx(8 / 11)  # tp 8, fp 1, fn 2
    assert pc["water"]["iou"] == 0.0  # predicted, absent from truth: counts as 0
    assert pc["other"]["iou"] == pytest.approx(4 / 6)  # tp 4, fn 2: not in the mIoU
    assert pc["bare soil"]["iou"] is None  # absent everywhere: excluded
    assert pc["building"]["precision"] == pytest.approx(5 / 6)
    assert pc["building"]["recall"] == pytest.approx(5 / 8)
    assert pc["building"]["f1"] == pytest.approx(10 / 14)
    assert pc["building"]["support"] == 8
    assert pc["water"]["precision"] == 0.0 and pc["water"]["recall"] is None
    assert pc["water"]["f1"] == 0.0
    assert pc["impervious surface"]["recall"] == pytest.approx(8 / 10)
    # mIoU over the defined IoUs of the first 12 classes: building, pervious, impervious, water.
    assert result["miou"] == pytest.approx((5 / 9 + 8 / 11 + 8 / 11 + 0.0) / 4)
    assert result["miou"] == pytest.approx(199 / 396)
    assert result["overall_accuracy"] == pytest.approx(25 / 32)
    assert "other" not in result["miou_classes"] and len(result["miou_classes"]) == 12

    d1, d2 = result["per_domain"]["D001_2020"], result["per_domain"]["D002_2021"]
    assert set(result["per_domain"]) == {"D001_2020", "D002_2021"}
    # D001: building 4/7, pervious 6/7, impervious 2/2, water 0 → (17/7) / 4
    assert d1["miou"] == pytest.approx((4 / 7 + 6 / 7 + 1.0 + 0.0) / 4)
    assert d1["overall_accuracy"] == pytest.approx(13 / 16)
    assert d1["num_patches"] == 1
    assert d1["iou"]["other"] == pytest.approx(1 / 2)
    # D002: building 1/2, pervious 2/4, impervious 6/9, water 0 → (5/3) / 4
    assert d2["miou"] == pytest.approx((1 / 2 + 2 / 4 + 6 / 9 + 0.0) / 4)
    assert d2["overall_accuracy"] == pytest.approx(12 / 16)
    assert d2["num_patches"] == 1

    # The files hold the same numbers; NaN is written as null.
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["miou"] == pytest.approx(199 / 396)
    assert on_disk["per_class"]["bare soil"]["iou"] is None
    assert "NaN" not in (out / "metrics.json").read_text()
    np.testing.assert_array_equal(np.load(out / "confusion_matrix.npy"), EXPECTED_CM)
    csv_lines = (out / "confusion_matrix.csv").read_text().splitlines()
    assert csv_lines[0].split(",")[1:4] == ["building", "pervious surface", "impervious surface"]
    assert csv_lines[1] == "building,5,1,0,0,2,0,0,0,0,0,0,0,0"
    assert csv_lines[13].startswith("other,1,0,1,")


def test_figures_and_report(dataset, tmp_path):
    preds, labels = dataset
    out = tmp_path / "eval"
    result = evaluate_predictions(preds, labels, out_dir=out)
    for name in ("confusion_matrix.png", "per_class_iou.png"):
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] >= 300 and image.shape[1] >= 300, name
    report = (out / "report.md").read_text()
    assert "mIoU 0.5025 | overall accuracy 0.7812 | 2 patches" in report
    assert "| building | 0.5556 | 0.8333 | 0.6250 | 0.7143 | 8 | 25.00 |" in report
    assert "| water | 0.0000 | 0.0000 | n/a | 0.0000 | 0 | 0.00 |" in report
    assert "| bare soil | n/a | n/a | n/a | n/a | 0 | 0.00 |" in report
    assert "| other \\* | 0.6667 |" in report
    assert "| D001_2020 | 1 | 0.6071 | 0.8125 |" in report
    assert "| D002_2021 | 1 | 0.4167 | 0.7500 |" in report
    assert "![Confusion matrix, rows normalised (%)](confusion_matrix.png)" in report
    assert "(per_class_iou.png)" in report
    # No temporary files left in the output folder.
    assert sorted(p.name for p in out.iterdir()) == [
        "confusion_matrix.csv",
        "confusion_matrix.npy",
        "confusion_matrix.png",
        "metrics.json",
        "per_class_iou.png",
        "report.md",
    ]
    table = format_table(result)
    assert table.splitlines()[0] == "mIoU 0.5025 | overall accuracy 0.7812 | 2 patches"
    assert any(line.split()[:2] == ["building", "0.5556"] for line in table.splitlines())
    assert "[" not in table  # nothing rich would take for markup


def test_without_out_dir_writes_nothing_and_progress_works(dataset, tmp_path):
    preds, labels = dataset
    before = sorted(p.name for p in tmp_path.iterdir())
    result = evaluate_predictions(preds, labels, progress=True)
    assert result["miou"] == pytest.approx(199 / 396)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_shape_mismatch_names_both_files(dataset):
    preds, labels = dataset
    _write_tif(preds / "PRED_000002.tif", np.zeros((4, 5), np.uint8))
    with pytest.raises(DataError, match=r"MSK_000002\.tif.*PRED_000002\.tif") as info:
        evaluate_predictions(preds, labels)
    assert "4×4" in str(info.value) and "4×5" in str(info.value)


def test_missing_prediction_fails_before_scoring(dataset):
    preds, labels = dataset
    (preds / "PRED_000002.tif").unlink()
    with pytest.raises(DataError, match=r"PRED_000002\.tif"):
        evaluate_predictions(preds, labels)


def test_out_of_range_prediction_names_file(dataset):
    preds, labels = dataset
    bad = PRED_1.copy()
    bad[0, 0] = 13
    _write_tif(preds / "PRED_000001.tif", bad)
    # Untagged, 0 and 13 fit neither reading; read as model indices, 13 is out of range.
    with pytest.raises(DataError, match=r"PRED_000001\.tif.*fit neither"):
        evaluate_predictions(preds, labels)
    with pytest.raises(DataError, match=r"PRED_000001\.tif.*outside 0\.\.12: 13"):
        evaluate_predictions(preds, labels, values="model")
    # In label convention 0 is out of range (it maps to -1).
    _write_tif(preds / "PRED_000001.tif", PRED_1, tags={"FLAIR2_VALUES": "labels"})
    with pytest.raises(DataError, match=r"PRED_000001\.tif.*outside 0\.\.12: -1"):
        evaluate_predictions(preds, labels)
    _write_tif(preds / "PRED_000001.tif", PRED_1, tags={"FLAIR2_VALUES": "percent"})
    with pytest.raises(DataError, match=r"FLAIR2_VALUES='percent'"):
        evaluate_predictions(preds, labels)


def test_zero_in_mask_is_rejected(dataset):
    preds, labels = dataset
    bad = TRUTH_1.copy()
    bad[1, 1] = 0
    _write_tif(labels / "D001_2020" / "Z1_UF" / "msk" / "MSK_000001.tif", bad)
    with pytest.raises(DataError, match=r"MSK_000001\.tif: label value 0"):
        evaluate_predictions(preds, labels)
