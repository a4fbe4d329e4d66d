"""Reading a whole-area aerial raster window by window, and the strip-chunk Dataset.

The raster is any GDAL raster (GeoTIFF, VRT…) of uint8 bands; ``aerial_bands``
picks the model's bands (1-based). Its pixel size should be the model's
(``aerial_resolution``, 0.2 m); otherwise it is read through a ``WarpedVRT``
resampled (bilinear) to the model's pixel size, in the same CRS and with the
same top-left corner, and the output follows that grid.

Nodata: GDAL's dataset mask decides: the raster's internal mask or alpha band,
else its nodata value (a pixel is nodata when *all* bands equal it); a raster
with none of these is valid everywhere. Nodata pixels get no prediction and
windows holding only nodata are not run through the model at all.

A Dataset item is a *chunk*: up to ``batch_size`` consecutive windows of one
strip, read with one windowed read. The GDAL dataset is opened lazily in each
process (DataLoader workers included), so nothing of it is pickled.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, overload

import numpy as np
import rasterio
import torch
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.env import set_gdal_config
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from torch.utils.data import Dataset

from flair2.data.batch import collate
from flair2.detection.grid import WindowGrid
from flair2.errors import ConfigError, DataError

log = logging.getLogger(__name__)

#: Relative difference of pixel size above which the raster is resampled.
RESOLUTION_TOLERANCE = 0.01
#: GDAL's block cache while detecting, bytes: GDAL's default (5 % of the RAM) would keep
#: every block read or written until full, so memory would grow with the raster.
GDAL_CACHE_BYTES = 128 * 2**20
#: Length of the metadata vector (zeros when the model takes none).
METADATA_SIZE = 45


class WindowSentinel(Protocol):
    """What the chunk dataset needs of a Sentinel-2 source (:mod:`flair2.detection.sentinel`)."""

    def strip(
        self, bounds_list: list[tuple[float, float, float, float]], crs: CRS | None
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per window (left, bottom, right, top in ``crs``): its series and positions."""
        ...


class WindowMetadata(Protocol):
    """What the chunk dataset needs of an aerial-metadata source.

    Called with the window centre (x, y) in the raster's CRS, its pixels
    (C, P, P) uint8 and validity (P, P); returns the (45,) encoding.
    """

    def __call__(self, x: float, y: float, pixels: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The (45,) float32 metadata encoding of the window centred on (x, y)."""
        ...


@dataclass(frozen=True)
class AerialInfo:
    """The aerial raster as the detection sees it (after any resampling).

    Attributes:
        path: the raster file.
        bands: 1-based band indexes fed to the model, in order.
        width, height: size of the grid predicted (the resampled one, if any).
        transform, crs: georeferencing of that grid.
        resolution: the model's pixel size when resampled, else None.
        has_mask: whether the raster has a mask, alpha band or nodata value.
    """

    path: Path
    bands: tuple[int, ...]
    width: int
    height: int
    transform: Affine
    crs: CRS | None
    resolution: float | None
    has_mask: bool


def _open(path: Path) -> rasterio.io.DatasetReader:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioError as exc:
        raise DataError(f"aerial raster {path}: cannot be opened ({exc})") from None


def inspect_aerial(
    path: str | os.PathLike[str],
    bands: list[int] | None,
    num_bands: int,
    resolution: float,
) -> AerialInfo:
    """Check an aerial raster against the model and describe the grid to predict.

    Args:
        path: the raster (GeoTIFF, VRT…).
        bands: 1-based band indexes to use, or None for bands 1..``num_bands``.
        num_bands: bands the model takes (``num_channels_aerial``).
        resolution: the model's pixel size in metres (``aerial_resolution``).

    Raises:
        ConfigError: ``bands`` does not match the model.
        DataError: unreadable, too few bands, not uint8, or a rotated grid
            (the message names the file and the key to change).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"aerial raster {path}: not found (config key 'aerial')")
    with _open(path) as src:
        chosen = tuple(bands) if bands is not None else tuple(range(1, num_bands + 1))
        if len(chosen) != num_bands:
            raise ConfigError(
                f"config key 'aerial_bands': {len(chosen)} band(s) given, the model takes "
                f"{num_bands} (num_channels_aerial)"
            )
        bad = [b for b in chosen if not 1 <= b <= src.count]
        if bad:
            raise DataError(
                f"aerial raster {path}: has {src.count} band(s), band(s) {bad} requested; "
                "set config key 'aerial_bands' to the 1-based bands R, G, B, NIR, elevation"
            )
        dtypes = {src.dtypes[b - 1] for b in chosen}
        if dtypes != {"uint8"}:
            raise DataError(
                f"aerial raster {path}: bands are {', '.join(sorted(dtypes))}, expected uint8 "
                "like the training patches; convert it (gdal_translate -ot Byte -scale)"
            )
        t = src.transform
        if t.b != 0 or t.d != 0:
            raise DataError(
                f"aerial raster {path}: rotated or sheared grid; warp it to a north-up grid "
                "first (gdalwarp)"
            )
        has_mask = any(flags != [MaskFlags.all_valid] for flags in src.mask_flag_enums)
        if src.crs is None:
            log.warning("aerial raster %s has no CRS: the output will have none either", path)
        xres, yres = abs(t.a), abs(t.e)
        if src.crs is None or (
            abs(xres - resolution) <= RESOLUTION_TOLERANCE * resolution
            and abs(yres - resolution) <= RESOLUTION_TOLERANCE * resolution
        ):
            return AerialInfo(path, chosen, src.width, src.height, t, src.crs, None, has_mask)
        width = max(1, round(src.width * xres / resolution))
        height = max(1, round(src.height * yres / resolution))
        transform = Affine(
            math.copysign(resolution, t.a), 0.0, t.c, 0.0, math.copysign(resolution, t.e), t.f
        )
        log.warning(
            "aerial raster %s has %.4g × %.4g m pixels, the model %.4g m: resampling it "
            "(bilinear) to a %d × %d grid; the output follows that grid",
            path,
            xres,
            yres,
            resolution,
            width,
            height,
        )
        return AerialInfo(path, chosen, width, height, transform, src.crs, resolution, has_mask)


