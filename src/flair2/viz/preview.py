"""Quick-look images of aerial patches: an RGB PNG or JPEG of three bands of a GeoTIFF.

The 5-band aerial patches (R, G, B, NIR, elevation) do not open as photos in most
viewers; this writes three chosen bands as an 8-bit RGB image, optionally with a
world file (``.pgw``/``.jgw``) so GIS tools place it where the patch lies.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.errors import NotGeoreferencedWarning

from flair2.errors import DataError
from flair2.io import atomic_path, write_text_atomic
from flair2.rasters import read_bands
from flair2.viz.figures import Stretch, stretch

log = logging.getLogger(__name__)

#: Output suffix → (PIL format, world-file suffix).
_FORMATS = {
    ".png": ("PNG", ".pgw"),
    ".jpg": ("JPEG", ".jgw"),
    ".jpeg": ("JPEG", ".jgw"),
}


def preview_array(
    aerial_path: str | os.PathLike[str],
    bands: Sequence[int] = (0, 1, 2),
    stretch_mode: Stretch = "percentile",
) -> np.ndarray:
    """Three bands of a raster as a displayable 8-bit RGB array.

    Args:
        aerial_path: the GeoTIFF (e.g. ``IMG_<id>.tif``).
        bands: three 0-based band indices shown as red, green, blue; (3, 0, 1) gives
            the false colour NIR-R-G of the aerial patches.
        stretch_mode: ``percentile`` maps each band's 2–98 % range to 0–255;
            ``none`` keeps 8-bit values as they are (see
            :func:`flair2.viz.figures.stretch`).

    Returns:
        uint8 (H, W, 3).

    Raises:
        ValueError: ``bands`` does not hold three indices.
        DataError: the file is unreadable or a band is out of range.
    """
    if len(bands) != 3:
        raise ValueError(f"bands must hold 3 indices (red, green, blue), got {list(bands)}")
    image = read_bands(aerial_path, bands)
    scaled = stretch(image, stretch_mode)
    return np.rint(scaled * 255.0).astype(np.uint8)


def _world_file_text(aerial_path: str | os.PathLike[str]) -> str | None:
    """ESRI world-file lines of a raster (pixel centres), None when it is not georeferenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(aerial_path) as src:
            t = src.transform
            if t.is_identity:
                return None
    # A world file gives the centre of the top-left pixel, not its corner.
    x0 = t.c + 0.5 * t.a + 0.5 * t.b
    y0 = t.f + 0.5 * t.d + 0.5 * t.e
    return "\n".join(f"{v:.10f}" for v in (t.a, t.d, t.b, t.e, x0, y0)) + "\n"


def write_preview(
    aerial_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    bands: Sequence[int] = (0, 1, 2),
    stretch: Stretch = "percentile",
    *,
    world_file: bool = False,
    quality: int = 90,
) -> Path:
    """Write an RGB preview of an aerial patch as PNG or JPEG (chosen by the suffix).

    Args:
        aerial_path: the GeoTIFF to show.
        out_path: ``.png``, ``.jpg`` or ``.jpeg`` file to write (atomically).
        bands: three 0-based band indices for red, green, blue.
        stretch: ``percentile`` (2–98 % per band) or ``none`` (8-bit values as is).
        world_file: also write a world file (``.pgw``/``.jgw``) beside the image when
            the patch is georeferenced, so GIS tools place the preview.
        quality: JPEG quality (1–95).

    Returns:
        The image path.

    Raises:
        ValueError: unsupported suffix or bad ``bands``.
        DataError: the aerial file is unreadable.
    """
    out = Path(out_path)
    fmt = _FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"{out}: preview format from the suffix must be one of {', '.join(_FORMATS)}"
        )
    if not Path(aerial_path).is_file():
        raise DataError(f"aerial file not found: {aerial_path}")
    rgb = preview_array(aerial_path, bands, stretch)
    options = {"quality": quality} if fmt[0] == "JPEG" else {}
    with atomic_path(out) as tmp:
        Image.fromarray(rgb).save(tmp, format=fmt[0], **options)
    if world_file:
        text = _world_file_text(aerial_path)
        if text is None:
            log.warning("%s is not georeferenced: no world file written", aerial_path)
        else:
            write_text_atomic(out.with_suffix(fmt[1]), text)
    log.info("preview: %s", out)
    return out
