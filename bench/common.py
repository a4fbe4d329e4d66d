"""Shared pieces of the benchmark scripts: the dataset, the reference config, memory."""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import torch

from flair2.config import Config, config_from_dict, load_config
from flair2.synthetic import generate_toy_dataset, toy_config_dict

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_CONFIG = ROOT / "configs" / "flair-2-config.yml"


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def dataset_root(data: Path | None, tmp: str, patch_size: int, **toy: Any) -> Path:
    """``data`` if given, else a toy dataset generated in ``tmp`` (official layout)."""
    if data is not None:
        return data
    root = Path(tmp) / "toy"
    generate_toy_dataset(root, patch_size=patch_size, seed=0, **toy)
    return root


def reference_config(root: Path, device: str, **overrides: Any) -> Config:
    """The reference U-T&T configuration on the dataset ``root``, on ``device``.

    A dataset given with ``--data`` may carry its own ``toy.yml``/config paths; a
    generated toy dataset is pointed at with absolute paths.
    """
    base = load_config(REFERENCE_CONFIG).to_dict()
    base["data"] = toy_config_dict(root)
    base.update(
        accelerator="gpu" if device.startswith("cuda") else "cpu",
        num_workers=0,
        val_fraction=0.0,
        enable_progress_bar=False,
    )
    base.update(overrides)
    return config_from_dict(base)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock times are honest."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def dataset_rate(dataset: Any, samples: int) -> float:
    """Samples/s of ``dataset[i]`` over ``samples`` indices (cycling), after 4 warm-ups."""
    n = len(dataset)
    for i in range(min(n, 4)):  # the file cache and per-zone caches
        dataset[i]
    start = time.perf_counter()
    for i in range(samples):
        dataset[i % n]
    return samples / (time.perf_counter() - start)
