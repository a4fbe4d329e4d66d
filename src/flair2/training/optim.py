"""Optimisers and learning-rate schedules: SGD (the reference's) or AdamW, cosine or plateau."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from flair2.settings import OptimizerSettings


def configure(
    params: Iterable[torch.nn.Parameter] | list[dict[str, Any]],
    settings: OptimizerSettings,
    total_steps: int | None = None,
) -> Any:
    """The optimiser and schedule, in the form Lightning's ``configure_optimizers`` returns.

    Args:
        params: the trainable parameters, or parameter groups (dicts with
            ``params`` and optionally their own ``lr``).
        settings: optimiser, learning rate, momentum, weight decay and schedule.
        total_steps: optimiser steps of the whole run (the cosine schedule needs it).

    Returns:
        The optimiser alone (``scheduler: none``), or a dict with the optimiser and
        its scheduler: ``plateau`` halves the rate when ``val_loss`` stalls (per
        epoch); ``cosine`` warms up linearly for ``warmup_epochs``, then decays to 0
        (per step).
    """
    if settings.optimizer == "adamw":
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(
            params, lr=settings.lr, weight_decay=settings.weight_decay
        )
    else:
        optimizer = torch.optim.SGD(
            params, lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
        )
    if settings.scheduler == "none":
        return optimizer
    if settings.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss", "interval": "epoch"},
        }
    total = max(1, int(total_steps or 1))
    per_epoch = max(1, total // max(1, settings.num_epochs))
    warmup = min(total - 1, settings.warmup_epochs * per_epoch)

    def cosine_with_warmup(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return {
        "optimizer": optimizer,
        "lr_scheduler": {
            "scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup),
            "interval": "step",
        },
    }
