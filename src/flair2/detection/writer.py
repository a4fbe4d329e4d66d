"""Output of whole-area detection: part files per strip, segment merges, the final COG.

Everything is written under ``<output>.parts/`` first:

- ``manifest.json``: what the parts were computed from (raster, grid, model,
  output type); a re-run with other settings refuses to mix them;
- for each row segment covered by one strip, ``rows_<a>_<b>.tif``: its final
  pixels (uint8 classes, nodata 255; or K probability bands + a validity band);
- for a segment covered by several strips, one ``rows_<a>_<b>.strip<k>.sums.tif``
  per strip (float32 weighted sums), added into ``rows_<a>_<b>.tif`` as soon as
  all of them exist (by whichever process finishes last; a claim file keeps two
  processes from doing it together) and then deleted;
- ``strip<k>.done``: written once every file of strip k is complete.

Each file is written under a temporary name and renamed when complete, so a
killed run leaves only complete files and hidden temporaries (removed by the
next run); the next run skips the strips marked done. When all strips are done,
the segment files are mosaicked through a VRT into a tiled, LZW-compressed
Cloud-Optimized GeoTIFF (BigTIFF when needed), written under a temporary name
and renamed to the output; then the parts folder is removed.

Memory stays flat: files are read and written in column chunks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
import torch
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.windows import Window
from torch import Tensor

from flair2.detection.grid import TILE, Segment, WindowGrid, finalize_sums
from flair2.errors import ConfigError, OutputError
from flair2.formats import PROBABILITY_SCALE, VALUES_LABELS
from flair2.io import TEMP_SUFFIX, atomic_path, write_json_atomic
from flair2.rasters import check_raster_readable

log = logging.getLogger(__name__)

#: Pixel value of "no prediction" in class outputs.
NODATA = 255
#: Columns read at once when merging files.
MERGE_COLUMNS = 8 * TILE
#: GDAL creation options shared by every GeoTIFF written here.
_GTIFF = {"driver": "GTiff", "tiled": True, "blockxsize": TILE, "BIGTIFF": "IF_SAFER"}


@dataclass(frozen=True)
class OutputSpec:
    """What the output holds.

    Attributes:
        num_classes: K.
        probabilities: K uint8 probability bands (``round(p·255)``) instead of classes.
        values: "model" (0..K-1) or "labels" (1..K) class values.
    """

    num_classes: int
    probabilities: bool = False
    values: str = "model"

    @property
    def bands(self) -> int:
        """Bands of a final part file (probabilities carry a validity band)."""
        return self.num_classes + 1 if self.probabilities else 1

    def encode(self, sums: Tensor | np.ndarray) -> np.ndarray:
        """(K, h, w) float32 weighted sums → (bands, h, w) uint8 final pixels, on the host.

        The work is done where ``sums`` lies (the GPU during prediction), so only
        uint8 pixels travel.
        """
        sums = torch.as_tensor(sums)
        values, valid = finalize_sums(sums, probabilities=self.probabilities)
        if self.probabilities:
            scaled = torch.round(values.clamp(0.0, 1.0) * PROBABILITY_SCALE).to(torch.uint8)
            scaled = scaled * valid
            mask = (valid * 255).to(torch.uint8)[None]
            return torch.cat([scaled, mask]).cpu().numpy()
        classes = values.to(torch.uint8)
        if self.values == VALUES_LABELS:
            classes = classes + 1
        classes = torch.where(valid, classes, torch.full_like(classes, NODATA))
        return classes[None].cpu().numpy()


def _block_height(rows: int) -> int:
    """Tile height for a part of ``rows`` rows: a multiple of 16, at most TILE."""
    return min(TILE, max(16, -(-rows // 16) * 16))


def _shifted(transform: Affine, rows: int) -> Affine:
    """The transform of the grid that starts ``rows`` rows lower (a north-up grid)."""
    t = transform
    return Affine(t.a, t.b, t.c + t.b * rows, t.d, t.e, t.f + t.e * rows)


def _temporary(final: Path) -> Path:
    """A hidden temporary path beside ``final`` (the naming of :func:`flair2.io.atomic_path`)."""
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=TEMP_SUFFIX, dir=final.parent)
    os.close(fd)
    return Path(name)


class PartsFolder:
    """The ``<output>.parts/`` folder: names, done markers, claims, manifest."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def manifest(self) -> Path:
        """``manifest.json``: the settings the parts were computed with."""
        return self.root / "manifest.json"

    def strip_done(self, strip: int) -> Path:
        """The marker written once every file of strip ``strip`` is complete."""
        return self.root / f"strip{strip:05d}.done"

    def final(self, seg: Segment) -> Path:
        """The final pixels of a segment, ``rows_<a>_<b>.tif``."""
        return self.root / f"{seg.name}.tif"

    def partial(self, seg: Segment, strip: int) -> Path:
        """One strip's float32 weighted sums over a shared segment, merged into :meth:`final`."""
        return self.root / f"{seg.name}.strip{strip:05d}.sums.tif"

    def claim(self, seg: Segment) -> Path:
        """The file whose creation claims a shared segment's merge for one process."""
        return self.root / f"{seg.name}.claim"

    def done_strips(self) -> set[int]:
        """Indexes of the strips marked done (none when the folder does not exist yet)."""
        if not self.root.is_dir():
            return set()
        return {int(p.name[5:10]) for p in self.root.glob("strip?????.done")}

    def prepare(self, manifest: dict[str, Any], overwrite: bool) -> None:
        """Create the folder, or check that the parts in it belong to this run.

        Call it on one process only, before any other writes. Removes what an
        interrupted run left half-written (temporaries, claims).

        Raises:
            ConfigError: the folder holds parts of a run with other settings and
                ``overwrite`` is false.
        """
        if overwrite and self.root.exists():
            shutil.rmtree(self.root)
        if self.manifest.is_file():
            old = json.loads(self.manifest.read_text(encoding="utf-8"))
            differ = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
            if differ:
                raise ConfigError(
                    f"{self.root} holds the parts of an interrupted run with other settings "
                    f"({', '.join(differ)} differ): run with those settings again to finish it, "
                    "or set overwrite: true (or delete the folder) to start afresh"
                )
            done = len(self.done_strips())
            if done:
                log.info("%s: resuming, %d strip(s) already done", self.root, done)
        self.root.mkdir(parents=True, exist_ok=True)
        for leftover in [*self.root.glob(f".*{TEMP_SUFFIX}"), *self.root.glob("*.claim")]:
            leftover.unlink(missing_ok=True)
        write_json_atomic(self.manifest, manifest)


