"""Tests of flair2.data.sentinel: products, positions, crops, cloud filter, monthly means."""

from __future__ import annotations

import datetime
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest

from flair2.config import config_from_dict
from flair2.data.records import SentinelFiles
from flair2.data.sentinel import (
    SentinelProcessor,
    cloud_cover,
    cloud_filter,
    crop_centered,
    day_positions,
    load_npy,
    monthly_average,
    read_products,
    scale_series,
)
from flair2.errors import DataError
from flair2.settings import SentinelSettings

D = datetime.date
REF = D(2021, 5, 15)


def product(date: D) -> str:
    return f"S2A_MSIL2A_{date:%Y%m%d}T105021_N0300_R051_T31UDP_{date:%Y%m%d}T135122"


def write_products(path: Path, dates: list[D], trailing: str = "\n") -> Path:
    path.write_text("\n".join(product(d) for d in dates) + trailing, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------
# Products and day positions


def test_read_products_dates_in_order_and_trailing_blank_lines(tmp_path: Path) -> None:
    dates = [D(2021, 4, 15), D(2021, 1, 3), D(2021, 12, 31)]
    path = write_products(tmp_path / "a_products.txt", dates, trailing="\n\n  \n")
    assert read_products(path) == tuple(dates)


def test_read_products_malformed_line_names_file_line_and_text(tmp_path: Path) -> None:
    path = tmp_path / "bad_products.txt"
    path.write_text(f"{product(D(2021, 1, 3))}\nS2A_MSIL2A_2021XX15T105021\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_products(path)
    message = str(err.value)
    assert "bad_products.txt" in message
    assert "line 2" in message
    assert "S2A_MSIL2A_2021XX15T105021" in message


def test_read_products_invalid_calendar_date(tmp_path: Path) -> None:
    path = tmp_path / "feb_products.txt"
    path.write_text("S2A_MSIL2A_20210230T105021_N0300\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 1"):
        read_products(path)


def test_read_products_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nope_products.txt"):
        read_products(tmp_path / "nope_products.txt")


def test_day_positions_sign_and_year_replacement() -> None:
    dates = [D(2021, 5, 10), D(2021, 5, 15), D(2021, 6, 1), D(2019, 5, 10), D(2021, 1, 1)]
    got = day_positions(dates, 2021, 5, 15)
    assert got.dtype == np.int64
    # Before the reference date: positive; after: negative; year replaced by 2021.
    assert got.tolist() == [5, 0, -17, 5, (REF - D(2021, 1, 1)).days]
    assert got[-1] == 134


def test_day_positions_29_february_in_non_leap_reference_year() -> None:
    got = day_positions([D(2020, 2, 29)], 2021, 5, 15)
    assert got.tolist() == [(REF - D(2021, 2, 28)).days]
    # In a leap reference year the date exists and is used as is.
    assert day_positions([D(2020, 2, 29)], 2020, 3, 1).tolist() == [1]


# ---------------------------------------------------------------------------
# Crop


def grid(t: int = 2, c: int = 3, h: int = 12, w: int = 10) -> np.ndarray:
    return np.arange(t * c * h * w, dtype=np.uint16).reshape(t, c, h, w)


def test_crop_interior_equals_plain_slicing() -> None:
    array = grid()
    got = crop_centered(array, (6, 5), 4)
    np.testing.assert_array_equal(got, array[:, :, 4:8, 3:7])
    assert got.dtype == np.uint16
    got[...] = 0  # a fresh array, not a view
    assert array[0, 0, 4, 3] != 0


def test_crop_at_origin_replicates_edges() -> None:
    array = grid()
    got = crop_centered(array, (0, 0), 4)
    assert got.shape == (2, 3, 4, 4)
    # Window rows/cols -2..1: the two missing rows/cols repeat row/col 0.
    expected_rows = [0, 0, 0, 1]
    expected = array[:, :, expected_rows][:, :, :, expected_rows]
    np.testing.assert_array_equal(got, expected)


def test_crop_near_far_corner_replicates_edges() -> None:
    array = grid(h=12, w=10)
    got = crop_centered(array, (11, 9), 6)
    assert got.shape == (2, 3, 6, 6)
    # Rows 8..13 and cols 6..11 requested; 12, 13 → 11 and 10, 11 → 9.
    rows = [8, 9, 10, 11, 11, 11]
    cols = [6, 7, 8, 9, 9, 9]
    np.testing.assert_array_equal(got, array[:, :, rows][:, :, :, cols])


def test_crop_from_memmap(tmp_path: Path) -> None:
    array = grid()
    np.save(tmp_path / "g.npy", array)
    mapped = np.load(tmp_path / "g.npy", mmap_mode="r")
    got = crop_centered(mapped, (1, 8), 4)
    assert type(got) is np.ndarray
    np.testing.assert_array_equal(got, crop_centered(array, (1, 8), 4))


def test_crop_selected_dates_only(tmp_path: Path) -> None:
    array = grid(t=4)
    np.save(tmp_path / "g.npy", array)
    mapped = np.load(tmp_path / "g.npy", mmap_mode="r")
    times = np.array([0, 2, 3])
    for centroid in ((6, 5), (0, 9)):  # interior and border
        got = crop_centered(mapped, centroid, 4, times=times)
        assert type(got) is np.ndarray and got.shape == (3, 3, 4, 4)
        np.testing.assert_array_equal(got, crop_centered(array, centroid, 4)[times])


@pytest.mark.parametrize("centroid", [(-1, 3), (3, 11), (13, 0)])
def test_crop_centroid_outside_raises(centroid: tuple[int, int]) -> None:
    with pytest.raises(DataError) as err:
        crop_centered(grid(), centroid, 4)
    assert f"row {centroid[0]}, col {centroid[1]}" in str(err.value)
    assert "(2, 3, 12, 10)" in str(err.value)


# ---------------------------------------------------------------------------
# Cloud and snow filter


def masks_with_cover(cloud_pixels: list[int], snow_pixels: list[int], size: int = 10) -> np.ndarray:
    """(T, 2, size, size) masks with the given numbers of pixels at probability 60."""
    t = len(cloud_pixels)
    masks = np.full((t, 2, size, size), 59, dtype=np.uint8)  # 59: just below the threshold
    for i, (nc, ns) in enumerate(zip(cloud_pixels, snow_pixels)):
        masks[i, 0].reshape(-1)[:nc] = 60
        masks[i, 1].reshape(-1)[:ns] = 100
    return masks


def test_cloud_cover_counts_cloud_and_snow_twice() -> None:
    # Date 0: the same 30 pixels cloudy and snowy → 60 counts out of 100.
    masks = masks_with_cover([30, 49, 0], [30, 0, 20])
    np.testing.assert_allclose(cloud_cover(masks), [0.6, 0.49, 0.2])


def test_cloud_filter_threshold_is_strict() -> None:
    masks = masks_with_cover([50, 49, 25, 0], [0, 0, 25, 51])
    # 0.5 (dropped), 0.49 (kept), 0.25 + 0.25 = 0.5 (dropped), 0.51 (dropped).
    assert cloud_filter(masks).tolist() == [False, True, False, False]


def test_cloud_filter_custom_thresholds() -> None:
    masks = np.zeros((2, 2, 2, 2), dtype=np.uint8)
    masks[0, 0, 0, 0] = 30  # one pixel of four at 30 %
    assert cloud_filter(masks, proba_threshold=30, area_threshold=0.25).tolist() == [False, True]
    assert cloud_filter(masks, proba_threshold=31, area_threshold=0.25).tolist() == [True, True]


def test_cloud_filter_all_cloudy_keeps_least_covered(caplog: pytest.LogCaptureFixture) -> None:
    masks = masks_with_cover([90, 60, 70, 60], [0, 0, 0, 0])
    with caplog.at_level(logging.DEBUG, logger="flair2.data.sentinel.operations"):
        keep = cloud_filter(masks)
    # Dates 1 and 3 tie at 0.6: the first is kept.
    assert keep.tolist() == [False, True, False, False]
    assert "least covered" in caplog.text


# ---------------------------------------------------------------------------
# Monthly means


def test_monthly_average_hand_computed() -> None:
    dates = [D(2021, 1, 10), D(2021, 1, 20), D(2021, 3, 5)]
    series = np.zeros((3, 1, 2, 2), dtype=np.uint16)
    series[0] = [[1, 2], [3, 4]]
    series[1] = [[2, 2], [6, 10]]
    series[2] = [[7, 8], [9, 65535]]
    means, positions = monthly_average(series, dates, 2021, 5, 15)
    assert means.dtype == np.float32
    assert positions.dtype == np.int64
    np.testing.assert_array_equal(means[0, 0], [[1.5, 2.0], [4.5, 7.0]])
    np.testing.assert_array_equal(means[1, 0], [[7, 8], [9, 65535]])
    # The 15th of each month, year replaced by the reference year.
    assert positions.tolist() == [(REF - D(2021, 1, 15)).days, (REF - D(2021, 3, 15)).days]
    assert positions.tolist() == [120, 61]


def test_monthly_average_unordered_dates_keep_mask_and_other_year() -> None:
    dates = [D(2021, 3, 5), D(2020, 12, 30), D(2021, 1, 20), D(2021, 1, 10), D(2021, 3, 25)]
    series = np.arange(5, dtype=np.float64).reshape(5, 1, 1, 1) * 10
    keep = np.array([True, True, True, True, False])
    means, positions = monthly_average(series, dates, 2021, 5, 15, keep=keep)
    # Chronological groups: Dec 2020, Jan 2021 (dates 2, 3), Mar 2021 (date 0 only).
    assert means[:, 0, 0, 0].tolist() == [10.0, 25.0, 0.0]
    assert positions.tolist() == [
        (REF - D(2021, 12, 15)).days,
        (REF - D(2021, 1, 15)).days,
        (REF - D(2021, 3, 15)).days,
    ]


def test_monthly_average_nothing_kept_is_empty() -> None:
    series = np.ones((2, 3, 4, 4), dtype=np.uint16)
    means, positions = monthly_average(
        series, [D(2021, 1, 1), D(2021, 2, 1)], 2021, 5, 15, keep=np.zeros(2, dtype=bool)
    )
    assert means.shape == (0, 3, 4, 4) and positions.shape == (0,)


def test_monthly_average_matches_per_month_mean() -> None:
    rng = np.random.default_rng(0)
    dates = sorted(D(2021, 1, 1) + datetime.timedelta(days=int(d)) for d in rng.choice(365, 40))
    series = rng.integers(0, 65536, (40, 3, 4, 4), dtype=np.uint16)
    means, _ = monthly_average(series, dates, 2021, 5, 15)
    months = sorted({d.month for d in dates})
    expected = np.stack(
        [series[[i for i, d in enumerate(dates) if d.month == m]].mean(axis=0) for m in months]
    )
    np.testing.assert_allclose(means, expected, rtol=1e-6)


# ---------------------------------------------------------------------------
# Scaling


def test_scale_series_modes() -> None:
    raw = np.array([0, 10000, 65535], dtype=np.uint16).reshape(1, 3, 1, 1)
    ref = scale_series(raw, "reference", averaged=False)
    assert ref.dtype == np.float32
    np.testing.assert_allclose(ref.ravel(), [0.0, 10000 / 65535, 1.0], rtol=1e-6)
    averaged = raw.astype(np.float32)
    # Reference defect kept on purpose: monthly means stay raw reflectance.
    np.testing.assert_array_equal(scale_series(averaged, "reference", averaged=True), averaged)
    for series, avg in ((raw, False), (averaged, True)):
        np.testing.assert_allclose(
            scale_series(series, "reflectance", averaged=avg).ravel(), [0, 1, 6.5535], rtol=1e-6
        )
    std = scale_series(raw, "standardize", False, mean=[0, 5000, 65535], std=[1, 2500, 5])
    np.testing.assert_allclose(std.ravel(), [0.0, 2.0, 0.0])
    with pytest.raises(ValueError, match="3 values"):
        scale_series(raw, "standardize", False, mean=[0, 1], std=[1, 1])


# ---------------------------------------------------------------------------
# Files and the processor


def write_zone(
    folder: Path,
    t: int = 5,
    size: int = 30,
    dates: list[D] | None = None,
) -> tuple[SentinelFiles, np.ndarray, np.ndarray, list[D]]:
    rng = np.random.default_rng(1)
    data = rng.integers(0, 10000, (t, 10, size, size), dtype=np.uint16)
    masks = np.zeros((t, 2, size, size), dtype=np.uint8)
    dates = dates or [D(2021, 1, 10), D(2021, 1, 20), D(2021, 3, 5), D(2021, 3, 9), D(2021, 7, 1)]
    files = SentinelFiles(
        data=folder / "SEN2_sp_D004_2021-Z1_UF_data.npy",
        masks=folder / "SEN2_sp_D004_2021-Z1_UF_masks.npy",
        products=folder / "SEN2_sp_D004_2021-Z1_UF_products.txt",
    )
    np.save(files.data, data)
    np.save(files.masks, masks)
    write_products(files.products, dates[:t])
    return files, data, masks, dates[:t]


def make_processor(**overrides: object) -> SentinelProcessor:
    cfg = config_from_dict({"sat_patch_size": 8, **overrides})
    return SentinelProcessor(SentinelSettings.from_config(cfg))


def test_processor_end_to_end_filter_and_monthly(tmp_path: Path) -> None:
    files, data, masks, _ = write_zone(tmp_path)
    masks[2, 0] = 80  # 2021-03-05 fully cloudy over the whole area
    np.save(files.masks, masks)
    proc = make_processor()
    series, positions = proc(files, (15, 12))
    crop = data[:, :, 11:19, 8:16].astype(np.float64)
    # Kept: Jan 10, Jan 20, Mar 9, Jul 1 → months Jan (2 dates), Mar (1), Jul (1).
    expected = np.stack([crop[[0, 1]].mean(0), crop[3], crop[4]])
    assert series.dtype == np.float32 and positions.dtype == np.int64
    assert series.shape == (3, 10, 8, 8)
    # Reference scaling with monthly means: raw reflectance.
    np.testing.assert_allclose(series, expected, rtol=1e-6)
    assert positions.tolist() == [(REF - D(2021, m, 15)).days for m in (1, 3, 7)]


def test_processor_without_averaging_scales_by_65535(tmp_path: Path) -> None:
    files, data, masks, dates = write_zone(tmp_path)
    masks[4, 1] = 100  # snow everywhere on the last date
    np.save(files.masks, masks)
    proc = make_processor(average_month=False)
    series, positions = proc(files, (0, 29))  # a border crop is full size
    assert series.shape == (4, 10, 8, 8)
    expected = crop_centered(data, (0, 29), 8)[:4].astype(np.float32) / 65535
    np.testing.assert_allclose(series, expected, rtol=1e-6)
    assert positions.tolist() == [(REF - d).days for d in dates[:4]]


def test_processor_no_filter_reflectance(tmp_path: Path) -> None:
    files, data, masks, dates = write_zone(tmp_path)
    masks[:] = 100
    np.save(files.masks, masks)
    proc = make_processor(filter_clouds=False, average_month=False, sen2_scaling="reflectance")
    series, positions = proc(files, (10, 10))
    assert series.shape == (5, 10, 8, 8)
    np.testing.assert_allclose(series, data[:, :, 6:14, 6:14] / 10000, rtol=1e-6)
    assert positions.tolist() == [(REF - d).days for d in dates]


def test_processor_standardize_and_bounded_cache(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    files_a, data_a, *_ = write_zone(tmp_path / "a")
    files_b, *_ = write_zone(tmp_path / "b")
    mean, std = [float(i) for i in range(10)], [2.0] * 10
    proc = SentinelProcessor(
        SentinelSettings.from_config(
            config_from_dict(
                {
                    "sat_patch_size": 8,
                    "average_month": False,
                    "sen2_scaling": "standardize",
                    "sat_mean": mean,
                    "sat_std": std,
                }
            )
        ),
        max_open_arrays=2,
    )
    proc(files_b, (15, 15))
    series, _ = proc(files_a, (15, 15))
    assert len(proc._arrays) == 2  # zone b's maps were closed
    expected = (data_a[:, :, 11:19, 11:19] - np.arange(10).reshape(1, 10, 1, 1)) / 2.0
    np.testing.assert_allclose(series, expected, rtol=1e-6)


def test_processor_is_picklable_after_use(tmp_path: Path) -> None:
    files, *_ = write_zone(tmp_path)
    proc = make_processor()
    before = proc(files, (15, 15))
    clone = pickle.loads(pickle.dumps(proc))
    assert clone._arrays == {} and clone._zones == {}
    after = clone(files, (15, 15))
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


def test_processor_products_count_mismatch(tmp_path: Path) -> None:
    files, *_ = write_zone(tmp_path)
    write_products(files.products, [D(2021, 1, 10), D(2021, 2, 1)])
    with pytest.raises(DataError) as err:
        make_processor()(files, (15, 15))
    message = str(err.value)
    assert "_products.txt" in message and "2 products" in message and "5 dates" in message


def test_processor_masks_shape_mismatch(tmp_path: Path) -> None:
    files, *_ = write_zone(tmp_path)
    np.save(files.masks, np.zeros((5, 2, 30, 29), dtype=np.uint8))
    with pytest.raises(DataError) as err:
        make_processor()(files, (15, 15))
    message = str(err.value)
    assert "_masks.npy" in message
    assert "(5, 2, 30, 29)" in message and "(5, 10, 30, 30)" in message


def test_processor_centroid_outside_names_file(tmp_path: Path) -> None:
    files, *_ = write_zone(tmp_path)
    with pytest.raises(DataError, match=r"_data\.npy.*row 40, col 3"):
        make_processor()(files, (40, 3))


def test_truncated_npy_names_file(tmp_path: Path) -> None:
    files, *_ = write_zone(tmp_path)
    raw = files.data.read_bytes()
    files.data.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError) as err:
        make_processor()(files, (15, 15))
    message = str(err.value)
    assert str(files.data) in message
    assert "is not a readable .npy array" in message and "re-extract it" in message


def test_load_npy_rejects_non_numeric_and_garbage(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(DataError, match=r"s\.npy is not a readable \.npy array"):
        load_npy(tmp_path / "s.npy")
    (tmp_path / "g.npy").write_bytes(b"not an array at all")
    with pytest.raises(DataError, match=r"g\.npy is not a readable \.npy array"):
        load_npy(tmp_path / "g.npy")
    with pytest.raises(DataError, match="not found"):
        load_npy(tmp_path / "missing.npy")
