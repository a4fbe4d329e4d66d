"""The toy presets: the class groups every comparison reports, and their scores."""

from __future__ import annotations

import pytest

from flair2.classes import CLASSES
from flair2.synthetic import AERIAL_CLASSES, CLASS_GROUPS, SENTINEL_ONLY_CLASSES, group_scores


def test_groups_are_classes_1_to_9_and_10_to_12() -> None:
    assert tuple(CLASSES[:9]) == AERIAL_CLASSES
    assert tuple(CLASSES[9:12]) == SENTINEL_ONLY_CLASSES
    assert list(CLASS_GROUPS.values()) == [
        AERIAL_CLASSES,
        SENTINEL_ONLY_CLASSES,
        tuple(CLASSES[:12]),
    ]


def test_group_scores_leave_out_unscored_classes_as_the_miou_does() -> None:
    per_class: dict[str, float | None] = dict.fromkeys(CLASSES[:12], 0.5)
    per_class["building"] = 0.8
    per_class["plowed land"] = None  # neither in the masks nor predicted
    per_class["agricultural land"] = 0.2
    scores = group_scores(per_class)
    assert scores["aerial classes 1-9"] == pytest.approx((0.8 + 8 * 0.5) / 9)
    assert scores["Sentinel-2-only classes 10-12"] == pytest.approx((0.5 + 0.2) / 2)
    assert scores["all 12 classes"] == pytest.approx((0.8 + 9 * 0.5 + 0.2) / 11)
    assert group_scores({})["all 12 classes"] == 0.0