class StripWriter:
    """The part files of one strip, written column chunk by column chunk.

    Segments only this strip covers get their final pixels; shared ones get
    float32 weighted sums. :meth:`commit` renames everything into place and
    writes the strip's done marker; :meth:`abort` removes the temporaries.
    """

    def __init__(
        self,
        parts: PartsFolder,
        grid: WindowGrid,
        strip: int,
        spec: OutputSpec,
        transform: Affine,
        crs: CRS | None,
    ) -> None:
        self.parts = parts
        self.grid = grid
        self.strip = strip
        self.spec = spec
        self.top = grid.rows[strip]
        self.files: list[tuple[Segment, Path, Path, Any]] = []
        try:
            for seg in grid.strip_segments(strip):
                final = parts.partial(seg, strip) if seg.shared else parts.final(seg)
                tmp = _temporary(final)
                profile = {
                    **_GTIFF,
                    "width": grid.width,
                    "height": seg.stop - seg.start,
                    "blockysize": _block_height(seg.stop - seg.start),
                    "transform": _shifted(transform, seg.start),
                    "crs": crs,
                }
                if seg.shared:
                    profile.update(count=spec.num_classes, dtype="float32")
                else:
                    profile.update(count=spec.bands, dtype="uint8", compress="lzw")
                    if not spec.probabilities:
                        profile["nodata"] = NODATA
                self.files.append((seg, final, tmp, rasterio.open(tmp, "w", **profile)))
        except BaseException:
            self.abort()
            raise

    def write(self, col: int, sums: Tensor) -> None:
        """Write (K, strip rows, w) weighted sums whose first column is ``col``."""
        width = sums.shape[-1]
        if width == 0:
            return
        for seg, _, _, dst in self.files:
            part = sums[:, seg.start - self.top : seg.stop - self.top]
            window = Window(col, 0, width, seg.stop - seg.start)
            pixels = part.cpu().numpy() if seg.shared else self.spec.encode(part)
            dst.write(pixels, window=window)

    def commit(self) -> None:
        """Close, rename the files into place and mark the strip done."""
        for *_, dst in self.files:
            dst.close()
        # GDAL does not raise on every failed write (a full disk): a part is
        # read back before it counts as done.
        for _, final, tmp, _ in self.files:
            try:
                check_raster_readable(tmp)
            except OSError as exc:
                self.abort()
                raise OutputError(
                    f"{final}: cannot be written (the file read back is incomplete: {exc}; "
                    "is the disk full?); the strip stays to do"
                ) from exc
        for _, final, tmp, _ in self.files:
            os.replace(tmp, final)
        self.files = []
        write_json_atomic(self.parts.strip_done(self.strip), {"strip": self.strip})

    def abort(self) -> None:
        """Close and delete the temporaries (the strip stays to do)."""
        for _, _, tmp, dst in self.files:
            with contextlib.suppress(Exception):
                dst.close()
            tmp.unlink(missing_ok=True)
        self.files = []


