"""The schema machinery on a dataclass of its own: types, unknown keys, overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from flair2.errors import ConfigError
from flair2.schema import apply_overrides, build_dataclass, check


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
