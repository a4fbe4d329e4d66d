"""AreaSentinel: window crops, training-equal processing, both layouts, and broken inputs."""

from __future__ import annotations

import datetime
import json
import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine
from rasterio.warp import transform as warp_transform

from flair2.config import config_from_dict
from flair2.data.records import SentinelFiles
from flair2.data.sentinel import SentinelProcessor, day_positions
from flair2.detection.sentinel import AreaSentinel, date_in_name
from flair2.errors import DataError
from flair2.settings import SentinelSettings

D = datetime.date
UTM = "EPSG:32631"
L93 = "EPSG:2154"
X0, Y0 = 451_000.0, 5_412_000.0  # series top-left corner (UTM 31N), near Paris
GRID = Affine(10.0, 0.0, X0, 0.0, -10.0, Y0)
H, W = 30, 32
DATES = [D(2021, 3, 2), D(2021, 3, 20), D(2021, 6, 11), D(2021, 9, 5), D(2021, 9, 25)]


def make_cfg(**overrides: Any) -> SentinelSettings:
    settings: dict[str, Any] = {"sat_patch_size": 8}
    settings.update(overrides)
    return SentinelSettings.from_config(config_from_dict(settings))


def encoded(t: int, h: int = H, w: int = W) -> np.ndarray:
    """(T, 10, H, W) uint16 whose value tells date, band, row and column."""
    ti, b, r, c = np.ogrid[:t, :10, :h, :w]
    return (1 + c + 32 * r + 1024 * b + 10240 * ti).astype(np.uint16)


