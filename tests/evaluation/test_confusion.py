"""Tests of the bincount confusion matrix."""

from __future__ import annotations

import numpy as np
import pytest

from flair2.errors import DataError
from flair2.evaluation.confusion import confusion_matrix


def test_small_hand_computed():
    truth = np.array([[0, 0, 1], [2, 2, 2]], dtype=np.uint8)
    pred = np.array([[0, 1, 1], [2, 0, 2]], dtype=np.uint8)
    cm = confusion_matrix(truth, pred, 3)
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, expected)


def test_matches_a_naive_loop():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 13, size=(32, 32)).astype(np.uint8)
    pred = rng.integers(0, 13, size=(32, 32)).astype(np.int16)
    naive = np.zeros((13, 13), dtype=np.int64)
    for t, p in zip(truth.ravel(), pred.ravel()):
        naive[t, p] += 1
    cm = confusion_matrix(truth, pred, 13)
    np.testing.assert_array_equal(cm, naive)
    assert cm.sum() == truth.size


def test_out_of_range_values_are_named():
    truth = np.array([0, 1, 2, 1], dtype=np.uint8)
    with pytest.raises(DataError, match=r"prediction has values outside 0\.\.2: 3, 7"):
        confusion_matrix(truth, np.array([0, 3, 7, 3], dtype=np.uint8), 3)
    with pytest.raises(DataError, match=r"truth has values outside 0\.\.2: -1"):
        confusion_matrix(np.array([-1, 0, 0, 0]), truth, 3)


def test_shape_and_argument_errors():
    with pytest.raises(ValueError, match="differs"):
        confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 3), int), 3)
    with pytest.raises(ValueError, match="at least 1"):
        confusion_matrix(np.zeros(2, int), np.zeros(2, int), 0)
    with pytest.raises(DataError, match="integer"):
        confusion_matrix(np.zeros(2, float), np.zeros(2, int), 3)
