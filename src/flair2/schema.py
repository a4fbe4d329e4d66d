"""Typed dataclass schemas built from raw YAML data, with one-line errors.

The machinery behind :mod:`flair2.config` and the detection settings
(:mod:`flair2.detection.settings`): convert YAML values to a dataclass's
annotated types (``bool``, ``int``, ``float``, ``str``, ``Literal``, unions,
lists, dicts, nested dataclasses), reject unknown keys with a "did you mean",
and apply ``--set KEY=VALUE`` overrides. Every error is a :class:`ConfigError`
naming the dotted key.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

from flair2.errors import ConfigError

T = TypeVar("T")


def type_name(tp: Any) -> str:
    """A type as error messages name it: "an integer", "one of 'a', 'b'", "… or null"."""
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        inner = " or ".join(type_name(a) for a in args)
        return f"{inner} or null" if len(args) < len(get_args(tp)) else inner
    if origin is list:
        return f"a list of {type_name(get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(
        tp, str(tp)
    )


def convert(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against type ``tp`` and return it converted; raise ConfigError."""
    origin = get_origin(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}': expected a mapping, got {value!r}")
        return build_dataclass(tp, value, path + ".")
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(value, arg, path)
            except ConfigError as exc:
                errors.append(exc)
        raise ConfigError(f"config key '{path}': expected {type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = get_args(tp)
        # YAML reads 32 as an int; precision "32" is accepted either way.
        candidate = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if candidate in allowed:
            return candidate
        raise ConfigError(
            f"config key '{path}': {value!r} is not valid; choose one of "
            + ", ".join(repr(a) for a in allowed)
        )
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"config key '{path}': expected {type_name(tp)}, got {value!r}")
        (item_tp,) = get_args(tp)
        return [convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{path}': expected a mapping, got {value!r}")
        key_tp, val_tp = get_args(tp)
        return {
            convert(k, key_tp, f"{path}.{k}"): convert(v, val_tp, f"{path}.{k}")
            for k, v in value.items()
        }
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (datetime.date, int, float)) and not isinstance(value, bool):
            return str(value)
    else:  # pragma: no cover - schema programming error
        raise TypeError(f"unsupported schema type {tp!r} at {path}")
    raise ConfigError(f"config key '{path}': expected {type_name(tp)}, got {value!r}")


def build_dataclass(cls: type, raw: dict[str, Any], prefix: str = "") -> Any:
    """Build ``cls`` from a raw mapping, converting each value to its field's type.

    Args:
        cls: the dataclass.
        raw: its keys and raw YAML values; missing keys take the field defaults.
        prefix: the dotted path of ``raw`` in the whole file (``"section."``), for errors.

    Raises:
        ConfigError: an unknown key (with a "did you mean") or a value of the wrong type.
    """
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in hints:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f"; did you mean '{prefix}{close[0]}'?" if close else ""
            raise ConfigError(f"config key '{prefix}{key}': unknown key{hint}")
        kwargs[key] = convert(value, hints[key], f"{prefix}{key}")
    return cls(**kwargs)


def check(cond: bool, key: str, message: str) -> None:
    """Raise ``ConfigError("config key '<key>': <message>")`` unless ``cond`` holds."""
    if not cond:
        raise ConfigError(f"config key '{key}': {message}")


class DuplicateKeyError(yaml.YAMLError):
    """A mapping of a YAML document gives the same key twice."""

    def __init__(self, key: Any, line: int, first_line: int) -> None:
        super().__init__(f"line {line}: key {key!r} given twice (first on line {first_line})")


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no Python tags), refusing a key given twice in a mapping.

    Plain YAML keeps the last value of a repeated key, silently: a config with
    ``batch_size`` twice would run with whichever came last.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Build a mapping, raising :class:`DuplicateKeyError` on a repeated key."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise DuplicateKeyError(key, line, seen[key])
                seen[key] = line
            except TypeError:  # an unhashable key: the base class reports it
                continue
        return super().construct_mapping(node, deep=deep)


def safe_load(text: str) -> Any:
    """Parse YAML safely (no Python tags), refusing duplicate keys (:class:`UniqueKeyLoader`)."""
    return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: no Python tags


def parse_override(item: str) -> tuple[list[str], Any]:
    """Parse one ``KEY=VALUE`` override: dotted key path, YAML-parsed value."""
    if "=" not in item:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE (e.g. --set batch_size=4)")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {item!r}: empty key")
    try:
        value = safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from None
    return key.split("."), value


def apply_overrides(raw: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides (dotted keys for nested sections) to raw YAML data."""
    for item in overrides or []:
        parts, value = parse_override(item)
        node = raw
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = {}
                node[part] = child
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return raw


def load_yaml_file(path: str | Path, kind: str, build: Callable[[Any], T]) -> T:
    """Read a YAML file and ``build`` its data; every error names the file.

    Args:
        path: the file.
        kind: what it is, for messages ("config", "detect config").
        build: turns the parsed data into the validated object (raises ConfigError).

    Raises:
        ConfigError: the file is missing or not YAML, or ``build`` rejects it
            (its message prefixed with the file).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{kind} file {path}: not found")
    try:
        raw = safe_load(path.read_text(encoding="utf-8"))
    except DuplicateKeyError as exc:
        raise ConfigError(f"{kind} file {path}, {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{kind} file {path}: not valid YAML ({exc})") from None
    try:
        return build(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
