"""What the safety tests throw at flair2: a checkpoint carrying code, a lock held elsewhere.

Not a conftest.py (see tests/models/model_helpers.py); imported by name, as conftest is.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch


class Payload:
    """Unpickling this creates ``marker``: harmless proof that a file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def payload_checkpoint(path: Path, marker: Path, data: dict[str, Any] | None = None) -> Path:
    """Save ``data`` (default: a small state dict) with a payload that would create ``marker``."""
    content = dict(data) if data is not None else {"state_dict": {"model.w": torch.ones(2)}}
    content["payload"] = Payload(marker)
    torch.save(content, path)
    return path


_HOLD = """
import sys, time
from flair2.io import output_lock
with output_lock(sys.argv[1], sys.argv[2]):
    print("locked", flush=True)
    time.sleep(60)
"""


@contextlib.contextmanager
def lock_held_elsewhere(lock_file: Path, command: str) -> Iterator[int]:
    """Another process holds ``lock_file`` (as ``command``) within; yields its pid."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(lock_file), command], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder.pid
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
