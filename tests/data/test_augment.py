"""Tests of flair2.data.augment: flips and rotation, consistent across sources."""

from __future__ import annotations

import itertools

import pytest
import torch

from flair2.data.augment import apply_flip_rotate, flip_rotate

AERIAL = 64  # aerial patch side, pixels
SAT = 16  # Sentinel-2 crop side
FOOT = 8  # the aerial patch covers the central FOOT × FOOT Sentinel-2 pixels
PER_SAT = AERIAL // FOOT  # aerial pixels per Sentinel-2 pixel
MARK = (5, 50)  # marker position in the aerial patch (row, col)

COMBOS = list(itertools.product([False, True], repeat=3))


def aerial_to_sat(r: int, c: int) -> tuple[int, int]:
    """The Sentinel-2 crop pixel holding aerial pixel (r, c)."""
    off = (SAT - FOOT) // 2
    return off + r // PER_SAT, off + c // PER_SAT


def move(r: int, c: int, n: int, vflip: bool, hflip: bool, rot: bool) -> tuple[int, int]:
    """Where pixel (r, c) of an n × n grid goes: row flip, column flip, then rot90 (k=1)."""
    if vflip:
        r = n - 1 - r
    if hflip:
        c = n - 1 - c
    if rot:  # counter-clockwise quarter turn: out[i, j] = in[j, n - 1 - i]
        r, c = n - 1 - c, r
    return r, c


def argmax2d(t: torch.Tensor) -> tuple[int, int]:
    idx = int(torch.argmax(t))
    return idx // t.shape[-1], idx % t.shape[-1]


def make_sample() -> dict[str, object]:
    aerial = torch.zeros(5, AERIAL, AERIAL, dtype=torch.uint8)
    aerial[:, MARK[0], MARK[1]] = 200
    labels = torch.zeros(AERIAL, AERIAL, dtype=torch.uint8)
    labels[MARK] = 7
    sen2 = torch.zeros(3, 10, SAT, SAT)
    sen2[:, :, aerial_to_sat(*MARK)[0], aerial_to_sat(*MARK)[1]] = 1.0
    return {
        "aerial": aerial,
        "labels": labels,
        "sen2": sen2,
        "positions": torch.tensor([10, 40, 70]),
        "patch_id": "077413",
    }


def test_move_formula_matches_torch_rot90() -> None:
    x = torch.arange(9).reshape(3, 3)
    y = torch.rot90(x, 1, (-2, -1))
    for r, c in itertools.product(range(3), repeat=2):
        assert y[move(r, c, 3, False, False, True)] == x[r, c]


@pytest.mark.parametrize(("vflip", "hflip", "rot"), COMBOS)
def test_consistent_mode_moves_marker_together(vflip: bool, hflip: bool, rot: bool) -> None:
    sample = make_sample()
    out = apply_flip_rotate(sample, vflip, hflip, rot, mode="consistent")
    new_aerial = move(*MARK, AERIAL, vflip, hflip, rot)
    for band in range(5):
        assert argmax2d(out["aerial"][band]) == new_aerial
    assert argmax2d(out["labels"]) == new_aerial
    assert int(out["labels"].sum()) == 7 and int(out["aerial"].sum()) == 5 * 200
    new_sat = move(*aerial_to_sat(*MARK), SAT, vflip, hflip, rot)
    for t in range(3):
        for ch in range(10):
            assert argmax2d(out["sen2"][t, ch]) == new_sat
    # The same place on the ground in both sources.
    assert aerial_to_sat(*new_aerial) == new_sat
    # Types, shapes and the other keys are kept; the input is not modified.
    assert out["aerial"].dtype == torch.uint8 and out["aerial"].shape == (5, AERIAL, AERIAL)
    assert out["labels"].dtype == torch.uint8
    assert out["sen2"].shape == (3, 10, SAT, SAT)
    assert out["patch_id"] == "077413" and out["positions"] is sample["positions"]
    assert argmax2d(sample["aerial"][0]) == MARK
    assert out is not sample


@pytest.mark.parametrize(("vflip", "hflip", "rot"), COMBOS)
def test_reference_mode_leaves_sen2_untouched(vflip: bool, hflip: bool, rot: bool) -> None:
    sample = make_sample()
    out = apply_flip_rotate(sample, vflip, hflip, rot, mode="reference")
    assert argmax2d(out["aerial"][0]) == move(*MARK, AERIAL, vflip, hflip, rot)
    assert argmax2d(out["labels"]) == move(*MARK, AERIAL, vflip, hflip, rot)
    assert torch.equal(out["sen2"], sample["sen2"])


def test_eight_combinations_are_the_eight_symmetries() -> None:
    x = torch.arange(16).reshape(4, 4)
    results = {
        tuple(apply_flip_rotate({"aerial": x}, *combo)["aerial"].flatten().tolist())
        for combo in COMBOS
    }
    assert len(results) == 8


def test_sample_without_labels() -> None:
    sample = make_sample()
    del sample["labels"]
    out = apply_flip_rotate(sample, True, False, False)
    assert "labels" not in out
    assert argmax2d(out["aerial"][0]) == (AERIAL - 1 - MARK[0], MARK[1])


def test_flip_rotate_uses_the_generator_draws() -> None:
    seen = set()
    for seed in range(40):
        flags = tuple((torch.rand(3, generator=torch.Generator().manual_seed(seed)) < 0.5).tolist())
        out = flip_rotate(make_sample(), generator=torch.Generator().manual_seed(seed))
        assert argmax2d(out["aerial"][0]) == move(*MARK, AERIAL, *flags)
        assert argmax2d(out["sen2"][0, 0]) == move(*aerial_to_sat(*MARK), SAT, *flags)
        seen.add(flags)
    assert len(seen) == 8  # every combination is drawn


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="augmentation mode"):
        apply_flip_rotate(make_sample(), True, True, True, mode="sideways")  # type: ignore[arg-type]
