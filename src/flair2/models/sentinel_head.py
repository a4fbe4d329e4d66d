"""Sentinel-2 class scores at the aerial mask's resolution, and the U-TAE-only model.

A Sentinel-2 pixel (10 m) covers 50×50 aerial pixels (0.2 m): the footprint of
a P px aerial patch is ``P · aerial_resolution / sat_resolution`` Sentinel-2
pixels (2.56 for 128 px), rarely a whole number. :class:`SentinelHead` maps the
U-TAE's last decoder map to class scores with a 1×1 convolution, then samples
them bilinearly at the centre of every aerial pixel of the footprint
(``grid_sample``): the exact footprint, not a crop rounded to whole pixels. The
Sentinel-2 crop is centred on the aerial patch (as the dataset reads it), so
aerial pixel ``i`` (0-based) sits at Sentinel-2 coordinate

    u_i = (S − f) / 2 + (i + ½) · r,   r = aerial_resolution / sat_resolution,  f = P · r

for an S px crop (pixel edges at integers).

:class:`SentinelUTAE` is the Sentinel-2-only model (``arch: utae``): the U-TAE
and this head, B×K×P×P scores for the aerial mask. It takes the same call as
the other models and reads only the size of ``aerial``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from flair2.models.unet import SegmentationOutput
from flair2.models.utae import UTAE


def footprint_grid(
    sat_size: int, patch_size: int, aerial_resolution: float, sat_resolution: float, like: Tensor
) -> Tensor:
    """The ``grid_sample`` grid of an aerial patch's pixel centres in its Sentinel-2 crop.

    Args:
        sat_size: side S of the Sentinel-2 crop, in its pixels.
        patch_size: side P of the aerial patch, in its pixels.
        aerial_resolution: metres per aerial pixel.
        sat_resolution: metres per Sentinel-2 pixel.
        like: a tensor whose device and dtype the grid takes.

    Returns:
        1×P×P×2 normalised (x, y) coordinates (``align_corners=False``).
    """
    ratio = aerial_resolution / sat_resolution
    offset = (sat_size - patch_size * ratio) / 2.0
    centres = (
        offset + (torch.arange(patch_size, device=like.device, dtype=like.dtype) + 0.5) * ratio
    )
    coords = 2.0 * centres / sat_size - 1.0
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    return torch.stack((x, y), dim=-1).unsqueeze(0)


class SentinelHead(nn.Module):
    """Class scores of a Sentinel-2 feature map, sampled at the aerial pixels.

    Args:
        in_channels: channels of the U-TAE's last decoder map.
        classes: output classes.
        patch_size: side of the aerial patch in pixels.
        aerial_resolution: metres per aerial pixel.
        sat_resolution: metres per Sentinel-2 pixel.
    """

    def __init__(
        self,
        in_channels: int,
        classes: int,
        patch_size: int,
        aerial_resolution: float,
        sat_resolution: float,
    ) -> None:
        super().__init__()
        if patch_size < 1 or aerial_resolution <= 0 or sat_resolution <= 0:
            raise ValueError(
                "SentinelHead: patch_size and both resolutions must be positive, got "
                f"{patch_size}, {aerial_resolution}, {sat_resolution}"
            )
        self.patch_size = patch_size
        self.aerial_resolution = aerial_resolution
        self.sat_resolution = sat_resolution
        self.conv = nn.Conv2d(in_channels, classes, kernel_size=1)

    def forward(self, features: Tensor) -> Tensor:
        """B×C×S×S Sentinel-2 features → B×classes×P×P scores on the aerial grid."""
        size = features.shape[-1]
        if features.shape[-2] != size:
            raise ValueError(f"the Sentinel-2 map must be square, got {tuple(features.shape)}")
        if size * self.sat_resolution < self.patch_size * self.aerial_resolution:
            raise ValueError(
                f"the Sentinel-2 crop ({size} px) is smaller than the footprint of a "
                f"{self.patch_size} px aerial patch"
            )
        scores = self.conv(features)
        grid = footprint_grid(
            size, self.patch_size, self.aerial_resolution, self.sat_resolution, scores
        )
        grid = grid.expand(scores.shape[0], -1, -1, -1)
        return F.grid_sample(
            scores, grid, mode="bilinear", padding_mode="border", align_corners=False
        )


class SentinelUTAE(nn.Module):
    """The Sentinel-2-only model: U-TAE on the patch's series, scores on the aerial grid.

    Args:
        arch_hr: the U-TAE.
        head: the head sampling its scores at the aerial pixels.
    """

    def __init__(self, arch_hr: UTAE, head: SentinelHead) -> None:
        super().__init__()
        self.arch_hr = arch_hr
        self.sat_head = head

    def forward(
        self,
        aerial: Tensor | None,
        sen2: Tensor | None,
        positions: Tensor | None,
        pad_mask: Tensor | None = None,
        metadata: Tensor | None = None,
        with_aux: bool = True,
    ) -> SegmentationOutput:
        """Segment the aerial mask's grid from the Sentinel-2 series alone.

        Args:
            aerial: B×C×P×P or None: only its size is checked (the mask's).
            sen2: B×T×C×S×S Sentinel-2 series.
            positions: B×T day positions.
            pad_mask: B×T bool, True on padded dates (None: found from ``pad_value``).
            metadata: ignored.
            with_aux: ignored (no auxiliary head).

        Returns:
            ``SegmentationOutput(logits=B×K×P×P, aux_logits=None)``.
        """
        size = self.sat_head.patch_size
        if aerial is not None and tuple(aerial.shape[-2:]) != (size, size):
            raise ValueError(
                f"U-TAE was built for {size}×{size} masks; got aerial {tuple(aerial.shape[-2:])}"
            )
        if sen2 is None:
            raise ValueError("the U-TAE model needs the Sentinel-2 series (sen2, B×T×C×S×S)")
        features = self.arch_hr.forward_features(sen2, positions, pad_mask)[-1]
        return SegmentationOutput(self.sat_head(features), None)
