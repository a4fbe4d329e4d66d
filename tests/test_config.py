"""Config schema: the reference file, defaults, overrides and error messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flair2.config import Config, config_from_dict, load_config, save_config
from flair2.detection.settings import load_detect_settings
from flair2.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "configs" / "flair-2-config.yml"


def test_reference_config_loads_with_reference_values() -> None:
    cfg = load_config(REFERENCE)
    assert cfg.sat_patch_size == 40
    assert cfg.w_unet_utae == [1.0, 1.0]
    assert cfg.ref_date == "05-15" and cfg.ref_month_day() == (5, 15)
    assert cfg.strategy is None and cfg.accelerator == "gpu"
    assert cfg.encoder_widths == [64, 64, 128, 128] and cfg.out_conv == [32, 13]
    assert cfg.agg_mode == "att_group" and cfg.n_head == 16 and cfg.d_model == 256
    # The reference's misspelt "agricutural land" maps to agricultural land (index 10).
    aerial, satellite = cfg.class_weights()
    assert aerial == [1.0] * 12 + [0.0]
    assert satellite == [1.0] * 11 + [0.0, 0.0]
    # flair2 additions take their defaults.
    assert cfg.arch == "utt" and cfg.seed == 2022 and cfg.optimizer == "sgd"


def test_defaults_equal_reference_values() -> None:
    """The schema's defaults are the reference values, so an empty file means the same."""
    ref, default = load_config(REFERENCE), config_from_dict({})
    assert ref.class_weights() == default.class_weights()
    # Only the spelling of one class-weight key differs ("agricutural land").
    ref.weights_aerial_satellite = default.weights_aerial_satellite
    assert ref == default


def test_overrides_dotted_and_yaml_parsed() -> None:
    cfg = load_config(
        REFERENCE,
        ["num_epochs=2", "data.path_aerial_test=/x", "val_domains=[D001_2020]", "strategy=ddp"],
    )
    assert cfg.num_epochs == 2
    assert cfg.data.path_aerial_test == "/x"
    assert cfg.val_domains == ["D001_2020"]
    assert cfg.strategy == "ddp"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("sat_patch_size=42", "config key 'sat_patch_size': must be a multiple of 8 in [8, 112]"),
        ("sat_patch_size=120", "config key 'sat_patch_size': must be a multiple of 8 in [8, 112]"),
        ("batch_sise=4", "config key 'batch_sise': unknown key; did you mean 'batch_size'?"),
        ("data.path_foo=/x", "config key 'data.path_foo': unknown key"),
        ("lr=fast", "config key 'lr': expected a number, got 'fast'"),
        ("num_epochs=2.5", "config key 'num_epochs': expected an integer"),
        ("agg_mode=max", "config key 'agg_mode': 'max' is not valid; choose one of"),
        ("encoder_widths=[64, x]", "config key 'encoder_widths[1]': expected an integer"),
        ("out_conv=[32, 12]", "config key 'out_conv': the last value (12) must equal num_classes"),
        ("ref_date=13-40", "config key 'ref_date': expected MM-DD"),
        ("w_unet_utae=[1]", "config key 'w_unet_utae': must be two weights"),
        ("drop_utae_modality=1.5", "config key 'drop_utae_modality': must be in [0, 1]"),
        ("patch_size=100", "config key 'patch_size': must be a multiple of 32"),
        ("data=3", "config key 'data': expected a mapping"),
        ("sen2_scaling=standardize", "config key 'sat_mean': sen2_scaling 'standardize' needs 10"),
        ("fusion=early", "config key 'fusion': 'early' is not valid; choose one of"),
        ("arch=utae2", "config key 'arch': 'utae2' is not valid; choose one of"),
        ("checkpoint_monitor=acc", "config key 'checkpoint_monitor': 'acc' is not valid"),
        ("accumulate_grad_batches=0", "config key 'accumulate_grad_batches': must be >= 1"),
        ("aerial_lr_scale=-1", "config key 'aerial_lr_scale': must be >= 0"),
        ("freeze_aerial_epochs=-2", "config key 'freeze_aerial_epochs': must be >= 0"),
    ],
)
def test_bad_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(REFERENCE, [override])
    assert message in str(info.value)
    assert str(REFERENCE) in str(info.value)


