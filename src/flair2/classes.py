"""The FLAIR #2 nomenclature: class names, colours and the 19 → 13 class mapping.

Every layer may import this module; it depends on nothing but numpy.

Label files hold values 1–19 (the full nomenclature). The baselines use 13
classes: values above 13 become 13 ("other"), then 1 is subtracted, so models
see indices 0–12; index 12 ("other") is left out of the mIoU.
"""

from __future__ import annotations

import numpy as np

from flair2.formats import VALUES_LABELS

#: The full nomenclature, label value → name (values 1–19 in MSK_*.tif files).
FULL_CLASSES: dict[int, str] = {
    1: "building",
    2: "pervious surface",
    3: "impervious surface",
    4: "bare soil",
    5: "water",
    6: "coniferous",
    7: "deciduous",
    8: "brushwood",
    9: "vineyard",
    10: "herbaceous vegetation",
    11: "agricultural land",
    12: "plowed land",
    13: "swimming pool",
    14: "snow",
    15: "clear cut",
    16: "mixed",
    17: "ligneous",
    18: "greenhouse",
    19: "other",
}

#: Colours of the full nomenclature (the FLAIR palette), label value → hex.
FULL_PALETTE: dict[int, str] = {
    1: "#db0e9a",
    2: "#938e7b",
    3: "#f80c00",
    4: "#a97101",
    5: "#1553ae",
    6: "#194a26",
    7: "#46e483",
    8: "#f3a60d",
    9: "#660082",
    10: "#55ff00",
    11: "#fff30d",
    12: "#e4df7c",
    13: "#3de6eb",
    14: "#ffffff",
    15: "#8ab3a0",
    16: "#6b714f",
    17: "#c5dc42",
    18: "#9999ff",
    19: "#000000",
}

#: Number of classes the baseline models predict.
NUM_CLASSES = 13
#: Highest label value in the full nomenclature.
MAX_LABEL = 19
#: Model index of the class left out of the mIoU ("other").
OTHER_INDEX = 12

#: Model index (0–12) → class name.
CLASSES: list[str] = [FULL_CLASSES[v] for v in range(1, 13)] + ["other"]

#: Model index (0–12) → hex colour; "other" is black.
PALETTE: list[str] = [FULL_PALETTE[v] for v in range(1, 13)] + ["#000000"]

#: Class names by model index, per nomenclature a published head may be trained on.
#: flair2's 13 classes are FLAIR's 12 first classes plus "other" (values 13–19); the
#: others are those of IGN's published models (``init_weights_classes``).
NOMENCLATURES: dict[str, tuple[str, ...]] = {
    # flair2 / FLAIR #2 baselines.
    "flair2-13": tuple(CLASSES),
    # FLAIR #1's full nomenclature (label values 1–19), as FLAIR-1's 19-class models.
    "flair-19": tuple(FULL_CLASSES[v] for v in range(1, 20)),
    # FLAIR-INC "15cl" (model cards on IGN's hub): the 12, swimming pool, greenhouse, other.
    "flair-inc-15": (
        *(FULL_CLASSES[v] for v in range(1, 13)), "swimming pool", "greenhouse", "other",
    ),
    # FLAIR-INC "12cl": FLAIR's 12 first classes, no "other".
    "flair-inc-12": tuple(FULL_CLASSES[v] for v in range(1, 13)),
    # FLAIR-HUB's AERIAL_LABEL-COSIA task (configs/train/config_supervision.yaml), in its order.
    "cosia-19": (
        "building", "greenhouse", "swimming pool", "impervious surface", "pervious surface",
        "bare soil", "water", "snow", "herbaceous vegetation", "agricultural land",
        "plowed land", "vineyard", "deciduous", "coniferous", "brushwood", "clear cut",
        "ligneous", "mixed", "other",
    ),
}  # fmt: skip

#: Alternative spellings accepted in configs, mapped to the canonical name.
#: The reference configuration spells "agricultural land" as "agricutural land".
CLASS_ALIASES: dict[str, str] = {"agricutural land": "agricultural land"}


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    """Convert ``#rrggbb`` to an (r, g, b) tuple of ints in 0–255."""
    color = color.lstrip("#")
    return (int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16))


def palette_rgb(num_classes: int = NUM_CLASSES) -> np.ndarray:
    """The model palette as a (num_classes, 3) uint8 array."""
    return np.array([hex_to_rgb(c) for c in PALETTE[:num_classes]], dtype=np.uint8)


def labels_to_model(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Map label values (1–19) to model indices (0 to ``num_classes - 1``).

    Values above ``num_classes`` become ``num_classes`` before 1 is subtracted,
    as the reference does.

    Args:
        labels: integer array of label values, any shape.
        num_classes: number of model classes (13 for the baselines).

    Returns:
        uint8 array of the same shape.
    """
    out = np.minimum(labels, num_classes).astype(np.int16) - 1
    return out.astype(np.uint8)


def model_to_labels(indices: np.ndarray) -> np.ndarray:
    """Map model indices (0–12) to the label nomenclature (1–13)."""
    return (indices.astype(np.uint8) + 1).astype(np.uint8)


def canonical_class_name(name: str) -> str:
    """Return the canonical spelling of a class name (resolving known aliases)."""
    key = name.strip().lower()
    return CLASS_ALIASES.get(key, key)


def colormap(values: str, num_entries: int) -> dict[int, tuple[int, int, int, int]]:
    """The palette as a GDAL colour table keyed by the pixel value written."""
    offset = 1 if values == VALUES_LABELS else 0
    return {
        index + offset: (*hex_to_rgb(PALETTE[index]), 255)
        for index in range(min(num_entries, len(PALETTE)))
    }


def class_names_for(num_classes: int) -> list[str]:
    """Names of the model classes: label values 1..K−1 of the nomenclature, then "other"."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    return [FULL_CLASSES.get(v, f"class {v}") for v in range(1, num_classes)] + ["other"]


def class_colours(num_classes: int) -> list[str]:
    """Colour of each model class: label values 1..K−1 in the FLAIR palette, then black "other"."""
    return [FULL_PALETTE.get(v, "#808080") for v in range(1, num_classes)] + ["#000000"]
