"""Training losses: weighted cross-entropy, label smoothing, Dice, Lovász and their sums.

Each branch of the model (the U-Net's logits, the U-TAE auxiliary head's) gets one
criterion: a weighted sum of the terms named in ``loss_weights``, with the branch's
own per-class weights (``weights_aerial_satellite``). The default, cross-entropy
alone, is exactly the reference's loss.

Class weights mean the same in every term: a class of weight 0 ("other", and
"plowed land" on the satellite branch in the reference configuration) is ignored,
its pixels contribute nothing. Cross-entropy weighs the other classes by their
weights; Dice and Lovász are per-class averages, balanced by construction, so for
them a weight only decides whether a class takes part (non-zero) or not (zero).

Every criterion keeps its class weights in one buffer named ``weight``, so the
task's checkpoint keys stay the reference's ``criterion.0.weight`` and
``criterion.1.weight`` whatever the terms.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.losses import DiceLoss, LovaszLoss
from torch import Tensor, nn

from flair2.config_checks import check_loss_weights
from flair2.settings import LossSettings

#: Target value of ignored pixels for the region losses (smp's ``ignore_index``).
IGNORE_INDEX = -100


class WeightedCrossEntropy(nn.Module):
    """Cross-entropy with per-class weights that stays finite when every weight is 0.

    Equal to ``nn.CrossEntropyLoss(weight=w)`` (weighted mean) whenever some
    target pixel has a non-zero weight; 0 instead of NaN when none has (e.g. a
    batch of "other" only, whose weight is 0 in the reference configuration).

    With label smoothing ε each pixel's target is ``(1 − ε)·onehot + ε/K`` and its
    loss is weighted by its own class's weight: ``w[y]·((1 − ε)·(−log p_y) + ε·mean_c(−log p_c))``,
    divided by ``Σ w[y]``. (``torch``'s weighted label smoothing instead weighs the
    smoothing term by every class's weight, which charges the pixels of a class of
    weight 0 too; here such pixels stay out of the loss, as without smoothing.)

    Args:
        weight: per-class weights (K,).
        label_smoothing: ε in [0, 1).
    """

    weight: Tensor  # a buffer: declared for the type checker

    def __init__(self, weight: list[float], label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("weight", torch.tensor(weight, dtype=torch.float32))
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Args: logits (B, K, H, W); target (B, H, W) int64. Returns a scalar."""
        weight = self.weight.to(logits.dtype)
        pixel_weight = weight[target]
        norm = pixel_weight.sum().clamp_min(torch.finfo(logits.dtype).tiny)
        eps = self.label_smoothing
        if eps == 0.0:
            # The reference's loss, computed the way it always was.
            return F.cross_entropy(logits, target, weight=weight, reduction="sum") / norm
        log_p = logits.log_softmax(1)
        nll = -log_p.gather(1, target.unsqueeze(1)).squeeze(1)
        uniform = -log_p.mean(1)
        per_pixel = (1.0 - eps) * nll + eps * uniform
        return (pixel_weight * per_pixel).sum() / norm


def _ignore_zero_weight(target: Tensor, weight: Tensor) -> Tensor:
    """``target`` with the pixels of zero-weight classes set to :data:`IGNORE_INDEX`."""
    return torch.where(weight[target] > 0, target, torch.full_like(target, IGNORE_INDEX))


class CombinedLoss(WeightedCrossEntropy):
    """A weighted sum of cross-entropy, Dice and Lovász-softmax terms for one branch.

    Dice and Lovász are segmentation_models_pytorch's multiclass losses on the
    softmax, computed over the whole batch (not per image), with the pixels of
    zero-weight classes ignored. Dice averages ``1 − dice`` over the classes of
    non-zero weight (a class absent from the batch's targets counts 0, as in smp);
    Lovász averages over the classes present in the batch. Both are computed in
    float32 whatever the logits' precision.

    Args:
        weight: per-class weights (K,); see the module docstring.
        loss_weights: term name (``ce``, ``dice``, ``lovasz``) → its factor; terms
            of factor 0 are not computed.
        label_smoothing: of the cross-entropy term.
    """

    def __init__(
        self,
        weight: list[float],
        loss_weights: Mapping[str, float],
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__(weight, label_smoothing)
        self.factors = {k: float(v) for k, v in loss_weights.items() if float(v) != 0.0}
        self.dice = DiceLoss("multiclass", ignore_index=IGNORE_INDEX)
        self.lovasz = LovaszLoss("multiclass", ignore_index=IGNORE_INDEX, per_image=False)

    def dice_term(self, logits: Tensor, target: Tensor) -> Tensor:
        """The multiclass Dice loss (smp's) over the classes of non-zero weight (a scalar)."""
        keep = (self.weight > 0).float()
        # smp's class_weights make its final mean a weighted one: with 0/1 weights,
        # the mean over the kept classes. Set per call, so that weights loaded from
        # a checkpoint are the ones used.
        self.dice.class_weights = keep
        return self.dice(logits.float(), _ignore_zero_weight(target, self.weight))

    def lovasz_term(self, logits: Tensor, target: Tensor) -> Tensor:
        """The Lovász-softmax loss (smp's) over the pixels of non-zero-weight classes (a scalar)."""
        masked = _ignore_zero_weight(target, self.weight)
        if not bool((masked != IGNORE_INDEX).any()):
            # smp returns an empty tensor when every pixel is ignored.
            return logits.sum() * 0.0
        return self.lovasz(logits.float(), masked)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Args: logits (B, K, H, W); target (B, H, W) int64. Returns a scalar."""
        parts = []
        for name, factor in self.factors.items():
            if name == "ce":
                value = super().forward(logits, target)
            elif name == "dice":
                value = self.dice_term(logits, target)
            else:
                value = self.lovasz_term(logits, target)
            parts.append(factor * value)
        return sum(parts[1:], parts[0]) if parts else logits.sum() * 0.0


def build_loss(
    weight: list[float], loss_weights: Mapping[str, float], label_smoothing: float = 0.0
) -> WeightedCrossEntropy:
    """The criterion of one branch: plain weighted cross-entropy when that is all it is.

    Args:
        weight: the branch's per-class weights (K,).
        loss_weights: term name → factor (``ce``, ``dice``, ``lovasz``; missing = 0).
        label_smoothing: of the cross-entropy term, in [0, 1).

    Raises:
        ConfigError: an unknown term, a negative factor, or no factor > 0.
    """
    check_loss_weights(dict(loss_weights))
    active = {k: float(v) for k, v in loss_weights.items() if float(v) != 0.0}
    if active == {"ce": 1.0}:
        return WeightedCrossEntropy(weight, label_smoothing)
    return CombinedLoss(weight, loss_weights, label_smoothing)


def build_criterion(settings: LossSettings) -> nn.ModuleList:
    """The task's two criteria: ``[U-Net (aerial) loss, U-TAE auxiliary (satellite) loss]``.

    Both combine the same terms (``loss_weights``, ``label_smoothing``), each with
    its branch's column of ``weights_aerial_satellite``.

    Args:
        settings: class weights of both branches, loss terms and label smoothing
            (:meth:`LossSettings.from_config <flair2.settings.LossSettings.from_config>`).
    """
    terms, smoothing = settings.loss_weights, settings.label_smoothing
    return nn.ModuleList(
        [
            build_loss(list(settings.aerial_weights), terms, smoothing),
            build_loss(list(settings.satellite_weights), terms, smoothing),
        ]
    )
