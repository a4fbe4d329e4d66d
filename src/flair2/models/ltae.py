"""Lightweight Temporal Attention Encoder (L-TAE) for image time series.

After Garnot & Landrieu, U-TAE/L-TAE, MIT licence, github.com/VSainteuf/utae-paps.
Written anew for flair2, with the aggregation U-TAE applies to its skip
connections using the L-TAE's attention masks. Attribute names (``inconv``, ``attention_heads.Q``,
``attention_heads.fc1_k``, ``in_norm``, ``out_norm``, ``mlp``) match the
original so that its state dicts load without renaming.

One deliberate difference: the input GroupNorm of the original pools its
statistics over every date, padded ones included, so padding a series changes
its encoding. Here the statistics are taken over the real dates only; without
padding the two are the same computation.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flair2.models.positional_encoding import PositionalEncoder

#: Ways of collapsing U-TAE skip connections in time.
AGG_MODES = ("att_group", "att_mean", "mean")


def masked_group_norm(x: Tensor, valid: Tensor | None, norm: nn.GroupNorm) -> Tensor:
    """GroupNorm over channels and dates, with statistics from the valid dates only.

    Args:
        x: B×P×T×C features (P pixel positions, T dates, C channels).
        valid: B×T bool, True on real (not padded) dates; None means all valid.
        norm: the GroupNorm whose groups, eps and affine parameters are used.

    Returns:
        B×P×T×C normalised features. Where ``valid`` is all True this equals
        ``norm`` applied to the B·P sequences laid out as (C, T).
    """
    B, P, T, C = x.shape
    G = norm.num_groups
    if valid is None or bool(valid.all()):
        flat = x.reshape(B * P, T, C).transpose(1, 2)
        out = F.group_norm(flat, G, norm.weight, norm.bias, norm.eps)
        return out.transpose(1, 2).reshape(B, P, T, C)
    # A series with no real date at all falls back to all of its dates, so that
    # its statistics stay defined (its output is meaningless either way).
    valid = valid | ~valid.any(dim=1, keepdim=True)
    # Statistics in float32, as autocast runs GroupNorm: squares of raw
    # reflectance-scale features overflow float16.
    xg = x.float().reshape(B, P, T, G, C // G)
    weight = valid.float()[:, None, :, None, None]  # B×1×T×1×1
    count = (valid.sum(dim=1).float() * (C // G)).clamp(min=1.0)[:, None, None, None, None]
    mean = (xg * weight).sum(dim=(2, 4), keepdim=True) / count
    centred = xg - mean
    var = (centred.square() * weight).sum(dim=(2, 4), keepdim=True) / count
    out = (centred * torch.rsqrt(var + norm.eps)).reshape(B, P, T, C)
    if norm.affine:
        out = out * norm.weight.float() + norm.bias.float()
    return out.to(x.dtype)


class MultiHeadAttention(nn.Module):
    """Attention with one learnt master query per head over the date sequence.

    Keys come from a linear projection of the input; the values are the input
    itself, split into ``n_head`` channel groups (one per head).

    Args:
        n_head: number of heads.
        d_k: key/query dimension.
        d_in: input channels (divisible by ``n_head``).
        attn_dropout: dropout on the attention weights (training only).
    """

    def __init__(self, n_head: int, d_k: int, d_in: int, attn_dropout: float = 0.1) -> None:
        super().__init__()
        if d_in % n_head:
            raise ValueError(
                f"MultiHeadAttention: d_in ({d_in}) must be divisible by n_head ({n_head})"
            )
        self.n_head = n_head
        self.d_k = d_k
        self.d_in = d_in
        self.Q = nn.Parameter(torch.zeros(n_head, d_k))
        nn.init.normal_(self.Q, mean=0.0, std=math.sqrt(2.0 / d_k))
        self.fc1_k = nn.Linear(d_in, n_head * d_k)
        nn.init.normal_(self.fc1_k.weight, mean=0.0, std=math.sqrt(2.0 / d_k))
        self.temperature = math.sqrt(d_k)
        self.dropout = nn.Dropout(attn_dropout)

    def forward(self, v: Tensor, pad_mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Attend over dates.

        Args:
            v: B×P×T×d_in sequences (P pixel positions).
            pad_mask: B×T bool, True on padded dates (they get zero weight).

        Returns:
            ``(out, attn)``: B×P×d_in head outputs concatenated along channels,
            and n_head×B×P×T attention weights.
        """
        B, P, T, _ = v.shape
        keys = self.fc1_k(v).view(B, P, T, self.n_head, self.d_k)
        scores = torch.einsum("hd,bpthd->hbpt", self.Q, keys) / self.temperature
        if pad_mask is not None:
            # The dtype's lowest value rather than -inf: a fully padded series
            # then gets uniform weights instead of NaN.
            scores = scores.masked_fill(pad_mask[None, :, None, :], torch.finfo(scores.dtype).min)
        attn = self.dropout(torch.softmax(scores, dim=-1))
        values = v.view(B, P, T, self.n_head, self.d_in // self.n_head)
        out = torch.einsum("hbpt,bpthc->bphc", attn, values).reshape(B, P, self.d_in)
        return out, attn


class LTAE2d(nn.Module):
    """L-TAE applied independently at every pixel of a feature-map time series.

    Args:
        in_channels: channels of the input maps (divisible by ``n_head``).
        n_head: attention heads.
        d_k: key/query dimension.
        mlp: widths of the MLP after attention; ``mlp[0]`` must equal ``d_model``.
        dropout: dropout after the MLP (training only).
        d_model: if given, a 1×1 convolution (``inconv``) first projects the
            input to this width; otherwise the width stays ``in_channels``.
        T: period of the positional encoding.
        positional_encoding: add the date encoding before attention.
    """

    def __init__(
        self,
        in_channels: int = 128,
        n_head: int = 16,
        d_k: int = 4,
        mlp: list[int] | None = None,
        dropout: float = 0.2,
        d_model: int | None = 256,
        T: float = 1000,
        positional_encoding: bool = True,
    ) -> None:
        super().__init__()
        mlp = list(mlp) if mlp is not None else [256, 128]
        self.in_channels = in_channels
        self.n_head = n_head
        self.d_model = d_model if d_model is not None else in_channels
        if in_channels % n_head:
            raise ValueError(
                f"LTAE2d: in_channels ({in_channels}) must be divisible by n_head ({n_head})"
            )
        if self.d_model % n_head:
            raise ValueError(
                f"LTAE2d: d_model ({self.d_model}) must be divisible by n_head ({n_head})"
            )
        if mlp[0] != self.d_model:
            raise ValueError(f"LTAE2d: mlp[0] ({mlp[0]}) must equal d_model ({self.d_model})")
        self.inconv = nn.Conv1d(in_channels, d_model, 1) if d_model is not None else None
        self.positional_encoder = (
            PositionalEncoder(self.d_model // n_head, T=T, repeat=n_head)
            if positional_encoding
            else None
        )
        self.attention_heads = MultiHeadAttention(n_head=n_head, d_k=d_k, d_in=self.d_model)
        self.in_norm = nn.GroupNorm(num_groups=n_head, num_channels=in_channels)
        self.out_norm = nn.GroupNorm(num_groups=n_head, num_channels=mlp[-1])
        layers: list[nn.Module] = []
        for width_in, width_out in itertools.pairwise(mlp):
            layers += [nn.Linear(width_in, width_out), nn.BatchNorm1d(width_out), nn.ReLU()]
        self.mlp = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.out_channels = mlp[-1]

    def forward(
        self, x: Tensor, batch_positions: Tensor | None = None, pad_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Collapse the time axis of a feature-map series.

        Args:
            x: B×T×C×H×W feature maps.
            batch_positions: B×T day positions (required with positional encoding).
            pad_mask: B×T bool, True on padded dates; None means no padding.

        Returns:
            ``(out, attn)``: B×mlp[-1]×H×W encoding and n_head×B×T×H×W
            attention weights (zero on padded dates).
        """
        if x.dim() != 5:
            raise ValueError(f"LTAE2d: expected B×T×C×H×W input, got shape {tuple(x.shape)}")
        B, T, C, H, W = x.shape
        if self.in_channels != x.shape[2]:
            raise ValueError(f"LTAE2d: expected {self.in_channels} channels, got {C}")
        valid = None if pad_mask is None else ~pad_mask
        out = x.permute(0, 3, 4, 1, 2).reshape(B, H * W, T, C)
        out = masked_group_norm(out, valid, self.in_norm)
        if self.inconv is not None:
            # A 1×1 Conv1d over (C, T) is a linear map of the channels.
            out = F.linear(out, self.inconv.weight.squeeze(-1), self.inconv.bias)
        if self.positional_encoder is not None:
            if batch_positions is None:
                raise ValueError("LTAE2d: batch_positions (B×T) is required")
            out = out + self.positional_encoder(batch_positions)[:, None]
        out, attn = self.attention_heads(out, pad_mask=pad_mask)
        out = self.dropout(self.mlp(out.reshape(B * H * W, self.d_model)))
        out = self.out_norm(out)
        out = out.view(B, H, W, -1).permute(0, 3, 1, 2)
        attn = attn.view(self.n_head, B, H, W, T).permute(0, 1, 4, 2, 3)
        return out, attn


def _resize_attention(attn: Tensor, size: tuple[int, int]) -> Tensor:
    """Resample N×T×h×w attention maps to ``size`` as the original does."""
    h, w = attn.shape[-2:]
    if size[0] > h:
        return F.interpolate(attn, size=size, mode="bilinear", align_corners=False)
    if size[0] == h and size[1] == w:
        return attn
    return F.avg_pool2d(attn, kernel_size=w // size[0])


class TemporalAggregator(nn.Module):
    """Collapse a B×T×C×H×W skip series to B×C×H×W, ignoring padded dates.

    Modes: ``att_group`` weights each of the ``n_head`` channel groups by its
    head's attention (resampled to the skip's size), ``att_mean`` weights all
    channels by the head-averaged attention, ``mean`` averages the real dates.
    """

    def __init__(self, mode: str = "mean") -> None:
        super().__init__()
        if mode not in AGG_MODES:
            raise ValueError(f"agg_mode must be one of {', '.join(AGG_MODES)}; got {mode!r}")
        self.mode = mode

    def forward(self, x: Tensor, pad_mask: Tensor, attn: Tensor) -> Tensor:
        """Aggregate.

        Args:
            x: B×T×C×H×W skip features.
            pad_mask: B×T bool, True on padded dates.
            attn: n_head×B×T×h×w attention from the L-TAE.

        Returns:
            B×C×H×W.
        """
        B, T, C, H, W = x.shape
        valid = (~pad_mask).to(x.dtype)  # B×T
        if self.mode == "mean":
            total = (x * valid[:, :, None, None, None]).sum(dim=1)
            return total / valid.sum(dim=1).clamp(min=1.0)[:, None, None, None]
        n_head = attn.shape[0]
        if self.mode == "att_mean":
            weights = _resize_attention(attn.mean(dim=0), (H, W))  # B×T×H×W
            weights = weights * valid[:, :, None, None]
            return (x * weights[:, :, None]).sum(dim=1)
        weights = _resize_attention(attn.reshape(n_head * B, T, *attn.shape[-2:]), (H, W))
        weights = weights.view(n_head, B, T, H, W) * valid[None, :, :, None, None]
        groups = x.reshape(B, T, n_head, C // n_head, H, W)
        out = (weights.permute(1, 2, 0, 3, 4)[:, :, :, None] * groups).sum(dim=1)
        return out.reshape(B, C, H, W)
