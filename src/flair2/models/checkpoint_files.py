"""Reading checkpoint files without running code they carry.

A ``.ckpt``/``.pt`` file is a pickle: unpickling it freely can call any Python
function the file names (``os.system``…). Checkpoints here are read with
``torch.load(weights_only=True)``, whose unpickler builds tensors, containers and
plain values only, plus the few harmless classes of :data:`SAFE_GLOBALS` that
Lightning checkpoints legitimately hold (argparse namespaces, paths, Lightning's
``AttributeDict``, NumPy scalars). A file that needs anything else is refused
with :class:`~flair2.errors.UnsafeCheckpointError`, which names the file and the
objects it asks for.

The one way around is explicit and never the default: inside
:func:`trusted_checkpoints` (``--trust-checkpoint`` on the command line), a file
the safe reader refuses is read again with ``weights_only=False``, with a
warning. ``.safetensors`` files hold no code at all and are always read.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import pathlib
import pickle
import re
import zipfile
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flair2.errors import CheckpointError, UnsafeCheckpointError

logger = logging.getLogger(__name__)

#: Whether files refused by the safe reader may be unpickled (see :func:`trusted_checkpoints`).
_TRUSTED: ContextVar[bool] = ContextVar("flair2_trusted_checkpoints", default=False)

#: The command-line option that opts in, named by every refusal.
TRUST_OPTION = "--trust-checkpoint"


def _numpy_scalar_globals() -> list[Any]:
    # NumPy scalars (a metric logged as np.float64) pickle through
    # ``multiarray.scalar`` and a dtype; the module moved to ``numpy._core`` in 2.0.
    found: list[Any] = [np.dtype]
    for kind in (np.float64, np.float32, np.int64, np.int32, np.bool_):
        found.append(type(np.dtype(kind)))
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        with contextlib.suppress(ImportError, AttributeError):
            scalar = __import__(module, fromlist=["scalar"]).scalar
            found.append((scalar, f"{module}.scalar"))
    return found


#: The non-tensor classes a checkpoint may hold. Each only builds a container of
#: plain values: a namespace, a path (a Windows path becomes a pure path, never
#: touching the disk), a dict (Lightning's ``AttributeDict`` under each of its
#: historical module names, read as a plain dict), a NumPy scalar.
SAFE_GLOBALS: list[Any] = [
    argparse.Namespace,
    pathlib.PosixPath,
    pathlib.PurePosixPath,
    pathlib.PureWindowsPath,
    (pathlib.PureWindowsPath, "pathlib.WindowsPath"),
    (dict, "pytorch_lightning.utilities.parsing.AttributeDict"),
    (dict, "lightning.fabric.utilities.data.AttributeDict"),
    (dict, "lightning_fabric.utilities.data.AttributeDict"),
    *_numpy_scalar_globals(),
]


@contextlib.contextmanager
def checkpoint_safe_globals() -> Iterator[None]:
    """Allow :data:`SAFE_GLOBALS` in ``torch.load(weights_only=True)`` calls within.

    Used around the reader here and around Lightning's own loading of a resumed
    checkpoint, which reads with ``weights_only=True`` too.
    """
    with torch.serialization.safe_globals(SAFE_GLOBALS):
        yield


@contextlib.contextmanager
def trusted_checkpoints() -> Iterator[None]:
    """Let checkpoint files that carry arbitrary Python objects be unpickled, within.

    Unpickling runs whatever code the file names: use it only for files from a
    source you trust (``--trust-checkpoint`` on the command line).
    """
    token = _TRUSTED.set(True)
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def checkpoints_trusted() -> bool:
    """Whether the caller runs inside :func:`trusted_checkpoints`."""
    return _TRUSTED.get()


def _unsafe_names(path: Path, error: Exception) -> list[str]:
    """The globals a refused file asks for, as far as they can be told without loading it."""
    names: list[str] = []
    with contextlib.suppress(Exception):
        names = list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    if not names:
        names = re.findall(r"GLOBAL ([\w.]+)", str(error))
    safe = {name for entry in SAFE_GLOBALS if isinstance(entry, tuple) for name in entry[1:]}
    safe |= {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS if not isinstance(g, tuple)}
    return sorted(dict.fromkeys(n for n in names if n not in safe))


def _unpickler_reason(error: Exception) -> str:
    """The one useful line of torch's (long, multi-line) weights-only refusal."""
    text = str(error)
    match = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    return (match.group(1) if match else text.splitlines()[0] if text else "").strip()


