"""Collate pads time and returns the pad mask; normalisation happens on the device."""

from __future__ import annotations

import torch

from flair2.data.batch import collate, normalize_batch


def sample(t: int, value: float, pid: str) -> dict:
    return {
        "aerial": torch.full((5, 8, 8), 255, dtype=torch.uint8),
        "labels": torch.full((8, 8), 3, dtype=torch.uint8),
        "sen2": torch.full((t, 10, 4, 4), value),
        "positions": torch.arange(1, t + 1) * 10,
        "metadata": torch.ones(45),
        "patch_id": pid,
        "domain": "D001_2020",
        "zone": "Z1_UF",
    }


def test_collate_pads_time_and_returns_mask() -> None:
    batch = collate([sample(3, 1.5, "000001"), sample(5, 2.5, "000002")], pad_value=0.0)
    assert batch["sen2"].shape == (2, 5, 10, 4, 4)
    assert batch["positions"].tolist() == [[10, 20, 30, 0, 0], [10, 20, 30, 40, 50]]
    assert batch["pad_mask"].tolist() == [[False] * 3 + [True] * 2, [False] * 5]
    assert torch.all(batch["sen2"][0, 3:] == 0) and torch.all(batch["sen2"][0, :3] == 1.5)
    assert torch.all(batch["sen2"][1] == 2.5)
    assert batch["aerial"].shape == (2, 5, 8, 8) and batch["aerial"].dtype == torch.uint8
    assert batch["labels"].shape == (2, 8, 8)
    assert batch["metadata"].shape == (2, 45)
    assert batch["patch_id"] == ["000001", "000002"]


def test_collate_custom_pad_value() -> None:
    batch = collate([sample(1, 1.0, "a"), sample(2, 1.0, "b")], pad_value=-1.0)
    assert torch.all(batch["sen2"][0, 1] == -1.0)


def test_collate_without_sentinel_or_labels() -> None:
    items = [sample(2, 1.0, "a"), sample(2, 1.0, "b")]
    for it in items:
        for key in ("sen2", "positions", "labels"):
            del it[key]
    batch = collate(items)
    assert "sen2" not in batch and "pad_mask" not in batch and "labels" not in batch


def test_normalize_batch_scales_uint8_once() -> None:
    batch = normalize_batch(collate([sample(2, 1.0, "a")]))
    assert batch["aerial"].dtype == torch.float32 and float(batch["aerial"].max()) == 1.0
    assert batch["labels"].dtype == torch.int64
    again = normalize_batch(batch)
    assert float(again["aerial"].max()) == 1.0
