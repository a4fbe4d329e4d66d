"""A synthetic FLAIR #2 dataset in the official layout: small, deterministic, learnable.

This module plans the dataset (domains, zones, patch positions, dates, flights) and
writes it: aerial and label GeoTIFFs, Sentinel-2 ``.npy`` series with their product
lists, the centroid and metadata JSON indexes, and a ``toy.yml`` pointing at it all.
What the land looks like (the land-cover maps, the aerial rendering and the Sentinel-2
synthesis) lives in :mod:`flair2.synthetic.scene`.

Clouds (and winter snow) cover parts of some dates, one date per zone is cloudy
everywhere, and in one training zone one patch's crop is cloudy on every date, which
exercises the loader's fallback. One zone per split has a patch near the top border
of its super-area, so its crop leaves the array and the loader must pad it.
"""

from __future__ import annotations

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

from flair2.formats import (
    SENTINEL_DATA,
    SENTINEL_MASKS,
    SENTINEL_PRODUCTS,
    image_name,
    image_stem,
    mask_name,
    sentinel_name,
)
from flair2.io import write_json_atomic, write_text_atomic
from flair2.synthetic.dates import product_names, spread_dates
from flair2.synthetic.plan import ZonePlan, check_toy_args, plan_zones
from flair2.synthetic.presets import (
    CENTROIDS_NAME,
    CONFIG_NAME,
    METADATA_NAME,
    TEST_ROOTS,
    TRAIN_ROOTS,
    toy_config_dict,
)
from flair2.synthetic.scene import (
    AERIAL_RES,
    SAT_RES,
    make_zone_map,
    render_patch,
    sentinel_series,
)

log = logging.getLogger(__name__)


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
        num_domains: training domains.
        zones_per_domain: zones per domain (training and test).
        patches_per_zone: training patches per zone.
        num_test_domains: test domains.
        test_patches_per_zone: test patches per zone.
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
    check_toy_args(
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

    plans = plan_zones(
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
    plan: ZonePlan,
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
        summary.all_cloudy_patches.append(image_stem(plan.patch_ids[-1]))
    data, masks = sentinel_series(rng, zm, (height, width), dates, windows)
    sen_dir = root / roots["sen"] / plan.domain / plan.zone / "sen"
    sen_dir.mkdir(parents=True, exist_ok=True)
    np.save(sen_dir / sentinel_name(plan.domain, plan.zone, SENTINEL_DATA), data)
    np.save(sen_dir / sentinel_name(plan.domain, plan.zone, SENTINEL_MASKS), masks)
    products = product_names(rng, dates, plan.tile, plan.orbit)
    (sen_dir / sentinel_name(plan.domain, plan.zone, SENTINEL_PRODUCTS)).write_text(
        "\n".join(products) + "\n", encoding="utf-8"
    )
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
        _write_tif(root / roots["aerial"] / zone_path / "img" / image_name(pid), img, left_x, top_y)
        _write_tif(
            root / roots["labels"] / zone_path / "msk" / mask_name(pid),
            label[None],
            left_x,
            top_y,
        )
        hist += np.bincount(label.ravel(), minlength=20)[:20]
        centroids[image_name(pid)] = [row, col]
        minute = int(prng.integers(9 * 60, 14 * 60))
        metadata[image_stem(pid)] = {
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
            summary.border_patches.append(image_stem(pid))
        if plan.split == "train":
            summary.num_train_patches += 1
        else:
            summary.num_test_patches += 1
        if bar is not None:
            bar.advance(bar.task_ids[0])
