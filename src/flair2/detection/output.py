"""The output of a detection: a VRT mosaic of the part files, copied into one COG.

Once every strip is done, :func:`assemble_output` merges the rows two strips
share, lays a VRT over the segments' files (palette and nodata, or a mask band
and the probability scale, and the values tag) and has GDAL copy it into a
tiled, LZW-compressed Cloud-Optimized GeoTIFF, written atomically; the parts
folder is then removed.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import rasterio
import rasterio.shutil
from rasterio.crs import CRS
from rasterio.transform import Affine

from flair2.classes import CLASSES, colormap
from flair2.detection.grid import WindowGrid
from flair2.detection.writer import NODATA, OutputSpec, PartsFolder, merge_segment
from flair2.formats import PROBABILITY_SCALE, VALUES_TAG
from flair2.io import atomic_path
from flair2.rasters import check_raster_readable


def _vrt_xml(
    parts: PartsFolder, grid: WindowGrid, spec: OutputSpec, transform: Affine, crs: CRS | None
) -> str:
    """A VRT mosaic of the segments' final files, with palette/nodata or mask and tags."""
    root = ET.Element("VRTDataset", rasterXSize=str(grid.width), rasterYSize=str(grid.height))
    if crs is not None:
        ET.SubElement(root, "SRS").text = crs.to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(v) for v in transform.to_gdal())
    meta = ET.SubElement(root, "Metadata")
    if spec.probabilities:
        ET.SubElement(meta, "MDI", key="FLAIR2_PROBABILITY_SCALE").text = str(PROBABILITY_SCALE)
    else:
        ET.SubElement(meta, "MDI", key=VALUES_TAG).text = spec.values

    def add_sources(band_el: ET.Element, source_band: int) -> None:
        for seg in grid.segments:
            src = ET.SubElement(band_el, "SimpleSource")
            ET.SubElement(src, "SourceFilename", relativeToVRT="1").text = parts.final(seg).name
            ET.SubElement(src, "SourceBand").text = str(source_band)
            width, height = str(grid.width), str(seg.stop - seg.start)
            ET.SubElement(src, "SrcRect", xOff="0", yOff="0", xSize=width, ySize=height)
            ET.SubElement(src, "DstRect", xOff="0", yOff=str(seg.start), xSize=width, ySize=height)

    if spec.probabilities:
        for k in range(spec.num_classes):
            band = ET.SubElement(root, "VRTRasterBand", dataType="Byte", band=str(k + 1))
            name = CLASSES[k] if k < len(CLASSES) else f"class {k}"
            ET.SubElement(band, "Description").text = name
            add_sources(band, k + 1)
        mask = ET.SubElement(root, "MaskBand")
        add_sources(ET.SubElement(mask, "VRTRasterBand", dataType="Byte"), spec.num_classes + 1)
    else:
        band = ET.SubElement(root, "VRTRasterBand", dataType="Byte", band="1")
        ET.SubElement(band, "NoDataValue").text = str(NODATA)
        ET.SubElement(band, "ColorInterp").text = "Palette"
        table = ET.SubElement(band, "ColorTable")
        colors = colormap(spec.values, spec.num_classes)
        for value in range(256):
            r, g, b, a = colors.get(value, (0, 0, 0, 0))
            ET.SubElement(table, "Entry", c1=str(r), c2=str(g), c3=str(b), c4=str(a))
        add_sources(band, 1)
    return ET.tostring(root, encoding="unicode")


def assemble_output(
    parts: PartsFolder,
    grid: WindowGrid,
    spec: OutputSpec,
    transform: Affine,
    crs: CRS | None,
    output: Path,
) -> None:
    """Merge what is left to merge, write the final COG atomically, remove the parts.

    Call it on one process, once every strip is done and no other process writes.
    """
    for seg in grid.segments:
        if seg.shared and not merge_segment(parts, grid, seg, spec, force=True):
            missing = [k for k in seg.strips if k not in parts.done_strips()]
            raise RuntimeError(f"cannot assemble {output}: strips {missing} are not done")
    vrt = parts.root / "mosaic.vrt"
    vrt.write_text(_vrt_xml(parts, grid, spec, transform, crs), encoding="utf-8")
    options = {
        "driver": "COG",
        "COMPRESS": "LZW",
        "BIGTIFF": "IF_SAFER",
        "BLOCKSIZE": "512",
        "OVERVIEW_RESAMPLING": "AVERAGE" if spec.probabilities else "NEAREST",
    }
    with atomic_path(output, verify=check_raster_readable) as tmp:
        rasterio.shutil.copy(str(vrt), str(tmp), **options)
    shutil.rmtree(parts.root, ignore_errors=True)
