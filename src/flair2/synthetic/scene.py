"""The synthetic land-cover scene behind the toy dataset: what the world looks like.

Each zone gets a land-cover map defined in metres over its Sentinel-2 super-area
(:class:`ZoneMap`): warped Voronoi cells (fields, woods, water, built-up blocks…)
plus small objects (buildings, swimming pools, greenhouses, rare blobs). Every cell
or object is a "unit" with a class and a little individual variation. The same map
is rendered twice:

- at 0.2 m for each aerial patch (5 bands R, G, B, NIR, elevation) and its mask
  (:func:`render_patch`);
- at 10 m for the zone's Sentinel-2 series, each pixel mixing the seasonal
  reflectance profiles of the units under it (4 × 4 sub-samples per pixel), with
  clouds and winter snow on top (:func:`sentinel_series`).

Most classes differ from the air (colour, NIR, elevation, texture). Herbaceous
vegetation (10), agricultural land (11) and plowed land (12) share identical aerial
statistics and differ only in their Sentinel-2 vegetation curve over the year, so
only a model that uses the time series can separate them.

Where the zones and patches lie and how they are written to disk is
:mod:`flair2.synthetic.toy`'s business.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass

import numpy as np

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


@dataclass
class ZoneMap:
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


def make_zone_map(
    rng: np.random.Generator, height_m: float, width_m: float, region: float
) -> ZoneMap:
    """Draw a zone's land-cover map: warped Voronoi cells plus small objects.

    The cell grid reaches two regions beyond the area on every side, so maps can be
    sampled a little outside it (crops near the border).

    Args:
        rng: the zone's random stream (consumed in a fixed order: same state, same map).
        height_m: height of the super-area, metres.
        width_m: width of the super-area, metres.
        region: mean cell size (Voronoi seed spacing), metres.

    Returns:
        The map, with one unit per cell (row-major) followed by one per object.
    """
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
    return ZoneMap(
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


def _unit_ids(zm: ZoneMap, u0: float, v0: float, step: float, h: int, w: int) -> np.ndarray:
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


def _unit_profiles(zm: ZoneMap, doy: np.ndarray) -> np.ndarray:
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


def mean_reflectance(zm: ZoneMap, shape: tuple[int, int], dates: list[datetime.date]) -> np.ndarray:
    """The noise-free reflectance of a super-area: each pixel the mean of its land-cover units.

    Args:
        zm: the zone's map (pixel (i, j) as in :func:`sentinel_series`).
        shape: (H, W) in Sentinel-2 pixels.
        dates: the T dates (their day of year drives the vegetation curves).

    Returns:
        float32 (T, 10, H, W), reflectance × 10⁴.
    """
    h, w = shape
    doy = np.array([d.timetuple().tm_yday for d in dates], np.float64)
    prof = _unit_profiles(zm, doy)
    ids = _unit_ids(zm, 0.0, 0.0, SAT_RES / _SUB, h * _SUB, w * _SUB).reshape(h, _SUB, w, _SUB)
    acc = np.zeros((h, w, len(dates), 10), np.float32)
    for a in range(_SUB):
        for b in range(_SUB):
            acc += prof[ids[:, a, :, b]]
    return (acc / _SUB**2).transpose(2, 3, 0, 1)


def sentinel_series(
    rng: np.random.Generator,
    zm: ZoneMap,
    shape: tuple[int, int],
    dates: list[datetime.date],
    cloudy_windows: list[tuple[int, int, int, int]],
) -> tuple[np.ndarray, np.ndarray]:
    """Synthesise a super-area's Sentinel-2 series from its land-cover map.

    Args:
        rng: random stream for radiometric noise, clouds and snow.
        zm: the zone's map; pixel (i, j) covers u in [j, j + 1)·SAT_RES, v in [i, i + 1)·SAT_RES.
        shape: (H, W) of the super-area in Sentinel-2 pixels.
        dates: the T acquisition dates (their day of year drives the vegetation curves).
        cloudy_windows: (row0, row1, col0, col1) pixel boxes forced cloudy on every date.

    Returns:
        Data (T, 10, H, W) uint16 (reflectance × 10⁴, never 0) and cloud/snow
        probabilities (T, 2, H, W) uint8 in [0, 100].
    """
    h, w = shape
    data = mean_reflectance(zm, shape, dates)
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


def render_patch(
    rng: np.random.Generator, zm: ZoneMap, u0: float, v0: float, size: int, gain: float
) -> tuple[np.ndarray, np.ndarray]:
    """Render one aerial patch and its label mask from the land-cover map.

    Args:
        rng: the patch's random stream (texture noise).
        zm: the zone's map.
        u0: local x of the patch's top-left corner, metres.
        v0: local y of that corner (downwards), metres.
        size: patch side in pixels (AERIAL_RES metres each).
        gain: radiometric gain applied to bands R, G, B and NIR (per zone).

    Returns:
        Aerial image (5, size, size) uint8 (R, G, B, NIR, elevation) and label mask
        (size, size) uint8 with values 1–19.
    """
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
