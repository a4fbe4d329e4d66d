"""The public API: what a Python user imports from flair2, flair2.data and flair2.models."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import flair2
import flair2.data
import flair2.models


@pytest.mark.parametrize("package", [flair2, flair2.data, flair2.models])
def test_every_public_name_resolves(package) -> None:
    for name in package.__all__:
        assert getattr(package, name) is not None, f"{package.__name__}.{name}"
    assert set(package.__all__) <= set(dir(package))


def test_public_functions_are_the_stage_functions() -> None:
    from flair2.detection.runner import detect
    from flair2.prediction.patches import predict
    from flair2.training.fit import train

    assert (flair2.train, flair2.predict, flair2.detect) == (train, predict, detect)
    # Importing the stage packages leaves the functions of the same name in place.
    importlib.import_module("flair2.detection")
    importlib.import_module("flair2.prediction")
    assert flair2.predict is predict and flair2.detect is detect
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        _ = flair2.nothing


def test_command_line_starts_without_torch() -> None:
    # `flair2 --help` must stay fast: the public names are imported on first use.
    code = "import sys, flair2, flair2.cli, flair2.data; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_python_dash_m_runs_the_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flair2", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "usage: flair2" in done.stdout and "detect" in done.stdout
