"""Which process of a distributed run this is, read from the launcher's environment.

Light on purpose (no torch import): the command line uses it to print an error
once, not once per process.
"""

from __future__ import annotations

import os

_RANK_VARIABLES = ("RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def process_rank() -> int:
    """Global rank of this process as its launcher announced it (0 when launched alone).

    Lightning's own launcher starts the other processes of a single machine with
    ``LOCAL_RANK`` (and ``NODE_RANK`` on several machines) only.
    """
    for name in _RANK_VARIABLES:
        value = os.environ.get(name)
        if value is not None and value.isdigit():
            return int(value)
    local = os.environ.get("LOCAL_RANK", "")
    return int(local) if local.isdigit() else 0
