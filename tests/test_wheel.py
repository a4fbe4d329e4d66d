"""flair2 installs like a library: a wheel built from the repository runs from any folder.

The wheel goes into a fresh virtual environment with ``--no-deps``; the project's
installed packages (torch, Lightning…) are reused through a path file, so the test
needs no network. The checkout's ``src/`` is not on that environment's path: what
runs is the wheel's copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding flair2's wheel, with the project's dependencies visible."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"  # a copy, so the build leaves nothing in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    wheels = tmp / "wheels"
    pip = [sys.executable, "-m", "pip"]
    _run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(source)],
        tmp,
    )
    (wheel,) = wheels.glob("flair2-*.whl")
    env_dir = tmp / "env"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp
    )
    # The project's packages, without its editable flair2 (a .pth listed in a .pth
    # file is not processed, so the checkout's src/ stays off the path).
    Path(purelib.stdout.strip(), "project-packages.pth").write_text(
        sysconfig.get_path("purelib") + "\n"
    )
    _run([*pip, "--python", str(python), "install", "--no-deps", "-q", str(wheel)], tmp)
    return env_dir


def test_wheel_holds_the_package_data_and_is_the_copy_that_runs(installed: Path, tmp_path):
    python = str(installed / "bin" / "python")
    code = (
        "import flair2, flair2.synthetic.presets as p; "
        "from importlib.resources import files; "
        "print(flair2.__file__); print(files('flair2.synthetic').joinpath('toy.yml').is_file())"
    )
    where, has_yml = _run([python, "-c", code], tmp_path).stdout.split()
    assert Path(where).is_relative_to(installed)
    assert has_yml == "True"
    assert "usage: flair2" in _run([python, "-m", "flair2", "--help"], tmp_path).stdout


def test_wheel_runs_toy_and_demo_from_another_folder(installed: Path, tmp_path):
    flair2 = str(installed / "bin" / "flair2")
    _run([flair2, "toy", "--out", "toy", "--patch-size", "64", "--domains", "2"], tmp_path)
    assert (tmp_path / "toy" / "toy.yml").is_file()
    done = _run([flair2, "demo", "--out", "demo", "--epochs", "1"], tmp_path, timeout=900)
    for name in ("utt", "unet", "utae"):
        assert (tmp_path / "demo" / "runs" / name / "metrics" / "metrics.json").is_file()
    assert "mIoU" in done.stdout
    for group in ("aerial classes 1-9", "Sentinel-2-only classes 10-12", "all 12 classes"):
        assert f"mIoU, {group}" in done.stdout
