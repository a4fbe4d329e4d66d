"""Models: tensors in, logits out (U-T&T, the aerial U-Net, U-TAE, L-TAE).

This package never imports ``flair2.data``, ``flair2.task`` or ``flair2.cli``
(only the factory reads a :class:`flair2.config.Config`).
"""

from flair2.models.checkpoints import (
    LoadedCheckpoint,
    load_checkpoint_weights,
    map_reference_state_dict,
)
from flair2.models.factory import build_model
from flair2.models.info import describe_model, dummy_inputs, model_info
from flair2.models.ltae import LTAE2d
from flair2.models.unet import (
    AerialUNet,
    SegmentationOutput,
    build_unet,
    compile_unet,
    set_channels_last,
)
from flair2.models.utae import UTAE
from flair2.models.utt import UTT

__all__ = [
    "UTAE",
    "UTT",
    "AerialUNet",
    "LTAE2d",
    "LoadedCheckpoint",
    "SegmentationOutput",
    "build_model",
    "build_unet",
    "compile_unet",
    "describe_model",
    "dummy_inputs",
    "load_checkpoint_weights",
    "map_reference_state_dict",
    "model_info",
    "set_channels_last",
]
