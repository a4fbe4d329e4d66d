"""Losses against values computed by hand (plain Python) on a 1×3×2×2 example."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from flair2.config import config_from_dict
from flair2.errors import ConfigError
from flair2.settings import LossSettings
from flair2.training.losses import CombinedLoss, WeightedCrossEntropy, build_criterion, build_loss
from flair2.training.task import SegmentationTask

# One image, 3 classes, 2×2 pixels; pixels listed row by row.
LOGITS = [[2.0, 0.0, 0.0], [0.0, 1.0, -1.0], [0.5, 0.5, 2.0], [1.0, 0.0, -1.0]]
TARGET = [0, 1, 2, 0]


def as_tensors(logits=LOGITS, target=TARGET) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 3, 2, 2) logits and (1, 2, 2) targets from per-pixel lists."""
    x = torch.tensor(logits, dtype=torch.float32).T.reshape(1, 3, 2, 2)
    return x, torch.tensor(target).reshape(1, 2, 2)


def softmax(row: list[float]) -> list[float]:
    exps = [math.exp(v) for v in row]
    return [e / sum(exps) for e in exps]


def hand_ce(weight, eps=0.0, logits=LOGITS, target=TARGET) -> float:
    num = den = 0.0
    for row, y in zip(logits, target):
        log_p = [math.log(p) for p in softmax(row)]
        per_pixel = (1 - eps) * -log_p[y] + eps * -sum(log_p) / len(row)
        num += weight[y] * per_pixel
        den += weight[y]
    return num / den


def hand_dice(weight, logits=LOGITS, target=TARGET) -> float:
    """1 − 2·Σp·t / (Σp + Σt) per class (0 for a class absent from the targets), mean over
    the classes of non-zero weight; the pixels of zero-weight classes left out."""
    pixels = [(softmax(r), y) for r, y in zip(logits, target) if weight[y] > 0]
    losses = []
    for c in range(len(weight)):
        if weight[c] == 0:
            continue
        inter = sum(p[c] for p, y in pixels if y == c)
        sum_p = sum(p[c] for p, _ in pixels)
        sum_t = sum(1 for _, y in pixels if y == c)
        losses.append(1 - 2 * inter / (sum_p + sum_t) if sum_t else 0.0)
    return sum(losses) / len(losses)


def hand_lovasz(weight, logits=LOGITS, target=TARGET) -> float:
    """Lovász-softmax (Berman et al. 2018, Alg. 1): per present class, errors |fg − p_c|
    sorted decreasingly, dotted with the increments of the Jaccard loss; mean over classes."""
    pixels = [(softmax(r), y) for r, y in zip(logits, target) if weight[y] > 0]
    losses = []
    for c in range(len(weight)):
        fg = [1 if y == c else 0 for _, y in pixels]
        if not any(fg):
            continue
        errors = sorted(((abs(f - p[c]), f) for (p, _), f in zip(pixels, fg)), reverse=True)
        total_fg, seen_fg, seen_bg, previous, loss = sum(fg), 0, 0, 0.0, 0.0
        for error, f in errors:
            seen_fg, seen_bg = seen_fg + f, seen_bg + (1 - f)
            jaccard = 1 - (total_fg - seen_fg) / (total_fg + seen_bg)
            loss += error * (jaccard - previous)
            previous = jaccard
        losses.append(loss)
    return sum(losses) / len(losses)


def test_hand_formulas_on_uniform_probabilities() -> None:
    # Equal logits: p = 1/3 everywhere; worked out on paper.
    flat = [[0.0, 0.0, 0.0]] * 4
    target = [0, 0, 1, 2]
    ones = [1.0, 1.0, 1.0]
    x, y = as_tensors(flat, target)
    assert hand_ce(ones, logits=flat, target=target) == pytest.approx(math.log(3))
    # Class 0: 2·(2/3)/(4/3 + 2) = 0.4; classes 1, 2: 2·(1/3)/(4/3 + 1) = 2/7.
    dice = ((1 - 0.4) + 2 * (1 - 2 / 7)) / 3
    assert hand_dice(ones, logits=flat, target=target) == pytest.approx(dice)
    assert build_loss(ones, {"dice": 1.0})(x, y).item() == pytest.approx(dice, rel=1e-6)
    # Every class: errors 2/3 on its pixels, 1/3 elsewhere → loss 2/3.
    assert hand_lovasz(ones, logits=flat, target=target) == pytest.approx(2 / 3)
    assert build_loss(ones, {"lovasz": 1.0})(x, y).item() == pytest.approx(2 / 3, rel=1e-6)


@pytest.mark.parametrize("weight", [[1.0, 2.0, 0.5], [1.0, 1.0, 0.0], [0.2, 3.0, 1.0]])
def test_weighted_cross_entropy_by_hand(weight: list[float]) -> None:
    x, y = as_tensors()
    ours = WeightedCrossEntropy(weight)(x, y).item()
    assert ours == pytest.approx(hand_ce(weight), rel=1e-6)
    torch_value = nn.CrossEntropyLoss(weight=torch.tensor(weight))(x, y).item()
    assert ours == pytest.approx(torch_value, rel=1e-6)


