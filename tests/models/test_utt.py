"""U-T&T: shapes, padding and batch invariance, modality dropout, gradients, reference semantics."""

from __future__ import annotations

import pytest
import torch
from model_helpers import (
    make_inputs,
    one_thread,  # noqa: F401  (fixture)
    small_config,
)
from torch import nn
from torch.nn import functional as F
from torchvision.transforms import CenterCrop

from flair2.models import UTT, SegmentationOutput
from flair2.models.fusion import add_metadata
from flair2.models.networks import decode
from flair2.training.model import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(seed: int = 0, patch: int = 64, **overrides) -> UTT:
    torch.manual_seed(seed)
    model = build_model(small_config(**overrides), patch)
    assert isinstance(model, UTT)
    return model.eval()


@pytest.fixture(scope="module")
def model64() -> UTT:
    """A small 64 px U-T&T in evaluation mode, shared by the tests that only read it."""
    return _model()


@pytest.fixture(scope="module")
def model32() -> UTT:
    """The same at 32 px (the cheapest size), for the invariance tests."""
    return _model(patch=32)


def _pad_dates(inputs: dict[str, torch.Tensor], extra: int) -> dict[str, torch.Tensor]:
    sen2, positions = inputs["sen2"], inputs["positions"]
    B, _, C, S, _ = sen2.shape
    return {
        **inputs,
        "sen2": torch.cat([sen2, torch.zeros(B, extra, C, S, S)], dim=1),
        "positions": torch.cat([positions, torch.zeros(B, extra, dtype=positions.dtype)], dim=1),
    }


def _run(model: nn.Module, inputs: dict[str, torch.Tensor], pad_mask=None) -> SegmentationOutput:
    return model(
        inputs["aerial"], inputs["sen2"], inputs["positions"], pad_mask, inputs["metadata"]
    )


@pytest.mark.parametrize("dates", [1, 5, 12])
def test_output_shapes(model64: UTT, dates: int) -> None:
    with torch.no_grad():
        out = _run(model64, make_inputs(batch=2, dates=dates))
    assert isinstance(out, SegmentationOutput)
    assert out.logits.shape == (2, 13, 64, 64)
    assert out.aux_logits.shape == (2, 13, 64, 64)
    assert torch.isfinite(out.logits).all()


def test_sizes_are_derived_from_the_patch_size(model64: UTT) -> None:
    model = model64
    assert model.crop_size == 1  # 64 px × 0.2 m / 10 m, rounded
    assert model.mtd_mlp.out_features == 2  # 64 / 32
    assert [c.out_channels for c in model.fm_utae_featmap_cropped.conv_list] == [
        5,
        64,
        64,
        128,
        256,
        512,
    ]
    assert model.aux_head.in_channels == 16  # the U-TAE's decoder_widths[0]


def test_padded_dates_do_not_change_the_outputs(model32: UTT) -> None:
    model = model32
    inputs = make_inputs(batch=2, dates=3, patch=32)
    with torch.no_grad():
        plain = _run(model, inputs)
        padded = _run(model, _pad_dates(inputs, 2))
    assert torch.allclose(plain.logits, padded.logits, atol=1e-4, rtol=1e-5)
    assert torch.allclose(plain.aux_logits, padded.aux_logits, atol=1e-5, rtol=1e-5)


def test_a_sample_gives_the_same_logits_alone_and_in_a_batch(model32: UTT) -> None:
    model = model32
    first = make_inputs(batch=1, dates=3, patch=32, seed=1)
    others = make_inputs(batch=2, dates=5, patch=32, seed=2)
    padded_first = _pad_dates(first, 2)
    batch = {k: torch.cat([padded_first[k], others[k]]) for k in first}
    pad_mask = torch.zeros(3, 5, dtype=torch.bool)
    pad_mask[0, 3:] = True
    with torch.no_grad():
        alone = _run(model, first)
        together = _run(model, batch, pad_mask)
    assert torch.allclose(together.logits[:1], alone.logits, atol=1e-4, rtol=1e-5)
    assert torch.allclose(together.aux_logits[:1], alone.aux_logits, atol=1e-5, rtol=1e-5)


