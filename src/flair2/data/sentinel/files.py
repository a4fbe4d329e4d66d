"""The Sentinel-2 files of a zone: the products list (dates) and the memory-mapped arrays.

Every zone has one Sentinel-2 "super-area": ``*_data.npy`` (T, 10, H, W) uint16,
``*_masks.npy`` (T, 2, H, W) uint8 cloud and snow probabilities, and
``*_products.txt``, one product name per date.
"""

from __future__ import annotations

import datetime
import functools
import os
from pathlib import Path

import numpy as np

from flair2.data.records import SentinelFiles
from flair2.errors import DataError
from flair2.formats import product_date

# ---------------------------------------------------------------------------
# Products and day positions


def read_products(path: str | os.PathLike[str]) -> tuple[datetime.date, ...]:
    """Acquisition dates of a zone's ``*_products.txt``, one per line, in file order.

    The date is read from characters 11–18 (YYYYMMDD) of each product name, e.g.
    ``S2A_MSIL2A_20210415T105021_N0300_R051_T31UDP_20210415T135122`` → 2021-04-15.
    Blank lines at the end of the file are ignored. The result is cached per
    resolved path: all patches of a zone share the file.

    Args:
        path: the products file.

    Returns:
        One date per line.

    Raises:
        DataError: the file is missing or unreadable, or a line holds no valid date
            (the message names the file, the line number and the line).
    """
    return _read_products_cached(str(Path(path).resolve()))


@functools.lru_cache(maxsize=4096)
def _read_products_cached(path: str) -> tuple[datetime.date, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(
            f"{path}: Sentinel-2 products file not found; re-extract the zone's sen/ folder"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"{path}: cannot read the Sentinel-2 products file ({exc}); re-extract it"
        ) from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    dates = []
    for number, line in enumerate(lines, start=1):
        try:
            date = product_date(line)
        except ValueError:
            raise DataError(
                f"{path}, line {number}: {line!r} is not a Sentinel-2 product name with the "
                "acquisition date YYYYMMDD at characters 11-18 "
                "(e.g. S2A_MSIL2A_20210415T105021_...); fix the line or re-extract the file"
            ) from None
        dates.append(date)
    return tuple(dates)


# ---------------------------------------------------------------------------
# Arrays on disk


def load_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """Memory-map a numeric ``.npy`` array, turning load failures into DataError."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: not found; re-extract the zone's Sentinel-2 files") from None
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(
            f"{path} is not a readable .npy array ({exc}): re-extract it or remove the patch"
        ) from None
    if not isinstance(array, np.ndarray) or array.dtype.kind not in "uif":
        kind = type(array).__name__ if not isinstance(array, np.ndarray) else array.dtype
        raise DataError(
            f"{path} is not a readable .npy array (expected a numeric array, got {kind}): "
            "re-extract it or remove the patch"
        )
    return array


# ---------------------------------------------------------------------------
# Agreement of a zone's three files


def zone_shape_problems(
    files: SentinelFiles,
    data_shape: tuple[int, ...],
    masks_shape: tuple[int, ...] | None,
    dates: int | None,
) -> list[tuple[Path, str]]:
    """What makes a zone's data, masks and products disagree: one (file, message) each.

    The one rule training (:class:`~flair2.data.sentinel.processor.SentinelProcessor`)
    and ``flair2 check-data`` apply: data (T, C, H, W) with T >= 1, masks
    (T, 2, H, W), one product line per date.

    Args:
        files: the zone's files, named in the messages.
        data_shape: the data array's shape.
        masks_shape: the masks array's shape (None: not checked).
        dates: the number of product lines (None: not checked).

    Returns:
        The problems, in file order; empty when the files fit together.
    """
    if len(data_shape) != 4:
        return [(files.data, f"expected a (T, C, H, W) Sentinel-2 array, got shape {data_shape}")]
    t, _, height, width = data_shape
    problems: list[tuple[Path, str]] = []
    if t == 0:
        problems.append((files.data, "the Sentinel-2 series holds no date"))
    expected = (t, 2, height, width)
    if masks_shape is not None and tuple(masks_shape) != expected:
        problems.append(
            (
                files.masks,
                f"masks shape {tuple(masks_shape)} does not match data shape {data_shape} of "
                f"{files.data.name} (expected {expected})",
            )
        )
    if dates is not None and dates != t:
        problems.append(
            (files.products, f"{dates} products listed but {files.data.name} holds {t} dates")
        )
    return problems
