"""RGB previews of 5-band aerial patches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.crs import CRS
from rasterio.transform import from_origin

from flair2.errors import DataError
from flair2.viz.preview import preview_array, write_preview

H, W = 24, 32


@pytest.fixture
def aerial(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 5-band uint8 patch: R a horizontal ramp, G a vertical ramp, B noise, NIR, elevation."""
    rng = np.random.default_rng(0)
    bands = np.empty((5, H, W), np.uint8)
    bands[0] = np.linspace(10, 200, W, dtype=np.float64).astype(np.uint8)[None, :]
    bands[1] = np.linspace(50, 120, H, dtype=np.float64).astype(np.uint8)[:, None]
    bands[2] = rng.integers(0, 256, (H, W))
    bands[3] = 255 - bands[0]
    bands[4] = 7
    path = tmp_path / "IMG_000001.tif"
    profile = {
        "driver": "GTiff",
        "count": 5,
        "height": H,
        "width": W,
        "dtype": "uint8",
        "crs": CRS.from_epsg(2154),
        "transform": from_origin(843000.0, 6520000.0, 0.2, 0.2),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(bands)
    return path, bands


def test_no_stretch_keeps_the_bands(aerial):
    path, bands = aerial
    rgb = preview_array(path, (0, 1, 2), "none")
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, np.moveaxis(bands[:3], 0, -1))
    false_colour = preview_array(path, (3, 0, 1), "none")
    np.testing.assert_array_equal(false_colour[..., 0], bands[3])
    np.testing.assert_array_equal(false_colour[..., 2], bands[1])


def test_percentile_stretch_follows_the_input(aerial):
    path, bands = aerial
    rgb = preview_array(path)
    values = bands[:3].astype(np.float64)
    lo, hi = np.percentile(values, [2, 98])
    expected = np.rint(np.clip((np.moveaxis(values, 0, -1) - lo) / (hi - lo), 0, 1) * 255)
    np.testing.assert_allclose(rgb, expected, atol=1)
    # The red ramp stays monotonic and spans the output range.
    assert (np.diff(rgb[0, :, 0].astype(int)) >= 0).all()
    assert rgb[..., 2].min() == 0 and rgb[..., 2].max() == 255


def test_png_and_jpeg_written_by_suffix(aerial, tmp_path):
    path, _ = aerial
    png = write_preview(path, tmp_path / "out" / "p.png")
    with Image.open(png) as img:
        assert img.format == "PNG" and img.mode == "RGB" and img.size == (W, H)
        np.testing.assert_array_equal(np.asarray(img), preview_array(path))
    jpg = write_preview(path, tmp_path / "out" / "p.JPG", bands=(3, 0, 1), stretch="none")
    with Image.open(jpg) as img:
        assert img.format == "JPEG" and img.size == (W, H)
        # JPEG is lossy: close to the false-colour bands on average.
        diff = np.abs(np.asarray(img, dtype=int) - preview_array(path, (3, 0, 1), "none"))
        assert diff.mean() < 8
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p.JPG", "p.png"]


def test_world_file_places_the_preview(aerial, tmp_path):
    path, _ = aerial
    write_preview(path, tmp_path / "p.png", world_file=True)
    values = [float(v) for v in (tmp_path / "p.pgw").read_text().split()]
    # Pixel size, rotations, then the centre of the top-left pixel.
    assert values == pytest.approx([0.2, 0.0, 0.0, -0.2, 843000.1, 6519999.9])


def test_errors(aerial, tmp_path):
    path, _ = aerial
    with pytest.raises(ValueError, match=r"\.png, \.jpg, \.jpeg"):
        write_preview(path, tmp_path / "p.tif")
    with pytest.raises(ValueError, match="3 indices"):
        write_preview(path, tmp_path / "p.png", bands=(0, 1))
    with pytest.raises(DataError, match="band index 5 out of range"):
        write_preview(path, tmp_path / "p.png", bands=(5, 1, 2))
    with pytest.raises(DataError, match="aerial file not found"):
        write_preview(tmp_path / "missing.tif", tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()
