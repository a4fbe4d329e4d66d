"""Per-patch prediction files: ``PRED_<id>.tif`` (classes) and ``PROB_<id>.tif`` (probabilities).

A prediction is written as a single-band uint8 GeoTIFF (LZW) carrying the
aerial patch's CRS and transform, an embedded colour table of the class palette
(so GIS tools show the classes in their usual colours) and a GeoTIFF metadata
tag ``FLAIR2_VALUES`` saying whether the pixel values are model indices (0–12,
what the reference writes) or label values (1–13), so the evaluator reads any
file the right way.

Every file goes through :func:`flair2.io.atomic_path` and is read back before it
takes its final name (GDAL does not raise on some write errors, such as a full
disk): a crash or a failed write leaves nothing under the final name, and a
re-run can trust :func:`is_done`.

:class:`AsyncWriter` moves the writing to a background thread so the model does
not wait for LZW compression and disk.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine

from flair2.classes import CLASSES, PALETTE, colormap, model_to_labels
from flair2.formats import (
    PROBABILITY_SCALE,
    VALUES_LABELS,
    VALUES_MODEL,
    VALUES_TAG,
    Values,
    prediction_name,
    probability_name,
)
from flair2.io import atomic_path
from flair2.rasters import check_raster_written

log = logging.getLogger(__name__)


def prediction_path(out_dir: str | os.PathLike[str], patch_id: str | int) -> Path:
    """Path of the class prediction of a patch: ``<out_dir>/PRED_<id>.tif``.

    Args:
        out_dir: the predictions folder.
        patch_id: the patch id (``077413``; an ``IMG_077413.tif`` name is accepted too).
    """
    return Path(out_dir) / prediction_name(patch_id)


def probability_path(out_dir: str | os.PathLike[str], patch_id: str | int) -> Path:
    """Path of the class probabilities of a patch: ``<out_dir>/PROB_<id>.tif``."""
    return Path(out_dir) / probability_name(patch_id)


def _probability_path_for(pred_path: Path) -> Path:
    """The PROB file that sits beside a given PRED file."""
    return pred_path.with_name(probability_name(pred_path.name))


def is_done(
    out_dir: str | os.PathLike[str], patch_id: str | int, with_probabilities: bool = False
) -> bool:
    """Whether a patch's outputs already exist, so a re-run can skip it.

    Files are written atomically, so an existing file is a complete one.

    Args:
        out_dir: the predictions folder.
        patch_id: the patch id.
        with_probabilities: also require ``PROB_<id>.tif``.
    """
    if not prediction_path(out_dir, patch_id).is_file():
        return False
    return not with_probabilities or probability_path(out_dir, patch_id).is_file()


def _check_classes(classes: np.ndarray) -> np.ndarray:
    """Validate the class map and return it as uint8 (H, W)."""
    classes = np.asarray(classes)
    if classes.ndim != 2:
        raise ValueError(f"classes must be a (H, W) array, got shape {classes.shape}")
    if not np.issubdtype(classes.dtype, np.integer):
        raise ValueError(f"classes must hold integer class indices, got dtype {classes.dtype}")
    if classes.size:
        low, high = int(classes.min()), int(classes.max())
        if low < 0 or high >= len(PALETTE):
            raise ValueError(
                f"classes must be model indices 0..{len(PALETTE) - 1}, found values {low}..{high}"
            )
    return classes.astype(np.uint8, copy=False)


def _check_probabilities(probabilities: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Validate (K, H, W) probabilities and scale them to uint8."""
    probabilities = np.asarray(probabilities)
    if probabilities.ndim != 3 or probabilities.shape[1:] != shape:
        raise ValueError(
            f"probabilities must be (K, {shape[0]}, {shape[1]}), got shape {probabilities.shape}"
        )
    scaled = np.rint(np.clip(probabilities.astype(np.float32), 0.0, 1.0) * PROBABILITY_SCALE)
    return scaled.astype(np.uint8)


def _profile(
    count: int, height: int, width: int, crs: CRS | str | None, transform: Affine | None
) -> dict[str, Any]:
    """The rasterio creation profile shared by PRED and PROB files."""
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "count": count,
        "height": height,
        "width": width,
        "dtype": "uint8",
        "compress": "lzw",
    }
    if crs is not None:
        profile["crs"] = crs
    if transform is not None:
        profile["transform"] = transform
    # GDAL only tiles when both sizes are multiples of 16; 512-px patches are, toy ones may not be.
    if height % 16 == 0 and width % 16 == 0 and height >= 256 and width >= 256:
        profile.update(tiled=True, blockxsize=256, blockysize=256)
    return profile


