"""The reference's data pipeline and prediction loop beside flair2's: one measurement per process.

Run by ``versus_reference.py --pipeline`` (which alternates them and prints the
ratios); alone, it measures one thing and prints one JSON line with its rate and
``peak_rss_mb`` (the peak of this process, so one measurement per process; the
largest of its children's, DataLoader workers included, is
``children_peak_rss_mb``):

    python bench/reference_pipeline.py reference predict --reference-src ~/FLAIR-2 --data ROOT
    python bench/reference_pipeline.py flair2 predict --data ROOT

What is measured, on a dataset of the official layout (``ROOT/toy.yml``'s paths):

- ``dataset``: samples/s of the training Dataset in one process (aerial + mask,
  Sentinel-2 crop, cloud filter, monthly means, metadata, flips/rotations): the
  reference's ``Fit_Dataset`` with its albumentations set, flair2's training
  dataset;
- ``predict``: patches/s end to end over the test split (read, forward,
  softmax/argmax, write one TIFF per patch) at ``--batch`` with ``--workers``
  DataLoader workers, after a one-patch warm-up: the reference's own prediction
  (its DataModule, ``SegmentationTask.predict_step``, ``PredictionWriter`` and a
  Lightning Trainer, as its ``main.py`` runs them; Lightning 2 stands in for
  1.x), and ``flair2.prediction.patches.predict`` (the code behind ``flair2
  predict``) with the configuration's defaults (``--compile``: with
  ``compile_model``; the warm-up patch pays for the compilation);
- ``train``: samples/s of ``--steps`` training steps (DataLoader, forward, both
  cross-entropies, backward, SGD update) at ``--batch``, after one warm-up step.

``--set KEY=VALUE`` sets flair2 configuration keys (e.g. ``checkpoint_decoder_blocks=3``).
Both models have random weights (what a step costs does not depend on them).
The reference needs ``pip install pandas scikit-image albumentations``.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from common import dataset_rate, reference_config

from flair2.data.batch import normalize_batch
from flair2.data.datamodule import FlairDataModule
from flair2.schema import parse_override

WHATS = ("dataset", "predict", "train")


# ---------------------------------------------------------------- the reference
def reference_modules(src: Path) -> dict[str, Any]:
    """The reference's dataset classes, collate functions and data listing."""
    sys.path.insert(0, str(src))
    try:
        import albumentations  # noqa: F401
        import pandas  # noqa: F401
        import skimage  # noqa: F401
    except ImportError as exc:
        raise SystemExit(
            f"the reference's data code needs {exc.name}: "
            "pip install pandas scikit-image albumentations"
        ) from exc
    from src.dataset import Fit_Dataset, Predict_Dataset  # type: ignore[import-not-found]
    from src.load_data import load_data  # type: ignore[import-not-found]
    from src.utils_dataset import (  # type: ignore[import-not-found]
        pad_collate_predict,
        pad_collate_train,
    )

    return {
        "Fit_Dataset": Fit_Dataset,
        "Predict_Dataset": Predict_Dataset,
        "load_data": load_data,
        "pad_collate_predict": pad_collate_predict,
        "pad_collate_train": pad_collate_train,
    }


def reference_setup(src: Path, root: Path) -> tuple[dict[str, Any], dict[str, Any], tuple]:
    """(modules, config, (train, val, test) dicts) of the reference on ``root``."""
    import yaml

    from flair2.synthetic import toy_config_dict

    mods = reference_modules(src)
    cfg = yaml.safe_load((src / "flair-2-config.yml").read_text())
    cfg["data"] = toy_config_dict(root)
    # All domains in training: the reference splits train/val 80/20 by domain.
    splits = mods["load_data"](cfg, val_percent=1.0)
    return mods, cfg, splits


def reference_augmentation() -> Any:
    import albumentations as A

    return A.Compose([A.VerticalFlip(p=0.5), A.HorizontalFlip(p=0.5), A.RandomRotate90(p=0.5)])


def reference_dataset(src: Path, root: Path, samples: int) -> dict[str, Any]:
    mods, cfg, (train, _, _) = reference_setup(src, root)
    dataset = mods["Fit_Dataset"](train, cfg, augmentation_set=reference_augmentation())
    return {"samples_per_s": dataset_rate(dataset, samples), "patches": len(dataset)}


