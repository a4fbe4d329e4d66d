"""Shared helpers of the model tests: a small configuration and the reference key list.

Not a conftest.py: ``tests/test_cli.py`` imports the top-level conftest by name,
which a second conftest module would shadow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from flair2.config import Config, config_from_dict

DATA = Path(__file__).parent / "data"

#: A small U-T&T: resnet18, 3-stage U-TAE of 16/32 channels, 16 px Sentinel-2 crops.
SMALL: dict[str, Any] = {
    "sat_patch_size": 16,
    "encoder_widths": [16, 16, 32],
    "decoder_widths": [16, 16, 32],
    "out_conv": [16, 13],
    "n_head": 4,
    "d_model": 32,
    "d_k": 4,
    "encoder_name": "resnet18",
    "encoder_weights": None,
}


def small_config(**overrides: Any) -> Config:
    """A validated Config for a small, fast model (overrides win)."""
    return config_from_dict({**SMALL, **overrides})


def make_inputs(
    batch: int = 2, dates: int = 3, patch: int = 64, sat: int = 16, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random unpadded inputs: aerial, sen2 (raw-reflectance scale), positions, metadata."""
    gen = torch.Generator().manual_seed(seed)
    positions = torch.stack(
        [torch.randperm(300, generator=gen)[:dates] - 150 for _ in range(batch)]
    )
    return {
        "aerial": torch.rand(batch, 5, patch, patch, generator=gen),
        "sen2": torch.rand(batch, dates, 10, sat, sat, generator=gen) * 1000 + 1,
        "positions": positions,
        "metadata": torch.rand(batch, 45, generator=gen),
    }


def reference_entries() -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    """(name, shape, dtype) of every entry of the reference checkpoint's state dict."""
    entries = []
    for line in (DATA / "reference-checkpoint-keys.txt").read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, shape, dtype = line.split("\t")
        entries.append((name, tuple(ast.literal_eval(shape)), getattr(torch, dtype.split(".")[1])))
    return entries


def reference_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the reference checkpoint's names, shapes and dtypes."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape, dtype in reference_entries():
        if dtype.is_floating_point:
            state[name] = torch.randn(shape, generator=gen, dtype=dtype) * 0.05
        else:
            state[name] = torch.randint(0, 100, shape, generator=gen, dtype=dtype)
    for name in state:
        # Keep BN variances positive: the loaded model must produce finite outputs.
        if name.endswith("running_var"):
            state[name] = state[name].abs() + 0.5
    return state


def build_reference_utt() -> torch.nn.Module:
    """A 512 px U-T&T from the reference configuration values (the Config defaults), eval mode."""
    from flair2.training.model import build_model

    cfg = config_from_dict({"arch": "utt", "encoder_weights": None})
    return build_model(cfg, 512).eval()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Run a test on one torch thread, then restore the count.

    The small convolutions of these tests gain nothing from a second thread,
    and on a shared, busy machine two threads were measured 20× slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
