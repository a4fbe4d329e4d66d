"""`flair2 detect` never overwrites its inputs, shares its output, or runs checkpoint code."""

from __future__ import annotations

from pathlib import Path

import pytest
import rasterio
import torch
import yaml
from test_detect import UNET, _tiny_checkpoint, random_pixels, write_raster

from flair2.cli import main
from hostile import lock_held_elsewhere, payload_checkpoint


def _zone(tmp_path: Path, **overrides: object) -> list[str]:
    zone = {"aerial": "a.tif", "checkpoint": "m.ckpt", "output": "landcover.tif", "overlap": 16}
    zone.update(overrides)  # type: ignore[arg-type]
    (tmp_path / "zone.yml").write_text(yaml.safe_dump(zone))
    return ["detect", "-c", str(tmp_path / "zone.yml"), "--set", "accelerator=cpu"]


def _last_error(capsys: pytest.CaptureFixture) -> str:
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("flair2 detect: error: "), line
    return line


@pytest.fixture
def area(tmp_path: Path) -> Path:
    write_raster(tmp_path / "a.tif", random_pixels(80, 90, seed=3))
    _tiny_checkpoint(tmp_path / "m.ckpt", UNET)
    return tmp_path


def test_the_output_may_not_be_the_input(area: Path, capsys: pytest.CaptureFixture) -> None:
    before = (area / "a.tif").read_bytes()
    assert main([*_zone(area, output="a.tif", overwrite=True)]) == 2
    assert "config key 'output'" in (line := _last_error(capsys)) and "is the input aerial" in line
    assert (area / "a.tif").read_bytes() == before

    # Nor one of the tiles a mosaic reads.
    from rasterio.shutil import copy as gdal_copy

    gdal_copy(str(area / "a.tif"), str(area / "mosaic.vrt"), driver="VRT")
    assert main([*_zone(area, aerial="mosaic.vrt", output="a.tif", overwrite=True)]) == 2
    assert "is the input aerial (tile 1: a.tif)" in _last_error(capsys)
    assert (area / "a.tif").read_bytes() == before
    assert main([*_zone(area, output="m.ckpt", overwrite=True)]) == 2
    assert "is the input checkpoint" in _last_error(capsys)


def test_a_second_run_on_the_same_output_is_refused(
    area: Path, capsys: pytest.CaptureFixture
) -> None:
    with lock_held_elsewhere(area / ".landcover.tif.lock", "flair2 detect") as pid:
        assert main(_zone(area)) == 2
        line = _last_error(capsys)
        assert f"in use by another run (flair2 detect, pid {pid}" in line
        assert not (area / "landcover.tif").exists()
    assert main(_zone(area)) == 0  # the holder is gone: its lock file does not block
    with rasterio.open(area / "landcover.tif") as src:
        assert src.shape == (80, 90)


def test_a_checkpoint_carrying_code_is_refused(area: Path, capsys: pytest.CaptureFixture) -> None:
    data = torch.load(area / "m.ckpt", weights_only=True)
    payload_checkpoint(area / "bad.ckpt", area / "MARKER", data)
    assert main(_zone(area, checkpoint="bad.ckpt")) == 2
    assert "bad.ckpt: refused" in _last_error(capsys)
    assert not (area / "MARKER").exists() and not (area / "landcover.tif").exists()
