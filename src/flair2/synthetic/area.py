"""A synthetic area for whole-area inference: one large aerial raster and its Sentinel-2 series.

Where :mod:`flair2.synthetic.toy` writes a patch dataset, this writes what
``flair2 detect`` reads: one aerial GeoTIFF of any size (5 bands uint8, R, G, B,
NIR, elevation; EPSG:2154, 0.2 m, a transform away from the origin), its label
raster, and the area's Sentinel-2 series in another CRS (a UTM zone, 10 m), as a
folder of per-date GeoTIFFs with cloud/snow masks and a products list, and/or as
one ``.npy`` array with a JSON sidecar (the layouts
:class:`flair2.detection.sentinel.AreaSentinel` reads)::

    folder/
      aerial.tif, labels.tif
      sentinel/S2A_MSIL2A_20210415T105021_N0300_R051_T31UDP_20210416T131500.tif ...
      sentinel/masks/<the same names>        2 bands: cloud, snow probability 0-100
      sentinel_products.txt                  the data file names, one per line
      sentinel_data.npy, sentinel_masks.npy, sentinel_data.json   (series="npy"/"both")

The land looks as in the patch dataset (:mod:`flair2.synthetic.scene`): one map in
local metres is rendered at 0.2 m for the aerial raster and at 10 m for the
series. The series' pixel (i, j) is placed on the map by a translation fitted at
the area's centre, which ignores the small rotation between Lambert-93 and UTM
(about 0.02° near 3° E, the default place: under a metre over the area).

The aerial raster is rendered and written by blocks of 256 rows (tiled GeoTIFF),
so an 8192 × 8192 area never sits in memory at once. The same seed writes the
same pixels.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from rasterio.transform import Affine
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from flair2.io import atomic_path, write_text_atomic
from flair2.synthetic.dates import product_names, spread_dates
from flair2.synthetic.scene import (
    AERIAL_RES,
    SAT_RES,
    ZoneMap,
    make_zone_map,
    mean_reflectance,
    render_patch,
    sentinel_series,
)

log = logging.getLogger(__name__)

#: Side of the aerial blocks rendered and written at once (and of the GeoTIFF tiles).
BLOCK = 256
AERIAL_CRS = "EPSG:2154"
_NAMES = ("aerial.tif", "labels.tif", "sentinel", "sentinel_products.txt", "sentinel_data.npy")


@dataclass
class ToyArea:
    """What :func:`generate_toy_area` wrote (absolute paths; None where not written).

    Attributes:
        folder: the output folder.
        aerial: the aerial GeoTIFF, (5, height, width) uint8.
        labels: the label GeoTIFF, (1, height, width) uint8, values 1–19 (0 = nodata).
        sentinel: the folder of per-date 10-band uint16 GeoTIFFs.
        masks: the folder of per-date 2-band uint8 cloud/snow probability GeoTIFFs.
        products: the list of the data files, one name per line, in date order.
        sentinel_npy, sentinel_masks_npy, sidecar: the one-array form of the series.
        dates: the acquisition dates (T,).
        width, height: the aerial size in pixels.
        transform, crs: the aerial grid.
        sentinel_transform, sentinel_crs, sentinel_shape: the series grid, (H, W).
        metadata: flight ``date``, ``time``, ``camera`` and ``altitude`` of the area
            (the fields of :class:`flair2.detection.metadata.AreaMetadata`).
        seconds: wall time of the generation.
    """

    folder: Path
    aerial: Path
    labels: Path | None
    sentinel: Path | None
    masks: Path | None
    products: Path | None
    sentinel_npy: Path | None
    sentinel_masks_npy: Path | None
    sidecar: Path | None
    dates: list[datetime.date]
    width: int
    height: int
    transform: Affine
    crs: str
    sentinel_transform: Affine
    sentinel_crs: str
    sentinel_shape: tuple[int, int]
    metadata: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the aerial raster, Lambert-93 metres."""
        left, top = self.transform.c, self.transform.f
        return (left, top - self.height * AERIAL_RES, left + self.width * AERIAL_RES, top)


def _check(width: int, height: int, dates: int, sat_patch_size: int, series: str) -> None:
    if width < 1 or height < 1:
        raise ValueError(f"width and height must be >= 1, got {width}×{height}")
    if not 1 <= dates <= 300:
        raise ValueError(f"dates must be in [1, 300], got {dates}")
    if sat_patch_size % 8 or not 8 <= sat_patch_size <= 112:
        raise ValueError(
            f"sat_patch_size must be a multiple of 8 in [8, 112], got {sat_patch_size}"
        )
    if series not in ("tif", "npy", "both"):
        raise ValueError(f"series must be 'tif', 'npy' or 'both', got {series!r}")