def cloudy_masks(t: int, seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    """(T, 2, H, W) uint8 probabilities: some dates partly cloudy, one snowy corner."""
    rng = np.random.default_rng(seed)
    masks = rng.integers(0, 40, (t, 2, h, w)).astype(np.uint8)
    masks[1, 0, :, : w // 2] = 95  # left half cloudy on date 1
    masks[3, 0, h // 3 :, :] = 80  # lower part cloudy on date 3
    masks[4, 1, : h // 2, w // 2 :] = 70  # snow top-right on date 4
    return masks


def write_tif(path: Path, array: np.ndarray, crs: str = UTM, transform: Affine = GRID) -> Path:
    profile = {
        "driver": "GTiff",
        "width": array.shape[2],
        "height": array.shape[1],
        "count": array.shape[0],
        "dtype": array.dtype.name,
        "crs": crs,
        "transform": transform,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)
    return path


def name_of(date: D) -> str:
    return f"S2A_MSIL2A_{date:%Y%m%d}T105021_N0300_R051_T31UDP_{date:%Y%m%d}T135122"


def write_folder(
    folder: Path, data: np.ndarray, masks: np.ndarray | None, dates: list[D] = DATES
) -> Path:
    for i, date in enumerate(dates):
        write_tif(folder / f"{name_of(date)}.tif", data[i])
        if masks is not None:
            write_tif(folder / "masks" / f"{name_of(date)}.tif", masks[i])
    return folder


def write_training_zone(folder: Path, data: np.ndarray, masks: np.ndarray) -> SentinelFiles:
    """The same pixels in training's layout: _data.npy, _masks.npy, _products.txt."""
    folder.mkdir(parents=True, exist_ok=True)
    files = SentinelFiles(
        folder / "SEN2_sp_D001_2021-Z1_AA_data.npy",
        folder / "SEN2_sp_D001_2021-Z1_AA_masks.npy",
        folder / "SEN2_sp_D001_2021-Z1_AA_products.txt",
    )
    np.save(files.data, data)
    np.save(files.masks, masks)
    files.products.write_text("\n".join(name_of(d) for d in DATES) + "\n", encoding="utf-8")
    return files


def window_at(row: float, col: float, crs: str = UTM, half: float = 51.2) -> tuple:
    """Bounds of a 102.4 m window (in ``crs``) centred on series pixel position (row, col)."""
    x, y = GRID @ (col, row)
    if crs != UTM:
        (x,), (y,) = warp_transform(UTM, crs, [x], [y])
    return (x - half, y - half, x + half, y + half)


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("area_sentinel")
    data, masks = encoded(len(DATES)), cloudy_masks(len(DATES))
    return {
        "root": root,
        "data": data,
        "masks": masks,
        "folder": write_folder(root / "folder", data, masks),
        "zone": write_training_zone(root / "zone", data, masks),
    }


# ---------------------------------------------------------------------------
# Crops


def test_window_crop_is_the_hand_computed_crop_across_a_crs_change(
    series: dict[str, Any],
) -> None:
    cfg = make_cfg(filter_clouds=False, average_month=False)
    with AreaSentinel.open(series["folder"], cfg) as area:
        # The centre lies 0.3 px right of and 0.4 px above the corner (12, 17), given
        # in Lambert-93: nearest corner (12, 17), crop rows 8-15, cols 13-20.
        bounds = window_at(12 - 0.04, 17 + 0.03, crs=L93)
        assert area.centroids([bounds], L93).tolist() == [[12, 17]]
        got, positions = area.window(bounds, L93)
    assert got.shape == (5, 10, 8, 8) and got.dtype == np.float32
    t, b, r, c = np.ogrid[:5, :10, 8:16, 13:21]
    expected = 1 + c + 32 * r + 1024 * b + 10240 * t
    np.testing.assert_array_equal(np.rint(got.astype(np.float64) * 65535), expected)
    np.testing.assert_array_equal(positions, day_positions(DATES, 2021, 5, 15))


def test_window_at_the_border_repeats_edge_pixels_as_training(series: dict[str, Any]) -> None:
    cfg = make_cfg(filter_clouds=False, average_month=False, sen2_scaling="reflectance")
    area = AreaSentinel.open(series["folder"], cfg)
    got, _ = area.window(window_at(2, 30), UTM)  # rows -2..5, cols 26..33 of 30×32
    rows = np.clip(np.arange(-2, 6), 0, H - 1)
    cols = np.clip(np.arange(26, 34), 0, W - 1)
    expected = series["data"][:, :, rows][:, :, :, cols] / np.float32(10000)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_window_outside_the_series_names_the_source(series: dict[str, Any]) -> None:
    area = AreaSentinel.open(series["folder"], make_cfg())
    assert not area.covers(window_at(-3, 10), UTM)
    with pytest.raises(DataError, match=r"folder.*lies outside the Sentinel-2 series"):
        area.window(window_at(-3, 10), UTM)


def test_windows_without_crs_are_refused(series: dict[str, Any]) -> None:
    area = AreaSentinel.open(series["folder"], make_cfg())
    with pytest.raises(DataError, match=r"folder: the windows have no CRS"):
        area.strip([window_at(12, 17)], None)


def test_covers_needs_the_whole_rectangle_inside(series: dict[str, Any]) -> None:
    area = AreaSentinel.open(series["folder"], make_cfg())
    assert area.covers(window_at(15, 16, crs=L93), L93)
    assert area.covers(window_at(5.2, 5.2, half=50.0), UTM)
    assert not area.covers(window_at(5, 5, half=51.0), UTM)  # 0.1 px beyond the top-left
    assert area.bounds == (X0, Y0 - 10 * H, X0 + 10 * W, Y0)


# ---------------------------------------------------------------------------
# Processing equal to training


CENTROIDS = [(12, 17), (3, 3), (27, 30), (15, 0), (0, 16)]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"average_month": False},
        {"filter_clouds": False, "sen2_scaling": "reflectance"},
        {"sen2_scaling": "standardize", "sat_mean": [900.0] * 10, "sat_std": [300.0] * 10},
        {"cloud_area_threshold": 0.2, "cloud_proba_threshold": 50, "ref_date": "08-01"},
        {"average_period": "half_month"},
    ],
)
@pytest.mark.parametrize("cache_mb", [256.0, 0.0])
def test_every_window_equals_sentinel_processor_on_the_same_pixels(
    series: dict[str, Any], overrides: dict[str, Any], cache_mb: float
) -> None:
    cfg = make_cfg(**overrides)
    processor = SentinelProcessor(cfg)
    area = AreaSentinel.open(series["folder"], cfg, cache_mb=cache_mb)
    lengths = set()
    for centroid in CENTROIDS:
        expected, expected_pos = processor(series["zone"], centroid)
        got, pos = area.window(window_at(*centroid, crs=L93), L93)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(pos, expected_pos)
        lengths.add(len(pos))
    if cfg.filter_clouds:  # the windows keep different dates: the filter ran per window
        assert len(lengths) > 1


def test_strip_equals_window_by_window(series: dict[str, Any]) -> None:
    cfg = make_cfg(cloud_area_threshold=0.3)
    area = AreaSentinel.open(series["folder"], cfg)
    windows = [window_at(r, c, crs=L93) for r, c in CENTROIDS]
    together = area.strip(windows, L93)
    assert len(together) == len(windows) and area.strip([], L93) == []
    for bounds, (got, pos) in zip(windows, together):
        alone, alone_pos = area.window(bounds, L93)
        np.testing.assert_array_equal(got, alone)
        np.testing.assert_array_equal(pos, alone_pos)


def test_crops_across_tiles_equal_direct_reads_whatever_the_cache(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    data = rng.integers(1, 10000, (2, 10, 150, 140)).astype(np.uint16)
    np.save(tmp_path / "big.npy", data)
    sidecar = {"crs": UTM, "transform": list(GRID)[:6], "dates": ["2021-04-01", "2021-07-01"]}
    (tmp_path / "big.json").write_text(json.dumps(sidecar), encoding="utf-8")
    cfg = make_cfg(sat_patch_size=16, average_month=False, sen2_scaling="reflectance")
    cached = AreaSentinel.open(tmp_path / "big.npy", cfg)
    tiny = AreaSentinel.open(tmp_path / "big.npy", cfg, cache_mb=0.2)  # a full tile: 0.16 MB
    direct = AreaSentinel.open(tmp_path / "big.npy", cfg, cache_mb=0)
    centroids = [(64, 64), (60, 130), (128, 10), (150, 140), (3, 70)]
    windows = [window_at(r, c) for r, c in centroids]
    for (r, c), got, small, raw in zip(
        centroids, cached.strip(windows, UTM), tiny.strip(windows, UTM), direct.strip(windows, UTM)
    ):
        rows = np.clip(np.arange(r - 8, r + 8), 0, 149)
        cols = np.clip(np.arange(c - 8, c + 8), 0, 139)
        expected = data[:, :, rows][:, :, :, cols] * np.float32(1e-4)
        for result in (got, small, raw):
            np.testing.assert_array_equal(result[0], expected)
    assert len(cached.reader._tiles) == 9  # the union of the crops spans all 3 × 3 tiles
    assert (
        len(tiny.reader._tiles) < 9 and tiny.reader._cached <= 0.2 * 2**20
    )  # evicted to the budget


def test_npy_with_sidecar_equals_the_folder(series: dict[str, Any], tmp_path: Path) -> None:
    cfg = make_cfg(cloud_area_threshold=0.3)
    np.save(tmp_path / "area.npy", series["data"])
    np.save(tmp_path / "clouds.npy", series["masks"])
    sidecar = {
        "crs": UTM,
        "transform": list(GRID)[:6],
        "dates": [d.isoformat() for d in DATES],
        "masks": "clouds.npy",
    }
    (tmp_path / "area.json").write_text(json.dumps(sidecar), encoding="utf-8")
    folder = AreaSentinel.open(series["folder"], cfg)
    array = AreaSentinel.open(tmp_path / "area.npy", cfg)
    assert array.dates == folder.dates == tuple(DATES)
    windows = [window_at(r, c, crs=L93) for r, c in CENTROIDS]
    for (a, pa), (b, pb) in zip(array.strip(windows, L93), folder.strip(windows, L93)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(pa, pb)


def test_training_zone_files_need_only_crs_and_transform(series: dict[str, Any]) -> None:
    zone: SentinelFiles = series["zone"]
    sidecar = zone.data.with_suffix(".json")
    sidecar.write_text(json.dumps({"crs": UTM, "transform": list(GRID)[:6]}), encoding="utf-8")
    cfg = make_cfg()
    area = AreaSentinel.open(zone.data, cfg)  # masks and products found by name
    assert area.filter_clouds and area.dates == tuple(DATES)
    expected, expected_pos = SentinelProcessor(cfg)(zone, (3, 3))
    got, pos = area.window(window_at(3, 3), UTM)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(pos, expected_pos)


def test_pickled_copy_reopens_and_gives_the_same_values(series: dict[str, Any]) -> None:
    area = AreaSentinel.open(series["folder"], make_cfg())
    bounds = window_at(12, 17, crs=L93)
    before = area.window(bounds, L93)
    copy = pickle.loads(pickle.dumps(area))
    area.close()
    after = copy.window(bounds, L93)
    again = area.window(bounds, L93)  # closed files reopen on use
    for got in (after, again):
        np.testing.assert_array_equal(got[0], before[0])
        np.testing.assert_array_equal(got[1], before[1])


def test_without_masks_every_date_is_kept_with_a_warning(
    series: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = write_folder(tmp_path / "s2", series["data"], None)
    with caplog.at_level(logging.WARNING):
        area = AreaSentinel.open(folder, make_cfg(average_month=False))
    assert "no cloud/snow masks" in caplog.text
    assert not area.filter_clouds
    assert len(area.window(window_at(12, 17), UTM)[1]) == len(DATES)


def test_products_list_selects_orders_and_dates_the_files(
    series: dict[str, Any], tmp_path: Path
) -> None:
    folder = tmp_path / "s2"
    for i in (0, 2, 4):
        write_tif(folder / f"date{i}.tif", series["data"][i])
    products = tmp_path / "products.txt"
    products.write_text(
        f"# dates of files without one in the name\ndate4.tif {DATES[4]}\n\n"
        f"date0 {DATES[0]:%Y%m%d}\ndate2.tif\t{DATES[2]}\n",
        encoding="utf-8",
    )
    cfg = make_cfg(average_month=False)
    area = AreaSentinel.open(folder, cfg, products=products)
    assert area.dates == (DATES[4], DATES[0], DATES[2])
    got, pos = area.window(window_at(12, 17), UTM)
    np.testing.assert_array_equal(pos, day_positions(area.dates, 2021, 5, 15))
    assert np.rint(got[:, 0, 0, 0] * 65535).tolist() == [
        1 + 13 + 32 * 8 + 10240 * t for t in (4, 0, 2)
    ]


def test_dates_in_file_names() -> None:
    assert date_in_name(name_of(D(2021, 4, 15)) + ".tif") == D(2021, 4, 15)
    assert date_in_name("T31UDP_2020-12-31_B.tif") == D(2020, 12, 31)
    assert date_in_name("x_20211399_20210102.tif") == D(2021, 1, 2)  # invalid first match
    assert date_in_name("tile_123456789.tif") is None
    assert date_in_name("2021-0415.tif") is None


# ---------------------------------------------------------------------------
# Broken inputs: one DataError naming the file


def broken(tmp_path: Path, series: dict[str, Any]) -> Path:
    return write_folder(tmp_path / "s2", series["data"], series["masks"])


def test_truncated_tiff_is_named(series: dict[str, Any], tmp_path: Path) -> None:
    folder = broken(tmp_path, series)
    victim = folder / f"{name_of(DATES[2])}.tif"
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    with pytest.raises(DataError, match=rf"{victim.name}.*corrupt or truncated"):
        AreaSentinel.open(folder, make_cfg())


def test_file_in_another_crs_is_mis_georeferenced(series: dict[str, Any], tmp_path: Path) -> None:
    folder = broken(tmp_path, series)
    victim = write_tif(folder / f"{name_of(DATES[3])}.tif", series["data"][3], crs="EPSG:32632")
    with pytest.raises(DataError, match=rf"{victim.name} is mis-georeferenced: CRS"):
        AreaSentinel.open(folder, make_cfg())


def test_shifted_transform_is_mis_georeferenced(series: dict[str, Any], tmp_path: Path) -> None:
    folder = broken(tmp_path, series)
    shifted = GRID @ Affine.translation(1, 0)  # one pixel east
    victim = write_tif(folder / f"{name_of(DATES[0])}.tif", series["data"][0], transform=shifted)
    with pytest.raises(DataError, match=rf"{victim.name} is mis-georeferenced: transform"):
        AreaSentinel.open(folder, make_cfg())


def test_mask_on_another_grid_is_named(series: dict[str, Any], tmp_path: Path) -> None:
    folder = broken(tmp_path, series)
    victim = write_tif(folder / "masks" / f"{name_of(DATES[1])}.tif", series["masks"][1, :, :20])
    with pytest.raises(DataError, match=rf"masks/{victim.name} is mis-georeferenced: size"):
        AreaSentinel.open(folder, make_cfg())


def test_wrong_band_count_is_named(series: dict[str, Any], tmp_path: Path) -> None:
    folder = broken(tmp_path, series)
    victim = write_tif(folder / f"{name_of(DATES[4])}.tif", series["data"][4, :9])
    with pytest.raises(DataError, match=rf"{victim.name}: 9 bands, expected 10"):
        AreaSentinel.open(folder, make_cfg())


def test_unparseable_date_is_named(series: dict[str, Any], tmp_path: Path) -> None:
    folder = broken(tmp_path, series)
    write_tif(folder / "S2A_MSIL2A_2021XX15.tif", series["data"][0])
    with pytest.raises(DataError, match=r"S2A_MSIL2A_2021XX15.tif: no acquisition date"):
        AreaSentinel.open(folder, make_cfg())


def test_products_line_without_date_names_file_and_line(
    series: dict[str, Any], tmp_path: Path
) -> None:
    folder = broken(tmp_path, series)
    products = tmp_path / "list.txt"
    products.write_text(f"{name_of(DATES[0])}\nlatest.tif\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"list.txt, line 2: 'latest.tif' holds no acquisition"):
        AreaSentinel.open(folder, make_cfg(), products=products)


def test_two_files_of_one_date_are_named(series: dict[str, Any], tmp_path: Path) -> None:
    folder = broken(tmp_path, series)
    write_tif(folder / f"copy_{DATES[1]}.tif", series["data"][1])
    with pytest.raises(DataError, match=r"same acquisition date 2021-03-20"):
        AreaSentinel.open(folder, make_cfg())


def test_missing_mask_of_a_date_is_named(series: dict[str, Any], tmp_path: Path) -> None:
    folder = broken(tmp_path, series)
    (folder / "masks" / f"{name_of(DATES[2])}.tif").unlink()
    with pytest.raises(DataError, match=rf"{name_of(DATES[2])}.tif: no cloud/snow mask"):
        AreaSentinel.open(folder, make_cfg())


def test_npy_sidecar_problems_are_named(series: dict[str, Any], tmp_path: Path) -> None:
    source = tmp_path / "area.npy"
    np.save(source, series["data"])
    with pytest.raises(DataError, match=r"area.json: georeferencing sidecar not found"):
        AreaSentinel.open(source, make_cfg())
    sidecar = tmp_path / "area.json"
    good = {"crs": UTM, "transform": list(GRID)[:6], "dates": [str(d) for d in DATES]}
    cases = [
        ({**good, "crs": "EPSG:99999999"}, r"area.json: 'crs'"),
        ({**good, "transform": [10, 0, 1]}, r"area.json: 'transform' must be 6 numbers"),
        ({**good, "dates": good["dates"][:4]}, r"area.npy: 5 dates in the array but 4"),
        ({**good, "dates": ["2021-02-30"] * 5}, r"area.json: 'dates'\[0\] is '2021-02-30'"),
        ({**good, "masks": "nowhere.npy"}, r"nowhere.npy: not found"),
    ]
    for content, message in cases:
        sidecar.write_text(json.dumps(content), encoding="utf-8")
        with pytest.raises(DataError, match=message):
            AreaSentinel.open(source, make_cfg())


def test_missing_or_empty_source_is_named(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere: Sentinel-2 series not found"):
        AreaSentinel.open(tmp_path / "nowhere", make_cfg())
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no Sentinel-2 GeoTIFF"):
        AreaSentinel.open(tmp_path / "empty", make_cfg())
