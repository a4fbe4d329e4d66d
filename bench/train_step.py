"""Training-step throughput of the reference U-T&T: samples/s at batch 2 and 4.

One step = forward, both losses (aerial and Sentinel-2 auxiliary), backward and the
optimiser update, on a real batch of the dataset (512 px, 12 monthly averages,
40 px Sentinel-2 crops, metadata), the reference configuration. Variants: fp32
and bf16 autocast (on a GPU, or with ``--bf16``), with and without
``channels_last``. Prints one JSON line with
``samples_per_s_b{2,4}_{fp32,bf16}[_cl]``, the first-step losses of each variant
(bf16 must stay close to fp32) and ``peak_rss_mb``.

    python bench/train_step.py                  # 512 px toy data generated in a temp folder
    python bench/train_step.py --device cuda    # on a GPU
    python bench/train_step.py --quick          # 64 px, one timed step (CI)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from common import dataset_root, peak_rss_mb, reference_config, synchronize

from flair2.data.batch import normalize_batch
from flair2.data.datamodule import FlairDataModule
from flair2.training.task import SegmentationTask


def first_batch(cfg: Any, device: torch.device) -> tuple[dict[str, Any], int]:
    dm = FlairDataModule(cfg)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return normalize_batch(moved), dm.patch_size()


def take(batch: dict[str, Any], n: int) -> dict[str, Any]:
    return {k: v[:n] if isinstance(v, torch.Tensor | list) else v for k, v in batch.items()}


def run_variant(
    cfg: Any,
    patch_size: int,
    batch: dict[str, Any],
    device: torch.device,
    *,
    bf16: bool,
    steps: int,
    warmup: int,
) -> tuple[float, float]:
    """(samples/s, first-step loss) of one variant."""
    torch.manual_seed(0)
    task = SegmentationTask(cfg, patch_size=patch_size).to(device)
    task.train()
    optimizer = task.configure_optimizers()
    if isinstance(optimizer, dict):
        optimizer = optimizer["optimizer"]
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    )
    first_loss = float("nan")
    elapsed = 0.0
    for step in range(warmup + steps):
        synchronize(device)
        start = time.perf_counter()
        with autocast:
            out = task(batch)
            loss = task.compute_loss(out, batch["labels"])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        if step == 0:
            first_loss = float(loss.detach())
        if step >= warmup:
            elapsed += time.perf_counter() - start
    return steps * len(batch["labels"]) / elapsed, first_loss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=None, help="dataset root (official layout)")
    parser.add_argument("--quick", action="store_true", help="64 px, one timed step (CI)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per variant")
    parser.add_argument("--bf16", action="store_true", help="bf16 variants on the CPU too")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    patch = 64 if args.quick else 512
    steps = args.steps or (1 if args.quick else (3 if device.type == "cpu" else 20))
    warmup = 1 if device.type == "cpu" else 3
    figures: dict[str, Any] = {"device": str(device), "patch_size": patch, "steps": steps}
    if device.type == "cuda":
        figures["gpu"] = torch.cuda.get_device_name(device)
    with tempfile.TemporaryDirectory() as tmp:
        root = dataset_root(
            args.data,
            tmp,
            patch,
            num_domains=1,
            zones_per_domain=1,
            patches_per_zone=4,
            num_test_domains=1,
            test_patches_per_zone=1,
        )
        base = reference_config(root, args.device, batch_size=4, use_augmentation=False)
        batch, patch_size = first_batch(base, device)
        # bf16 on a CPU without AVX512-BF16/AMX falls back to slow reference kernels
        # (minutes per step at 512 px): there it runs only with --bf16.
        bf16 = args.quick or device.type == "cuda" or args.bf16
        variants = [(4, False, False), (2, False, False), (4, False, True)]
        if bf16:
            variants += [(4, True, False), (2, True, False), (4, True, True), (2, True, True)]
        if args.quick:
            variants = [(4, False, False), (2, False, False), (4, True, False)]
        for size, bf16, channels_last in variants:
            cfg = dataclasses.replace(base, channels_last=channels_last)
            rate, loss = run_variant(
                cfg,
                patch_size,
                take(batch, size),
                device,
                bf16=bf16,
                steps=steps,
                warmup=0 if args.quick else warmup,
            )
            name = f"b{size}_{'bf16' if bf16 else 'fp32'}{'_cl' if channels_last else ''}"
            figures[f"samples_per_s_{name}"] = round(rate, 3)
            figures[f"first_loss_{name}"] = round(loss, 5)
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
