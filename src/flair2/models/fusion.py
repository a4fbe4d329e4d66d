"""Fusion terms added to the aerial U-Net's encoder maps (U-T&T, FLAIR #2).

Structure and submodule names follow the FLAIR #2 reference (``conv_list``,
``mlps``, ``enc_mlp``) so its checkpoints load unchanged. Sizes that the
reference hard-codes for 512 px patches are derived here from the inputs:

* the Sentinel-2 footprint of an aerial patch (:func:`footprint_crop_size`);
* the size of each encoder stage (taken from the actual feature maps);
* the length of the metadata vector laid along the deepest map's height.

Encoder stages are those the aerial encoder exposes, whatever their number and
widths (``encoder.out_channels``). A stage of 0 channels (smp's placeholder for
the 1/2 scale of ConvNeXt, Swin, PVT… which start at 1/4) gets no fusion term: its
slot holds an ``nn.Identity`` without parameters, so the other stages keep their
index in the state dict.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F


def footprint_crop_size(patch_size: int, aerial_resolution: float, sat_resolution: float) -> int:
    """Side, in Sentinel-2 pixels, of the ground an aerial patch covers.

    ``max(1, round(patch_size * aerial_resolution / sat_resolution))``:
    512 px at 0.2 m over 10 m pixels gives 10.
    """
    return max(1, round(patch_size * aerial_resolution / sat_resolution))


def center_crop(x: Tensor, size: int) -> Tensor:
    """The central ``size``×``size`` window of ``x`` (…×H×W).

    Offsets round as torchvision's ``CenterCrop`` does, so the window is the
    one the reference takes.

    Raises:
        ValueError: ``size`` is larger than the map.
    """
    height, width = x.shape[-2:]
    if size > height or size > width:
        raise ValueError(f"cannot crop {size}×{size} from a {height}×{width} map")
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return x[..., top : top + size, left : left + size]


def collapsed_hidden_widths(in_channels: int, out_channels: int) -> tuple[int, int]:
    """Hidden widths of a collapsed-fusion MLP: the reference's rule.

    Widths step from ``in_channels`` towards ``out_channels`` in thirds
    (rounded down); equal widths use ``2 * in_channels`` twice. 64 → 512 gives
    (213, 362); 64 → 5 gives (45, 26).
    """
    step = abs(in_channels - out_channels) // 3
    if in_channels < out_channels:
        return in_channels + step, in_channels + 2 * step
    if in_channels > out_channels:
        return in_channels - step, in_channels - 2 * step
    return 2 * in_channels, 2 * in_channels


class FMCropped(nn.Module):
    """Footprint fusion: a 1×1 conv per encoder stage, then a bilinear resize to the stage.

    Args:
        in_channels: channels of the satellite feature map.
        out_channels_list: channels of each encoder stage (0: a stage without term).
    """

    def __init__(self, in_channels: int, out_channels_list: list[int]) -> None:
        super().__init__()
        self.conv_list = nn.ModuleList(
            nn.Conv2d(in_channels, c, kernel_size=1) if c > 0 else nn.Identity()
            for c in out_channels_list
        )

    def forward(self, crop: Tensor, sizes: list[tuple[int, int]]) -> list[Tensor | None]:
        """Map the footprint crop to every stage.

        Args:
            crop: B×C×c×c central crop of the satellite map.
            sizes: (height, width) of each encoder stage.

        Returns:
            One B×C_i×H_i×W_i tensor per stage; None for a 0-channel stage.
        """
        return [
            None
            if isinstance(conv, nn.Identity)
            else F.interpolate(conv(crop), size=size, mode="bilinear", align_corners=False)
            for conv, size in zip(self.conv_list, sizes, strict=True)
        ]


class FMCollapsed(nn.Module):
    """Context fusion: a 3-layer MLP per encoder stage on the map's spatial mean.

    Args:
        in_channels: channels of the satellite feature map.
        out_channels_list: channels of each encoder stage (0: a stage without term).
        dropout: dropout after the two hidden layers (training only).
    """

    def __init__(
        self, in_channels: int, out_channels_list: list[int], dropout: float = 0.3
    ) -> None:
        super().__init__()
        self.mlps = nn.ModuleList()
        for out_channels in out_channels_list:
            if out_channels <= 0:
                self.mlps.append(nn.Identity())
                continue
            first, second = collapsed_hidden_widths(in_channels, out_channels)
            self.mlps.append(
                nn.Sequential(
                    nn.Linear(in_channels, first),
                    nn.Dropout(dropout),
                    nn.ReLU(inplace=True),
                    nn.Linear(first, second),
                    nn.Dropout(dropout),
                    nn.ReLU(inplace=True),
                    nn.Linear(second, out_channels),
                )
            )

    def forward(self, summary: Tensor) -> list[Tensor | None]:
        """Map each sample's summary vector to every stage.

        Args:
            summary: B×C, one vector per sample (the spatial mean of its map).

        Returns:
            One B×C_i×1×1 tensor per stage, to broadcast over the stage's size;
            None for a 0-channel stage.
        """
        return [
            None if isinstance(mlp, nn.Identity) else mlp(summary)[:, :, None, None]
            for mlp in self.mlps
        ]


class MetadataMLP(nn.Module):
    """The aerial-metadata MLP: in → 64 → 32 → out, dropout 0.5 (``enc_mlp``).

    Args:
        in_features: length of the metadata vector (45).
        out_features: height of the deepest encoder map (patch size / 32).
        dropout: dropout after the two hidden layers (training only).
    """

    def __init__(self, in_features: int, out_features: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.enc_mlp = nn.Sequential(
            nn.Linear(in_features, 64),
            nn.Dropout(dropout),
            nn.ReLU(inplace=True),
            nn.Linear(64, 32),
            nn.Dropout(dropout),
            nn.ReLU(inplace=True),
            nn.Linear(32, out_features),
        )

    def forward(self, metadata: Tensor) -> Tensor:
        """B×in_features → B×out_features."""
        return self.enc_mlp(metadata)


def add_metadata(deepest: Tensor, mlp: MetadataMLP, metadata: Tensor | None) -> Tensor:
    """Add the encoded metadata to the deepest encoder map, as the reference does.

    The MLP's value ``k`` is added at row ``k`` of every channel and column.

    Args:
        deepest: B×C×h×w deepest encoder map.
        mlp: the metadata MLP (``out_features`` must equal h).
        metadata: B×in_features.

    Returns:
        B×C×h×w.

    Raises:
        ValueError: metadata missing or of the wrong shape, or a map height
            that does not match the MLP (the model was built for another
            patch size).
    """
    if metadata is None:
        raise ValueError(
            "this model was built with the aerial metadata MLP (aerial_metadata: true): "
            "pass metadata (B×45)"
        )
    if (
        metadata.dim() != 2
        or metadata.shape[1] != mlp.in_features
        or metadata.shape[0] != deepest.shape[0]
    ):
        raise ValueError(
            f"metadata must be B×{mlp.in_features} with B = {deepest.shape[0]}, "
            f"got shape {tuple(metadata.shape)}"
        )
    if deepest.shape[-2] != mlp.out_features:
        raise ValueError(
            f"the deepest encoder map has {deepest.shape[-2]} rows but the metadata MLP was "
            f"built for {mlp.out_features}: the model was built for another patch size"
        )
    encoded = mlp(metadata.to(deepest.dtype))
    return deepest + encoded[:, None, :, None]
