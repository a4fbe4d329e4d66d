"""Sinusoidal encoding of acquisition dates for the L-TAE.

After Garnot & Landrieu, U-TAE/L-TAE, MIT licence, github.com/VSainteuf/utae-paps.
Written anew for flair2; the numerics (period ``T``, pairing of sin/cos on
even/odd channels, repetition per attention head) follow the original so that
published weights keep their meaning.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PositionalEncoder(nn.Module):
    """Encode day positions as sin/cos features, ``d`` channels (times ``repeat``).

    Channel ``i`` uses the wavelength ``T ** (2 * (i // 2) / d)``: even channels
    hold the sine and odd channels the cosine of ``position / wavelength``.

    Args:
        d: channels of one encoding.
        T: period of the encoding (1000 in the reference).
        repeat: if given, the encoding is concatenated this many times along
            the channels (one copy per attention head).
        offset: index of the first channel (to continue a longer encoding).
    """

    denom: Tensor  # a buffer: declared for the type checker

    def __init__(self, d: int, T: float = 1000, repeat: int | None = None, offset: int = 0) -> None:
        super().__init__()
        if d < 1:
            raise ValueError(f"PositionalEncoder: d must be >= 1, got {d}")
        self.d = d
        self.T = T
        self.repeat = repeat
        index = torch.arange(offset, offset + d, dtype=torch.float32)
        exponent = 2 * torch.div(index, 2, rounding_mode="floor") / d
        # Not persistent: the reference stores no such entry in its state dict.
        self.register_buffer("denom", torch.pow(float(T), exponent), persistent=False)

    def forward(self, batch_positions: Tensor) -> Tensor:
        """Encode positions.

        Args:
            batch_positions: B×T day positions (any numeric dtype).

        Returns:
            B×T×(d·repeat) float encoding.
        """
        if batch_positions.dim() != 2:
            raise ValueError(
                "PositionalEncoder: batch_positions must be B×T, got shape "
                f"{tuple(batch_positions.shape)}"
            )
        angles = batch_positions.to(self.denom.dtype)[:, :, None] / self.denom
        table = torch.empty_like(angles)
        table[..., 0::2] = torch.sin(angles[..., 0::2])
        table[..., 1::2] = torch.cos(angles[..., 1::2])
        if self.repeat is not None:
            table = table.repeat(1, 1, self.repeat)
        return table
