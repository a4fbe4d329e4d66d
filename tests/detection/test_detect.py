"""Whole-area detection: window grid, blending, nodata, resampling, resume, checkpoints, Sentinel-2.

Rasters are generated here (EPSG:2154, 0.2 m, a transform away from the origin);
models are small hand-made modules with the flair2 model signature, or a tiny
U-Net / U-T&T with random weights.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
import yaml
from rasterio.transform import Affine
from torch import nn

from flair2.cli import main
from flair2.config import Config, config_from_dict
from flair2.detection.grid import (
    TILE,
    ColumnAccumulator,
    WindowGrid,
    blend_ramp,
    flush_limit,
    window_offsets,
)
from flair2.detection.runner import detect
from flair2.detection.settings import detect_settings_from_dict
from flair2.detection.writer import NODATA
from flair2.errors import ConfigError, DataError
from flair2.models.unet import SegmentationOutput
from flair2.synthetic import TINY_MODEL
from flair2.synthetic.area import generate_toy_area
from flair2.training.model import build_model
from flair2.training.task import SegmentationTask

TRANSFORM = Affine(0.2, 0.0, 651_234.6, 0.0, -0.2, 6_862_345.8)
PATCH = 64
UNET = {"arch": "unet", "aerial_metadata": False, "patch_size": PATCH, "encoder_name": "resnet18"}
TINY_UTT = {"arch": "utt", "patch_size": PATCH, **TINY_MODEL}


# ---------------------------------------------------------------------------
# Helpers


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    """One torch thread for these tiny models.

    On a shared machine, OpenMP threads waiting for a busy core cost more than they bring.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_raster(
    path: Path, pixels: np.ndarray, *, transform: Affine = TRANSFORM, nodata: float | None = None
) -> Path:
    count, height, width = pixels.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype="uint8",
        crs="EPSG:2154",
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(pixels)
    return path


def random_pixels(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (5, height, width), dtype=np.uint8)


def settings(tmp_path: Path, aerial: Path, **overrides: Any) -> Any:
    raw = {
        "aerial": str(aerial),
        "checkpoint": "unused.ckpt",
        "output": str(tmp_path / "out.tif"),
        "overlap": 16,
        "batch_size": 3,
        "accelerator": "cpu",
        "enable_progress_bar": False,
        **overrides,
    }
    return detect_settings_from_dict(raw)


def model_cfg(**overrides: Any) -> Config:
    return config_from_dict({**UNET, **overrides})


class BandIdentity(nn.Module):
    """Class = value of band 1 (0..12): a one-hot of it as logits."""

    def forward(self, aerial: torch.Tensor, *args: Any, **kwargs: Any) -> SegmentationOutput:
        value = torch.round(aerial[:, 0] * 255).long().clamp(0, 12)
        return SegmentationOutput(nn.functional.one_hot(value, 13).permute(0, 3, 1, 2) * 10.0)


class Pointwise(nn.Module):
    """A 1×1 convolution: every pixel's output depends on that pixel alone."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(5, 13, 1)

    def forward(self, aerial: torch.Tensor, *args: Any, **kwargs: Any) -> SegmentationOutput:
        return SegmentationOutput(self.conv(aerial) * 4)


class SmallConvNet(nn.Module):
    """Two 3×3 convolutions (zero padding): translation-equivariant away from the borders."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(5, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 13, 3, padding=1)
        )

    def forward(self, aerial: torch.Tensor, *args: Any, **kwargs: Any) -> SegmentationOutput:
        return SegmentationOutput(self.net(aerial) * 3)


def full_pass(model: nn.Module, pixels: np.ndarray) -> np.ndarray:
    """(13, H, W) probabilities of one pass over the whole raster."""
    with torch.no_grad():
        logits = model(torch.from_numpy(pixels)[None].float() / 255).logits
    return logits.softmax(1)[0].numpy()


