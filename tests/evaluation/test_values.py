"""Untagged predictions: read as model indices or labels from values and masks, or refused."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

import flair2.evaluation.evaluate as evaluate_module
from conftest import tiny_settings
from flair2.cli import main
from flair2.errors import DataError
from flair2.evaluation.evaluate import evaluate_predictions
from flair2.evaluation.values import ValuesOption
from flair2.formats import VALUES_TAG
from flair2.rasters import read_prediction

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")

IDS = ("000001", "000002", "000003")


def _tif(path: Path, values: np.ndarray, tags: dict[str, str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = values.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8") as dst:
        dst.write(values.astype(np.uint8), 1)
        if tags:
            dst.update_tags(**tags)


@pytest.fixture
def masks(tmp_path: Path) -> dict[str, np.ndarray]:
    """Label masks 1–12 (no 'other'), 16×16, under an official-looking labels root."""
    rng = np.random.default_rng(0)
    out = {}
    for pid in IDS:
        labels = rng.integers(1, 13, (16, 16))
        _tif(tmp_path / "labels" / "D001_2020" / "Z1_UF" / "msk" / f"MSK_{pid}.tif", labels)
        out[pid] = labels
    return out


def _predictions(
    folder: Path, preds: dict[str, np.ndarray], tags: dict[str, str] | None = None
) -> Path:
    for pid, values in preds.items():
        _tif(folder / f"PRED_{pid}.tif", values, tags)
    return folder


def _score(tmp_path: Path, preds: Path, values: ValuesOption = "auto") -> dict:
    return evaluate_predictions(preds, tmp_path / "labels", values=values)


def test_label_values_without_a_13_are_read_as_labels_by_the_masks(
    tmp_path: Path, masks: dict[str, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    # Another tool's near-perfect prediction in the label nomenclature; no pixel is 13.
    preds = {pid: m.copy() for pid, m in masks.items()}
    preds[IDS[0]][0, :4] = 3  # a few errors
    with caplog.at_level(logging.WARNING):
        metrics = _score(tmp_path, _predictions(tmp_path / "p", preds))
    assert metrics["miou"] > 0.95  # read as 0–12 it would be about 0
    assert metrics["untagged_predictions"] == {
        "untagged_files": 3,
        "reading": "labels",
        "decided_by": "masks",
    }
    assert "read as labels 1–13" in caplog.text and "--values" in caplog.text


def test_a_zero_means_model_indices_and_a_13_means_labels(
    tmp_path: Path, masks: dict[str, np.ndarray]
) -> None:
    as_model = {pid: m - 1 for pid, m in masks.items()}  # the reference's 0–12: holds zeros
    metrics = _score(tmp_path, _predictions(tmp_path / "m", as_model))
    assert metrics["miou"] == 1.0
    assert metrics["untagged_predictions"]["reading"] == "model"
    assert metrics["untagged_predictions"]["decided_by"] == "values"
    as_labels = {pid: m.copy() for pid, m in masks.items()}
    as_labels[IDS[1]][5, 5] = 13  # one 'other' pixel
    metrics = _score(tmp_path, _predictions(tmp_path / "l", as_labels))
    assert metrics["untagged_predictions"]["reading"] == "labels"
    assert metrics["untagged_predictions"]["decided_by"] == "values"
    assert metrics["miou"] > 0.95


def test_zero_and_13_together_fit_neither_reading(
    tmp_path: Path, masks: dict[str, np.ndarray]
) -> None:
    preds = {pid: m.copy() for pid, m in masks.items()}
    preds[IDS[0]][0, 0] = 0
    preds[IDS[2]][0, 0] = 13
    with pytest.raises(DataError) as err:
        _score(tmp_path, _predictions(tmp_path / "p", preds))
    message = str(err.value)
    assert "PRED_000001.tif" in message and "PRED_000003.tif" in message
    assert "fit neither" in message and "\n" not in message


def test_a_file_out_of_range_either_way_is_named_whatever_the_others_say(
    tmp_path: Path, masks: dict[str, np.ndarray]
) -> None:
    preds = {pid: m.copy() for pid, m in masks.items()}
    preds[IDS[1]][3, 3] = 255  # a nodata value: neither an index nor a label
    with pytest.raises(DataError) as err:
        _score(tmp_path, _predictions(tmp_path / "p", preds))
    message = str(err.value)
    assert "PRED_000002.tif" in message and "fit neither" in message and "1..255" in message


def test_values_the_masks_cannot_tell_apart_are_refused_naming_the_option(
    tmp_path: Path, masks: dict[str, np.ndarray]
) -> None:
    rng = np.random.default_rng(1)
    preds = {pid: rng.integers(1, 13, (16, 16)) for pid in IDS}  # noise in 1..12
    folder = _predictions(tmp_path / "p", preds)
    with pytest.raises(DataError, match="pass --values model or --values labels") as err:
        _score(tmp_path, folder)
    assert "\n" not in str(err.value)
    forced = _score(tmp_path, folder, values="labels")
    assert forced["untagged_predictions"] == {
        "untagged_files": 3,
        "reading": "labels",
        "decided_by": "option",
    }


def test_a_forced_reading_is_applied_even_against_the_evidence(
    tmp_path: Path, masks: dict[str, np.ndarray]
) -> None:
    as_labels = _predictions(tmp_path / "l", {pid: m.copy() for pid, m in masks.items()})
    forced = _score(tmp_path, as_labels, values="model")  # auto would pick labels
    assert forced["miou"] < 0.2
    assert forced["untagged_predictions"]["decided_by"] == "option"
    as_model = _predictions(tmp_path / "m", {pid: m - 1 for pid, m in masks.items()})
    with pytest.raises(DataError, match=r"PRED_\d+\.tif.*outside 0\.\.12: -1"):
        _score(tmp_path, as_model, values="labels")  # its zeros become -1


def test_tagged_files_follow_their_tag_whatever_the_option(
    tmp_path: Path, masks: dict[str, np.ndarray], caplog: pytest.LogCaptureFixture
) -> None:
    preds = {pid: m.copy() for pid, m in masks.items()}  # labels, without any 13
    folder = _predictions(tmp_path / "p", preds, {VALUES_TAG: "labels"})
    options: tuple[ValuesOption, ...] = ("auto", "model", "labels")
    for option in options:
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            metrics = _score(tmp_path, folder, values=option)
        assert metrics["miou"] == 1.0
        assert metrics["untagged_predictions"]["untagged_files"] == 0
        conflicts = [r for r in caplog.records if "not as --values" in r.getMessage()]
        # The tag wins; a contradicting option is reported once for the whole folder.
        assert len(conflicts) == (1 if option == "model" else 0)
        if conflicts:
            assert "3 tagged prediction file(s)" in conflicts[0].getMessage()


def test_read_prediction_reads_untagged_files_as_asked_and_tagged_ones_as_tagged(
    tmp_path: Path,
) -> None:
    values = np.array([[1, 2], [12, 13]])
    _tif(tmp_path / "u.tif", values)
    _tif(tmp_path / "t.tif", values, {VALUES_TAG: "model"})
    np.testing.assert_array_equal(read_prediction(tmp_path / "u.tif"), values)
    np.testing.assert_array_equal(
        read_prediction(tmp_path / "u.tif", untagged="labels"), values - 1
    )
    np.testing.assert_array_equal(read_prediction(tmp_path / "t.tif", untagged="labels"), values)


def test_example_patches_are_drawn_with_the_reading_chosen(
    tmp_path: Path, masks: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[np.ndarray] = []

    def record(truth: np.ndarray, pred: np.ndarray, *args: object, **kwargs: object) -> None:
        drawn.append(pred)

    monkeypatch.setattr(evaluate_module, "build_comparison_figure", record)
    monkeypatch.setattr(evaluate_module, "save_figure", lambda *args: None)
    preds = {pid: m.copy() for pid, m in masks.items()}  # labels, decided by the masks
    folder = _predictions(tmp_path / "p", preds)
    evaluate_predictions(folder, tmp_path / "labels", tmp_path / "out", example_patches=1)
    assert len(drawn) == 2  # the worst and the best
    for pred in drawn:
        assert any(np.array_equal(pred, m - 1) for m in masks.values())


def test_the_command_refuses_an_ambiguous_folder_in_one_line(
    tmp_path: Path,
    masks: dict[str, np.ndarray],
    tiny_root: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    rng = np.random.default_rng(2)
    folder = _predictions(tmp_path / "p", {pid: rng.integers(1, 13, (16, 16)) for pid in IDS})
    settings = tiny_settings(tiny_root, tmp_path / "out")
    settings["data"]["path_labels_test"] = str(tmp_path / "labels")
    config = tmp_path / "cfg.yml"
    config.write_text(yaml.safe_dump(settings))
    args = ["evaluate", "-c", str(config), "--predictions", str(folder)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("flair2 evaluate: error: ") and "--values" in err[-1]
    assert main([*args, "--values", "model"]) == 0
    metrics = json.loads((tmp_path / "out" / "run" / "metrics" / "metrics.json").read_text())
    assert metrics["untagged_predictions"]["decided_by"] == "option"
