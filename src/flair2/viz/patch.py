"""One figure showing everything about a patch: aerial bands, labels, prediction, Sentinel-2.

``flair2 show`` draws, for one patch of the configured dataset:

- the aerial image in true colour (R, G, B) and false colour (NIR, R, G), and its
  elevation band with a colour bar;
- the labels in the class palette (mapped to the model's classes) and, with a
  predictions folder, the prediction and an error map; a legend lists the classes
  present;
- the patch's Sentinel-2 crop at every date (true colour B4, B3, B2, one stretch
  for the whole series so dates compare), each marked kept or filtered by the
  cloud/snow filter with its cover, and the patch footprint drawn as a rectangle;
- the mean NDVI of the footprint over the year: raw dates (kept dots, filtered
  crosses) and the monthly means of the kept dates (what the model sees with
  ``average_month``).

This module sits above ``flair2.data`` and ``flair2.evaluation`` (it needs the
dataset layout and the Sentinel-2 processing, which the evaluation layer may not
import).
"""

from __future__ import annotations

import datetime
import logging
import math
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure, SubFigure

from flair2.classes import class_names_for
from flair2.config import Config
from flair2.data.discovery import discover_split, list_domains, load_json_index
from flair2.data.records import PatchRecord
from flair2.data.sentinel import (
    cloud_cover,
    cloud_filter,
    crop_centered,
    load_npy,
    monthly_average,
    read_products,
)
from flair2.errors import DataError
from flair2.formats import image_name, patch_id, prediction_name
from flair2.rasters import read_bands, read_mask, read_prediction
from flair2.viz.figures import (
    CORRECT_COLOUR,
    WRONG_COLOUR,
    class_legend,
    draw_class_map,
    draw_errors,
    find_named_files,
    percentile_limits,
    present_classes,
    save_figure,
    stretch,
)
from flair2.viz.sentinel import (
    S2_BLUE,
    S2_GREEN,
    S2_RED,
    THUMBS_PER_ROW,
    SentinelView,
    draw_ndvi,
    draw_thumbnails,
    mean_ndvi,
    shown_dates,
)

log = logging.getLogger(__name__)


def patch_id_of(patch: str) -> str:
    """The digits of a patch given as ``IMG_123456``, ``123456`` or ``IMG_123456.tif``.

    Raises:
        DataError: the text is not a patch id.
    """
    try:
        pid = patch_id(Path(str(patch).strip()).name)
    except ValueError:
        pid = ""
    if not pid.isdigit():
        raise DataError(f"{patch!r} is not a patch id: expected e.g. IMG_077413 or 077413")
    return pid


def find_patch(cfg: Config, patch: str) -> tuple[PatchRecord, str]:
    """Find a patch in the configured train, then test split.

    Returns:
        (its record, "train" or "test").

    Raises:
        DataError: the id is in neither aerial folder (the message names both), or
            its files are incomplete (the message names the problem).
    """
    pid = patch_id_of(patch)
    d = cfg.data
    splits = (
        ("train", d.path_aerial_train, d.path_sen_train, d.path_labels_train),
        ("test", d.path_aerial_test, d.path_sen_test, d.path_labels_test),
    )
    looked: list[str] = []
    name = image_name(pid)
    for split, aerial, sen, labels in splits:
        if not aerial or not Path(aerial).is_dir():
            continue
        looked.append(str(aerial))
        root = Path(aerial)
        for domain in list_domains(root):
            for zone in sorted(p for p in (root / domain).iterdir() if p.is_dir()):
                if not (zone / "img" / name).is_file():
                    continue
                problems: list[str] = []
                centroids = load_json_index(d.path_sp_centroids, "data.path_sp_centroids")
                records = discover_split(
                    root,
                    sen,
                    labels or None,
                    centroids,
                    None,
                    [domain],
                    require_labels=False,
                    on_problem=problems.append,
                )
                for record in records:
                    if record.patch_id == pid:
                        return record, split
                mine = [p for p in problems if pid in p or zone.name in p] or problems
                raise DataError(
                    f"patch IMG_{pid} found in {zone / 'img'} but cannot be shown: "
                    + ("; ".join(mine[:3]) or "its files are incomplete")
                )
    where = " or ".join(looked) if looked else "(no aerial folder configured: data.path_aerial_*)"
    raise DataError(f"patch IMG_{pid} not found in {where}")


