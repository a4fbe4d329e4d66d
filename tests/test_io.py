"""Output files: verified atomic writes, outputs kept off the inputs, locks, fingerprints."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

from flair2.errors import ConfigError, OutputError, os_error_message
from flair2.io import (
    atomic_path,
    check_output_outside,
    file_fingerprint,
    output_lock,
    write_text_atomic,
)
from flair2.rasters import check_raster_readable, check_raster_written
from hostile import lock_held_elsewhere

pytestmark = pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")


def _write_tif(path: Path, pixels: np.ndarray) -> None:
    with rasterio.open(
        path, "w", driver="GTiff", width=pixels.shape[1], height=pixels.shape[0], count=1,
        dtype="uint8", compress="lzw",
    ) as dst:  # fmt: skip
        dst.write(pixels, 1)


def test_a_file_that_reads_back_wrong_never_takes_its_final_name(tmp_path: Path) -> None:
    pixels = np.arange(64 * 64, dtype=np.uint32).reshape(64, 64).astype(np.uint8)
    final = tmp_path / "PRED_1.tif"
    verify = lambda tmp: check_raster_written(tmp, pixels)  # noqa: E731
    with pytest.raises(OutputError) as err, atomic_path(final, verify=verify) as tmp:
        _write_tif(tmp, pixels)
        # What a full disk does to GDAL: the file is cut short, and nothing is raised.
        os.truncate(tmp, tmp.stat().st_size // 2)
    message = str(err.value)
    assert str(final) in message and "disk full" in message and ".tmp" not in message
    assert list(tmp_path.iterdir()) == []  # neither the final name nor the temporary


def test_a_complete_file_passes_the_read_back(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 13, (32, 48), dtype=np.uint8)
    final = tmp_path / "PRED_2.tif"
    with atomic_path(final, verify=lambda tmp: check_raster_written(tmp, pixels)) as tmp:
        _write_tif(tmp, pixels)
    with rasterio.open(final) as src:
        assert np.array_equal(src.read(1), pixels)
    check_raster_readable(final)
    os.truncate(final, final.stat().st_size // 2)
    with pytest.raises(OSError):
        check_raster_readable(final)
    with pytest.raises((OSError, ValueError)):
        check_raster_written(final, pixels)


def test_an_os_error_while_writing_names_the_final_file(tmp_path: Path) -> None:
    final = tmp_path / "report.json"
    with pytest.raises(OutputError) as err, atomic_path(final) as tmp:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert str(err.value).startswith(f"{final}: cannot be written (no space left on the device")
    assert not final.exists() and list(tmp_path.iterdir()) == []


def test_a_folder_that_cannot_be_created_is_one_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match=r"file/out\.txt: cannot be written \(.*a file"):
        write_text_atomic(tmp_path / "file" / "out.txt", "y")


def test_os_error_messages_name_the_path_and_the_fix() -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "/data/out")
    assert os_error_message(full) == (
        "/data/out: no space left on the device: free some space or write the outputs elsewhere"
    )
    denied = PermissionError(errno.EACCES, "Permission denied", "/ro/x")
    assert os_error_message(denied).startswith("/ro/x: permission denied")
    read_only = OSError(errno.EROFS, "Read-only file system", "/mnt/x")
    assert "read-only file system" in os_error_message(read_only)


def test_outputs_may_not_replace_or_enter_an_input(tmp_path: Path) -> None:
    aerial = tmp_path / "aerial"
    aerial.mkdir()
    ortho = tmp_path / "ortho.tif"
    ortho.write_bytes(b"x")
    inputs = {"aerial": str(aerial), "ortho": str(ortho), "unused": ""}
    with pytest.raises(ConfigError, match=r"--out: .*ortho\.tif is the input ortho"):
        check_output_outside(ortho, inputs, name="--out")
    with pytest.raises(ConfigError, match="lies inside the input aerial"):
        check_output_outside(aerial / "sub" / "preds", inputs, name="--out")
    with pytest.raises(ConfigError, match="is the input aerial"):
        check_output_outside(tmp_path / "x" / ".." / "aerial", inputs, name="--out")
    check_output_outside(tmp_path / "predictions", inputs, name="--out")  # beside: fine


def test_a_second_run_on_a_locked_output_is_refused_naming_the_first(tmp_path: Path) -> None:
    lock = tmp_path / "out" / ".flair2.lock"
    with lock_held_elsewhere(lock, "flair2 predict") as pid:
        with pytest.raises(OutputError) as err, output_lock(lock, "flair2 predict"):
            pass
        message = str(err.value)
        assert message.startswith(f"{lock.parent}: in use by another run (flair2 predict, pid ")
        assert str(pid) in message
    # A killed holder leaves its lock file but not its lock: the next run goes ahead.
    assert lock.is_file()
    deadline = time.monotonic() + 10
    while True:
        try:
            with output_lock(lock, "flair2 predict"):
                assert f"pid {os.getpid()}" in lock.read_text()
            assert not lock.exists()  # let go: the file goes with the lock
            break
        except OutputError:
            assert time.monotonic() < deadline, "the lock outlived its holder"
            time.sleep(0.1)


def test_fingerprints_follow_the_content_not_the_path(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.ckpt", tmp_path / "b.ckpt", tmp_path / "c.ckpt"
    a.write_bytes(b"weights" * 1000)
    b.write_bytes(b"weights" * 1000)
    c.write_bytes(b"weights" * 999 + b"Weight")
    assert file_fingerprint(a)["sha256"] == file_fingerprint(b)["sha256"]
    assert file_fingerprint(a)["sha256"] != file_fingerprint(c)["sha256"]
    assert file_fingerprint(a) == {
        "name": "a.ckpt",
        "size": 7000,
        "sha256": file_fingerprint(a)["sha256"],
    }
