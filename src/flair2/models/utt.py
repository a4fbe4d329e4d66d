"""U-T&T: the FLAIR #2 fusion of an aerial U-Net and a Sentinel-2 U-TAE.

The U-TAE's last decoder map (the whole Sentinel-2 crop) is turned into two
terms added to every encoder stage of the aerial U-Net: the central footprint
crop through a 1×1 conv and a bilinear resize (``fm_utae_featmap_cropped``),
and the map's spatial mean through an MLP, broadcast (``fm_utae_featmap_collapsed``).
Aerial metadata go through an MLP laid along the deepest map's height
(``mtd_mlp``). An auxiliary head classifies the footprint crop alone.

Submodule names follow the reference (``arch_vhr``, ``arch_hr``,
``fm_utae_featmap_cropped``, ``fm_utae_featmap_collapsed``, ``mtd_mlp``);
the reference's ``reshape_utae_output.1`` is :attr:`UTT.aux_head` here
(:func:`flair2.models.checkpoints.map_reference_state_dict` renames it).

Fixes of the reference (REFERENCE.md, "Known defects"):

1. the collapsed term uses each sample's own spatial mean (the reference used
   sample 0's for the whole batch); identical at batch size 1;
2. the satellite branch is dropped only in training, and per sample: each
   sample independently loses both fusion terms with probability
   ``drop_utae_modality`` (the reference draws once per batch, in evaluation
   too). Per sample keeps a sample's treatment independent of its batch
   companions, like fix 1; the expected drop rate is the same;
3. the auxiliary head applies its 1×1 conv on the 10×10 crop, then upsamples
   (nearest): the same numbers as upsampling first, at a fraction of the cost;
9. sizes are derived: the footprint from the patch size and pixel sizes, stage
   sizes from the actual encoder maps, the metadata length from the deepest
   map's height.

The aerial network may be any smp encoder and decoder (:func:`flair2.models.networks.build_unet`):
the fusion terms go to every stage the encoder exposes, with the widths of
``encoder.out_channels`` and the sizes of the actual maps; a stage of 0 channels
(the missing 1/2 scale of ConvNeXt, Swin…) gets none.

Gated fusion (``fusion: gated``): each stage's fusion term passes through a
learned per-channel gate before it is added,

    f_i ← f_i + g_i ⊙ (cropped_i + collapsed_i),   g_i ∈ ℝ^{C_i}, g_i = 0 at init

(``fusion_gates.i``). At initialisation the logits are exactly the plain
U-Net's (with metadata); the gates open, channel by channel, where the
Sentinel-2 terms lower the loss, so training starts from the aerial model
instead of from a U-Net perturbed by a random satellite branch. The gate's
gradient is the term itself, so it moves from the first step; the terms' own
layers learn once it has. ``fusion: reference`` has no gates: its parameter
names are the reference's.

Also, the U-TAE's own output convolution (``arch_hr.out_conv``) is kept for
checkpoint compatibility but never run, and the fusion terms of the first stage
(the input itself, which no smp decoder reads) cannot affect the logits, nor
can those of stages a decoder skips (FPN and UPerNet start at 1/4, PSPNet and
DeepLabV3 read the deepest map only): these parameters get no gradient, so
multi-GPU DDP needs ``find_unused_parameters=True``.
"""

from __future__ import annotations

from typing import Literal

import torch
from segmentation_models_pytorch.base import SegmentationModel
from torch import Tensor, nn
from torch.nn import functional as F

from flair2.models.fusion import FMCollapsed, FMCropped, MetadataMLP, add_metadata, center_crop
from flair2.models.networks import decode
from flair2.models.unet import (
    SegmentationOutput,
    aerial_memory_format,
    check_aerial,
    encoder_stride,
)
from flair2.models.utae import UTAE


