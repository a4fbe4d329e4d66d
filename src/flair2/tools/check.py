"""The data checker: walk a dataset, collect every problem, summarise what is there.

:func:`check_dataset` pairs the files with :mod:`flair2.data.discovery` (reporting,
not raising, each pairing problem) and then opens every file to check its content:
band count, size and type of the aerial patches, masks that match them and hold
label values 1–19, Sentinel-2 arrays and product lists that agree with each other,
centroid crops inside their super-area, metadata records the encoder accepts.
Each field is parsed by the function training parses it with (the products reader,
the ``.npy`` loader, the centroid crop, the metadata lookup and encoder), so what
passes the check can be read by training.

Problems that would stop training or prediction are errors; the rest (a crop that
leaves the super-area and gets padded, a test patch without a mask…) are warnings.
It never stops at the first problem: the report lists them all, each naming its file.
"""

from __future__ import annotations

import datetime
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from flair2.classes import MAX_LABEL
from flair2.config import Config
from flair2.data.discovery import (
    check_unique_ids,
    discover_split,
    list_domains,
    load_json_index,
    metadata_record,
)
from flair2.data.metadata import encode_metadata
from flair2.data.records import PatchRecord, SentinelFiles
from flair2.data.sentinel.files import load_npy, read_products, zone_shape_problems
from flair2.data.sentinel.operations import crop_centered
from flair2.errors import DataError
from flair2.formats import MSK_PATTERN, PATCH_MULTIPLE, is_patch_multiple
from flair2.tools.check_report import CheckReport, Problem, SplitSummary

log = logging.getLogger(__name__)

#: What reading a broken file may raise (rasterio, numpy, the file system).
_READ_ERRORS = (RasterioError, OSError, ValueError, EOFError)


def _from_message(message: str) -> Problem:
    """A Problem from a discovery message, which starts with the file path when there is one."""
    head, sep, rest = message.partition(": ")
    if sep and "/" in head.replace("\\", "/") and Path(head).suffix:
        return Problem(rest, Path(head))
    return Problem(message)


