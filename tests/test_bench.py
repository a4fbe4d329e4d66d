"""The benchmark scripts run (tiny mode) and print one JSON line of figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_data_quick() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "data.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    for key in ("samples_per_s", "loader0_samples_per_s", "loader_samples_per_s", "peak_rss_mb"):
        assert figures[key] > 0, key
    assert figures["patch_size"] == 64
