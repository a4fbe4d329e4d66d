"""QGIS layer styles (``.qml``) that show class rasters in the FLAIR palette with class names.

The PRED GeoTIFFs carry a colour table, which QGIS uses for colours but not for
names. A paletted-renderer style names every value: load it on a layer (Layer
Properties → Style → Load Style), or give it the raster's base name
(``PRED_000123.qml`` beside ``PRED_000123.tif``) and QGIS applies it on opening.
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

from flair2.classes import FULL_CLASSES, FULL_PALETTE, NUM_CLASSES
from flair2.io import write_text_atomic

log = logging.getLogger(__name__)

#: ``model``: values 0..K−1 (PRED files written by default and by the reference);
#: ``labels``: values 1..K (PRED files written with ``values="labels"``);
#: ``full``: values 1–19 of the full nomenclature (the MSK ground-truth files).
QmlValues = Literal["model", "labels", "full"]

_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>"


def palette_entries(
    values: QmlValues = "model", num_classes: int = NUM_CLASSES
) -> list[tuple[int, str, str]]:
    """(pixel value, ``#rrggbb``, class name) of every class for a value convention.

    Model classes are label values 1..K−1 of the nomenclature plus "other" (black),
    as the evaluator names them.

    Args:
        values: the value convention of the raster (see :data:`QmlValues`).
        num_classes: K, the number of model classes (ignored for ``full``).
    """
    if values == "full":
        return [(v, FULL_PALETTE[v], FULL_CLASSES[v]) for v in sorted(FULL_CLASSES)]
    if values not in ("model", "labels"):
        raise ValueError(f"values must be 'model', 'labels' or 'full', got {values!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    offset = 1 if values == "labels" else 0
    entries = [
        (i + offset, FULL_PALETTE.get(i + 1, "#808080"), FULL_CLASSES.get(i + 1, f"class {i + 1}"))
        for i in range(num_classes - 1)
    ]
    entries.append((num_classes - 1 + offset, "#000000", "other"))
    return entries


def qml_text(values: QmlValues = "model", num_classes: int = NUM_CLASSES, band: int = 1) -> str:
    """The QML document of a paletted renderer for the class palette.

    Args:
        values: the value convention of the raster.
        num_classes: K, the number of model classes.
        band: the 1-based band holding the classes.
    """
    qgis = ET.Element("qgis", version="3.28.0", styleCategories="AllStyleCategories")
    pipe = ET.SubElement(qgis, "pipe")
    renderer = ET.SubElement(
        pipe,
        "rasterrenderer",
        type="paletted",
        band=str(band),
        opacity="1",
        alphaBand="-1",
        nodataColor="",
    )
    ET.SubElement(renderer, "rasterTransparency")
    palette = ET.SubElement(renderer, "colorPalette")
    for value, colour, name in palette_entries(values, num_classes):
        ET.SubElement(
            palette, "paletteEntry", value=str(value), color=colour, label=name, alpha="255"
        )
    ET.SubElement(pipe, "brightnesscontrast", brightness="0", contrast="0", gamma="1")
    ET.SubElement(
        pipe,
        "huesaturation",
        saturation="0",
        grayscaleMode="0",
        colorizeOn="0",
        colorizeRed="255",
        colorizeGreen="128",
        colorizeBlue="128",
        colorizeStrength="100",
    )
    # No resampler named: QGIS then uses nearest neighbour, which class maps need.
    ET.SubElement(pipe, "rasterresampler", maxOversampling="2")
    ET.SubElement(qgis, "blendMode").text = "0"
    ET.indent(qgis, space="  ")
    return _DOCTYPE + "\n" + ET.tostring(qgis, encoding="unicode") + "\n"


def write_qml(
    path: str | os.PathLike[str],
    values: QmlValues = "model",
    num_classes: int = NUM_CLASSES,
) -> Path:
    """Write a QGIS paletted-raster style (``.qml``) for class rasters, atomically.

    Args:
        path: the ``.qml`` file, e.g. ``<predictions>/predictions.qml``.
        values: ``model`` for PRED files holding 0..K−1, ``labels`` for 1..K,
            ``full`` for the MSK ground truth (1–19).
        num_classes: K, the number of model classes.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    write_text_atomic(path, qml_text(values, num_classes))
    log.info("QGIS style: %s", path)
    return path
