"""flair2.formats: the one place for file names, tags, dates and the patch-size rule."""

from __future__ import annotations

import datetime

import pytest

from flair2.formats import (
    IMG_PATTERN,
    MSK_PATTERN,
    PRED_PATTERN,
    check_patch_multiple,
    flight_date,
    flight_time,
    image_name,
    image_stem,
    is_patch_multiple,
    mask_name,
    patch_id,
    prediction_name,
    probability_name,
    product_date,
    sentinel_name,
)


def test_patch_ids_and_names_round_trip() -> None:
    for given in ("077413", "IMG_077413.tif", "msk_077413.TIFF", "PRED_077413.tif", 77413):
        assert patch_id(given) in ("077413", "77413")
    assert image_name("077413") == "IMG_077413.tif"
    assert image_stem("IMG_077413.tif") == "IMG_077413"
    assert mask_name("IMG_077413.tif") == "MSK_077413.tif"
    assert prediction_name("077413") == "PRED_077413.tif"
    assert probability_name("PRED_077413.tif") == "PROB_077413.tif"
    assert sentinel_name("D004_2021", "Z1_UF", "data.npy") == "SEN2_sp_D004_2021-Z1_UF_data.npy"
    for bad in ("", "IMG_.tif", "../x", "a/b", ".."):
        with pytest.raises(ValueError, match="invalid patch id"):
            patch_id(bad)


def test_patterns_read_tif_and_tiff_alike_and_nothing_else() -> None:
    assert IMG_PATTERN.match("IMG_000001.tif").group(1) == "000001"
    assert MSK_PATTERN.match("msk_000002.TIFF").group(1) == "000002"
    assert PRED_PATTERN.match("PRED_000003.tiff").group(1) == "000003"
    for name in ("IMG_000001.tif.tmp", "IMG_x.tif", "MSK_000001.png", "PRED_000001"):
        assert not (IMG_PATTERN.match(name) or MSK_PATTERN.match(name) or PRED_PATTERN.match(name))


def test_patch_size_rule() -> None:
    assert [s for s in (0, 16, 32, 48, 64, 96, 512, 500) if is_patch_multiple(s)] == [
        32,
        64,
        96,
        512,
    ]
    with pytest.raises(ValueError, match="multiple of 32, got 100"):
        check_patch_multiple(100)


def test_product_and_flight_dates() -> None:
    name = "S2A_MSIL2A_20210415T105021_N0300_R051_T31UDP_20210415T135122"
    assert product_date(name) == datetime.date(2021, 4, 15)
    for bad in ("S2A_MSIL2A_201803 5T105021", "S2A_MSIL2A_20211315T1050", "short"):
        with pytest.raises(ValueError):
            product_date(bad)
    assert flight_date(" 2021-05-05 ") == datetime.date(2021, 5, 5)
    assert flight_time("10h45") == (10, 45)
    for bad_date in ("2021-5-5", "05/05/2021", "2021-02-30"):
        with pytest.raises(ValueError):
            flight_date(bad_date)
    for bad_time in ("24h00", "10:45", "10h60"):
        with pytest.raises(ValueError):
            flight_time(bad_time)