class UTT(nn.Module):
    """U-T&T (U-Net + U-TAE) for aerial patches with a Sentinel-2 time series.

    Args:
        arch_vhr: the aerial smp network (see :func:`flair2.models.networks.build_unet`).
        arch_hr: the Sentinel-2 U-TAE.
        patch_size: side of the aerial patches in pixels (a multiple of the
            encoder's stride, 32 unless dilated).
        crop_size: side of the patch footprint in Sentinel-2 pixels (see
            :func:`flair2.models.fusion.footprint_crop_size`).
        num_classes: classes of the auxiliary head (as the U-Net's).
        metadata_features: length of the metadata vector (45), or None for no
            metadata MLP.
        drop_utae_modality: probability, in training, of dropping the
            satellite fusion terms for a sample.
        fusion: ``reference`` (terms added as they are) or ``gated`` (each
            stage's term scaled by a per-channel gate that starts at 0).
    """

    def __init__(
        self,
        arch_vhr: SegmentationModel,
        arch_hr: UTAE,
        patch_size: int,
        crop_size: int,
        num_classes: int,
        metadata_features: int | None = 45,
        drop_utae_modality: float = 0.0,
        fusion: Literal["reference", "gated"] = "reference",
    ) -> None:
        super().__init__()
        if fusion not in ("reference", "gated"):
            raise ValueError(f"U-T&T: fusion must be reference or gated, got {fusion!r}")
        stride = encoder_stride(arch_vhr)
        if patch_size < stride or patch_size % stride:
            raise ValueError(f"U-T&T: patch_size must be a multiple of {stride}, got {patch_size}")
        if crop_size < 1:
            raise ValueError(f"U-T&T: crop_size must be >= 1, got {crop_size}")
        if not 0.0 <= drop_utae_modality <= 1.0:
            raise ValueError(
                f"U-T&T: drop_utae_modality must be in [0, 1], got {drop_utae_modality}"
            )
        self.patch_size = patch_size
        self.crop_size = crop_size
        self.drop_utae_modality = drop_utae_modality
        self.arch_vhr = arch_vhr
        self.arch_hr = arch_hr
        stage_channels = list(arch_vhr.encoder.out_channels)
        sat_channels = arch_hr.feature_channels
        self.fm_utae_featmap_cropped = FMCropped(sat_channels, stage_channels)
        self.fm_utae_featmap_collapsed = FMCollapsed(sat_channels, stage_channels)
        self.mtd_mlp = (
            MetadataMLP(metadata_features, patch_size // stride)
            if metadata_features is not None
            else None
        )
        self.aux_head = nn.Conv2d(sat_channels, num_classes, kernel_size=1)
        self.fusion = fusion
        #: Per-stage, per-channel gates of the fusion terms (``fusion: gated``), zero at init.
        self.fusion_gates = (
            nn.ParameterList(nn.Parameter(torch.zeros(max(c, 0))) for c in stage_channels)
            if fusion == "gated"
            else None
        )
        #: Whether the U-Net runs channels-last (:func:`~flair2.models.unet.set_channels_last`).
        self.channels_last = False

    def _check(self, aerial: Tensor, sen2: Tensor | None) -> Tensor:
        """Check the inputs' shapes; return ``sen2``, which must be given."""
        check_aerial(self.arch_vhr, aerial)
        if tuple(aerial.shape[-2:]) != (self.patch_size, self.patch_size):
            raise ValueError(
                f"U-T&T was built for {self.patch_size}×{self.patch_size} aerial patches "
                f"(Sentinel-2 footprint {self.crop_size} px); got {tuple(aerial.shape[-2:])}"
            )
        if sen2 is None:
            raise ValueError("U-T&T needs the Sentinel-2 series (sen2, B×T×C×S×S)")
        if sen2.dim() != 5 or sen2.shape[0] != aerial.shape[0]:
            raise ValueError(
                f"sen2 must be B×T×C×S×S with B = {aerial.shape[0]}, got shape {tuple(sen2.shape)}"
            )
        if min(sen2.shape[-2:]) < self.crop_size:
            raise ValueError(
                f"the Sentinel-2 crop ({tuple(sen2.shape[-2:])}) is smaller than the patch "
                f"footprint ({self.crop_size} px)"
            )
        return sen2

    def _keep_mask(self, batch: int, like: Tensor) -> Tensor | None:
        """B×1×1×1 with 1 where a sample keeps the satellite terms (training only)."""
        if not self.training or self.drop_utae_modality <= 0.0:
            return None
        draws = torch.rand(batch, 1, 1, 1, device=like.device)
        return (draws >= self.drop_utae_modality).to(like.dtype)

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
            aerial: B×C×H×W float, H = W = ``patch_size``.
            sen2: B×T×C×S×S float Sentinel-2 series (S >= ``crop_size``).
            positions: B×T day positions.
            pad_mask: B×T bool, True on padded dates; None: dates whose values
                all equal the U-TAE's ``pad_value``.
            metadata: B×45 float, required when the model has the metadata MLP.
            with_aux: compute the auxiliary head's scores (prediction does not
                need them).

        Returns:
            ``SegmentationOutput(logits, aux_logits)``, both B×K×H×W: the
            U-Net's class scores and the auxiliary head's (None without
            ``with_aux``).
        """
        sen2 = self._check(aerial, sen2)
        sat = self.arch_hr.forward_features(sen2, positions, pad_mask)[-1]  # B×C×S×S
        features = list(self.arch_vhr.encoder(aerial_memory_format(self, aerial)))
        if self.mtd_mlp is not None:
            features[-1] = add_metadata(features[-1], self.mtd_mlp, metadata)
        crop = center_crop(sat, self.crop_size)
        sizes = [tuple(f.shape[-2:]) for f in features]
        cropped = self.fm_utae_featmap_cropped(crop, sizes)
        collapsed = self.fm_utae_featmap_collapsed(sat.mean(dim=(-2, -1)))
        keep = self._keep_mask(aerial.shape[0], aerial)
        for i, (c_term, m_term) in enumerate(zip(cropped, collapsed, strict=True)):
            if c_term is None or m_term is None:  # a 0-channel placeholder stage
                continue
            term = c_term + m_term
            if self.fusion_gates is not None:
                term = term * self.fusion_gates[i][:, None, None]
            if keep is not None:
                term = term * keep
            features[i] = features[i] + term
        logits = decode(self.arch_vhr, features)
        if not with_aux:
            return SegmentationOutput(logits, None)
        aux_logits = F.interpolate(self.aux_head(crop), size=aerial.shape[-2:], mode="nearest")
        return SegmentationOutput(logits, aux_logits)
