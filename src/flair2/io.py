"""Small file helpers shared by every layer: atomic writes.

An output file is written under a temporary name in the same folder and renamed
into place only once complete, so an interrupted command never leaves a
truncated file behind and a re-run can trust what exists.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Suffix of the temporary files :func:`atomic_path` writes (``.<name>.<random>.tmp``).
TEMP_SUFFIX = ".tmp"


def _current_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before any
    # writer thread exists.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: Permissions of the files written: what ``open()`` would give (mkstemp's are 0600).
_FILE_MODE = 0o666 & ~_current_umask()


def _fsync(path: Path, directory: bool = False) -> None:
    """Flush a file's (or a folder's) data to the disk."""
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The caller writes the file at the yielded path (with any library). On an
    exception the temporary file is removed and ``path`` is left untouched. A
    process killed while writing (SIGKILL, power loss) can leave the hidden
    temporary file behind, never a truncated ``path``: see
    :func:`remove_stale_temporaries`.

    Args:
        path: the final file path.
        durable: flush the file and the rename to the disk before returning
            (``fsync``), so the file also survives a machine crash. Costs a disk
            round trip: meant for large, rare files such as checkpoints.

    Yields:
        The temporary path to write to.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=TEMP_SUFFIX, dir=final.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, _FILE_MODE)
        yield tmp
        if durable:
            _fsync(tmp)
        os.replace(tmp, final)
        if durable and os.name == "posix":
            _fsync(final.parent, directory=True)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def remove_stale_temporaries(folder: str | os.PathLike[str], name_glob: str = "*") -> list[Path]:
    """Delete the temporary files an interrupted :func:`atomic_path` left in ``folder``.

    Only call it when no other process writes to ``folder`` (e.g. at the start
    of the run that owns it).

    Args:
        folder: the folder to clean (a missing folder is fine).
        name_glob: the final names whose temporaries to remove (``*.ckpt``...).

    Returns:
        The files removed.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    removed = []
    for tmp in root.glob(f".{name_glob}.*{TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")
