"""Sliding windows over a raster: the window grid, row segments, blending weights.

Windows are ``patch`` pixels square and step by ``patch - overlap``; the last
row and column of windows are moved back to end exactly on the raster's edge
(a raster smaller than a window gets one window, padded). A *strip* is one row
of windows; it is the unit of work, of resumption and of distribution.

Strips overlap: the raster's rows are cut into *segments* at every strip's
first and last row, and each segment is covered by one strip (final as soon as
that strip is predicted) or by several (their weighted sums are added once all
of them are). Along a strip, windows are accumulated left to right in a
:class:`ColumnAccumulator` whose width does not depend on the raster's.

Blending: each window's class probabilities are weighted by a separable
raised-cosine ramp that rises over the first ``overlap`` pixels and falls over
the last ones; the output is ``Σ w·p / Σ w``. Across an overlap of exactly
``overlap`` pixels the two ramps add up to 1 (sin² + cos²), so the blend is a
smooth cross-fade; the ramp never reaches 0, so the raster's own edges, covered
by one window only, are still predicted.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

#: Output files are tiled by this many pixels; flushed columns are rounded down to it
#: so that each tile of a part file is written once.
TILE = 256


def window_offsets(size: int, patch: int, stride: int) -> list[int]:
    """First pixel of each window along one axis.

    Args:
        size: raster size along the axis (pixels).
        patch: window size.
        stride: step between windows (``patch - overlap``), >= 1.

    Returns:
        ``0, stride, 2·stride, …`` while a window fits, then ``size - patch``
        (the last window ends on the edge); ``[0]`` when ``size <= patch``.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if size <= patch:
        return [0]
    offsets = list(range(0, size - patch, stride))
    offsets.append(size - patch)
    return offsets


@dataclass(frozen=True)
class Segment:
    """Rows ``[start, stop)`` of the raster and the strips that cover them.

    Attributes:
        start: first row.
        stop: row after the last.
        strips: indexes of the covering strips, ascending.
    """

    start: int
    stop: int
    strips: tuple[int, ...]

    @property
    def shared(self) -> bool:
        """Whether several strips cover the segment (their sums must be merged)."""
        return len(self.strips) > 1

    @property
    def name(self) -> str:
        """File-name stem of the segment's part files, ``rows_<start>_<stop>`` (7-digit rows)."""
        return f"rows_{self.start:07d}_{self.stop:07d}"


@dataclass(frozen=True)
class WindowGrid:
    """The windows of a ``height`` × ``width`` raster.

    Attributes:
        height, width: raster size in pixels.
        patch: window side in pixels.
        overlap: pixels shared by neighbouring windows (at least; the last
            row/column may share more).
    """

    height: int
    width: int
    patch: int
    overlap: int
    rows: list[int] = field(init=False, repr=False)
    cols: list[int] = field(init=False, repr=False)
    segments: list[Segment] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"empty raster ({self.height}×{self.width})")
        if not 0 <= self.overlap < self.patch:
            raise ValueError(f"overlap must be in [0, {self.patch}), got {self.overlap}")
        stride = self.patch - self.overlap
        object.__setattr__(self, "rows", window_offsets(self.height, self.patch, stride))
        object.__setattr__(self, "cols", window_offsets(self.width, self.patch, stride))
        object.__setattr__(self, "segments", self._segments())

    def _segments(self) -> list[Segment]:
        bounds = sorted(
            {0, self.height}
            | {r for r in self.rows}
            | {self.strip_stop(k) for k in range(len(self.rows))}
        )
        segments = []
        for start, stop in itertools.pairwise(bounds):
            strips = tuple(
                k for k, r in enumerate(self.rows) if r <= start and self.strip_stop(k) >= stop
            )
            segments.append(Segment(start, stop, strips))
        return segments

    @property
    def num_strips(self) -> int:
        """Number of strips (rows of windows)."""
        return len(self.rows)

    @property
    def num_windows(self) -> int:
        """Number of windows in the whole grid."""
        return len(self.rows) * len(self.cols)

    def strip_stop(self, strip: int) -> int:
        """Row after the last raster row of a strip (``height`` for a padded strip)."""
        return min(self.rows[strip] + self.patch, self.height)

    def col_stop(self, col: int) -> int:
        """Column after the last raster column of window column ``col``."""
        return min(self.cols[col] + self.patch, self.width)

    def strip_segments(self, strip: int) -> list[Segment]:
        """The segments a strip covers, top to bottom."""
        return [s for s in self.segments if strip in s.strips]

    def window_bounds(self, strip: int, col: int) -> tuple[int, int, int, int]:
        """Pixel bounds ``(row, col, row + patch, col + patch)`` of a window (may pass the edge)."""
        row, c = self.rows[strip], self.cols[col]
        return row, c, row + self.patch, c + self.patch


