"""The Sentinel-2 head (exact footprint sampling) and the U-TAE-only model."""

from __future__ import annotations

import pytest
import torch
from model_helpers import (
    make_inputs,
    one_thread,  # noqa: F401  (fixture)
    small_config,
)

from flair2.models.sentinel_head import SentinelHead, SentinelUTAE, footprint_grid
from flair2.training.model import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_footprint_grid_samples_the_centred_footprint() -> None:
    # 4 aerial px of 5 m over 10 m pixels: a 2 px footprint centred in an 8 px crop,
    # pixels 3 and 4; aerial centres at 3.25, 3.75, 4.25, 4.75 Sentinel-2 px.
    grid = footprint_grid(8, 4, 5.0, 10.0, torch.zeros(()))
    assert grid.shape == (1, 4, 4, 2)
    expected = (2 * torch.tensor([3.25, 3.75, 4.25, 4.75]) / 8) - 1
    assert torch.allclose(grid[0, 0, :, 0], expected)  # x along a row
    assert torch.allclose(grid[0, :, 0, 1], expected)  # y down a column


def test_head_samples_the_footprint_bilinearly() -> None:
    # 10 m pixels, 1 m aerial pixels: a 20 px patch spans the central 2×2 of a 4×4 crop,
    # Sentinel-2 coordinates 1 to 3; aerial pixel i's centre is at 1 + (i + ½) / 10.
    head = SentinelHead(1, 1, patch_size=20, aerial_resolution=1.0, sat_resolution=10.0)
    with torch.no_grad():
        head.conv.weight.fill_(1.0)
        head.conv.bias.zero_()
        # A linear field, value 4·row + column at each pixel centre (row + ½, column + ½):
        # bilinear sampling gives it exactly at any point between centres.
        scores = head(torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4))
    assert scores.shape == (1, 1, 20, 20)
    centres = 1 + (torch.arange(20) + 0.5) / 10 - 0.5
    expected = 4 * centres[:, None] + centres[None, :]
    assert torch.allclose(scores[0, 0], expected, atol=1e-5)


def test_head_refuses_a_crop_smaller_than_the_footprint() -> None:
    head = SentinelHead(1, 2, patch_size=128, aerial_resolution=1.0, sat_resolution=10.0)
    with pytest.raises(ValueError, match="smaller than the footprint"):
        head(torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize("patch", [32, 64])
def test_utae_model_scores_the_aerial_mask_grid(patch: int) -> None:
    torch.manual_seed(0)
    model = build_model(small_config(arch="utae"), patch).eval()
    assert isinstance(model, SentinelUTAE)
    assert not any(n.startswith(("arch_vhr.", "mtd_mlp.")) for n, _ in model.named_parameters())
    inputs = make_inputs(batch=2, dates=3, patch=patch)
    with torch.no_grad():
        out = model(inputs["aerial"], inputs["sen2"], inputs["positions"])
        without_aerial = model(None, inputs["sen2"], inputs["positions"])
    assert out.logits.shape == (2, 13, patch, patch)
    assert out.aux_logits is None
    assert torch.equal(out.logits, without_aerial.logits)  # the aerial bands are not read


def test_utae_model_gradients_and_errors() -> None:
    torch.manual_seed(0)
    model = build_model(small_config(arch="utae"), 32).train()
    inputs = make_inputs(batch=2, dates=3, patch=32)
    model(inputs["aerial"], inputs["sen2"], inputs["positions"]).logits.sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "out_conv" not in n)
    with pytest.raises(ValueError, match="needs the Sentinel-2 series"):
        model(inputs["aerial"], None, inputs["positions"])
    with pytest.raises(ValueError, match="built for 32×32 masks"):
        model(torch.rand(2, 5, 64, 64), inputs["sen2"], inputs["positions"])


def test_utae_model_ignores_padded_dates_and_batch_companions() -> None:
    torch.manual_seed(0)
    model = build_model(small_config(arch="utae"), 32).eval()
    first = make_inputs(batch=1, dates=3, patch=32, seed=1)
    others = make_inputs(batch=2, dates=5, patch=32, seed=2)
    sen2 = torch.cat([first["sen2"], torch.zeros(1, 2, 10, 16, 16)], dim=1)
    positions = torch.cat([first["positions"], torch.zeros(1, 2, dtype=torch.long)], dim=1)
    pad_mask = torch.zeros(3, 5, dtype=torch.bool)
    pad_mask[0, 3:] = True
    with torch.no_grad():
        alone = model(first["aerial"], first["sen2"], first["positions"]).logits
        together = model(
            torch.cat([first["aerial"], others["aerial"]]),
            torch.cat([sen2, others["sen2"]]),
            torch.cat([positions, others["positions"]]),
            pad_mask,
        ).logits
    assert torch.allclose(together[:1], alone, atol=1e-5, rtol=1e-5)