def sentinel_view(cfg: Config, record: PatchRecord, patch_px: int) -> SentinelView:
    """Crop, filter and summarise a patch's Sentinel-2 series as the loader does.

    Args:
        cfg: uses ``sat_patch_size``, the cloud filter keys, ``ref_*``,
            ``aerial_resolution`` and ``sat_resolution``.
        record: the patch.
        patch_px: the aerial patch side in pixels.

    Raises:
        DataError: the Sentinel-2 files are unreadable or inconsistent.
    """
    files = record.sentinel
    data, masks = load_npy(files.data), load_npy(files.masks)
    dates = list(read_products(files.products))
    if data.ndim != 4 or masks.shape != (data.shape[0], 2, *data.shape[2:]):
        raise DataError(
            f"{files.masks}: shape {tuple(masks.shape)} does not fit {files.data} "
            f"{tuple(data.shape)}; re-extract the zone's Sentinel-2 files"
        )
    if len(dates) != data.shape[0] or not dates:
        raise DataError(
            f"{files.products}: {len(dates)} products listed for {data.shape[0]} dates in "
            f"{files.data}; re-extract the zone's Sentinel-2 files"
        )
    size = cfg.sat_patch_size
    crop = crop_centered(data, record.centroid, size)
    mask_crop = crop_centered(masks, record.centroid, size)
    cover = cloud_cover(mask_crop, cfg.cloud_proba_threshold)
    if cfg.filter_clouds:
        keep = cloud_filter(mask_crop, cfg.cloud_proba_threshold, cfg.cloud_area_threshold)
    else:
        keep = np.ones(len(dates), dtype=bool)

    rgb = np.moveaxis(crop[:, [S2_RED, S2_GREEN, S2_BLUE]], 1, -1)
    # Clouds would dominate the percentiles: the stretch is set on the clear pixels of
    # the kept dates (falling back to all pixels of a series that has none).
    clear = (mask_crop < cfg.cloud_proba_threshold).all(axis=1) & keep[:, None, None]
    limits = percentile_limits(rgb[clear] if clear.any() else rgb)
    footprint = patch_px * cfg.aerial_resolution / cfg.sat_resolution
    # The crop's centre is the centroid, on the pixel edge size // 2.
    centre, half = size // 2, footprint / 2
    lo = max(math.floor(centre - half), 0)
    hi = min(max(math.ceil(centre + half), lo + 1), size)
    rows = cols = slice(lo, hi)

    ref_month, ref_day = cfg.ref_month_day()
    means, _ = monthly_average(crop, dates, cfg.ref_year, ref_month, ref_day, keep=keep)
    months = sorted({(d.year, d.month) for d, k in zip(dates, keep) if k})
    return SentinelView(
        dates=dates,
        rgb=stretch(rgb, limits=limits),
        cover=cover,
        keep=keep,
        ndvi=mean_ndvi(crop, rows, cols),
        month_dates=[datetime.date(y, m, 15) for y, m in months],
        month_ndvi=mean_ndvi(means, rows, cols),
        footprint=footprint,
    )


def _flight_date(cfg: Config, record: PatchRecord) -> datetime.date | None:
    """The aerial acquisition date from the metadata JSON, None when unavailable."""
    if not cfg.data.path_metadata_aerial:
        return None
    try:
        meta = load_json_index(cfg.data.path_metadata_aerial, "data.path_metadata_aerial")
        return datetime.date.fromisoformat(str(meta[record.name]["date"])[:10])
    except (DataError, KeyError, TypeError, ValueError) as exc:
        log.debug("no flight date for %s: %s", record.name, exc)
        return None


def _find_prediction(prediction_dir: str | os.PathLike[str], pid: str) -> Path:
    root = Path(prediction_dir)
    direct = root / prediction_name(pid)
    if direct.is_file():
        return direct
    if not root.is_dir():
        raise DataError(f"predictions folder not found: {root}")
    found = find_named_files(root, {direct.name})
    if direct.name not in found:
        raise DataError(f"no {direct.name} under {root}: predict this patch first")
    return found[direct.name]


