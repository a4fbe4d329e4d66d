"""Tests of the scores derived from a confusion matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest

from flair2.evaluation.metrics import compute_metrics


def _reference_miou(cm: np.ndarray) -> float:
    """The reference's calc_miou (IGNF/FLAIR-2 src/metrics.py), restated."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ious = np.diag(cm) / (cm.sum(0) + cm.sum(1) - np.diag(cm))
    return float(np.nansum(ious[:-1]) / np.logical_not(np.isnan(ious[:-1])).sum())


def test_hand_computed_4_classes():
    # rows = truth, columns = prediction; class 2 absent from truth and prediction,
    # class 3 is "other" (left out of the mIoU).
    cm = np.array(
        [
            [3, 1, 0, 0],
            [2, 4, 0, 1],
            [0, 0, 0, 0],
            [1, 0, 0, 5],
        ]
    )
    m = compute_metrics(cm)
    # class 0: tp 3, fp 3, fn 1 → 3/7; class 1: tp 4, fp 1, fn 3 → 4/8; class 3: 5/(5+1+1)
    np.testing.assert_allclose(m.iou[[0, 1, 3]], [3 / 7, 4 / 8, 5 / 7])
    assert math.isnan(m.iou[2])
    np.testing.assert_allclose(m.precision[[0, 1, 3]], [3 / 6, 4 / 5, 5 / 6])
    np.testing.assert_allclose(m.recall[[0, 1, 3]], [3 / 4, 4 / 7, 5 / 6])
    np.testing.assert_allclose(m.f1[[0, 1, 3]], [6 / 10, 8 / 12, 10 / 12])
    assert math.isnan(m.precision[2]) and math.isnan(m.recall[2]) and math.isnan(m.f1[2])
    assert m.miou == pytest.approx((3 / 7 + 4 / 8) / 2)
    assert m.miou == pytest.approx(_reference_miou(cm))
    assert m.overall_accuracy == pytest.approx(12 / 17)
    assert m.miou_classes == (0, 1, 2)
    np.testing.assert_array_equal(m.support, [4, 7, 0, 6])
    np.testing.assert_array_equal(m.predicted, [6, 5, 0, 6])
    assert m.num_pixels == 17


def test_predicted_but_absent_class_counts_as_zero():
    cm = np.array([[2, 2, 0], [0, 0, 0], [0, 0, 1]])
    m = compute_metrics(cm)
    assert m.iou[1] == 0.0
    assert m.precision[1] == 0.0 and math.isnan(m.recall[1]) and m.f1[1] == 0.0
    assert m.miou == pytest.approx((2 / 4 + 0.0) / 2)
    assert m.miou == pytest.approx(_reference_miou(cm))


def test_random_matrices_agree_with_reference_formula():
    rng = np.random.default_rng(1)
    for _ in range(5):
        cm = rng.integers(0, 50, size=(13, 13))
        cm[rng.integers(0, 12), :] = 0  # a class absent from the truth
        assert compute_metrics(cm).miou == pytest.approx(_reference_miou(cm))


def test_empty_and_custom_classes():
    m = compute_metrics(np.zeros((3, 3), dtype=np.int64))
    assert math.isnan(m.miou) and math.isnan(m.overall_accuracy)
    cm = np.array([[1, 1], [0, 2]])
    assert compute_metrics(cm, miou_classes=[0, 1]).miou == pytest.approx((1 / 2 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="outside"):
        compute_metrics(cm, miou_classes=[2])
    with pytest.raises(ValueError, match=r"\(K, K\)"):
        compute_metrics(np.zeros((2, 3)))
