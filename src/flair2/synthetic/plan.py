"""The plan of a toy dataset: domains, zones, patch ids, flights and edge cases."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

import numpy as np

from flair2.formats import PATCH_MULTIPLE, is_patch_multiple

_ZONE_KINDS = ["UF", "UA", "UN", "AF", "AA", "AN", "NF", "NA", "NN"]
_TILES = ["T31UDP", "T31TCJ", "T31TFJ", "T30TXQ", "T31UFQ", "T32TLQ", "T30UXU", "T31TGL"]


@dataclass
class ZonePlan:
    """One zone of the toy dataset: where it lies, its patches, flight and Sentinel-2 tile."""

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


def plan_zones(
    rng: np.random.Generator,
    num_domains: int,
    zones_per_domain: int,
    patches_per_zone: int,
    num_test_domains: int,
    test_patches_per_zone: int,
    edge_cases: bool = True,
) -> list[ZonePlan]:
    """Domains, zones, patch ids, flights and edge cases of a toy dataset, drawn from ``rng``."""
    n_dom = num_domains + num_test_domains
    departments = rng.choice(np.arange(1, 96), n_dom, replace=False)
    years = rng.integers(2018, 2022, n_dom)
    counts = [patches_per_zone] * (num_domains * zones_per_domain)
    counts += [test_patches_per_zone] * (num_test_domains * zones_per_domain)
    ids = np.sort(rng.choice(10**6, sum(counts), replace=False))
    plans: list[ZonePlan] = []
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
                ZonePlan(
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


def check_toy_args(**kwargs: int) -> None:
    """Raise ValueError for a count, size or date number the generator cannot honour."""
    for key, value in kwargs.items():
        low = 0 if key == "num_test_domains" else 1
        if value < low:
            raise ValueError(f"{key} must be >= {low}, got {value}")
    if not is_patch_multiple(kwargs["patch_size"]):
        raise ValueError(
            f"patch_size must be a multiple of {PATCH_MULTIPLE}, got {kwargs['patch_size']}"
        )
    s = kwargs["sat_patch_size"]
    if s % 8 or not 8 <= s <= 112:
        raise ValueError(f"sat_patch_size must be a multiple of 8 in [8, 112], got {s}")
    if kwargs["num_dates"] > 300:
        raise ValueError(f"num_dates must be <= 300 (one year), got {kwargs['num_dates']}")
    if kwargs["num_domains"] + kwargs["num_test_domains"] > 95:
        raise ValueError("at most 95 domains in all (one per département)")