def test_class_weight_errors() -> None:
    raw = yaml.safe_load(REFERENCE.read_text())
    del raw["weights_aerial_satellite"]["water"]
    with pytest.raises(ConfigError, match="'weights_aerial_satellite': missing classes: water"):
        config_from_dict(raw)
    raw = yaml.safe_load(REFERENCE.read_text())
    raw["weights_aerial_satellite"]["lava"] = [1, 1]
    with pytest.raises(ConfigError, match=r"'weights_aerial_satellite.lava': unknown class"):
        config_from_dict(raw)


def test_precision_accepts_int_and_string() -> None:
    assert config_from_dict({"precision": 32}).precision == "32"
    assert config_from_dict({"precision": "bf16-mixed"}).precision == "bf16-mixed"


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yml")
    bad = tmp_path / "bad.yml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="YAML mapping"):
        load_config(bad)


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(REFERENCE, ["batch_size"])


def test_saved_config_round_trips(tmp_path: Path) -> None:
    cfg = load_config(REFERENCE, ["num_epochs=3", "arch=unet"])
    save_config(cfg, tmp_path / "resolved.yml")
    again = load_config(tmp_path / "resolved.yml")
    assert again == cfg
    assert isinstance(again, Config)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "configs").glob("*.yml")))
def test_shipped_configs_load(name: str) -> None:
    if name.startswith("detect"):  # a `flair2 detect` zone config, a schema of its own
        settings = load_detect_settings(ROOT / "configs" / name)
        assert settings.output.endswith(".tif")
        return
    load_config(ROOT / "configs" / name)


@pytest.mark.parametrize(
    ("name", "arch", "metadata", "augmentation", "filtering"),
    [
        ("leaderboard-1-unet.yml", "unet", False, False, False),
        ("leaderboard-2-unet-mtd-aug.yml", "unet", True, True, False),
        ("leaderboard-3-utt.yml", "utt", True, False, False),
        ("leaderboard-4-utt-filter-avg-aug.yml", "utt", True, True, True),
    ],
)
def test_leaderboard_presets_differ_from_reference_only_where_published(
    name: str, arch: str, metadata: bool, augmentation: bool, filtering: bool
) -> None:
    preset = load_config(ROOT / "configs" / name).to_dict()
    reference = load_config(REFERENCE).to_dict()
    differing = {k for k in preset if preset[k] != reference[k]}
    allowed = {"arch", "out_model_name", "augmentation_mode", "aerial_metadata"}
    allowed |= {"use_augmentation", "filter_clouds", "average_month", "encoder_weights"}
    assert differing <= allowed
    # The reference starts from smp's default, ImageNet weights: so do the presets.
    assert preset["encoder_weights"] == "imagenet"
    assert preset["arch"] == arch and preset["aerial_metadata"] is metadata
    assert preset["use_augmentation"] is augmentation
    assert preset["filter_clouds"] is filtering and preset["average_month"] is filtering
    assert preset["augmentation_mode"] == "reference"
    assert preset["fusion"] == "reference" and preset["accumulate_grad_batches"] == 1
    # Each states the published run's effective batch and how to reach it.
    text = (ROOT / "configs" / name).read_text(encoding="utf-8")
    assert "12 GPUs × batch 10 = 120" in text and "BatchNorm" in text


def test_fusion_keys_and_presets() -> None:
    cfg = load_config(REFERENCE)
    assert (cfg.fusion, cfg.checkpoint_monitor, cfg.accumulate_grad_batches) == (
        "reference",
        "val_loss",
        1,
    )
    assert cfg.init_aerial_from is None and cfg.aerial_lr_scale == 1.0
    assert load_config(ROOT / "configs" / "flair2-plus.yml").fusion == "late"
    with pytest.raises(ConfigError, match="config key 'init_aerial_from': the U-TAE model"):
        config_from_dict({"arch": "utae", "init_aerial_from": "unet.ckpt"})


def test_channels_last_true_false_or_auto() -> None:
    auto = config_from_dict({})
    assert auto.channels_last == "auto"
    assert auto.channels_last_for("predict") and not auto.channels_last_for("fit")
    for value in (True, False):
        cfg = config_from_dict({"channels_last": value})
        assert cfg.channels_last_for("fit") is value and cfg.channels_last_for("predict") is value
    with pytest.raises(ConfigError, match="'channels_last'"):
        config_from_dict({"channels_last": "sometimes"})