def _sentinel_grid(
    bounds: tuple[float, float, float, float], crs: str, margin_px: int
) -> tuple[Affine, int, int]:
    """A 10 m grid covering ``bounds`` plus a margin, its origin on multiples of 10 m."""
    left, bottom, right, top = transform_bounds(AERIAL_CRS, crs, *bounds, densify_pts=21)
    margin = margin_px * SAT_RES
    x0 = math.floor((left - margin) / SAT_RES) * SAT_RES
    y0 = math.ceil((top + margin) / SAT_RES) * SAT_RES
    width = math.ceil((right + margin - x0) / SAT_RES)
    height = math.ceil((y0 - (bottom - margin)) / SAT_RES)
    return Affine(SAT_RES, 0.0, x0, 0.0, -SAT_RES, y0), height, width


def _clear_series(
    rng: np.random.Generator, zm: ZoneMap, shape: tuple[int, int], dates: list[datetime.date]
) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`toy_scene.sentinel_series` without clouds and snow: (T, 10, H, W), zero masks."""
    h, w = shape
    data = mean_reflectance(zm, shape, dates)
    data = data + rng.standard_normal(data.shape, dtype=np.float32) * (30 + 0.03 * data)
    data_u16 = np.clip(np.rint(data), 1, 65535).astype(np.uint16)
    return data_u16, np.zeros((len(dates), 2, h, w), np.uint8)


def _write_array(path: Path, array: np.ndarray, crs: str, transform: Affine) -> None:
    profile = {
        "driver": "GTiff",
        "width": array.shape[2],
        "height": array.shape[1],
        "count": array.shape[0],
        "dtype": array.dtype.name,
        "crs": crs,
        "transform": transform,
    }
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(array)


def _write_aerial(
    aerial: Path,
    labels: Path | None,
    zm: ZoneMap,
    origin: tuple[float, float],
    width: int,
    height: int,
    transform: Affine,
    seed: int,
    nodata_corner: bool,
    compress: str | None,
) -> None:
    """Render the aerial raster (and labels) block row by block row into tiled GeoTIFFs."""
    gain = float(np.random.default_rng([seed, 3]).uniform(0.94, 1.06))
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "dtype": "uint8",
        "crs": AERIAL_CRS,
        "transform": transform,
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
    }
    if compress:
        profile["compress"] = compress
    if nodata_corner:
        profile["nodata"] = 0
    with contextlib.ExitStack() as stack:
        tmp_a = stack.enter_context(atomic_path(aerial))
        dst_a = stack.enter_context(rasterio.open(tmp_a, "w", count=5, **profile))
        dst_l = None
        if labels is not None:
            tmp_l = stack.enter_context(atomic_path(labels))
            dst_l = stack.enter_context(rasterio.open(tmp_l, "w", count=1, **profile))
        for bi in range(math.ceil(height / BLOCK)):
            rows = min(BLOCK, height - bi * BLOCK)
            img = np.empty((5, rows, width), np.uint8)
            lab = np.empty((rows, width), np.uint8)
            for bj in range(math.ceil(width / BLOCK)):
                cols = min(BLOCK, width - bj * BLOCK)
                u0 = origin[0] + bj * BLOCK * AERIAL_RES
                v0 = origin[1] + bi * BLOCK * AERIAL_RES
                rng = np.random.default_rng([seed, 2, bi, bj])
                tile, label = render_patch(rng, zm, u0, v0, BLOCK, gain)
                span = slice(bj * BLOCK, bj * BLOCK + cols)
                img[:, :, span] = tile[:, :rows, :cols]
                lab[:, span] = label[:rows, :cols]
            if nodata_corner:
                # A triangle over the top-left corner, a quarter of each side long.
                r = bi * BLOCK + np.arange(rows)[:, None]
                c = np.arange(width)[None, :]
                empty = r / height + c / width < 0.25
                img[:, empty] = 0
                lab[empty] = 0
            window = Window(0, bi * BLOCK, width, rows)
            dst_a.write(img, window=window)
            if dst_l is not None:
                dst_l.write(lab[None], window=window)


def generate_toy_area(
    folder: str | Path,
    width: int = 600,
    height: int = 450,
    dates: int = 5,
    seed: int = 0,
    *,
    left: float = 651_234.6,
    top: float = 6_862_345.8,
    sentinel_crs: str = "EPSG:32631",
    sat_patch_size: int = 40,
    year: int = 2021,
    clouds: bool = True,
    nodata_corner: bool = False,
    labels: bool = True,
    series: Literal["tif", "npy", "both"] = "tif",
    region_size: float = 40.0,
    compress: str | None = "deflate",
    overwrite: bool = False,
) -> ToyArea:
    """Write a synthetic area: aerial raster, labels and Sentinel-2 series.

    Args:
        folder: output folder (created).
        width: aerial width in pixels (0.2 m).
        height: aerial height in pixels.
        dates: number of Sentinel-2 dates, spread over ``year``.
        seed: random seed: the same seed writes the same pixels.
        left: Lambert-93 x of the aerial raster's top-left corner (default: near
            Paris, where Lambert-93 and UTM 31N are nearly aligned).
        top: Lambert-93 y of that corner.
        sentinel_crs: CRS of the series (10 m pixels, origin on multiples of 10 m).
        sat_patch_size: the series covers the aerial bounding box (in its CRS) plus
            this many pixels, plus one, on every side.
        year: the year of the dates and of the flight.
        clouds: clouds (one date cloudy everywhere, some partly) and winter snow, with
            their probabilities in the masks; False writes clear dates and zero masks.
        nodata_corner: blank a triangle over the aerial top-left corner (0 in every
            band, the GeoTIFF nodata value, label 0).
        labels: also write ``labels.tif``.
        series: write the series as per-date GeoTIFFs (``"tif"``), one ``.npy`` with
            its sidecar (``"npy"``) or both.
        region_size: mean size of the land-cover regions, metres.
        compress: GeoTIFF compression of the aerial and label rasters (None: none).
        overwrite: replace the files of an earlier toy area in ``folder``.

    Returns:
        The paths and grids written.

    Raises:
        ValueError: an argument is out of range.
        FileExistsError: ``folder`` already holds a toy area and ``overwrite`` is False.
    """
    _check(width, height, dates, sat_patch_size, series)
    start = time.perf_counter()
    out = Path(folder).resolve()
    existing = [out / n for n in _NAMES if (out / n).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} already exists: choose another folder or overwrite")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 0])

    transform = Affine(AERIAL_RES, 0.0, left, 0.0, -AERIAL_RES, top)
    bounds = (left, top - height * AERIAL_RES, left + width * AERIAL_RES, top)
    s_transform, s_height, s_width = _sentinel_grid(bounds, sentinel_crs, sat_patch_size + 1)
    # Map frame: u east, v south of the series' top-left corner, in metres. The
    # aerial centre goes where the series sees it.
    xc, yc = (bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2
    (sx,), (sy,) = warp_transform(AERIAL_CRS, sentinel_crs, [xc], [yc])
    uc, vc = sx - s_transform.c, s_transform.f - sy
    origin = (uc - width * AERIAL_RES / 2, vc - height * AERIAL_RES / 2)
    zm = make_zone_map(rng, s_height * SAT_RES, s_width * SAT_RES, region_size)

    acquisition = spread_dates(rng, year, dates)
    s_rng = np.random.default_rng([seed, 1])
    if clouds:
        data, masks = sentinel_series(s_rng, zm, (s_height, s_width), acquisition, [])
    else:
        data, masks = _clear_series(s_rng, zm, (s_height, s_width), acquisition)
    products = product_names(rng, acquisition, "T31UDP", 51)
    flight = datetime.date(year, 4, 1) + datetime.timedelta(days=int(rng.integers(0, 180)))
    minute = int(rng.integers(9 * 60, 14 * 60))
    metadata = {
        "date": flight.isoformat(),
        "time": f"{minute // 60}h{minute % 60:02d}",
        "camera": "UCE-M3-f100-s06",
        "altitude": round(float(rng.uniform(20, 900)), 2),
    }

    area = ToyArea(
        folder=out,
        aerial=out / "aerial.tif",
        labels=out / "labels.tif" if labels else None,
        sentinel=None,
        masks=None,
        products=None,
        sentinel_npy=None,
        sentinel_masks_npy=None,
        sidecar=None,
        dates=acquisition,
        width=width,
        height=height,
        transform=transform,
        crs=AERIAL_CRS,
        sentinel_transform=s_transform,
        sentinel_crs=sentinel_crs,
        sentinel_shape=(s_height, s_width),
        metadata=metadata,
    )
    if series in ("tif", "both"):
        area.sentinel, area.masks = out / "sentinel", out / "sentinel" / "masks"
        area.masks.mkdir(parents=True, exist_ok=True)
        names = [f"{p}.tif" for p in products]
        for name, d, m in zip(names, data, masks):
            _write_array(area.sentinel / name, d, sentinel_crs, s_transform)
            _write_array(area.masks / name, m, sentinel_crs, s_transform)
        area.products = out / "sentinel_products.txt"
        write_text_atomic(area.products, "\n".join(names) + "\n")
    if series in ("npy", "both"):
        area.sentinel_npy = out / "sentinel_data.npy"
        area.sentinel_masks_npy = out / "sentinel_masks.npy"
        area.sidecar = out / "sentinel_data.json"
        for path, array in ((area.sentinel_npy, data), (area.sentinel_masks_npy, masks)):
            with atomic_path(path) as tmp, tmp.open("wb") as f:
                np.save(f, array)
        sidecar = {
            "crs": sentinel_crs,
            "transform": list(s_transform)[:6],
            "dates": [d.isoformat() for d in acquisition],
            "masks": area.sentinel_masks_npy.name,
        }
        write_text_atomic(area.sidecar, json.dumps(sidecar, indent=1) + "\n")
    del data, masks
    _write_aerial(
        area.aerial,
        area.labels,
        zm,
        origin,
        width,
        height,
        transform,
        seed,
        nodata_corner,
        compress,
    )
    area.seconds = time.perf_counter() - start
    log.info(
        "toy area in %s: aerial %d×%d px, Sentinel-2 %d×%d px × %d dates, %.1f s",
        out,
        width,
        height,
        s_width,
        s_height,
        dates,
        area.seconds,
    )
    return area
