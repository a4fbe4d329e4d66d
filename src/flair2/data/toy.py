"""A synthetic FLAIR #2 dataset in the official layout: small, deterministic, learnable.

This module plans the dataset (domains, zones, patch positions, dates, flights) and
writes it: aerial and label GeoTIFFs, Sentinel-2 ``.npy`` series with their product
lists, the centroid and metadata JSON indexes, and a ``toy.yml`` pointing at it all.
What the land looks like (the land-cover maps, the aerial rendering and the Sentinel-2
synthesis) lives in :mod:`flair2.data.toy_scene`.

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

from flair2.data.toy_scene import (
    AERIAL_RES,
    SAT_RES,
    make_zone_map,
    render_patch,
    sentinel_series,
)
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


#: Config keys of a tiny U-T&T for quick CPU runs on toy data (tests, the benchmarks'
#: quick modes): 8 px Sentinel-2 crops, a 2-stage U-TAE of 16 channels, ResNet-18.
TINY_MODEL: dict[str, Any] = {
    "sat_patch_size": 8,
    "encoder_widths": [16, 16],
    "decoder_widths": [16, 16],
    "out_conv": [16, 13],
    "n_head": 4,
    "d_model": 32,
    "d_k": 4,
    "encoder_name": "resnet18",
}


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


def spread_dates(rng: np.random.Generator, year: int, count: int) -> list[datetime.date]:
    """``count`` distinct dates spread over ``year``, sorted (one per equal slice of the year)."""
    ndays = 366 if calendar.isleap(year) else 365
    edges = np.linspace(0, ndays, count + 1)
    doys = np.floor(edges[:-1] + rng.uniform(0, 1, count) * np.diff(edges)).astype(int)
    for k in range(1, count):  # two draws can share a day when slices are narrow
        doys[k] = max(doys[k], doys[k - 1] + 1)
    start = datetime.date(year, 1, 1)
    return [start + datetime.timedelta(days=int(d)) for d in doys]


def product_names(
    rng: np.random.Generator, dates: list[datetime.date], tile: str, orbit: int
) -> list[str]:
    """Sentinel-2 L2A product names for ``dates`` on ``tile`` (random platform and times)."""
    names = []
    for d in dates:
        sensing = f"{d:%Y%m%d}T{int(rng.integers(103000, 110000)):06d}"
        processed = d + datetime.timedelta(days=int(rng.integers(0, 2)))
        proc = f"{processed:%Y%m%d}T{int(rng.integers(120000, 160000)):06d}"
        platform = "S2A" if rng.random() < 0.5 else "S2B"
        baseline = _BASELINE.get(d.year, "N0300")
        names.append(f"{platform}_MSIL2A_{sensing}_{baseline}_R{orbit:03d}_{tile}_{proc}")
    return names


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
    edge_cases: bool = True,
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
                    border=edge_cases and d in (0, num_domains) and z == 0,
                    all_cloudy=False,
                )
            )
            next_id += n
    train_zones = [p for p in plans if p.split == "train"]
    if edge_cases and len(train_zones) >= 2:
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
    edge_cases: bool = True,
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
        edge_cases: write the border crop and the all-cloudy crop (module docstring);
            False: every crop lies inside its super-area and keeps usable dates (what
            the reference's loader needs: it fails on both; see ``bench/``).
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
        edge_cases,
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
    zm = make_zone_map(rng, height * SAT_RES, width * SAT_RES, region_size)
    spread = num_dates // 5
    t = max(1, num_dates + int(rng.integers(-spread, spread + 1)))
    dates = spread_dates(rng, plan.year, t)
    cells = [(top + (p // ncols) * spacing, left + (p % ncols) * spacing) for p in range(n)]
    windows = []
    if plan.all_cloudy:
        # A square of 3/4 of the crop side over the last patch: > 50 % of its crop is
        # cloudy on every date, its neighbours' crops much less.
        q = math.ceil(0.75 * sat_patch_size)
        r, c = cells[-1]
        windows.append((max(r - q // 2, 0), r - q // 2 + q, max(c - q // 2, 0), c - q // 2 + q))
        summary.all_cloudy_patches.append(f"IMG_{plan.patch_ids[-1]}")
    data, masks = sentinel_series(rng, zm, (height, width), dates, windows)
    sen_dir = root / roots["sen"] / plan.domain / plan.zone / "sen"
    sen_dir.mkdir(parents=True, exist_ok=True)
    stem = f"SEN2_sp_{plan.domain}-{plan.zone}"
    np.save(sen_dir / f"{stem}_data.npy", data)
    np.save(sen_dir / f"{stem}_masks.npy", masks)
    products = product_names(rng, dates, plan.tile, plan.orbit)
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
        img, label = render_patch(prng, zm, u0, v0, patch_size, gain)
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
