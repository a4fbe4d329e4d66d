"""build_model: the configured architecture, derived sizes and configuration errors."""

from __future__ import annotations

import pytest
import torch
from model_helpers import (
    make_inputs,
    one_thread,  # noqa: F401  (fixture)
    small_config,
)

from flair2.classes import CLASSES
from flair2.config import config_from_dict
from flair2.errors import ConfigError
from flair2.models import UTT, AerialUNet, SegmentationOutput
from flair2.training.model import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_reference_configuration_gives_the_reference_model() -> None:
    model = build_model(config_from_dict({"encoder_weights": None}), 512)
    assert isinstance(model, UTT)
    assert model.crop_size == 10
    assert model.mtd_mlp.out_features == 16
    assert model.mtd_mlp.in_features == 45
    assert model.arch_hr.encoder_widths == [64, 64, 128, 128]
    assert model.arch_hr.temporal_encoder.n_head == 16
    assert model.drop_utae_modality == 0.0


def test_aerial_only_model_has_the_same_call() -> None:
    model = build_model(small_config(arch="unet"), 64).eval()
    assert isinstance(model, AerialUNet)
    inputs = make_inputs(batch=2, dates=3)
    with torch.no_grad():
        out = model(inputs["aerial"], inputs["sen2"], inputs["positions"], None, inputs["metadata"])
    assert isinstance(out, SegmentationOutput)
    assert out.logits.shape == (2, 13, 64, 64)
    assert out.aux_logits is None
    assert model.mtd_mlp.out_features == 2


def test_without_metadata_there_is_no_metadata_mlp() -> None:
    for arch in ("utt", "unet"):
        model = build_model(small_config(arch=arch, aerial_metadata=False), 64)
        assert model.mtd_mlp is None
        assert not any(k.startswith("mtd_mlp.") for k in model.state_dict())


@pytest.mark.parametrize("patch", [0, 48, 100])
def test_patch_size_must_be_a_multiple_of_32(patch: int) -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        build_model(small_config(), patch)


def test_sentinel_crop_smaller_than_the_footprint() -> None:
    cfg = small_config(sat_patch_size=8, encoder_widths=[16, 16], decoder_widths=[16, 16])
    with pytest.raises(
        ConfigError, match="sat_patch_size.*smaller than the footprint.*13 Sentinel-2"
    ):
        build_model(cfg, 640)  # 640 × 0.2 m / 10 m = 12.8 → 13 px


def test_sentinel_crop_too_small_for_the_utae() -> None:
    build_model(small_config(sat_patch_size=8), 64)  # 3 stages: 8 → 4 → 2 px, fine
    deeper = small_config(
        sat_patch_size=8, encoder_widths=[16, 16, 16, 32], decoder_widths=[16, 16, 16, 32]
    )
    with pytest.raises(ConfigError, match="sat_patch_size.*1 px maps.*reflect"):
        build_model(deeper, 64)  # 8 → 4 → 2 → 1 px


def test_other_widths_and_sizes() -> None:
    cfg = small_config(
        aerial_resolution=0.5,
        sat_patch_size=24,
        num_classes=5,
        out_conv=[8, 5],
        weights_aerial_satellite={name: [1, 1] for name in CLASSES[:5]},
    )
    model = build_model(cfg, 96)
    assert model.crop_size == 5  # 96 × 0.5 / 10 = 4.8
    assert model.aux_head.out_channels == 5
    assert model.arch_vhr.segmentation_head[0].out_channels == 5


def test_create_model_takes_plain_values_and_derives_its_sizes() -> None:
    # No Config: smp-style arguments; the U-TAE footprint follows from the resolutions.
    from flair2.models import create_model

    model = create_model(
        "utt",
        encoder_name="resnet18",
        in_channels=4,
        classes=6,
        patch_size=96,
        metadata_features=None,
        sat_in_channels=3,
        sat_patch_size=8,
        aerial_resolution=0.5,
        sat_resolution=10.0,
        encoder_widths=[16, 16],
        decoder_widths=[16, 16],
        out_conv=[16, 6],
        n_head=4,
        d_model=32,
    ).eval()
    assert isinstance(model, UTT)
    assert model.crop_size == 5  # 96 px × 0.5 m = 48 m = 4.8 Sentinel-2 px, rounded up
    aerial = torch.rand(2, 4, 96, 96)
    sen2 = torch.rand(2, 3, 3, 8, 8)
    positions = torch.tensor([[10, 40, 90], [5, 60, 200]])
    with torch.no_grad():
        out = model(aerial, sen2, positions, None, None)
    assert out.logits.shape == (2, 6, 96, 96)
    unet = create_model("unet", in_channels=3, classes=4, patch_size=64, metadata_features=None)
    assert isinstance(unet, AerialUNet)
    with torch.no_grad():
        assert unet.eval()(torch.rand(1, 3, 64, 64), None, None).logits.shape == (1, 4, 64, 64)


def test_build_model_is_create_model_with_the_config_keys() -> None:
    from flair2.models import create_model

    cfg = small_config()
    torch.manual_seed(0)
    built = build_model(cfg, 64)
    torch.manual_seed(0)
    created = create_model(
        "utt",
        encoder_name=cfg.encoder_name,
        in_channels=cfg.num_channels_aerial,
        classes=cfg.num_classes,
        patch_size=64,
        sat_patch_size=cfg.sat_patch_size,
        encoder_widths=cfg.encoder_widths,
        decoder_widths=cfg.decoder_widths,
        out_conv=cfg.out_conv,
        n_head=cfg.n_head,
        d_model=cfg.d_model,
        d_k=cfg.d_k,
    )
    a, b = built.state_dict(), created.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_create_model_rejects_an_unknown_architecture() -> None:
    from flair2.models import create_model

    with pytest.raises(ConfigError, match="unknown model 'segformer'; choose utt, unet or utae"):
        create_model("segformer", patch_size=64)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="config key 'fusion': unknown fusion 'early'; choose"):
        create_model("utt", patch_size=64, fusion="early")  # type: ignore[arg-type]


def test_create_model_defaults_are_the_reference_configuration() -> None:
    # create_model's defaults and the Config's describe the same model (the FLAIR #2
    # reference at 512 px): a change to either must follow in the other.
    from flair2.models import create_model

    created, built = create_model(), build_model(config_from_dict({}), 512)
    assert repr(created) == repr(built)  # layers, widths, kernels, padding modes, norms
    assert {k: v.shape for k, v in created.state_dict().items()} == {
        k: v.shape for k, v in built.state_dict().items()
    }


@pytest.mark.parametrize(
    ("arch", "fusion"),
    [("utt", "reference"), ("utt", "gated"), ("utt", "late"), ("utae", "reference")],
)
def test_every_fusion_trains_at_64_px(arch: str, fusion: str) -> None:
    torch.manual_seed(0)
    model = build_model(small_config(arch=arch, fusion=fusion), 64).train()
    inputs = make_inputs(batch=2, dates=3, patch=64)
    out = model(inputs["aerial"], inputs["sen2"], inputs["positions"], None, inputs["metadata"])
    assert out.logits.shape == (2, 13, 64, 64) and torch.isfinite(out.logits).all()
    labels = torch.randint(0, 13, (2, 64, 64))
    torch.nn.functional.cross_entropy(out.logits, labels).backward()
    # The U-TAE's first convolution learns from the main output in every model.
    assert model.get_parameter("arch_hr.in_conv.conv.conv.0.weight").grad is not None
