"""Window metadata: the training encoding of a record built from the window and the flight."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from rasterio.warp import transform as warp_transform

from flair2.data.metadata import encode_metadata
from flair2.detection.metadata import (
    AreaMetadata,
    band_elevation,
    to_lambert93,
    window_metadata,
)
from flair2.errors import ConfigError, DataError

FLIGHT = {"date": "2021-06-14", "time": "10h45", "camera": "UCE-M3-f100-s06", "altitude": 312.5}


def record(x: float, y: float, z: float, **changes: Any) -> dict[str, Any]:
    fields = {"date": "2021-06-14", "time": "10h45", "camera": "UCE-M3-f100-s06"}
    fields.update(changes)
    return {"patch_centroid_x": x, "patch_centroid_y": y, "patch_centroid_z": z, **fields}


def test_lambert93_window_gives_the_training_vector() -> None:
    meta = AreaMetadata(**FLIGHT)
    got = window_metadata(meta, 651_285.8, 6_862_294.6, "EPSG:2154")
    expected = encode_metadata(record(651_285.8, 6_862_294.6, 312.5), "IMG_000001")
    assert got.dtype == np.float32 and got.shape == (45,)
    np.testing.assert_array_equal(got, expected)


def test_lambert93_origin_is_found_from_geographic_and_utm_coordinates() -> None:
    # Lambert-93's projection origin, 3° E 46.5° N, is (700 000, 6 600 000) by definition.
    x, y = to_lambert93(3.0, 46.5, "EPSG:4326")
    assert x == pytest.approx(700_000.0, abs=1e-3) and y == pytest.approx(6_600_000.0, abs=1e-3)
    (ux,), (uy,) = warp_transform("EPSG:4326", "EPSG:32631", [3.0], [46.5])
    assert ux == pytest.approx(500_000.0, abs=1e-3)  # UTM 31N's central meridian is 3° E too
    x, y = to_lambert93(ux, uy, 32631)
    assert x == pytest.approx(700_000.0, abs=1e-3) and y == pytest.approx(6_600_000.0, abs=1e-3)


def test_window_in_another_crs_is_encoded_at_its_lambert93_position() -> None:
    meta = AreaMetadata(**FLIGHT)
    (ux,), (uy,) = warp_transform("EPSG:2154", "EPSG:32631", [651_285.8], [6_862_294.6])
    got = window_metadata(meta, ux, uy, "EPSG:32631")
    x, y = to_lambert93(ux, uy, "EPSG:32631")
    assert x == pytest.approx(651_285.8, abs=1e-3) and y == pytest.approx(6_862_294.6, abs=1e-3)
    np.testing.assert_array_equal(got, encode_metadata(record(x, y, 312.5), "w"))
    raw = window_metadata(meta, ux, uy, "EPSG:2154")  # the UTM numbers taken as Lambert-93
    assert not np.array_equal(got[:32], raw[:32])


def test_altitude_null_uses_the_window_elevation() -> None:
    meta = AreaMetadata(**{**FLIGHT, "altitude": None})
    got = window_metadata(meta, 651_285.8, 6_862_294.6, "EPSG:2154", elevation=1500.0)
    assert got[32] == pytest.approx(1500.0 / 3164.9099121094)
    ignored = window_metadata(AreaMetadata(**FLIGHT), 651_285.8, 6_862_294.6, 2154, elevation=9.0)
    assert ignored[32] == pytest.approx(312.5 / 3164.9099121094)  # the constant wins
    with pytest.raises(ConfigError, match=r"'metadata.altitude': null and no elevation"):
        window_metadata(meta, 651_285.8, 6_862_294.6, "EPSG:2154")
    with pytest.raises(DataError, match=r"elevation nan is not a finite number"):
        window_metadata(meta, 651_285.8, 6_862_294.6, "EPSG:2154", elevation=float("nan"))


def test_band_elevation_is_offset_plus_scaled_median_of_valid_pixels() -> None:
    band = np.array([[10, 10, 250], [20, 30, 0]], dtype=np.uint8)
    meta = AreaMetadata(date="2021-06-14", elevation_scale=0.5, elevation_offset=100.0)
    assert band_elevation(band, meta) == pytest.approx(100.0 + 0.5 * 15.0)
    valid = band > 0
    assert band_elevation(band, meta, valid) == pytest.approx(100.0 + 0.5 * 20.0)
    assert band_elevation(band, meta, np.zeros_like(valid)) is None
    default = AreaMetadata(date="2021-06-14")
    assert band_elevation(band, default) == pytest.approx(0.2 * 15.0)


def test_flight_fields_and_month_encoding_reach_the_vector() -> None:
    meta = AreaMetadata(date="2019-02-03", time="9h05", camera="CAMERA#030", altitude=10.0)
    got = window_metadata(meta, 700_000.0, 6_600_000.0, "EPSG:2154", month_encoding="corrected")
    expected = encode_metadata(
        record(700_000.0, 6_600_000.0, 10.0, date="2019-02-03", time="9h05", camera="CAMERA#030"),
        "w",
        "corrected",
    )
    np.testing.assert_array_equal(got, expected)
    assert got[33:35].tolist() == [0.0, 1.0] and got[35:39].tolist() == [0.0, 1.0, 0.0, 0.0]
    reference = window_metadata(meta, 700_000.0, 6_600_000.0, "EPSG:2154")
    assert not np.array_equal(reference[39:41], got[39:41])


def test_defaults_are_a_midday_uce_flight() -> None:
    meta = AreaMetadata(date="2021-06-14")
    assert (meta.time, meta.camera, meta.altitude) == ("12h00", "UCE-M3-f100-s06", None)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"date": "2021/06/14"}, "date"),
        ({"date": "2021-02-30"}, "date"),
        ({"time": "25h00"}, "time"),
        ({"time": "10:45"}, "time"),
        ({"camera": ""}, "camera"),
        ({"altitude": float("inf")}, "altitude"),
        ({"altitude": 12_000.0}, "altitude"),
        ({"altitude": True}, "altitude"),
        ({"elevation_scale": 0.0}, "elevation_scale"),
        ({"elevation_offset": float("nan")}, "elevation_offset"),
    ],
)
def test_invalid_flight_values_name_the_key(changes: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"config key 'metadata.{key}': expected"):
        AreaMetadata(**{**FLIGHT, **changes})


def test_bad_position_or_crs_is_a_data_error() -> None:
    meta = AreaMetadata(**FLIGHT)
    with pytest.raises(DataError, match=r"not a pair of finite coordinates"):
        window_metadata(meta, float("nan"), 6_862_294.6, "EPSG:2154")
    with pytest.raises(DataError, match=r"not a coordinate reference system"):
        window_metadata(meta, 651_285.8, 6_862_294.6, "EPSG:99999999")
