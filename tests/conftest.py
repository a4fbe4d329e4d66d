"""Shared fixtures: one tiny generated dataset (64 px) per test session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from flair2.config import Config, config_from_dict
from flair2.synthetic import TINY_MODEL, generate_toy_dataset, toy_config_dict

# Two cores are shared by everything the suite runs: keep torch from oversubscribing.
torch.set_num_threads(2)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64 px toy dataset: 3 train domains × 1 zone × 2 patches, 3 test patches, 4 dates."""
    root = tmp_path_factory.mktemp("tiny") / "toy"
    generate_toy_dataset(
        root,
        patch_size=64,
        seed=0,
        num_domains=3,
        zones_per_domain=1,
        patches_per_zone=2,
        num_test_domains=1,
        test_patches_per_zone=3,
        num_dates=4,
        sat_patch_size=8,
    )
    return root


def tiny_settings(root: Path, out: Path, **overrides: Any) -> dict[str, Any]:
    """Raw settings of a fast CPU run on the tiny dataset (a small U-TAE, 8 px crops)."""
    settings: dict[str, Any] = {
        "data": toy_config_dict(root),
        "out_folder": str(out),
        "out_model_name": "run",
        **TINY_MODEL,
        "num_epochs": 1,
        "batch_size": 2,
        "batch_size_inference": 2,
        "num_workers": 0,
        "accelerator": "cpu",
        "enable_progress_bar": False,
        "seed": 0,
    }
    settings.update(overrides)
    return settings


@pytest.fixture
def tiny_config(tiny_root: Path, tmp_path: Path):
    """Factory: a validated Config on the tiny dataset, outputs under tmp_path."""

    def make(**overrides: Any) -> Config:
        return config_from_dict(tiny_settings(tiny_root, tmp_path / "out", **overrides))

    return make
