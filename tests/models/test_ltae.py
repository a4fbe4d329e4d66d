"""L-TAE and its positional encoding."""

from __future__ import annotations

import math

import pytest
import torch
from model_helpers import one_thread  # noqa: F401  (fixture)
from torch import nn

from flair2.models.ltae import LTAE2d, masked_group_norm
from flair2.models.positional_encoding import PositionalEncoder

pytestmark = pytest.mark.usefixtures("one_thread")


def test_positional_encoding_values() -> None:
    enc = PositionalEncoder(4, T=1000, repeat=2)
    table = enc(torch.tensor([[0, 10], [365, -20]]))
    assert table.shape == (2, 2, 8)
    pos = 365.0
    expected = [
        math.sin(pos),
        math.cos(pos),
        math.sin(pos / 1000**0.5),
        math.cos(pos / 1000**0.5),
    ]
    assert table[1, 0, :4].tolist() == pytest.approx(expected, abs=1e-5)
    assert torch.equal(table[..., :4], table[..., 4:])  # one copy per head
    assert table[0, 0].tolist() == pytest.approx([0, 1, 0, 1] * 2)


def test_positional_encoding_is_not_in_the_state_dict() -> None:
    assert PositionalEncoder(8).state_dict() == {}


def test_masked_group_norm_equals_group_norm_without_padding() -> None:
    torch.manual_seed(0)
    norm = nn.GroupNorm(4, 8)
    nn.init.uniform_(norm.weight)
    nn.init.uniform_(norm.bias)
    x = torch.randn(2, 3, 5, 8)  # B×P×T×C
    ours = masked_group_norm(x, torch.ones(2, 5, dtype=torch.bool), norm)
    ref = norm(x.reshape(6, 5, 8).transpose(1, 2)).transpose(1, 2).reshape(2, 3, 5, 8)
    assert torch.allclose(ours, ref, atol=1e-5)


def test_masked_group_norm_ignores_padded_dates() -> None:
    torch.manual_seed(0)
    norm = nn.GroupNorm(2, 4)
    x = torch.randn(1, 2, 3, 4)
    padded = torch.cat([x, torch.full((1, 2, 2, 4), 7.0)], dim=2)
    valid = torch.tensor([[True, True, True, False, False]])
    out = masked_group_norm(padded, valid, norm)
    alone = masked_group_norm(x, None, norm)
    assert torch.allclose(out[:, :, :3], alone, atol=1e-5)


def _ltae() -> LTAE2d:
    torch.manual_seed(0)
    return LTAE2d(in_channels=16, n_head=4, d_k=4, mlp=[32, 16], d_model=32).eval()


def test_ltae_shapes_and_attention_is_a_distribution_over_real_dates() -> None:
    model = _ltae()
    x = torch.randn(2, 4, 16, 3, 3)
    positions = torch.tensor([[1, 30, 60, 0], [5, 10, 0, 0]])
    pad = torch.tensor([[False, False, False, True], [False, False, True, True]])
    out, attn = model(x, positions, pad)
    assert out.shape == (2, 16, 3, 3)
    assert attn.shape == (4, 2, 4, 3, 3)
    assert torch.allclose(attn.sum(dim=2), torch.ones(4, 2, 3, 3), atol=1e-6)
    assert attn[:, 0, 3].abs().max() == 0
    assert attn[:, 1, 2:].abs().max() == 0


def test_ltae_padding_does_not_change_the_output() -> None:
    model = _ltae()
    x = torch.randn(1, 3, 16, 2, 2)
    positions = torch.tensor([[3, 40, 90]])
    out, _ = model(x, positions, None)
    padded_x = torch.cat([x, torch.zeros(1, 2, 16, 2, 2)], dim=1)
    padded_pos = torch.cat([positions, torch.zeros(1, 2, dtype=torch.long)], dim=1)
    pad = torch.tensor([[False, False, False, True, True]])
    padded_out, _ = model(padded_x, padded_pos, pad)
    assert torch.allclose(out, padded_out, atol=1e-5)


def _reference_style_ltae(model: LTAE2d, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The original's computation, step by step in its (B·H·W)×T×C layout (no padding)."""
    B, T, C, H, W = x.shape
    seq = x.permute(0, 3, 4, 1, 2).reshape(B * H * W, T, C)
    seq = model.in_norm(seq.permute(0, 2, 1)).permute(0, 2, 1)
    seq = model.inconv(seq.permute(0, 2, 1)).permute(0, 2, 1)
    pos = positions[:, None, None, :].expand(B, H, W, T).reshape(B * H * W, T)
    seq = seq + model.positional_encoder(pos)
    heads = model.attention_heads
    n, dk = heads.n_head, heads.d_k
    keys = heads.fc1_k(seq).view(B * H * W, T, n, dk).permute(2, 0, 1, 3)  # n×N×T×dk
    scores = (heads.Q[:, None, None, :] * keys).sum(-1) / dk**0.5  # n×N×T
    attn = torch.softmax(scores, dim=-1)
    values = torch.stack(seq.split(seq.shape[-1] // n, dim=-1))  # n×N×T×dv
    out = (attn[..., None] * values).sum(dim=2)  # n×N×dv
    out = out.permute(1, 0, 2).reshape(B * H * W, -1)
    out = model.out_norm(model.mlp(out))
    return out.view(B, H, W, -1).permute(0, 3, 1, 2)


def test_ltae_matches_the_reference_computation() -> None:
    model = _ltae()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 5, 16, 3, 2)
    positions = torch.tensor([[1, 30, 60, 90, 200], [-10, 0, 10, 20, 30]])
    out, _ = model(x, positions, None)
    assert torch.allclose(out, _reference_style_ltae(model, x, positions), atol=1e-5)


def test_ltae_rejects_bad_inputs() -> None:
    model = _ltae()
    with pytest.raises(ValueError, match="B×T×C×H×W"):
        model(torch.randn(2, 16, 3, 3), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="expected 16 channels, got 8"):
        model(torch.randn(1, 2, 8, 3, 3), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="batch_positions"):
        model(torch.randn(1, 2, 16, 3, 3), None)
    with pytest.raises(ValueError, match="divisible by n_head"):
        LTAE2d(in_channels=10, n_head=4, mlp=[32, 10], d_model=32)
