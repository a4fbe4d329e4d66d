"""A synthetic FLAIR #2 dataset in the official layout: small, deterministic, learnable.

Each zone gets a land-cover map defined in metres over its Sentinel-2 super-area:
warped Voronoi cells (fields, woods, water, built-up blocks…) plus small objects
(buildings, swimming pools, greenhouses, rare blobs). Every cell or object is a
"unit" with a class and a little individual variation. The same map is rendered
twice:

- at 0.2 m for each aerial patch (5 bands R, G, B, NIR, elevation) and its mask;
- at 10 m for the zone's Sentinel-2 series, each pixel mixing the seasonal
  reflectance profiles of the units under it (4 × 4 sub-samples per pixel).

Most classes differ from the air (colour, NIR, elevation, texture). Herbaceous
vegetation (10), agricultural land (11) and plowed land (12) share identical aerial
statistics and differ only in their Sentinel-2 vegetation curve over the year, so
only a model that uses the time series can separate them.

Clouds (and winter snow) cover parts of some dates, one date per zone is cloudy
everywhere, and in one training zone one patch's crop is cloudy on every date, which
exercises the loader's fallback. One zone per split has a patch near the top border
of its super-area, so its crop leaves the array and the loader must pad it.
"""

from __future__ import annotations

import calendar
import datetime
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import yaml
from rasterio.transform import Affine

from flair2.io import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

TRAIN_ROOTS = {
    "aerial": "flair_aerial_train",
    "labels": "flair_labels_train",
    "sen": "flair_sen_train",
}
TEST_ROOTS = {
    "aerial": "flair_2_aerial_test",
    "labels": "flair_2_labels_test",
    "sen": "flair_2_sen_test",
}
CENTROIDS_NAME = "flair-2_centroids_sp_to_patch.json"
METADATA_NAME = "flair-2_aerial_metadata.json"
CONFIG_NAME = "toy.yml"

AERIAL_RES = 0.2  # metres per aerial pixel
SAT_RES = 10.0  # metres per Sentinel-2 pixel
_SUB = 4  # sub-samples per Sentinel-2 pixel side when rasterising the map

# Aerial look per label value: R, G, B, NIR, elevation means; fine texture, coarse
# texture and coarse elevation amplitudes; vineyard-row stripe amplitude.
# Rows 10, 11 and 12 are identical on purpose: those classes differ only in Sentinel-2.
_HERBACEOUS_LOOK = (105, 135, 75, 150, 22, 7, 6, 0, 0)
_AERIAL = np.array(
    [
        (0, 0, 0, 0, 0, 0, 0, 0, 0),  # unused (labels start at 1)
        (150, 135, 130, 110, 75, 6, 4, 2, 0),  # 1 building: grey-red roofs, high
        (125, 118, 95, 125, 22, 10, 6, 1, 0),  # 2 pervious surface
        (105, 105, 110, 80, 20, 4, 3, 0, 0),  # 3 impervious: grey, flat
        (170, 140, 105, 115, 21, 9, 8, 0, 0),  # 4 bare soil: tan
        (30, 55, 85, 15, 18, 2, 3, 0, 0),  # 5 water: dark blue, no NIR
        (35, 65, 40, 120, 90, 12, 18, 15, 0),  # 6 coniferous
        (65, 105, 55, 190, 80, 12, 22, 15, 0),  # 7 deciduous: high NIR, crowns
        (95, 115, 65, 160, 38, 10, 14, 6, 0),  # 8 brushwood
        (115, 120, 85, 140, 28, 8, 6, 2, 25),  # 9 vineyard: rows
        _HERBACEOUS_LOOK,  # 10 herbaceous vegetation
        _HERBACEOUS_LOOK,  # 11 agricultural land
        _HERBACEOUS_LOOK,  # 12 plowed land
        (70, 185, 215, 35, 19, 3, 2, 0, 0),  # 13 swimming pool
        (240, 242, 248, 210, 25, 3, 3, 0, 0),  # 14 snow
        (125, 105, 75, 120, 30, 14, 10, 4, 0),  # 15 clear cut
        (50, 85, 48, 165, 85, 12, 20, 15, 0),  # 16 mixed
        (95, 110, 70, 150, 50, 10, 12, 8, 0),  # 17 ligneous
        (215, 222, 228, 150, 35, 4, 3, 0, 0),  # 18 greenhouse
        (190, 60, 55, 70, 26, 8, 6, 1, 0),  # 19 other
    ],
    dtype=np.float32,
)

