"""The smp network of the aerial branch: any encoder and decoder, any weights.

:func:`build_unet` creates it: a U-Net by default (the reference's), or any smp
decoder of :data:`DECODERS` on any smp encoder, timm's included
(``tu-convnext_tiny``, ``tu-maxvit_tiny_tf_512``…), with encoder weights taken
from nowhere (random), from ImageNet (a download) or from a local file.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import timm
import torch
from segmentation_models_pytorch.base import SegmentationModel
from torch import Tensor, nn

from flair2.errors import CheckpointError, ConfigError
from flair2.models.checkpoint_files import read_checkpoint_file
from flair2.models.checkpoints import shape_report

logger = logging.getLogger(__name__)

#: File suffixes taken as "a local weights file" even when the file is missing.
_WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".tar")
#: Key prefixes stripped from a local encoder file, first match wins.
_ENCODER_PREFIXES = ("model.arch_vhr.encoder.", "arch_vhr.encoder.", "model.encoder.", "encoder.")
#: Prefix of smp's timm encoders ("timm universal").
TIMM_PREFIX = "tu-"

#: Aerial decoders (config key ``decoder_name``) → smp model classes. Every one of
#: them takes the encoder's list of feature maps, so the U-T&T fusion terms added to
#: those maps reach any of them. (smp's DPT is left out: it needs a ViT encoder.)
DECODERS: dict[str, str] = {
    "unet": "Unet",
    "unetplusplus": "UnetPlusPlus",
    "manet": "MAnet",
    "linknet": "Linknet",
    "fpn": "FPN",
    "pspnet": "PSPNet",
    "deeplabv3": "DeepLabV3",
    "deeplabv3plus": "DeepLabV3Plus",
    "pan": "PAN",
    "upernet": "UPerNet",
    "segformer": "Segformer",
}


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.lower().endswith(_WEIGHT_SUFFIXES)


def _one_line(exc: BaseException, lines: int = 2) -> str:
    """The first lines of an error (torch lists every mismatched key, one per line)."""
    parts = [line.strip() for line in str(exc).splitlines() if line.strip()]
    more = len(parts) - 1 - lines
    text = "; ".join(parts[: lines + 1])
    return text + (f" (+{more} more)" if more > 0 else "")


def _timm_size_kwargs(encoder_name: str, patch_size: int | None) -> dict[str, Any]:
    """``img_size`` for timm encoders built for one input size (MaxViT, Swin, CoAtNet…).

    Their attention windows (and relative position tables) are laid out for that
    size; built for the patch size, they take the patches as they are.
    """
    if patch_size is None:
        return {}
    try:
        pretrained = timm.models.get_pretrained_cfg(encoder_name[len(TIMM_PREFIX) :])
    except Exception:  # unknown names are reported by the build itself
        return {}
    if pretrained is not None and getattr(pretrained, "fixed_input_size", False):
        return {"img_size": patch_size}
    return {}


def _probe(
    model_class: type,
    encoder_name: str,
    decoder_name: str,
    in_channels: int,
    classes: int,
    patch_size: int,
    extra: dict[str, Any],
) -> None:
    """Run the network once on the meta device: a patch size it cannot take fails here.

    Nothing is computed or allocated. A network that cannot even be built on the
    meta device is left to the real build, which reports its own error.

    Raises:
        ConfigError: the encoder/decoder pair cannot segment ``patch_size`` patches.
    """
    try:
        with torch.device("meta"):
            model = model_class(
                encoder_name=encoder_name,
                encoder_weights=None,
                in_channels=in_channels,
                classes=classes,
                **extra,
            )
    except Exception:
        return
    model.eval()
    try:
        aerial = torch.empty(1, in_channels, patch_size, patch_size, device="meta")
        out = decode(model, model.encoder(aerial))
    except Exception as exc:
        raise ConfigError(
            f"config keys 'encoder_name'/'decoder_name'/'patch_size': encoder {encoder_name} "
            f"with the {decoder_name} decoder cannot segment {patch_size} px patches "
            f"({type(exc).__name__}: {exc}); choose another encoder, decoder or patch size"
        ) from None
    if tuple(out.shape[-2:]) != (patch_size, patch_size):
        raise ConfigError(
            f"config keys 'encoder_name'/'decoder_name': encoder {encoder_name} with the "
            f"{decoder_name} decoder turns {patch_size} px patches into "
            f"{tuple(out.shape[-2:])} maps; choose another encoder or decoder"
        )


def build_unet(
    encoder_name: str = "resnet34",
    in_channels: int = 5,
    classes: int = 13,
    encoder_weights: str | None = None,
    *,
    decoder_name: str = "unet",
    patch_size: int | None = None,
) -> SegmentationModel:
    """Create the smp network of the aerial branch (a U-Net unless ``decoder_name`` says).

    Args:
        encoder_name: any segmentation_models_pytorch encoder name, timm's
            ``tu-<name>[.<tag>]`` included.
        in_channels: input bands.
        classes: output classes.
        encoder_weights: None (random initialisation), a weight set smp can
            download (``"imagenet"``; needs internet; for ``tu-`` encoders the
            name's tag picks the set), or the path of a local file holding the
            encoder's state dict (torch or safetensors; for smp encoders keys may
            carry an ``encoder.``/``arch_vhr.encoder.`` prefix and a 3-band file
            is adapted to ``in_channels`` as smp adapts ImageNet weights; for
            ``tu-`` encoders, timm's own weights file of the model, adapted by timm).
        decoder_name: a key of :data:`DECODERS`.
        patch_size: side of the aerial patches. When given, encoders made for one
            input size are built for it, and any encoder other than smp's own
            with the U-Net decoder is first run on the meta device, so a size it
            cannot take is a :class:`ConfigError` here rather than a failure later.

    Raises:
        ConfigError: unknown encoder, decoder or weight set, a missing file, a
            failed download, or a patch size the network cannot take.
        CheckpointError: the local file does not fit the encoder.
    """
    model_name = DECODERS.get(decoder_name)
    if model_name is None:
        raise ConfigError(
            f"config key 'decoder_name': unknown decoder {decoder_name!r}; choose one of "
            + ", ".join(DECODERS)
        )
    model_class = getattr(smp, model_name)
    is_timm = encoder_name.startswith(TIMM_PREFIX)
    local: Path | None = None
    if encoder_weights is not None and (
        Path(encoder_weights).is_file() or _looks_like_path(encoder_weights)
    ):
        local = Path(encoder_weights)
        if not local.is_file():
            raise ConfigError(
                f"config key 'encoder_weights': file {local} not found; give an existing "
                "encoder state dict file, 'imagenet' (needs internet) or null (random weights)"
            )
    download = encoder_weights if local is None else None
    extra = _timm_size_kwargs(encoder_name, patch_size) if is_timm else {}
    weights: str | bool | None = download
    if is_timm:
        if download not in (None, "imagenet"):
            raise ConfigError(
                f"config key 'encoder_weights': {download!r} for the timm encoder "
                f"{encoder_name}: use 'imagenet' (the weights the name's tag gives, e.g. "
                "tu-convnext_tiny.fb_in22k), a local file or null"
            )
        # smp's timm encoders take a flag; the name's tag says which weights.
        weights = True if (download or local) else None
    if patch_size is not None and (is_timm or decoder_name != "unet"):
        _probe(model_class, encoder_name, decoder_name, in_channels, classes, patch_size, extra)
    if is_timm and local is not None:
        extra = {**extra, "pretrained_cfg_overlay": {"file": str(local)}}
    try:
        unet = model_class(
            encoder_name=encoder_name,
            encoder_weights=weights,
            in_channels=in_channels,
            classes=classes,
            **extra,
        )
    except KeyError as exc:
        # smp raises KeyError for unknown encoder names and unknown weight sets.
        raise ConfigError(f"config key 'encoder_name'/'encoder_weights': {exc.args[0]}") from None
    except Exception as exc:
        if is_timm and local is not None:
            raise CheckpointError(
                f"config key 'encoder_weights': {local} does not fit encoder {encoder_name} "
                f"with {in_channels} bands: {_one_line(exc)}"
            ) from None
        if weights is None:
            # smp/timm say "unknown model", "not supported for Linknet"... as ValueError,
            # RuntimeError or TypeError: all mean that this pair cannot be built.
            raise ConfigError(
                f"config keys 'encoder_name'/'decoder_name': cannot build the {decoder_name} "
                f"decoder on encoder {encoder_name} ({type(exc).__name__}: {exc})"
            ) from None
        # Downloads fail in many ways (DNS, HTTP, hub cache errors); all mean the same here.
        raise ConfigError(
            f"config key 'encoder_weights': could not download the {download!r} weights of "
            f"{encoder_name} ({type(exc).__name__}: {exc}); this needs internet access. "
            "Alternatives: encoder_weights: null (random initialisation) or the path of a "
            "local file with the encoder's state dict"
        ) from exc
    if local is not None and not is_timm:
        load_encoder_file(unet, local, encoder_name)
    elif local is not None:
        logger.info("loaded encoder weights from %s", local)
    return unet


def load_encoder_file(unet: SegmentationModel, path: Path, encoder_name: str) -> None:
    """Load an encoder state dict from ``path`` into ``unet.encoder``.

    Raises:
        CheckpointError: unreadable file, or keys/shapes that fit neither the
            encoder nor its 3-band version.
    """
    state = read_checkpoint_file(path)
    if isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    for prefix in _ENCODER_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            break
    # smp's ResNet encoders have no classifier; ImageNet files do.
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    encoder = unet.encoder
    problems = shape_report(state, encoder.state_dict())
    if not problems:
        encoder.load_state_dict(state)
        logger.info("loaded encoder weights from %s", path)
        return
    in_channels = encoder._in_channels
    if in_channels != 3:
        # A 3-band file (ImageNet-like): load it into a 3-band encoder, then let
        # smp widen the first convolution exactly as it does for downloads.
        three = smp.encoders.get_encoder(
            encoder_name, in_channels=3, depth=len(encoder.out_channels) - 1
        )
        if not shape_report(state, three.state_dict()):
            three.load_state_dict(state)
            three.set_in_channels(in_channels, pretrained=True)
            encoder.load_state_dict(three.state_dict())
            logger.info(
                "loaded 3-band encoder weights from %s, adapted to %d bands", path, in_channels
            )
            return
    raise CheckpointError(
        f"config key 'encoder_weights': {path} does not fit encoder {encoder_name} "
        f"with {in_channels} bands: {problems}"
    )


#: Decoder class -> whether its forward takes one list of maps (filled on first use).
_TAKES_LIST: dict[type, bool] = {}


def _decoder_takes_list(decoder: nn.Module) -> bool:
    # smp < 0.5 decoders take the feature maps as *args, newer ones as one list.
    kind = type(decoder)
    if kind not in _TAKES_LIST:
        params = inspect.signature(kind.forward).parameters.values()
        _TAKES_LIST[kind] = not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    return _TAKES_LIST[kind]


def decode(unet: SegmentationModel, features: list[Tensor]) -> Tensor:
    """Run the smp network's decoder and segmentation head on encoder feature maps.

    Any decoder of :data:`DECODERS`: each reads the stages it needs from the list
    (and its segmentation head upsamples to the input size where the decoder stops
    short of it).

    Args:
        unet: the smp model.
        features: its encoder's maps (``unet.encoder(x)``), possibly modified.

    Returns:
        B×classes×H×W logits.
    """
    takes_list = _decoder_takes_list(unet.decoder)
    out = unet.decoder(features) if takes_list else unet.decoder(*features)
    return unet.segmentation_head(out)