def reference_predict(src: Path, root: Path, out: Path, batch: int, workers: int) -> dict[str, Any]:
    """The reference's own prediction: its DataModule, task, writer and a Lightning Trainer."""
    import lightning.pytorch as lightning
    from versus_reference import reference_model

    # The reference imports pytorch_lightning 1.x; Lightning 2 under that name runs its
    # prediction unchanged, except the writer's batch hook, which reads a loop attribute
    # that Lightning 2 no longer has: the base class's hook (same call) replaces it.
    sys.modules.setdefault("pytorch_lightning", lightning)
    _, cfg, (_, _, test) = reference_setup(src, root)
    from src.datamodule import DataModule  # type: ignore[import-not-found]
    from src.prediction_writer import PredictionWriter  # type: ignore[import-not-found]
    from src.task_module import SegmentationTask  # type: ignore[import-not-found]

    del PredictionWriter.on_predict_batch_end
    cfg.update(batch_size_inference=batch, num_workers=workers)
    torch.manual_seed(0)
    model, _ = reference_model(src, torch.device("cpu"))
    losses = torch.nn.ModuleList([torch.nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss()])
    task = SegmentationTask(model, cfg["num_classes"], losses, None, cfg)

    def run(dicts: dict[str, list], folder: Path) -> tuple[int, float]:
        trainer = lightning.Trainer(
            accelerator="cpu",
            devices=1,
            callbacks=[PredictionWriter(str(folder), "batch")],
            logger=False,
            enable_progress_bar=False,
            enable_checkpointing=False,
        )
        data = DataModule(dict_test=dicts, config=cfg, drop_last=False)
        start = time.perf_counter()
        trainer.predict(task, datamodule=data, return_predictions=False)
        return len(list(folder.glob("PRED_*.tif"))), time.perf_counter() - start

    run({k: v[:1] for k, v in test.items()}, out / "warm")
    written, seconds = run(test, out / "predictions")
    return {"patches_per_s": written / seconds, "patches": written}


def reference_train(src: Path, root: Path, batch: int, steps: int) -> dict[str, Any]:
    from torch.utils.data import DataLoader
    from versus_reference import reference_model

    mods, cfg, (train, _, _) = reference_setup(src, root)
    loader = DataLoader(
        mods["Fit_Dataset"](train, cfg, augmentation_set=reference_augmentation()),
        batch_size=batch,
        shuffle=True,
        drop_last=True,
        collate_fn=mods["pad_collate_train"],
    )
    torch.manual_seed(0)
    model, _ = reference_model(src, torch.device("cpu"))
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg["lr"])

    def step(b: dict[str, Any]) -> None:
        aux, logits = model(cfg, b["patch"], b["spatch"], b["dates"], b["mtd"])
        loss = F.cross_entropy(logits, b["labels"].long()) + F.cross_entropy(
            aux, b["slabels"].long()
        )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return {"samples_per_s": train_rate(loader, step, batch, steps)}


# ------------------------------------------------------------------- flair2
#: Config keys given with ``--set`` (flair2's side).
FLAIR2_OVERRIDES: dict[str, Any] = {}


def flair2_config(root: Path, tmp: str, **overrides: Any) -> Any:
    return reference_config(root, "cpu", out_folder=tmp, **{**overrides, **FLAIR2_OVERRIDES})


