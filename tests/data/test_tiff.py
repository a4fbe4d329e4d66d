"""The fast TIFF path reads the same pixels as GDAL, and declines what it cannot read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from flair2.data.dataset import read_raster
from flair2.data.tiff import read_plain_tiff
from flair2.errors import DataError


def _write(path: Path, array: np.ndarray, **options: object) -> Path:
    count, height, width = array.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=array.dtype,
        crs="EPSG:2154",
        transform=Affine(0.2, 0, 650000, 0, -0.2, 6860000),
        **options,
    ) as dst:
        dst.write(array)
    return path


@pytest.fixture
def pixels() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (5, 70, 90), dtype=np.uint8)


@pytest.mark.parametrize(
    "options",
    [{}, {"interleave": "band"}, {"blockysize": 1}, {"blockysize": 7}],
    ids=["pixel-interleaved", "band-interleaved", "one-row-strips", "odd-strips"],
)
def test_plain_layouts_read_exactly(tmp_path: Path, pixels: np.ndarray, options: dict) -> None:
    path = _write(tmp_path / "img.tif", pixels, **options)
    fast = read_plain_tiff(path, 5)
    assert fast is not None
    assert fast.shape == (5, 70, 90) and fast.dtype == np.uint8
    assert fast.flags.c_contiguous
    np.testing.assert_array_equal(fast, pixels)
    np.testing.assert_array_equal(read_raster(path, bands=5, name="aerial patch"), pixels)


def test_single_band_mask(tmp_path: Path, pixels: np.ndarray) -> None:
    path = _write(tmp_path / "msk.tif", pixels[:1])
    np.testing.assert_array_equal(read_plain_tiff(path, 1), pixels[:1])


@pytest.mark.parametrize(
    "options",
    [{"compress": "lzw"}, {"tiled": True, "blockxsize": 16, "blockysize": 16}],
    ids=["compressed", "tiled"],
)
def test_other_layouts_fall_back_to_gdal(tmp_path: Path, pixels: np.ndarray, options: dict) -> None:
    path = _write(tmp_path / "img.tif", pixels, **options)
    assert read_plain_tiff(path, 5) is None
    np.testing.assert_array_equal(read_raster(path, bands=5, name="aerial patch"), pixels)


def test_other_dtype_or_band_count_declined(tmp_path: Path, pixels: np.ndarray) -> None:
    path = _write(tmp_path / "img.tif", pixels.astype(np.uint16))
    assert read_plain_tiff(path, 5) is None
    with pytest.raises(DataError, match="img.tif: aerial patch is uint16, expected uint8"):
        read_raster(path, bands=5, name="aerial patch")
    path = _write(tmp_path / "four.tif", pixels[:4])
    assert read_plain_tiff(path, 5) is None
    with pytest.raises(DataError, match="four.tif: aerial patch has 4 band"):
        read_raster(path, bands=5, name="aerial patch")


def test_damaged_files_declined(tmp_path: Path, pixels: np.ndarray) -> None:
    path = _write(tmp_path / "img.tif", pixels)
    data = path.read_bytes()
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(data[: len(data) // 2])
    assert read_plain_tiff(truncated, 5) is None
    with pytest.raises(DataError, match="truncated.tif: unreadable aerial patch"):
        read_raster(truncated, bands=5, name="aerial patch")
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"II*\x00" + b"\xff" * 40)
    assert read_plain_tiff(garbage, 5) is None
    assert read_plain_tiff(tmp_path / "missing.tif", 5) is None
