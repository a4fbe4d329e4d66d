"""Checkpoints → files: one ``PRED_<id>.tif`` per test patch, ensembles, QGIS styles.

:func:`predict` runs one checkpoint or an ensemble (:mod:`~flair2.prediction.ensemble`)
over the test split and writes georeferenced GeoTIFFs through a background
writer (:mod:`~flair2.prediction.writer`); :mod:`flair2.evaluation` reads them back.
"""

from flair2.prediction.patches import PredictResult, predict
from flair2.prediction.writer import (
    AsyncWriter,
    is_done,
    prediction_path,
    probability_path,
    write_prediction,
)

__all__ = [
    "AsyncWriter",
    "PredictResult",
    "is_done",
    "predict",
    "prediction_path",
    "probability_path",
    "write_prediction",
]
