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
