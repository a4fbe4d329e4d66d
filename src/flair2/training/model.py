"""The model a configuration describes: :func:`create_model` with the config's keys.

Models take plain values (:mod:`flair2.models` never reads a configuration);
this is where the flat :class:`~flair2.config.Config` is mapped onto them, for
training, prediction, detection and ``flair2 model-info`` alike.
"""

from __future__ import annotations

from flair2.config import Config
from flair2.models.create import METADATA_EXTRA, FlairModel, create_model


def metadata_features(cfg: Config) -> int | None:
    """Length of the metadata vector the model takes (45), or None without metadata."""
    return cfg.geo_enc_size + METADATA_EXTRA if cfg.aerial_metadata else None


def build_model(cfg: Config, patch_size: int) -> FlairModel:
    """Create the model a configuration describes, with sizes for ``patch_size``.

    Args:
        cfg: the configuration (keys ``arch``, ``fusion``, ``encoder_name``,
            ``encoder_weights``, ``decoder_name``, ``num_classes``, ``num_channels_aerial``,
            ``num_channels_sat``, the U-TAE keys, ``aerial_metadata``,
            ``geo_enc_size``, ``drop_utae_modality``, ``sat_patch_size``,
            ``aerial_resolution``, ``sat_resolution``).
        patch_size: aerial patch side in pixels, a multiple of 32.

    Returns:
        The model (see :func:`flair2.models.create_model`).
    """
    return create_model(
        cfg.arch,
        encoder_name=cfg.encoder_name,
        encoder_weights=cfg.encoder_weights,
        decoder_name=cfg.decoder_name,
        in_channels=cfg.num_channels_aerial,
        classes=cfg.num_classes,
        patch_size=patch_size,
        metadata_features=metadata_features(cfg),
        sat_in_channels=cfg.num_channels_sat,
        sat_patch_size=cfg.sat_patch_size,
        aerial_resolution=cfg.aerial_resolution,
        sat_resolution=cfg.sat_resolution,
        encoder_widths=cfg.encoder_widths,
        decoder_widths=cfg.decoder_widths,
        out_conv=cfg.out_conv,
        str_conv_k=cfg.str_conv_k,
        str_conv_s=cfg.str_conv_s,
        str_conv_p=cfg.str_conv_p,
        agg_mode=cfg.agg_mode,
        encoder_norm=cfg.encoder_norm,
        n_head=cfg.n_head,
        d_model=cfg.d_model,
        d_k=cfg.d_k,
        pad_value=cfg.pad_value,
        padding_mode=cfg.padding_mode,
        drop_utae_modality=cfg.drop_utae_modality,
        fusion=cfg.fusion,
    )