class _Checker:
    """Collects problems and counts while walking one dataset."""

    def __init__(self, cfg: Config, quick: bool) -> None:
        self.cfg = cfg
        self.quick = quick
        self.report = CheckReport()
        self.sizes: list[tuple[Path, int]] = []
        self.dates: list[int] = []
        self.metadata: dict[str, Any] | None = None
        self.metadata_path: Path | None = None

    def error(self, message: str, file: Path | None = None) -> None:
        self.report.errors.append(Problem(message, file))

    def reader_error(self, exc: DataError, file: Path) -> None:
        """An error of one of training's readers, its message starting with ``file``."""
        text = str(exc)
        for name in (str(file), str(file.resolve())):
            if text.startswith(name):
                text = text[len(name) :].lstrip(":, ")
        self.error(text, file)

    def warning(self, message: str, file: Path | None = None) -> None:
        self.report.warnings.append(Problem(message, file))

    # -- Sentinel-2 -----------------------------------------------------------
    def _load_npy(self, path: Path) -> np.ndarray | None:
        try:
            return load_npy(path)  # training's reader: what it refuses fails here
        except DataError as exc:
            self.reader_error(exc, path)
            return None

    def _check_finite(self, path: Path, data: np.ndarray) -> None:
        """Training refuses a crop holding NaN or infinity; only float arrays can hold them."""
        if data.dtype.kind != "f":
            return
        # One date at a time: a zone's whole series can weigh gigabytes.
        bad = sum(int(np.count_nonzero(~np.isfinite(data[t]))) for t in range(data.shape[0]))
        if bad:
            self.error(
                f"{bad} NaN or infinite value(s): training refuses the crops holding them; "
                "re-extract the zone's Sentinel-2 files",
                path,
            )

    def check_zone(self, files: SentinelFiles) -> tuple[int, int] | None:
        """Check a zone's three Sentinel-2 files; return the super-area (H, W) if usable."""
        data = self._load_npy(files.data)
        masks = self._load_npy(files.masks)
        products = self._products(files.products)
        shape: tuple[int, int] | None = None
        if data is not None and data.ndim == 4 and data.shape[1] != self.cfg.num_channels_sat:
            self.error(
                f"shape {tuple(data.shape)}, expected (T, {self.cfg.num_channels_sat}, H, W)",
                files.data,
            )
            data = None
        if data is not None:
            problems = zone_shape_problems(
                files,
                tuple(data.shape),
                None if masks is None else tuple(masks.shape),
                None if products is None else len(products),
            )
            for file, message in problems:  # training's rule (flair2.data.sentinel.files)
                self.error(message, file)
            if data.ndim == 4 and data.shape[0] > 0:
                shape = (int(data.shape[2]), int(data.shape[3]))
                self._check_finite(files.data, data)
                if data.dtype != np.uint16:
                    self.warning(
                        f"dtype {data.dtype}, expected uint16 (reflectance × 10000); "
                        "the Sentinel-2 scaling assumes uint16",
                        files.data,
                    )
            if not problems and products is not None:
                self.dates.append(len(products))
        if masks is not None and masks.dtype != np.uint8:
            self.warning(f"dtype {masks.dtype}, expected uint8 probabilities 0–100", files.masks)
        return shape

    def _products(self, path: Path) -> tuple[datetime.date, ...] | None:
        try:
            dates = read_products(path)  # training's reader, line by line
        except DataError as exc:
            self.reader_error(exc, path)
            return None
        if list(dates) != sorted(dates):
            self.warning("product dates are not in chronological order", path)
        if len({d.year for d in dates}) > 1:
            self.warning("product dates span several years (expected one calendar year)", path)
        return dates

    def check_centroid(self, rec: PatchRecord, shape: tuple[int, int]) -> None:
        size = self.cfg.sat_patch_size
        h, w = shape
        row, col = rec.centroid
        r0, c0 = row - size // 2, col - size // 2
        r1, c1 = r0 + size, c0 + size
        where = f"centroid {list(rec.centroid)} in super-area {h}×{w} (sat_patch_size {size})"
        try:
            # Training's crop on a one-value stand-in of the super-area: its rule, no read.
            crop_centered(np.broadcast_to(np.uint8(0), (1, 1, h, w)), rec.centroid, size)
        except DataError:
            self.error(f"{where}: the crop lies entirely outside", rec.aerial)
            return
        if r0 < 0 or c0 < 0 or r1 > h or c1 > w:
            self.warning(f"{where}: the crop is partly outside (the loader pads it)", rec.aerial)

    # -- Aerial patch, mask, metadata ------------------------------------------
    def check_patch(self, rec: PatchRecord, hist: np.ndarray) -> None:
        size = self._check_aerial(rec.aerial)
        if rec.label is not None:
            self._check_mask(rec.label, size, hist)
        if self.metadata is not None:
            problems = self.report.errors if self.cfg.aerial_metadata else self.report.warnings
            try:
                entry = metadata_record(self.metadata, rec.patch_id, rec.aerial)
            except DataError as exc:
                problems.append(_from_message(str(exc)))
                return
            try:  # what training feeds the model: its encoder decides
                encode_metadata(entry, rec.name, self.cfg.month_encoding)
            except DataError as exc:
                problems.append(Problem(str(exc), self.metadata_path))

    def _check_aerial(self, path: Path) -> tuple[int, int] | None:
        want = self.cfg.num_channels_aerial
        try:
            with rasterio.open(path) as src:
                count, h, w, dtypes, crs = src.count, src.height, src.width, src.dtypes, src.crs
                # Reading catches truncated files; the last row is at the end of the file.
                window = Window(0, h - 1, w, 1) if self.quick else None
                src.read(window=window)
        except _READ_ERRORS as exc:
            self.error(f"unreadable aerial image ({exc}); re-extract it", path)
            return None
        if count != want:
            self.error(f"{count} bands, expected {want} (num_channels_aerial)", path)
        if any(d != "uint8" for d in dtypes):
            self.error(f"dtype {dtypes[0]}, expected uint8", path)
        if h != w:
            self.error(f"{h}×{w} pixels: aerial patches must be square", path)
        elif not is_patch_multiple(h):
            self.error(f"{h}×{w} pixels: the side must be a multiple of {PATCH_MULTIPLE}", path)
        else:
            self.sizes.append((path, h))
        if crs is None:
            self.warning("no georeferencing (CRS): predictions will carry none", path)
        return h, w

    def _check_mask(self, path: Path, size: tuple[int, int] | None, hist: np.ndarray) -> None:
        try:
            with rasterio.open(path) as src:
                count, dtype = src.count, src.dtypes[0]
                band = src.read(1)
        except _READ_ERRORS as exc:
            self.error(f"unreadable mask ({exc}); re-extract it", path)
            return
        if count != 1:
            self.error(f"{count} bands, expected 1", path)
        if dtype != "uint8":
            self.error(f"dtype {dtype}, expected uint8", path)
        if size is not None and band.shape != size:
            self.error(f"{band.shape[0]}×{band.shape[1]} pixels, the aerial image is "
                       f"{size[0]}×{size[1]}", path)  # fmt: skip
        bad = (band < 1) | (band > MAX_LABEL)
        if bad.any():
            values = np.unique(band[bad])
            shown = ", ".join(str(v) for v in values[:5]) + (" …" if values.size > 5 else "")
            self.error(
                f"{int(bad.sum())} pixel(s) with label values outside 1–{MAX_LABEL} ({shown})",
                path,
            )
        good = band[~bad].astype(np.int64)
        hist += np.bincount(good, minlength=MAX_LABEL + 1)[: MAX_LABEL + 1]

    def check_sizes(self) -> None:
        counts = Counter(size for _, size in self.sizes)
        self.report.summary.patch_sizes = dict(sorted(counts.items()))
        if not counts:
            return
        expected = self.cfg.patch_size or counts.most_common(1)[0][0]
        why = "patch_size" if self.cfg.patch_size else "the other patches"
        for path, size in self.sizes:
            if size != expected:
                self.error(f"{size}×{size} pixels, {why}: {expected}×{expected}", path)

    # -- Splits -----------------------------------------------------------------
    def check_split(self, name: str, centroids: dict[str, Any]) -> None:
        d = self.cfg.data
        suffix = "train" if name == "train" else "test"
        keys = {k: f"data.path_{k}_{suffix}" for k in ("aerial", "sen", "labels")}
        roots = {k: getattr(d, f"path_{k}_{suffix}") for k in keys}
        usable = True
        for kind in ("aerial", "sen", "labels"):
            if not roots[kind]:
                if kind != "labels" or name == "train":  # test labels are optional
                    self.error(f"config key '{keys[kind]}' is empty: give the {name} folder")
                    usable = False
            elif not Path(roots[kind]).is_dir():
                self.error(f"{keys[kind]}: folder {roots[kind]} not found")
                if kind == "labels" and name == "test":
                    roots[kind] = ""  # check the test images anyway
                else:
                    usable = False
        if not usable:
            return
        labels = roots["labels"] or None
        domains = list_domains(roots["aerial"])
        if not domains:
            self.error(f"{keys['aerial']}: no domain folder (like D004_2021) in {roots['aerial']}")
            return
        records = discover_split(
            roots["aerial"],
            roots["sen"],
            labels,
            centroids,
            None,  # metadata records are checked below, without skipping the patch
            domains,
            require_labels=name == "train",
            on_problem=lambda message: self.report.errors.append(_from_message(message)),
        )
        check_unique_ids(
            records, name, lambda message: self.report.errors.append(_from_message(message))
        )
        if labels is not None:
            self._orphan_zones(Path(roots["aerial"]), Path(labels))
        log.info("checking %d %s patches", len(records), name)
        hist = np.zeros(MAX_LABEL + 1, np.int64)
        zones: dict[SentinelFiles, tuple[int, int] | None] = {}
        for rec in records:
            if rec.sentinel not in zones:
                zones[rec.sentinel] = self.check_zone(rec.sentinel)
            shape = zones[rec.sentinel]
            if shape is not None:
                self.check_centroid(rec, shape)
            if rec.label is None and labels is not None:
                self.warning("no mask in the test labels folder: it cannot be scored", rec.aerial)
            self.check_patch(rec, hist)
        self.report.summary.splits[name] = SplitSummary(
            patches=len(records),
            domains=len({r.domain for r in records}),
            zones=len({(r.domain, r.zone) for r in records}),
            class_pixels={v: int(hist[v]) for v in range(1, MAX_LABEL + 1)},
        )

    def _orphan_zones(self, aerial: Path, labels: Path) -> None:
        """Mask folders whose zone has no aerial folder at all (discovery walks aerial zones)."""
        for domain in list_domains(labels):
            for zone_dir in sorted(p for p in (labels / domain).iterdir() if p.is_dir()):
                if not (aerial / domain / zone_dir.name).is_dir():
                    msk = zone_dir / "msk"
                    names = [p.name for p in msk.iterdir()] if msk.is_dir() else []
                    n = sum(1 for name in names if MSK_PATTERN.match(name))
                    self.error(
                        f"{n} mask(s) but no aerial zone folder {aerial / domain / zone_dir.name}",
                        zone_dir,
                    )


