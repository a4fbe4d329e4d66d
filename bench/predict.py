"""End-to-end prediction throughput: patches/s reading inputs, running U-T&T, writing GeoTIFFs.

Runs ``flair2.prediction.patches.predict`` (the code behind ``flair2 predict``) with a
randomly initialised reference U-T&T on the test split of the dataset, at batch 1
and 8, with and without test-time augmentation (TTA, 8 flips/rotations), with the
default settings (``channels_last: auto``: the U-Net runs channels-last in
prediction) and in the default memory order (``_nchw``, ``channels_last: false``);
on a GPU also with bf16 autocast, reporting the share of pixels
whose class equals the fp32 prediction. Each variant first predicts one patch to
warm up (kernel selection), then the whole split into a fresh folder.

Prints one JSON line: ``patches_per_s_b1``, ``patches_per_s_b8``,
``patches_per_s_b1_tta``, ``patches_per_s_b8_tta``, ``patches_per_s_b1_nchw`` (and
``_bf16`` variants with ``bf16_agreement`` on cuda; ``patches_per_s_b1_compile``
with ``--compile``), ``patches``, ``peak_rss_mb`` (all
variants) and ``peak_rss_mb_b1`` (after the batch-1 run, the first).

    python bench/predict.py                  # 512 px toy data generated in a temp folder
    python bench/predict.py --device cuda --patches 64
    python bench/predict.py --quick          # 64 px, 2 patches (CI)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from common import dataset_root, peak_rss_mb, reference_config

from flair2.data.discovery import discover
from flair2.prediction.patches import predict
from flair2.training.task import SegmentationTask


def classes_of(folder: Path) -> np.ndarray:
    """Every PRED file of a folder, concatenated (sorted by name)."""
    arrays = []
    for path in sorted(folder.glob("PRED_*.tif")):
        with rasterio.open(path) as src:
            arrays.append(src.read(1))
    return np.stack(arrays)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=None, help="dataset root (official layout)")
    parser.add_argument("--quick", action="store_true", help="64 px, 2 patches (CI)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--patches", type=int, default=None, help="test patches to generate")
    parser.add_argument("--tta-patches", type=int, default=None, help="patches for TTA variants")
    parser.add_argument("--bf16", action="store_true", help="bf16 variants on the CPU too")
    parser.add_argument(
        "--compile", action="store_true", help="also compile_model (compiled in the warm-up)"
    )
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    patch = 64 if args.quick else 512
    patches = args.patches or (2 if args.quick else 8)
    figures: dict[str, Any] = {"device": args.device, "patch_size": patch}
    if cuda:
        figures["gpu"] = torch.cuda.get_device_name(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = dataset_root(
            args.data,
            tmp,
            patch,
            num_domains=1,
            zones_per_domain=1,
            patches_per_zone=2,
            num_test_domains=1,
            test_patches_per_zone=patches,
        )
        workers = args.workers if args.workers is not None else (8 if cuda else 2)
        base = reference_config(root, args.device, out_folder=tmp, num_workers=workers)
        records = discover(base, stages=("test",)).test
        tta_records = records[: args.tta_patches or max(1, len(records) // 4)]
        checkpoint = Path(tmp) / "random.pt"
        torch.manual_seed(0)
        # A random model: the cost of a forward does not depend on the weights.
        torch.save(SegmentationTask(base, patch_size=patch).model.state_dict(), checkpoint)
        # channels_last "auto" (the default) is channels-last in prediction; the
        # _nchw variants run the default memory order, the straightforward path.
        variants: list[tuple[str, int, bool, bool | str, str]] = [
            ("b1", 1, False, "auto", "32"),
            ("b8", 8, False, "auto", "32"),
            ("b1_tta", 1, True, "auto", "32"),
            ("b8_tta", 8, True, "auto", "32"),
            ("b1_nchw", 1, False, False, "32"),
        ]
        if args.compile:
            variants.append(("b1_compile", 1, False, "auto", "32"))
        if cuda or args.bf16:
            variants += [
                ("b8_bf16", 8, False, "auto", "bf16-mixed"),
                ("b8_bf16_nchw", 8, False, False, "bf16-mixed"),
                ("b8_tta_bf16", 8, True, "auto", "bf16-mixed"),
            ]
        if args.quick:
            variants = variants[:3]
        for name, batch, tta, channels_last, precision in variants:
            cfg = dataclasses.replace(
                base,
                batch_size_inference=batch,
                channels_last=channels_last,
                precision=precision,
                compile_model=name.endswith("_compile"),
            )
            todo = tta_records if tta else records
            out = Path(tmp) / f"pred_{name}"
            predict(cfg, checkpoint, Path(tmp) / f"warm_{name}", tta=tta, records=todo[:1])
            result = predict(cfg, checkpoint, out, tta=tta, records=todo)
            figures[f"patches_per_s_{name}"] = round(result.patches_per_second, 3)
            if cfg.compile_model and len(todo) > 2:
                # Each run compiles its model again (from the compiler's cache, but
                # not for free): the marginal rate between a 2-patch and a full run
                # is the steady-state speed a long prediction gets.
                few = predict(cfg, checkpoint, Path(tmp) / f"few_{name}", tta=tta, records=todo[:2])
                marginal = (result.written - few.written) / (result.seconds - few.seconds)
                figures[f"patches_per_s_{name}_steady"] = round(marginal, 3)
            if name == "b1":  # the peak so far is that of plain batch-1 prediction
                figures["peak_rss_mb_b1"] = round(peak_rss_mb(), 1)
        figures["patches"] = len(records)
        figures["tta_patches"] = len(tta_records)
        if cuda or args.bf16:
            same = classes_of(Path(tmp) / "pred_b8") == classes_of(Path(tmp) / "pred_b8_bf16")
            figures["bf16_agreement"] = round(float(same.mean()), 5)
    figures["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