# Sentinel-2 end-member spectra, bands B2 B3 B4 B5 B6 B7 B8 B8A B11 B12 (reflectance × 10⁴).
_VEG = np.array([250, 550, 280, 900, 2600, 3300, 3800, 3950, 1900, 900], np.float32)
_SPECTRA = {
    "soil": [900, 1250, 1600, 1900, 2100, 2300, 2450, 2550, 3100, 2700],
    "dark_soil": [600, 850, 1100, 1350, 1550, 1700, 1850, 1950, 2500, 2200],
    "urban": [1100, 1200, 1300, 1400, 1550, 1650, 1750, 1800, 2200, 1950],
    "asphalt": [800, 850, 900, 950, 1000, 1050, 1100, 1150, 1400, 1300],
    "water": [700, 600, 400, 300, 250, 220, 200, 180, 100, 80],
    "pool": [1600, 1700, 1000, 700, 500, 450, 400, 380, 200, 150],
    "snow": [9000, 8900, 8700, 8500, 8300, 8100, 7900, 7800, 1300, 1000],
    "glass": [2600, 2700, 2800, 2900, 3000, 3100, 3200, 3250, 3000, 2700],
}
_CLOUD = np.array([7600, 7500, 7400, 7300, 7200, 7100, 7000, 6900, 5200, 4200], np.float32)
_SNOW = np.array(_SPECTRA["snow"], np.float32)

# Sentinel-2 profile per label value: background spectrum, vegetation gain, and the
# vegetation fraction over the year v(doy) = base + amp·σ((doy−up)/up_w)·σ((down−doy)/down_w).
_S2_CLASSES: dict[int, tuple[str, float, float, float, float, float, float, float]] = {
    1: ("urban", 1.0, 0.0, 0.0, 0, 1, 0, 1),
    2: ("soil", 1.0, 0.30, 0.25, 90, 20, 290, 20),
    3: ("asphalt", 1.0, 0.02, 0.0, 0, 1, 0, 1),
    4: ("soil", 1.0, 0.04, 0.0, 0, 1, 0, 1),
    5: ("water", 1.0, 0.0, 0.0, 0, 1, 0, 1),
    6: ("dark_soil", 0.75, 0.80, 0.05, 100, 20, 300, 20),
    7: ("dark_soil", 1.0, 0.25, 0.65, 110, 8, 295, 10),
    8: ("soil", 0.9, 0.45, 0.25, 100, 15, 290, 15),
    9: ("soil", 1.0, 0.15, 0.45, 130, 10, 270, 10),
    10: ("soil", 1.0, 0.68, 0.12, 80, 20, 310, 20),  # green all year
    11: ("soil", 1.0, 0.08, 0.87, 95, 10, 190, 5),  # crop peaks in early summer, then harvest
    12: ("dark_soil", 1.0, 0.04, 0.62, 225, 12, 900, 1),  # bare in spring, regrowth in autumn
    13: ("pool", 1.0, 0.0, 0.0, 0, 1, 0, 1),
    14: ("snow", 1.0, 0.0, 0.0, 0, 1, 0, 1),
    15: ("soil", 0.9, 0.20, 0.15, 120, 15, 280, 15),
    16: ("dark_soil", 0.85, 0.55, 0.35, 110, 8, 295, 10),
    17: ("soil", 0.9, 0.40, 0.30, 110, 10, 290, 10),
    18: ("glass", 1.0, 0.0, 0.0, 0, 1, 0, 1),
    19: ("urban", 1.0, 0.0, 0.0, 0, 1, 0, 1),
}

# Voronoi cell classes 1–12 and their probabilities; classes 13–19 come as small objects.
_CELL_CLASSES = np.arange(1, 13)
_CELL_PROBS = np.array([3, 8, 10, 4, 5, 5, 13, 6, 4, 15, 15, 9], np.float64)
_CELL_PROBS /= _CELL_PROBS.sum()
# Objects: (label, shape 0=rectangle 1=ellipse, half-size range in m, count per km²).
_OBJECTS = [
    (1, 0, (4.0, 10.0), 150.0),
    (13, 0, (2.0, 4.5), 30.0),
    (18, 0, (6.0, 20.0), 5.0),
    (19, 1, (3.0, 6.0), 5.0),
    (15, 1, (8.0, 18.0), 4.0),
    (16, 1, (8.0, 18.0), 3.0),
    (17, 1, (4.0, 8.0), 3.0),
    (14, 1, (4.0, 8.0), 2.0),
]
_ZONE_KINDS = ["UF", "UA", "UN", "AF", "AA", "AN", "NF", "NA", "NN"]
_TILES = ["T31UDP", "T31TCJ", "T31TFJ", "T30TXQ", "T31UFQ", "T32TLQ", "T30UXU", "T31TGL"]
_BASELINE = {2018: "N0206", 2019: "N0213", 2020: "N0214", 2021: "N0300"}