class AerialReader:
    """Windowed reads of the aerial raster (resampled when needed), opened per process."""

    def __init__(self, info: AerialInfo) -> None:
        self.info = info
        self._creator = os.getpid()
        self._pid: int | None = None
        self._src: Any = None
        self._vrt: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pid": None, "_src": None, "_vrt": None}

    def _dataset(self) -> Any:
        if self._pid != os.getpid():
            if self._creator != os.getpid():
                # A DataLoader worker: bound its own block cache too (the main
                # process runs inside detect's rasterio.Env).
                set_gdal_config("GDAL_CACHEMAX", GDAL_CACHE_BYTES)
            self._src = _open(self.info.path)
            self._vrt = None
            if self.info.resolution is not None:
                self._vrt = WarpedVRT(
                    self._src,
                    crs=self.info.crs,
                    transform=self.info.transform,
                    width=self.info.width,
                    height=self.info.height,
                    resampling=Resampling.bilinear,
                )
            self._pid = os.getpid()
        return self._vrt if self._vrt is not None else self._src

    def close(self) -> None:
        """Close this process's datasets; the next read reopens them."""
        for ds in (self._vrt, self._src):
            if ds is not None:
                ds.close()
        self._pid = self._src = self._vrt = None

    def read(self, row: int, col: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Pixels and validity of a window inside the raster.

        Returns:
            ``(pixels, valid)``: (C, height, width) uint8 and (height, width) bool.

        Raises:
            DataError: a read error (a damaged block), naming the file.
        """
        ds = self._dataset()
        window = Window(col, row, width, height)
        try:
            pixels = ds.read(indexes=list(self.info.bands), window=window)
            if self.info.has_mask:
                valid = ds.dataset_mask(window=window) > 0
            else:
                valid = np.ones((height, width), dtype=bool)
        except RasterioError as exc:
            raise DataError(
                f"aerial raster {self.info.path}: cannot read rows {row}–{row + height}, "
                f"columns {col}–{col + width} ({exc})"
            ) from None
        return pixels, valid


def _pad_to(array: np.ndarray, size: int) -> np.ndarray:
    """Pad the last two axes of ``array`` up to ``size`` (reflection; edge for 1-px sides)."""
    h, w = array.shape[-2:]
    if h == size and w == size:
        return array
    pad = [(0, 0)] * (array.ndim - 2) + [(0, size - h), (0, size - w)]
    if min(h, w) > 1:
        return np.pad(array, pad, mode="reflect")
    return np.pad(array, pad, mode="edge")


class Chunks(Sequence[tuple[int, int, int]]):
    """Work items ``(strip, first window column, stop column)``, strip by strip, left to right.

    Computed on demand: a list of them would grow with the raster.

    Args:
        grid: the window grid.
        strips: the strips to do, in order.
        batch_size: windows per chunk (the last chunk of a strip may hold fewer).
    """

    def __init__(self, grid: WindowGrid, strips: Sequence[int], batch_size: int) -> None:
        self.strips = strips
        self.columns = len(grid.cols)
        self.batch_size = batch_size
        self.per_strip = -(-self.columns // batch_size)

    def __len__(self) -> int:
        return len(self.strips) * self.per_strip

    @overload
    def __getitem__(self, index: int) -> tuple[int, int, int]: ...

    @overload
    def __getitem__(self, index: slice) -> list[tuple[int, int, int]]: ...

    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        strip, part = divmod(index % len(self), self.per_strip)
        first = part * self.batch_size
        return self.strips[strip], first, min(first + self.batch_size, self.columns)

    @property
    def windows(self) -> int:
        """Windows of all the chunks."""
        return len(self.strips) * self.columns


class ChunkDataset(Dataset[dict[str, Any]]):
    """Chunks of windows: aerial pixels, validity, Sentinel-2 series, metadata.

    Args:
        reader: the aerial reader.
        grid: the window grid of the raster.
        chunks: ``(strip, first, stop)`` items (see :class:`Chunks`).
        sentinel: the Sentinel-2 source, or None for aerial-only models.
        metadata: the aerial-metadata encoder, or None for models without metadata.

    An item is a dict: ``strip``, ``first``, ``stop`` (ints); ``windows`` (b,)
    int64, the window columns that hold valid pixels; and when b > 0,
    ``aerial`` (b, C, P, P) uint8, ``valid`` (b, P, P) bool, ``metadata``
    (b, 45) float32 and, with Sentinel-2, ``sen2`` (b, T, C, S, S) float32,
    ``positions`` (b, T) int64 and ``pad_mask`` (b, T) bool (time padded).
    """

    def __init__(
        self,
        reader: AerialReader,
        grid: WindowGrid,
        chunks: Sequence[tuple[int, int, int]],
        *,
        sentinel: WindowSentinel | None = None,
        metadata: WindowMetadata | None = None,
        pad_value: float = 0.0,
    ) -> None:
        self.reader = reader
        self.grid = grid
        self.chunks = chunks
        self.sentinel = sentinel
        self.metadata = metadata
        self.pad_value = pad_value

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, index: int) -> dict[str, Any]:
        strip, first, stop = self.chunks[index]
        grid, patch = self.grid, self.grid.patch
        row = grid.rows[strip]
        rows = grid.strip_stop(strip) - row
        col0, col1 = grid.cols[first], grid.col_stop(stop - 1)
        pixels, valid = self.reader.read(row, col0, rows, col1 - col0)
        item: dict[str, Any] = {"strip": strip, "first": first, "stop": stop}
        samples, masks, kept, bounds = [], [], [], []
        info = self.reader.info
        for j in range(first, stop):
            c = grid.cols[j] - col0
            w = grid.col_stop(j) - grid.cols[j]
            mask = valid[:, c : c + w]
            if not mask.any():
                continue  # only nodata: nothing to predict
            t = info.transform  # north-up (checked by inspect_aerial)
            left, top = t.c + grid.cols[j] * t.a, t.f + row * t.e
            right, bottom = left + patch * t.a, top + patch * t.e
            aerial = np.ascontiguousarray(_pad_to(pixels[:, :, c : c + w], patch))
            window_valid = np.pad(mask, [(0, patch - rows), (0, patch - w)])
            sample: dict[str, Any] = {"aerial": torch.from_numpy(aerial)}
            if self.metadata is not None:
                centre = (0.5 * (left + right), 0.5 * (bottom + top))
                encoded = self.metadata(*centre, aerial, window_valid)
                sample["metadata"] = torch.from_numpy(np.asarray(encoded, dtype=np.float32))
            else:
                sample["metadata"] = torch.zeros(METADATA_SIZE)
            samples.append(sample)
            masks.append(window_valid)
            kept.append(j)
            bounds.append((left, bottom, right, top))
        if self.sentinel is not None and samples:
            # One read of the Sentinel-2 box under the whole chunk.
            for sample, (series, positions) in zip(
                samples, self.sentinel.strip(bounds, info.crs), strict=True
            ):
                sample["sen2"] = torch.from_numpy(np.ascontiguousarray(series, dtype=np.float32))
                sample["positions"] = torch.from_numpy(np.asarray(positions, dtype=np.int64))
        item["windows"] = torch.tensor(kept, dtype=torch.int64)
        if samples:
            batch = collate(samples, pad_value=self.pad_value)
            item.update({k: v for k, v in batch.items() if k in _TENSOR_KEYS})
            item["valid"] = torch.from_numpy(np.stack(masks))
        return item


_TENSOR_KEYS = ("aerial", "metadata", "sen2", "positions", "pad_mask")


def first_item(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate of a DataLoader whose items are already batches (one chunk per batch)."""
    return items[0]
