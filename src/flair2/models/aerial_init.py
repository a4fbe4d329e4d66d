"""Starting a model's aerial network from another checkpoint (``init_aerial_from``).

The aerial network is the smp network ``arch_vhr`` and, when configured, the
metadata MLP ``mtd_mlp``: every model but the U-TAE has them under these names,
so a trained U-Net's checkpoint (flair2's, the reference's, or a bare state
dict) can start a U-T&T of any fusion. Only those weights are copied; the
Sentinel-2 branch and the fusion keep their initialisation.
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import nn

from flair2.errors import CheckpointError
from flair2.models.checkpoints import (
    key_differences,
    map_reference_state_dict,
    read_checkpoint_file,
)

logger = logging.getLogger(__name__)

#: State-dict prefixes of the aerial network in every flair2 model that has one.
AERIAL_PREFIXES = ("arch_vhr.", "mtd_mlp.")


def is_aerial_parameter(name: str) -> bool:
    """Whether a model's parameter (or buffer) belongs to the aerial network."""
    return name.startswith(AERIAL_PREFIXES)


def load_aerial_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Copy the aerial network's weights of a checkpoint into ``model``.

    Args:
        model: a flair2 model with an aerial network (U-Net or U-T&T, any fusion).
        path: a checkpoint file (``.ckpt``, ``.pt``, ``.safetensors``) of a model
            with the same aerial network.

    Returns:
        The state-dict keys loaded (every aerial key of ``model``).

    Raises:
        CheckpointError: unreadable file, the model has no aerial network, or
            the checkpoint's aerial keys or shapes differ from the model's.
    """
    expected = {k: v for k, v in model.state_dict().items() if is_aerial_parameter(k)}
    if not expected:
        raise CheckpointError("init_aerial_from: this model has no aerial network to initialise")
    state = map_reference_state_dict(read_checkpoint_file(path, mmap=True))
    incoming = {k: v for k, v in state.items() if is_aerial_parameter(k)}
    missing, unexpected, mismatched = key_differences(incoming, expected)
    if missing or unexpected or mismatched:
        problems = missing[:3] + unexpected[:3] + mismatched[:3]
        raise CheckpointError(
            f"init_aerial_from: {path} does not hold this model's aerial network "
            f"({len(missing)} keys missing, {len(unexpected)} unexpected, "
            f"{len(mismatched)} of another shape: {', '.join(problems)}); "
            "give a checkpoint trained with the same encoder, decoder, patch size and metadata"
        )
    model.load_state_dict(incoming, strict=False)
    logger.info("aerial network initialised from %s (%d tensors)", path, len(incoming))
    return sorted(incoming)
