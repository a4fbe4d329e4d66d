"""The aerial U-Net (segmentation_models_pytorch) and the aerial-only model.

:func:`build_unet` creates the smp ``Unet`` with its encoder weights taken from
nowhere (random), from ImageNet (a download) or from a local file.
:class:`AerialUNet` is the aerial-only model (leaderboard rows 1–2), optionally
with the metadata MLP; it has the same call signature as U-T&T.
"""

from __future__ import annotations

import functools
import inspect
import logging
from pathlib import Path
from typing import NamedTuple

import segmentation_models_pytorch as smp
from torch import Tensor, nn

from flair2.errors import CheckpointError, ConfigError
from flair2.models.checkpoints import read_checkpoint_file, shape_report
from flair2.models.fusion import MetadataMLP, add_metadata

logger = logging.getLogger(__name__)

#: File suffixes taken as "a local weights file" even when the file is missing.
_WEIGHT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".safetensors", ".tar")
#: Key prefixes stripped from a local encoder file, first match wins.
_ENCODER_PREFIXES = ("model.arch_vhr.encoder.", "arch_vhr.encoder.", "model.encoder.", "encoder.")


class SegmentationOutput(NamedTuple):
    """What every flair2 model returns.

    Attributes:
        logits: B×K×H×W class scores of the aerial branch (the prediction).
        aux_logits: B×K×H×W class scores of the satellite branch (U-T&T's
            auxiliary head), or None for the aerial-only model.
    """

    logits: Tensor
    aux_logits: Tensor | None = None


def _looks_like_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.lower().endswith(_WEIGHT_SUFFIXES)


def build_unet(
    encoder_name: str = "resnet34",
    in_channels: int = 5,
    classes: int = 13,
    encoder_weights: str | None = None,
) -> smp.Unet:
    """Create the smp U-Net.

    Args:
        encoder_name: any segmentation_models_pytorch encoder name.
        in_channels: input bands.
        classes: output classes.
        encoder_weights: None (random initialisation), a weight set smp can
            download (``"imagenet"``; needs internet), or the path of a local
            file holding the encoder's state dict (torch or safetensors; keys
            may carry an ``encoder.``/``arch_vhr.encoder.`` prefix; a 3-band
            file is adapted to ``in_channels`` as smp adapts ImageNet weights).

    Raises:
        ConfigError: unknown encoder or weight set, a missing file, or a failed download.
        CheckpointError: the local file does not fit the encoder.
    """
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
    try:
        unet = smp.Unet(
            encoder_name=encoder_name,
            encoder_weights=download,
            in_channels=in_channels,
            classes=classes,
        )
    except KeyError as exc:
        # smp raises KeyError for unknown encoder names and unknown weight sets.
        raise ConfigError(f"config key 'encoder_name'/'encoder_weights': {exc.args[0]}") from None
    except Exception as exc:
        if download is None:
            raise
        # Downloads fail in many ways (DNS, HTTP, hub cache errors); all mean the same here.
        raise ConfigError(
            f"config key 'encoder_weights': could not download the {download!r} weights of "
            f"{encoder_name} ({type(exc).__name__}: {exc}); this needs internet access. "
            "Alternatives: encoder_weights: null (random initialisation) or the path of a "
            "local file with the encoder's state dict"
        ) from exc
    if local is not None:
        load_encoder_file(unet, local, encoder_name)
    return unet


def load_encoder_file(unet: smp.Unet, path: Path, encoder_name: str) -> None:
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


def decode(unet: smp.Unet, features: list[Tensor]) -> Tensor:
    """Run the smp U-Net's decoder and segmentation head on encoder feature maps.

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


def encoder_stride(unet: smp.Unet) -> int:
    """Downsampling factor of the deepest encoder map (32 for depth 5)."""
    return int(getattr(unet.encoder, "output_stride", 2 ** (len(unet.encoder.out_channels) - 1)))


def check_aerial(unet: smp.Unet, aerial: Tensor) -> None:
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


class AerialUNet(nn.Module):
    """The aerial-only model: smp U-Net (``arch_vhr``), optionally with metadata.

    Args:
        arch_vhr: the smp U-Net (see :func:`build_unet`).
        mtd_mlp: the metadata MLP; its outputs are laid along the height of the
            deepest encoder map, so its size must equal that map's height.
    """

    def __init__(self, arch_vhr: smp.Unet, mtd_mlp: MetadataMLP | None = None) -> None:
        super().__init__()
        self.arch_vhr = arch_vhr
        self.mtd_mlp = mtd_mlp

    def forward(
        self,
        aerial: Tensor,
        sen2: Tensor | None = None,
        positions: Tensor | None = None,
        pad_mask: Tensor | None = None,
        metadata: Tensor | None = None,
    ) -> SegmentationOutput:
        """Segment aerial patches.

        Args:
            aerial: B×C×H×W float.
            sen2, positions, pad_mask: ignored (same signature as U-T&T).
            metadata: B×45 encoding, required when the model has the metadata
                MLP, ignored otherwise.

        Returns:
            ``SegmentationOutput(logits=B×K×H×W, aux_logits=None)``.
        """
        check_aerial(self.arch_vhr, aerial)
        features = self.arch_vhr.encoder(aerial)
        if self.mtd_mlp is not None:
            features = list(features)
            features[-1] = add_metadata(features[-1], self.mtd_mlp, metadata)
        return SegmentationOutput(decode(self.arch_vhr, features), None)
