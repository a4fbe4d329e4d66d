"""The detect configuration: keys, types, paths relative to the YAML file, overrides."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest
import yaml

from flair2.detection.metadata import AreaMetadata
from flair2.detection.settings import (
    DetectSettings,
    detect_settings_from_dict,
    load_detect_settings,
)
from flair2.errors import ConfigError

MINIMAL = {"aerial": "a.tif", "checkpoint": "m.ckpt", "output": "out.tif"}


def _write(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


def test_defaults_and_relative_paths_follow_the_yaml_folder(tmp_path: Path) -> None:
    folder = tmp_path / "zone"
    folder.mkdir()
    raw = {**MINIMAL, "sentinel2": "s2/", "model_config": "/abs/train.yml"}
    settings = load_detect_settings(_write(folder / "zone.yml", raw))
    assert settings.aerial == str(folder / "a.tif")
    assert settings.checkpoint == str(folder / "m.ckpt")
    assert settings.output == str(folder / "out.tif")
    assert settings.sentinel2 == str(folder / "s2")
    assert settings.model_config == "/abs/train.yml"
    assert (settings.overlap, settings.batch_size, settings.output_type) == (128, 4, "argmax")
    assert settings.aerial_bands is None and settings.metadata is None
    assert (settings.accelerator, settings.devices, settings.overwrite) == ("auto", 1, False)


def test_overrides_are_typed_and_stay_relative_to_the_current_folder(tmp_path: Path) -> None:
    path = _write(tmp_path / "zone.yml", MINIMAL)
    settings = load_detect_settings(
        path,
        [
            "overlap=64",
            "batch_size=16",
            "output_type=probabilities",
            "aerial_bands=[3, 2, 1, 4, 5]",
            "output=elsewhere.tif",
            "devices=2",
            "strategy=ddp",
        ],
    )
    assert settings.overlap == 64 and settings.batch_size == 16
    assert settings.output_type == "probabilities"
    assert settings.aerial_bands == [3, 2, 1, 4, 5]
    assert settings.output == "elsewhere.tif"
    assert (settings.devices, settings.strategy) == (2, "ddp")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({**MINIMAL, "overlapp": 3}, "'overlapp': unknown key; did you mean 'overlap'?"),
        ({**MINIMAL, "overlap": "wide"}, "'overlap': expected an integer, got 'wide'"),
        ({**MINIMAL, "overlap": -1}, "'overlap': must be >= 0"),
        ({**MINIMAL, "batch_size": 0}, "'batch_size': must be >= 1"),
        ({**MINIMAL, "output_type": "classes"}, "'output_type': 'classes' is not valid"),
        ({**MINIMAL, "aerial_bands": [0, 1]}, "'aerial_bands': bands are 1-based"),
        ({**MINIMAL, "aerial_bands": ["red"]}, "'aerial_bands': expected a list"),
        ({**MINIMAL, "patch_size": 100}, "'patch_size': must be a multiple of 32"),
        ({"aerial": "a.tif", "output": "o.tif"}, "'checkpoint': is required"),
        ({**MINIMAL, "sentinel2_masks": "m/"}, "'sentinel2_masks': needs 'sentinel2'"),
        ({**MINIMAL, "metadata": {"date": "2021-05-05", "camra": "x"}}, "'metadata.camra'"),
        ({**MINIMAL, "metadata": {"time": "10h00"}}, "'metadata.date': is required"),
        ({**MINIMAL, "metadata": {"date": "May 5th"}}, "'metadata.date': expected a date"),
        ({**MINIMAL, "metadata": [1, 2]}, "'metadata': expected a mapping"),
    ],
)
def test_bad_keys_name_their_dotted_path(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match="config key " + re.escape(message)):
        detect_settings_from_dict(raw)


def test_metadata_becomes_area_metadata() -> None:
    raw = {**MINIMAL, "metadata": {"date": datetime.date(2021, 5, 5), "altitude": 120}}
    settings = detect_settings_from_dict(raw)
    assert isinstance(settings.metadata, AreaMetadata)
    assert settings.metadata.date == "2021-05-05"
    assert settings.metadata.altitude == 120.0
    assert settings.metadata.camera == "UCE-M3-f100-s06"


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_detect_settings(tmp_path / "missing.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("aerial: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yml: not valid YAML"):
        load_detect_settings(bad)
    wrong = _write(tmp_path / "wrong.yml", {**MINIMAL, "devices": 0})
    with pytest.raises(ConfigError, match=r"wrong\.yml: config key 'devices'"):
        load_detect_settings(wrong)


def test_every_example_config_key_is_known() -> None:
    example = Path(__file__).resolve().parents[2] / "configs" / "detect-example.yml"
    raw = yaml.safe_load(example.read_text())
    settings = detect_settings_from_dict(raw, base=example.parent)
    assert isinstance(settings, DetectSettings)
    assert settings.output.endswith(".tif")
