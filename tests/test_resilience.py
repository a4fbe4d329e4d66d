"""Checkpoints survive interruptions; a diverging run stops with one line and keeps them."""

from __future__ import annotations

import hashlib
import io
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import tiny_settings
from flair2.cli import main
from flair2.io import atomic_path, remove_stale_temporaries
from flair2.training.callbacks import (
    AtomicCheckpointIO,
    collect_random_states,
    restore_random_states,
)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_checkpoint_write_killed_half_way_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = AtomicCheckpointIO()
    path = tmp_path / "checkpoints" / "last.ckpt"
    writer.save_checkpoint({"epoch": 1, "weights": torch.arange(4.0)}, path)
    before = path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600

    def dies_half_way(obj: object, handle: io.BufferedWriter, *args: object, **kw: object) -> None:
        handle.write(before[: len(before) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError, match="No space left"):
        writer.save_checkpoint({"epoch": 2, "weights": torch.zeros(4)}, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["last.ckpt"]
    loaded = writer.load_checkpoint(path)
    assert loaded["epoch"] == 1 and torch.equal(loaded["weights"], torch.arange(4.0))


def test_temporaries_of_a_killed_write_are_removed(tmp_path: Path) -> None:
    # What a SIGKILL during atomic_path leaves: the hidden temporary, never the final name.
    with pytest.raises(KeyboardInterrupt), atomic_path(tmp_path / "x.ckpt") as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    stale = [tmp_path / ".last.ckpt.k2j4.tmp", tmp_path / ".best-epoch=01.ckpt.x9.tmp"]
    kept = [tmp_path / "last.ckpt", tmp_path / ".PRED_1.tif.ab.tmp"]
    for path in stale + kept:
        path.write_bytes(b"")
    removed = remove_stale_temporaries(tmp_path, "*.ckpt")
    assert sorted(removed) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(kept)
    assert remove_stale_temporaries(tmp_path / "missing") == []


def test_random_states_survive_a_checkpoint(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    states = collect_random_states()
    expected = (random.random(), np.random.rand(3), torch.rand(3))
    # Through a file read back as the resume reads it (weights_only).
    torch.save({"random_states": states}, tmp_path / "rng.ckpt")
    loaded = torch.load(tmp_path / "rng.ckpt", weights_only=True)["random_states"]
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    restore_random_states(loaded)
    again = (random.random(), np.random.rand(3), torch.rand(3))
    assert again[0] == expected[0]
    assert np.array_equal(again[1], expected[1])
    assert torch.equal(again[2], expected[2])


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_diverging_training_stops_with_one_line_and_keeps_the_checkpoints(
    tiny_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "tiny.yml"
    settings = tiny_settings(tiny_root, tmp_path / "out", val_domains=["D049_2018"])
    config.write_text(yaml.safe_dump(settings))
    assert main(["train", "--config", str(config)]) == 0
    checkpoints = tmp_path / "out" / "run" / "checkpoints"
    good = _digests(checkpoints)
    assert "last.ckpt" in good and len(good) == 2
    capsys.readouterr()
    huge = ["--set", "lr=1.0e+30"]

    # One step an epoch: the step itself is finite, the weights it leaves are not, so
    # the validation loss is NaN; the run stops before this epoch is checkpointed.
    args = ["train", "--config", str(config), *huge, "--set", "batch_size=4"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "validation loss is nan at epoch 0: the weights diverged" in err[0]
    assert _digests(checkpoints) == good

    # Two steps an epoch: the second step's loss is NaN, named with its patches.
    args = ["train", "--config", str(config), *huge, "--set", "batch_size=2"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "training loss is nan at epoch 0, batch 1 (patches " in err[0]
    named = err[0].split("(patches ", 1)[1].split(")", 1)[0].split(", ")
    train_ids = {p.stem[4:] for p in tiny_root.glob("flair_aerial_train/D0[27]*/*/img/*.tif")}
    assert len(named) == 2 and set(named) <= train_ids
    assert _digests(checkpoints) == good


class _FakeStrategy:
    """Stands for a 2-process DDP strategy in which process 1's loss is NaN."""

    def reduce(self, tensor: torch.Tensor, reduce_op: str) -> torch.Tensor:
        assert reduce_op == "sum"
        return tensor + 1.0  # this process's flag plus process 1's (bad)


class _FakeTrainer:
    world_size = 2
    global_rank = 0
    current_epoch = 4
    strategy = _FakeStrategy()


def test_a_nan_on_another_process_stops_this_one_too(
    tiny_config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flair2.training.task import NonFiniteLossError, SegmentationTask

    task = SegmentationTask(tiny_config(), patch_size=64)
    task._trainer = _FakeTrainer()

    def gather(found: list, mine: object) -> None:
        found[:] = [mine, "training loss is nan at epoch 4, batch 7 (patches 000002) on process 1"]

    monkeypatch.setattr(torch.distributed, "all_gather_object", gather)
    batch = {"patch_id": ["000001"]}
    # This process's loss is finite, yet it stops with the others, naming the bad patch.
    with pytest.raises(NonFiniteLossError, match=r"batch 7 \(patches 000002\) on process 1; lower"):
        task._check_finite_loss(torch.tensor(1.5), batch, 7)
    assert issubclass(NonFiniteLossError, FloatingPointError)
