"""Size and cost of a model: parameter count and FLOPs of one forward pass."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode


def dummy_inputs(
    patch_size: int,
    sat_size: int = 40,
    num_dates: int = 12,
    batch_size: int = 1,
    num_channels_aerial: int = 5,
    num_channels_sat: int = 10,
    metadata_features: int | None = 45,
    seed: int = 0,
) -> dict[str, Tensor | None]:
    """Random inputs shaped as a model's forward expects (no padding).

    Returns:
        ``aerial`` B×C×P×P in [0, 1], ``sen2`` B×T×C×S×S, ``positions`` B×T
        (distinct days), ``pad_mask`` B×T all False, ``metadata`` B×45 in
        [0, 1] (None when ``metadata_features`` is None).
    """
    gen = torch.Generator().manual_seed(seed)
    positions = torch.stack(
        [torch.randperm(365, generator=gen)[:num_dates].sort().values for _ in range(batch_size)]
    )
    return {
        "aerial": torch.rand(
            batch_size, num_channels_aerial, patch_size, patch_size, generator=gen
        ),
        "sen2": torch.rand(
            batch_size, num_dates, num_channels_sat, sat_size, sat_size, generator=gen
        ),
        "positions": positions,
        "pad_mask": torch.zeros(batch_size, num_dates, dtype=torch.bool),
        "metadata": (
            torch.rand(batch_size, metadata_features, generator=gen)
            if metadata_features is not None
            else None
        ),
    }


def count_parameters(model: nn.Module) -> int:
    """Number of parameter values (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def model_info(model: nn.Module, sample_inputs: dict[str, Any]) -> dict[str, int]:
    """Parameter count and FLOPs of one forward pass in evaluation mode.

    Args:
        model: a flair2 model.
        sample_inputs: keyword arguments of its forward (see :func:`dummy_inputs`).

    Returns:
        ``parameters``, ``trainable_parameters``, ``flops`` (of the whole batch;
        a multiply-add counts 2, as ``torch.utils.flop_counter`` counts) and
        ``batch_size``.
    """
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(**sample_inputs)
    finally:
        model.train(was_training)
    return {
        "parameters": count_parameters(model),
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "flops": int(counter.get_total_flops()),
        "batch_size": int(sample_inputs["aerial"].shape[0]),
    }
