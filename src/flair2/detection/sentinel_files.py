"""The files of an area's Sentinel-2 series: finding, dating and checking them.

:class:`flair2.detection.sentinel.AreaSentinel` documents the two layouts
(a folder of per-date GeoTIFFs, or one ``.npy`` array with a JSON sidecar); this
module turns either into :class:`SeriesFiles` (grid, dates, data and mask files)
or raises one :class:`~flair2.errors.DataError` naming the file at fault:
unreadable or truncated, on another grid (mis-georeferenced), wrong band count
or dtype, a date missing, unparseable or repeated.
"""

from __future__ import annotations

import datetime
import functools
import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio
from rasterio.crs import CRS
from rasterio.errors import CRSError, RasterioError
from rasterio.transform import Affine
from rasterio.windows import Window

from flair2.data.sentinel import load_npy, read_products
from flair2.errors import DataError
from flair2.formats import SENTINEL_DATA, SENTINEL_MASKS, SENTINEL_PRODUCTS

#: A date in a file name: YYYYMMDD or YYYY-MM-DD, not inside a longer number.
_NAME_DATE = re.compile(r"(?<!\d)(\d{4})(-?)(\d{2})\2(\d{2})(?!\d)")
_TOKEN_DATE = re.compile(r"^(\d{4})(-?)(\d{2})\2(\d{2})$")
_TIF_SUFFIXES = (".tif", ".tiff")
#: Two grids match when their transforms differ by less than this fraction of a pixel.
_GRID_TOLERANCE = 1e-3


def _date_from(match: re.Match[str] | None) -> datetime.date | None:
    if match is None:
        return None
    try:
        return datetime.date(int(match.group(1)), int(match.group(3)), int(match.group(4)))
    except ValueError:
        return None


def date_in_name(name: str) -> datetime.date | None:
    """The first valid YYYYMMDD or YYYY-MM-DD date in a file name, or None."""
    for match in _NAME_DATE.finditer(name):
        date = _date_from(match)
        if date is not None:
            return date
    return None


def as_crs(crs: Any) -> CRS:
    """A rasterio CRS from a CRS, an ``EPSG:…``/WKT/PROJ string or an EPSG code.

    Raises:
        DataError: ``crs`` names no coordinate reference system.
    """
    if isinstance(crs, CRS):
        return crs
    if isinstance(crs, (str, int)):
        return _parsed_crs(crs)  # parsed once: windows ask for it thousands of times
    return _parse_crs(crs)


@functools.lru_cache(maxsize=64)
def _parsed_crs(crs: str | int) -> CRS:
    return _parse_crs(crs)


def _parse_crs(crs: Any) -> CRS:
    try:
        return CRS.from_user_input(crs)
    except (CRSError, TypeError, ValueError) as exc:
        raise DataError(f"{crs!r} is not a coordinate reference system ({exc})") from None


# ---------------------------------------------------------------------------
# The files of a series


class Grid:
    """CRS, transform and size shared by every file of a series."""

    def __init__(self, crs: CRS, transform: Affine, height: int, width: int) -> None:
        self.crs, self.transform, self.height, self.width = crs, transform, height, width

    def differs(self, other: Grid) -> str | None:
        """What makes ``other`` a different grid, or None."""
        if other.crs != self.crs:
            return f"CRS {other.crs} differs from {self.crs}"
        if (other.height, other.width) != (self.height, self.width):
            return f"size {other.width}×{other.height} px differs from {self.width}×{self.height}"
        pixel = max(abs(self.transform.a), abs(self.transform.e), 1e-12)
        if not other.transform.almost_equals(self.transform, _GRID_TOLERANCE * pixel):
            return (
                f"transform {tuple(other.transform)[:6]} differs from {tuple(self.transform)[:6]}"
            )
        return None


def _inspect_tif(path: Path, bands: int, what: str) -> tuple[Grid, str]:
    """Grid and dtype of a GeoTIFF, after checking it opens, decodes and has ``bands`` bands."""
    try:
        with rasterio.open(path) as ds:
            if ds.count != bands:
                raise DataError(
                    f"{path}: {ds.count} bands, expected {bands} ({what}); rewrite it with those"
                )
            if ds.crs is None or ds.transform == Affine.identity():
                raise DataError(
                    f"{path} is mis-georeferenced: it has no CRS or no geotransform; "
                    "write it with the series' CRS and grid"
                )
            # A truncated or corrupt file usually still opens: decoding its last block
            # (written last) finds it at once, without reading the whole file.
            ds.read(window=Window(ds.width - 1, ds.height - 1, 1, 1))
            return Grid(ds.crs, ds.transform, ds.height, ds.width), ds.dtypes[0]
    except RasterioError as exc:
        raise DataError(
            f"{path}: not a readable GeoTIFF, corrupt or truncated ({exc.__cause__ or exc}); "
            "re-download or remove it"
        ) from None


