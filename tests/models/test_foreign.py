"""init_weights: IGN's checkpoint layouts, built from their key lists, load into flair2 models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor

from flair2.classes import CLASSES, NOMENCLATURES
from flair2.config import config_from_dict
from flair2.errors import CheckpointError, ConfigError
from flair2.models import create_model
from flair2.models.foreign import class_mapping, load_foreign_weights

LAYOUTS = Path(__file__).parent / "data" / "ign-checkpoint-layouts.txt"
HEAD = "arch_vhr.segmentation_head.0.weight"


def _layouts() -> list[list[str]]:
    lines = LAYOUTS.read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines if line and not line.startswith("#")]


def _unet(classes: int = 13, channels: int = 5, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model(
        "unet",
        encoder_name="resnet18",
        in_channels=channels,
        classes=classes,
        patch_size=64,
        metadata_features=None,
    )


def _foreign_state(patterns: list[str], source: dict[str, Tensor]) -> dict[str, Tensor]:
    """The file's state dict: the source U-Net's keys under each pattern, plus the extras."""
    parts = {"{encoder}": "arch_vhr.encoder.", "{decoder}": "arch_vhr.decoder."}
    parts["{head}"] = "arch_vhr.segmentation_head."
    state: dict[str, Tensor] = {}
    for pattern in patterns:
        if "=" in pattern:
            key, shape = pattern.split("=")
            state[key] = torch.randn(*(int(s) for s in shape.split(",")))
            continue
        (part,) = [p for p in parts if pattern.endswith(p)]
        prefix = pattern[: -len(part)]
        for key, value in source.items():
            if key.startswith(parts[part]):
                state[prefix + key[len(parts[part]) :]] = value.clone()
    return state


def _write(tmp_path: Path, name: str, container: str, state: dict[str, Tensor]) -> Path:
    if container == "safetensors":
        path = tmp_path / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
        return path
    content: Any = state
    if container == "lightning":
        content = {"state_dict": state, "epoch": 3, "global_step": 120}
    elif container == "wrapped":
        content = {"model": state}
    path = tmp_path / f"{name}.pth"
    torch.save(content, path)
    return path


@pytest.mark.parametrize("row", _layouts(), ids=lambda row: row[0])
def test_each_ign_layout_loads_the_aerial_unet(row: list[str], tmp_path: Path) -> None:
    name, layout, container, classes, *patterns = row
    source = _unet(int(classes), seed=1).state_dict()
    path = _write(tmp_path, name, container, _foreign_state(patterns, source))
    model = _unet(13, seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = load_foreign_weights(model, path)
    assert report.layout == layout
    state = model.state_dict()
    body = [k for k in state if not k.startswith("arch_vhr.segmentation_head.")]
    for key in body:  # every encoder and decoder tensor comes from the file
        assert torch.equal(state[key], source[key]), key
    assert set(body) <= set(report.loaded)
    assert not report.initialised
    # The head: each flair2 class takes the row of the same class in the file's nomenclature.
    mapping = class_mapping(report.nomenclature or "flair2-13")
    for target in range(13):
        row_now = state[HEAD][target]
        if target in mapping:
            assert torch.equal(row_now, source[HEAD][mapping[target]]), CLASSES[target]
        else:  # no counterpart: its initialisation is kept
            assert torch.equal(row_now, before[HEAD][target]), CLASSES[target]
    if report.nomenclature:  # a head of another size, mapped class by class
        assert len(report.classes_mapped) == len(mapping)
    # The extras (loss weights, metadata MLP, other tasks' decoders) are reported, not loaded.
    assert len(report.ignored) == sum("=" in p for p in patterns)


def test_head_nomenclatures_map_by_class_name() -> None:
    # FLAIR-HUB's COSIA order differs from FLAIR's: rows are taken by name, not position.
    cosia = class_mapping("cosia-19")
    assert cosia[CLASSES.index("building")] == 0
    assert cosia[CLASSES.index("coniferous")] == NOMENCLATURES["cosia-19"].index("coniferous")
    assert cosia[CLASSES.index("other")] == 18
    assert class_mapping("flair-19") == {i: i for i in range(12)} | {12: 18}
    assert class_mapping("flair-inc-15")[12] == 14
    assert 12 not in class_mapping("flair-inc-12")  # no "other" in the 12-class heads
    with pytest.raises(CheckpointError, match="unknown nomenclature"):
        class_mapping("flair-7")


def test_fewer_input_channels_load_in_part_and_named_nomenclature_wins() -> None:
    # An RGBI model (4 bands) into an RGBIE one: the elevation band keeps its initialisation.
    source = _unet(15, channels=4, seed=1).state_dict()
    model = _unet(13, seed=2)
    before = model.state_dict()["arch_vhr.encoder.conv1.weight"].clone()
    report = load_foreign_weights(model, source, nomenclature="flair-inc-15")
    conv = model.state_dict()["arch_vhr.encoder.conv1.weight"]
    assert torch.equal(conv[:, :4], source["arch_vhr.encoder.conv1.weight"])
    assert torch.equal(conv[:, 4], before[:, 4])
    assert "input channels" in report.partial["arch_vhr.encoder.conv1.weight"]
    assert report.nomenclature == "flair-inc-15"
    assert "swimming pool" not in report.classes_mapped


def test_other_encoder_is_reported_not_loaded(tmp_path: Path) -> None:
    source = create_model(
        "unet", encoder_name="resnet50", in_channels=5, classes=13, patch_size=64
    ).state_dict()
    state = {"seg_model." + k[len("arch_vhr.") :]: v for k, v in source.items() if "vhr" in k}
    model = _unet(13)
    report = load_foreign_weights(model, state)
    assert report.layout == "flair-1"
    shape_reasons = [why for why in report.initialised.values() if why.startswith("shape")]
    missing = [why for why in report.initialised.values() if why.startswith("missing")]
    assert shape_reasons and not missing  # resnet50 into resnet18: same names, other sizes
    assert report.loaded  # what fits still loads (e.g. the stem, layer1)


def test_a_file_of_no_known_layout_is_one_line_naming_the_closest(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save(
        {"backbone.stem.weight": torch.zeros(2), "encoders.DEM_ELEV.x": torch.zeros(1)}, path
    )
    with pytest.raises(CheckpointError) as caught:
        load_foreign_weights(_unet(), path)
    message = str(caught.value)
    assert "\n" not in message
    assert str(path) in message and "closest is flair-hub" in message


def test_unsafe_foreign_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {"seg_model.encoder.x": torch.zeros(1)}, "hook": Path}, path)
    with pytest.raises(CheckpointError, match="unsafe|refus|allowed"):
        load_foreign_weights(_unet(), path)


def test_config_names_a_bad_nomenclature() -> None:
    with pytest.raises(ConfigError, match="init_weights_classes"):
        config_from_dict({"init_weights_classes": "flair-20"})
    assert config_from_dict({"init_weights": "x.pth"}).init_weights_classes is None
