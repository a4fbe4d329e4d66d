"""The schema machinery on a dataclass of its own: types, unknown keys, overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from flair2.errors import ConfigError
from flair2.schema import apply_overrides, build_dataclass, check, safe_load


@dataclass
class Inner:
    size: int = 1


@dataclass
class Outer:
    mode: bool | Literal["auto"] = "auto"
    ratio: float | None = None
    names: list[str] = field(default_factory=list)
    inner: Inner = field(default_factory=Inner)


def test_values_take_the_annotated_types() -> None:
    built = build_dataclass(
        Outer, {"mode": False, "ratio": 2, "names": ("a",), "inner": {"size": 3.0}}
    )
    assert built == Outer(mode=False, ratio=2.0, names=["a"], inner=Inner(size=3))
    assert isinstance(built.ratio, float) and isinstance(built.inner.size, int)
    assert build_dataclass(Outer, {"mode": "auto"}).mode == "auto"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"mode": "often"}, "'mode': expected true/false or one of 'auto', got 'often'"),
        ({"inner": {"sise": 2}}, "'inner.sise': unknown key; did you mean 'inner.size'"),
        ({"inner": {"size": 2.5}}, "'inner.size': expected an integer, got 2.5"),
        ({"names": ["a", {"b": 1}]}, r"'names\[1\]': expected "),
    ],
)
def test_errors_name_the_dotted_key(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_dataclass(Outer, raw)


def test_overrides_and_checks() -> None:
    raw = apply_overrides({"inner": {"size": 1}}, ["inner.size=4", "names=[x, y]"])
    assert build_dataclass(Outer, raw) == Outer(names=["x", "y"], inner=Inner(size=4))
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["inner.size"])
    with pytest.raises(ConfigError, match="'ratio': must be > 0"):
        check(False, "ratio", "must be > 0")


def test_a_key_given_twice_is_an_error_naming_it_and_both_lines(tmp_path: Path) -> None:
    from flair2.config import load_config
    from flair2.detection.settings import load_detect_settings

    config = tmp_path / "run.yml"
    config.write_text("num_epochs: 2\ndata:\n  path_aerial_train: a\n\n  path_aerial_train: b\n")
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert str(err.value) == (
        f"config file {config}, line 5: key 'path_aerial_train' given twice (first on line 3)"
    )
    zone = tmp_path / "zone.yml"
    zone.write_text("aerial: a.tif\noverlap: 16\noverlap: 32\n")
    with pytest.raises(ConfigError, match=r"line 3: key 'overlap' given twice \(first on line 2\)"):
        load_detect_settings(zone)
    config.write_text("num_epochs: 2\n")
    with pytest.raises(ConfigError, match="key 'a' given twice"):
        load_config(config, ["data={a: 1, a: 2}"])
    # Still the safe loader: Python tags are refused.
    with pytest.raises(yaml.YAMLError):
        safe_load("x: !!python/object/apply:os.system ['true']")
    assert safe_load("a: 1\nb: {a: 2}\n") == {"a": 1, "b": {"a": 2}}
