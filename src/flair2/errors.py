"""Exceptions flair2 raises for problems a user can fix.

The command line prints their message as one line (no traceback) and exits
with a non-zero status, so every message names the file or key at fault and,
where one exists, the fix.
"""

from __future__ import annotations


class Flair2Error(Exception):
    """Base class of the errors a user can act on."""


class ConfigError(Flair2Error, ValueError):
    """A configuration key is unknown, mistyped or out of range."""


class DataError(Flair2Error, ValueError):
    """A dataset file is missing, unreadable or inconsistent."""


class CheckpointError(Flair2Error, ValueError):
    """A checkpoint does not fit the model it is loaded into."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint file would run code when loaded, and was not declared trusted."""


class OutputError(Flair2Error, OSError):
    """An output cannot be written: a failed or unverified write, a locked or refused path."""


#: What to do about the operating-system errors a user meets, by errno name.
_OS_ADVICE: dict[str, str] = {
    "ENOSPC": "no space left on the device: free some space or write the outputs elsewhere",
    "EDQUOT": "disk quota exceeded: free some space or write the outputs elsewhere",
    "EACCES": "permission denied: use a folder you can write to, or change its permissions",
    "EPERM": "operation not permitted: use a folder you can write to",
    "EROFS": "read-only file system: write the outputs to a writable folder",
    "EEXIST": "a file is in the way: give a path that is a folder, or remove the file",
    "ENOTDIR": "a file stands where a folder is expected: give another path",
    "EISDIR": "is a folder where a file is expected: give a file path",
    "ENOENT": "not found",
}


def os_error_message(exc: OSError) -> str:
    """One line for an operating-system error: the path, what went wrong and the fix.

    Example: ``/data/out: no space left on the device: free some space or write
    the outputs elsewhere``.
    """
    import errno

    name = errno.errorcode.get(exc.errno or -1, "")
    what = _OS_ADVICE.get(name) or exc.strerror or str(exc) or type(exc).__name__
    paths = [p for p in (exc.filename, exc.filename2) if p is not None]
    if not paths:
        return what if name in _OS_ADVICE else str(exc) or what
    return f"{' → '.join(str(p) for p in paths)}: {what}"
