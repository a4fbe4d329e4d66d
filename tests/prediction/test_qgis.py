"""QGIS paletted-raster styles for class rasters."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from flair2.classes import CLASSES, FULL_CLASSES, FULL_PALETTE, PALETTE
from flair2.prediction.qgis import write_qml


def _entries(path) -> list[dict[str, str]]:
    root = ET.parse(path).getroot()
    assert root.tag == "qgis"
    (renderer,) = root.iter("rasterrenderer")
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    return [e.attrib for e in renderer.find("colorPalette").iter("paletteEntry")]


def test_model_values(tmp_path):
    path = write_qml(tmp_path / "predictions.qml")
    assert path.read_text().startswith("<!DOCTYPE qgis")
    entries = _entries(path)
    assert [e["value"] for e in entries] == [str(i) for i in range(13)]
    assert [e["color"] for e in entries] == PALETTE
    assert [e["label"] for e in entries] == CLASSES
    assert {e["alpha"] for e in entries} == {"255"}
    assert [p.name for p in tmp_path.iterdir()] == ["predictions.qml"]  # no temporary file


def test_labels_and_full_values(tmp_path):
    labels = _entries(write_qml(tmp_path / "l.qml", values="labels"))
    assert [int(e["value"]) for e in labels] == list(range(1, 14))
    assert labels[0]["label"] == "building" and labels[0]["color"] == "#db0e9a"
    assert labels[12]["label"] == "other" and labels[12]["color"] == "#000000"
    full = _entries(write_qml(tmp_path / "f.qml", values="full"))
    assert [int(e["value"]) for e in full] == list(range(1, 20))
    assert [e["label"] for e in full] == [FULL_CLASSES[v] for v in range(1, 20)]
    assert [e["color"] for e in full] == [FULL_PALETTE[v] for v in range(1, 20)]


def test_fewer_classes_and_bad_values(tmp_path):
    entries = _entries(write_qml(tmp_path / "s.qml", num_classes=5))
    assert [e["label"] for e in entries] == [*CLASSES[:4], "other"]
    with pytest.raises(ValueError, match="'model', 'labels' or 'full'"):
        write_qml(tmp_path / "x.qml", values="percent")  # type: ignore[arg-type]