def _check_grids(paths: Sequence[Path], grids: Sequence[Grid]) -> Grid:
    """The grid most files share; DataError naming the first file on another one."""
    keys = [
        (g.crs.to_wkt(), tuple(round(v, 6) for v in g.transform[:6]), g.height, g.width)
        for g in grids
    ]
    common = Counter(keys).most_common(1)[0][0]
    ref = keys.index(common)
    for path, grid in zip(paths, grids):
        problem = grids[ref].differs(grid)
        if problem:
            raise DataError(
                f"{path} is mis-georeferenced: {problem} of {paths[ref].name} (the series grid); "
                "reproject it onto that grid or remove it"
            )
    return grids[ref]


def _tifs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in _TIF_SUFFIXES and p.is_file())


def _dated(paths: Sequence[Path], what: str) -> dict[datetime.date, Path]:
    by_date: dict[datetime.date, Path] = {}
    for path in paths:
        date = date_in_name(path.name)
        if date is None:
            raise DataError(
                f"{path}: no acquisition date (YYYYMMDD or YYYY-MM-DD) in the file name; "
                f"rename it or list the {what} with their dates in a products file"
            )
        if date in by_date:
            raise DataError(
                f"{path}: same acquisition date {date} as {by_date[date].name}; "
                "keep one file per date"
            )
        by_date[date] = path
    return by_date