@pytest.mark.parametrize("weight", [[1.0, 2.0, 0.5], [1.0, 1.0, 0.0]])
def test_label_smoothing_by_hand(weight: list[float]) -> None:
    x, y = as_tensors()
    value = WeightedCrossEntropy(weight, label_smoothing=0.1)(x, y).item()
    assert value == pytest.approx(hand_ce(weight, eps=0.1), rel=1e-6)
    assert value != pytest.approx(hand_ce(weight), rel=1e-3)


def test_label_smoothing_with_equal_weights_is_torchs() -> None:
    x, y = as_tensors()
    ours = WeightedCrossEntropy([1.0, 1.0, 1.0], label_smoothing=0.2)(x, y)
    theirs = nn.CrossEntropyLoss(label_smoothing=0.2)(x, y)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)


@pytest.mark.parametrize("weight", [[1.0, 2.0, 0.5], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
def test_dice_and_lovasz_by_hand(weight: list[float]) -> None:
    x, y = as_tensors()
    dice = build_loss(weight, {"dice": 1.0})(x, y).item()
    lovasz = build_loss(weight, {"lovasz": 1.0})(x, y).item()
    assert dice == pytest.approx(hand_dice(weight), rel=1e-6)
    assert lovasz == pytest.approx(hand_lovasz(weight), rel=1e-6)


def test_weighted_sum_by_hand() -> None:
    weight = [1.0, 2.0, 0.0]
    x, y = as_tensors()
    loss = build_loss(weight, {"ce": 0.5, "dice": 2.0, "lovasz": 1.0}, label_smoothing=0.1)
    assert isinstance(loss, CombinedLoss)
    expected = 0.5 * hand_ce(weight, 0.1) + 2.0 * hand_dice(weight) + hand_lovasz(weight)
    assert loss(x, y).item() == pytest.approx(expected, rel=1e-6)


def test_zero_weight_pixels_take_no_part_in_any_term() -> None:
    # Pixel 2 is of class 2, weight 0: its logits get no gradient from any term.
    x, y = as_tensors()
    x.requires_grad_(True)
    loss = build_loss([1.0, 2.0, 0.0], {"ce": 1.0, "dice": 1.0, "lovasz": 1.0}, 0.1)
    loss(x, y).backward()
    grad = x.grad.reshape(3, 4)
    assert torch.all(grad[:, 2] == 0)
    assert torch.all(grad[:, [0, 1, 3]].abs().sum(0) > 0)


def test_only_ignored_pixels_give_zero_not_nan() -> None:
    x, _ = as_tensors()
    y = torch.full((1, 2, 2), 2)
    loss = build_loss([1.0, 1.0, 0.0], {"ce": 1.0, "dice": 1.0, "lovasz": 1.0}, 0.1)
    assert loss(x, y).item() == 0.0


def test_default_criterion_is_the_reference_loss(tiny_config) -> None:
    cfg = tiny_config()
    criterion = build_criterion(LossSettings.from_config(cfg))
    aerial_w, sat_w = cfg.class_weights()
    assert [type(c) for c in criterion] == [WeightedCrossEntropy, WeightedCrossEntropy]
    torch.manual_seed(0)
    logits = torch.randn(2, 13, 4, 4)
    target = torch.randint(0, 13, (2, 4, 4))
    for loss, weight in zip(criterion, (aerial_w, sat_w)):
        reference = nn.CrossEntropyLoss(weight=torch.tensor(weight))(logits, target)
        assert torch.allclose(loss(logits, target), reference, atol=1e-6)


def test_combined_losses_keep_the_checkpoint_keys(tiny_config) -> None:
    cfg = tiny_config(loss_weights={"ce": 1.0, "dice": 0.5, "lovasz": 0.5}, label_smoothing=0.1)
    task = SegmentationTask(cfg, patch_size=64)
    assert all(isinstance(c, CombinedLoss) for c in task.criterion)
    keys = {k for k in task.state_dict() if k.startswith("criterion.")}
    assert keys == {"criterion.0.weight", "criterion.1.weight"}
    # Each branch uses its own class weights (plowed land: 1 aerial, 0 satellite).
    assert task.criterion[0].weight[11] == 1.0 and task.criterion[1].weight[11] == 0.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"loss_weights": {"ce": 1.0, "focal": 1.0}}, "loss_weights.focal.*ce, dice, lovasz"),
        ({"loss_weights": {"ce": -1.0}}, "loss_weights.ce.*>= 0"),
        ({"loss_weights": {"ce": 0.0}}, "at least one loss"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
    ],
)
def test_bad_loss_settings_are_config_errors(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(overrides)
