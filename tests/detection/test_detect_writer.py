"""Part files of whole-area detection: strips, segment merges, resume state, the final COG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.enums import MaskFlags
from rasterio.transform import Affine

from flair2.classes import PALETTE, hex_to_rgb
from flair2.detection.grid import WindowGrid, blend_weights
from flair2.detection.output import assemble_output
from flair2.detection.writer import (
    NODATA,
    OutputSpec,
    PartsFolder,
    StripWriter,
    merge_segment,
)
from flair2.errors import ConfigError

K = 4
TRANSFORM = Affine(0.2, 0.0, 651_234.6, 0.0, -0.2, 6_862_345.8)
CRS = "EPSG:2154"


def _field(height: int, width: int, seed: int = 0) -> np.ndarray:
    """(K, H, W) class probabilities that vary over the raster."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(K, height, width)).astype(np.float32)
    e = np.exp(logits - logits.max(0))
    return e / e.sum(0)


def _strip_sums(grid: WindowGrid, strip: int, probs: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """What the model loop accumulates for one strip: Σ over its windows of w·valid·p."""
    top, bottom = grid.rows[strip], grid.strip_stop(strip)
    weights = blend_weights(grid.patch, grid.overlap)
    sums = np.zeros((K, bottom - top, grid.width), dtype=np.float32)
    for j, col in enumerate(grid.cols):
        stop = grid.col_stop(j)
        w = weights[: bottom - top, : stop - col] * valid[top:bottom, col:stop]
        sums[:, :, col:stop] += probs[:, top:bottom, col:stop] * w
    return sums


def _write_strip(
    parts: PartsFolder, grid: WindowGrid, strip: int, spec: OutputSpec, sums: np.ndarray
) -> None:
    writer = StripWriter(parts, grid, strip, spec, TRANSFORM, rasterio.crs.CRS.from_string(CRS))
    # In two column chunks, as the model loop flushes them.
    writer.write(0, torch.from_numpy(sums[..., :256]))
    writer.write(256, torch.from_numpy(sums[..., 256:]))
    writer.commit()
    for seg in grid.strip_segments(strip):
        if seg.shared:
            merge_segment(parts, grid, seg, spec)


@pytest.fixture
def grid() -> WindowGrid:
    return WindowGrid(height=150, width=300, patch=64, overlap=16)


def test_encode_classes_labels_nodata_and_probabilities() -> None:
    sums = np.zeros((K, 1, 3), dtype=np.float32)
    sums[2, 0, 0] = 0.6
    sums[1, 0, 0] = 0.2
    sums[3, 0, 1] = 2.0  # total weight 2: still class 3, probability 1
    # column 2: no weight at all → nodata
    assert OutputSpec(K).encode(sums).tolist() == [[[2, 3, NODATA]]]
    assert OutputSpec(K, values="labels").encode(sums).tolist() == [[[3, 4, NODATA]]]
    probs = OutputSpec(K, probabilities=True).encode(sums)
    assert probs.shape == (K + 1, 1, 3)
    assert probs[:, 0, 0].tolist() == [0, 64, 191, 0, 255]  # 0.25 and 0.75 of 255, valid
    assert probs[:, 0, 1].tolist() == [0, 0, 0, 255, 255]
    assert probs[:, 0, 2].tolist() == [0, 0, 0, 0, 0]  # validity band 0


def test_strips_in_any_order_merge_into_the_exact_blend(tmp_path: Path, grid: WindowGrid) -> None:
    probs = _field(grid.height, grid.width)
    valid = np.ones((grid.height, grid.width), dtype=bool)
    valid[:20, :30] = False
    spec = OutputSpec(K)
    parts = PartsFolder(tmp_path / "out.tif.parts")
    parts.prepare({"run": 1}, overwrite=False)
    order = [2, 0, 1]  # a shared segment is merged by whichever strip comes last
    assert grid.num_strips == 3
    shared = [s for s in grid.segments if s.shared]
    for n, strip in enumerate(order):
        _write_strip(parts, grid, strip, spec, _strip_sums(grid, strip, probs, valid))
        if n == 1:  # strips 2 and 0 done: they share nothing, nothing merged yet
            assert not any(parts.final(s).exists() for s in shared)
            assert parts.partial(shared[0], 0).exists()
    assert parts.done_strips() == {0, 1, 2}
    # Every shared segment was merged as soon as its strips were done; the sums are gone.
    assert all(parts.final(s).exists() for s in shared)
    assert not list(parts.root.glob("*.sums.tif"))

    out = tmp_path / "out.tif"
    assemble_output(parts, grid, spec, TRANSFORM, rasterio.crs.CRS.from_string(CRS), out)
    assert not parts.root.exists()
    with rasterio.open(out) as src:
        classes = src.read(1)
        assert (src.width, src.height, src.transform, src.crs.to_string()) == (
            grid.width,
            grid.height,
            TRANSFORM,
            CRS,
        )
        assert src.nodata == NODATA
        assert src.compression.name.lower() == "lzw"
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert src.profile["tiled"]
        assert src.tags()["FLAIR2_VALUES"] == "model"
        colors = src.colormap(1)
        assert [colors[i][:3] for i in range(K)] == [hex_to_rgb(c) for c in PALETTE[:K]]
    expected = probs.argmax(0)
    expected[~valid] = NODATA
    np.testing.assert_array_equal(classes, expected)


def test_probability_output_has_a_mask_and_class_names(tmp_path: Path) -> None:
    grid = WindowGrid(height=70, width=300, patch=64, overlap=16)
    probs = _field(grid.height, grid.width, seed=1)
    valid = np.ones((grid.height, grid.width), dtype=bool)
    valid[-5:, -7:] = False
    spec = OutputSpec(K, probabilities=True)
    parts = PartsFolder(tmp_path / "p.tif.parts")
    parts.prepare({}, overwrite=False)
    for strip in range(grid.num_strips):
        _write_strip(parts, grid, strip, spec, _strip_sums(grid, strip, probs, valid))
    out = tmp_path / "p.tif"
    assemble_output(parts, grid, spec, TRANSFORM, None, out)
    with rasterio.open(out) as src:
        values = src.read()
        mask = src.dataset_mask()
        assert src.mask_flag_enums[0] == [MaskFlags.per_dataset]
        assert src.descriptions[:2] == ("building", "pervious surface")
        assert src.tags()["FLAIR2_PROBABILITY_SCALE"] == "255"
    np.testing.assert_array_equal(mask > 0, valid)
    expected = np.rint(probs * 255)
    assert np.abs(values[:, valid].astype(int) - expected[:, valid]).max() <= 1


def test_abort_leaves_nothing_and_the_strip_stays_to_do(tmp_path: Path, grid: WindowGrid) -> None:
    parts = PartsFolder(tmp_path / "o.tif.parts")
    parts.prepare({}, overwrite=False)
    writer = StripWriter(parts, grid, 1, OutputSpec(K), TRANSFORM, None)
    writer.write(0, torch.ones((K, 64, 256)))
    writer.abort()
    assert sorted(p.name for p in parts.root.iterdir()) == ["manifest.json"]
    assert parts.done_strips() == set()


def test_a_claimed_segment_is_merged_once(tmp_path: Path, grid: WindowGrid) -> None:
    probs = _field(grid.height, grid.width)
    valid = np.ones((grid.height, grid.width), dtype=bool)
    spec = OutputSpec(K)
    parts = PartsFolder(tmp_path / "o.tif.parts")
    parts.prepare({}, overwrite=False)
    seg = next(s for s in grid.segments if s.shared)
    parts.claim(seg).touch()  # another process is merging it
    for strip in seg.strips:
        _write_strip(parts, grid, strip, spec, _strip_sums(grid, strip, probs, valid))
    assert not parts.final(seg).exists()
    assert merge_segment(parts, grid, seg, spec) is False
    assert merge_segment(parts, grid, seg, spec, force=True) is True
    assert parts.final(seg).exists() and not parts.claim(seg).exists()


def test_prepare_resumes_same_settings_and_refuses_others(tmp_path: Path) -> None:
    parts = PartsFolder(tmp_path / "o.tif.parts")
    parts.prepare({"overlap": 128, "patch_size": 512}, overwrite=False)
    parts.strip_done(3).write_text("{}")
    leftover = parts.root / ".rows_0000000_0000064.tif.abc.tmp"
    leftover.write_bytes(b"half")
    (parts.root / "rows_0000000_0000064.claim").touch()

    parts.prepare({"overlap": 128, "patch_size": 512}, overwrite=False)
    assert parts.done_strips() == {3}
    assert not leftover.exists() and not list(parts.root.glob("*.claim"))

    with pytest.raises(ConfigError, match=r"other settings \(overlap differ\).*overwrite: true"):
        parts.prepare({"overlap": 64, "patch_size": 512}, overwrite=False)
    parts.prepare({"overlap": 64, "patch_size": 512}, overwrite=True)
    assert parts.done_strips() == set()
    assert json.loads(parts.manifest.read_text())["overlap"] == 64
