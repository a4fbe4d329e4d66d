"""Small file helpers shared by every layer: atomic, verified writes; output locks.

An output file is written under a temporary name in the same folder and renamed
into place only once complete, so an interrupted command never leaves a
truncated file behind and a re-run can trust what exists.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import json
import os
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from flair2.errors import ConfigError, OutputError, os_error_message

if sys.platform != "win32":
    import fcntl

#: The lock file a command holds in (or beside) the output it writes (:func:`output_lock`).
LOCK_NAME = ".flair2.lock"

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


def _write_failure(
    final: Path, tmp: Path | None, exc: BaseException, *, read_back: bool = False
) -> OutputError:
    """The one-line error of a failed write, naming the final path (not the hidden one).

    Args:
        final: the file that was to be written.
        tmp: its temporary, whose name is replaced by ``final``'s in the message
            (None when the error is about another path, e.g. the folder).
        exc: the error.
        read_back: the error comes from reading the file back.
    """
    if isinstance(exc, OSError) and exc.errno is not None:
        detail = os_error_message(exc)
        if tmp is not None:
            # The temporary's name means nothing to the user: the advice alone says it.
            detail = detail.replace(f"{tmp}: ", "")
    else:
        detail = str(exc) or type(exc).__name__
    if tmp is not None:
        detail = detail.replace(str(tmp), str(final)).replace(tmp.name, final.name)
    if read_back:
        detail = f"the file read back is not what was written: {detail}; is the disk full?"
    return OutputError(f"{final}: cannot be written ({detail}); nothing was left under that name")


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str],
    *,
    durable: bool = False,
    verify: Callable[[Path], None] | None = None,
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    The caller writes the file at the yielded path (with any library). On an
    exception the temporary file is removed and ``path`` is left untouched. A
    process killed while writing (SIGKILL, power loss) can leave the hidden
    temporary file behind, never a truncated ``path``: see
    :func:`remove_stale_temporaries`.

    Libraries that write from C (GDAL, torch's zip writer) do not always raise
    on a failed write (a full disk, a quota): ``verify`` reads the finished
    temporary back before it may take the final name.

    Args:
        path: the final file path.
        durable: flush the file and the rename to the disk before returning
            (``fsync``), so the file also survives a machine crash. Costs a disk
            round trip: meant for large, rare files such as checkpoints.
        verify: called with the temporary path once the caller's block is done;
            any exception it raises means the file is not what was written.

    Yields:
        The temporary path to write to.

    Raises:
        OutputError: the file could not be written (an operating-system error
            in the block, such as a full disk) or ``verify`` rejected it; the
            message names ``path``.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{final.name}.", suffix=TEMP_SUFFIX, dir=final.parent
        )
    except OSError as exc:
        raise _write_failure(final, None, exc) from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, _FILE_MODE)
        try:
            yield tmp
        except OutputError:
            raise
        except OSError as exc:
            raise _write_failure(final, tmp, exc) from exc
        if verify is not None:
            try:
                verify(tmp)
            except Exception as exc:
                raise _write_failure(final, tmp, exc, read_back=True) from exc
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


def file_fingerprint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """What identifies a file's content wherever it lies: name, size and SHA-256.

    Recorded in the outputs a checkpoint produced, so that a re-run with another
    checkpoint (another file, or the same path retrained) is told apart.
    """
    source = Path(path)
    digest = hashlib.sha256()
    with source.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return {"name": source.name, "size": source.stat().st_size, "sha256": digest.hexdigest()}


def _resolved(path: str | os.PathLike[str]) -> Path:
    return Path(path).expanduser().resolve()


def check_output_outside(
    output: str | os.PathLike[str],
    inputs: Mapping[str, str | os.PathLike[str] | None],
    *,
    name: str,
) -> None:
    """Refuse an output path that is one of the inputs or lies inside an input folder.

    Args:
        output: the file or folder about to be written.
        inputs: what the command reads, by the key or option that names it
            (empty values are skipped).
        name: how the user gave ``output`` (``--out``, ``config key 'output'``).

    Raises:
        ConfigError: ``output`` would overwrite or write into an input; the
            message names both.
    """
    out = _resolved(output)
    for key, value in inputs.items():
        if not value:
            continue
        source = _resolved(value)
        if out == source:
            raise ConfigError(
                f"{name}: {output} is the input {key}; writing there would destroy it: "
                "choose another output path"
            )
        if source.is_dir() and source in out.parents:
            raise ConfigError(
                f"{name}: {output} lies inside the input {key} ({value}); outputs there would "
                "be mixed with the data: choose a path outside it"
            )


def _take_lock(path: Path) -> int | None:
    """Open and lock ``path``; the descriptor, or None when another process holds it."""
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
        except OSError as exc:
            raise _write_failure(path, None, exc) from exc
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return None
            raise _write_failure(path, None, exc) from exc
        # The holder removes the file as it lets go: a lock on a file that is no
        # longer at ``path`` excludes nobody, so open the new one and try again.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def output_lock(lock_file: str | os.PathLike[str], command: str) -> Iterator[None]:
    """Hold an exclusive lock on an output while a command writes it.

    A second run on the same output fails at once, naming the first, instead of
    the two deleting each other's temporary files. The lock is the operating
    system's (a POSIX record lock, which NFS supports): a killed process
    releases it, so a lock file left by a killed run never blocks a re-run, and
    the DataLoader's forked workers do not inherit it. It does not exclude a
    second lock taken by the same process. The file records who holds the lock
    and is removed when the lock is let go.

    Args:
        lock_file: the lock file (a hidden file in or beside the output).
        command: what runs, for the message the other run gets (``flair2 predict``).

    Raises:
        OutputError: another process holds the lock.
    """
    if sys.platform == "win32":  # pragma: no cover  (no lockf: runs are not locked)
        yield
        return
    path = Path(lock_file)
    fd = _take_lock(path)
    if fd is None:
        try:
            holder = path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            holder = ""
        raise OutputError(
            f"{path.parent}: in use by another run ({holder or 'unknown'}); wait for it to "
            "finish or write to another output"
        )
    try:
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        record = f"{command}, pid {os.getpid()} on {socket.gethostname()}, started {started}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode("utf-8"), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # still locked: nobody can have taken this file meanwhile
        os.close(fd)  # releases the lock
