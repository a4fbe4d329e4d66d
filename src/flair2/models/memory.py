"""Training memory: recompute the U-Net decoder's last blocks in backward.

The decoder's last blocks run at a quarter and at full resolution: in training
their stored activations (the upsampled maps, each convolution's and batch
norm's output) are the largest of the model, about 650 MB at 512 px and batch 4
for the reference U-Net. With :func:`checkpoint_decoder_blocks` they are not
stored but recomputed from the block's inputs during backward (a few percent
more compute: these blocks have few channels).

The recomputation runs the same operations on the same inputs, so outputs and
gradients are those of the plain model; batch norm's running statistics are
saved before it and restored after, so they are updated once per step, as
without checkpointing. The modules are not wrapped: state-dict keys stay
those of checkpoints.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


@contextlib.contextmanager
def _frozen_batch_norm_buffers(module: nn.Module) -> Iterator[None]:
    """Restore every batch-norm buffer of ``module`` on exit (the recomputation's updates)."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{k: b.clone() for k, b in m.named_buffers(recurse=False)} for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for norm, buffers in zip(norms, saved, strict=True):
                for name, value in buffers.items():
                    getattr(norm, name).copy_(value)


def checkpoint_decoder_blocks(unet: nn.Module, count: int) -> None:
    """Recompute the last ``count`` blocks of an smp U-Net decoder in backward.

    Only while training with gradients; evaluation and prediction run the blocks
    as they are.

    Args:
        unet: an smp ``Unet`` (``unet.decoder.blocks``).
        count: blocks from the end (0: none).

    Raises:
        ValueError: the decoder has no ``blocks`` or fewer than ``count``.
    """
    blocks = getattr(getattr(unet, "decoder", None), "blocks", None)
    if count == 0:
        return
    if not isinstance(blocks, nn.ModuleList):
        raise ValueError(
            "checkpoint_decoder_blocks needs the Unet decoder (decoder_name: unet), "
            f"got {type(getattr(unet, 'decoder', None)).__name__}"
        )
    if not 0 < count <= len(blocks):
        raise ValueError(f"the decoder has {len(blocks)} blocks, cannot checkpoint {count}")
    for block in list(blocks)[-count:]:
        block.forward = _checkpointed(block)


def _checkpointed(block: nn.Module) -> Any:
    plain = block.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        if not (block.training and torch.is_grad_enabled()):
            return plain(*args, **kwargs)
        return checkpoint(
            plain,
            *args,
            use_reentrant=False,
            context_fn=lambda: (contextlib.nullcontext(), _frozen_batch_norm_buffers(block)),
            **kwargs,
        )

    return forward
