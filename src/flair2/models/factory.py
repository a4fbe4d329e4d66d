"""Build the configured model: U-T&T (``arch: utt``) or the aerial-only U-Net (``arch: unet``).

The aerial network is smp's U-Net on ResNet34 by default (the reference's); the
config keys ``encoder_name`` and ``decoder_name`` pick any other smp encoder
(timm's included) and decoder.
"""

from __future__ import annotations

from torch import nn

from flair2.config import Config
from flair2.errors import ConfigError
from flair2.models.fusion import MetadataMLP, footprint_crop_size
from flair2.models.unet import AerialUNet, build_unet, encoder_stride
from flair2.models.utae import UTAE
from flair2.models.utt import UTT

#: Metadata values besides the position encoding: altitude 1, camera 2, year 4,
#: sin/cos of month, day and time 6.
METADATA_EXTRA = 13
#: Every supported patch size is a multiple of this (the encoders' downsampling).
PATCH_MULTIPLE = 32


def metadata_features(cfg: Config) -> int | None:
    """Length of the metadata vector the model takes (45), or None without metadata."""
    return cfg.geo_enc_size + METADATA_EXTRA if cfg.aerial_metadata else None


def build_utae(cfg: Config) -> UTAE:
    """The Sentinel-2 U-TAE from the config's U-TAE keys."""
    return UTAE(
        input_dim=cfg.num_channels_sat,
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
    )


def build_model(cfg: Config, patch_size: int) -> nn.Module:
    """Create the model a configuration describes, with sizes for ``patch_size``.

    Args:
        cfg: the configuration (keys ``arch``, ``encoder_name``,
            ``encoder_weights``, ``decoder_name``, ``num_classes``, ``num_channels_aerial``,
            ``num_channels_sat``, the U-TAE keys, ``aerial_metadata``,
            ``geo_enc_size``, ``drop_utae_modality``, ``sat_patch_size``,
            ``aerial_resolution``, ``sat_resolution``).
        patch_size: aerial patch side in pixels, a multiple of 32.

    Returns:
        :class:`~flair2.models.utt.UTT` or :class:`~flair2.models.unet.AerialUNet`;
        both are called as ``model(aerial, sen2, positions, pad_mask, metadata)``
        and return a :class:`~flair2.models.unet.SegmentationOutput`.

    Raises:
        ValueError: ``patch_size`` is not a positive multiple of 32.
        ConfigError: the Sentinel-2 crop does not suit the U-TAE or the
            footprint, the encoder/weights cannot be had, or the encoder and
            decoder cannot take ``patch_size`` patches.
    """
    if patch_size < PATCH_MULTIPLE or patch_size % PATCH_MULTIPLE:
        raise ValueError(f"patch size must be a multiple of {PATCH_MULTIPLE}, got {patch_size}")
    unet = build_unet(
        encoder_name=cfg.encoder_name,
        in_channels=cfg.num_channels_aerial,
        classes=cfg.num_classes,
        encoder_weights=cfg.encoder_weights,
        decoder_name=cfg.decoder_name,
        patch_size=patch_size,
    )
    n_meta = metadata_features(cfg)
    if cfg.arch == "unet":
        mlp = MetadataMLP(n_meta, patch_size // encoder_stride(unet)) if n_meta else None
        return AerialUNet(unet, mlp)
    utae = build_utae(cfg)
    try:
        utae.stage_sizes(cfg.sat_patch_size)
    except ValueError as exc:
        raise ConfigError(f"config key 'sat_patch_size': {exc}") from None
    crop = footprint_crop_size(patch_size, cfg.aerial_resolution, cfg.sat_resolution)
    if crop > cfg.sat_patch_size:
        raise ConfigError(
            f"config key 'sat_patch_size': {cfg.sat_patch_size} px is smaller than the "
            f"footprint of a {patch_size} px aerial patch ({crop} Sentinel-2 px)"
        )
    return UTT(
        arch_vhr=unet,
        arch_hr=utae,
        patch_size=patch_size,
        crop_size=crop,
        num_classes=cfg.num_classes,
        metadata_features=n_meta,
        drop_utae_modality=cfg.drop_utae_modality,
    )
