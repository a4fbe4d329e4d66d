"""Tests of flair2.data.metadata: the 45-value aerial metadata encoding."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pytest

from flair2.data import metadata as metadata_module
from flair2.data.metadata import METADATA_SIZE, encode_metadata
from flair2.errors import DataError

RECORD: dict[str, Any] = {
    "domain": "D004_2021",
    "zone": "Z1_UF",
    "patch_centroid_x": 830000,
    "patch_centroid_y": 6300000,
    "patch_centroid_z": 250.5,
    "date": "2021-05-05",
    "time": "10h45",
    "camera": "UCE-M3-f100-s06",
}


def unit(v: float) -> float:
    """[-1, 1] → [0, 1], as the reference."""
    return (v + 1) / 2


def expected_encoding(record: dict[str, Any], month_term: float) -> list[float]:
    """The encoding written out formula by formula (reference adding_encoded_metadata)."""
    values: list[float] = []
    for coord in (record["patch_centroid_x"], record["patch_centroid_y"]):
        scaled = coord / 10e7
        for i in range(8):
            freq = 1 / (10e7 ** (2 * i / 16))
            values += [math.sin(scaled * freq), math.cos(scaled * freq)]
    values.append(record["patch_centroid_z"] / 3164.9099121094)
    values += [1, 0] if "UCE" in record["camera"] else [0, 1]
    year, _month, day = (int(p) for p in record["date"].split("-"))
    values += [1.0 if year == y else 0.0 for y in (2018, 2019, 2020, 2021)]
    hours, minutes = (int(p) for p in record["time"].split("h"))
    seconds = hours * 3600 + minutes * 60
    for angle in (2 * math.pi * month_term, 2 * math.pi * day / 31, 2 * math.pi * seconds / 86400):
        values += [unit(math.sin(angle)), unit(math.cos(angle))]
    return values


def test_reference_encoding_of_a_known_record() -> None:
    enc = encode_metadata(RECORD, "IMG_077413")
    assert enc.dtype == np.float32 and enc.shape == (METADATA_SIZE,) == (45,)
    np.testing.assert_allclose(enc, expected_encoding(RECORD, 5 - 1 / 12), rtol=1e-6, atol=1e-7)
    # A few values by hand: first x pair at frequency 1, camera, year 2021, time.
    assert enc[0] == pytest.approx(math.sin(830000 / 1e8), rel=1e-6)
    assert enc[1] == pytest.approx(math.cos(830000 / 1e8), rel=1e-6)
    assert enc[16] == pytest.approx(math.sin(0.063), rel=1e-6)
    assert enc[32] == pytest.approx(250.5 / 3164.9099121094, rel=1e-6)
    assert enc[33:39].tolist() == [1, 0, 0, 0, 0, 1]
    # 10h45 = 38700 s.
    assert enc[43] == pytest.approx((math.sin(2 * math.pi * 38700 / 86400) + 1) / 2, rel=1e-6)


def test_corrected_month_encoding() -> None:
    enc = encode_metadata(RECORD, "IMG_077413", month_encoding="corrected")
    np.testing.assert_allclose(enc, expected_encoding(RECORD, (5 - 1) / 12), rtol=1e-6, atol=1e-7)


def test_reference_month_is_constant_and_corrected_is_not() -> None:
    def month_values(encoding: str) -> np.ndarray:
        return np.stack(
            [
                encode_metadata({**RECORD, "date": f"2021-{m:02d}-05"}, "IMG_1", encoding)[39:41]
                for m in range(1, 13)
            ]
        )

    reference = month_values("reference")
    # sin(-π/6) = -0.5 and cos = 0.866 for every month, mapped to [0, 1].
    np.testing.assert_allclose(
        reference, np.tile([0.25, unit(math.sqrt(3) / 2)], (12, 1)), atol=1e-6
    )
    corrected = month_values("corrected")
    assert len({tuple(np.round(r, 5)) for r in corrected}) == 12
    np.testing.assert_allclose(corrected[0], [0.5, 1.0], atol=1e-6)  # January: angle 0


def test_other_camera_and_year_one_hot() -> None:
    enc = encode_metadata({**RECORD, "camera": "DMC-III", "date": "2019-07-31"}, "IMG_2")
    assert enc[33:39].tolist() == [0, 1, 0, 1, 0, 0]
    assert enc[41] == pytest.approx(unit(math.sin(2 * math.pi * 31 / 31)), abs=1e-6)


def test_year_outside_range_maps_to_nearest_and_warns_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(metadata_module, "_warned_years", set())
    with caplog.at_level(logging.WARNING, logger="flair2.data.metadata"):
        late = encode_metadata({**RECORD, "date": "2023-05-05"}, "IMG_3")
        encode_metadata({**RECORD, "date": "2023-06-05"}, "IMG_4")
        early = encode_metadata({**RECORD, "date": "2016-05-05"}, "IMG_5")
    assert late[35:39].tolist() == [0, 0, 0, 1]
    assert early[35:39].tolist() == [1, 0, 0, 0]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "year 2023" in warnings[0] and "as 2021" in warnings[0]
    assert "year 2016" in warnings[1] and "as 2018" in warnings[1]


@pytest.mark.parametrize(
    ("field", "value", "expected_text"),
    [
        ("date", "2021/05/05", "2021/05/05"),
        ("date", "2021-02-30", "2021-02-30"),
        ("time", "10:45", "10:45"),
        ("time", "25h00", "25h00"),
        ("camera", 42, "42"),
        ("patch_centroid_x", "830000", "'830000'"),
        ("patch_centroid_y", None, "None"),
        ("patch_centroid_z", True, "True"),
        ("patch_centroid_z", float("nan"), "nan"),
    ],
)
def test_malformed_field_names_patch_field_value_and_fix(
    field: str, value: object, expected_text: str
) -> None:
    with pytest.raises(DataError) as err:
        encode_metadata({**RECORD, field: value}, "IMG_077413")
    message = str(err.value)
    assert "IMG_077413" in message
    assert f"'{field}'" in message
    assert expected_text in message
    assert "aerial_metadata: false" in message


@pytest.mark.parametrize("field", ["date", "time", "camera", "patch_centroid_x"])
def test_missing_field(field: str) -> None:
    record = {k: v for k, v in RECORD.items() if k != field}
    with pytest.raises(DataError, match=rf"IMG_9.*'{field}' is missing"):
        encode_metadata(record, "IMG_9")


def test_unknown_month_encoding() -> None:
    with pytest.raises(ValueError, match="month encoding"):
        encode_metadata(RECORD, "IMG_1", month_encoding="fixed")  # type: ignore[arg-type]
