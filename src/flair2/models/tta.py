"""Test-time augmentation: average probabilities over flips and 90° rotations.

Each transform is applied to the aerial batch and, about its centre, to the
Sentinel-2 crop (so the two sources stay aligned), and undone on the output.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

#: (rotations k of rot90, horizontal flip) of the eight symmetries of the square.
D4: tuple[tuple[int, bool], ...] = tuple((k, f) for f in (False, True) for k in range(4))


def _apply(x: Tensor, k: int, flip: bool) -> Tensor:
    """Flip the last axis (if asked), then rotate by k·90° in the last two axes."""
    if flip:
        x = x.flip(-1)
    return torch.rot90(x, k, dims=(-2, -1)) if k else x


def _undo(x: Tensor, k: int, flip: bool) -> Tensor:
    if k:
        x = torch.rot90(x, -k, dims=(-2, -1))
    return x.flip(-1) if flip else x


def tta_probabilities(
    model: Callable[[dict[str, Any]], Any],
    batch: dict[str, Any],
    transforms: tuple[tuple[int, bool], ...] = D4,
) -> Tensor:
    """Mean softmax over ``transforms`` of a model's U-Net logits.

    Args:
        model: called with a batch dict, returns an object with ``logits`` (B, K, H, W).
        batch: normalised batch (``aerial`` (B, C, H, W); optional ``sen2`` (B, T, C, S, S)).
        transforms: (k, flip) pairs; default all eight symmetries.

    Returns:
        (B, K, H, W) float32 probabilities.
    """
    if not transforms:
        raise ValueError("tta_probabilities: no transform given")
    total = torch.zeros(())
    for k, flip in transforms:
        view = dict(batch)
        view["aerial"] = _apply(batch["aerial"], k, flip)
        if batch.get("sen2") is not None:
            view["sen2"] = _apply(batch["sen2"], k, flip)
        probs = _undo(model(view).logits.float().softmax(1), k, flip)
        total = total + probs
    return total / len(transforms)
