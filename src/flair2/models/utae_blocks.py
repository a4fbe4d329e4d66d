"""The convolution blocks of U-TAE: conv layers, encoder (down) and decoder (up) blocks.

After Garnot & Landrieu, U-TAE/L-TAE, MIT licence, github.com/VSainteuf/utae-paps.
Written anew for flair2; class and submodule names follow the original, so its
state dicts load unchanged (see :mod:`flair2.models.utae`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

#: Spatial padding of the convolutions (``nn.Conv2d``'s ``padding_mode``).
PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]

NORMS = ("group", "batch", "instance")


def _norm_layer(norm: str | None, channels: int, n_groups: int) -> nn.Module | None:
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels)
    if norm == "group":
        return nn.GroupNorm(num_groups=n_groups, num_channels=channels)
    return None


class ConvLayer(nn.Module):
    """A chain of conv → norm → ReLU steps, held in ``self.conv`` (an nn.Sequential).

    Args:
        nkernels: channel widths, input first: ``len(nkernels) - 1`` convolutions.
        norm: "batch", "instance", "group" (``n_groups`` groups) or None.
        k: kernel size of every convolution.
        s: stride of every convolution.
        p: padding of every convolution.
        n_groups: groups of the GroupNorm.
        last_relu: put a ReLU after the last convolution too.
        padding_mode: spatial padding of the convolutions (``nn.Conv2d``).
    """

    def __init__(
        self,
        nkernels: list[int],
        norm: str | None = "batch",
        k: int = 3,
        s: int = 1,
        p: int = 1,
        n_groups: int = 4,
        last_relu: bool = True,
        padding_mode: PaddingMode = "reflect",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        steps = len(nkernels) - 1
        for i in range(steps):
            layers.append(
                nn.Conv2d(
                    nkernels[i],
                    nkernels[i + 1],
                    kernel_size=k,
                    stride=s,
                    padding=p,
                    padding_mode=padding_mode,
                )
            )
            norm_layer = _norm_layer(norm, nkernels[i + 1], n_groups)
            if norm_layer is not None:
                layers.append(norm_layer)
            if last_relu or i < steps - 1:
                layers.append(nn.ReLU())
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """N×C×H×W → N×nkernels[-1]×H'×W'."""
        return self.conv(x)


class ConvBlock(nn.Module):
    """A :class:`ConvLayer` of 3×3 convolutions wrapped as ``self.conv``."""

    def __init__(
        self,
        nkernels: list[int],
        norm: str | None = "batch",
        last_relu: bool = True,
        padding_mode: PaddingMode = "reflect",
    ) -> None:
        super().__init__()
        self.conv = ConvLayer(nkernels, norm=norm, last_relu=last_relu, padding_mode=padding_mode)

    def forward(self, x: Tensor) -> Tensor:
        """N×C×H×W → N×nkernels[-1]×H×W."""
        return self.conv(x)


class DownConvBlock(nn.Module):
    """Strided convolution (``down``) then a residual pair of 3×3 convolutions."""

    def __init__(
        self,
        d_in: int,
        d_out: int,
        k: int,
        s: int,
        p: int,
        norm: str | None = "batch",
        padding_mode: PaddingMode = "reflect",
    ) -> None:
        super().__init__()
        self.down = ConvLayer([d_in, d_in], norm=norm, k=k, s=s, p=p, padding_mode=padding_mode)
        self.conv1 = ConvLayer([d_in, d_out], norm=norm, padding_mode=padding_mode)
        self.conv2 = ConvLayer([d_out, d_out], norm=norm, padding_mode=padding_mode)

    def forward(self, x: Tensor) -> Tensor:
        """N×d_in×H×W → N×d_out×H'×W' (H' = H / s for the default k4 s2 p1)."""
        out = self.conv1(self.down(x))
        return out + self.conv2(out)


class UpConvBlock(nn.Module):
    """Transposed convolution (``up``), concatenation with the 1×1-convolved skip, residual pair."""

    def __init__(
        self,
        d_in: int,
        d_out: int,
        k: int,
        s: int,
        p: int,
        norm: str | None = "batch",
        d_skip: int | None = None,
        padding_mode: PaddingMode = "reflect",
    ) -> None:
        super().__init__()
        d = d_out if d_skip is None else d_skip
        self.skip_conv = nn.Sequential(nn.Conv2d(d, d, kernel_size=1), nn.BatchNorm2d(d), nn.ReLU())
        self.up = nn.Sequential(
            nn.ConvTranspose2d(d_in, d_out, kernel_size=k, stride=s, padding=p),
            nn.BatchNorm2d(d_out),
            nn.ReLU(),
        )
        self.conv1 = ConvLayer([d_out + d, d_out], norm=norm, padding_mode=padding_mode)
        self.conv2 = ConvLayer([d_out, d_out], norm=norm, padding_mode=padding_mode)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """B×d_in×h×w and B×d_skip×H×W (H = upsampled h) → B×d_out×H×W."""
        out = self.conv1(torch.cat([self.up(x), self.skip_conv(skip)], dim=1))
        return out + self.conv2(out)