def blend_ramp(patch: int, overlap: int) -> np.ndarray:
    """The 1-D blending weight, (patch,) float32 in (0, 1].

    ``sin²(π/2 · (t + ½) / overlap)`` over the first ``overlap`` pixels, 1 in the
    middle, mirrored at the end; all ones when ``overlap`` is 0.
    """
    ramp = np.ones(patch, dtype=np.float64)
    margin = min(overlap, patch // 2)
    if margin > 0:
        t = (np.arange(margin) + 0.5) / margin
        rise = np.sin(0.5 * math.pi * t) ** 2
        ramp[:margin] = rise
        ramp[patch - margin :] = np.minimum(ramp[patch - margin :], rise[::-1])
    return ramp.astype(np.float32)


def blend_weights(patch: int, overlap: int) -> np.ndarray:
    """The 2-D blending weight of a window, (patch, patch) float32 in (0, 1]."""
    ramp = blend_ramp(patch, overlap)
    return np.outer(ramp, ramp)


def finalize_sums(sums: Tensor, *, probabilities: bool) -> tuple[Tensor, Tensor]:
    """Turn weighted probability sums into output pixels (on the sums' device).

    Every window adds ``w · valid · p`` with ``Σ_c p_c = 1``, so the sum over
    classes is the total weight, 0 exactly where no valid pixel was predicted.

    Args:
        sums: (K, H, W) float32 weighted sums.
        probabilities: return probabilities instead of classes.

    Returns:
        ``(values, valid)``: (H, W) int64 classes (argmax) or (K, H, W) float32
        probabilities, and the (H, W) bool mask of pixels that have a prediction.
    """
    total = sums.sum(dim=0)
    valid = total > 0
    if not probabilities:
        return sums.argmax(dim=0), valid
    return sums / torch.where(valid, total, torch.ones_like(total))[None], valid


class ColumnAccumulator:
    """Weighted sums of one strip, for a moving range of columns only.

    Windows are added left to right; :meth:`flush` hands back the columns no
    later window will touch and forgets them, so memory is
    ``K × rows × (a few windows)`` whatever the raster's width. The sums live
    on the model's device: only finished columns travel to the host.

    Args:
        channels: classes K.
        rows: rows of the strip inside the raster.
        device: where the sums are kept.
    """

    def __init__(self, channels: int, rows: int, device: torch.device | str = "cpu") -> None:
        self.channels = channels
        self.rows = rows
        self.start = 0  # raster column of self.sums[..., 0]
        self.sums = torch.zeros((channels, rows, 0), dtype=torch.float32, device=device)

    def _grow(self, width: int) -> None:
        if width > self.sums.shape[-1]:
            grown = self.sums.new_zeros((self.channels, self.rows, width))
            grown[..., : self.sums.shape[-1]] = self.sums
            self.sums = grown

    def add(self, col: int, values: Tensor) -> None:
        """Add (K, rows, w) weighted values whose first column is raster column ``col``."""
        if col < self.start:
            raise ValueError(
                f"column {col} was already flushed (accumulator starts at {self.start})"
            )
        stop = col - self.start + values.shape[-1]
        self._grow(stop)
        self.sums[..., col - self.start : stop] += values

    def flush(self, until: int) -> tuple[int, Tensor]:
        """Remove and return the columns before raster column ``until``.

        Returns:
            ``(first column, (K, rows, until - first) float32 sums)``; columns
            never added are zeros.
        """
        width = max(0, until - self.start)
        self._grow(width)
        out = self.sums[..., :width].clone()
        # Keep the tail in a fresh tensor so the flushed part's memory is released.
        self.sums = self.sums[..., width:].clone()
        first, self.start = self.start, max(until, self.start)
        return first, out


def flush_limit(next_col: int | None, width: int) -> int:
    """Up to which column a strip's sums are final once the windows before ``next_col`` are in.

    ``width`` at the strip's end; otherwise the next window's first column,
    rounded down to a tile boundary so part files are written tile by tile.
    """
    if next_col is None:
        return width
    return (next_col // TILE) * TILE
