"""The aerial-only model and what both models do with the aerial smp network.

:class:`AerialUNet` is the aerial-only model (leaderboard rows 1–2), optionally
with the metadata MLP; it has the same call signature as U-T&T. The network
itself is built by :func:`flair2.models.networks.build_unet`; :func:`decode`,
:func:`encoder_stride`, :func:`check_aerial` and the speed options
(:func:`set_channels_last`, :func:`compile_unet`) serve both models.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from segmentation_models_pytorch.base import SegmentationModel
from torch import Tensor, nn

from flair2.models.fusion import MetadataMLP, add_metadata
from flair2.models.networks import decode

logger = logging.getLogger(__name__)


class SegmentationOutput(NamedTuple):
    """What every flair2 model returns.

    Attributes:
        logits: B×K×H×W class scores of the aerial branch (the prediction).
        aux_logits: B×K×H×W class scores of the satellite branch (U-T&T's
            auxiliary head), or None for the aerial-only model and when a
            forward was told ``with_aux=False``.
        aerial_logits: B×K×H×W class scores of the aerial branch alone, when
            ``logits`` combine two branches (late fusion), else None.
    """

    logits: Tensor
    aux_logits: Tensor | None = None
    aerial_logits: Tensor | None = None


def encoder_stride(unet: SegmentationModel) -> int:
    """Downsampling factor of the deepest encoder map (32 for depth 5; less when dilated)."""
    return int(getattr(unet.encoder, "output_stride", 2 ** (len(unet.encoder.out_channels) - 1)))


def check_aerial(unet: SegmentationModel, aerial: Tensor) -> None:
    """Raise ValueError unless ``aerial`` is B×C×H×W with the bands and stride of ``unet``."""
    if aerial.dim() != 4:
        raise ValueError(f"aerial must be B×C×H×W, got shape {tuple(aerial.shape)}")
    channels = unet.encoder.out_channels[0]
    if aerial.shape[1] != channels:
        raise ValueError(
            f"aerial must have {channels} bands, got {aerial.shape[1]} (shape B×C×H×W)"
        )
    stride = encoder_stride(unet)
    if aerial.shape[-2] % stride or aerial.shape[-1] % stride:
        raise ValueError(
            f"aerial height and width must be multiples of {stride}, got {tuple(aerial.shape[-2:])}"
        )


def set_channels_last(model: nn.Module, enabled: bool) -> None:
    """Run a flair2 model's aerial U-Net (``model.arch_vhr``) channels-last, or back.

    Only the memory order of the U-Net's 4-D weights changes (state-dict keys and
    values stay), and the model lays its aerial input out the same way. Logits
    equal the default order's to 1e-5 relative. The U-TAE and the fusion stay in
    the default order: they hold few of the FLOPs, and channels-last made their
    CPU gradients drift further from float64 (bench/README.md). A model without
    an aerial network (the U-TAE-only model) is left as it is.
    """
    unet = getattr(model, "arch_vhr", None)
    if not isinstance(unet, nn.Module):
        return
    unet.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
    setattr(model, "channels_last", enabled)  # noqa: B010  (an attribute, not a submodule)


def compile_unet(model: nn.Module) -> None:
    """Compile a flair2 model's aerial U-Net (encoder, decoder, head) in place.

    ``torch.compile`` with static shapes: the U-Net's inputs are fixed by the patch
    size and the batch, so it compiles once (and once more for a last, smaller
    batch). The U-TAE stays eager: its input changes with the number of Sentinel-2
    dates of each batch, which would recompile the whole model again and again.
    In place (``Module.compile``): state-dict keys stay those of checkpoints. A
    model without an aerial network is left as it is.
    """
    unet = getattr(model, "arch_vhr", None)
    if not isinstance(unet, nn.Module):
        return
    for name in ("encoder", "decoder", "segmentation_head"):
        part = unet.get_submodule(name)
        part.compile(dynamic=False)


def aerial_memory_format(model: nn.Module, aerial: Tensor) -> Tensor:
    """``aerial`` in the memory order of the model's U-Net (see :func:`set_channels_last`)."""
    if getattr(model, "channels_last", False):
        return aerial.contiguous(memory_format=torch.channels_last)
    return aerial


class AerialUNet(nn.Module):
    """The aerial-only model: the smp network (``arch_vhr``), optionally with metadata.

    Args:
        arch_vhr: the smp network (see :func:`build_unet`).
        mtd_mlp: the metadata MLP; its outputs are laid along the height of the
            deepest encoder map, so its size must equal that map's height.
    """

    def __init__(self, arch_vhr: SegmentationModel, mtd_mlp: MetadataMLP | None = None) -> None:
        super().__init__()
        self.arch_vhr = arch_vhr
        self.mtd_mlp = mtd_mlp
        #: Whether the U-Net runs channels-last (:func:`set_channels_last`).
        self.channels_last = False

    def forward(
        self,
        aerial: Tensor,
        sen2: Tensor | None = None,
        positions: Tensor | None = None,
        pad_mask: Tensor | None = None,
        metadata: Tensor | None = None,
        with_aux: bool = True,
    ) -> SegmentationOutput:
        """Segment aerial patches.

        Args:
            aerial: B×C×H×W float.
            sen2: ignored (same signature as U-T&T).
            positions: ignored.
            pad_mask: ignored.
            metadata: B×45 encoding, required when the model has the metadata
                MLP, ignored otherwise.
            with_aux: ignored (this model has no auxiliary head).

        Returns:
            ``SegmentationOutput(logits=B×K×H×W, aux_logits=None)``.
        """
        check_aerial(self.arch_vhr, aerial)
        features = self.arch_vhr.encoder(aerial_memory_format(self, aerial))
        if self.mtd_mlp is not None:
            features = list(features)
            features[-1] = add_metadata(features[-1], self.mtd_mlp, metadata)
        return SegmentationOutput(decode(self.arch_vhr, features), None)
