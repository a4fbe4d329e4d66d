"""Batching: the collate that pads time, and the on-device normalisation.

Samples keep the aerial patch as uint8 so workers copy four times fewer bytes;
:func:`normalize_batch` turns it into float in [0, 1] once it is on the device.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

_TEXT_KEYS = ("patch_id", "domain", "zone")


def collate(samples: list[dict[str, Any]], pad_value: float = 0.0) -> dict[str, Any]:
    """Stack samples into a batch, padding the Sentinel-2 time axis.

    Args:
        samples: dataset items (see :mod:`flair2.data`).
        pad_value: value of padded dates in ``sen2`` (U-TAE's ``pad_value``).

    Returns:
        A dict with ``aerial`` (B, C, H, W) uint8, ``labels`` (B, H, W) uint8 when
        present, ``sen2`` (B, T, C, S, S) float32 padded to the longest series,
        ``positions`` (B, T) int64 (0 on padded dates), ``pad_mask`` (B, T) bool
        (True on padded dates), ``metadata`` (B, 45) float32, and the text keys
        as lists.
    """
    if not samples:
        raise ValueError("collate: empty batch")
    batch: dict[str, Any] = {
        "aerial": torch.stack([s["aerial"] for s in samples]),
        "metadata": torch.stack([s["metadata"] for s in samples]),
    }
    if all("labels" in s for s in samples):
        batch["labels"] = torch.stack([s["labels"] for s in samples])
    if "sen2" in samples[0]:
        lengths = [s["sen2"].shape[0] for s in samples]
        t_max = max(lengths)
        first = samples[0]["sen2"]
        sen2 = first.new_full((len(samples), t_max, *first.shape[1:]), pad_value)
        positions = torch.zeros(len(samples), t_max, dtype=torch.int64)
        pad_mask = torch.ones(len(samples), t_max, dtype=torch.bool)
        for i, (s, t) in enumerate(zip(samples, lengths)):
            sen2[i, :t] = s["sen2"]
            positions[i, :t] = s["positions"]
            pad_mask[i, :t] = False
        batch.update(sen2=sen2, positions=positions, pad_mask=pad_mask)
    for key in _TEXT_KEYS:
        if key in samples[0]:
            batch[key] = [s[key] for s in samples]
    return batch


def normalize_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """Scale ``aerial`` to float32 in [0, 1] and make ``labels`` int64, in place.

    Call it after the batch is on its device (the datamodule does so in
    ``on_after_batch_transfer``). Idempotent: a float aerial batch is left as is.
    """
    aerial: Tensor = batch["aerial"]
    if aerial.dtype == torch.uint8:
        batch["aerial"] = aerial.float().div_(255.0)
    if "labels" in batch and batch["labels"].dtype != torch.int64:
        batch["labels"] = batch["labels"].long()
    return batch
