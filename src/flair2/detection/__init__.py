"""Whole-area detection: a trained model over a georeferenced raster of any size.

Windows (:mod:`~flair2.detection.grid`), the aerial and Sentinel-2 readers
(:mod:`~flair2.detection.reader`, :mod:`~flair2.detection.sentinel`), the
per-window metadata, the prediction loop and its strips
(:mod:`~flair2.detection.loop`), the part files and the Cloud-Optimized GeoTIFF
(:mod:`~flair2.detection.writer`), the settings file
(:mod:`~flair2.detection.settings`) and :func:`detect`, which runs them.
"""

from flair2.detection.runner import DetectResult, detect
from flair2.detection.settings import DetectSettings, load_detect_settings

__all__ = ["DetectResult", "DetectSettings", "detect", "load_detect_settings"]
