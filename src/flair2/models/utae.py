"""U-TAE: a U-Net whose skip connections are collapsed in time by L-TAE attention.

After Garnot & Landrieu, U-TAE/L-TAE, MIT licence, github.com/VSainteuf/utae-paps.
Written anew for flair2. Constructor arguments and submodule names follow the
original (and the FLAIR #2 copy of it), so its state dicts load unchanged:
``in_conv.conv.conv.N``, ``down_blocks.N.{down,conv1,conv2}.conv.N``,
``up_blocks.N.{skip_conv,up}.N``, ``up_blocks.N.{conv1,conv2}.conv.N``,
``temporal_encoder.*`` and ``out_conv.conv.conv.N``.

Differences from the original, none of which changes an unpadded series:

* the pad mask is computed once (or taken from the caller) instead of at every
  block, and encoder blocks never run on zero tensors to learn output shapes;
* padded dates are skipped by the encoder and excluded from every statistic
  (see :mod:`flair2.models.ltae`), so padding never changes the output;
* feature maps and logits have separate methods (``forward_features`` and
  ``forward``); U-T&T only needs the maps and does not pay for ``out_conv``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from flair2.models.ltae import LTAE2d, TemporalAggregator
from flair2.models.utae_blocks import NORMS, ConvBlock, DownConvBlock, PaddingMode, UpConvBlock


def _per_date(
    block: Callable[[Tensor], Tensor], x: Tensor, valid: Tensor | None, fill: float
) -> Tensor:
    """Apply a 2-D block to every real date of a B×T×C×H×W series.

    Padded dates are not computed: their output is ``fill``. ``valid`` is the
    flattened (B·T) mask of real dates, or None when every date is real.
    """
    B, T = x.shape[:2]
    flat = x.reshape(B * T, *x.shape[2:])
    if valid is None:
        out = block(flat)
    else:
        index = valid.nonzero().squeeze(1)
        computed = block(flat.index_select(0, index))
        out = computed.new_full((B * T, *computed.shape[1:]), fill).index_copy(0, index, computed)
    return out.view(B, T, *out.shape[1:])


class UTAE(nn.Module):
    """U-TAE for satellite image time series (Garnot & Landrieu, 2021).

    A shared 2-D encoder runs on every date; the L-TAE collapses the deepest
    maps in time and returns attention masks, which also collapse each skip
    connection; a 2-D decoder brings the result back to full resolution.

    Args:
        input_dim: channels of the input images.
        encoder_widths: channels of the encoder stages, highest resolution first;
            its length sets the number of stages (downsamplings + 1).
        decoder_widths: channels of the decoder stages, same order and length;
            the last must equal ``encoder_widths[-1]``. None: same as encoder.
        out_conv: widths of the output convolutions (last = number of classes).
        str_conv_k: kernel size of the strided down and transposed up convolutions.
        str_conv_s: stride of the strided down and transposed up convolutions.
        str_conv_p: padding of the strided down and transposed up convolutions.
        agg_mode: skip aggregation, "att_group", "att_mean" or "mean".
        encoder_norm: "group", "batch" or "instance" (the decoder uses batch norm).
        n_head: L-TAE heads.
        d_model: L-TAE width.
        d_k: L-TAE key dimension.
        pad_value: value of padded dates; used to find them when no mask is given.
        padding_mode: spatial padding of the 3×3 convolutions.
        T: period of the L-TAE positional encoding.
    """

    def __init__(
        self,
        input_dim: int,
        encoder_widths: list[int] | None = None,
        decoder_widths: list[int] | None = None,
        out_conv: list[int] | None = None,
        str_conv_k: int = 4,
        str_conv_s: int = 2,
        str_conv_p: int = 1,
        agg_mode: str = "att_group",
        encoder_norm: str = "group",
        n_head: int = 16,
        d_model: int = 256,
        d_k: int = 4,
        pad_value: float = 0,
        padding_mode: PaddingMode = "reflect",
        T: float = 1000,
    ) -> None:
        super().__init__()
        encoder_widths = list(encoder_widths) if encoder_widths is not None else [64, 64, 64, 128]
        decoder_widths = (
            list(decoder_widths) if decoder_widths is not None else list(encoder_widths)
        )
        out_conv = list(out_conv) if out_conv is not None else [32, 20]
        if len(encoder_widths) < 2:
            raise ValueError("U-TAE: encoder_widths needs at least two stages")
        if len(decoder_widths) != len(encoder_widths):
            raise ValueError("U-TAE: decoder_widths must have as many entries as encoder_widths")
        if decoder_widths[-1] != encoder_widths[-1]:
            raise ValueError("U-TAE: the last decoder width must equal the last encoder width")
        if encoder_norm not in NORMS:
            raise ValueError(
                f"U-TAE: encoder_norm must be one of {', '.join(NORMS)}; got {encoder_norm!r}"
            )
        if agg_mode == "att_group":
            bad = [w for w in encoder_widths[:-1] if w % n_head]
            if bad:
                raise ValueError(
                    f"U-TAE: with agg_mode 'att_group' the skip widths {bad} must be "
                    f"divisible by n_head ({n_head})"
                )
        self.input_dim = input_dim
        self.n_stages = len(encoder_widths)
        self.encoder_widths = encoder_widths
        self.decoder_widths = decoder_widths
        self.str_conv = (str_conv_k, str_conv_s, str_conv_p)
        self.pad_value = pad_value
        self.padding_mode = padding_mode
        #: Channels of the full-resolution map that ``forward_features`` returns last.
        self.feature_channels = decoder_widths[0]

        self.in_conv = ConvBlock(
            [input_dim, encoder_widths[0], encoder_widths[0]],
            norm=encoder_norm,
            padding_mode=padding_mode,
        )
        self.down_blocks = nn.ModuleList(
            DownConvBlock(
                encoder_widths[i],
                encoder_widths[i + 1],
                k=str_conv_k,
                s=str_conv_s,
                p=str_conv_p,
                norm=encoder_norm,
                padding_mode=padding_mode,
            )
            for i in range(self.n_stages - 1)
        )
        self.up_blocks = nn.ModuleList(
            UpConvBlock(
                decoder_widths[i],
                decoder_widths[i - 1],
                k=str_conv_k,
                s=str_conv_s,
                p=str_conv_p,
                norm="batch",
                d_skip=encoder_widths[i - 1],
                padding_mode=padding_mode,
            )
            for i in range(self.n_stages - 1, 0, -1)
        )
        self.temporal_encoder = LTAE2d(
            in_channels=encoder_widths[-1],
            n_head=n_head,
            d_k=d_k,
            mlp=[d_model, encoder_widths[-1]],
            d_model=d_model,
            T=T,
        )
        self.temporal_aggregator = TemporalAggregator(mode=agg_mode)
        self.out_conv = ConvBlock([decoder_widths[0], *out_conv], padding_mode=padding_mode)

    # ------------------------------------------------------------------
    def stage_sizes(self, size: int) -> list[int]:
        """Side lengths of the encoder maps for an input side ``size``, highest first.

        Raises:
            ValueError: the strided convolutions cannot bring ``size`` down and
                back up again exactly, or a map gets too small to pad.
        """
        k, s, p = self.str_conv
        sizes = [size]
        for _ in range(self.n_stages - 1):
            smaller = (sizes[-1] + 2 * p - k) // s + 1
            if smaller < 1 or (smaller - 1) * s - 2 * p + k != sizes[-1]:
                raise ValueError(
                    f"U-TAE: a {size} px input cannot go through {self.n_stages - 1} strided "
                    f"convolutions (k{k} s{s} p{p}) and back; use a size divisible by "
                    f"{s ** (self.n_stages - 1)}"
                )
            sizes.append(smaller)
        if self.padding_mode == "reflect" and min(sizes) < 2:
            raise ValueError(
                f"U-TAE: a {size} px input gives {min(sizes)} px maps at the deepest of "
                f"{self.n_stages} stages, too small for reflect padding; use larger inputs "
                "or fewer stages"
            )
        return sizes

    def pad_mask_from_values(self, x: Tensor) -> Tensor:
        """B×T bool: True on dates whose every value equals ``pad_value``."""
        return (x == self.pad_value).flatten(start_dim=2).all(dim=-1)

    def _check_inputs(
        self, x: Tensor, batch_positions: Tensor | None, pad_mask: Tensor | None
    ) -> None:
        if x.dim() != 5:
            raise ValueError(f"U-TAE: expected input B×T×C×H×W, got shape {tuple(x.shape)}")
        B, T, C, H, W = x.shape
        if self.input_dim != x.shape[2]:
            raise ValueError(
                f"U-TAE: expected {self.input_dim} input channels, got {C} (shape B×T×C×H×W)"
            )
        if batch_positions is None:
            raise ValueError("U-TAE: batch_positions (B×T day positions) is required")
        if tuple(batch_positions.shape) != (B, T):
            raise ValueError(
                f"U-TAE: batch_positions must be B×T = {(B, T)}, got {tuple(batch_positions.shape)}"
            )
        if pad_mask is not None:
            if tuple(pad_mask.shape) != (B, T):
                raise ValueError(
                    f"U-TAE: pad_mask must be B×T = {(B, T)}, got {tuple(pad_mask.shape)}"
                )
            if pad_mask.dtype != torch.bool:
                raise ValueError(
                    f"U-TAE: pad_mask must be bool (True = padded), got {pad_mask.dtype}"
                )
        self.stage_sizes(H)
        if W != H:
            self.stage_sizes(W)

    def forward_features(
        self, x: Tensor, batch_positions: Tensor | None, pad_mask: Tensor | None = None
    ) -> list[Tensor]:
        """Decoder feature maps.

        Args:
            x: B×T×C×H×W image series.
            batch_positions: B×T day positions.
            pad_mask: B×T bool, True on padded dates; None: dates whose values
                all equal ``pad_value`` are padding.

        Returns:
            ``n_stages`` maps, lowest resolution first: the L-TAE output
            (B×encoder_widths[-1]×H/2^(n-1)×W/2^(n-1)), then each decoder
            stage; the last is B×decoder_widths[0]×H×W.
        """
        self._check_inputs(x, batch_positions, pad_mask)
        if pad_mask is None:
            pad_mask = self.pad_mask_from_values(x)
        padded = bool(pad_mask.any())
        valid = (~pad_mask).reshape(-1) if padded and not bool(pad_mask.all()) else None
        out = _per_date(self.in_conv, x, valid, self.pad_value)
        encoder_maps = [out]
        for block in self.down_blocks:
            out = _per_date(block, out, valid, self.pad_value)
            encoder_maps.append(out)
        out, attn = self.temporal_encoder(
            encoder_maps[-1], batch_positions=batch_positions, pad_mask=pad_mask if padded else None
        )
        maps = [out]
        for i, block in enumerate(self.up_blocks):
            skip = self.temporal_aggregator(encoder_maps[-(i + 2)], pad_mask=pad_mask, attn=attn)
            out = block(out, skip)
            maps.append(out)
        return maps

    def forward(
        self, x: Tensor, batch_positions: Tensor | None, pad_mask: Tensor | None = None
    ) -> Tensor:
        """Class scores: ``out_conv`` applied to the last decoder map.

        Args: as :meth:`forward_features`.

        Returns:
            B×out_conv[-1]×H×W.
        """
        return self.out_conv(self.forward_features(x, batch_positions, pad_mask)[-1])
