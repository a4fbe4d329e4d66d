"""A training killed in its second epoch resumes to exactly the uninterrupted result.

``flair2 train`` runs in a subprocess; as soon as the first epoch's ``last.ckpt``
exists the process group gets SIGKILL (the second epoch is under way: it takes
seconds, the kill lands within a fraction of one). ``flair2 train --resume last``
then finishes the run, and an uninterrupted run with the same seed does all three
epochs in one go. On the CPU the two end bit for bit equal: weights, optimiser and
scheduler states, early-stopping and best-checkpoint states, and the logged
validation metrics of epochs 2 and 3. That needs the random states restored
(data order, augmentation, dropout, worker seeds), which the checkpoint carries.

The interrupted run's first epoch (another process) and the uninterrupted run's
agree as well: same seed, same data, CPU gives the same numbers.

Both in-process runs use one torch thread, like the subprocess
(``OMP_NUM_THREADS=1``): a different thread count may sum in another order.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import yaml

from conftest import tiny_settings
from flair2.cli import main
from flair2.config import config_from_dict
from flair2.training import train

SETTINGS = {
    "num_epochs": 3,
    "batch_size": 1,  # 4 steps an epoch: the second epoch outlasts the kill's delay
    "optimizer": "adamw",
    "scheduler": "cosine",
    "warmup_epochs": 1,
    "num_workers": 2,  # worker seeds must continue too
    "val_domains": ["D049_2018"],
}


@pytest.fixture
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def _val_rows(path: Path) -> list[tuple[str, str, str]]:
    return [
        (r["epoch"], r["val_loss"], r["val_miou"])
        for r in csv.DictReader(path.open())
        if r["val_loss"]
    ]


def _kill_after_first_checkpoint(config: Path, last: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flair2.cli", "train", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the loader workers die with it
    )
    try:
        deadline = time.monotonic() + 300
        while not last.exists():
            if proc.poll() is not None:
                pytest.fail(f"training ended before its first checkpoint: {proc.stderr.read()!r}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint after 300 s")
            time.sleep(0.02)
        time.sleep(0.3)  # into the second epoch
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_killed_training_resumes_to_the_uninterrupted_result(
    tiny_root: Path, tmp_path: Path, one_thread: None
) -> None:
    config = tmp_path / "killed.yml"
    config.write_text(yaml.safe_dump(tiny_settings(tiny_root, tmp_path / "killed", **SETTINGS)))
    run_dir = tmp_path / "killed" / "run"
    last = run_dir / "checkpoints" / "last.ckpt"

    _kill_after_first_checkpoint(config, last)
    # Killed after the first epoch's checkpoint and before the second's.
    at_kill = _load(last)
    assert (at_kill["epoch"], at_kill["global_step"]) == (0, 4)
    assert not list((run_dir / "checkpoints").glob("best-epoch=01*"))

    assert main(["train", "--config", str(config), "--resume", "last"]) == 0

    reference = train(config_from_dict(tiny_settings(tiny_root, tmp_path / "whole", **SETTINGS)))
    ref_dir = tmp_path / "whole" / "run"
    ref, resumed = _load(ref_dir / "checkpoints" / "last.ckpt"), _load(last)

    # last.ckpt is refreshed after every epoch, improved or not.
    assert (
        (ref["epoch"], ref["global_step"])
        == (resumed["epoch"], resumed["global_step"])
        == (
            2,
            12,
        )
    )
    assert ref["state_dict"].keys() == resumed["state_dict"].keys()
    for key, value in ref["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    ref_opt, res_opt = ref["optimizer_states"][0], resumed["optimizer_states"][0]
    assert ref_opt["param_groups"] == res_opt["param_groups"]
    for index, state in ref_opt["state"].items():
        for name, value in state.items():
            assert torch.equal(
                torch.as_tensor(value), torch.as_tensor(res_opt["state"][index][name])
            )
    assert ref["lr_schedulers"] == resumed["lr_schedulers"]
    # Early stopping and the best checkpoint carried on from where they were.
    compared = {
        "EarlyStopping": ("wait_count", "stopped_epoch", "best_score", "patience"),
        "ModelCheckpoint{'monitor': 'val_loss'": ("best_model_score", "kth_value"),
    }
    for key, state in ref["callbacks"].items():
        for prefix, fields in compared.items():
            if key.startswith(prefix):
                other = resumed["callbacks"][key]
                assert {f: state[f] for f in fields} == {f: other[f] for f in fields}, key
                if "best_model_path" in state:
                    assert (
                        Path(state["best_model_path"]).name == Path(other["best_model_path"]).name
                    )

    # The logged validation metrics of the epochs after the kill are the same numbers.
    whole = _val_rows(ref_dir / "logs" / "csv" / "version_0" / "metrics.csv")
    after = _val_rows(run_dir / "logs" / "csv" / "version_1" / "metrics.csv")
    assert len(whole) == 3 and after == whole[1:]
    # Same seed, same data, CPU: the killed run's first epoch scored what the other did.
    first_score = next(
        v["current_score"]
        for k, v in at_kill["callbacks"].items()
        if k.startswith("ModelCheckpoint{'monitor': 'val_loss'")
    )
    assert float(first_score) == float(whole[0][1])
    assert reference.best_val_loss == pytest.approx(min(float(r[1]) for r in whole), abs=0)