def test_satellite_dropout_never_acts_in_evaluation() -> None:
    model = _model(patch=32, drop_utae_modality=0.5)
    inputs = make_inputs(batch=4, dates=2, patch=32)
    with torch.no_grad():
        runs = [_run(model, inputs).logits for _ in range(3)]
        model.drop_utae_modality = 0.0
        reference = _run(model, inputs).logits
    for logits in runs:
        assert torch.equal(logits, runs[0])
    assert torch.equal(runs[0], reference)


def test_dropped_satellite_branch_has_no_effect_in_training() -> None:
    model = _model(patch=32, drop_utae_modality=1.0).train()
    inputs = make_inputs(batch=2, dates=2, patch=32, seed=0)
    other_sat = make_inputs(batch=2, dates=2, patch=32, seed=5)
    changed = {**inputs, "sen2": other_sat["sen2"], "positions": other_sat["positions"]}
    torch.manual_seed(3)
    first = _run(model, inputs)
    torch.manual_seed(3)
    second = _run(model, changed)
    assert torch.allclose(first.logits, second.logits, atol=1e-6)
    assert not torch.allclose(first.aux_logits, second.aux_logits)  # the branch itself still runs

    model.drop_utae_modality = 0.0  # control: the satellite branch does matter when kept
    torch.manual_seed(3)
    kept_first = _run(model, inputs)
    torch.manual_seed(3)
    kept_second = _run(model, changed)
    assert not torch.allclose(kept_first.logits, kept_second.logits, atol=1e-6)


def test_dropout_is_drawn_per_sample(model32: UTT) -> None:
    model = model32.train()
    model.drop_utae_modality = 0.5
    torch.manual_seed(0)
    keep = model._keep_mask(2000, torch.zeros(1))
    assert keep.shape == (2000, 1, 1, 1)
    assert set(keep.unique().tolist()) == {0.0, 1.0}
    assert 0.45 < keep.mean().item() < 0.55
    assert model.eval()._keep_mask(4, torch.zeros(1)) is None
    model.drop_utae_modality = 0.0


def test_gradients_reach_every_branch() -> None:
    model = _model(patch=32).train()
    inputs = make_inputs(batch=2, dates=2, patch=32)
    # The main logits alone must reach the U-TAE (through the fusion terms).
    _run(model, inputs).logits.square().mean().backward()
    for name in (
        "arch_vhr.encoder.conv1.weight",
        "arch_vhr.decoder.blocks.0.conv1.0.weight",
        "arch_hr.in_conv.conv.conv.0.weight",
        "arch_hr.temporal_encoder.attention_heads.Q",
        "fm_utae_featmap_cropped.conv_list.3.weight",
        "fm_utae_featmap_collapsed.mlps.3.0.weight",
        "mtd_mlp.enc_mlp.0.weight",
    ):
        grad = model.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name


