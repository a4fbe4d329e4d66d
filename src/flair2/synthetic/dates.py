"""Sentinel-2 acquisition dates and product names for synthetic series."""

from __future__ import annotations

import calendar
import datetime

import numpy as np

#: Processing baseline of the L2A products, by year.
_BASELINE = {2018: "N0206", 2019: "N0213", 2020: "N0214", 2021: "N0300"}


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
