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


def _run(script: str, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_bench_train_step_quick() -> None:
    figures = _run("train_step.py")
    for key in ("samples_per_s_b4_fp32", "samples_per_s_b2_fp32", "peak_rss_mb"):
        assert figures[key] > 0, key
    # bf16 autocast changes the first loss by rounding only.
    assert abs(figures["first_loss_b4_bf16"] - figures["first_loss_b4_fp32"]) < 0.05
    assert figures["patch_size"] == 64


def test_bench_predict_quick() -> None:
    figures = _run("predict.py")
    for key in ("patches_per_s_b1", "patches_per_s_b8", "patches_per_s_b1_tta", "peak_rss_mb"):
        assert figures[key] > 0, key
    assert figures["patches"] == 2


#: The rows of bench/fusion.py the quick test trains: each source alone and the late fusion.
MODELS = ("unet", "utae", "utt-late")


def test_bench_fusion_quick() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fusion.py"), "--quick", "--models", *MODELS],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    report = json.loads(lines[-1])
    assert list(report["runs"]) == ["unet", "utae", "utt-late"] and report["seeds"] == [2022]
    for runs in report["runs"].values():
        groups = runs[0]["groups"]
        assert set(groups) == {
            "aerial classes 1-9",
            "Sentinel-2-only classes 10-12",
            "all 12 classes",
        }
        assert all(0.0 <= v <= 1.0 for v in groups.values())
    table = "\n".join(lines[:-1])
    assert "| Sentinel-2-only classes 10-12 |" in table and "| 12. plowed land |" in table


def test_pipeline_children_run_on_a_dataset(tiny_root: Path) -> None:
    # bench/versus_reference.py --pipeline runs these beside the reference's code (a
    # checkout of IGNF/FLAIR-2, not available here): flair2's side must keep working.
    script = str(ROOT / "bench" / "reference_pipeline.py")
    for what, extra in (
        ("dataset", ["--samples", "4"]),
        ("predict", ["--workers", "0"]),
        ("train", ["--batch", "2", "--steps", "1"]),
    ):
        proc = subprocess.run(
            [sys.executable, script, "flair2", what, "--data", str(tiny_root), *extra],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        figures = json.loads(proc.stdout.strip().splitlines()[-1])
        assert figures["what"] == what and figures["peak_rss_mb"] > 0
        rate = figures["patches_per_s" if what == "predict" else "samples_per_s"]
        assert rate > 0
        if what == "predict":
            assert figures["patches"] == 3  # every test patch written
    proc = subprocess.run(
        [sys.executable, script, "reference", "dataset", "--data", str(tiny_root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "--reference-src" in proc.stderr
