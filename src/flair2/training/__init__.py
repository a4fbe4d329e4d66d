"""Training: the Lightning task, losses, optimisers, weight averaging, callbacks, ``train()``.

:mod:`~flair2.training.trainer` is the one place that builds a Lightning Trainer,
for training, prediction and detection alike; :mod:`~flair2.training.model` maps
a configuration onto :func:`flair2.models.create_model`.
"""

from flair2.training.fit import TrainResult, train
from flair2.training.model import build_model
from flair2.training.task import SegmentationTask
from flair2.training.trainer import create_trainer, fit_trainer

__all__ = [
    "SegmentationTask",
    "TrainResult",
    "build_model",
    "create_trainer",
    "fit_trainer",
    "train",
]
