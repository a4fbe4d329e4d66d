"""Drawing a patch's Sentinel-2 series: the thumbnail strip and the NDVI curve.

Data-free: the functions draw a :class:`SentinelView` (arrays and dates) that
``flair2.viz.patch`` computes from the dataset files with the loader's own crop and
cloud filter. Used by the patch figure of ``flair2 show``.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass

import matplotlib.dates as mdates
import numpy as np
from matplotlib.figure import SubFigure
from matplotlib.patches import Rectangle

#: Sentinel-2 band indices in ``*_data.npy`` (B2, B3, B4, B5, B6, B7, B8, B8A, B11, B12).
S2_BLUE, S2_GREEN, S2_RED, S2_NIR = 0, 1, 2, 6
#: Thumbnails per row of the Sentinel-2 strip.
THUMBS_PER_ROW = 12
KEPT_COLOUR = "#1a9641"
FILTERED_COLOUR = "#d7191c"


@dataclass
class SentinelView:
    """What the figure shows of a patch's Sentinel-2 series.

    Attributes:
        dates: acquisition dates (T,).
        rgb: (T, S, S, 3) true colour in [0, 1], one stretch for the whole series.
        cover: (T,) cloud + snow cover of the crop.
        keep: (T,) bool, the dates the loader keeps.
        ndvi: (T,) mean NDVI of the footprint per date.
        month_dates: the 15th of each month with a kept date (M,).
        month_ndvi: (M,) NDVI of the monthly mean reflectance, footprint mean.
        footprint: side of the aerial patch in Sentinel-2 pixels.
    """

    dates: list[datetime.date]
    rgb: np.ndarray
    cover: np.ndarray
    keep: np.ndarray
    ndvi: np.ndarray
    month_dates: list[datetime.date]
    month_ndvi: np.ndarray
    footprint: float


def mean_ndvi(series: np.ndarray, rows: slice, cols: slice) -> np.ndarray:
    """Footprint mean of (NIR − red) / (NIR + red) per image of a (T, C, S, S) series."""
    nir = series[:, S2_NIR, rows, cols].astype(np.float64)
    red = series[:, S2_RED, rows, cols].astype(np.float64)
    total = nir + red
    ndvi = np.full_like(total, np.nan)
    np.divide(nir - red, total, out=ndvi, where=total > 0)
    flat = ndvi.reshape(ndvi.shape[0], -1)
    counts = np.sum(~np.isnan(flat), axis=1)
    sums = np.nansum(flat, axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def shown_dates(count: int, max_dates: int) -> list[int]:
    """Indices of at most ``max_dates`` dates, evenly spread and in order."""
    if count <= max_dates:
        return list(range(count))
    return sorted({round(float(i)) for i in np.linspace(0, count - 1, max_dates)})


def draw_thumbnails(sub: SubFigure, view: SentinelView, shown: list[int], size: int) -> None:
    """The strip of Sentinel-2 crops, each framed green (kept) or red (filtered)."""
    rows = math.ceil(len(shown) / THUMBS_PER_ROW)
    axes = np.atleast_1d(sub.subplots(rows, THUMBS_PER_ROW, squeeze=False)).ravel()
    centre = size // 2 - 0.5  # the crop centre in imshow's pixel-centre coordinates
    for ax in axes:
        ax.set_axis_off()
    for ax, t in zip(axes, shown):
        kept = bool(view.keep[t])
        colour = KEPT_COLOUR if kept else FILTERED_COLOUR
        ax.set_axis_on()
        ax.imshow(view.rgb[t], interpolation="nearest")
        ax.add_patch(
            Rectangle(
                (centre - view.footprint / 2, centre - view.footprint / 2),
                view.footprint,
                view.footprint,
                fill=False,
                edgecolor="yellow",
                linewidth=1.2,
            )
        )
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(3)
        mark = "✓ kept" if kept else "✗ filtered"
        ax.set_title(
            f"{view.dates[t]:%Y-%m-%d}\n{mark} · cloud {100 * view.cover[t]:.0f}%",
            fontsize=7,
            color=colour,
        )
    note = "" if len(shown) == len(view.dates) else f", {len(shown)} of {len(view.dates)} shown"
    sub.suptitle(
        f"Sentinel-2 true colour (B4, B3, B2), {size}×{size} px crop, yellow: patch footprint "
        f"({view.footprint:.2f} px); cloud = cloud + snow cover of the crop{note}",
        fontsize=9,
    )


def draw_ndvi(sub: SubFigure, view: SentinelView, flight: datetime.date | None) -> None:
    """Draw the footprint's NDVI per date (kept, filtered), its monthly means and the flight."""
    ax = sub.subplots()
    dates = np.array(view.dates, dtype=object)
    keep = view.keep
    ax.plot(dates, view.ndvi, color="0.75", lw=0.8, zorder=1)
    ax.scatter(dates[keep], view.ndvi[keep], color=KEPT_COLOUR, s=22, label="kept date", zorder=3)
    if (~keep).any():
        ax.scatter(
            dates[~keep],
            view.ndvi[~keep],
            color=FILTERED_COLOUR,
            marker="x",
            s=28,
            label="filtered date (cloud/snow)",
            zorder=3,
        )
    if view.month_dates:
        ax.plot(
            mdates.date2num(view.month_dates),
            view.month_ndvi,
            color="black",
            marker="s",
            ms=5,
            lw=1.5,
            label="monthly mean (kept dates)",
            zorder=2,
        )
    if flight is not None:
        ax.axvline(
            mdates.date2num(flight),
            color="tab:purple",
            ls="--",
            lw=1,
            label=f"aerial flight {flight}",
        )
    # Show whole calendar years: the position of a date in its season is the point.
    first, last = min(view.dates), max(view.dates)
    ax.set_xlim(
        mdates.date2num(datetime.date(first.year, 1, 1)),
        mdates.date2num(datetime.date(last.year + 1, 1, 1)),
    )
    locator = mdates.MonthLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_ylabel("NDVI")
    ax.set_title("mean NDVI of the patch footprint, (B8 − B4) / (B8 + B4)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
