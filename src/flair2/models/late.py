"""Late fusion (``fusion: late``): an aerial U-Net and a Sentinel-2 U-TAE, combined per class.

Each branch segments the patch on its own, at the mask's resolution:

* the aerial network (``arch_vhr``, with the metadata MLP ``mtd_mlp`` when
  configured) gives scores ``a`` (B×K×P×P), exactly as the aerial-only U-Net;
* the U-TAE's last decoder map goes through :class:`~flair2.models.sentinel_head.SentinelHead`
  (a 1×1 convolution, then bilinear sampling at the aerial pixels of the
  footprint) and gives scores ``s`` (B×K×P×P).

They are combined per class ``c`` by a learned, weighted geometric mean of the
two branches' probabilities:

    z_c = w_a[c] · log softmax(a)_c + w_s[c] · log softmax(s)_c,
    p(c) = softmax(z)_c ∝ p_a(c)^{w_a[c]} · p_s(c)^{w_s[c]},

with ``w = softplus(ρ)`` ≥ 0 (``aerial_weight``, ``sat_weight``: the raw
parameters ρ, K values each). Both start at 1 (a product of experts): a
branch that is confident (a probability near 1 for one class, near 0 for the
others) dominates, an undecided one (similar probabilities over the classes it
cannot separate) leaves the choice to the other. Training raises ``w_s`` on the
classes only Sentinel-2 separates and ``w_a`` where the aerial image is the
better witness. ``z`` is returned as ``logits``; the branches' own scores as
``aerial_logits`` and ``aux_logits``, so that each branch is also trained with
its own loss (the training task adds them): the aerial branch keeps learning
as the aerial-only U-Net does, however much the combination leans on
Sentinel-2.

With ``drop_utae_modality`` a sample loses the Sentinel-2 term in training
(``z = w_a · log softmax(a)``) with that probability, so the combination does
not come to depend on it where the aerial image suffices.
"""

from __future__ import annotations

import math

import torch
from segmentation_models_pytorch.base import SegmentationModel
from torch import Tensor, nn
from torch.nn import functional as F

from flair2.models.fusion import MetadataMLP, add_metadata
from flair2.models.networks import decode
from flair2.models.sentinel_head import SentinelHead
from flair2.models.unet import (
    SegmentationOutput,
    aerial_memory_format,
    check_aerial,
    encoder_stride,
)
from flair2.models.utae import UTAE

#: softplus⁻¹(1): the raw value that gives a branch weight of 1.
_UNIT_WEIGHT = math.log(math.e - 1.0)


class LateFusion(nn.Module):
    """Aerial U-Net and Sentinel-2 U-TAE, each segmenting, combined by learned per-class weights.

    Args:
        arch_vhr: the aerial smp network (see :func:`flair2.models.networks.build_unet`).
        arch_hr: the Sentinel-2 U-TAE.
        sat_head: its scores on the aerial grid.
        num_classes: classes K.
        mtd_mlp: the metadata MLP, or None.
        drop_utae_modality: probability, in training, of dropping a sample's
            Sentinel-2 term from the combination.
    """

    def __init__(
        self,
        arch_vhr: SegmentationModel,
        arch_hr: UTAE,
        sat_head: SentinelHead,
        num_classes: int,
        mtd_mlp: MetadataMLP | None = None,
        drop_utae_modality: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= drop_utae_modality <= 1.0:
            raise ValueError(
                f"late fusion: drop_utae_modality must be in [0, 1], got {drop_utae_modality}"
            )
        stride = encoder_stride(arch_vhr)
        if sat_head.patch_size % stride:
            raise ValueError(
                f"late fusion: patch_size must be a multiple of {stride}, got {sat_head.patch_size}"
            )
        self.arch_vhr = arch_vhr
        self.arch_hr = arch_hr
        self.sat_head = sat_head
        self.mtd_mlp = mtd_mlp
        self.drop_utae_modality = drop_utae_modality
        self.aerial_weight = nn.Parameter(torch.full((num_classes,), _UNIT_WEIGHT))
        self.sat_weight = nn.Parameter(torch.full((num_classes,), _UNIT_WEIGHT))
        #: Whether the U-Net runs channels-last (:func:`~flair2.models.unet.set_channels_last`).
        self.channels_last = False

    def branch_weights(self) -> tuple[Tensor, Tensor]:
        """The per-class weights (w_a, w_s), each K values ≥ 0."""
        return F.softplus(self.aerial_weight), F.softplus(self.sat_weight)

    def forward(
        self,
        aerial: Tensor,
        sen2: Tensor | None,
        positions: Tensor | None,
        pad_mask: Tensor | None = None,
        metadata: Tensor | None = None,
        with_aux: bool = True,
    ) -> SegmentationOutput:
        """Segment aerial patches with their Sentinel-2 series.

        Args:
            aerial: B×C×P×P float, P = the head's ``patch_size``.
            sen2: B×T×C×S×S Sentinel-2 series.
            positions: B×T day positions.
            pad_mask: B×T bool, True on padded dates (None: found from ``pad_value``).
            metadata: B×45, required when the model has the metadata MLP.
            with_aux: also return each branch's own scores (training needs them).

        Returns:
            ``SegmentationOutput(logits, aux_logits, aerial_logits)``, each
            B×K×P×P: the combination ``z``, the Sentinel-2 branch's and the
            aerial branch's scores (both None without ``with_aux``).
        """
        check_aerial(self.arch_vhr, aerial)
        size = self.sat_head.patch_size
        if tuple(aerial.shape[-2:]) != (size, size):
            raise ValueError(
                f"late fusion was built for {size}×{size} aerial patches; "
                f"got {tuple(aerial.shape[-2:])}"
            )
        if sen2 is None:
            raise ValueError("late fusion needs the Sentinel-2 series (sen2, B×T×C×S×S)")
        if sen2.dim() != 5 or sen2.shape[0] != aerial.shape[0]:
            raise ValueError(
                f"sen2 must be B×T×C×S×S with B = {aerial.shape[0]}, got shape {tuple(sen2.shape)}"
            )
        features = list(self.arch_vhr.encoder(aerial_memory_format(self, aerial)))
        if self.mtd_mlp is not None:
            features[-1] = add_metadata(features[-1], self.mtd_mlp, metadata)
        aerial_scores = decode(self.arch_vhr, features)
        sat_scores = self.sat_head(self.arch_hr.forward_features(sen2, positions, pad_mask)[-1])
        w_a, w_s = self.branch_weights()
        sat_term = w_s[:, None, None] * sat_scores.float().log_softmax(1)
        if self.training and self.drop_utae_modality > 0.0:
            draws = torch.rand(aerial.shape[0], 1, 1, 1, device=aerial.device)
            sat_term = sat_term * (draws >= self.drop_utae_modality).to(sat_term.dtype)
        logits = w_a[:, None, None] * aerial_scores.float().log_softmax(1) + sat_term
        if not with_aux:
            return SegmentationOutput(logits, None, None)
        return SegmentationOutput(logits, sat_scores, aerial_scores)
