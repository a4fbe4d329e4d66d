"""Logits → files: per-patch prediction GeoTIFFs and the background writer.

May import ``flair2.classes``, ``flair2.io`` and ``flair2.errors``; it writes
what ``flair2.evaluation`` reads back.
"""

from __future__ import annotations

from flair2.inference.writer import (
    VALUES_TAG,
    AsyncWriter,
    is_done,
    prediction_path,
    probability_path,
    write_prediction,
)

__all__ = [
    "VALUES_TAG",
    "AsyncWriter",
    "is_done",
    "prediction_path",
    "probability_path",
    "write_prediction",
]