@dataclass
class ToySummary:
    """What :func:`generate_toy_dataset` wrote.

    Attributes:
        root: the output folder (absolute).
        config_path: the ``toy.yml`` written beside the roots.
        num_train_patches, num_test_patches: patch counts per split.
        train_domains, test_domains: domain names per split.
        zones: ``domain/zone`` → number of Sentinel-2 dates.
        border_patches: ``IMG_<id>`` names whose Sentinel-2 crop leaves the super-area.
        all_cloudy_patches: ``IMG_<id>`` names whose crop is cloudy on every date.
        class_pixels: label value → pixel count over all masks.
        seconds: wall time of the generation.
    """

    root: Path
    config_path: Path
    num_train_patches: int = 0
    num_test_patches: int = 0
    train_domains: list[str] = field(default_factory=list)
    test_domains: list[str] = field(default_factory=list)
    zones: dict[str, int] = field(default_factory=dict)
    border_patches: list[str] = field(default_factory=list)
    all_cloudy_patches: list[str] = field(default_factory=list)
    class_pixels: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0

    def format(self) -> str:
        """A few lines for the terminal."""
        dates = list(self.zones.values()) or [0]
        return "\n".join(
            [
                f"toy dataset in {self.root} ({self.seconds:.1f} s)",
                f"  train: {self.num_train_patches} patches, domains "
                + ", ".join(self.train_domains),
                f"  test: {self.num_test_patches} patches, domains " + ", ".join(self.test_domains),
                f"  {len(self.zones)} zones, {min(dates)}–{max(dates)} Sentinel-2 dates each",
                f"  config: {self.config_path}",
            ]
        )


@dataclass
class _ZoneMap:
    """A zone's land-cover map in local metres (u east, v south of the super-area corner)."""

    spacing: float  # Voronoi seed grid spacing
    origin: float  # local u and v of the seed grid's corner
    seeds_u: np.ndarray  # (ny, nx)
    seeds_v: np.ndarray  # (ny, nx)
    warp: np.ndarray  # (2, K, 4): amplitude, wave vector u, v, phase, per axis
    objects: np.ndarray  # (N, 5): centre u, v, half sizes u, v, shape
    unit_class: np.ndarray  # (U,) label value of each cell then each object
    unit_tint: np.ndarray  # (U, 5) aerial offset of each unit
    unit_shift: np.ndarray  # (U,) phenology shift in days
    unit_amp: np.ndarray  # (U,) vegetation amplitude factor
    unit_bg: np.ndarray  # (U,) background brightness factor


