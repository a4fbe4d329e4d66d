"""Loading weights into flair2 models: reference checkpoints, our own, bare state dicts.

Three sources are accepted by :func:`load_checkpoint_weights`:

* a Lightning checkpoint of the FLAIR #2 reference (``{"state_dict": ...}``
  with keys ``model.arch_vhr.*``, ``model.arch_hr.*``, ``criterion.N.weight``…);
* a Lightning checkpoint of flair2's task, which holds the network as
  ``self.model`` (keys ``model.<our names>``);
* a bare state dict of the model (keys ``arch_vhr.*``…).

:func:`map_reference_state_dict` is the one place where keys are translated.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from torch import Tensor, nn

from flair2.errors import CheckpointError
from flair2.formats import PATCH_MULTIPLE
from flair2.models.checkpoint_files import read_checkpoint_file

logger = logging.getLogger(__name__)

#: How many keys of each kind an error message lists.
MAX_LISTED = 10

#: Renames from the reference's module names to ours (prefix → prefix).
#: Only the auxiliary head differs: the reference wraps its 1×1 conv in a
#: Sequential after an Upsample; ours is the conv alone, applied first.
REFERENCE_RENAMES: tuple[tuple[str, str], ...] = (("reshape_utae_output.1.", "aux_head."),)

#: ResNet block counts per stage → encoder name (bottleneck blocks have ``conv3``).
_RESNETS: dict[tuple[tuple[int, ...], bool], str] = {
    ((2, 2, 2, 2), False): "resnet18",
    ((3, 4, 6, 3), False): "resnet34",
    ((3, 4, 6, 3), True): "resnet50",
    ((3, 4, 23, 3), True): "resnet101",
    ((3, 8, 36, 3), True): "resnet152",
}


class LoadedCheckpoint(NamedTuple):
    """What :func:`load_checkpoint_weights` loaded.

    Attributes:
        source: "lightning" (a checkpoint with a ``state_dict`` entry) or "state_dict".
        epoch: the checkpoint's epoch, when it records one.
        missing: model keys the checkpoint lacked (only with ``strict=False``).
        unexpected: checkpoint keys the model lacks (only with ``strict=False``).
    """

    source: str
    epoch: int | None
    missing: list[str]
    unexpected: list[str]


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    more = len(keys) - MAX_LISTED
    return shown + (f" (+{more} more)" if more > 0 else "")


def key_differences(
    incoming: Mapping[str, Any], expected: Mapping[str, Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """Compare a state dict with a model's: (missing, unexpected, shape mismatches).

    Mismatches are formatted ``key: checkpoint (a, b) vs model (c, d)``.
    """
    missing = [k for k in expected if k not in incoming]
    unexpected = [k for k in incoming if k not in expected]
    mismatched = []
    for key, want in expected.items():
        got = incoming.get(key)
        if isinstance(got, Tensor) and tuple(got.shape) != tuple(want.shape):
            mismatched.append(f"{key}: checkpoint {tuple(got.shape)} vs model {tuple(want.shape)}")
    return missing, unexpected, mismatched


def shape_report(incoming: Mapping[str, Any], expected: Mapping[str, Tensor]) -> str:
    """'' if ``incoming`` fits ``expected`` exactly, else a one-line account of differences."""
    missing, unexpected, mismatched = key_differences(incoming, expected)
    parts = []
    if missing:
        parts.append(f"missing keys ({len(missing)}): {_listed(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {_listed(unexpected)}")
    if mismatched:
        parts.append(f"shape mismatches ({len(mismatched)}): {_listed(mismatched)}")
    return "; ".join(parts)


def map_reference_state_dict(state: Mapping[str, Any]) -> dict[str, Any]:
    """Translate a checkpoint's weights to flair2 model keys.

    Steps:

    1. a Lightning checkpoint (a mapping with ``state_dict``) is unwrapped;
    2. when any key starts with ``model.`` (the Lightning module's attribute,
       in the reference and in flair2's task alike), only those keys are kept,
       without the prefix; everything else at the top level is dropped: the
       loss weights ``criterion.N.weight`` and any other module the task holds
       beside the network (e.g. an ``ema_model.`` copy);
    3. :data:`REFERENCE_RENAMES` are applied (the reference's
       ``reshape_utae_output.1.*`` becomes ``aux_head.*``).

    U-Net decoder names need no mapping: smp 0.4.0 (the reference's) and the
    installed smp (checked at 0.6.0) both name them ``decoder.blocks.N.conv1.0``…;
    a mismatch there is reported by :func:`load_checkpoint_weights` with the
    installed smp version.

    Args:
        state: a Lightning checkpoint or a state dict.

    Returns:
        A new state dict with flair2 model keys.
    """
    inner = state.get("state_dict")
    if isinstance(inner, Mapping):
        state = inner
    if any(k.startswith("model.") for k in state):
        dropped = sorted({k.split(".", 1)[0] for k in state if not k.startswith("model.")})
        if dropped:
            logger.debug("checkpoint entries outside the model ignored: %s", ", ".join(dropped))
        state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    mapped: dict[str, Any] = {}
    for key, value in state.items():
        for old, new in REFERENCE_RENAMES:
            if key.startswith(old):
                key = new + key[len(old) :]
                break
        mapped[key] = value
    return mapped


def _shape(state: Mapping[str, Any], key: str) -> tuple[int, ...] | None:
    value = state.get(key)
    return tuple(value.shape) if isinstance(value, Tensor) else None


def guess_configuration(state: Mapping[str, Any]) -> dict[str, Any]:
    """Config values a (mapped) state dict appears to come from, as far as they show.

    Returns:
        Keys among ``arch``, ``encoder_name``, ``num_channels_aerial``,
        ``num_classes``, ``aerial_metadata``, ``patch_size`` (from the metadata
        MLP, assuming a stride-32 encoder), ``num_channels_sat``,
        ``encoder_widths``, ``n_head``, ``d_k``, ``d_model``.
    """
    guess: dict[str, Any] = {}
    if any(k.startswith("arch_hr.") for k in state):
        guess["arch"] = "utt"
    elif any(k.startswith("arch_vhr.") for k in state):
        guess["arch"] = "unet"
    counts = []
    for layer in range(1, 5):
        blocks = {
            int(k.split(".")[3])
            for k in state
            if k.startswith(f"arch_vhr.encoder.layer{layer}.") and k.split(".")[3].isdigit()
        }
        counts.append(len(blocks))
    bottleneck = any(".conv3." in k for k in state if k.startswith("arch_vhr.encoder.layer"))
    name = _RESNETS.get((tuple(counts), bottleneck))
    if name:
        guess["encoder_name"] = name
    if shape := _shape(state, "arch_vhr.encoder.conv1.weight"):
        guess["num_channels_aerial"] = shape[1]
    if shape := _shape(state, "arch_vhr.segmentation_head.0.weight"):
        guess["num_classes"] = shape[0]
    if "arch_vhr.encoder.conv1.weight" in state:
        guess["aerial_metadata"] = any(k.startswith("mtd_mlp.") for k in state)
    if shape := _shape(state, "mtd_mlp.enc_mlp.6.weight"):
        guess["patch_size"] = shape[0] * PATCH_MULTIPLE
    if shape := _shape(state, "arch_hr.in_conv.conv.conv.0.weight"):
        guess["num_channels_sat"] = shape[1]
        widths = [shape[0]]
        i = 0
        while (down := _shape(state, f"arch_hr.down_blocks.{i}.conv1.conv.0.weight")) is not None:
            widths.append(down[0])
            i += 1
        guess["encoder_widths"] = widths
    if shape := _shape(state, "arch_hr.temporal_encoder.attention_heads.Q"):
        guess["n_head"], guess["d_k"] = shape
    if shape := _shape(state, "arch_hr.temporal_encoder.inconv.weight"):
        guess["d_model"] = shape[0]
    return guess


def _describe_source(source: Any, name: str | Path | None = None) -> str:
    if name is not None:
        return f"checkpoint {name}"
    if isinstance(source, (str, Path)):
        return f"checkpoint {source}"
    return "checkpoint (in-memory state dict)"


def load_checkpoint_weights(
    model: nn.Module,
    source: str | Path | Mapping[str, Any],
    strict: bool = True,
    *,
    name: str | Path | None = None,
) -> LoadedCheckpoint:
    """Load weights into ``model`` from a checkpoint file or an in-memory dict.

    Args:
        model: a flair2 model (:class:`~flair2.models.utt.UTT` or
            :class:`~flair2.models.unet.AerialUNet`).
        source: path of a ``.ckpt``/``.pt``/``.safetensors`` file, or a loaded
            Lightning checkpoint / state dict. Keys are translated by
            :func:`map_reference_state_dict`.
        strict: with False, missing and unexpected keys are tolerated (and
            logged); shape mismatches always fail.
        name: the file an in-memory ``source`` was read from, for messages.

    Returns:
        What was loaded (:class:`LoadedCheckpoint`).

    Raises:
        CheckpointError: unreadable file, or keys/shapes that do not fit; the
            message lists the first keys of each kind and, where it shows, the
            configuration the checkpoint seems to come from.
    """
    # The file's tensors are copied into the model and dropped: memory-mapping is safe.
    raw = (
        read_checkpoint_file(source, mmap=True) if isinstance(source, (str, Path)) else dict(source)
    )
    wrapped = isinstance(raw.get("state_dict"), Mapping)
    epoch = raw.get("epoch") if wrapped and isinstance(raw.get("epoch"), int) else None
    state = map_reference_state_dict(raw)
    expected = model.state_dict()
    missing, unexpected, mismatched = key_differences(state, expected)
    if mismatched or (strict and (missing or unexpected)):
        report = (
            shape_report(state, expected) if strict else f"shape mismatches: {_listed(mismatched)}"
        )
        message = f"{_describe_source(source, name)} does not fit the model: {report}"
        guess = guess_configuration(state)
        if guess:
            message += "; it looks like a checkpoint of " + ", ".join(
                f"{k}={v}" for k, v in guess.items()
            )
        problems = missing + unexpected + [m.split(":", 1)[0] for m in mismatched]
        if problems and all(k.startswith("arch_vhr.decoder.") for k in problems):
            import segmentation_models_pytorch as smp

            message += (
                "; only U-Net decoder keys differ: the installed segmentation_models_pytorch "
                f"{smp.__version__} may name them differently from the version that wrote "
                "the checkpoint"
            )
        raise CheckpointError(message)
    model.load_state_dict(state, strict=strict)
    if missing or unexpected:
        logger.warning(
            "%s: %d model keys not in the checkpoint (%s), %d checkpoint keys ignored (%s)",
            _describe_source(source, name),
            len(missing),
            _listed(missing),
            len(unexpected),
            _listed(unexpected),
        )
    return LoadedCheckpoint("lightning" if wrapped else "state_dict", epoch, missing, unexpected)
