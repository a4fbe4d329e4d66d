"""Checkpoint files are read without running code they carry, unless the user trusts them."""

from __future__ import annotations

import argparse
import pathlib
from pathlib import Path

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.data import AttributeDict

from flair2 import trusted_checkpoints
from flair2.errors import CheckpointError, UnsafeCheckpointError
from flair2.models import read_checkpoint_file
from hostile import payload_checkpoint


def _payload_checkpoint(path: Path, marker: Path) -> Path:
    """A valid-looking checkpoint that also carries a payload."""
    state = {"state_dict": {"model.w": torch.ones(2)}, "epoch": 3}
    return payload_checkpoint(path, marker, state)


def test_a_checkpoint_carrying_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    path = _payload_checkpoint(tmp_path / "model.ckpt", marker)
    with pytest.raises(UnsafeCheckpointError) as err:
        read_checkpoint_file(path)
    message = str(err.value)
    assert message.startswith(f"checkpoint file {path}: refused")
    assert "io.open" in message and "--trust-checkpoint" in message and "\n" not in message
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        read_checkpoint_file(path, mmap=True)
    assert not marker.exists()


def test_trusting_a_file_is_explicit_and_scoped(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    path = _payload_checkpoint(tmp_path / "model.ckpt", marker)
    with trusted_checkpoints():
        data = read_checkpoint_file(path)
    assert data["epoch"] == 3 and torch.equal(data["state_dict"]["model.w"], torch.ones(2))
    assert marker.exists()  # the opt-in does what it says: the file's code ran
    marker.unlink()
    with pytest.raises(UnsafeCheckpointError):  # and only inside the block
        read_checkpoint_file(path)
    assert not marker.exists()


def test_what_lightning_checkpoints_legitimately_hold_loads_without_trust(
    tmp_path: Path,
) -> None:
    path = tmp_path / "lightning.ckpt"
    torch.save(
        {
            "state_dict": {"model.w": torch.arange(3.0)},
            "hyper_parameters": argparse.Namespace(lr=0.001, out=pathlib.PosixPath("/runs/a")),
            "hparams": AttributeDict(batch_size=4, classes=[1, 2]),
            "best_model_score": np.float64(0.25),
            "windows_path": pathlib.PureWindowsPath("C:/runs/a"),
        },
        path,
    )
    data = read_checkpoint_file(path)
    assert data["hyper_parameters"].lr == 0.001
    assert data["hyper_parameters"].out == Path("/runs/a")
    assert data["hparams"] == {"batch_size": 4, "classes": [1, 2]}
    assert float(data["best_model_score"]) == 0.25
    assert str(data["windows_path"]) == "C:\\runs\\a"


def test_a_damaged_file_is_unreadable_not_unsafe(tmp_path: Path) -> None:
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read") as err:
        read_checkpoint_file(junk)
    assert not isinstance(err.value, UnsafeCheckpointError)
    assert "\n" not in str(err.value)