def read(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    with rasterio.open(path) as src:
        return src.read(), dict(src.profile)


# ---------------------------------------------------------------------------
# The grid


def test_window_offsets_end_on_the_edge() -> None:
    assert window_offsets(1000, 512, 384) == [0, 384, 488]
    assert window_offsets(896, 512, 384) == [0, 384]
    assert window_offsets(512, 512, 384) == [0]
    assert window_offsets(300, 512, 384) == [0]


def test_segments_cover_every_row_with_the_right_strips() -> None:
    # Snapping the last strip makes rows 488–512 belong to three strips.
    grid = WindowGrid(height=1000, width=50, patch=512, overlap=128)
    assert [(s.start, s.stop, s.strips) for s in grid.segments] == [
        (0, 384, (0,)),
        (384, 488, (0, 1)),
        (488, 512, (0, 1, 2)),
        (512, 896, (1, 2)),
        (896, 1000, (2,)),
    ]
    for height in (40, 64, 150, 333):
        grid = WindowGrid(height=height, width=10, patch=64, overlap=16)
        rows = np.zeros(height, dtype=int)
        for seg in grid.segments:
            rows[seg.start : seg.stop] += 1
            for k in seg.strips:
                assert grid.rows[k] <= seg.start and seg.stop <= grid.strip_stop(k)
        assert (rows == 1).all()


def test_blend_ramp_is_positive_and_cross_fades_to_one() -> None:
    ramp = blend_ramp(64, 16)
    assert ramp.min() > 0 and ramp.max() == 1.0
    assert (ramp[16:48] == 1).all()
    # Two windows 48 px apart: over their 16 shared pixels the weights add up to 1.
    np.testing.assert_allclose(ramp[48:] + ramp[:16], 1.0, atol=1e-6)
    assert (blend_ramp(64, 0) == 1).all()


def test_column_accumulator_memory_does_not_grow_with_the_width() -> None:
    patch, stride, batch = 64, 48, 4
    for width in (1_000, 20_000):
        cols = window_offsets(width, patch, stride)
        acc = ColumnAccumulator(13, patch)
        widest, total = 0, np.zeros(width)
        for first in range(0, len(cols), batch):
            for j in range(first, min(first + batch, len(cols))):
                acc.add(cols[j], torch.ones((13, patch, patch)))
            widest = max(widest, acc.sums.shape[-1])
            nxt = cols[first + batch] if first + batch < len(cols) else None
            start, sums = acc.flush(flush_limit(nxt, width))
            total[start : start + sums.shape[-1]] = sums[0, 0].numpy()
        assert widest <= (batch - 1) * stride + patch + TILE
        # Every column got the count of windows covering it.
        expected = np.zeros(width)
        for c in cols:
            expected[c : c + patch] += 1
        np.testing.assert_array_equal(total, expected)


# ---------------------------------------------------------------------------
# Detection


def test_band_identity_is_reproduced_exactly_on_the_input_grid(tmp_path: Path) -> None:
    height, width = 450, 600
    pixels = random_pixels(height, width)
    pixels[0] = np.random.default_rng(1).integers(0, 13, (height, width))
    aerial = write_raster(tmp_path / "a.tif", pixels)
    result = detect(settings(tmp_path, aerial), model=BandIdentity(), model_cfg=model_cfg())
    out, profile = read(result.output)
    assert (profile["width"], profile["height"]) == (width, height)
    assert profile["transform"] == TRANSFORM and profile["crs"].to_epsg() == 2154
    np.testing.assert_array_equal(out[0], pixels[0])
    assert result.windows == result.processed == result.predicted == 10 * 13
    assert not (tmp_path / "out.tif.parts").exists()


def test_blending_leaves_no_seam(tmp_path: Path) -> None:
    pixels = random_pixels(230, 300, seed=2)
    aerial = write_raster(tmp_path / "a.tif", pixels)
    model = SmallConvNet()
    reference = full_pass(model, pixels)

    def run(overlap: int, output_type: str) -> np.ndarray:
        name = f"{output_type}-{overlap}.tif"
        s = settings(
            tmp_path, aerial, overlap=overlap, output=str(tmp_path / name), output_type=output_type
        )
        return read(detect(s, model=model, model_cfg=model_cfg()).output)[0]

    def flips(overlap: int) -> float:
        return float((run(overlap, "argmax")[0] != reference.argmax(0)).mean())

    def largest_error(overlap: int) -> float:
        return float(np.abs(run(overlap, "probabilities") / 255 - reference).max())

    # Without overlap, the zero padding at every window border shows; with blending,
    # only uint8 rounding and a residue of weight < 1 % near the borders remain.
    seams, blended = largest_error(0), largest_error(16)
    print(f"largest probability error: {seams:.4f} without overlap, {blended:.4f} blended")
    assert seams > 0.1
    assert blended < 0.01
    seam_flips, blended_flips = flips(0), flips(16)
    print(f"classes differing: {seam_flips:.5f} without overlap, {blended_flips:.5f} blended")
    assert blended_flips < seam_flips / 5


def test_nodata_stays_nodata_and_empty_windows_are_skipped(tmp_path: Path) -> None:
    pixels = random_pixels(200, 260, seed=3)
    pixels[:, :100, :100] = 0  # nodata: every band 0 (the file's nodata value)
    pixels[:, 150:, 200:210] = 0
    aerial = write_raster(tmp_path / "a.tif", pixels, nodata=0)
    nodata = (pixels == 0).all(axis=0)
    model = Pointwise()
    result = detect(settings(tmp_path, aerial), model=model, model_cfg=model_cfg())
    out = read(result.output)[0][0]
    np.testing.assert_array_equal(out == NODATA, nodata)
    np.testing.assert_array_equal(out[~nodata], full_pass(model, pixels).argmax(0)[~nodata])
    assert result.predicted < result.processed == result.windows  # windows of nodata only

    probs = settings(tmp_path, aerial, output=str(tmp_path / "p.tif"), output_type="probabilities")
    with rasterio.open(detect(probs, model=model, model_cfg=model_cfg()).output) as src:
        np.testing.assert_array_equal(src.dataset_mask() == 0, nodata)


def test_raster_smaller_than_a_window_with_label_values(tmp_path: Path) -> None:
    pixels = random_pixels(40, 50, seed=4)
    aerial = write_raster(tmp_path / "a.tif", pixels)
    model = Pointwise()
    s = settings(tmp_path, aerial, values="labels")
    out, profile = read(detect(s, model=model, model_cfg=model_cfg()).output)
    assert (profile["height"], profile["width"]) == (40, 50)
    np.testing.assert_array_equal(out[0], full_pass(model, pixels).argmax(0) + 1)  # labels 1..13


def test_other_resolution_is_resampled_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    coarse = Affine(0.4, 0.0, TRANSFORM.c, 0.0, -0.4, TRANSFORM.f)
    aerial = write_raster(tmp_path / "a.tif", random_pixels(60, 70), transform=coarse)
    with caplog.at_level(logging.WARNING):
        result = detect(settings(tmp_path, aerial), model=Pointwise(), model_cfg=model_cfg())
    assert "resampling it (bilinear) to a 140 × 120 grid" in caplog.text
    _, profile = read(result.output)
    assert (profile["width"], profile["height"]) == (140, 120)
    assert profile["transform"] == TRANSFORM


def test_aerial_problems_are_one_clear_error(tmp_path: Path) -> None:
    three = write_raster(tmp_path / "rgb.tif", random_pixels(70, 70)[:3])
    with pytest.raises(DataError, match=r"rgb\.tif: has 3 band\(s\), band\(s\) \[4, 5\]"):
        detect(settings(tmp_path, three), model=Pointwise(), model_cfg=model_cfg())
    with pytest.raises(ConfigError, match="'aerial_bands': 2 band"):
        detect(
            settings(tmp_path, three, aerial_bands=[1, 2]), model=Pointwise(), model_cfg=model_cfg()
        )
    aerial = write_raster(tmp_path / "a.tif", random_pixels(70, 70))
    with pytest.raises(ConfigError, match="'overlap': 64 px, must be smaller than the window"):
        detect(settings(tmp_path, aerial, overlap=64), model=Pointwise(), model_cfg=model_cfg())
    with pytest.raises(ConfigError, match="'metadata': the model was trained with aerial metadata"):
        detect(
            settings(tmp_path, aerial), model=Pointwise(), model_cfg=model_cfg(aerial_metadata=True)
        )
    (tmp_path / "out.tif").write_bytes(b"an older result")
    with pytest.raises(ConfigError, match="out.tif exists; set overwrite: true"):
        detect(settings(tmp_path, aerial), model=Pointwise(), model_cfg=model_cfg())
    assert (tmp_path / "out.tif").read_bytes() == b"an older result"


class KilledError(Exception):
    """Stands for a run stopped mid-way (Lightning turns Ctrl-C into SystemExit)."""


class FailingAfter(Pointwise):
    """Raises at the ``calls``-th forward pass: a run stopped mid-way."""

    def __init__(self, calls: int) -> None:
        super().__init__()
        self.calls = calls

    def forward(self, aerial: torch.Tensor, *args: Any, **kwargs: Any) -> SegmentationOutput:
        self.calls -= 1
        if self.calls < 0:
            raise KilledError
        return super().forward(aerial, *args)


def test_interrupted_run_leaves_no_output_and_resumes(tmp_path: Path) -> None:
    pixels = random_pixels(250, 200, seed=5)
    aerial = write_raster(tmp_path / "a.tif", pixels)
    s = settings(tmp_path, aerial, batch_size=2)
    # 5 strips of 4 windows, 2 chunks each: killed in the 6th chunk (strip 2).
    with pytest.raises(KilledError):
        detect(s, model=FailingAfter(5), model_cfg=model_cfg())
    parts = tmp_path / "out.tif.parts"
    assert not (tmp_path / "out.tif").exists()
    assert sorted(p.name for p in parts.glob("*.done")) == ["strip00000.done", "strip00001.done"]
    assert not list(parts.glob(".*.tmp"))  # the unfinished strip's files were removed

    with pytest.raises(ConfigError, match="overlap differ"):
        detect(settings(tmp_path, aerial, overlap=8), model=Pointwise(), model_cfg=model_cfg())

    result = detect(s, model=FailingAfter(10**6), model_cfg=model_cfg())  # the same model
    assert result.processed == 12 and result.windows == 20
    np.testing.assert_array_equal(
        read(result.output)[0][0], full_pass(Pointwise(), pixels).argmax(0)
    )


def _tiny_checkpoint(path: Path, cfg: dict[str, Any], reference_style: bool = False) -> nn.Module:
    config = config_from_dict(cfg)
    torch.manual_seed(0)
    task = SegmentationTask(config, patch_size=PATCH)
    if reference_style:  # the reference's checkpoints: weights only, no flair2 config
        torch.save({"state_dict": task.state_dict()}, path)
    else:
        torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}, path)
    return task.model.eval()


