"""Training-data throughput: samples/s of the Dataset and of the DataLoader.

Measures what one training epoch reads: aerial + mask + Sentinel-2 crop (cloud
filter, monthly averages) + metadata + augmentation. Prints one JSON line:
``samples_per_s`` (Dataset, one process), ``loader0_samples_per_s`` (DataLoader,
0 workers), ``loader_samples_per_s`` (DataLoader, 2 workers) and ``peak_rss_mb``; and
``aerial_read_ms``: milliseconds per aerial patch (5 bands, uint8, bands first,
contiguous) read by each reader: flair2's header parser (``flair2.data.tiff``),
tifffile (when installed), rasterio/GDAL; each the median of ``--rounds`` passes over
the training patches, the readers taking turns within each round.

    python bench/data.py                 # generates a 512 px toy dataset in a temp folder
    python bench/data.py --data ROOT     # a dataset in the official layout (ROOT/toy.yml or flags)
    python bench/data.py --quick         # 64 px, a few iterations (CI)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import dataset_rate, dataset_root, peak_rss_mb

from flair2.config import config_from_dict
from flair2.data.datamodule import FlairDataModule
from flair2.synthetic import toy_config_dict


def measure(data_root: Path, samples: int, workers: int, batch_size: int) -> dict[str, float]:
    cfg = config_from_dict(
        {
            "data": toy_config_dict(data_root),
            "use_augmentation": True,
            "filter_clouds": True,
            "average_month": True,
            "aerial_metadata": True,
            "num_workers": workers,
            "batch_size": batch_size,
            "accelerator": "cpu",
            "val_fraction": 0.0,
        }
    )
    dm = FlairDataModule(cfg)
    dm.setup("fit")
    dataset = dm.train_dataset
    assert dataset is not None
    n = len(dataset)
    ds_rate = dataset_rate(dataset, samples)

    rates = {}
    for w in (0, workers):
        dm.cfg.num_workers = w
        loader = dm.train_dataloader()
        seen = 0
        start = time.perf_counter()
        while seen < samples:
            for batch in loader:
                seen += len(batch["aerial"])
                if seen >= samples:
                    break
        rates[w] = seen / (time.perf_counter() - start)
    return {
        "samples_per_s": round(ds_rate, 2),
        "loader0_samples_per_s": round(rates[0], 2),
        "loader_samples_per_s": round(rates[workers], 2),
        "patches": n,
    }


def reader_times(data_root: Path, rounds: int, limit: int = 64) -> dict[str, float]:
    """Milliseconds per aerial patch read into (5, H, W) uint8, median over ``rounds``."""
    import statistics

    import numpy as np
    import rasterio

    from flair2.data.tiff import read_plain_tiff

    files = sorted(data_root.glob("flair_aerial_train/**/IMG_*.tif"))[:limit]

    def with_rasterio(path: Path) -> np.ndarray:
        with rasterio.open(path) as src:
            return src.read()

    readers = {"flair2": lambda path: read_plain_tiff(path, 5), "rasterio": with_rasterio}
    try:
        import tifffile

        # tifffile returns (H, W, bands) for GDAL's pixel-interleaved files: the dataset
        # needs bands first and contiguous, as the other two give.
        readers["tifffile"] = lambda path: np.ascontiguousarray(
            np.moveaxis(tifffile.imread(path), -1, 0)
        )
    except ImportError:
        pass
    first = {name: read(files[0]) for name, read in readers.items()}
    assert all(np.array_equal(a, first["flair2"]) for a in first.values())
    times: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(rounds):
        for name, read in readers.items():
            start = time.perf_counter()
            for path in files:
                read(path)
            times[name].append((time.perf_counter() - start) * 1000 / len(files))
    return {name: round(statistics.median(t), 3) for name, t in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=None, help="dataset root (official layout)")
    parser.add_argument("--quick", action="store_true", help="64 px, few samples (CI)")
    parser.add_argument("--samples", type=int, default=None, help="samples per measurement")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="unused: data loading runs on the CPU")
    parser.add_argument("--rounds", type=int, default=None, help="passes of the reader timing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    patch_size = 64 if args.quick else 512
    samples = args.samples or (8 if args.quick else 200)
    with tempfile.TemporaryDirectory() as tmp:
        root = dataset_root(args.data, tmp, patch_size)
        figures: dict[str, object] = dict(measure(root, samples, args.workers, batch_size=4))
        figures["aerial_read_ms"] = reader_times(root, args.rounds or (2 if args.quick else 7))
    figures.update(patch_size=patch_size, peak_rss_mb=round(peak_rss_mb(), 1))
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
