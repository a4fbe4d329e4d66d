"""Tests of pairing predictions with masks by id."""

from __future__ import annotations

from pathlib import Path

import pytest

from flair2.errors import DataError
from flair2.evaluation.pairing import domain_of, pair_predictions


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _layout(tmp_path: Path, mask_ids: dict[str, str], pred_ids: list[str]) -> tuple[Path, Path]:
    labels, preds = tmp_path / "labels", tmp_path / "preds"
    for pid, domain in mask_ids.items():
        _touch(labels / domain / "Z1_UF" / "msk" / f"MSK_{pid}.tif")
    for pid in pred_ids:
        _touch(preds / f"PRED_{pid}.tif")
    return preds, labels


def test_pairs_by_id_not_by_order(tmp_path):
    preds, labels = _layout(
        tmp_path, {"000010": "D001_2020", "000002": "D002_2021", "000100": "D001_2020"}, []
    )
    # Predictions in nested folders, names that would sort differently as text.
    _touch(preds / "b" / "PRED_000002.tif")
    _touch(preds / "a" / "PRED_000100.tif")
    _touch(preds / "PRED_000010.tif")
    _touch(preds / "PROB_000010.tif")  # probabilities are ignored
    pairs = pair_predictions(preds, labels)
    assert [p.patch_id for p in pairs] == ["000002", "000010", "000100"]
    for p in pairs:
        assert p.prediction.name == f"PRED_{p.patch_id}.tif"
        assert p.mask.name == f"MSK_{p.patch_id}.tif"
    assert [p.domain for p in pairs] == ["D002_2021", "D001_2020", "D001_2020"]


def test_missing_prediction_is_named(tmp_path):
    preds, labels = _layout(tmp_path, {"000001": "D001_2020", "000002": "D001_2020"}, ["000001"])
    with pytest.raises(DataError, match=r"1 of 2 masks have no prediction.*PRED_000002\.tif"):
        pair_predictions(preds, labels)


def test_extra_prediction_is_named(tmp_path):
    preds, labels = _layout(tmp_path, {"000001": "D001_2020"}, ["000001", "000009"])
    with pytest.raises(DataError, match=r"1 of 2 predictions have no mask.*PRED_000009\.tif"):
        pair_predictions(preds, labels)


def test_duplicate_id_is_named(tmp_path):
    preds, labels = _layout(tmp_path, {"000001": "D001_2020"}, ["000001"])
    _touch(preds / "again" / "PRED_000001.tif")
    with pytest.raises(DataError, match=r"duplicate patch id 000001.*PRED_000001\.tif"):
        pair_predictions(preds, labels)


def test_empty_or_missing_folders(tmp_path):
    preds, labels = _layout(tmp_path, {"000001": "D001_2020"}, [])
    preds.mkdir()
    with pytest.raises(DataError, match="no PRED_<id>.tif file found"):
        pair_predictions(preds, labels)
    with pytest.raises(DataError, match="labels folder not found"):
        pair_predictions(preds, tmp_path / "nowhere")


def test_domain_rules(tmp_path):
    root = tmp_path / "labels"
    # A domain folder anywhere below the root.
    assert domain_of(root / "x" / "D004_2021" / "Z1" / "MSK_1.tif", root) == "D004_2021"
    # No domain-like name: the first folder below the root.
    assert domain_of(root / "siteA" / "msk" / "MSK_1.tif", root) == "siteA"
    # The root itself is a zone folder inside a domain.
    zone_root = tmp_path / "D013_2020" / "Z5_AA" / "msk"
    assert domain_of(zone_root / "MSK_1.tif", zone_root) == "D013_2020"
