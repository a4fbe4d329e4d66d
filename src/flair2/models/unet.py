"""The aerial network (segmentation_models_pytorch) and the aerial-only model.

:func:`build_unet` creates the smp network of the aerial branch: a U-Net by
default (the reference's), or any smp decoder of :data:`DECODERS` on any smp
encoder, timm's included (``tu-convnext_tiny``, ``tu-maxvit_tiny_tf_512``…), with
encoder weights taken from nowhere (random), from ImageNet (a download) or from
a local file. :class:`AerialUNet` is the aerial-only model (leaderboard rows
1–2), optionally with the metadata MLP; it has the same call signature as U-T&T.
"""

from __future__ import annotations

import functools
import inspect
import logging
from pathlib import Path
from typing import Any, NamedTuple

import segmentation_models_pytorch as smp
import timm
import torch
from segmentation_models_pytorch.base import SegmentationModel
from torch import Tensor, nn

from flair2.errors import CheckpointError, ConfigError
from flair2.models.checkpoints import read_checkpoint_file, shape_report
from flair2.models.fusion import MetadataMLP, add_metadata

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
#: Decoders that batch-normalise image-level pooled features: in training they need
#: batches of two or more samples (the config checks ``batch_size``).
POOLED_NORM_DECODERS = frozenset({"deeplabv3", "deeplabv3plus", "pan", "upernet"})


class SegmentationOutput(NamedTuple):
    """What every flair2 model returns.

    Attributes:
        logits: B×K×H×W class scores of the aerial branch (the prediction).
        aux_logits: B×K×H×W class scores of the satellite branch (U-T&T's
            auxiliary head), or None for the aerial-only model and when a
            forward was told ``with_aux=False``.
    """

    logits: Tensor
    aux_logits: Tensor | None = None


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


@functools.cache
def _decoder_takes_list(decoder_type: type) -> bool:
    # smp < 0.5 decoders take the feature maps as *args, newer ones as one list.
    params = inspect.signature(decoder_type.forward).parameters.values()
    return not any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)


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
    if _decoder_takes_list(type(unet.decoder)):
        out = unet.decoder(features)
    else:
        out = unet.decoder(*features)
    return unet.segmentation_head(out)


def encoder_stride(unet: SegmentationModel) -> int:
    """Downsampling factor of the deepest encoder map (32 for depth 5; less when dilated)."""
    return int(getattr(unet.encoder, "output_stride", 2 ** (len(unet.encoder.out_channels) - 1)))


def check_aerial(unet: SegmentationModel, aerial: Tensor) -> None:
    """Raise ValueError unless ``aerial`` is B×C×H×W with the bands and stride of ``unet``."""
    if aerial.dim() != 4:
        raise ValueError(f"aerial must be B×C×H×W, got shape {tuple(aerial.shape)}")
    channels = unet.encoder.out_channels[0]
    if aerial.shape[1] != channels:
        raise ValueError(
            f"aerial must have {channels} bands, got {aerial.shape[1]} (shape B×C×H×W)"
        )
    stride = encoder_stride(unet)
    if aerial.shape[-2] % stride or aerial.shape[-1] % stride:
        raise ValueError(
            f"aerial height and width must be multiples of {stride}, got {tuple(aerial.shape[-2:])}"
        )


def set_channels_last(model: nn.Module, enabled: bool) -> None:
    """Run a flair2 model's aerial U-Net (``model.arch_vhr``) channels-last, or back.

    Only the memory order of the U-Net's 4-D weights changes (state-dict keys and
    values stay), and the model lays its aerial input out the same way. Logits
    equal the default order's to 1e-5 relative. The U-TAE and the fusion stay in
    the default order: they hold few of the FLOPs, and channels-last made their
    CPU gradients drift further from float64 (bench/README.md).
    """
    model.arch_vhr.to(memory_format=torch.channels_last if enabled else torch.contiguous_format)
    model.channels_last = enabled


def compile_unet(model: nn.Module) -> None:
    """Compile a flair2 model's aerial U-Net (encoder, decoder, head) in place.

    ``torch.compile`` with static shapes: the U-Net's inputs are fixed by the patch
    size and the batch, so it compiles once (and once more for a last, smaller
    batch). The U-TAE stays eager: its input changes with the number of Sentinel-2
    dates of each batch, which would recompile the whole model again and again.
    In place (``Module.compile``): state-dict keys stay those of checkpoints.
    """
    unet = model.arch_vhr
    for part in (unet.encoder, unet.decoder, unet.segmentation_head):
        part.compile(dynamic=False)


def aerial_memory_format(model: nn.Module, aerial: Tensor) -> Tensor:
    """``aerial`` in the memory order of the model's U-Net (see :func:`set_channels_last`)."""
    if getattr(model, "channels_last", False):
        return aerial.contiguous(memory_format=torch.channels_last)
    return aerial


class AerialUNet(nn.Module):
    """The aerial-only model: the smp network (``arch_vhr``), optionally with metadata.

    Args:
        arch_vhr: the smp network (see :func:`build_unet`).
        mtd_mlp: the metadata MLP; its outputs are laid along the height of the
            deepest encoder map, so its size must equal that map's height.
    """

    def __init__(self, arch_vhr: SegmentationModel, mtd_mlp: MetadataMLP | None = None) -> None:
        super().__init__()
        self.arch_vhr = arch_vhr
        self.mtd_mlp = mtd_mlp
        #: Whether the U-Net runs channels-last (:func:`set_channels_last`).
        self.channels_last = False

    def forward(
        self,
        aerial: Tensor,
        sen2: Tensor | None = None,
        positions: Tensor | None = None,
        pad_mask: Tensor | None = None,
        metadata: Tensor | None = None,
        with_aux: bool = True,
    ) -> SegmentationOutput:
        """Segment aerial patches.

        Args:
            aerial: B×C×H×W float.
            sen2, positions, pad_mask: ignored (same signature as U-T&T).
            metadata: B×45 encoding, required when the model has the metadata
                MLP, ignored otherwise.
            with_aux: ignored (this model has no auxiliary head).

        Returns:
            ``SegmentationOutput(logits=B×K×H×W, aux_logits=None)``.
        """
        check_aerial(self.arch_vhr, aerial)
        features = self.arch_vhr.encoder(aerial_memory_format(self, aerial))
        if self.mtd_mlp is not None:
            features = list(features)
            features[-1] = add_metadata(features[-1], self.mtd_mlp, metadata)
        return SegmentationOutput(decode(self.arch_vhr, features), None)
