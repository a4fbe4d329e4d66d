"""The FLAIR #2 torch Dataset: one patch record → one sample dict of named tensors.

Every way a patch's files can be broken (unreadable, truncated, wrong band count
or dtype, labels out of range, a centroid outside the super-area, non-finite
Sentinel-2 values...) surfaces as a :class:`~flair2.errors.DataError` whose
message names the file and the fix, also from inside a DataLoader worker. With
``skip_invalid_patches`` the sample is skipped instead (see ``on_invalid``).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import torch
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from torch.utils.data import Dataset

from flair2.classes import MAX_LABEL, labels_to_model
from flair2.data.augment import flip_rotate
from flair2.data.metadata import encode_metadata
from flair2.data.records import PatchRecord
from flair2.data.sentinel.augment import augment_dates
from flair2.data.sentinel.processor import SentinelProcessor
from flair2.data.tiff import read_plain_tiff
from flair2.errors import DataError
from flair2.settings import SampleSettings

log = logging.getLogger(__name__)

METADATA_SIZE = 45

#: Key of the placeholder a skipped sample leaves in a batch (see ``on_invalid``).
INVALID_KEY = "invalid"
#: Key listing, in a sample or batch, why samples were skipped.
SKIPPED_KEY = "skipped"

OnInvalid = Literal["raise", "drop", "substitute"]


#: GDAL settings for reading patches: take the CRS from the GeoTIFF keys alone (no
#: lookup of side files and EPSG tables: a patch's CRS is not needed to train, and
#: that lookup was half the cost of opening a file) and do not list the folder of
#: every file opened (folders of FLAIR #2 patches hold hundreds of files).
GDAL_READ_OPTIONS = {"GTIFF_SRS_SOURCE": "GEOKEYS", "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


def read_raster(path: str | Path, *, bands: int, name: str) -> np.ndarray:
    """Read a whole uint8 GeoTIFF patch as (bands, H, W), checking band count and dtype.

    Args:
        path: the file.
        bands: expected band count.
        name: what the file is ("aerial patch", "mask"), for messages.

    Plain uncompressed patches (the FLAIR #2 files) are read directly
    (:func:`~flair2.data.tiff.read_plain_tiff`), anything else through GDAL.

    Raises:
        DataError: unreadable, or wrong band count or dtype (the message names the file).
    """
    fast = read_plain_tiff(path, bands)
    if fast is not None:
        return fast
    try:
        # A damaged file often loses its geotags first; the pixels are what matters
        # here, and a warning would only clutter the one-line error that follows.
        with warnings.catch_warnings(), rasterio.Env(**GDAL_READ_OPTIONS):
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
        with src, rasterio.Env(**GDAL_READ_OPTIONS):
            if src.count != bands:
                raise DataError(f"{path}: {name} has {src.count} band(s), expected {bands}")
            if src.dtypes[0] != "uint8":
                raise DataError(f"{path}: {name} is {src.dtypes[0]}, expected uint8")
            return src.read()
    except RasterioError as exc:
        raise DataError(
            f"{path}: unreadable {name} ({exc}); re-extract the file or remove the patch"
        ) from None


def raster_size(path: str | Path) -> int:
    """Side in pixels of a square patch file (used to infer ``patch_size``)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
        with src:
            height, width = src.height, src.width
    except RasterioError as exc:
        raise DataError(f"{path}: unreadable aerial patch ({exc})") from None
    if height != width:
        raise DataError(f"{path}: aerial patch is {height}×{width}, expected a square patch")
    return height


class FlairDataset(Dataset[dict[str, Any]]):
    """Samples of FLAIR #2 patches: aerial, labels, Sentinel-2 series, metadata.

    Args:
        records: the patches (from :func:`flair2.data.discovery.discover`).
        settings: what an item holds and how it is augmented
            (:meth:`SampleSettings.from_config <flair2.settings.SampleSettings.from_config>`).
        patch_size: expected aerial size in pixels; a file of another size is an error.
        augment: apply random flips / rot90 and the Sentinel-2 date dropout and
            jitter (training).
        with_labels: read masks (train/validation; test when labels exist).
        with_sentinel: read the Sentinel-2 series (U-T&T); the aerial-only model skips it.
        on_invalid: what a patch whose files cannot be read gives: "raise" its
            DataError; "drop": a placeholder ``{"invalid": message, "patch_id": id}``
            that the loader's collate leaves out of the batch (validation,
            prediction); "substitute": the next readable patch instead, with the
            messages under ``"skipped"`` (training, where every batch must be
            full so that all processes take the same steps).

    Items are dicts as described in :mod:`flair2.data`: ``aerial`` uint8 (C, H, W),
    ``labels`` uint8 (H, W), ``sen2`` float32 (T, C, S, S), ``positions`` int64 (T,),
    ``metadata`` float32 (45,), ``patch_id``, ``domain``, ``zone``.
    """

    def __init__(
        self,
        records: list[PatchRecord],
        settings: SampleSettings,
        *,
        patch_size: int,
        augment: bool = False,
        with_labels: bool = True,
        with_sentinel: bool = True,
        on_invalid: OnInvalid = "raise",
    ) -> None:
        if on_invalid not in ("raise", "drop", "substitute"):
            raise ValueError(f"on_invalid must be raise, drop or substitute, got {on_invalid!r}")
        self.on_invalid = on_invalid
        self.records = list(records)
        self.settings = settings
        self.patch_size = patch_size
        self.augment = augment
        self.with_labels = with_labels
        self.with_sentinel = with_sentinel
        self.sentinel = SentinelProcessor(settings.sentinel) if with_sentinel else None
        # Metadata is encoded once for the whole split: a broken record fails here,
        # in the main process, with the patch named — not later inside a worker.
        self.metadata = np.zeros((len(self.records), METADATA_SIZE), dtype=np.float32)
        #: index -> why the patch cannot be used (a broken metadata record), when skipping.
        self.broken: dict[int, str] = {}
        if settings.aerial_metadata:
            for i, rec in enumerate(self.records):
                try:
                    self.metadata[i] = encode_metadata(
                        rec.metadata, rec.name, month_encoding=settings.month_encoding
                    )
                except DataError as exc:
                    exc = DataError(f"{settings.path_metadata_aerial}: {exc}")
                    if on_invalid == "raise":
                        raise exc from None
                    self.broken[i] = str(exc)

    def __len__(self) -> int:
        return len(self.records)

    def read_aerial(self, rec: PatchRecord) -> np.ndarray:
        """The aerial patch as uint8 (C, H, W), size-checked."""
        img = read_raster(rec.aerial, bands=self.settings.num_channels_aerial, name="aerial patch")
        if img.shape[1:] != (self.patch_size, self.patch_size):
            raise DataError(
                f"{rec.aerial}: aerial patch is {img.shape[1]}×{img.shape[2]}, expected "
                f"{self.patch_size}×{self.patch_size} like the other patches "
                "(config key 'patch_size')"
            )
        return img

    def read_labels(self, rec: PatchRecord, shape: tuple[int, int]) -> np.ndarray:
        """The mask as model indices, uint8 (H, W)."""
        if rec.label is None:
            raise DataError(f"{rec.aerial}: no mask for this patch")
        raw = read_raster(rec.label, bands=1, name="mask")[0]
        if raw.shape != shape:
            raise DataError(
                f"{rec.label}: mask is {raw.shape[0]}×{raw.shape[1]}, aerial patch is "
                f"{shape[0]}×{shape[1]}"
            )
        low, high = int(raw.min()), int(raw.max())
        if low < 1 or high > MAX_LABEL:
            raise DataError(
                f"{rec.label}: label values must be in 1–{MAX_LABEL}, found {low}–{high}"
            )
        return labels_to_model(raw, self.settings.num_classes)

    def read_sentinel(self, rec: PatchRecord) -> tuple[np.ndarray, np.ndarray]:
        """The patch's Sentinel-2 series (T, C, S, S) and day positions (T,), checked finite."""
        if self.sentinel is None:
            raise RuntimeError("this dataset does not read Sentinel-2")
        try:
            series, positions = self.sentinel(rec.sentinel, rec.centroid)
        except DataError as exc:
            # The zone's files are shared by many patches: say which one failed.
            raise DataError(f"{rec.aerial.name}: {exc}") from None
        if not np.isfinite(series).all():
            raise DataError(
                f"{rec.sentinel.data}: NaN or infinite values in the Sentinel-2 crop of "
                f"{rec.name}; re-extract the zone's Sentinel-2 files"
            )
        return series, positions

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]  # an IndexError here ends plain iteration
        try:
            return self.load(index)
        except DataError as exc:
            if self.on_invalid == "raise":
                raise
            first = str(exc)
        if self.on_invalid == "drop":
            return {INVALID_KEY: first, "patch_id": rec.patch_id}
        skipped = [first]
        for step in range(1, len(self.records)):
            try:
                sample = self.load((index + step) % len(self.records))
            except DataError as exc:
                skipped.append(str(exc))
                continue
            sample[SKIPPED_KEY] = skipped
            return sample
        raise DataError(f"no readable patch left (skip_invalid_patches); first problem: {first}")

    def load(self, index: int) -> dict[str, Any]:
        """The sample of ``records[index]``; any failure is a DataError naming the patch.

        Raises:
            DataError: a file is missing, unreadable or inconsistent.
        """
        rec = self.records[index]
        if index in self.broken:
            raise DataError(self.broken[index])
        try:
            return self._load(index, rec)
        except DataError:
            raise
        except Exception as exc:
            # An unforeseen failure (a library error, a malformed array) must still
            # reach the user as one line naming the patch, not as a worker traceback.
            raise DataError(
                f"{rec.aerial}: cannot load patch {rec.name} ({type(exc).__name__}: {exc}); "
                "run `flair2 check-data` on the dataset, re-extract the patch's files "
                "or set skip_invalid_patches: true"
            ) from exc

    def _load(self, index: int, rec: PatchRecord) -> dict[str, Any]:
        aerial = self.read_aerial(rec)
        sample: dict[str, Any] = {
            "aerial": torch.from_numpy(aerial),
            "metadata": torch.from_numpy(self.metadata[index]),
            "patch_id": rec.patch_id,
            "domain": rec.domain,
            "zone": rec.zone,
        }
        if self.with_labels:
            sample["labels"] = torch.from_numpy(self.read_labels(rec, aerial.shape[1:]))
        if self.sentinel is not None:
            series, positions = self.read_sentinel(rec)
            sample["sen2"] = torch.from_numpy(series)
            sample["positions"] = torch.from_numpy(positions)
        if self.augment:
            sample = flip_rotate(sample, mode=self.settings.augmentation_mode)
            sample = augment_dates(
                sample, self.settings.sat_date_dropout, self.settings.sat_date_jitter
            )
        return sample
