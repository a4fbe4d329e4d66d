"""Parameter counts, FLOPs and dummy inputs."""

from __future__ import annotations

import pytest
import torch
from model_helpers import (
    one_thread,  # noqa: F401  (fixture)
    small_config,
)

from flair2.models import dummy_inputs, model_info
from flair2.tools.model_info import describe_model
from flair2.training.model import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_dummy_inputs_shapes() -> None:
    inputs = dummy_inputs(64, sat_size=16, num_dates=5, batch_size=3)
    assert inputs["aerial"].shape == (3, 5, 64, 64)
    assert inputs["sen2"].shape == (3, 5, 10, 16, 16)
    assert inputs["positions"].shape == (3, 5)
    assert not inputs["pad_mask"].any()
    assert inputs["metadata"].shape == (3, 45)
    assert dummy_inputs(64, metadata_features=None)["metadata"] is None


def test_model_info_counts_parameters_and_flops() -> None:
    model = build_model(small_config(arch="unet"), 64).train()
    one = model_info(model, dummy_inputs(64, sat_size=16, num_dates=2, batch_size=1))
    two = model_info(model, dummy_inputs(64, sat_size=16, num_dates=2, batch_size=2))
    assert one["parameters"] == sum(p.numel() for p in model.parameters())
    assert one["trainable_parameters"] == one["parameters"]
    assert one["flops"] > 1e8
    assert two["flops"] == 2 * one["flops"]
    assert two["batch_size"] == 2
    assert model.training  # the mode is restored


def test_fusion_costs_more_than_the_aerial_model() -> None:
    inputs = dummy_inputs(64, sat_size=16, num_dates=3)
    aerial = model_info(build_model(small_config(arch="unet"), 64), inputs)
    fused = model_info(build_model(small_config(arch="utt"), 64), inputs)
    assert fused["parameters"] > aerial["parameters"]
    assert fused["flops"] > aerial["flops"]


def test_describe_model_for_the_command_line() -> None:
    described = describe_model(small_config(), patch_size=64, num_dates=3)
    assert described["arch"] == "utt"
    assert described["patch size"] == 64
    params = sum(p.numel() for p in build_model(small_config(), 64).parameters())
    assert described["parameters"].startswith(f"{params:,}")
    assert float(described["GFLOP per forward (batch 1)"]) > 0
    assert described["Sentinel-2 input"] == "3 dates × 16 px"
    assert torch.get_num_threads() == 1
