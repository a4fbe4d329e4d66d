"""The aerial U-Net factory (encoder weights) and the aerial-only model."""

from __future__ import annotations

from pathlib import Path

import pytest
import segmentation_models_pytorch as smp
import torch
from model_helpers import one_thread  # noqa: F401  (fixture)

from flair2.errors import CheckpointError, ConfigError
from flair2.models import networks as unet_module
from flair2.models.fusion import MetadataMLP
from flair2.models.networks import build_unet
from flair2.models.unet import AerialUNet, SegmentationOutput

pytestmark = pytest.mark.usefixtures("one_thread")


def test_random_weights_by_default() -> None:
    model = build_unet("resnet18", in_channels=5, classes=13)
    assert isinstance(model, smp.Unet)
    assert model.encoder.conv1.weight.shape == (64, 5, 7, 7)
    assert model.segmentation_head[0].out_channels == 13


def test_failed_download_names_the_alternatives(monkeypatch: pytest.MonkeyPatch) -> None:
    real_unet = smp.Unet

    def offline_unet(**kwargs):
        if kwargs.get("encoder_weights") is not None:
            raise OSError("Name or service not known")
        return real_unet(**kwargs)

    monkeypatch.setattr(unet_module.smp, "Unet", offline_unet)
    with pytest.raises(ConfigError) as info:
        build_unet("resnet18", encoder_weights="imagenet")
    message = str(info.value)
    assert "internet" in message
    assert "null" in message
    assert "local file" in message
    assert "Name or service not known" in message


def test_unknown_encoder_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="resnet35"):
        build_unet("resnet35")


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not found.*imagenet.*null"):
        build_unet("resnet18", encoder_weights=str(tmp_path / "encoder.pth"))


@pytest.mark.parametrize("prefix", ["", "encoder.", "model.arch_vhr.encoder."])
def test_local_encoder_file(tmp_path: Path, prefix: str) -> None:
    source = build_unet("resnet18", in_channels=5)
    state = {prefix + k: v for k, v in source.encoder.state_dict().items()}
    path = tmp_path / "encoder.pth"
    torch.save(state, path)
    loaded = build_unet("resnet18", in_channels=5, encoder_weights=str(path))
    for key, value in source.encoder.state_dict().items():
        assert torch.equal(loaded.encoder.state_dict()[key], value), key


def test_local_safetensors_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = build_unet("resnet18", in_channels=5)
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.encoder.state_dict().items()}, str(path))
    loaded = build_unet("resnet18", in_channels=5, encoder_weights=str(path))
    assert torch.equal(loaded.encoder.layer4[1].conv2.weight, source.encoder.layer4[1].conv2.weight)


def test_three_band_file_is_adapted_like_smp_does(tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder = smp.encoders.get_encoder("resnet18", in_channels=3)
    state = dict(encoder.state_dict())
    state["fc.weight"] = torch.zeros(1000, 512)  # an ImageNet classifier, to be ignored
    state["fc.bias"] = torch.zeros(1000)
    path = tmp_path / "resnet18-imagenet.pth"
    torch.save(state, path)
    loaded = build_unet("resnet18", in_channels=5, encoder_weights=str(path))
    first = loaded.encoder.conv1.weight
    original = encoder.conv1.weight
    assert first.shape == (64, 5, 7, 7)
    # smp spreads the 3 bands cyclically over the new ones, rescaled by 3 / 5.
    for band in range(5):
        assert torch.allclose(first[:, band], original[:, band % 3] * 3 / 5)
    assert torch.equal(loaded.encoder.layer2[0].conv1.weight, encoder.layer2[0].conv1.weight)


def test_mismatched_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "resnet34.pth"
    torch.save(smp.encoders.get_encoder("resnet34", in_channels=5).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"does not fit encoder resnet18.*unexpected keys"):
        build_unet("resnet18", in_channels=5, encoder_weights=str(path))


def test_aerial_only_model_equals_plain_unet_without_metadata() -> None:
    torch.manual_seed(0)
    unet = build_unet("resnet18", in_channels=5).eval()
    model = AerialUNet(unet).eval()
    aerial = torch.rand(2, 5, 64, 64)
    with torch.no_grad():
        out = model(aerial, None, None, None, None)
        plain = unet(aerial)
    assert isinstance(out, SegmentationOutput)
    assert out.aux_logits is None
    assert torch.allclose(out.logits, plain, atol=1e-6)


def test_aerial_only_model_with_metadata() -> None:
    torch.manual_seed(0)
    model = AerialUNet(build_unet("resnet18", in_channels=5), MetadataMLP(45, 2)).eval()
    aerial = torch.rand(2, 5, 64, 64)
    metadata = torch.rand(2, 45)
    with torch.no_grad():
        out = model(aerial, metadata=metadata)
        other = model(aerial, metadata=torch.rand(2, 45))
    assert out.logits.shape == (2, 13, 64, 64)
    assert not torch.allclose(out.logits, other.logits)  # the metadata matter
    with pytest.raises(ValueError, match="pass metadata"):
        model(aerial)


def test_aerial_input_errors() -> None:
    model = AerialUNet(build_unet("resnet18", in_channels=5)).eval()
    with pytest.raises(ValueError, match="B×C×H×W"):
        model(torch.rand(5, 64, 64))
    with pytest.raises(ValueError, match="5 bands, got 3"):
        model(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="multiples of 32"):
        model(torch.rand(1, 5, 48, 64))
