"""``create_model``: a U-T&T, an aerial-only U-Net or a U-TAE from plain values, like smp's.

``arch`` picks the sources: ``utt`` (aerial + Sentinel-2, fused as ``fusion``
says: ``reference``, ``gated`` or ``late``), ``unet`` (aerial only) or
``utae`` (Sentinel-2 only, scores sampled on the aerial mask's grid).

The aerial network is smp's U-Net on ResNet34 by default (the reference's);
``encoder_name`` and ``decoder_name`` pick any other smp encoder (timm's
included) and decoder. Sizes follow from the encoder's ``out_channels``, the
patch size and the Sentinel-2 footprint (``aerial_resolution``,
``sat_resolution``). No configuration object is needed:
:func:`flair2.training.build_model` maps a :class:`~flair2.config.Config` onto
these arguments.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from flair2.errors import ConfigError
from flair2.formats import check_patch_multiple
from flair2.models.fusion import MetadataMLP, footprint_crop_size
from flair2.models.late import LateFusion
from flair2.models.networks import build_unet
from flair2.models.sentinel_head import SentinelHead, SentinelUTAE
from flair2.models.unet import AerialUNet, encoder_stride
from flair2.models.utae import UTAE
from flair2.models.utae_blocks import PaddingMode
from flair2.models.utt import UTT

#: Metadata values besides the 32-value position encoding: altitude 1, camera 2,
#: year 4, sin/cos of month, day and time 6.
METADATA_EXTRA = 13
#: Length of the aerial metadata vector.
METADATA_FEATURES = 32 + METADATA_EXTRA

#: Any model :func:`create_model` builds; all take the same call and return a
#: :class:`~flair2.models.unet.SegmentationOutput`.
FlairModel = AerialUNet | UTT | LateFusion | SentinelUTAE
#: How U-T&T fuses its two sources (see :mod:`flair2.models.utt` and :mod:`flair2.models.late`).
Fusion = Literal["reference", "gated", "late"]


def create_model(
    arch: Literal["utt", "unet", "utae"] = "utt",
    *,
    encoder_name: str = "resnet34",
    encoder_weights: str | None = None,
    decoder_name: str = "unet",
    in_channels: int = 5,
    classes: int = 13,
    patch_size: int = 512,
    metadata_features: int | None = METADATA_FEATURES,
    sat_in_channels: int = 10,
    sat_patch_size: int = 40,
    aerial_resolution: float = 0.2,
    sat_resolution: float = 10.0,
    encoder_widths: Sequence[int] = (64, 64, 128, 128),
    decoder_widths: Sequence[int] = (64, 64, 128, 128),
    out_conv: Sequence[int] = (32, 13),
    str_conv_k: int = 4,
    str_conv_s: int = 2,
    str_conv_p: int = 1,
    agg_mode: str = "att_group",
    encoder_norm: str = "group",
    n_head: int = 16,
    d_model: int = 256,
    d_k: int = 4,
    pad_value: float = 0.0,
    padding_mode: PaddingMode = "reflect",
    drop_utae_modality: float = 0.0,
    fusion: Fusion = "reference",
) -> FlairModel:
    """Create a U-T&T (aerial + Sentinel-2), an aerial-only U-Net or a Sentinel-2-only U-TAE.

    The defaults are the FLAIR #2 reference model at 512 px. Both models are
    called as ``model(aerial, sen2, positions, pad_mask, metadata)`` with
    ``aerial`` B×C×P×P in [0, 1], ``sen2`` B×T×C×S×S, ``positions`` B×T (days),
    ``pad_mask`` B×T (True on padded dates) and ``metadata`` B×45 (or None), and
    return a :class:`~flair2.models.unet.SegmentationOutput` whose ``logits`` are
    B×classes×P×P.

    Args:
        arch: ``utt`` (U-Net + U-TAE fusion), ``unet`` (aerial only) or
            ``utae`` (Sentinel-2 only).
        encoder_name: any smp encoder, timm's ``tu-<name>`` included.
        encoder_weights: None (random), ``imagenet`` or a local weights file.
        decoder_name: an smp decoder (``flair2.models.networks.DECODERS``).
        in_channels: aerial bands.
        classes: output classes.
        patch_size: aerial patch side in pixels, a multiple of 32.
        metadata_features: length of the metadata vector (45), None for none.
        sat_in_channels: Sentinel-2 bands (U-TAE ``input_dim``).
        sat_patch_size: side of the Sentinel-2 crop, in Sentinel-2 pixels.
        aerial_resolution: metres per aerial pixel.
        sat_resolution: metres per Sentinel-2 pixel.
        encoder_widths: U-TAE encoder widths.
        decoder_widths: U-TAE decoder widths.
        out_conv: U-TAE output convolution widths (the last is ``classes``).
        str_conv_k: U-TAE strided convolution kernel.
        str_conv_s: U-TAE strided convolution stride.
        str_conv_p: U-TAE strided convolution padding.
        agg_mode: L-TAE aggregation (``att_group``, ``att_mean``, ``mean``).
        encoder_norm: U-TAE normalisation (``group``, ``batch``, ``instance``).
        n_head: L-TAE heads.
        d_model: L-TAE model width.
        d_k: L-TAE key width.
        pad_value: value of padded dates.
        padding_mode: U-TAE convolution padding.
        drop_utae_modality: probability, in training, of dropping a sample's
            satellite fusion terms (late fusion: the Sentinel-2 term).
        fusion: how ``utt`` fuses: ``reference`` (the FLAIR #2 U-T&T),
            ``gated`` (its terms behind zero-initialised gates) or ``late``
            (per-class weighted geometric mean of two segmenting branches).

    Returns:
        :class:`~flair2.models.utt.UTT`, :class:`~flair2.models.late.LateFusion`,
        :class:`~flair2.models.unet.AerialUNet` or
        :class:`~flair2.models.sentinel_head.SentinelUTAE`.

    Raises:
        ValueError: ``patch_size`` is not a positive multiple of 32.
        ConfigError: the Sentinel-2 crop does not suit the U-TAE or the
            footprint, the encoder/weights cannot be had, or the encoder and
            decoder cannot take ``patch_size`` patches.
    """
    check_patch_multiple(patch_size)
    if arch not in ("utt", "unet", "utae"):
        raise ConfigError(f"config key 'arch': unknown model {arch!r}; choose utt, unet or utae")
    if fusion not in ("reference", "gated", "late"):
        raise ConfigError(
            f"config key 'fusion': unknown fusion {fusion!r}; choose reference, gated or late"
        )
    mlp: MetadataMLP | None = None
    if arch != "utae":
        unet = build_unet(
            encoder_name=encoder_name,
            in_channels=in_channels,
            classes=classes,
            encoder_weights=encoder_weights,
            decoder_name=decoder_name,
            patch_size=patch_size,
        )
        stride = encoder_stride(unet)
        mlp = MetadataMLP(metadata_features, patch_size // stride) if metadata_features else None
        if arch == "unet":
            return AerialUNet(unet, mlp)
    utae = UTAE(
        input_dim=sat_in_channels,
        encoder_widths=list(encoder_widths),
        decoder_widths=list(decoder_widths),
        out_conv=list(out_conv),
        str_conv_k=str_conv_k,
        str_conv_s=str_conv_s,
        str_conv_p=str_conv_p,
        agg_mode=agg_mode,
        encoder_norm=encoder_norm,
        n_head=n_head,
        d_model=d_model,
        d_k=d_k,
        pad_value=pad_value,
        padding_mode=padding_mode,
    )
    try:
        utae.stage_sizes(sat_patch_size)
    except ValueError as exc:
        raise ConfigError(f"config key 'sat_patch_size': {exc}") from None
    crop = footprint_crop_size(patch_size, aerial_resolution, sat_resolution)
    if crop > sat_patch_size:
        raise ConfigError(
            f"config key 'sat_patch_size': {sat_patch_size} px is smaller than the "
            f"footprint of a {patch_size} px aerial patch ({crop} Sentinel-2 px)"
        )
    if arch == "utae" or fusion == "late":
        head = SentinelHead(
            utae.feature_channels, classes, patch_size, aerial_resolution, sat_resolution
        )
        if arch == "utae":
            return SentinelUTAE(utae, head)
        return LateFusion(unet, utae, head, classes, mlp, drop_utae_modality)
    return UTT(
        arch_vhr=unet,
        arch_hr=utae,
        patch_size=patch_size,
        crop_size=crop,
        num_classes=classes,
        metadata_features=metadata_features,
        drop_utae_modality=drop_utae_modality,
        fusion=fusion,
    )
