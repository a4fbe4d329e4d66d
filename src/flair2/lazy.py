"""Public names imported on first use, so ``import flair2`` (and ``flair2 --help``) stays fast."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose public names load lazily.

    Args:
        package: the package's ``__name__``.
        exports: public name → the module defining it.

    Returns:
        (``__getattr__``, ``__dir__``) to assign in the package: a name's module is
        imported when the name is first used, and the value is then kept in the
        package's namespace.
    """

    def getattr_(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def dir_() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return getattr_, dir_
