"""Sentinel-2 period means: a series reduced to one mean image per month or half-month.

The reference averages the dates of each calendar month (``average_month``) and
places the mean on the 15th. ``average_period: half_month`` splits each month in
two: days 1–15, placed on the 8th, and days 16 to the end, placed on the 23rd
(the middles of the two halves, to a day), which keeps twice as many steps of
the season's course (about 24 a year instead of 12).

Positions, as for single dates (:func:`flair2.data.sentinel.operations.day_positions`), are
the reference date minus the period's date, the year replaced by the reference
year.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import numpy as np

from flair2.config import Period

#: Day of the month each period's mean is placed on: month → 15th, halves → 8th, 23rd.
_PERIOD_DAYS: dict[str, tuple[int, ...]] = {"month": (15,), "half_month": (8, 23)}


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def in_year(date: datetime.date, year: int) -> datetime.date:
    """``date`` with its year replaced by ``year``."""
    if date.month == 2 and date.day == 29 and not _is_leap(year):
        # 29 February has no counterpart in a non-leap reference year: use the
        # 28th (one day off for that single date) rather than fail.
        return datetime.date(year, 2, 28)
    return date.replace(year=year)


def period_keys(dates: Sequence[datetime.date], period: Period = "month") -> np.ndarray:
    """Chronological index of each date's period, int64 (T,).

    ``month``: ``year * 12 + month - 1``; ``half_month``: twice that, plus 1 for
    days 16 onwards.
    """
    if period not in _PERIOD_DAYS:
        raise ValueError(f"unknown averaging period {period!r}")
    months = np.array([d.year * 12 + d.month - 1 for d in dates], dtype=np.int64)
    if period == "month":
        return months
    second_half = np.array([d.day > 15 for d in dates], dtype=np.int64)
    return months * 2 + second_half


def period_date(key: int, period: Period = "month") -> datetime.date:
    """The date a period's mean is placed on (see :data:`_PERIOD_DAYS`)."""
    days = _PERIOD_DAYS[period]
    month_key, half = divmod(int(key), len(days))
    return datetime.date(month_key // 12, month_key % 12 + 1, days[half])


def period_means(
    series: np.ndarray,
    keys: np.ndarray,
    keep: np.ndarray | None,
    ref: datetime.date,
    period: Period = "month",
) -> tuple[np.ndarray, np.ndarray]:
    """Period means given the period key of each date; see :func:`period_average`."""
    t = series.shape[0]
    columns = np.arange(t) if keep is None else np.flatnonzero(keep)
    order = np.argsort(keys[columns], kind="stable")
    columns = columns[order]
    sorted_keys = keys[columns]
    if columns.size == 0:
        return (
            np.zeros((0, *series.shape[1:]), dtype=np.float32),
            np.zeros(0, dtype=np.int64),
        )
    # Products are normally listed chronologically with nothing dropped: then the
    # series is already grouped by period and needs no gathering copy.
    ordered = series if np.array_equal(columns, np.arange(t)) else series[columns]
    flat = ordered.reshape(columns.size, -1)
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    ends = np.r_[starts[1:], columns.size]
    groups = sorted_keys[starts]
    # Sums of at most 256 uint16 (or narrower integer) values stay below 2**24, so a
    # float32 accumulator is exact for them and about twice as fast as float64;
    # anything else is accumulated in float64.
    exact32 = np.issubdtype(series.dtype, np.integer) and series.dtype.itemsize <= 2
    exact32 = exact32 and int((ends - starts).max(initial=0)) <= 256
    acc_dtype = np.float32 if exact32 else np.float64
    sums = np.empty((groups.size, flat.shape[1]), dtype=acc_dtype)
    for i, (s, e) in enumerate(zip(starts, ends)):  # at most 24 periods a year
        np.sum(flat[s:e], axis=0, dtype=acc_dtype, out=sums[i])
    sums /= (ends - starts).astype(acc_dtype)[:, None]
    means = sums.astype(np.float32, copy=False).reshape((groups.size, *series.shape[1:]))
    positions = np.array(
        [(ref - in_year(period_date(k, period), ref.year)).days for k in groups],
        dtype=np.int64,
    )
    return means, positions


def period_average(
    series: np.ndarray,
    dates: Sequence[datetime.date],
    ref_year: int,
    ref_month: int,
    ref_day: int,
    keep: np.ndarray | None = None,
    period: Period = "month",
) -> tuple[np.ndarray, np.ndarray]:
    """Mean image of each month (or half-month) present in a series.

    Dates are grouped by period of acquisition and the groups ordered
    chronologically. Each period's position is the reference date minus the
    period's date (the 15th of a month; the 8th or the 23rd for its halves), the
    year replaced by ``ref_year`` (as the reference). Integer series up to 16 bits
    are summed in float32, which is exact for them (sums stay below 2**24); other
    dtypes in float64. The means are returned as float32.

    Args:
        series: (T, C, S, S), any numeric dtype.
        dates: acquisition dates (T,).
        ref_year: year of the reference date; it also replaces each period's year.
        ref_month: month of the reference date.
        ref_day: day of the month of the reference date.
        keep: optional bool (T,): only these dates are averaged.
        period: ``month`` or ``half_month``.

    Returns:
        (means float32 (M, C, S, S), positions int64 (M,)), M the number of periods
        with at least one kept date.
    """
    if len(dates) != series.shape[0]:
        raise ValueError(f"{len(dates)} dates for a series of {series.shape[0]} images")
    ref = datetime.date(ref_year, ref_month, ref_day)
    return period_means(series, period_keys(dates, period), keep, ref, period)


def monthly_average(
    series: np.ndarray,
    dates: Sequence[datetime.date],
    ref_year: int,
    ref_month: int,
    ref_day: int,
    keep: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`period_average` by calendar month (the reference's ``average_month``)."""
    return period_average(series, dates, ref_year, ref_month, ref_day, keep, "month")
