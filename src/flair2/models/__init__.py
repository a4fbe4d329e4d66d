"""Models: tensors in, logits out (U-T&T, the aerial U-Net, U-TAE, L-TAE).

This package takes plain values and tensors and never imports a configuration,
``flair2.data`` or ``flair2.training`` (checked by import-linter): create a model
with :func:`create_model`, as with segmentation_models_pytorch.
"""

from flair2.models.checkpoint_files import read_checkpoint_file, trusted_checkpoints
from flair2.models.checkpoints import (
    LoadedCheckpoint,
    load_checkpoint_weights,
    map_reference_state_dict,
)
from flair2.models.create import create_model
from flair2.models.info import dummy_inputs, model_info
from flair2.models.ltae import LTAE2d
from flair2.models.networks import build_unet
from flair2.models.unet import (
    AerialUNet,
    SegmentationOutput,
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
    "build_unet",
    "compile_unet",
    "create_model",
    "dummy_inputs",
    "load_checkpoint_weights",
    "map_reference_state_dict",
    "model_info",
    "read_checkpoint_file",
    "set_channels_last",
    "trusted_checkpoints",
]
