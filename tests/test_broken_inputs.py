"""Hostile inputs through the command line: one clear line on stderr, exit status 2.

Each case breaks one thing in a fresh copy of the tiny dataset (or the config, or a
checkpoint), runs ``flair2 train`` or ``flair2 predict`` in-process and checks that
the command fails with exit status 2 and a single stderr line naming the file (or
key) and saying what is wrong; never a traceback, never a hang. A few cases run
with ``num_workers: 2`` so the error crosses a DataLoader worker. With
``skip_invalid_patches`` the broken patch is skipped and counted instead.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
import yaml

from conftest import tiny_settings
from flair2.cli import main
from flair2.config import config_from_dict
from flair2.training.task import SegmentationTask

#: The patch every case breaks: a training patch (domain D026_2018), not the first
#: one (the patch size is inferred from the first).
VICTIM = "543623"
TRAIN_DOMAIN = "D026_2018"
VAL_DOMAIN = "D049_2018"
TEST_VICTIM = "935072"


# ---------------------------------------------------------------------------
# Paths in the tiny dataset


def _aerial(root: Path, pid: str = VICTIM) -> Path:
    return next(root.glob(f"flair*_aerial_*/*/*/img/IMG_{pid}.tif"))


def _mask(root: Path, pid: str = VICTIM) -> Path:
    return next(root.glob(f"flair*_labels_*/*/*/msk/MSK_{pid}.tif"))


def _sen(root: Path, suffix: str, domain: str = TRAIN_DOMAIN) -> Path:
    return next(root.glob(f"flair_sen_train/{domain}/*/sen/SEN2*_{suffix}"))


def _centroids(root: Path) -> Path:
    return root / "flair-2_centroids_sp_to_patch.json"


def _metadata(root: Path) -> Path:
    return root / "flair-2_aerial_metadata.json"


# ---------------------------------------------------------------------------
# Ways of breaking files


def _truncate(path: Path, size: int = 300) -> Path:
    path.write_bytes(path.read_bytes()[:size])
    return path


def _garbage(path: Path) -> Path:
    path.write_bytes(b"this is not the file you are looking for\n" * 40)
    return path


def _rewrite_tif(path: Path, array: np.ndarray) -> Path:
    """Replace a GeoTIFF by ``array`` (bands, H, W), keeping its georeferencing."""
    with rasterio.open(path) as src:
        crs, transform = src.crs, src.transform
    bands, height, width = array.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        count=bands,
        height=height,
        width=width,
        dtype=array.dtype.name,
        crs=crs,
        transform=transform,
    ) as dst:
        dst.write(array)
    return path


def _edit_json(path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    return path


_DELETE = object()


def _edit_record(field_name: str, value: Any) -> Callable[[Path], Path]:
    def apply(root: Path) -> Path:
        def edit(data: dict[str, Any]) -> None:
            if value is _DELETE:
                del data[f"IMG_{VICTIM}"][field_name]
            else:
                data[f"IMG_{VICTIM}"][field_name] = value

        return _edit_json(_metadata(root), edit)

    return apply


def _set_centroid(value: Any) -> Callable[[Path], Path]:
    def apply(root: Path) -> Path:
        def edit(data: dict[str, Any]) -> None:
            data[f"IMG_{VICTIM}.tif"] = value

        _edit_json(_centroids(root), edit)
        return _aerial(root)

    return apply


def _drop_metadata_record(root: Path) -> Path:
    _edit_json(_metadata(root), lambda data: data.pop(f"IMG_{VICTIM}"))
    return _aerial(root)


def _products_short(root: Path) -> Path:
    path = _sen(root, "products.txt")
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n")
    return path


def _products_malformed(root: Path) -> Path:
    path = _sen(root, "products.txt")
    lines = path.read_text().splitlines()
    lines[1] = "S2B_MSIL2A_2021XXXXT105021_N0300"
    path.write_text("\n".join(lines) + "\n")
    return path


def _save_npy(suffix: str, make: Callable[[np.ndarray], np.ndarray]) -> Callable[[Path], Path]:
    def apply(root: Path) -> Path:
        path = _sen(root, suffix)
        np.save(path, make(np.load(path)))
        return path

    return apply


def _with_nan(array: np.ndarray) -> np.ndarray:
    out = array.astype(np.float32)
    out[:, 0] = np.nan
    return out


def _empty_domain(root: Path) -> Path:
    folder = root / "flair_aerial_train" / "D099_2021"
    folder.mkdir()
    return folder


def _no_sentinel_for_zone(root: Path) -> Path:
    folder = _sen(root, "data.npy").parent
    shutil.rmtree(folder)
    return folder.parent  # the zone is named


# ---------------------------------------------------------------------------
# The table


@dataclass
class Case:
    """One broken input: how to break it, the command, what the message must say."""

    name: str
    #: Breaks the dataset copy; returns the path whose name the message must hold.
    breaker: Callable[[Path], Path]
    expected: str
    command: str = "train"
    settings: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case("aerial TIFF truncated", lambda r: _truncate(_aerial(r)), "unreadable aerial patch"),
    Case("aerial file is not a TIFF", lambda r: _garbage(_aerial(r)), "unreadable aerial patch"),
    Case(
        "aerial with 3 bands",
        lambda r: _rewrite_tif(_aerial(r), np.zeros((3, 64, 64), np.uint8)),
        "aerial patch has 3 band(s), expected 5",
    ),
    Case(
        "aerial in uint16",
        lambda r: _rewrite_tif(_aerial(r), np.zeros((5, 64, 64), np.uint16)),
        "aerial patch is uint16, expected uint8",
    ),
    Case(
        "aerial of another size",
        lambda r: _rewrite_tif(_aerial(r), np.zeros((5, 32, 32), np.uint8)),
        "aerial patch is 32×32, expected 64×64",
    ),
    Case(
        "labels out of range",
        lambda r: _rewrite_tif(_mask(r), np.full((1, 64, 64), 20, np.uint8)),
        "label values must be in 1–19, found 20–20",
    ),
    Case(
        "labels out of range, in a worker",
        lambda r: _rewrite_tif(_mask(r), np.zeros((1, 64, 64), np.uint8)),
        "label values must be in 1–19, found 0–0",
        settings={"num_workers": 2},
    ),
    Case(
        "mask with 2 bands",
        lambda r: _rewrite_tif(_mask(r), np.ones((2, 64, 64), np.uint8)),
        "mask has 2 band(s), expected 1",
    ),
    Case(
        "Sentinel-2 data truncated",
        lambda r: _truncate(_sen(r, "data.npy"), 1000),
        "is not a readable .npy array",
    ),
    Case(
        "Sentinel-2 data truncated, in a worker",
        lambda r: _truncate(_sen(r, "data.npy"), 1000),
        "is not a readable .npy array",
        settings={"num_workers": 2},
    ),
    Case(
        "Sentinel-2 data is not .npy",
        lambda r: _garbage(_sen(r, "data.npy")),
        "is not a readable .npy array",
    ),
    Case(
        "Sentinel-2 data 3-D",
        _save_npy("data.npy", lambda a: a[:, 0]),
        "expected a (T, C, H, W) Sentinel-2 array",
    ),
    Case(
        "Sentinel-2 data of complex dtype",
        _save_npy("data.npy", lambda a: a.astype(np.complex64)),
        "expected a numeric array",
    ),
    Case(
        "Sentinel-2 data with NaN",
        _save_npy("data.npy", _with_nan),
        "NaN or infinite values in the Sentinel-2 crop of IMG_",
    ),
    Case(
        "Sentinel-2 masks of another shape",
        _save_npy("masks.npy", lambda a: a[:-1]),
        "does not match data shape",
    ),
    Case("products file shorter than T", _products_short, "3 products listed but"),
    Case("products line without a date", _products_malformed, "line 2:"),
    Case(
        "centroid outside the super-area",
        _set_centroid([500, 500]),
        "lies outside the Sentinel-2 super-area",
    ),
    Case("centroid malformed", _set_centroid(["a", 3]), "centroid malformed"),
    Case(
        "centroids JSON truncated",
        lambda r: _truncate(_centroids(r), 40),
        "not valid JSON",
    ),
    Case("metadata: date missing", _edit_record("date", _DELETE), "field 'date' is missing"),
    Case("metadata: malformed date", _edit_record("date", "2021-13-45"), "field 'date'"),
    Case("metadata: malformed time", _edit_record("time", "25h99"), "field 'time'"),
    Case("metadata: camera not text", _edit_record("camera", 42), "field 'camera' is 42"),
    Case("metadata: record missing", _drop_metadata_record, "no record IMG_"),
    Case("empty domain folder", _empty_domain, "no zone folder"),
    Case("zone without Sentinel-2 files", _no_sentinel_for_zone, "Sentinel-2 files missing"),
    Case(
        "config points to a missing folder",
        lambda r: r / "no_such_folder",
        "check config key 'data.path_sen_train'",
        settings={"data.path_sen_train": "{root}/no_such_folder"},
    ),
    Case(
        "test aerial truncated (predict)",
        lambda r: _truncate(_aerial(r, TEST_VICTIM)),
        "unreadable aerial patch",
        command="predict",
    ),
    Case(
        "checkpoint of another architecture (predict)",
        lambda r: r / "unet.ckpt",
        "does not fit the model",
        command="predict-unet",
    ),
    Case(
        "checkpoint of another architecture (train --resume)",
        lambda r: r / "unet-train.ckpt",
        "it looks like a checkpoint of arch=unet",
        command="resume-unet",
    ),
    Case(
        "weights-only file (train --resume)",
        lambda r: r / "unet.ckpt",
        "is not a flair2 training checkpoint (no optimiser or loop state)",
        command="resume-unet",
    ),
    Case(
        "nothing to resume (train --resume last)",
        lambda r: r.parent / "run" / "checkpoints" / "last.ckpt",
        "nothing to resume: start the run without --resume",
        command="resume-last",
    ),
    Case(
        "truncated checkpoint (train --resume)",
        lambda r: _truncate(r / "unet-train.ckpt", 5000),
        "cannot be read",
        command="resume-unet",
    ),
]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory, tiny_root: Path) -> dict[str, Path]:
    """Untrained checkpoints: U-T&T weights, U-Net weights, a U-Net training checkpoint."""
    folder = tmp_path_factory.mktemp("ckpts")
    out: dict[str, Path] = {}
    for arch in ("utt", "unet"):
        cfg = config_from_dict(tiny_settings(tiny_root, folder, arch=arch))
        state = SegmentationTask(cfg, patch_size=64).state_dict()
        out[arch] = folder / f"{arch}.ckpt"
        torch.save({"state_dict": state}, out[arch])
        if arch == "unet":
            out["unet-train"] = folder / "unet-train.ckpt"
            torch.save(
                {"state_dict": state, "loops": {}, "optimizer_states": [], "epoch": 0},
                out["unet-train"],
            )
    return out


def _config_file(root: Path, out: Path, settings: dict[str, Any]) -> Path:
    # One batch holds every training patch: the broken one fails before any step.
    raw = tiny_settings(root, out, val_domains=[VAL_DOMAIN], batch_size=4)
    for key, value in settings.items():
        value = value.format(root=root) if isinstance(value, str) else value
        node = raw
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        node[last] = value
    path = out / "config.yml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_broken_input_gives_one_line_naming_the_file(
    case: Case,
    tiny_root: Path,
    tmp_path: Path,
    checkpoints: dict[str, Path],
    capsys: pytest.CaptureFixture,
) -> None:
    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    for name in ("unet.ckpt", "unet-train.ckpt"):
        shutil.copy(checkpoints[name.removesuffix(".ckpt")], root / name)
    culprit = case.breaker(root)
    config = _config_file(root, tmp_path, case.settings)
    args = {
        "train": ["train", "--config", str(config)],
        "predict": ["predict", "--config", str(config), "--checkpoint", str(checkpoints["utt"])],
        "predict-unet": ["predict", "--config", str(config), "--checkpoint", str(culprit)],
        "resume-unet": ["train", "--config", str(config), "--resume", str(culprit)],
        "resume-last": ["train", "--config", str(config), "--resume", "last"],
    }[case.command]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"flair2 {args[0]}: error: ")
    assert culprit.name in err[0]
    assert case.expected in err[0]
    assert "Traceback" not in err[0]


def test_there_are_at_least_15_kinds_of_broken_input() -> None:
    assert len({c.name for c in CASES}) == len(CASES) >= 15


# ---------------------------------------------------------------------------
# skip_invalid_patches: skipped and counted instead


def test_skip_invalid_patches_trains_and_counts(
    tiny_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from flair2.training import train

    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    _truncate(_aerial(root))
    _rewrite_tif(_mask(root, "503623"), np.zeros((1, 64, 64), np.uint8))
    cfg = config_from_dict(
        tiny_settings(root, tmp_path / "out", val_domains=[VAL_DOMAIN], skip_invalid_patches=True)
    )
    with caplog.at_level(logging.WARNING, logger="flair2"):
        result = train(cfg)
    assert result.last_checkpoint is not None and result.best_val_loss is not None
    warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    # Both broken training patches were replaced by readable ones and reported.
    assert len(warnings) == 1 and "skipped 2 unreadable patch(es)" in warnings[0], warnings


def test_skip_invalid_patches_predicts_the_rest(
    tiny_root: Path, tmp_path: Path, checkpoints: dict[str, Path]
) -> None:
    from flair2.prediction.patches import predict

    root = tmp_path / "data"
    shutil.copytree(tiny_root, root)
    _truncate(_aerial(root, TEST_VICTIM))
    cfg = config_from_dict(tiny_settings(root, tmp_path / "out", skip_invalid_patches=True))
    # What a prediction killed while writing leaves: a hidden temporary, removed on re-run.
    stale = tmp_path / "pred" / ".PRED_912748.tif.k3x9.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"half a file")
    result = predict(cfg, checkpoints["utt"], tmp_path / "pred")
    assert not stale.exists()
    assert (result.written, result.unreadable) == (2, 1)
    names = sorted(p.name for p in (tmp_path / "pred").glob("PRED_*.tif"))
    assert len(names) == 2 and f"PRED_{TEST_VICTIM}.tif" not in names
