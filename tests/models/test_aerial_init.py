"""init_aerial_from: exactly the aerial network's weights are copied, from any model with one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from model_helpers import one_thread, small_config  # noqa: F401  (fixture)

from flair2.errors import CheckpointError
from flair2.models.aerial_init import is_aerial_parameter, load_aerial_weights
from flair2.training.model import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _save(model: torch.nn.Module, path: Path, lightning: bool) -> Path:
    state = model.state_dict()
    if lightning:  # a training task's checkpoint: the network under "model."
        torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 3}, path)
    else:
        torch.save(state, path)
    return path


@pytest.mark.parametrize("fusion", ["reference", "gated", "late"])
@pytest.mark.parametrize("lightning", [True, False])
def test_loads_exactly_the_aerial_weights(tmp_path: Path, fusion: str, lightning: bool) -> None:
    torch.manual_seed(1)
    unet = build_model(small_config(arch="unet"), 32)
    path = _save(unet, tmp_path / "unet.ckpt", lightning)
    torch.manual_seed(2)
    utt = build_model(small_config(arch="utt", fusion=fusion), 32)
    before = {k: v.clone() for k, v in utt.state_dict().items()}
    loaded = load_aerial_weights(utt, path)
    after = utt.state_dict()
    aerial = sorted(k for k in after if is_aerial_parameter(k))
    assert loaded == aerial and aerial
    assert any(k.startswith("mtd_mlp.") for k in aerial)
    source = unet.state_dict()
    for key, value in after.items():
        if is_aerial_parameter(key):
            assert torch.equal(value, source[key]), key
        else:  # the Sentinel-2 branch and the fusion keep their initialisation
            assert torch.equal(value, before[key]), key


def test_another_aerial_network_is_refused(tmp_path: Path) -> None:
    unet = build_model(small_config(arch="unet", encoder_name="resnet34"), 32)
    path = _save(unet, tmp_path / "r34.ckpt", lightning=True)
    utt = build_model(small_config(arch="utt"), 32)  # resnet18
    with pytest.raises(CheckpointError, match="init_aerial_from: .* does not hold this model's"):
        load_aerial_weights(utt, path)


def test_the_utae_model_has_no_aerial_network(tmp_path: Path) -> None:
    unet = build_model(small_config(arch="unet"), 32)
    path = _save(unet, tmp_path / "unet.ckpt", lightning=False)
    with pytest.raises(CheckpointError, match="no aerial network"):
        load_aerial_weights(build_model(small_config(arch="utae"), 32), path)
