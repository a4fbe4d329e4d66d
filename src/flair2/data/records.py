"""The record of one patch: every file and value discovery found for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flair2.formats import image_stem


@dataclass(frozen=True)
class SentinelFiles:
    """The three Sentinel-2 files of one zone's super-area."""

    data: Path
    masks: Path
    products: Path


@dataclass(frozen=True)
class PatchRecord:
    """One aerial patch and everything paired with it by patch id.

    Attributes:
        patch_id: the 6 digits of ``IMG_<id>.tif``.
        domain: e.g. ``D004_2021``.
        zone: e.g. ``Z1_UF``.
        aerial: path of ``IMG_<id>.tif``.
        label: path of ``MSK_<id>.tif``, or None (test set without labels).
        sentinel: the zone's Sentinel-2 files.
        centroid: (row, col) of the patch centre in the super-area, Sentinel-2 pixels.
        metadata: the raw aerial metadata record (JSON object) of the patch.
    """

    patch_id: str
    domain: str
    zone: str
    aerial: Path
    label: Path | None
    sentinel: SentinelFiles
    centroid: tuple[int, int]
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def name(self) -> str:
        """The aerial file stem, ``IMG_<id>``."""
        return image_stem(self.patch_id)