def flair2_dataset(root: Path, samples: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        dm = FlairDataModule(flair2_config(root, tmp, use_augmentation=True))
        dm.setup("fit")
        dataset = dm.train_dataset
        if dataset is None:
            raise SystemExit(f"{root}: no training patches")
        return {"samples_per_s": dataset_rate(dataset, samples), "patches": len(dataset)}


def write_random_checkpoint(root: Path, path: Path) -> None:
    """A randomly initialised model's state dict (the reference configuration)."""
    from flair2.training.task import SegmentationTask

    with tempfile.TemporaryDirectory() as tmp:
        cfg = flair2_config(root, tmp)
        dm = FlairDataModule(cfg)
        dm.setup("predict")
        torch.manual_seed(0)
        torch.save(SegmentationTask(cfg, patch_size=dm.patch_size()).model.state_dict(), path)


def flair2_predict(
    root: Path, out: Path, batch: int, workers: int, compile_model: bool = False
) -> dict[str, Any]:
    import multiprocessing

    from flair2.data.discovery import discover
    from flair2.prediction.patches import predict

    cfg = flair2_config(
        root,
        str(out),
        num_workers=workers,
        batch_size_inference=batch,
        compile_model=compile_model,
    )
    records = discover(cfg, stages=("test",)).test
    checkpoint = out / "random.pt"
    # In another process: a prediction run starts from a checkpoint file; the model
    # that wrote it must not count in this process's peak memory.
    writer = multiprocessing.get_context("spawn").Process(
        target=write_random_checkpoint, args=(root, checkpoint)
    )
    writer.start()
    writer.join()
    if writer.exitcode != 0:
        raise SystemExit("could not write the random checkpoint")
    predict(cfg, checkpoint, out / "warm", records=records[:1])
    result = predict(cfg, checkpoint, out / "predictions", records=records)
    return {"patches_per_s": result.patches_per_second, "patches": result.written}


def flair2_train(root: Path, batch: int, steps: int) -> dict[str, Any]:
    from flair2.training.task import SegmentationTask

    with tempfile.TemporaryDirectory() as tmp:
        cfg = flair2_config(root, tmp, batch_size=batch, use_augmentation=True)
        dm = FlairDataModule(cfg)
        dm.setup("fit")
        torch.manual_seed(0)
        task = SegmentationTask(cfg, patch_size=dm.patch_size())
        task.train()
        optimizer = torch.optim.SGD(task.parameters(), lr=cfg.lr)

        def step(b: dict[str, Any]) -> None:
            b = normalize_batch(b)
            loss = task.compute_loss(task(b), b["labels"])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return {"samples_per_s": train_rate(dm.train_dataloader(), step, batch, steps)}


# ------------------------------------------------------------------- shared
def batches(loader: Any) -> Iterator[Any]:
    while True:
        yield from loader


def train_rate(loader: Any, step: Any, batch: int, steps: int) -> float:
    """Samples/s of ``steps`` calls of ``step`` on the loader's batches, after one warm-up."""
    stream = batches(loader)
    step(next(stream))
    start = time.perf_counter()
    for _ in range(steps):
        step(next(stream))
    return steps * batch / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("side", choices=("reference", "flair2"))
    parser.add_argument("what", choices=WHATS)
    parser.add_argument("--data", type=Path, required=True, help="dataset root (official layout)")
    parser.add_argument("--reference-src", type=Path, default=None)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="flair2 predict: compile_model")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="flair2: config keys"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore")
    if args.side == "reference" and args.reference_src is None:
        parser.error("the reference side needs --reference-src (a checkout of IGNF/FLAIR-2)")
    src = args.reference_src
    if args.what == "dataset":
        torch.set_num_threads(1)  # as a DataLoader worker
    for item in args.set:
        (key, *nested), value = parse_override(item)
        if nested:
            parser.error(f"--set {item}: top-level keys only")
        FLAIR2_OVERRIDES[key] = value
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        if args.side == "reference":
            if args.what == "dataset":
                figures = reference_dataset(src, args.data, args.samples)
            elif args.what == "predict":
                figures = reference_predict(src, args.data, out, args.batch, args.workers)
            else:
                figures = reference_train(src, args.data, args.batch, args.steps)
        elif args.what == "dataset":
            figures = flair2_dataset(args.data, args.samples)
        elif args.what == "predict":
            figures = flair2_predict(args.data, out, args.batch, args.workers, args.compile)
        else:
            figures = flair2_train(args.data, args.batch, args.steps)
    figures = {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}
    # This process's own peak: DataLoader workers and the process that writes flair2's
    # random checkpoint are children, reported apart.
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    figures.update(
        side=args.side,
        what=args.what,
        peak_rss_mb=round(own, 1),
        children_peak_rss_mb=round(children, 1),
    )
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