def test_command_line_with_a_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pixels = random_pixels(100, 130, seed=6)
    write_raster(tmp_path / "a.tif", pixels)
    model = _tiny_checkpoint(tmp_path / "m.ckpt", UNET)
    zone = {"aerial": "a.tif", "checkpoint": "m.ckpt", "output": "landcover.tif", "overlap": 16}
    (tmp_path / "zone.yml").write_text(yaml.safe_dump(zone))
    args = ["detect", "--config", str(tmp_path / "zone.yml"), "--set", "accelerator=cpu"]
    assert main([*args, "--set", "enable_progress_bar=false"]) == 0
    out = read(tmp_path / "landcover.tif")[0][0]
    # The same model injected gives the same pixels: the checkpoint's weights were used.
    injected = detect(
        settings(tmp_path, tmp_path / "a.tif", output=str(tmp_path / "injected.tif")),
        model=model,
        model_cfg=model_cfg(),
    )
    np.testing.assert_array_equal(out, read(injected.output)[0][0])

    _tiny_checkpoint(tmp_path / "ref.ckpt", UNET, reference_style=True)
    reference = ["--set", "checkpoint=" + str(tmp_path / "ref.ckpt"), "--set", "output=ref.tif"]
    assert main([*args, *reference]) == 2
    err = capsys.readouterr().err
    assert "error: " in err and "'model_config'" in err and "holds no flair2 configuration" in err
    assert len(err.strip().splitlines()) == 1


