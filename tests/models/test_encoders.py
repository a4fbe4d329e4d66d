"""Any aerial encoder and decoder in U-T&T: smp's own, timm's (CNNs and transformers).

No weights are downloaded (``encoder_weights: null``); timm builds every model offline.
"""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import timm
import torch
from model_helpers import (
    make_inputs,
    one_thread,  # noqa: F401  (fixture)
    small_config,
)
from torch import nn

from flair2.config import Config, load_config
from flair2.errors import CheckpointError, ConfigError
from flair2.models import UTT, AerialUNet, build_unet
from flair2.models.late import LateFusion
from flair2.models.networks import DECODERS
from flair2.training.model import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

#: One small encoder per family: smp ResNet, smp MobileNet, timm ConvNeXt (no 1/2
#: stage), timm MaxViT (built for one input size), timm PVT-v2 (a transformer).
FAMILIES = [
    "resnet18",
    "mobilenet_v2",
    "tu-convnext_atto",
    "tu-maxvit_pico_rw_256",
    "tu-pvt_v2_b0",
]


def _utt(patch: int = 64, **overrides) -> UTT:
    torch.manual_seed(0)
    model = build_model(small_config(**overrides), patch)
    assert isinstance(model, UTT)
    return model


def _forward_backward(model: UTT, patch: int = 64):
    inputs = make_inputs(batch=2, dates=2, patch=patch)
    model.train()
    out = model(inputs["aerial"], inputs["sen2"], inputs["positions"], None, inputs["metadata"])
    out.logits.square().mean().backward()
    return out


def _has_grad(module: nn.Module) -> bool:
    grads = [p.grad for p in module.parameters()]
    return bool(grads) and all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("encoder", FAMILIES)
def test_each_encoder_family_runs_utt_and_trains_the_fusion(encoder: str) -> None:
    model = _utt(encoder_name=encoder)
    out = _forward_backward(model)
    assert out.logits.shape == (2, 13, 64, 64)
    assert out.aux_logits is not None and out.aux_logits.shape == (2, 13, 64, 64)
    assert torch.isfinite(out.logits).all()
    widths = list(model.arch_vhr.encoder.out_channels)
    assert len(widths) == 6  # the input and five stages, 1/2 … 1/32
    convs = model.fm_utae_featmap_cropped.conv_list
    mlps = model.fm_utae_featmap_collapsed.mlps
    assert len(convs) == len(mlps) == len(widths)
    for stage, width in enumerate(widths):
        if width == 0:  # no 1/2 stage (ConvNeXt, PVT): no fusion term, no parameters
            assert isinstance(convs[stage], nn.Identity)
            assert isinstance(mlps[stage], nn.Identity)
            continue
        # Widths are read from the encoder.
        assert convs[stage].out_channels == width
        assert mlps[stage][-1].out_features == width
        if stage > 0:  # the U-Net decoder reads every stage but the input
            assert _has_grad(convs[stage]), (encoder, stage)
            assert _has_grad(mlps[stage]), (encoder, stage)
    assert _has_grad(model.arch_hr.in_conv)
    assert model.mtd_mlp is not None and model.mtd_mlp.out_features == 2  # 64 px / 32


def test_the_default_model_keeps_its_reference_layout() -> None:
    """resnet34 + U-Net: a fusion term on each of the six maps, the names of the reference."""
    model = build_model(small_config(encoder_name="resnet34"), 64)
    names = model.state_dict().keys()
    for stage in range(6):
        assert f"fm_utae_featmap_cropped.conv_list.{stage}.weight" in names
        assert f"fm_utae_featmap_collapsed.mlps.{stage}.6.weight" in names
    assert isinstance(model.arch_vhr, smp.Unet)


