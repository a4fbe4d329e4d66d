"""Reading a Sentinel-2 series by boxes, through a cache of tiles.

Neighbouring windows of a whole-area detection share most of their Sentinel-2
crop: the series is read by tiles of ``TILE`` pixels square (every date of data
or masks at once), kept in a least-recently-used cache, so a tile is read about
once and a window costs a few copies. The reader keeps its files open; it is not
thread-safe, but it pickles (without open files or cache, reopened on first use),
so each DataLoader worker gets its own.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from flair2.data.sentinel import load_npy
from flair2.errors import DataError

#: Side, in series pixels, of the tiles read (every date at once) and cached.
TILE = 64


class TileReader:
    """Boxes of a series' data and masks, read by cached tiles.

    Args:
        data: per-date GeoTIFFs, or one ``.npy`` (T, C, H, W) array.
        masks: the same for the cloud/snow masks, or None.
        height: rows of the series.
        width: columns of the series.
        num_dates: dates of the series.
        cache_mb: memory for the tiles; 0 reads every box directly.
    """

    def __init__(
        self,
        data: list[Path] | Path,
        masks: list[Path] | Path | None,
        height: int,
        width: int,
        num_dates: int,
        cache_mb: float = 256.0,
    ) -> None:
        self._data_paths, self._mask_paths = data, masks
        self.height, self.width = height, width
        self.num_dates = num_dates
        self.cache_bytes = int(max(cache_mb, 0.0) * 2**20)
        self._open: dict[str, Any] = {}
        self._tiles: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
        self._cached = 0

    def close(self) -> None:
        """Close the open files and empty the cache (files reopen on next use)."""
        for handle in self._open.values():
            for item in handle if isinstance(handle, list) else [handle]:
                if hasattr(item, "close"):
                    item.close()
        self._open = {}
        self._tiles.clear()
        self._cached = 0

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_open"] = {}  # file handles do not cross processes
        state["_tiles"], state["_cached"] = OrderedDict(), 0
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _handles(self, kind: str) -> Any:
        """The open files (a list of GeoTIFFs) or the memory-mapped array of ``kind``."""
        handle = self._open.get(kind)
        if handle is None:
            paths = self._data_paths if kind == "data" else self._mask_paths
            if paths is None:
                raise ValueError(f"the series has no {kind} files")
            if isinstance(paths, list):
                handle = []
                try:
                    for p in paths:
                        handle.append(rasterio.open(p))
                except RasterioError as exc:
                    for ds in handle:
                        ds.close()
                    raise DataError(f"{p}: cannot reopen the GeoTIFF ({exc})") from None
            else:
                handle = load_npy(paths)
            self._open[kind] = handle
        return handle

    def read(self, kind: str, rows: slice, cols: slice, times: np.ndarray) -> np.ndarray:
        """The box ``rows`` × ``cols`` of the dates ``times``, (len(times), C, h, w), via tiles."""
        if self.cache_bytes <= 0:
            return self._read_box(kind, rows, cols, times)
        keys = [
            (ti, tj)
            for ti in range(rows.start // TILE, (rows.stop - 1) // TILE + 1)
            for tj in range(cols.start // TILE, (cols.stop - 1) // TILE + 1)
        ]
        tiles = [self._tile(kind, ti, tj) for ti, tj in keys]
        h, w = rows.stop - rows.start, cols.stop - cols.start
        out = np.empty((len(times), tiles[0].shape[1], h, w), dtype=tiles[0].dtype)
        # Basic slicing copies far faster than a date index: use it for every date.
        every = len(times) == self.num_dates
        for (ti, tj), tile in zip(keys, tiles):
            r0, r1 = max(rows.start, ti * TILE), min(rows.stop, (ti + 1) * TILE)
            c0, c1 = max(cols.start, tj * TILE), min(cols.stop, (tj + 1) * TILE)
            src = (slice(r0 - ti * TILE, r1 - ti * TILE), slice(c0 - tj * TILE, c1 - tj * TILE))
            dst = (slice(r0 - rows.start, r1 - rows.start), slice(c0 - cols.start, c1 - cols.start))
            part = tile[:, :, src[0], src[1]] if every else tile[times, :, src[0], src[1]]
            out[:, :, dst[0], dst[1]] = part
        return out

    def _tile(self, kind: str, ti: int, tj: int) -> np.ndarray:
        """Every date of tile (ti, tj), from the cache or read (least recently used goes)."""
        key = (kind, ti, tj)
        tile = self._tiles.get(key)
        if tile is not None:
            self._tiles.move_to_end(key)
            return tile
        rows = slice(ti * TILE, min((ti + 1) * TILE, self.height))
        cols = slice(tj * TILE, min((tj + 1) * TILE, self.width))
        tile = self._read_box(kind, rows, cols, np.arange(self.num_dates))
        self._tiles[key] = tile
        self._cached += tile.nbytes
        while self._cached > self.cache_bytes and len(self._tiles) > 1:
            _, old = self._tiles.popitem(last=False)
            self._cached -= old.nbytes
        return tile

    def _read_box(self, kind: str, rows: slice, cols: slice, times: np.ndarray) -> np.ndarray:
        """The box ``rows`` × ``cols`` of the dates ``times`` read from the files."""
        handle = self._handles(kind)
        if not isinstance(handle, list):
            try:
                return np.asarray(handle[times, :, rows, cols])
            except (OSError, ValueError) as exc:
                path = self._data_paths if kind == "data" else self._mask_paths
                raise DataError(f"{path}: read failed ({exc}); re-extract the array") from None
        window = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        first = handle[0]
        out = np.empty(
            (len(times), first.count, window.height, window.width), dtype=first.dtypes[0]
        )
        for i, t in enumerate(times):
            try:
                handle[t].read(window=window, out=out[i])
            except RasterioError as exc:
                raise DataError(
                    f"{handle[t].name}: read failed, corrupt or truncated GeoTIFF "
                    f"({exc.__cause__ or exc}); "
                    "re-download or remove it"
                ) from None
        return out
