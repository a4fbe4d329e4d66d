"""Issue 19 through the command line: unsafe checkpoints, failed writes, mixed runs, OS errors.

Every case ends the same way for the user: one line on stderr naming the file
or option, exit status 2 (130 for Ctrl-C), and no output under its final name
that is not complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import rasterio
import yaml

from conftest import tiny_settings
from flair2.cli import main
from flair2.config import config_from_dict
from flair2.prediction import writer as writer_module
from flair2.prediction.run_record import RECORD_NAME
from flair2.training import train
from flair2.training.task import SegmentationTask
from hostile import lock_held_elsewhere, payload_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


@pytest.fixture(scope="module")
def trained(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One trained run (1 epoch): its best checkpoint."""
    out = tmp_path_factory.mktemp("trained")
    result = train(config_from_dict(tiny_settings(tiny_root, out)))
    assert result.best_checkpoint is not None
    return result.best_checkpoint


@pytest.fixture
def config_file(tiny_root: Path, tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yml"
    path.write_text(yaml.safe_dump(tiny_settings(tiny_root, tmp_path / "out")))
    return path


def _predict(config: Path, checkpoint: Path, out: Path, *extra: str) -> list[str]:
    return [
        "predict",
        "-c",
        str(config),
        "--checkpoint",
        str(checkpoint),
        "--out",
        str(out),
        *extra,
    ]


def _error_line(capsys: pytest.CaptureFixture, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error message"
    line = err[-1]
    assert line.startswith(f"flair2 {command}: error: "), line
    return line


def _all_predictions_complete(folder: Path) -> list[str]:
    names = []
    for path in sorted(folder.glob("PRED_*.tif")):
        with rasterio.open(path) as src:
            assert src.read(1).shape == (64, 64)
        names.append(path.name)
    return names


# ---------------------------------------------------------------------------
# 1. Checkpoints that would run code


def _payload_checkpoint(source: Path, path: Path, marker: Path) -> Path:
    """A real, loadable checkpoint with a payload that would create ``marker``."""
    import torch

    return payload_checkpoint(
        path, marker, torch.load(source, map_location="cpu", weights_only=True)
    )


def test_predict_and_resume_refuse_a_checkpoint_that_carries_code(
    trained: Path, config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    marker = tmp_path / "MARKER"
    bad = _payload_checkpoint(trained, tmp_path / "bad.ckpt", marker)
    assert main(_predict(config_file, bad, tmp_path / "preds")) == 2
    line = _error_line(capsys, "predict")
    assert f"checkpoint file {bad}: refused" in line and "--trust-checkpoint" in line
    assert not marker.exists() and not list((tmp_path / "preds").glob("PRED_*"))

    assert main(["train", "-c", str(config_file), "--resume", str(bad)]) == 2
    assert f"checkpoint file {bad}: refused" in _error_line(capsys, "train")
    assert not marker.exists()

    # The opt-in: the file is a valid checkpoint, so the run goes through.
    args = _predict(config_file, bad, tmp_path / "trusted", "--trust-checkpoint")
    assert main(args) == 0
    assert marker.exists()
    assert len(_all_predictions_complete(tmp_path / "trusted")) == 3


# ---------------------------------------------------------------------------
# 2. Writes that cannot lie


def test_a_failed_write_fails_the_run_and_leaves_nothing_partial(
    trained: Path,
    config_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    original = writer_module.atomic_path
    calls = {"n": 0}

    @contextlib.contextmanager
    def short_writes(path: Path, **kwargs: object) -> Iterator[Path]:
        # GDAL on a full disk: from the second file on, the file is cut short
        # and nothing is raised.
        with original(path, **kwargs) as tmp:
            yield tmp
            calls["n"] += 1
            if calls["n"] > 1:
                os.truncate(tmp, tmp.stat().st_size // 3)

    monkeypatch.setattr(writer_module, "atomic_path", short_writes)
    out = tmp_path / "preds"
    assert main(_predict(config_file, trained, out)) == 2
    line = _error_line(capsys, "predict")
    assert "PRED_" in line and "cannot be written" in line and "disk full" in line
    assert len(_all_predictions_complete(out)) == 1  # the one complete file, nothing else
    assert not list(out.glob(".*.tmp"))

    monkeypatch.setattr(writer_module, "atomic_path", original)
    assert main(_predict(config_file, trained, out)) == 0  # the re-run finishes the folder
    assert len(_all_predictions_complete(out)) == 3


def _mount_tmpfs(where: Path, size: str) -> bool:
    if sys.platform != "linux" or shutil.which("mount") is None:
        return False
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
    )
    return done.returncode == 0


def test_predict_on_a_really_full_disk(
    trained: Path, config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "14k"):
        pytest.skip("cannot mount a small tmpfs here (needs root on Linux)")
    try:
        assert main(_predict(config_file, trained, disk / "preds")) == 2
        line = _error_line(capsys, "predict")
        assert str(disk / "preds") in line and "cannot be written" in line
        # Whatever is under a final name is complete, and nothing hidden is left.
        _all_predictions_complete(disk / "preds")
        assert not list((disk / "preds").glob(".*.tmp"))
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_a_checkpoint_that_does_not_read_back_fails_training(
    config_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from flair2.training import callbacks

    def damaged_save(obj: Any, handle: Any) -> None:
        torch.save(obj, handle)
        handle.seek(200)
        handle.write(b"\0" * 64)  # what a failed write leaves

    monkeypatch.setattr(callbacks.torch, "save", damaged_save)
    assert main(["train", "-c", str(config_file)]) == 2
    line = _error_line(capsys, "train")
    assert "checkpoints" in line and ".ckpt: cannot be written" in line
    assert not list((tmp_path / "out" / "run" / "checkpoints").glob("*.ckpt"))


# ---------------------------------------------------------------------------
# 3. Runs that cannot be mixed, outputs that cannot replace inputs


def test_a_folder_keeps_to_one_run(
    trained: Path, config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "preds"
    assert main(_predict(config_file, trained, out)) == 0
    assert (out / RECORD_NAME).is_file()

    # Another checkpoint (here: the same weights, one more byte) is refused.
    other = tmp_path / "other.ckpt"
    other.write_bytes(trained.read_bytes() + b"\0")
    assert main(_predict(config_file, other, out)) == 2
    assert "holds predictions of another run (checkpoint" in _error_line(capsys, "predict")
    assert main(_predict(config_file, trained, out, "--tta")) == 2
    assert "tta (False there, True now)" in _error_line(capsys, "predict")

    # A complete folder still needs its checkpoint to exist.
    assert main(_predict(config_file, tmp_path / "gone.ckpt", out)) == 2
    assert "gone.ckpt: not found" in _error_line(capsys, "predict")

    # --overwrite starts afresh with the other checkpoint.
    assert main(_predict(config_file, other, out, "--overwrite")) == 0
    assert main(_predict(config_file, other, out)) == 0  # and then skips its own files

    # Files of an unrecorded run (another tool, an older flair2) are not adopted.
    (out / RECORD_NAME).unlink()
    assert main(_predict(config_file, other, out)) == 2
    assert "unrecorded run" in _error_line(capsys, "predict")


def test_outputs_that_would_land_on_inputs_are_refused(
    trained: Path,
    config_file: Path,
    tiny_root: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    aerial = tiny_root / "flair_2_aerial_test"
    before = sorted(p.name for p in aerial.rglob("*"))
    assert main(_predict(config_file, trained, aerial / "preds")) == 2
    assert "lies inside the input data.path_aerial_test" in _error_line(capsys, "predict")
    assert main(_predict(config_file, trained, trained)) == 2
    assert "is the input checkpoint" in _error_line(capsys, "predict")
    assert sorted(p.name for p in aerial.rglob("*")) == before


def test_stats_may_not_overwrite_the_metadata_it_reads(
    config_file: Path, tiny_root: Path, capsys: pytest.CaptureFixture
) -> None:
    metadata = yaml.safe_load(config_file.read_text())["data"]["path_metadata_aerial"]
    before = Path(metadata).read_bytes()
    assert main(["stats", "-c", str(config_file), "--out", metadata]) == 2
    assert "is the input data.path_metadata_aerial" in _error_line(capsys, "stats")
    assert Path(metadata).read_bytes() == before


# ---------------------------------------------------------------------------
# 4. Operating-system errors, locks, Ctrl-C


def test_an_out_that_is_a_file_is_one_line(
    trained: Path, config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    blocker = tmp_path / "preds"
    blocker.write_text("not a folder")
    assert main(_predict(config_file, trained, blocker)) == 2
    line = _error_line(capsys, "predict")
    assert str(blocker) in line and "a file is in the way" in line
    assert blocker.read_text() == "not a folder"


def test_permission_errors_are_one_line(
    trained: Path,
    config_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import errno
    import tempfile

    def denied(*args: object, **kwargs: object) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied", str(kwargs.get("dir")))

    # Root ignores file modes, so a read-only folder is simulated where files are created.
    monkeypatch.setattr(tempfile, "mkstemp", denied)
    assert main(_predict(config_file, trained, tmp_path / "preds")) == 2
    line = _error_line(capsys, "predict")
    assert "permission denied: use a folder you can write to" in line


def test_a_second_predict_into_a_busy_folder_is_refused(
    trained: Path, config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "preds"
    with lock_held_elsewhere(out / ".flair2.lock", "flair2 predict") as pid:
        assert main(_predict(config_file, trained, out)) == 2
        line = _error_line(capsys, "predict")
        assert f"in use by another run (flair2 predict, pid {pid}" in line
        assert not list(out.glob("PRED_*"))


def test_ctrl_c_exits_130_saying_interrupted(
    trained: Path,
    config_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def interrupt(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(SegmentationTask, "predict_step", interrupt)
    assert main(_predict(config_file, trained, tmp_path / "preds")) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "flair2 predict: interrupted"
    # Lightning ignores SIGINT once interrupted: the default handler is back.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    monkeypatch.setattr(SegmentationTask, "training_step", interrupt)
    assert main(["train", "-c", str(config_file)]) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == "flair2 train: interrupted"
    assert not list((tmp_path / "out" / "run").rglob(".*.tmp"))
