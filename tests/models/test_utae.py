"""U-TAE: shapes, every aggregation × norm, padding invariance, input checks."""

from __future__ import annotations

import pytest
import torch
from model_helpers import one_thread  # noqa: F401  (fixture)

from flair2.models.ltae import TemporalAggregator
from flair2.models.utae import UTAE

pytestmark = pytest.mark.usefixtures("one_thread")


def _utae(agg_mode: str = "att_group", encoder_norm: str = "group", seed: int = 0) -> UTAE:
    torch.manual_seed(seed)
    return UTAE(
        input_dim=10,
        encoder_widths=[16, 16, 32],
        decoder_widths=[16, 16, 32],
        out_conv=[8, 13],
        agg_mode=agg_mode,
        encoder_norm=encoder_norm,
        n_head=4,
        d_model=32,
        d_k=4,
    ).eval()


def _series(
    batch: int, dates: int, size: int = 16, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, dates, 10, size, size, generator=gen) * 1000 + 1
    positions = torch.stack([torch.randperm(300, generator=gen)[:dates] for _ in range(batch)])
    return x, positions


def _pad(x: torch.Tensor, positions: torch.Tensor, extra: int) -> tuple[torch.Tensor, torch.Tensor]:
    B, _, C, H, W = x.shape
    return (
        torch.cat([x, torch.zeros(B, extra, C, H, W)], dim=1),
        torch.cat([positions, torch.zeros(B, extra, dtype=positions.dtype)], dim=1),
    )


@pytest.mark.parametrize("dates", [1, 5, 12])
def test_feature_and_logit_shapes(dates: int) -> None:
    model = _utae()
    x, positions = _series(2, dates)
    with torch.no_grad():
        maps = model.forward_features(x, positions)
        logits = model(x, positions)
    assert [tuple(m.shape) for m in maps] == [(2, 32, 4, 4), (2, 16, 8, 8), (2, 16, 16, 16)]
    assert maps[-1].shape[1] == model.feature_channels == 16
    assert logits.shape == (2, 13, 16, 16)


@pytest.mark.parametrize("agg_mode", ["att_group", "att_mean", "mean"])
@pytest.mark.parametrize("encoder_norm", ["group", "batch", "instance"])
def test_padded_dates_do_not_change_features_or_logits(agg_mode: str, encoder_norm: str) -> None:
    model = _utae(agg_mode, encoder_norm)
    x, positions = _series(2, 3)
    x_pad, pos_pad = _pad(x, positions, 2)
    with torch.no_grad():
        maps = model.forward_features(x, positions)
        maps_pad = model.forward_features(x_pad, pos_pad)  # mask derived from values
        logits = model(x, positions)
        logits_pad = model(x_pad, pos_pad)
    for plain, padded in zip(maps, maps_pad):
        assert torch.allclose(plain, padded, atol=1e-5, rtol=1e-5)
    assert torch.allclose(logits, logits_pad, atol=1e-5, rtol=1e-5)


def test_uneven_series_in_one_batch_match_each_series_alone() -> None:
    model = _utae()
    x, positions = _series(2, 4)
    # Sample 1 keeps two dates; its last two are padding marked by the mask
    # only (their values are not the pad value).
    pad_mask = torch.tensor([[False] * 4, [False, False, True, True]])
    with torch.no_grad():
        together = model.forward_features(x, positions, pad_mask)[-1]
        first = model.forward_features(x[:1], positions[:1])[-1]
        second = model.forward_features(x[1:, :2], positions[1:, :2])[-1]
    assert torch.allclose(together[:1], first, atol=1e-5)
    assert torch.allclose(together[1:], second, atol=1e-5)


def test_encoder_blocks_run_once_and_only_on_real_dates() -> None:
    model = _utae()
    x, positions = _series(2, 4)
    pad_mask = torch.tensor([[False, False, False, True], [False, True, True, True]])
    seen: list[int] = []
    hooks = [
        block.register_forward_hook(lambda _m, inp, _o: seen.append(inp[0].shape[0]))
        for block in [model.in_conv, *model.down_blocks]
    ]
    with torch.no_grad():
        model.forward_features(x, positions, pad_mask)
    for hook in hooks:
        hook.remove()
    assert seen == [4, 4, 4]  # one call per block, the 4 real dates only


def test_explicit_mask_equals_mask_from_pad_values() -> None:
    model = _utae()
    x, positions = _series(1, 3)
    x_pad, pos_pad = _pad(x, positions, 1)
    mask = torch.tensor([[False, False, False, True]])
    assert torch.equal(model.pad_mask_from_values(x_pad), mask)
    with torch.no_grad():
        assert torch.equal(model(x_pad, pos_pad), model(x_pad, pos_pad, mask))