def _reference_semantics(
    model: UTT, inputs: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference forward, written out in its own style (valid at batch size 1)."""
    aerial, metadata = inputs["aerial"], inputs["metadata"]
    last = model.arch_hr.forward_features(inputs["sen2"], inputs["positions"])[-1]
    enc = list(model.arch_vhr.encoder(aerial))
    meta = model.mtd_mlp(metadata)
    meta = meta.unsqueeze(1).unsqueeze(-1).repeat(1, enc[-1].size(1), 1, enc[-1].size(-1))
    enc[-1] = enc[-1] + meta
    crop = CenterCrop((model.crop_size, model.crop_size))(last)
    cropped = [
        F.interpolate(conv(crop), size=f.size(-1), mode="bilinear")
        for conv, f in zip(model.fm_utae_featmap_cropped.conv_list, enc)
    ]
    summary = last[0].mean(dim=(-2, -1))  # sample 0: the reference's choice
    collapsed = []
    for mlp, f in zip(model.fm_utae_featmap_collapsed.mlps, enc):
        values = mlp(summary)
        collapsed.append(values.view(-1, 1, 1).repeat(1, f.size(-1), f.size(-1)).unsqueeze(0))
    fused = [e + (a + b) for e, a, b in zip(enc, cropped, collapsed)]
    logits = decode(model.arch_vhr, fused)
    size = aerial.shape[-1]
    aux = nn.Sequential(nn.Upsample(size=(size, size), mode="nearest"), model.aux_head)(crop)
    return logits, aux


@pytest.mark.parametrize("sat_patch_size", [16, 24])
def test_matches_the_reference_forward_at_batch_size_1(sat_patch_size: int) -> None:
    # A 128 px patch over 24 px crops gives a 3 px footprint at an uneven offset.
    model = _model(sat_patch_size=sat_patch_size)
    if sat_patch_size == 24:
        model = build_model(
            small_config(sat_patch_size=24, encoder_widths=[16, 16], decoder_widths=[16, 16]), 128
        ).eval()
    patch = model.patch_size
    inputs = make_inputs(batch=1, dates=4, patch=patch, sat=sat_patch_size)
    with torch.no_grad():
        out = _run(model, inputs)
        logits, aux = _reference_semantics(model, inputs)
    assert torch.allclose(out.logits, logits, atol=1e-5, rtol=1e-5)
    assert torch.allclose(out.aux_logits, aux, atol=1e-5, rtol=1e-5)


def test_input_errors(model64: UTT) -> None:
    model = model64
    inputs = make_inputs(batch=2, dates=3)
    with pytest.raises(ValueError, match="needs the Sentinel-2 series"):
        model(inputs["aerial"], None, None, None, inputs["metadata"])
    with pytest.raises(ValueError, match="built for 64×64"):
        model(
            torch.rand(2, 5, 96, 96), inputs["sen2"], inputs["positions"], None, inputs["metadata"]
        )
    with pytest.raises(ValueError, match="with B = 2"):
        model(inputs["aerial"], inputs["sen2"][:1], inputs["positions"], None, inputs["metadata"])
    with pytest.raises(ValueError, match="pass metadata"):
        model(inputs["aerial"], inputs["sen2"], inputs["positions"], None, None)
    with pytest.raises(ValueError, match="batch_positions"):
        model(inputs["aerial"], inputs["sen2"], None, None, inputs["metadata"])


# ---------------------------------------------------------------------------
# fusion: gated


def test_gated_fusion_starts_at_the_plain_unet_output() -> None:
    model = _model(patch=32, fusion="gated")
    assert [len(g) for g in model.fusion_gates] == list(model.arch_vhr.encoder.out_channels)
    inputs = make_inputs(batch=2, dates=3, patch=32)
    with torch.no_grad():
        out = _run(model, inputs)
        features = list(model.arch_vhr.encoder(inputs["aerial"]))
        features[-1] = add_metadata(features[-1], model.mtd_mlp, inputs["metadata"])
        plain = decode(model.arch_vhr, features)
    assert torch.equal(out.logits, plain)


def test_gated_fusion_opens_its_gates_by_training() -> None:
    model = _model(patch=32, fusion="gated").train()
    inputs = make_inputs(batch=2, dates=2, patch=32)
    labels = torch.randint(0, 13, (2, 32, 32))
    F.cross_entropy(_run(model, inputs).logits, labels).backward()
    # The gates of the stages the decoder reads get a gradient; once they move, the
    # Sentinel-2 terms reach the logits.
    assert model.fusion_gates[3].grad is not None and model.fusion_gates[3].grad.abs().sum() > 0
    with torch.no_grad():
        before = _run(model.eval(), inputs).logits
        for gate in model.fusion_gates:
            gate.fill_(0.5)
        after = _run(model, inputs).logits
    assert not torch.allclose(before, after)


def test_gated_fusion_keeps_padding_and_batch_invariance() -> None:
    model = _model(patch=32, fusion="gated")
    with torch.no_grad():
        for gate in model.fusion_gates:
            gate.fill_(0.7)
    first = make_inputs(batch=1, dates=3, patch=32, seed=1)
    others = make_inputs(batch=2, dates=5, patch=32, seed=2)
    padded_first = _pad_dates(first, 2)
    batch = {k: torch.cat([padded_first[k], others[k]]) for k in first}
    pad_mask = torch.zeros(3, 5, dtype=torch.bool)
    pad_mask[0, 3:] = True
    with torch.no_grad():
        alone = _run(model, first)
        together = _run(model, batch, pad_mask)
        padded = _run(model, padded_first)
    assert torch.allclose(together.logits[:1], alone.logits, atol=1e-4, rtol=1e-5)
    assert torch.allclose(padded.logits, alone.logits, atol=1e-4, rtol=1e-5)


def test_reference_fusion_has_no_gates() -> None:
    model = _model(patch=32)
    assert model.fusion_gates is None
    assert not any("gate" in name for name in model.state_dict())
