"""Synthetic data: a toy FLAIR #2 dataset in the official layout, and whole toy areas.

Deterministic for a seed, small, and learnable: the demo, the tests and the
benchmarks run on it, and nothing is downloaded.
"""

from flair2.synthetic.area import ToyArea, generate_toy_area
from flair2.synthetic.presets import (
    CENTROIDS_NAME,
    CONFIG_NAME,
    METADATA_NAME,
    SENTINEL_ONLY_CLASSES,
    TEST_ROOTS,
    TINY_MODEL,
    TRAIN_ROOTS,
    toy_config,
    toy_config_dict,
)
from flair2.synthetic.toy import ToySummary, generate_toy_dataset

__all__ = [
    "CENTROIDS_NAME",
    "CONFIG_NAME",
    "METADATA_NAME",
    "SENTINEL_ONLY_CLASSES",
    "TEST_ROOTS",
    "TINY_MODEL",
    "TRAIN_ROOTS",
    "ToyArea",
    "ToySummary",
    "generate_toy_area",
    "generate_toy_dataset",
    "toy_config",
    "toy_config_dict",
]