def check_dataset(cfg: Config, *, quick: bool = False) -> CheckReport:
    """Check every file of the dataset a configuration points to.

    Both splits are checked when their folders are configured (the train folder
    needs aerial, Sentinel-2 and label roots; the test folder aerial and
    Sentinel-2, labels optional).

    Args:
        cfg: the configuration (``data.*`` paths, ``num_channels_aerial``,
            ``num_channels_sat``, ``sat_patch_size``, ``patch_size``, ``aerial_metadata``).
        quick: read only the last row of each aerial image (enough to catch a
            truncated file) instead of all its pixels; masks are always read whole.

    Returns:
        The report: every error and warning, each naming its file, and a summary.
    """
    checker = _Checker(cfg, quick)
    d = cfg.data
    try:
        centroids = load_json_index(d.path_sp_centroids, "data.path_sp_centroids")
    except DataError as exc:
        # Without centroids nothing can be paired: every patch would fail the same way.
        checker.error(str(exc))
        return checker.report
    if d.path_metadata_aerial:
        try:
            checker.metadata = load_json_index(d.path_metadata_aerial, "data.path_metadata_aerial")
            checker.metadata_path = Path(d.path_metadata_aerial)
        except DataError as exc:
            (checker.error if cfg.aerial_metadata else checker.warning)(str(exc))
    elif cfg.aerial_metadata:
        checker.error("config key 'data.path_metadata_aerial' is empty but aerial_metadata is true")
    train_given = any((d.path_aerial_train, d.path_sen_train, d.path_labels_train))
    test_given = any((d.path_aerial_test, d.path_sen_test, d.path_labels_test))
    if not (train_given or test_given):
        checker.error("no dataset folder configured: set the data.path_* keys")
    if train_given:
        checker.check_split("train", centroids)
    if test_given:
        checker.check_split("test", centroids)
    checker.check_sizes()
    if checker.dates:
        dates = checker.dates
        checker.report.summary.dates_per_zone = (min(dates), float(np.mean(dates)), max(dates))
    return checker.report