def toy_config_dict(out: str | Path) -> dict[str, str]:
    """The ``data:`` section of a config pointing at a toy dataset in ``out`` (absolute paths)."""
    root = Path(out).resolve()
    return {
        "path_aerial_train": str(root / TRAIN_ROOTS["aerial"]),
        "path_sen_train": str(root / TRAIN_ROOTS["sen"]),
        "path_labels_train": str(root / TRAIN_ROOTS["labels"]),
        "path_aerial_test": str(root / TEST_ROOTS["aerial"]),
        "path_sen_test": str(root / TEST_ROOTS["sen"]),
        "path_labels_test": str(root / TEST_ROOTS["labels"]),
        "path_sp_centroids": str(root / CENTROIDS_NAME),
        "path_metadata_aerial": str(root / METADATA_NAME),
    }


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Bilinearly interpolated Gaussian noise with features of about ``cell`` pixels, (h, w)."""
    coarse = rng.standard_normal((int(h / cell) + 2, int(w / cell) + 2)).astype(np.float32)
    gy, gx = np.arange(h) / cell, np.arange(w) / cell
    i0, j0 = gy.astype(np.int64), gx.astype(np.int64)
    fy, fx = (gy - i0)[:, None].astype(np.float32), (gx - j0)[None, :].astype(np.float32)
    top = coarse[i0][:, j0] * (1 - fx) + coarse[i0][:, j0 + 1] * fx
    bottom = coarse[i0 + 1][:, j0] * (1 - fx) + coarse[i0 + 1][:, j0 + 1] * fx
    # Bilinear mixing shrinks the variance; scale back to about unit std.
    return (top * (1 - fy) + bottom * fy) * 1.5


def _make_zone_map(
    rng: np.random.Generator, height_m: float, width_m: float, region: float
) -> _ZoneMap:
    pad = 2 * region
    ny = math.ceil((height_m + 2 * pad) / region) + 1
    nx = math.ceil((width_m + 2 * pad) / region) + 1
    # Seeds jittered within the central 80 % of their grid cell: the nearest seed of any
    # point is then always among the 3 × 3 cells around it.
    seeds_v = -pad + (np.arange(ny)[:, None] + rng.uniform(0.1, 0.9, (ny, nx))) * region
    seeds_u = -pad + (np.arange(nx)[None, :] + rng.uniform(0.1, 0.9, (ny, nx))) * region
    # Boundaries are bent by three sine waves per axis (about ±0.2 region in all).
    k = 3
    angle = rng.uniform(0, 2 * np.pi, (2, k))
    wavelength = rng.uniform(1.0, 2.5, (2, k)) * region
    warp = np.stack(
        [
            np.full((2, k), 0.075 * region),
            2 * np.pi * np.cos(angle) / wavelength,
            2 * np.pi * np.sin(angle) / wavelength,
            rng.uniform(0, 2 * np.pi, (2, k)),
        ],
        axis=-1,
    )
    cell_class = rng.choice(_CELL_CLASSES, size=ny * nx, p=_CELL_PROBS)
    area_km2 = height_m * width_m / 1e6
    objects, object_class = [], []
    for label, shape, (lo, hi), density in _OBJECTS:
        n = rng.poisson(density * area_km2)
        half = rng.uniform(lo, hi, (n, 2))
        centre = rng.uniform(0, 1, (n, 2)) * [width_m, height_m]
        objects.append(np.column_stack([centre, half, np.full(n, shape)]))
        object_class.append(np.full(n, label))
    unit_class = np.concatenate([cell_class, *object_class]).astype(np.int64)
    u = unit_class.size
    tint = rng.normal(0.0, 3.0, (u, 5)).astype(np.float32)
    tint[:, 4] = rng.normal(0.0, 1.0, u) * np.where(np.isin(unit_class, (1, 6, 7, 16)), 8, 1)
    return _ZoneMap(
        spacing=region,
        origin=-pad,
        seeds_u=seeds_u,
        seeds_v=seeds_v,
        warp=warp,
        objects=np.concatenate(objects).reshape(-1, 5),
        unit_class=unit_class,
        unit_tint=tint,
        unit_shift=rng.normal(0.0, 7.0, u),
        unit_amp=rng.uniform(0.9, 1.1, u),
        unit_bg=rng.uniform(0.92, 1.08, u),
    )


def _unit_ids(zm: _ZoneMap, u0: float, v0: float, step: float, h: int, w: int) -> np.ndarray:
    """Unit index of each point of a regular grid (pixel centres from corner u0, v0), (h, w)."""
    U, V = np.meshgrid(u0 + (np.arange(w) + 0.5) * step, v0 + (np.arange(h) + 0.5) * step)
    Uw, Vw = U.copy(), V.copy()
    for axis, target in enumerate((Uw, Vw)):
        for amp, ku, kv, phase in zm.warp[axis]:
            target += amp * np.sin(ku * U + kv * V + phase)
    ny, nx = zm.seeds_u.shape
    ci = np.clip(((Vw - zm.origin) // zm.spacing).astype(np.int64), 1, ny - 2)
    cj = np.clip(((Uw - zm.origin) // zm.spacing).astype(np.int64), 1, nx - 2)
    best = np.full(U.shape, np.inf)
    ids = np.zeros(U.shape, np.int64)
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            ii, jj = ci + di, cj + dj
            dist = (Uw - zm.seeds_u[ii, jj]) ** 2 + (Vw - zm.seeds_v[ii, jj]) ** 2
            closer = dist < best
            best = np.where(closer, dist, best)
            ids = np.where(closer, ii * nx + jj, ids)
    # Objects are painted over the cells, unwarped, in order.
    obj = zm.objects
    u1, v1 = u0 + w * step, v0 + h * step
    hit = (obj[:, 0] + obj[:, 2] > u0) & (obj[:, 0] - obj[:, 2] < u1)
    hit &= (obj[:, 1] + obj[:, 3] > v0) & (obj[:, 1] - obj[:, 3] < v1)
    for k in np.flatnonzero(hit):
        cu, cv, hu, hv, shape = obj[k]
        j0, j1 = max(int((cu - hu - u0) / step), 0), min(int((cu + hu - u0) / step) + 1, w)
        i0, i1 = max(int((cv - hv - v0) / step), 0), min(int((cv + hv - v0) / step) + 1, h)
        du = (U[i0:i1, j0:j1] - cu) / hu
        dv = (V[i0:i1, j0:j1] - cv) / hv
        inside = (du**2 + dv**2 <= 1) if shape else (np.abs(du) <= 1) & (np.abs(dv) <= 1)
        ids[i0:i1, j0:j1][inside] = ny * nx + k
    return ids


def _unit_profiles(zm: _ZoneMap, doy: np.ndarray) -> np.ndarray:
    """Reflectance (×10⁴) of every unit on every date, (U, T, 10) float32."""
    cls = zm.unit_class
    params = np.array([_S2_CLASSES[int(c)][1:] for c in range(1, 20)], np.float64)[cls - 1]
    gain, base, amp, up, up_w, down, down_w = params.T
    days = doy[None, :] - zm.unit_shift[:, None]
    rise = _sigmoid((days - up[:, None]) / up_w[:, None])
    fall = _sigmoid((down[:, None] - days) / down_w[:, None])
    veg = np.clip(base[:, None] + (amp * zm.unit_amp)[:, None] * rise * fall, 0.0, 1.0)
    backgrounds = np.array([_SPECTRA[_S2_CLASSES[int(c)][0]] for c in range(1, 20)], np.float32)
    bg = backgrounds[cls - 1] * zm.unit_bg[:, None]
    veg_spec = _VEG[None, :] * gain[:, None]
    prof = veg[..., None] * veg_spec[:, None, :] + (1 - veg[..., None]) * bg[:, None, :]
    return prof.astype(np.float32)


def _dates(rng: np.random.Generator, year: int, count: int) -> list[datetime.date]:
    """``count`` distinct dates spread over ``year``, sorted (one per equal slice of the year)."""
    ndays = 366 if calendar.isleap(year) else 365
    edges = np.linspace(0, ndays, count + 1)
    doys = np.floor(edges[:-1] + rng.uniform(0, 1, count) * np.diff(edges)).astype(int)
    for k in range(1, count):  # two draws can share a day when slices are narrow
        doys[k] = max(doys[k], doys[k - 1] + 1)
    start = datetime.date(year, 1, 1)
    return [start + datetime.timedelta(days=int(d)) for d in doys]


def _product_names(
    rng: np.random.Generator, dates: list[datetime.date], tile: str, orbit: int
) -> list[str]:
    names = []
    for d in dates:
        sensing = f"{d:%Y%m%d}T{int(rng.integers(103000, 110000)):06d}"
        processed = d + datetime.timedelta(days=int(rng.integers(0, 2)))
        proc = f"{processed:%Y%m%d}T{int(rng.integers(120000, 160000)):06d}"
        platform = "S2A" if rng.random() < 0.5 else "S2B"
        baseline = _BASELINE.get(d.year, "N0300")
        names.append(f"{platform}_MSIL2A_{sensing}_{baseline}_R{orbit:03d}_{tile}_{proc}")
    return names


def _sentinel_series(
    rng: np.random.Generator,
    zm: _ZoneMap,
    shape: tuple[int, int],
    dates: list[datetime.date],
    cloudy_windows: list[tuple[int, int, int, int]],
) -> tuple[np.ndarray, np.ndarray]:
    """Data (T, 10, H, W) uint16 and cloud/snow masks (T, 2, H, W) uint8 of a super-area."""
    h, w = shape
    doy = np.array([d.timetuple().tm_yday for d in dates], np.float64)
    prof = _unit_profiles(zm, doy)
    ids = _unit_ids(zm, 0.0, 0.0, SAT_RES / _SUB, h * _SUB, w * _SUB).reshape(h, _SUB, w, _SUB)
    acc = np.zeros((h, w, len(dates), 10), np.float32)
    for a in range(_SUB):
        for b in range(_SUB):
            acc += prof[ids[:, a, :, b]]
    data = (acc / _SUB**2).transpose(2, 3, 0, 1)  # (T, 10, H, W)
    t = len(dates)
    data = data * rng.uniform(0.97, 1.03, (t, 1, 1, 1)).astype(np.float32)
    data += rng.standard_normal(data.shape, dtype=np.float32) * (30 + 0.03 * data)
    cloud = np.zeros((t, h, w), np.float32)
    snow = np.zeros((t, h, w), np.float32)
    full = int(rng.integers(t))
    for i, d in enumerate(dates):
        if i == full:
            cloud[i] = rng.uniform(0.9, 1.0, (h, w))
        elif rng.random() < 0.25:
            noise = _smooth_noise(rng, h, w, 8.0)
            thr = np.quantile(noise, 1 - rng.uniform(0.1, 0.5))
            cloud[i] = np.clip((noise - thr) / 0.3 + 0.5, 0, 1)
        if d.month in (12, 1, 2) and rng.random() < 0.3:
            noise = _smooth_noise(rng, h, w, 6.0)
            snow[i] = np.clip((noise - np.quantile(noise, 0.8)) / 0.3 + 0.5, 0, 1)
        for r0, r1, c0, c1 in cloudy_windows:
            cloud[i, r0:r1, c0:c1] = np.maximum(cloud[i, r0:r1, c0:c1], rng.uniform(0.9, 1.0))
    data = data * (1 - snow[:, None]) + _SNOW[None, :, None, None] * snow[:, None]
    data = data * (1 - cloud[:, None]) + _CLOUD[None, :, None, None] * cloud[:, None]
    # 0 marks padding for U-TAE: keep real reflectances >= 1.
    data_u16 = np.clip(np.rint(data), 1, 65535).astype(np.uint16)
    probs = np.stack([cloud, snow], axis=1) * 100 + rng.uniform(0, 4, (t, 2, h, w))
    masks = np.clip(np.rint(probs), 0, 100).astype(np.uint8)
    return data_u16, masks


def _render_patch(
    rng: np.random.Generator, zm: _ZoneMap, u0: float, v0: float, size: int, gain: float
) -> tuple[np.ndarray, np.ndarray]:
    """Aerial image (5, size, size) uint8 and label mask (size, size) uint8 of one patch."""
    ids = _unit_ids(zm, u0, v0, AERIAL_RES, size, size)
    label = zm.unit_class[ids]
    look = _AERIAL[label]  # (size, size, 9)
    fine = rng.standard_normal((size, size), dtype=np.float32)
    coarse = _smooth_noise(rng, size, size, 12.0)  # ~2.4 m: tree crowns, field texture
    u = u0 + (np.arange(size) + 0.5) * AERIAL_RES
    stripes = np.sin(2 * np.pi * u / 2.0)[None, :]  # vineyard rows every 2 m
    texture = look[..., 5] * fine + look[..., 6] * coarse
    img = np.empty((5, size, size), np.float32)
    for b in range(4):
        img[b] = (look[..., b] + zm.unit_tint[ids, b] + texture) * gain
    img[1] += look[..., 8] * stripes * 0.5
    img[3] += look[..., 8] * stripes
    img[4] = look[..., 4] + zm.unit_tint[ids, 4] + look[..., 7] * coarse + 0.5 * fine
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), label.astype(np.uint8)


def _write_tif(path: Path, array: np.ndarray, left: float, top: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    count, h, w = array.shape
    profile = {
        "driver": "GTiff",
        "width": w,
        "height": h,
        "count": count,
        "dtype": "uint8",
        "crs": "EPSG:2154",
        "transform": Affine(AERIAL_RES, 0.0, left, 0.0, -AERIAL_RES, top),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)


@dataclass
class _ZonePlan:
    split: str  # "train" or "test"
    domain: str
    zone: str
    index: int  # zone number across the dataset (seeds its random stream)
    patch_ids: list[str]
    year: int
    corner: tuple[float, float]  # Lambert-93 x, y of the super-area's top-left corner
    altitude: float
    flight: datetime.date
    camera: str
    tile: str
    orbit: int
    border: bool  # put the first patch row near the top edge
    all_cloudy: bool  # one patch's crop cloudy on every date


def _plan(
    rng: np.random.Generator,
    num_domains: int,
    zones_per_domain: int,
    patches_per_zone: int,
    num_test_domains: int,
    test_patches_per_zone: int,
) -> list[_ZonePlan]:
    n_dom = num_domains + num_test_domains
    departments = rng.choice(np.arange(1, 96), n_dom, replace=False)
    years = rng.integers(2018, 2022, n_dom)
    counts = [patches_per_zone] * (num_domains * zones_per_domain)
    counts += [test_patches_per_zone] * (num_test_domains * zones_per_domain)
    ids = np.sort(rng.choice(10**6, sum(counts), replace=False))
    plans: list[_ZonePlan] = []
    next_id = 0
    for d in range(n_dom):
        split = "train" if d < num_domains else "test"
        year = int(years[d])
        domain = f"D{int(departments[d]):03d}_{year}"
        x0 = float(rng.integers(30_000, 100_000)) * 10
        y0 = float(rng.integers(630_000, 695_000)) * 10
        flight = datetime.date(year, 4, 1) + datetime.timedelta(days=int(rng.integers(0, 180)))
        camera = str(
            rng.choice(["UCE-M3-f100-s06", "UCE-M3-f120-s06", "CAMERA#030"], p=[0.6, 0.25, 0.15])
        )
        tile, orbit = str(rng.choice(_TILES)), int(rng.integers(1, 144))
        altitude = float(rng.uniform(20, 900))
        kinds = rng.choice(_ZONE_KINDS, zones_per_domain)
        for z in range(zones_per_domain):
            n = counts[len(plans)]
            plans.append(
                _ZonePlan(
                    split=split,
                    domain=domain,
                    zone=f"Z{z + 1}_{kinds[z]}",
                    index=len(plans),
                    patch_ids=[f"{i:06d}" for i in ids[next_id : next_id + n]],
                    year=year,
                    corner=(x0 + z * 3000.0, y0 - float(rng.integers(0, 300)) * 10),
                    altitude=altitude + float(rng.uniform(-15, 15)),
                    flight=flight + datetime.timedelta(days=int(rng.integers(0, 4))),
                    camera=camera,
                    tile=tile,
                    orbit=orbit,
                    border=d in (0, num_domains) and z == 0,
                    all_cloudy=False,
                )
            )
            next_id += n
    train_zones = [p for p in plans if p.split == "train"]
    if len(train_zones) >= 2:
        # One zone only, so that nearly every training crop keeps usable dates.
        train_zones[-1].all_cloudy = True
    return plans


def _check_args(**kwargs: int) -> None:
    for key, value in kwargs.items():
        low = 0 if key == "num_test_domains" else 1
        if value < low:
            raise ValueError(f"{key} must be >= {low}, got {value}")
    if kwargs["patch_size"] < 32 or kwargs["patch_size"] % 32:
        raise ValueError(f"patch_size must be a multiple of 32, got {kwargs['patch_size']}")
    s = kwargs["sat_patch_size"]
    if s % 8 or not 8 <= s <= 112:
        raise ValueError(f"sat_patch_size must be a multiple of 8 in [8, 112], got {s}")
    if kwargs["num_dates"] > 300:
        raise ValueError(f"num_dates must be <= 300 (one year), got {kwargs['num_dates']}")
    if kwargs["num_domains"] + kwargs["num_test_domains"] > 95:
        raise ValueError("at most 95 domains in all (one per département)")


def generate_toy_dataset(
    out: str | Path,
    *,
    patch_size: int = 512,
    seed: int = 0,
    num_domains: int = 4,
    zones_per_domain: int = 2,
    patches_per_zone: int = 8,
    num_test_domains: int = 2,
    test_patches_per_zone: int = 5,
    num_dates: int = 20,
    sat_patch_size: int = 40,
    region_size: float = 40.0,
    overwrite: bool = False,
    progress: bool = False,
) -> ToySummary:
    """Write a synthetic dataset in the official FLAIR #2 layout, plus ``out/toy.yml``.

    The defaults give 64 training patches (4 domains × 2 zones × 8) and 20 test
    patches (2 domains × 2 zones × 5) of 512 × 512 pixels, about 20 dates per zone
    (it varies by ±20 % between zones). The same seed gives the same arrays.

    Args:
        out: output folder; the roots, the two JSON indexes and ``toy.yml`` go in it.
        patch_size: aerial patch side in pixels (multiple of 32; 0.2 m pixels).
        seed: random seed.
        num_domains, zones_per_domain, patches_per_zone: training split size.
        num_test_domains, test_patches_per_zone: test split size (same zones per domain).
        num_dates: mean number of Sentinel-2 dates per zone.
        sat_patch_size: the crop size the dataset is meant for; super-areas leave a
            margin of half of it around the patches, except along the top edge of the
            first zone of each split, where crops leave the super-area.
        region_size: mean size of the land-cover regions, metres.
        overwrite: replace toy roots already in ``out``; otherwise they are an error.
        progress: show a progress bar on the terminal.

    Returns:
        A summary of what was written.

    Raises:
        ValueError: an argument is out of range.
        FileExistsError: ``out`` already holds a dataset and ``overwrite`` is False.
    """
    _check_args(
        patch_size=patch_size,
        num_domains=num_domains,
        zones_per_domain=zones_per_domain,
        patches_per_zone=patches_per_zone,
        num_test_domains=num_test_domains,
        test_patches_per_zone=test_patches_per_zone,
        num_dates=num_dates,
        sat_patch_size=sat_patch_size,
    )
    if region_size < 2 * SAT_RES:
        raise ValueError(f"region_size must be >= {2 * SAT_RES} m, got {region_size}")
    start = time.perf_counter()
    root = Path(out).resolve()
    existing = [
        root / n for n in (*TRAIN_ROOTS.values(), *TEST_ROOTS.values()) if (root / n).exists()
    ]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} already exists: choose another folder or overwrite")
    for path in existing:
        shutil.rmtree(path)
    root.mkdir(parents=True, exist_ok=True)

    plans = _plan(
        np.random.default_rng([seed, 0]),
        num_domains,
        zones_per_domain,
        patches_per_zone,
        num_test_domains,
        test_patches_per_zone,
    )
    summary = ToySummary(root=root, config_path=root / CONFIG_NAME)
    centroids: dict[str, list[int]] = {}
    metadata: dict[str, dict[str, Any]] = {}
    hist = np.zeros(20, np.int64)
    total = sum(len(p.patch_ids) for p in plans)
    bar = _progress_bar(total) if progress else None
    try:
        for plan in plans:
            _generate_zone(
                plan, root, seed, patch_size, sat_patch_size, num_dates, region_size,
                summary, centroids, metadata, hist, bar,
            )  # fmt: skip
    finally:
        if bar is not None:
            bar.stop()
    write_json_atomic(root / CENTROIDS_NAME, centroids)
    write_json_atomic(root / METADATA_NAME, metadata)
    data = toy_config_dict(root)
    if not num_test_domains:  # no test folders were written
        data.update({k: "" for k in data if k.endswith("_test")})
    config = {
        "data": data,
        "sat_patch_size": sat_patch_size,
        "patch_size": patch_size,
    }
    header = (
        f"# Toy dataset written by flair2 (seed {seed}); set out_folder and the rest as needed.\n"
    )
    write_text_atomic(summary.config_path, header + yaml.safe_dump(config, sort_keys=False))
    summary.train_domains = sorted({p.domain for p in plans if p.split == "train"})
    summary.test_domains = sorted({p.domain for p in plans if p.split == "test"})
    summary.class_pixels = {v: int(hist[v]) for v in range(1, 20)}
    summary.seconds = time.perf_counter() - start
    log.info(
        "toy dataset in %s: %d train + %d test patches, %d zones, %.1f s",
        root,
        summary.num_train_patches,
        summary.num_test_patches,
        len(summary.zones),
        summary.seconds,
    )
    return summary


def _progress_bar(total: int) -> Any:
    from rich.progress import Progress

    bar = Progress()
    bar.start()
    bar.add_task("toy dataset", total=total)
    return bar


def _generate_zone(
    plan: _ZonePlan,
    root: Path,
    seed: int,
    patch_size: int,
    sat_patch_size: int,
    num_dates: int,
    region_size: float,
    summary: ToySummary,
    centroids: dict[str, list[int]],
    metadata: dict[str, dict[str, Any]],
    hist: np.ndarray,
    bar: Any,
) -> None:
    rng = np.random.default_rng([seed, 1, plan.index])
    roots = TRAIN_ROOTS if plan.split == "train" else TEST_ROOTS
    n = len(plan.patch_ids)
    ncols = math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    footprint = patch_size * AERIAL_RES / SAT_RES  # patch side in Sentinel-2 pixels
    spacing = math.ceil(footprint) + 1
    half = sat_patch_size // 2
    margin = half + 1
    inner = math.ceil(footprint / 2) + 1  # closest a patch centre may come to the edge
    top = max(inner, half - max(2, half // 2)) if plan.border else margin + int(rng.integers(0, 3))
    left = margin + int(rng.integers(0, 3))
    height = top + (nrows - 1) * spacing + margin + int(rng.integers(0, 3))
    width = left + (ncols - 1) * spacing + margin + int(rng.integers(0, 3))
    zm = _make_zone_map(rng, height * SAT_RES, width * SAT_RES, region_size)
    spread = num_dates // 5
    t = max(1, num_dates + int(rng.integers(-spread, spread + 1)))
    dates = _dates(rng, plan.year, t)
    cells = [(top + (p // ncols) * spacing, left + (p % ncols) * spacing) for p in range(n)]
    windows = []
    if plan.all_cloudy:
        # A square of 3/4 of the crop side over the last patch: > 50 % of its crop is
        # cloudy on every date, its neighbours' crops much less.
        q = math.ceil(0.75 * sat_patch_size)
        r, c = cells[-1]
        windows.append((max(r - q // 2, 0), r - q // 2 + q, max(c - q // 2, 0), c - q // 2 + q))
        summary.all_cloudy_patches.append(f"IMG_{plan.patch_ids[-1]}")
    data, masks = _sentinel_series(rng, zm, (height, width), dates, windows)
    sen_dir = root / roots["sen"] / plan.domain / plan.zone / "sen"
    sen_dir.mkdir(parents=True, exist_ok=True)
    stem = f"SEN2_sp_{plan.domain}-{plan.zone}"
    np.save(sen_dir / f"{stem}_data.npy", data)
    np.save(sen_dir / f"{stem}_masks.npy", masks)
    products = _product_names(rng, dates, plan.tile, plan.orbit)
    (sen_dir / f"{stem}_products.txt").write_text("\n".join(products) + "\n", encoding="utf-8")
    summary.zones[f"{plan.domain}/{plan.zone}"] = t
    log.info(
        "%s/%s: %d patches, super-area %d×%d, %d dates", plan.domain, plan.zone, n, height, width, t
    )

    side_m = patch_size * AERIAL_RES
    gain = float(np.random.default_rng([seed, 3, plan.index]).uniform(0.94, 1.06))
    x0, y0 = plan.corner
    for p, pid in enumerate(plan.patch_ids):
        row, col = cells[p]
        u0, v0 = col * SAT_RES - side_m / 2, row * SAT_RES - side_m / 2
        prng = np.random.default_rng([seed, 2, int(pid)])
        img, label = _render_patch(prng, zm, u0, v0, patch_size, gain)
        left_x, top_y = x0 + u0, y0 - v0
        zone_path = Path(plan.domain) / plan.zone
        _write_tif(
            root / roots["aerial"] / zone_path / "img" / f"IMG_{pid}.tif", img, left_x, top_y
        )
        _write_tif(
            root / roots["labels"] / zone_path / "msk" / f"MSK_{pid}.tif",
            label[None],
            left_x,
            top_y,
        )
        hist += np.bincount(label.ravel(), minlength=20)[:20]
        centroids[f"IMG_{pid}.tif"] = [row, col]
        minute = int(prng.integers(9 * 60, 14 * 60))
        metadata[f"IMG_{pid}"] = {
            "domain": plan.domain,
            "zone": plan.zone,
            "x": round(left_x, 2),
            "y": round(top_y, 2),
            "patch_centroid_x": round(left_x + side_m / 2, 2),
            "patch_centroid_y": round(top_y - side_m / 2, 2),
            "patch_centroid_z": round(plan.altitude + float(prng.normal(0, 3)), 2),
            "date": plan.flight.isoformat(),
            "time": f"{minute // 60}h{minute % 60:02d}",
            "camera": plan.camera,
        }
        if row < half:
            summary.border_patches.append(f"IMG_{pid}")
        if plan.split == "train":
            summary.num_train_patches += 1
        else:
            summary.num_test_patches += 1
        if bar is not None:
            bar.advance(bar.task_ids[0])