def _claim(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def merge_segment(
    parts: PartsFolder,
    grid: WindowGrid,
    seg: Segment,
    spec: OutputSpec,
    *,
    force: bool = False,
) -> bool:
    """Add the sums of a shared segment's strips into its final file, if all are done.

    Args:
        parts: the parts folder.
        grid: the window grid (the raster's width).
        seg: a shared segment (covered by several strips).
        spec: the output type, to encode the summed probabilities.
        force: merge even if another process holds the claim (only when no
            other process runs, at the end).

    Returns:
        Whether the segment's final file exists afterwards.
    """
    final = parts.final(seg)
    if final.is_file():
        return True
    done = parts.done_strips()
    if not all(k in done for k in seg.strips):
        return False
    claim = parts.claim(seg)
    if not _claim(claim) and not force:
        return False  # another process is merging it
    try:
        sources = [rasterio.open(parts.partial(seg, k)) for k in seg.strips]
        try:
            first = sources[0]
            profile = {
                **_GTIFF,
                "width": grid.width,
                "height": seg.stop - seg.start,
                "blockysize": _block_height(seg.stop - seg.start),
                "transform": first.transform,
                "crs": first.crs,
                "count": spec.bands,
                "dtype": "uint8",
                "compress": "lzw",
            }
            if not spec.probabilities:
                profile["nodata"] = NODATA
            with (
                atomic_path(final, verify=check_raster_readable) as tmp,
                rasterio.open(tmp, "w", **profile) as dst,
            ):
                for col in range(0, grid.width, MERGE_COLUMNS):
                    window = Window(
                        col, 0, min(MERGE_COLUMNS, grid.width - col), seg.stop - seg.start
                    )
                    sums = sources[0].read(window=window)
                    for src in sources[1:]:
                        sums += src.read(window=window)
                    dst.write(spec.encode(sums), window=window)
        finally:
            for src in sources:
                src.close()
        for k in seg.strips:
            parts.partial(seg, k).unlink(missing_ok=True)
    finally:
        claim.unlink(missing_ok=True)
    return True
