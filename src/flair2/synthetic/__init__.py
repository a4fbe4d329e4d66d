"""Synthetic data: a toy FLAIR #2 dataset in the official layout, and whole toy areas.

Deterministic for a seed, small, and learnable: the demo, the tests and the
benchmarks run on it, and nothing is downloaded.
"""

from flair2.synthetic.area import ToyArea, generate_toy_area
from flair2.synthetic.presets import (
    AERIAL_CLASSES,
    CENTROIDS_NAME,
    CLASS_GROUPS,
    CONFIG_NAME,
    DEMO_PATCH_SIZE,
    METADATA_NAME,
    SENTINEL_ONLY_CLASSES,
    TEST_ROOTS,
    TINY_MODEL,
    TRAIN_ROOTS,
    group_scores,
    toy_config,
    toy_config_dict,
)
from flair2.synthetic.toy import ToySummary, generate_toy_dataset

__all__ = [
    "AERIAL_CLASSES",
    "CENTROIDS_NAME",
    "CLASS_GROUPS",
    "CONFIG_NAME",
    "DEMO_PATCH_SIZE",
    "METADATA_NAME",
    "SENTINEL_ONLY_CLASSES",
    "TEST_ROOTS",
    "TINY_MODEL",
    "TRAIN_ROOTS",
    "ToyArea",
    "ToySummary",
    "generate_toy_area",
    "generate_toy_dataset",
    "group_scores",
    "toy_config",
    "toy_config_dict",
]
