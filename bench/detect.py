"""Whole-area detection throughput and memory: windows/s and peak RSS of ``flair2 detect``.

Generates a square toy area (aerial raster + Sentinel-2 series, in a temp folder),
then runs :func:`flair2.detection.runner.detect` with the reference configuration's
model (random weights, 512 px windows, overlap 128) twice, each in a fresh process
so that its peak memory is its own: U-T&T with the Sentinel-2 series, and the
aerial-only U-Net (``arch: unet``) without it. Prints one JSON line: ``size``,
``windows``, and per model ``windows_per_s``, ``seconds``, ``peak_rss_mb``,
``sentinel2`` (and ``peak_gpu_mb`` on cuda).

    python bench/detect.py --size 4096        # 4096 × 4096 px aerial raster
    python bench/detect.py --size 8192        # memory must stay that of 4096
    python bench/detect.py --quick            # 192 × 160 px, a tiny model (CI)
    python bench/detect.py --quick --size 2048 --arch unet   # memory check, tiny model
    python bench/detect.py --arch utt --device cuda --batch 16
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from common import REFERENCE_CONFIG, peak_rss_mb

from flair2.config import config_from_dict, load_config
from flair2.detection.runner import detect
from flair2.detection.settings import detect_settings_from_dict
from flair2.synthetic import TINY_MODEL
from flair2.synthetic.area import generate_toy_area
from flair2.training.model import build_model

#: A model small enough for the quick mode (64 px windows, a tiny U-TAE).
TINY = {"patch_size": 64, **TINY_MODEL}


def run_child(job: dict[str, Any]) -> dict[str, Any]:
    """One detection in this process; returns its figures."""
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    base = load_config(REFERENCE_CONFIG).to_dict()
    base.update(arch=job["arch"], patch_size=512)
    if job["quick"]:
        base.update(TINY)
    cfg = config_from_dict(base)
    torch.manual_seed(0)
    model = build_model(cfg, cfg.patch_size or 512).eval()
    area = job["area"]
    settings = detect_settings_from_dict(
        {
            "aerial": area["aerial"],
            "sentinel2": area["sentinel"] if job["arch"] == "utt" else None,
            "sentinel2_masks": area["masks"] if job["arch"] == "utt" else None,
            "metadata": area["metadata"],
            "checkpoint": "random-weights",
            "output": job["output"],
            "overlap": 16 if job["quick"] else job["overlap"],
            "batch_size": job["batch"],
            "accelerator": "gpu" if job["device"].startswith("cuda") else "cpu",
            "num_workers": job["workers"],
            "enable_progress_bar": False,
            "overwrite": True,
        }
    )
    start = time.perf_counter()
    result = detect(settings, model=model, model_cfg=cfg)
    total = time.perf_counter() - start
    figures = {
        "windows_per_s": round(result.windows_per_second, 3),
        "seconds": round(total, 2),
        "windows": result.windows,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "sentinel2": job["arch"] == "utt",
    }
    if torch.cuda.is_available() and job["device"].startswith("cuda"):
        figures["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=None, help="raster side, px (4096)")
    parser.add_argument(
        "--quick", action="store_true", help="a tiny model on 192 × 160 px (or --size) (CI)"
    )
    parser.add_argument("--arch", choices=("both", "utt", "unet"), default="both")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch", type=int, default=4, help="windows per forward pass")
    parser.add_argument("--overlap", type=int, default=128, help="window overlap, pixels")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--dates", type=int, default=12, help="Sentinel-2 dates")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    if args.child is not None:
        print(json.dumps(run_child(json.loads(args.child))))
        return

    if args.size is not None:
        width = height = args.size
    else:
        width, height = (192, 160) if args.quick else (4096, 4096)
    arches = ("utt", "unet") if args.arch == "both" else (args.arch,)
    figures: dict[str, Any] = {"size": [width, height], "device": args.device}
    with tempfile.TemporaryDirectory(prefix="flair2-bench-detect-") as tmp:
        start = time.perf_counter()
        area = generate_toy_area(
            Path(tmp) / "area",
            width=width,
            height=height,
            dates=4 if args.quick else args.dates,
            sat_patch_size=8 if args.quick else 40,
            nodata_corner=False,
        )
        figures["generate_seconds"] = round(time.perf_counter() - start, 1)
        for arch in arches:
            job = {
                "arch": arch,
                "quick": args.quick,
                "device": args.device,
                "batch": args.batch,
                "overlap": args.overlap,
                "workers": args.workers,
                "threads": args.threads,
                "output": str(Path(tmp) / f"{arch}.tif"),
                "area": {
                    "aerial": str(area.aerial),
                    "sentinel": str(area.sentinel),
                    "masks": str(area.masks),
                    "metadata": area.metadata,
                },
            }
            proc = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(job)],
                capture_output=True,
                text=True,
                env=dict(os.environ, PYTHONWARNINGS="ignore"),
            )
            if proc.returncode != 0:
                sys.stderr.write(proc.stderr[-4000:])
                raise SystemExit(f"detect ({arch}) failed")
            child = json.loads(proc.stdout.strip().splitlines()[-1])
            figures["windows"] = child.pop("windows")
            figures[arch] = child
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
