"""The patch figure: panels, legend colours, Sentinel-2 strip and NDVI, drawn from the toy data."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import rasterio

from flair2.classes import class_colours, class_names_for
from flair2.data.discovery import discover
from flair2.data.sentinel import cloud_filter, crop_centered, read_products
from flair2.errors import DataError
from flair2.prediction.writer import write_prediction
from flair2.rasters import read_mask
from flair2.viz.figures import DPI, WRONG_COLOUR, save_figure
from flair2.viz.patch import (
    build_patch_figure,
    find_patch,
    patch_id_of,
    render_patch_figure,
    sentinel_view,
)
from flair2.viz.sentinel import FILTERED_COLOUR, KEPT_COLOUR, shown_dates


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255.0


def _write_shifted_prediction(record, out_dir: Path, values: str = "model") -> np.ndarray:
    """A prediction equal to the mask except a wrong 16×16 corner; returns its model indices."""
    truth = read_mask(record.label)
    pred = truth.copy()
    pred[:16, :16] = 4 if truth[0, 0] != 4 else 5  # water (or coniferous) in the corner
    with rasterio.open(record.aerial) as src:
        crs, transform = src.crs, src.transform
    write_prediction(
        out_dir / f"PRED_{record.patch_id}.tif", pred, crs=crs, transform=transform, values=values
    )
    return pred


@pytest.fixture
def cfg(tiny_config):
    return tiny_config()


@pytest.fixture
def record(cfg):
    return discover(cfg, ("test",)).test[0]


def test_patch_id_forms():
    assert patch_id_of("IMG_077413") == "077413"
    assert patch_id_of("077413") == "077413"
    assert patch_id_of("some/dir/IMG_077413.tif") == "077413"
    with pytest.raises(DataError, match="not a patch id"):
        patch_id_of("MSK_x")


def test_find_patch_in_train_then_test(cfg, record):
    train_id = discover(cfg, ("fit",)).train[0].patch_id
    found, split = find_patch(cfg, f"IMG_{train_id}")
    assert split == "train" and found.patch_id == train_id and found.label is not None
    found, split = find_patch(cfg, record.patch_id)
    assert split == "test" and found.aerial == record.aerial


def test_unknown_patch_names_id_and_folders(cfg):
    with pytest.raises(DataError) as info:
        find_patch(cfg, "IMG_999999")
    message = str(info.value)
    assert "IMG_999999" in message
    assert cfg.data.path_aerial_train in message and cfg.data.path_aerial_test in message


def test_sentinel_view_matches_the_loader_rules(cfg, record):
    view = sentinel_view(cfg, record, patch_px=64)
    data = np.load(record.sentinel.data)
    masks = np.load(record.sentinel.masks)
    size = cfg.sat_patch_size
    crop = crop_centered(data, record.centroid, size).astype(np.float64)
    keep = cloud_filter(
        crop_centered(masks, record.centroid, size),
        cfg.cloud_proba_threshold,
        cfg.cloud_area_threshold,
    )
    assert view.dates == list(read_products(record.sentinel.products))
    np.testing.assert_array_equal(view.keep, keep)
    assert view.rgb.shape == (len(view.dates), size, size, 3)
    assert view.rgb.min() >= 0.0 and view.rgb.max() <= 1.0
    assert view.footprint == pytest.approx(64 * 0.2 / 10.0)
    # Footprint of 1.28 px centred on the pixel edge 4: rows and columns 3 and 4.
    nir, red = crop[:, 6, 3:5, 3:5], crop[:, 2, 3:5, 3:5]
    expected = ((nir - red) / (nir + red)).mean(axis=(1, 2))
    np.testing.assert_allclose(view.ndvi, expected, rtol=1e-9)
    kept_months = {(d.year, d.month) for d, k in zip(view.dates, keep) if k}
    assert len(view.month_dates) == len(kept_months) == view.month_ndvi.size


def test_figure_panels_legend_and_strip(cfg, record, tmp_path):
    pred = _write_shifted_prediction(record, tmp_path / "preds")
    fig = build_patch_figure(cfg, record, "test", tmp_path / "preds")
    top, middle, bottom = fig.subfigs
    titles = [ax.get_title() for ax in top.axes]
    for expected in ("true colour", "false colour", "elevation", "labels", "prediction", "errors"):
        assert any(t.startswith(expected) for t in titles), (expected, titles)
    # The prediction panel shows the model indices written.
    shown = next(ax for ax in top.axes if ax.get_title() == "prediction").get_images()[0]
    np.testing.assert_array_equal(np.asarray(shown.get_array()), pred)
    truth = read_mask(record.label)
    accuracy = (truth == pred).mean()
    assert f"accuracy {100 * accuracy:.1f}%" in " ".join(titles)

    legend = next(ax.get_legend() for ax in top.axes if ax.get_legend() is not None)
    names = [t.get_text() for t in legend.get_texts()]
    present = sorted(set(np.unique(truth)) | set(np.unique(pred)))
    class_names = class_names_for(cfg.num_classes)
    assert names == [class_names[i] for i in present] + ["correct", "wrong"]

    # One thumbnail per date, framed and titled by the cloud filter's decision.
    view = sentinel_view(cfg, record, 64)
    thumbs = [ax for ax in middle.axes if ax.get_images()]
    assert len(thumbs) == len(view.dates)
    for ax, kept, date in zip(thumbs, view.keep, view.dates):
        assert ax.get_title().startswith(f"{date:%Y-%m-%d}")
        assert ("✓ kept" in ax.get_title()) == bool(kept)
        colour = np.array(ax.spines["top"].get_edgecolor()[:3])
        np.testing.assert_allclose(colour, _rgb(KEPT_COLOUR if kept else FILTERED_COLOUR))
        assert len(ax.patches) == 1  # the footprint rectangle
    assert (~view.keep).any(), "the toy data has a cloudy date in every zone"

    (ndvi_ax,) = bottom.axes
    kept_pts, filtered_pts = ndvi_ax.collections[:2]
    assert len(kept_pts.get_offsets()) == view.keep.sum()
    assert len(filtered_pts.get_offsets()) == (~view.keep).sum()
    labels = [t.get_text() for t in ndvi_ax.get_legend().get_texts()]
    assert "monthly mean (kept dates)" in labels
    assert any(label.startswith("aerial flight") for label in labels)


def test_render_writes_png_of_figure_size(cfg, record, tmp_path):
    _write_shifted_prediction(record, tmp_path / "preds", values="labels")
    out = render_patch_figure(
        cfg, f"IMG_{record.patch_id}", tmp_path / "fig.png", tmp_path / "preds"
    )
    assert out == tmp_path / "fig.png"
    image = matplotlib.image.imread(out)
    width, height = build_patch_figure(
        cfg, record, prediction_dir=tmp_path / "preds"
    ).get_size_inches()
    assert image.shape[:2] == (round(height * DPI), round(width * DPI))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png", "preds"]  # no temporary file


def test_saved_png_holds_legend_colours(cfg, record, tmp_path):
    _write_shifted_prediction(record, tmp_path / "preds")
    fig = build_patch_figure(cfg, record, "test", tmp_path / "preds")
    # Lay the figure out at the saving resolution so legend boxes are in PNG pixels.
    fig.set_dpi(DPI)
    image = matplotlib.image.imread(save_figure(fig, tmp_path / "fig.png", tight=False))[..., :3]
    legend = next(ax.get_legend() for ax in fig.subfigs[0].axes if ax.get_legend() is not None)
    box = legend.get_window_extent()
    rows = slice(int(image.shape[0] - box.y1), int(image.shape[0] - box.y0))
    region = image[rows, int(box.x0) : int(box.x1)]
    assert region.size
    truth_class = int(np.unique(read_mask(record.label))[0])
    for colour in (class_colours(cfg.num_classes)[truth_class], WRONG_COLOUR):
        distance = np.abs(region - _rgb(colour)).max(axis=-1)
        assert (distance < 0.02).sum() >= 20, colour
    # A class absent from both maps has no swatch.
    absent = class_colours(cfg.num_classes)[8]  # vineyard: not in this toy patch
    assert 8 not in np.unique(read_mask(record.label))
    assert (np.abs(region - _rgb(absent)).max(axis=-1) < 0.02).sum() == 0


def test_missing_prediction_and_unlabelled_split(tiny_config, record, tmp_path):
    cfg = tiny_config()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=rf"PRED_{record.patch_id}\.tif under .*empty"):
        build_patch_figure(cfg, record, "test", tmp_path / "empty")
    unlabelled = tiny_config(data={**_data_dict(cfg), "path_labels_test": ""})
    found, _ = find_patch(unlabelled, record.patch_id)
    assert found.label is None
    fig = build_patch_figure(unlabelled, found, "test")
    titles = [ax.get_title() for ax in fig.subfigs[0].axes]
    assert "labels" not in titles and not any(re.match("errors", t) for t in titles)
    assert any(t.startswith("elevation") for t in titles)


def _data_dict(cfg) -> dict[str, str]:
    return dict(vars(cfg.data))


def test_long_series_are_subsampled_for_thumbnails(cfg, record):
    assert shown_dates(4, 10) == [0, 1, 2, 3]
    assert shown_dates(100, 5) == [0, 25, 50, 74, 99]
    fig = build_patch_figure(cfg, record, max_dates=3)
    middle = fig.subfigs[1]
    assert len([ax for ax in middle.axes if ax.get_images()]) == 3
    assert middle.get_suptitle().endswith("3 of 4 shown")
