"""``flair2 model-info``: the size and cost of the model a configuration describes."""

from __future__ import annotations

import dataclasses
from typing import Any

from flair2.config import Config
from flair2.models.info import dummy_inputs, model_info
from flair2.training.model import build_model, metadata_features


def describe_model(cfg: Config, patch_size: int, num_dates: int = 12) -> dict[str, Any]:
    """Human-readable size and cost of the configured model, for ``flair2 model-info``.

    The model is built with random encoder weights (nothing is downloaded or read).
    """
    model = build_model(dataclasses.replace(cfg, encoder_weights=None), patch_size)
    inputs = dummy_inputs(
        patch_size,
        sat_size=cfg.sat_patch_size,
        num_dates=num_dates,
        num_channels_aerial=cfg.num_channels_aerial,
        num_channels_sat=cfg.num_channels_sat,
        metadata_features=metadata_features(cfg),
    )
    info = model_info(model, inputs)
    described: dict[str, Any] = {
        "arch": cfg.arch,
        "encoder": cfg.encoder_name,
        "patch size": patch_size,
        "parameters": f"{info['parameters']:,} ({info['parameters'] / 1e6:.2f} M)",
        "GFLOP per forward (batch 1)": f"{info['flops'] / 1e9:.1f}",
    }
    if cfg.with_sentinel():
        described["Sentinel-2 input"] = f"{num_dates} dates × {cfg.sat_patch_size} px"
    return described
