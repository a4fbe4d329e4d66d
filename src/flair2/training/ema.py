"""An exponential moving average (EMA) of a module's weights.

After each optimiser step the shadow copy moves towards the current weights::

    shadow ← d · shadow + (1 − d) · weights,   d = min(decay, (1 + n) / (10 + n))

starting from the weights training starts from, ``n`` being the number of updates
made before this one. The warm-up (timm's ``ModelEmaV3``, on by default) matters for
short runs: with a fixed 0.999 the average of a run of a few hundred optimiser steps
is still mostly its random initialisation (0.999³⁰⁰ ≈ 0.74 of it), and that is what
would be validated, checkpointed and predicted with. With it, the average follows the
weights closely at first and d reaches 0.99 after ~890 updates, 0.999 after ~9000.
Floating-point buffers
(BatchNorm running statistics) are averaged too; integer buffers (BatchNorm's
batch counter) are copied.

This module knows nothing of Lightning: :class:`~flair2.training.task.SegmentationTask`
updates the average, swaps it in for validation and writes it into checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn


class WeightAverage:
    """Shadow weights of one module, keyed like its ``state_dict``.

    Args:
        decay: the factor in (0, 1) the shadow keeps at each update (its ceiling with
            ``warmup``).
        warmup: ramp the factor up with the number of updates,
            ``min(decay, (1 + n) / (10 + n))``; False = ``decay`` from the first update.
    """

    def __init__(self, decay: float, warmup: bool = True) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        #: name → averaged tensor; None until :meth:`start` or :meth:`load`.
        self.shadow: dict[str, Tensor] | None = None
        #: how many updates the shadow has seen (informative).
        self.updates = 0

    @property
    def started(self) -> bool:
        """Whether the shadow holds weights."""
        return self.shadow is not None

    @torch.no_grad()
    def start(self, module: nn.Module) -> None:
        """Make the shadow a copy of ``module``'s current weights and buffers."""
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}
        self.updates = 0

    def load(self, state: Mapping[str, Tensor], updates: int = 0) -> None:
        """Take shadow weights saved earlier (moved to the module's device on first use)."""
        self.shadow = {k: v.detach().clone() for k, v in state.items()}
        self.updates = int(updates)

    def _pairs(self, module: nn.Module) -> list[tuple[Tensor, Tensor]]:
        """(live, shadow) tensor per state-dict entry, the shadow moved to the live one's device."""
        if self.shadow is None:
            raise RuntimeError("the weight average has not started: call start() or load()")
        live = module.state_dict()
        if live.keys() != self.shadow.keys():
            missing = sorted(live.keys() - self.shadow.keys())[:3]
            extra = sorted(self.shadow.keys() - live.keys())[:3]
            raise RuntimeError(
                f"EMA weights do not fit the model (missing {missing}, unexpected {extra})"
            )
        pairs = []
        for key, value in live.items():
            shadow = self.shadow[key]
            if shadow.device != value.device or shadow.dtype != value.dtype:
                shadow = self.shadow[key] = shadow.to(device=value.device, dtype=value.dtype)
            pairs.append((value, shadow))
        return pairs

    def current_decay(self) -> float:
        """The factor the next update uses (``decay``, or less during the warm-up)."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """One step: ``shadow ← d · shadow + (1 − d) · weights``, d = :meth:`current_decay`."""
        decay = self.current_decay()
        floats: tuple[list[Tensor], list[Tensor]] = ([], [])
        for value, shadow in self._pairs(module):
            if value.is_floating_point():
                floats[0].append(shadow)
                floats[1].append(value)
            else:
                shadow.copy_(value)
        if floats[0]:
            # One fused kernel per operation for all tensors (hundreds of them): the
            # same arithmetic as shadow.mul_(d).add_(w, alpha=1 - d) tensor by tensor.
            torch._foreach_mul_(floats[0], decay)
            torch._foreach_add_(floats[0], floats[1], alpha=1.0 - decay)
        self.updates += 1

    @torch.no_grad()
    def swap(self, module: nn.Module) -> None:
        """Exchange the module's weights and the shadow's, in place (twice = unchanged)."""
        for value, shadow in self._pairs(module):
            held = value.clone()
            value.copy_(shadow)
            shadow.copy_(held)

    def state_dict(self) -> dict[str, Tensor]:
        """The shadow tensors themselves (not copies), keyed like the module's ``state_dict``."""
        if self.shadow is None:
            raise RuntimeError("the weight average has not started: call start() or load()")
        return dict(self.shadow)