def _draw_aerial(
    sub: SubFigure, cfg: Config, record: PatchRecord, image: np.ndarray, pred: Path | None
) -> None:
    """The top row: aerial panels, class maps and their legend."""
    k = cfg.num_classes
    names = class_names_for(k)
    bands = image.shape[-1]
    truth = read_mask(record.label, k) if record.label is not None else None
    prediction = read_prediction(pred) if pred is not None else None
    if prediction is not None and prediction.shape != image.shape[:2]:
        raise DataError(
            f"{pred}: prediction is {prediction.shape[0]}×{prediction.shape[1]} but the aerial "
            f"patch {record.aerial} is {image.shape[0]}×{image.shape[1]}"
        )
    panels = ["rgb"] + ["false"] * (bands >= 4) + ["elevation"] * (bands >= 5)
    panels += ["labels"] * (truth is not None) + ["prediction"] * (prediction is not None)
    panels += ["errors"] * (truth is not None and prediction is not None)
    axes = sub.subplots(1, len(panels) + 1, width_ratios=[1.0] * len(panels) + [0.75])
    for ax, panel in zip(axes, panels):
        ax.set_axis_off()
        if panel == "rgb":
            ax.imshow(stretch(image[..., :3]), interpolation="nearest")
            ax.set_title("true colour (R, G, B)")
        elif panel == "false":
            ax.imshow(stretch(image[..., [3, 0, 1]]), interpolation="nearest")
            ax.set_title("false colour (NIR, R, G)")
        elif panel == "elevation":
            shown = ax.imshow(image[..., 4], cmap="terrain", interpolation="nearest")
            sub.colorbar(shown, ax=ax, shrink=0.75, label="elevation band value")
            ax.set_title("elevation")
        elif panel == "labels" and truth is not None:
            draw_class_map(ax, truth, k, "labels")
        elif panel == "prediction" and prediction is not None:
            draw_class_map(ax, prediction, k, "prediction")
        elif truth is not None and prediction is not None:
            draw_errors(ax, truth, prediction)
    legend_ax = axes[-1]
    legend_ax.set_axis_off()
    maps = [m for m in (truth, prediction) if m is not None]
    if maps:
        extra = [("correct", CORRECT_COLOUR), ("wrong", WRONG_COLOUR)] if len(maps) == 2 else []
        class_legend(
            legend_ax,
            present_classes(*maps, num_classes=k),
            names,
            extra=extra,
            loc="center left",
            fontsize=8,
        )


def build_patch_figure(
    cfg: Config,
    record: PatchRecord,
    split: str = "",
    prediction_dir: str | os.PathLike[str] | None = None,
    max_dates: int = 24,
) -> Figure:
    """The patch figure (see the module docstring).

    Args:
        cfg: the configuration.
        record: the patch (see :func:`find_patch`).
        split: shown in the title.
        prediction_dir: folder holding ``PRED_<id>.tif`` (searched recursively), or None.
        max_dates: most Sentinel-2 thumbnails drawn (evenly spread); the NDVI uses all.

    Returns:
        A figure of three sub-figures: aerial row, Sentinel-2 strip, NDVI curve.
    """
    pred = _find_prediction(prediction_dir, record.patch_id) if prediction_dir else None
    image = read_bands(record.aerial)  # (H, W, bands)
    view = sentinel_view(cfg, record, image.shape[1])
    shown = shown_dates(len(view.dates), max(1, max_dates))
    rows = math.ceil(len(shown) / THUMBS_PER_ROW)
    heights = [3.4, 1.75 * rows, 3.2]
    fig = Figure(figsize=(17.0, sum(heights) + 0.4), layout="constrained")
    top, middle, bottom = fig.subfigures(3, 1, height_ratios=heights, squeeze=False)[:, 0]
    _draw_aerial(top, cfg, record, image, pred)
    draw_thumbnails(middle, view, shown, cfg.sat_patch_size)
    flight = _flight_date(cfg, record)
    draw_ndvi(bottom, view, flight)
    filtered = int((~view.keep).sum())
    filter_note = (
        f"{filtered} of {len(view.dates)} dates filtered"
        if cfg.filter_clouds
        else "cloud filter off"
    )
    fig.suptitle(
        f"{record.name} — {record.domain} / {record.zone}"
        + (f" ({split} split)" if split else "")
        + f" — {filter_note}",
        fontsize=13,
        fontweight="bold",
    )
    return fig


def render_patch_figure(
    cfg: Config,
    patch: str,
    out: str | os.PathLike[str],
    prediction_dir: str | os.PathLike[str] | None = None,
    max_dates: int = 24,
) -> Path:
    """Find a patch and write its figure (PNG, or another format by suffix) atomically.

    Args:
        cfg: the configuration (data paths, Sentinel-2 and class settings).
        patch: ``IMG_123456`` or ``123456``; searched in the train, then the test split.
        out: the image to write.
        prediction_dir: folder of ``PRED_<id>.tif`` files to compare, or None.
        max_dates: most Sentinel-2 thumbnails drawn (evenly spread over the series).

    Returns:
        The path written.

    Raises:
        DataError: the patch is not found, or one of its files is unreadable.
    """
    record, split = find_patch(cfg, patch)
    fig = build_patch_figure(cfg, record, split, prediction_dir, max_dates)
    # No tight crop: constrained layout already fits the panels to the canvas.
    written = save_figure(fig, out, tight=False)
    log.info("patch figure: %s", written)
    return written
