"""Reading rasters: aerial bands, label masks and prediction files.

One reader for each kind of file that more than one stage opens: the patch view,
the evaluation and the previews all read through here, so a file is understood
(bands, value conventions, errors) the same way everywhere.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError

from flair2.classes import NUM_CLASSES, labels_to_model
from flair2.errors import DataError
from flair2.formats import VALUES_LABELS, VALUES_MODEL, VALUES_TAG, Values


def read_bands(path: str | os.PathLike[str], bands: Sequence[int] | None = None) -> np.ndarray:
    """Read bands of a raster as an (H, W, C) array (C = ``len(bands)``, all bands by default).

    Args:
        path: a GeoTIFF, e.g. an aerial ``IMG_<id>.tif`` (5 bands: R, G, B, NIR, elevation).
        bands: 0-based band indices, in the order wanted.

    Raises:
        DataError: the file cannot be read or a band index is out of range.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with rasterio.open(path) as src:
                wanted = list(range(src.count)) if bands is None else [int(b) for b in bands]
                bad = [b for b in wanted if not 0 <= b < src.count]
                if bad:
                    raise DataError(
                        f"{path}: band index {bad[0]} out of range, the file has {src.count} "
                        f"band(s) (indices 0..{src.count - 1})"
                    )
                data = src.read([b + 1 for b in wanted])
        except RasterioIOError as exc:
            raise DataError(f"cannot read {path}: {exc}") from None
    return np.moveaxis(data, 0, -1)


def read_single_band(path: Path) -> tuple[np.ndarray, dict[str, str]]:
    """Read band 1 and the dataset tags of a GeoTIFF."""
    # The reference writes plain TIFFs without georeferencing: not a problem for scoring.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            with rasterio.open(path) as src:
                if src.count != 1:
                    raise DataError(f"{path}: expected 1 band, found {src.count}")
                return src.read(1), src.tags()
        except RasterioIOError as exc:
            raise DataError(f"cannot read {path}: {exc}") from exc


def prediction_indices(
    pred: np.ndarray, tags: dict[str, str], path: Path, *, untagged: Values = "model"
) -> np.ndarray:
    """Convert a prediction to model indices according to its ``FLAIR2_VALUES`` tag.

    Args:
        pred: the raw values.
        tags: the file's dataset tags.
        path: the file, named in errors.
        untagged: how to read a file without the tag (``model``: 0–12, ``labels``: 1–13);
            :mod:`flair2.evaluation.values` decides it for a folder.
    """
    convention = tags.get(VALUES_TAG, untagged).strip().lower()
    if convention == VALUES_MODEL:
        return pred
    if convention == VALUES_LABELS:
        return pred.astype(np.int16) - 1
    raise DataError(f"{path}: tag {VALUES_TAG}={convention!r}; expected 'model' or 'labels'")


def read_prediction(path: str | os.PathLike[str], *, untagged: Values = "model") -> np.ndarray:
    """Read a ``PRED_<id>.tif`` as model indices, whatever its ``FLAIR2_VALUES`` convention.

    Args:
        path: the file.
        untagged: how to read it when it has no tag (``model`` or ``labels``).

    Returns:
        (H, W) integer array of model indices (0..K−1 for a valid file).

    Raises:
        DataError: the file is unreadable, has several bands or an unknown convention tag.
    """
    pred, tags = read_single_band(Path(path))
    return prediction_indices(pred, tags, Path(path), untagged=untagged)


def read_mask(path: str | os.PathLike[str], num_classes: int = NUM_CLASSES) -> np.ndarray:
    """Read a ``MSK_<id>.tif`` (label values 1–19) as model indices 0..K−1.

    Raises:
        DataError: the file is unreadable, has several bands or holds a value below 1.
    """
    truth, _ = read_single_band(Path(path))
    check_mask_values(truth, path)
    return labels_to_model(truth, num_classes)


def check_mask_values(truth: np.ndarray, path: str | os.PathLike[str]) -> None:
    """Raise DataError when a mask holds a value below 1 (label values are 1–19)."""
    if truth.size and truth.min() < 1:
        raise DataError(f"{path}: label value {int(truth.min())} found; masks hold 1–19")


def check_raster_written(path: str | os.PathLike[str], expected: np.ndarray) -> None:
    """Read a raster just written back and compare it with the pixels given to the writer.

    GDAL reports some write errors (a full disk) only as log messages and
    leaves a short file behind: this is what proves a file complete before it
    takes its final name (see :func:`flair2.io.atomic_path`'s ``verify``).

    Args:
        path: the file written.
        expected: (H, W) or (C, H, W) pixels that were written.

    Raises:
        ValueError: the file does not hold them.
        OSError: it cannot be read back.
    """
    want = expected[np.newaxis] if expected.ndim == 2 else expected
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            got = src.read()
    if got.shape != want.shape or not np.array_equal(got, want):
        raise ValueError("the file read back differs from the pixels written (an incomplete write)")


def check_raster_readable(path: str | os.PathLike[str]) -> None:
    """Read every block of a raster just written, one block at a time (bounded memory).

    For files too large to keep a copy of what was written (detection parts and
    outputs): a block GDAL failed to write cannot be decoded.

    Raises:
        OSError: it cannot be opened or a block cannot be read.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            for _, window in src.block_windows(1):
                src.read(window=window)
