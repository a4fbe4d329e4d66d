"""Presets of the toy data: its layout names, the demo's config and a tiny model.

``toy.yml`` (package data beside this module) is the configuration the demo and
``flair2 toy`` start from; :func:`toy_config` points it at a generated dataset.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from flair2.classes import CLASSES
from flair2.config import Config, config_from_dict
from flair2.schema import safe_load

TRAIN_ROOTS = {
    "aerial": "flair_aerial_train",
    "labels": "flair_labels_train",
    "sen": "flair_sen_train",
}
TEST_ROOTS = {
    "aerial": "flair_2_aerial_test",
    "labels": "flair_2_labels_test",
    "sen": "flair_2_sen_test",
}
CENTROIDS_NAME = "flair-2_centroids_sp_to_patch.json"
METADATA_NAME = "flair-2_aerial_metadata.json"
CONFIG_NAME = "toy.yml"


#: Classes of the toy dataset that only the Sentinel-2 series tells apart: they look
#: alike from the air and differ in their seasonal profile.
SENTINEL_ONLY_CLASSES = ("herbaceous vegetation", "agricultural land", "plowed land")
#: Classes 1–9 of the toy dataset: their aerial looks differ, the image separates them.
AERIAL_CLASSES = tuple(c for c in CLASSES[:12] if c not in SENTINEL_ONLY_CLASSES)
#: The class groups every comparison on the toy data reports (the demo, bench/fusion.py):
#: group name → classes; "all" is the 12 scored classes (the mIoU's).
CLASS_GROUPS: dict[str, tuple[str, ...]] = {
    "aerial classes 1-9": AERIAL_CLASSES,
    "Sentinel-2-only classes 10-12": SENTINEL_ONLY_CLASSES,
    "all 12 classes": tuple(CLASSES[:12]),
}


def group_scores(per_class_iou: dict[str, float | None]) -> dict[str, float]:
    """Mean IoU of each of :data:`CLASS_GROUPS`, as the mIoU counts classes.

    A class without a score (None: neither in the masks nor predicted) is left out,
    as the evaluation's mIoU leaves it out; a group with no scored class counts 0.

    Args:
        per_class_iou: class name → IoU, as the evaluation reports it.

    Returns:
        Group name → mean IoU over the group's scored classes.
    """
    scores = {}
    for group, classes in CLASS_GROUPS.items():
        values = [v for c in classes if (v := per_class_iou.get(c)) is not None]
        scores[group] = sum(values) / len(values) if values else 0.0
    return scores


#: Config keys of a tiny U-T&T for quick CPU runs on toy data (the demo, tests, the
#: benchmarks): 8 px Sentinel-2 crops, a 2-stage U-TAE of 16 channels, ResNet-18.
TINY_MODEL: dict[str, Any] = {
    "sat_patch_size": 8,
    "encoder_widths": [16, 16],
    "decoder_widths": [16, 16],
    "out_conv": [16, 13],
    "n_head": 4,
    "d_model": 32,
    "d_k": 4,
    "encoder_name": "resnet18",
}


#: The demo's toy patches (``flair2 demo``, ``bench/fusion.py``), with :data:`TINY_MODEL`:
#: 64 px keeps the three trainings of the demo within minutes on a 2-core CPU.
DEMO_PATCH_SIZE = 64


def toy_config_dict(out: str | Path) -> dict[str, str]:
    """The ``data:`` section of a config pointing at a toy dataset in ``out`` (absolute paths)."""
    root = Path(out).resolve()
    return {
        "path_aerial_train": str(root / TRAIN_ROOTS["aerial"]),
        "path_sen_train": str(root / TRAIN_ROOTS["sen"]),
        "path_labels_train": str(root / TRAIN_ROOTS["labels"]),
        "path_aerial_test": str(root / TEST_ROOTS["aerial"]),
        "path_sen_test": str(root / TEST_ROOTS["sen"]),
        "path_labels_test": str(root / TEST_ROOTS["labels"]),
        "path_sp_centroids": str(root / CENTROIDS_NAME),
        "path_metadata_aerial": str(root / METADATA_NAME),
    }


def toy_config(data_root: Path, out_folder: Path, name: str, **overrides: Any) -> Config:
    """The shipped ``toy.yml`` pointed at a generated toy dataset.

    Args:
        data_root: the dataset folder (as written by
            :func:`~flair2.synthetic.toy.generate_toy_dataset`).
        out_folder: ``out_folder`` of the runs.
        name: ``out_model_name`` of the run.
        **overrides: other config keys.

    Returns:
        The validated configuration.
    """
    text = files("flair2.synthetic").joinpath(CONFIG_NAME).read_text(encoding="utf-8")
    base = safe_load(text)
    base["data"] = toy_config_dict(data_root)
    base["out_folder"] = str(out_folder)
    base["out_model_name"] = name
    base.update(overrides)
    return config_from_dict(base)