def test_decoder_names_match_the_config_schema() -> None:
    hints = typing.get_type_hints(Config)
    assert set(typing.get_args(hints["decoder_name"])) == set(DECODERS)


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_each_decoder_runs_utt_on_the_fused_maps(decoder: str) -> None:
    # PAN pools the 1/32 map over 8 px windows: 64 px patches leave it nothing to pool.
    patch = 128 if decoder == "pan" else 64
    model = _utt(patch=patch, encoder_name="resnet18", decoder_name=decoder)
    assert isinstance(model.arch_vhr, getattr(smp, DECODERS[decoder]))
    out = _forward_backward(model, patch=patch)
    assert out.logits.shape == (2, 13, patch, patch)
    # Every decoder reads the deepest map, so its fusion terms and the U-TAE learn.
    deepest = len(model.arch_vhr.encoder.out_channels) - 1
    assert _has_grad(model.fm_utae_featmap_cropped.conv_list[deepest])
    assert _has_grad(model.arch_hr.in_conv)


def test_aerial_only_model_with_a_timm_encoder() -> None:
    model = build_model(small_config(arch="unet", encoder_name="tu-convnext_atto"), 64)
    assert isinstance(model, AerialUNet)
    inputs = make_inputs(batch=2, patch=64)
    with torch.no_grad():
        out = model.eval()(inputs["aerial"], metadata=inputs["metadata"])
    assert out.logits.shape == (2, 13, 64, 64)


def test_a_patch_size_the_network_cannot_take_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        build_model(small_config(encoder_name="resnet18", decoder_name="pan"), 64)
    message = str(info.value)
    assert "patch_size" in message and "pan" in message and "resnet18" in message
    assert "64 px" in message


def test_encoders_without_a_pyramid_are_config_errors() -> None:
    # A plain ViT keeps one scale: smp cannot feed a U-Net from it.
    with pytest.raises(ConfigError, match=r"encoder_name.*tu-vit_tiny_patch16_224"):
        build_model(small_config(encoder_name="tu-vit_tiny_patch16_224"), 64)


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"encoder_name": "tu-convnext_nonexistent"}, r"encoder_name.*convnext_nonexistent"),
        ({"encoder_name": "mit_b0", "decoder_name": "linknet"}, r"decoder_name.*linknet.*mit_b0"),
        ({"encoder_name": "tu-convnext_atto", "encoder_weights": "ssl"}, r"encoder_weights.*ssl"),
    ],
)
def test_unbuildable_pairs_are_config_errors(overrides: dict, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        build_model(small_config(**overrides), 64)


def test_config_checks_decoder_name_and_pooled_batch_norm() -> None:
    with pytest.raises(ConfigError, match=r"decoder_name.*'unet'"):
        small_config(decoder_name="uper")
    with pytest.raises(ConfigError, match=r"batch_size.*upernet.*at least 2"):
        small_config(decoder_name="upernet", batch_size=1)
    assert small_config(decoder_name="unet", batch_size=1).batch_size == 1


def test_timm_encoder_weights_from_a_local_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = timm.create_model("convnext_atto", pretrained=False)  # 3 bands, with its head
    path = tmp_path / "convnext_atto.pth"
    torch.save(source.state_dict(), path)
    unet = build_unet("tu-convnext_atto", in_channels=5, encoder_weights=str(path))
    state = unet.encoder.state_dict()
    assert torch.equal(
        state["model.stages_2.blocks.0.conv_dw.weight"], source.stages[2].blocks[0].conv_dw.weight
    )
    # timm widens the 3-band stem to 5 bands (scaled copies of the RGB filters).
    stem = state["model.stem_0.weight"]
    assert stem.shape[1] == 5
    assert torch.allclose(stem[:, :3], source.stem[0].weight * 3 / 5, atol=1e-6)


def test_a_timm_weights_file_of_another_model_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "femto.pth"
    torch.save(timm.create_model("convnext_femto", pretrained=False).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"femto\.pth.*tu-convnext_atto.*size mismatch"):
        build_unet("tu-convnext_atto", in_channels=5, encoder_weights=str(path))


def test_the_flair2_plus_preset_builds_offline_at_512() -> None:
    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "configs" / "flair2-plus.yml", ["encoder_weights=null"])
    model = build_model(cfg, 512)
    assert isinstance(model, LateFusion) and isinstance(model.arch_vhr, smp.Unet)  # fusion: late
    assert model.arch_vhr.encoder.name == "maxvit_tiny_tf_512"
    assert list(model.arch_vhr.encoder.out_channels) == [5, 64, 64, 128, 256, 512]
    assert model.mtd_mlp is not None and model.mtd_mlp.out_features == 16