def _products_list(path: Path, folder: Path) -> list[tuple[datetime.date, Path]]:
    """(date, file) of each line of a folder series' products file, in file order."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the Sentinel-2 products list ({exc})") from None
    entries: list[tuple[datetime.date, Path]] = []
    seen: dict[datetime.date, int] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        date = _date_from(_TOKEN_DATE.match(parts[-1])) if len(parts) > 1 else None
        name = line[: line.rfind(parts[-1])].strip() if date else line
        date = date or date_in_name(name)
        where = f"{path}, line {number}"
        if date is None:
            raise DataError(
                f"{where}: {line!r} holds no acquisition date (YYYYMMDD or YYYY-MM-DD in the "
                "file name, or after it as a last column); fix the line"
            )
        if date in seen:
            raise DataError(f"{where}: date {date} already listed on line {seen[date]}")
        seen[date] = number
        candidates = [folder / name] + [folder / (name + s) for s in _TIF_SUFFIXES]
        file = next((c for c in candidates if c.is_file()), None)
        if file is None:
            raise DataError(f"{where}: {name} not found in {folder}; fix the line or add the file")
        entries.append((date, file))
    if not entries:
        raise DataError(f"{path}: the Sentinel-2 products list names no file")
    return entries


def _folder_files(
    folder: Path, masks: Path | None, products: Path | None
) -> tuple[list[datetime.date], list[Path], list[Path] | None]:
    """Dates, data files and mask files (or None) of a folder series, in series order."""
    files = _tifs(folder)
    mask_files = [p for p in files if "mask" in p.name.lower()]
    if products is not None:
        entries = _products_list(products, folder)
    else:
        data = [p for p in files if "mask" not in p.name.lower()]
        if not data:
            raise DataError(f"{folder}: no Sentinel-2 GeoTIFF (*.tif) in the folder")
        entries = sorted(_dated(data, "files").items())
    if masks is None and (folder / "masks").is_dir():
        masks = folder / "masks"
    if masks is not None:
        if not masks.is_dir():
            raise DataError(f"{masks}: cloud/snow masks folder not found")
        mask_files = _tifs(masks)
    if not mask_files:
        return [d for d, _ in entries], [p for _, p in entries], None
    by_date = _dated(mask_files, "masks")
    where = masks if masks is not None else folder
    missing = [p for d, p in entries if d not in by_date]
    if missing:
        raise DataError(
            f"{missing[0]}: no cloud/snow mask of its date in {where}; add one "
            "(2 bands, cloud and snow probabilities 0-100) or remove the masks"
        )
    return [d for d, _ in entries], [p for _, p in entries], [by_date[d] for d, _ in entries]


def _sidecar_path(base: Path, value: Any, key: str, sidecar: Path) -> Path:
    if not isinstance(value, str) or not value:
        raise DataError(f"{sidecar}: '{key}' must be a file name, got {value!r}")
    return base / value


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            f"{path}: georeferencing sidecar not found; write a JSON with 'crs', "
            "'transform' and 'dates' beside the .npy series"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON sidecar ({exc})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a JSON object with 'crs', 'transform' and 'dates'")
    return raw


def _npy_files(
    source: Path, sidecar: Path | None, masks: Path | None, products: Path | None
) -> tuple[Grid, list[datetime.date], Path | None]:
    """Grid, dates and masks array path of a ``.npy`` series, from its sidecar."""
    sidecar = sidecar or source.with_suffix(".json")
    meta = _read_sidecar(sidecar)
    base = sidecar.parent
    data_end = "_" + SENTINEL_DATA
    stem = source.name[: -len(data_end)] if source.name.endswith(data_end) else None
    if "crs" not in meta or "transform" not in meta:
        raise DataError(f"{sidecar}: 'crs' and 'transform' are required")
    try:
        crs = as_crs(meta["crs"])
    except DataError as exc:
        raise DataError(f"{sidecar}: 'crs': {exc}") from None
    values = meta["transform"]
    if (
        not isinstance(values, list)
        or len(values) not in (6, 9)
        or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
    ):
        raise DataError(
            f"{sidecar}: 'transform' must be 6 numbers [a, b, c, d, e, f] (x = a·col + b·row + c, "
            f"y = d·col + e·row + f), got {values!r}"
        )
    transform = Affine(*values[:6])
    if transform.is_degenerate:
        raise DataError(f"{sidecar}: 'transform' {values!r} is degenerate (zero pixel size)")
    if masks is None and "masks" in meta:
        masks = _sidecar_path(base, meta["masks"], "masks", sidecar)
    elif (
        masks is None
        and stem is not None
        and (source.parent / f"{stem}_{SENTINEL_MASKS}").is_file()
    ):
        masks = source.parent / f"{stem}_{SENTINEL_MASKS}"
    if products is None and "products" in meta:
        products = _sidecar_path(base, meta["products"], "products", sidecar)
    if products is not None:
        dates = list(read_products(products))
    elif "dates" in meta:
        if not isinstance(meta["dates"], list):
            raise DataError(f"{sidecar}: 'dates' must be a list of YYYY-MM-DD dates")
        dates = []
        for i, value in enumerate(meta["dates"]):
            date = _date_from(_TOKEN_DATE.match(value)) if isinstance(value, str) else None
            if date is None:
                raise DataError(f"{sidecar}: 'dates'[{i}] is {value!r}, expected a date YYYY-MM-DD")
            dates.append(date)
    elif stem is not None and (source.parent / f"{stem}_{SENTINEL_PRODUCTS}").is_file():
        dates = list(read_products(source.parent / f"{stem}_{SENTINEL_PRODUCTS}"))
    else:
        raise DataError(f"{sidecar}: no acquisition dates: add 'dates' or 'products'")
    return Grid(crs, transform, 0, 0), dates, masks


@dataclass
class SeriesFiles:
    """A checked series: its grid, dates (T,) and data and mask files.

    Attributes:
        name: the source path, for messages.
        grid: CRS, transform and size shared by every file.
        dates: acquisition dates, in series order.
        data: per-date GeoTIFFs (T,), or the ``.npy`` array.
        masks: per-date mask GeoTIFFs (T,), the masks ``.npy``, or None.
    """

    name: str
    grid: Grid
    dates: list[datetime.date]
    data: list[Path] | Path
    masks: list[Path] | Path | None


def check_folder(
    folder: Path, bands: int, masks: Path | None = None, products: Path | None = None
) -> SeriesFiles:
    """Find, date and check a folder of per-date GeoTIFFs (and their masks).

    Every file is opened, its header checked and its last block decoded, which
    catches truncated files without reading them whole.

    Raises:
        DataError: naming the first file at fault.
    """
    dates, data, mask_files = _folder_files(folder, masks, products)
    inspected = [_inspect_tif(p, bands, f"the {bands} Sentinel-2 bands") for p in data]
    grid = _check_grids(data, [g for g, _ in inspected])
    dtype = Counter(d for _, d in inspected).most_common(1)[0][0]
    for path, (_, other) in zip(data, inspected):
        if other != dtype:
            raise DataError(f"{path}: dtype {other}, other dates are {dtype}; convert it")
    for path in mask_files or []:
        problem = grid.differs(_inspect_tif(path, 2, "cloud and snow probabilities")[0])
        if problem:
            raise DataError(
                f"{path} is mis-georeferenced: {problem} of the data files "
                "(the series grid); write the masks on the data grid"
            )
    return SeriesFiles(str(folder), grid, dates, list(data), mask_files)


def check_npy(
    source: Path,
    channels: int,
    sidecar: Path | None = None,
    masks: Path | None = None,
    products: Path | None = None,
) -> SeriesFiles:
    """Check a ``.npy`` (T, C, H, W) series, its sidecar, dates and masks array.

    Raises:
        DataError: naming the file at fault.
    """
    grid, dates, masks = _npy_files(source, sidecar, masks, products)
    data = load_npy(source)
    if data.ndim != 4 or data.shape[1] != channels:
        raise DataError(f"{source}: shape {tuple(data.shape)}, expected (T, {channels}, H, W)")
    t, _, grid.height, grid.width = data.shape
    if len(dates) != t:
        raise DataError(f"{source}: {t} dates in the array but {len(dates)} dates given")
    if t == 0:
        raise DataError(f"{source}: the Sentinel-2 series holds no date")
    if masks is not None:
        mask_array = load_npy(masks)
        if mask_array.shape != (t, 2, grid.height, grid.width):
            raise DataError(
                f"{masks}: masks shape {tuple(mask_array.shape)} does not match "
                f"{tuple(data.shape)} of {source.name} (expected (T, 2, H, W))"
            )
    return SeriesFiles(str(source), grid, dates, source, masks)