def _torch_load(path: Path, mmap: bool) -> Any:
    try:
        with checkpoint_safe_globals():
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        names = _unsafe_names(path, exc)
        if checkpoints_trusted():
            logger.warning(
                "%s holds Python objects (%s): unpickling it (%s), which runs any code it carries",
                path,
                ", ".join(names) or "unknown",
                TRUST_OPTION,
            )
            return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
        if names:
            raise UnsafeCheckpointError(
                f"checkpoint file {path}: refused: it holds Python objects ({', '.join(names)}) "
                "that loading would have to execute, which a checkpoint of weights never "
                f"needs; if you trust where the file comes from, pass {TRUST_OPTION}"
            ) from None
        # A damaged file, or one whose pickle the safe reader does not understand.
        raise CheckpointError(
            f"checkpoint file {path}: cannot be read safely ({_unpickler_reason(exc)}): not a "
            f"checkpoint, or damaged; if it is one from a source you trust, {TRUST_OPTION} "
            "reads it without the safety checks"
        ) from None


#: The weights file of a folder written by ``flair2 export-weights`` (model hubs' layout).
EXPORTED_WEIGHTS = "model.safetensors"
#: The configuration beside it.
EXPORTED_CONFIG = "config.yaml"


def checkpoint_content_file(path: str | Path) -> Path:
    """The file that holds a checkpoint's weights: ``path``, or an exported folder's weights."""
    path = Path(path)
    return path / EXPORTED_WEIGHTS if path.is_dir() else path


def read_exported_folder(folder: Path) -> dict[str, Any]:
    """An exported folder (``model.safetensors`` + ``config.yaml``) as a flair2 checkpoint.

    Returns:
        ``{"state_dict": {"model.<key>": tensor}, "hyper_parameters": {"config",
        "patch_size"}}``: the shape of a checkpoint of flair2's training task, so
        that every reader of checkpoints takes the folder as one.
    """
    import yaml
    from safetensors import safe_open
    from safetensors.torch import load_file

    weights = folder / EXPORTED_WEIGHTS
    try:
        state = load_file(str(weights), device="cpu")
        with safe_open(str(weights), framework="pt") as handle:
            metadata = handle.metadata() or {}
        config_file = folder / EXPORTED_CONFIG
        config = (
            yaml.safe_load(config_file.read_text(encoding="utf-8"))
            if config_file.is_file()
            else None
        )
    except Exception as exc:
        raise CheckpointError(
            f"exported model {folder}: cannot be read ({type(exc).__name__}: {exc})"
        ) from exc
    hparams: dict[str, Any] = {}
    if isinstance(config, Mapping):
        hparams["config"] = dict(config)
    if metadata.get("patch_size", "").isdigit():
        hparams["patch_size"] = int(metadata["patch_size"])
    return {"state_dict": {f"model.{k}": v for k, v in state.items()}, "hyper_parameters": hparams}


def read_checkpoint_file(path: str | Path, *, mmap: bool = False) -> dict[str, Any]:
    """Read a torch or safetensors file into a dict, on the CPU, running no code from it.

    Args:
        path: the file, or a folder written by ``flair2 export-weights``
            (:func:`read_exported_folder`).
        mmap: memory-map a zip-format torch file (what ``torch.save`` writes): only
            the tensors used are read, so loading weights costs no memory for a
            training checkpoint's optimizer state, nor a second copy of the
            weights. The tensors stay backed by the file: use it only when they
            are dropped before anything rewrites the file.

    Raises:
        UnsafeCheckpointError: the file needs arbitrary unpickling and the caller
            is not inside :func:`trusted_checkpoints`.
        CheckpointError: missing, unreadable, or not a mapping.
    """
    path = Path(path)
    if path.is_dir() and (path / EXPORTED_WEIGHTS).is_file():
        return read_exported_folder(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file {path}: not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data: Any = load_file(str(path), device="cpu")
        else:
            data = _torch_load(path, mmap and zipfile.is_zipfile(path))
    except CheckpointError:
        raise
    except Exception as exc:
        # torch.load fails with many types (zip, pickle, EOF, runtime) on a bad file.
        raise CheckpointError(
            f"checkpoint file {path}: cannot be read ({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(data, Mapping):
        raise CheckpointError(
            f"checkpoint file {path}: expected a state dict or a Lightning checkpoint, "
            f"found {type(data).__name__}"
        )
    return dict(data)
