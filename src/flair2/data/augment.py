"""Training augmentation: random flips and a quarter turn, applied to a sample dict.

The reference (albumentations ``VerticalFlip``, ``HorizontalFlip``,
``RandomRotate90``, p = 0.5 each) transforms the aerial patch and its labels but
not the Sentinel-2 crop, so the two sources disagree spatially during training.
In ``"consistent"`` mode the crop gets the same transform: it is centred on the
patch centre, so flipping or rotating the whole crop about its own centre is the
same geometric transform as on the patch. ``"reference"`` mode keeps the
reference behaviour.

Here the rotation is always one quarter turn (the reference's RandomRotate90 draws
0–3 quarter turns). With the two flips, the eight equally likely combinations are
exactly the eight symmetries of the square, each once.
"""

from __future__ import annotations

from typing import Any

import torch

from flair2.config import AugmentationMode

#: Sample keys holding images whose last two axes are (rows, cols).
_SPATIAL_KEYS = ("aerial", "labels")


def _transform(tensor: torch.Tensor, vflip: bool, hflip: bool, rot: bool) -> torch.Tensor:
    """Vertical flip, then horizontal flip, then a quarter turn, on the last two axes."""
    dims = []
    if vflip:
        dims.append(-2)
    if hflip:
        dims.append(-1)
    if dims:
        tensor = torch.flip(tensor, dims)
    if rot:
        tensor = torch.rot90(tensor, 1, (-2, -1))
    return tensor


def apply_flip_rotate(
    sample: dict[str, Any],
    vflip: bool,
    hflip: bool,
    rot: bool,
    mode: AugmentationMode = "consistent",
) -> dict[str, Any]:
    """Apply a given flip/rotation combination to a sample.

    Args:
        sample: holds ``aerial`` (C, H, W), optionally ``labels`` (H, W) and
            ``sen2`` (T, C, S, S); other keys are passed through unchanged.
        vflip: flip rows (top ↔ bottom).
        hflip: flip columns (left ↔ right).
        rot: rotate a quarter turn counter-clockwise (``torch.rot90``, k = 1),
            after the flips.
        mode: ``"consistent"`` also transforms ``sen2``; ``"reference"`` leaves
            it as is.

    Returns:
        A new dict; transformed tensors are new tensors or views (the collate copies them).
    """
    if mode not in ("consistent", "reference"):
        raise ValueError(f"unknown augmentation mode {mode!r}")
    keys = _SPATIAL_KEYS + (("sen2",) if mode == "consistent" else ())
    out = dict(sample)
    if not (vflip or hflip or rot):
        return out
    for key in keys:
        if key in out and out[key] is not None:
            out[key] = _transform(out[key], vflip, hflip, rot)
    return out


def flip_rotate(
    sample: dict[str, Any],
    mode: AugmentationMode = "consistent",
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """Randomly flip (vertically, horizontally) and rotate a sample, p = 0.5 each.

    The three draws come from ``torch.rand`` (with ``generator`` when given), so
    per-worker seeding makes them reproducible; all tensors share the same draws.

    Args:
        sample: see :func:`apply_flip_rotate`.
        mode: ``"consistent"`` or ``"reference"``, see :func:`apply_flip_rotate`.
        generator: optional random generator.

    Returns:
        A new dict, as :func:`apply_flip_rotate`.
    """
    vflip, hflip, rot = (torch.rand(3, generator=generator) < 0.5).tolist()
    return apply_flip_rotate(sample, vflip, hflip, rot, mode)