def write_prediction(
    path: str | os.PathLike[str],
    classes: np.ndarray,
    *,
    crs: CRS | str | None,
    transform: Affine | None,
    values: Values = "model",
    probabilities: np.ndarray | None = None,
) -> None:
    """Write a patch's predicted classes (and optionally probabilities) as GeoTIFFs.

    ``PRED_<id>.tif``: 1 band uint8, LZW, the given georeferencing, the class
    palette as colour table, and the tag ``FLAIR2_VALUES=model|labels``. With
    ``probabilities``, ``PROB_<id>.tif`` beside it: K bands uint8 holding
    ``round(p · 255)``, LZW, the same georeferencing, band descriptions = class names.

    Args:
        path: the ``PRED_<id>.tif`` path (see :func:`prediction_path`).
        classes: (H, W) integer model indices 0..K-1.
        crs: CRS of the aerial patch (None for none).
        transform: affine transform of the aerial patch (None for none).
        values: ``"model"`` writes 0..K-1, ``"labels"`` writes the label values 1..K.
        probabilities: (K, H, W) float class probabilities in [0, 1], or None.

    Raises:
        ValueError: on a bad ``values`` or an array of the wrong shape, type or range.
    """
    if values not in (VALUES_MODEL, VALUES_LABELS):
        raise ValueError(f"values must be 'model' or 'labels', got {values!r}")
    classes = _check_classes(classes)
    height, width = classes.shape
    prob_u8 = None if probabilities is None else _check_probabilities(probabilities, classes.shape)
    out = model_to_labels(classes) if values == VALUES_LABELS else classes
    path = Path(path)

    # PROB first: when PRED exists, everything asked for this patch was written.
    if prob_u8 is not None:
        num_bands = prob_u8.shape[0]
        with (
            atomic_path(
                _probability_path_for(path), verify=lambda tmp: check_raster_written(tmp, prob_u8)
            ) as tmp,
            rasterio.open(tmp, "w", **_profile(num_bands, height, width, crs, transform)) as dst,
        ):
            dst.write(prob_u8)
            dst.update_tags(FLAIR2_PROBABILITY_SCALE=str(PROBABILITY_SCALE))
            for band in range(num_bands):
                name = CLASSES[band] if band < len(CLASSES) else f"class {band}"
                dst.set_band_description(band + 1, name)

    with (
        atomic_path(path, verify=lambda tmp: check_raster_written(tmp, out)) as tmp,
        rasterio.open(
            tmp, "w", **_profile(1, height, width, crs, transform), photometric="palette"
        ) as dst,
    ):
        # The colour table goes in before the pixels: GDAL cannot change the
        # photometric interpretation of a TIFF once data is written.
        dst.write_colormap(1, colormap(values, len(PALETTE)))
        dst.write(out, 1)
        dst.update_tags(**{VALUES_TAG: values})


class AsyncWriter:
    """Run write jobs on one background thread behind a bounded queue.

    The producer (the prediction loop) only blocks when ``maxsize`` jobs are
    already waiting, which bounds memory. The first exception raised by a job
    stops the remaining jobs and is re-raised in the caller by the next
    :meth:`submit` or by :meth:`close`.

    Example::

        with AsyncWriter() as writer:
            for batch in loader:
                writer.submit(write_prediction, path, classes, crs=crs, transform=tr)
    """

    _STOP = object()

    def __init__(self, maxsize: int = 8) -> None:
        """Start the worker thread.

        Args:
            maxsize: the most jobs waiting at once.
        """
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=maxsize)
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="flair2-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is self._STOP:
                    return
                # After a failure keep draining the queue so a blocked submit() wakes up.
                if self._error is None:
                    fn, args, kwargs = job
                    fn(*args, **kwargs)
            except BaseException as exc:  # re-raised in the caller's thread
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise self._error

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Queue ``fn(*args, **kwargs)``; blocks only while the queue is full.

        Raises:
            RuntimeError: when the writer is closed.
            BaseException: the first exception an earlier job raised.
        """
        if self._closed:
            raise RuntimeError("AsyncWriter is closed")
        self._raise_if_failed()
        self._queue.put((fn, args, kwargs))

    def close(self) -> None:
        """Wait for every queued job, stop the thread, re-raise the first job error."""
        if not self._closed:
            self._closed = True
            self._queue.put(self._STOP)
            self._thread.join()
        self._raise_if_failed()

    def __enter__(self) -> AsyncWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
            return
        # The body failed: still finish and stop the thread, but let the body's error win.
        try:
            self.close()
        except BaseException as worker_exc:
            log.error("a background write also failed: %s", worker_exc)