@pytest.fixture(scope="module")
def area(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("area")
    return generate_toy_area(
        folder, width=600, height=450, dates=4, sat_patch_size=8, nodata_corner=True
    )


def test_utt_with_sentinel2_series(area: Any, tmp_path: Path) -> None:
    cfg = config_from_dict(TINY_UTT)
    torch.manual_seed(0)
    model = build_model(cfg, PATCH).eval()
    s = settings(
        tmp_path,
        area.aerial,
        sentinel2=str(area.sentinel),
        sentinel2_masks=str(area.masks),
        metadata=area.metadata,
        batch_size=8,
    )
    result = detect(s, model=model, model_cfg=cfg)
    out, profile = read(result.output)
    assert (profile["width"], profile["height"], profile["transform"]) == (
        area.width,
        area.height,
        area.transform,
    )
    with rasterio.open(area.aerial) as src:
        nodata = src.dataset_mask() == 0
    assert nodata.any()
    np.testing.assert_array_equal(out[0] == NODATA, nodata)
    assert out[0][~nodata].max() < 13

    with pytest.raises(ConfigError, match="'sentinel2': the model is U-T&T"):
        detect(
            settings(tmp_path, area.aerial, output=str(tmp_path / "x.tif"), metadata=area.metadata),
            model=model,
            model_cfg=cfg,
        )


def test_broken_sentinel2_file_is_named(area: Any, tmp_path: Path) -> None:
    import shutil

    cfg = config_from_dict(TINY_UTT)
    series = tmp_path / "s2"
    shutil.copytree(area.sentinel, series)
    files = sorted(p for p in series.glob("*.tif"))
    truncated = files[1]
    truncated.write_bytes(truncated.read_bytes()[:2000])
    s = settings(tmp_path, area.aerial, sentinel2=str(series), metadata=area.metadata)
    with pytest.raises(DataError, match=truncated.name):
        detect(s, model=build_model(cfg, PATCH), model_cfg=cfg)

    shutil.rmtree(series)
    shutil.copytree(area.sentinel, series)
    moved = sorted(series.glob("*.tif"))[2]
    with rasterio.open(moved, "r+") as dst:
        t = dst.transform
        dst.transform = Affine(t.a, t.b, t.c + 500.0, t.d, t.e, t.f)
    with pytest.raises(DataError, match=moved.name):
        detect(s, model=build_model(cfg, PATCH), model_cfg=cfg)
    assert not (tmp_path / "out.tif").exists()


def test_two_processes_write_the_same_output(tmp_path: Path) -> None:
    pixels = random_pixels(180, 150, seed=7)
    write_raster(tmp_path / "a.tif", pixels)
    model = _tiny_checkpoint(tmp_path / "m.ckpt", UNET)
    zone = {
        "aerial": "a.tif",
        "checkpoint": "m.ckpt",
        "output": "ddp.tif",
        "overlap": 16,
        "accelerator": "cpu",
        "devices": 2,
        "strategy": "ddp",
        "enable_progress_bar": False,
    }
    (tmp_path / "zone.yml").write_text(yaml.safe_dump(zone))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, "-m", "flair2.cli", "detect", "--config", str(tmp_path / "zone.yml")],
        capture_output=True,
        text=True,
        timeout=400,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    single = detect(
        settings(tmp_path, tmp_path / "a.tif", output=str(tmp_path / "one.tif")),
        model=model,
        model_cfg=model_cfg(),
    )
    np.testing.assert_array_equal(read(tmp_path / "ddp.tif")[0], read(single.output)[0])
    assert not (tmp_path / "ddp.tif.parts").exists()