def test_aggregators_return_a_series_that_is_constant_in_time() -> None:
    torch.manual_seed(0)
    frame = torch.randn(2, 1, 8, 6, 6)
    x = frame.repeat(1, 3, 1, 1, 1)
    x[1, 2] = 99.0  # a padded date: must be ignored
    pad_mask = torch.tensor([[False, False, False], [False, False, True]])
    attn = torch.softmax(torch.randn(4, 2, 3, 3, 3), dim=2)
    attn = attn.masked_fill(pad_mask[None, :, :, None, None], 0.0)
    attn = attn / attn.sum(dim=2, keepdim=True)
    for mode in ("att_group", "att_mean", "mean"):
        out = TemporalAggregator(mode)(x, pad_mask=pad_mask, attn=attn)
        assert torch.allclose(out, frame[:, 0], atol=1e-5), mode


def test_att_group_with_one_head_equals_att_mean() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 6, 6)
    pad_mask = torch.zeros(2, 3, dtype=torch.bool)
    attn = torch.softmax(torch.randn(1, 2, 3, 3, 3), dim=2)
    group = TemporalAggregator("att_group")(x, pad_mask=pad_mask, attn=attn)
    mean = TemporalAggregator("att_mean")(x, pad_mask=pad_mask, attn=attn)
    assert torch.allclose(group, mean, atol=1e-6)


def test_gradients_reach_the_encoder_and_the_temporal_encoder() -> None:
    model = _utae().train()
    x, positions = _series(2, 3)
    model(x, positions).sum().backward()
    for name in (
        "in_conv.conv.conv.0.weight",
        "temporal_encoder.attention_heads.Q",
        "up_blocks.1.up.0.weight",
    ):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_state_dict_names_follow_the_original() -> None:
    keys = set(_utae().state_dict())
    for key in (
        "in_conv.conv.conv.0.weight",
        "in_conv.conv.conv.4.bias",
        "down_blocks.1.down.conv.0.weight",
        "down_blocks.1.conv1.conv.0.weight",
        "up_blocks.0.skip_conv.0.weight",
        "up_blocks.0.up.0.weight",
        "up_blocks.0.conv2.conv.1.running_var",
        "temporal_encoder.inconv.weight",
        "temporal_encoder.attention_heads.Q",
        "temporal_encoder.attention_heads.fc1_k.weight",
        "temporal_encoder.in_norm.weight",
        "temporal_encoder.out_norm.weight",
        "temporal_encoder.mlp.1.running_mean",
        "out_conv.conv.conv.3.weight",
        "out_conv.conv.conv.4.weight",
    ):
        assert key in keys, key


def test_input_errors_are_clear() -> None:
    model = _utae()
    x, positions = _series(1, 2)
    with pytest.raises(ValueError, match="B×T×C×H×W"):
        model(x[0], positions)
    with pytest.raises(ValueError, match="10 input channels, got 3"):
        model(x[:, :, :3], positions)
    with pytest.raises(ValueError, match="batch_positions must be B×T"):
        model(x, positions[:, :1])
    with pytest.raises(ValueError, match="batch_positions"):
        model(x, None)
    with pytest.raises(ValueError, match="pad_mask must be bool"):
        model(x, positions, torch.zeros(1, 2))
    with pytest.raises(ValueError, match="pad_mask must be B×T"):
        model(x, positions, torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="divisible by 4"):
        model(x[..., :14, :14], positions)
    with pytest.raises(ValueError, match="too small for reflect padding"):
        model(x[..., :4, :4], positions)


def test_constructor_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="agg_mode"):
        UTAE(10, [16, 32], [16, 32], [8, 13], n_head=4, d_model=32, agg_mode="max")
    with pytest.raises(ValueError, match="encoder_norm"):
        UTAE(10, [16, 32], [16, 32], [8, 13], n_head=4, d_model=32, encoder_norm="layer")
    with pytest.raises(ValueError, match="divisible by n_head"):
        UTAE(10, [12, 32], [12, 32], [8, 13], n_head=8, d_model=32)


def test_a_series_without_real_dates_stays_finite_and_leaves_the_others_alone() -> None:
    model = _utae()
    x, positions = _series(2, 3)
    pad_mask = torch.tensor([[False, False, False], [True, True, True]])
    with torch.no_grad():
        together = model(x, positions, pad_mask)
        alone = model(x[:1], positions[:1])
    assert torch.isfinite(together).all()
    assert torch.allclose(together[:1], alone, atol=1e-5)
