"""Fusion terms: derived sizes, cropping, the MLP width rule, the aux head, metadata layout."""

from __future__ import annotations

import pytest
import torch
from model_helpers import one_thread  # noqa: F401  (fixture)
from torch import nn
from torchvision.transforms import CenterCrop

from flair2.models.fusion import (
    FMCollapsed,
    MetadataMLP,
    add_metadata,
    center_crop,
    collapsed_hidden_widths,
    footprint_crop_size,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    ("patch", "aerial_res", "sat_res", "expected"),
    [
        (512, 0.2, 10.0, 10),
        (256, 0.2, 10.0, 5),
        (64, 0.2, 10.0, 1),
        (32, 0.1, 10.0, 1),
        (512, 0.5, 10.0, 26),
    ],
)
def test_footprint_crop_size(patch: int, aerial_res: float, sat_res: float, expected: int) -> None:
    assert footprint_crop_size(patch, aerial_res, sat_res) == expected


@pytest.mark.parametrize(("size", "crop"), [(40, 10), (16, 1), (16, 3), (41, 10), (8, 8)])
def test_center_crop_takes_torchvision_window(size: int, crop: int) -> None:
    x = torch.arange(size * size, dtype=torch.float32).view(1, 1, size, size)
    assert torch.equal(center_crop(x, crop), CenterCrop((crop, crop))(x))


def test_center_crop_larger_than_map_fails() -> None:
    with pytest.raises(ValueError, match="cannot crop 12×12 from a 8×8 map"):
        center_crop(torch.zeros(1, 1, 8, 8), 12)


def test_collapsed_widths_follow_the_reference_checkpoint() -> None:
    # Shapes of fm_utae_featmap_collapsed.mlps.N in the reference key list.
    assert collapsed_hidden_widths(64, 5) == (45, 26)
    assert collapsed_hidden_widths(64, 64) == (128, 128)
    assert collapsed_hidden_widths(64, 128) == (85, 106)
    assert collapsed_hidden_widths(64, 256) == (128, 192)
    assert collapsed_hidden_widths(64, 512) == (213, 362)


def test_collapsed_terms_are_per_sample() -> None:
    torch.manual_seed(0)
    fm = FMCollapsed(8, [4, 6]).eval()
    summary = torch.randn(3, 8)
    terms = fm(summary)
    assert [tuple(t.shape) for t in terms] == [(3, 4, 1, 1), (3, 6, 1, 1)]
    assert torch.allclose(terms[1][2], fm(summary[2:])[1][0])
    assert not torch.allclose(terms[1][0], terms[1][2])


def test_conv_then_upsample_equals_upsample_then_conv() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(64, 13, kernel_size=1)
    crop = torch.randn(1, 64, 10, 10)
    # 10 → 250: a non-integer scale, as 10 → 512 is.
    reference = nn.Sequential(nn.Upsample(size=(250, 250), mode="nearest"), conv)(crop)
    ours = nn.functional.interpolate(conv(crop), size=(250, 250), mode="nearest")
    assert torch.allclose(ours, reference, atol=1e-5)


def test_metadata_is_laid_along_the_height() -> None:
    mlp = MetadataMLP(45, 4).eval()
    deepest = torch.zeros(2, 3, 4, 5)
    metadata = torch.rand(2, 45)
    out = add_metadata(deepest, mlp, metadata)
    encoded = mlp(metadata)  # B×4
    for b in range(2):
        for row in range(4):
            assert torch.allclose(out[b, :, row, :], encoded[b, row].expand(3, 5))


def test_metadata_errors() -> None:
    mlp = MetadataMLP(45, 16)
    deepest = torch.zeros(1, 8, 16, 16)
    with pytest.raises(ValueError, match="pass metadata"):
        add_metadata(deepest, mlp, None)
    with pytest.raises(ValueError, match="B×45"):
        add_metadata(deepest, mlp, torch.zeros(1, 44))
    with pytest.raises(ValueError, match="another patch size"):
        add_metadata(torch.zeros(1, 8, 8, 8), mlp, torch.zeros(1, 45))


def test_metadata_mlp_names_and_shapes() -> None:
    shapes = {k: tuple(v.shape) for k, v in MetadataMLP(45, 16).state_dict().items()}
    assert shapes == {
        "enc_mlp.0.weight": (64, 45),
        "enc_mlp.0.bias": (64,),
        "enc_mlp.3.weight": (32, 64),
        "enc_mlp.3.bias": (32,),
        "enc_mlp.6.weight": (16, 32),
        "enc_mlp.6.bias": (16,),
    }
