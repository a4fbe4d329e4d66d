"""Training augmentation of the Sentinel-2 series: random date dropout and date jitter.

A patch's series has one image per date the model sees (an acquisition, or a
period mean with ``average_month``). In training:

- **date dropout** (``sat_date_dropout``) drops each date with probability p,
  independently; when every date would go, one date drawn uniformly stays, so a
  series is never empty. The model learns not to rely on any single date
  (clouds remove different dates in every zone and year);
- **date jitter** (``sat_date_jitter``) adds to each date's day position an
  integer drawn uniformly in [−J, J], so the model does not tie a class to an
  exact day of the year (acquisition and growing calendars shift from year to year).

Randomness comes from ``torch``'s generator like the flips
(:mod:`flair2.data.augment`): reproducible, and seeded per DataLoader worker by
``seed_everything(workers=True)``. With both settings at 0 nothing is drawn, so
the random stream (and every other augmentation) is exactly as without them.
Validation and prediction datasets never augment.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


def date_keep_mask(count: int, dropout: float, generator: torch.Generator | None = None) -> Tensor:
    """Which of ``count`` dates to keep: each dropped with probability ``dropout``, one kept.

    Args:
        count: number of dates, >= 1.
        dropout: drop probability in [0, 1).
        generator: optional random generator (default: torch's global one).

    Returns:
        bool (count,), at least one True.
    """
    if count < 1:
        raise ValueError(f"a Sentinel-2 series needs at least one date, got {count}")
    keep = torch.rand(count, generator=generator) >= dropout
    if not bool(keep.any()):
        keep[int(torch.randint(count, (1,), generator=generator))] = True
    return keep


def jitter_positions(
    positions: Tensor, max_days: int, generator: torch.Generator | None = None
) -> Tensor:
    """``positions`` (T,) int64 plus independent uniform integers in [−max_days, max_days]."""
    shift = torch.randint(-max_days, max_days + 1, positions.shape, generator=generator)
    return positions + shift.to(positions.dtype)


def augment_dates(
    sample: dict[str, Any],
    dropout: float = 0.0,
    jitter: int = 0,
    generator: torch.Generator | None = None,
) -> dict[str, Any]:
    """Drop dates of a sample's series at random, then jitter the positions of the rest.

    Args:
        sample: holds ``sen2`` (T, C, S, S) and ``positions`` (T,); a sample
            without ``sen2`` (the aerial-only model) is returned as is.
        dropout: probability of dropping each date, in [0, 1).
        jitter: largest shift in days, >= 0.
        generator: optional random generator (default: torch's global one).

    Returns:
        A new dict with ``sen2`` (T', C, S, S) and ``positions`` (T',), 1 <= T' <= T
        (the same dict when both settings are 0).
    """
    if sample.get("sen2") is None or (dropout <= 0.0 and jitter <= 0):
        return sample
    series: Tensor = sample["sen2"]
    positions: Tensor = sample["positions"]
    if dropout > 0.0:
        keep = date_keep_mask(len(positions), dropout, generator)
        series, positions = series[keep], positions[keep]
    if jitter > 0:
        positions = jitter_positions(positions, jitter, generator)
    out = dict(sample)
    out["sen2"], out["positions"] = series, positions
    return out
