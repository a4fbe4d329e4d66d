"""The toy area generator: grids, CRSs, bands, coverage, both series forms, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform_bounds

from flair2.config import config_from_dict
from flair2.detection.sentinel import AreaSentinel, date_in_name
from flair2.settings import SentinelSettings
from flair2.synthetic.area import ToyArea, generate_toy_area

SAT = 16  # sat_patch_size of these tests


@pytest.fixture(scope="module")
def area(tmp_path_factory: pytest.TempPathFactory) -> ToyArea:
    folder = tmp_path_factory.mktemp("toy_area") / "a"
    return generate_toy_area(folder, 600, 450, dates=4, seed=5, sat_patch_size=SAT, series="both")


def read(path: Path) -> np.ndarray:
    with rasterio.open(path) as ds:
        return ds.read()


def test_aerial_is_a_tiled_lambert93_raster_away_from_the_origin(area: ToyArea) -> None:
    with rasterio.open(area.aerial) as ds:
        assert (ds.count, ds.width, ds.height) == (5, 600, 450)
        assert ds.dtypes == ("uint8",) * 5 and ds.crs.to_epsg() == 2154
        assert ds.res == (0.2, 0.2)
        assert (ds.transform.c, ds.transform.f) == (651_234.6, 6_862_345.8)
        assert ds.block_shapes[0] == (256, 256) and ds.nodata is None
        assert tuple(ds.bounds) == pytest.approx(area.bounds)
        image = ds.read()
    assert image.std(axis=(1, 2)).min() > 1.0  # textured bands, not constants
    with rasterio.open(area.labels) as ds:
        labels = ds.read(1)
        assert ds.transform == area.transform and ds.crs.to_epsg() == 2154
    assert labels.shape == (450, 600) and labels.min() >= 1 and labels.max() <= 19
    assert len(np.unique(labels)) >= 3


def test_sentinel_files_are_utm_10m_dated_and_cover_the_area_with_a_margin(area: ToyArea) -> None:
    assert area.sentinel is not None and area.masks is not None and area.products is not None
    names = area.products.read_text(encoding="utf-8").split()
    assert [date_in_name(n) for n in names] == area.dates == sorted(area.dates)
    assert sorted(p.name for p in area.sentinel.glob("*.tif")) == sorted(names)
    for name in names:
        with rasterio.open(area.sentinel / name) as ds:
            assert (ds.count, ds.dtypes[0], ds.crs.to_string()) == (10, "uint16", "EPSG:32631")
            assert ds.transform == area.sentinel_transform and ds.res == (10.0, 10.0)
            assert (ds.height, ds.width) == area.sentinel_shape
            assert ds.transform.c % 10 == 0 and ds.transform.f % 10 == 0
            series_bounds = ds.bounds
        masks = read(area.masks / name)
        assert masks.shape == (2, *area.sentinel_shape) and masks.dtype == np.uint8
        assert masks.max() <= 100
    left, bottom, right, top = transform_bounds("EPSG:2154", "EPSG:32631", *area.bounds)
    margin = SAT * 10.0
    assert series_bounds.left <= left - margin and series_bounds.right >= right + margin
    assert series_bounds.bottom <= bottom - margin and series_bounds.top >= top + margin


def test_clouds_are_in_the_masks_and_the_series_is_read_by_area_sentinel(area: ToyArea) -> None:
    assert area.masks is not None
    clouds = np.stack(
        [read(area.masks / f"{n}") for n in sorted(p.name for p in area.masks.iterdir())]
    )
    assert (clouds[:, 0] >= 90).mean(axis=(1, 2)).max() > 0.99  # one date cloudy everywhere
    cfg = SentinelSettings.from_config(config_from_dict({"sat_patch_size": SAT}))
    folder = AreaSentinel.open(area.sentinel, cfg, products=area.products)
    assert folder.dates == tuple(area.dates) and folder.filter_clouds
    assert folder.covers(area.bounds, area.crs)
    series, positions = folder.window(area.bounds, area.crs)
    assert series.shape[1:] == (10, SAT, SAT) and len(positions) == series.shape[0]


def test_npy_form_holds_the_same_series_as_the_files(area: ToyArea) -> None:
    assert area.sentinel_npy is not None and area.sidecar is not None and area.masks is not None
    data = np.load(area.sentinel_npy)
    masks = np.load(area.sentinel_masks_npy)
    names = area.products.read_text(encoding="utf-8").split()
    np.testing.assert_array_equal(data, np.stack([read(area.sentinel / n) for n in names]))
    np.testing.assert_array_equal(masks, np.stack([read(area.masks / n) for n in names]))
    sidecar = json.loads(area.sidecar.read_text(encoding="utf-8"))
    assert sidecar["crs"] == "EPSG:32631" and sidecar["masks"] == "sentinel_masks.npy"
    assert sidecar["transform"] == list(area.sentinel_transform)[:6]
    assert sidecar["dates"] == [d.isoformat() for d in area.dates]


def test_metadata_describes_a_flight_of_the_year(area: ToyArea) -> None:
    meta = area.metadata
    assert meta["date"].startswith("2021-") and meta["camera"].startswith("UCE")
    assert 20 <= meta["altitude"] <= 900 and "h" in meta["time"]


def test_same_seed_same_pixels_other_seed_other_pixels(tmp_path: Path) -> None:
    kwargs = {"dates": 2, "sat_patch_size": 8, "labels": False}
    a = generate_toy_area(tmp_path / "a", 300, 40, seed=1, **kwargs)
    b = generate_toy_area(tmp_path / "b", 300, 40, seed=1, **kwargs)
    c = generate_toy_area(tmp_path / "c", 300, 40, seed=2, **kwargs)
    assert a.labels is None and not (tmp_path / "a" / "labels.tif").exists()
    assert a.dates == b.dates
    np.testing.assert_array_equal(read(a.aerial), read(b.aerial))
    for name in a.products.read_text(encoding="utf-8").split():
        np.testing.assert_array_equal(read(a.sentinel / name), read(b.sentinel / name))
    assert not np.array_equal(read(a.aerial), read(c.aerial))


def test_options_nodata_corner_clear_sky_npy_only(tmp_path: Path) -> None:
    area = generate_toy_area(
        tmp_path / "x", 80, 60, dates=3, sat_patch_size=8, nodata_corner=True, clouds=False,
        series="npy", left=700_000.0, top=6_600_000.0, sentinel_crs="EPSG:32632",
    )  # fmt: skip
    assert area.sentinel is None and area.products is None and area.sentinel_npy is not None
    with rasterio.open(area.aerial) as ds:
        image, nodata = ds.read(), ds.nodata
    assert nodata == 0 and (image[:, 0, 0] == 0).all() and (image[:, -1, -1] > 0).any()
    assert (read(area.labels)[0, 0, 0], read(area.labels)[0, -1, -1] > 0) == (0, True)
    assert not np.load(area.sentinel_masks_npy).any()
    series = AreaSentinel.open(
        area.sentinel_npy, SentinelSettings.from_config(config_from_dict({"sat_patch_size": 8}))
    )
    assert series.crs.to_epsg() == 32632 and series.covers(area.bounds, area.crs)


def test_bad_arguments_and_existing_area(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sat_patch_size"):
        generate_toy_area(tmp_path / "a", sat_patch_size=12)
    with pytest.raises(ValueError, match="series"):
        generate_toy_area(tmp_path / "a", series="zarr")  # type: ignore[arg-type]
    generate_toy_area(tmp_path / "b", 40, 40, dates=1, sat_patch_size=8)
    with pytest.raises(FileExistsError, match="aerial.tif"):
        generate_toy_area(tmp_path / "b", 40, 40, dates=1, sat_patch_size=8)
    generate_toy_area(tmp_path / "b", 40, 40, dates=1, sat_patch_size=8, overwrite=True)
