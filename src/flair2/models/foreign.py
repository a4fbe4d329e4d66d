"""Starting a flair2 model from another code's checkpoint (``init_weights``).

IGN publishes trained land-cover models for the same imagery, whose files other
codes cannot load as they are (IGNF/FLAIR-1 #14, IGNF/FLAIR-HUB #2): each code
wraps the network differently. :func:`load_foreign_weights` recognises the
layouts below (:data:`LAYOUTS`), translates their keys to flair2's, loads every
tensor whose shape fits, maps a classification head trained on another
nomenclature onto flair2's 13 classes (:data:`flair2.classes.NOMENCLATURES`) and reports what
it loaded and what it left at its initialisation, and why.

Layouts, after unwrapping (a Lightning ``state_dict``, a ``{"model": …}``
dict, DDP's ``module.`` prefix) and dropping the Lightning module's ``model.``
prefix (other top-level entries, e.g. the loss weights, are not the network):

* ``flair2``: flair2's and the FLAIR #2 reference's own names
  (``arch_vhr.*``, ``arch_hr.*``…): everything that fits, Sentinel-2 branch included;
* ``flair-1``: FLAIR #1 / FLAIR-INC (IGNF/FLAIR-1), the smp network held as
  ``seg_model``: ``seg_model.{encoder,decoder,segmentation_head}.*``;
* ``smp``: a bare segmentation_models_pytorch state dict
  (``encoder.*``, ``decoder.*``, ``segmentation_head.*``), as FLAIR-INC ``.pth`` files;
* ``flair-hub``: FLAIR-HUB (IGNF/FLAIR-HUB), one encoder per modality and one
  decoder per task: ``encoders.AERIAL_RGBI.seg_model.*`` (the smp encoder),
  ``main_decoders.<task>.seg_model.{decoder,segmentation_head}.*`` (the
  land-cover task ``AERIAL_LABEL-COSIA`` when there are several) and
  ``encoders.SENTINEL2_TS.*`` (a U-TAE, loaded where its sizes fit).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flair2.classes import CLASSES, NOMENCLATURES
from flair2.errors import CheckpointError
from flair2.models.checkpoint_files import read_checkpoint_file

logger = logging.getLogger(__name__)

#: The head size → nomenclature assumed when none is named (FLAIR-HUB's 19 are COSIA's).
DEFAULT_NOMENCLATURE = {13: "flair2-13", 19: "flair-19", 15: "flair-inc-15", 12: "flair-inc-12"}

#: flair2 keys of class-score layers (first dimension = classes).
HEAD_KEYS = ("arch_vhr.segmentation_head.0.weight", "arch_vhr.segmentation_head.0.bias")
#: FLAIR-HUB's land-cover task, preferred when a checkpoint has several decoders.
HUB_TASK = "AERIAL_LABEL-COSIA"


def class_mapping(source: str, target: str = "flair2-13") -> dict[int, int]:
    """Target class index → source class index, for the classes both nomenclatures name.

    Args:
        source: a key of :data:`flair2.classes.NOMENCLATURES` (the checkpoint's head).
        target: the model's nomenclature.

    Returns:
        ``{target index: source index}``; target classes absent from the source are missing.
    """
    if source not in NOMENCLATURES or target not in NOMENCLATURES:
        known = ", ".join(NOMENCLATURES)
        raise CheckpointError(f"unknown nomenclature {source!r} or {target!r}: known are {known}")
    index = {name: i for i, name in enumerate(NOMENCLATURES[source])}
    return {t: index[name] for t, name in enumerate(NOMENCLATURES[target]) if name in index}


def _strip(prefix: str) -> Callable[[str], str | None]:
    return lambda key: key[len(prefix) :] if key.startswith(prefix) else None


def _flair2_key(key: str) -> str | None:
    if key.startswith("reshape_utae_output.1."):  # the reference's auxiliary head
        return "aux_head." + key[len("reshape_utae_output.1.") :]
    return key


def _smp_key(key: str) -> str | None:
    if key.startswith(("encoder.", "decoder.", "segmentation_head.")):
        return "arch_vhr." + key
    return None


def _flair1_key(key: str) -> str | None:
    rest = _strip("seg_model.")(key)
    return None if rest is None else _smp_key(rest)


def _hub_key(task: str) -> Callable[[str], str | None]:
    decoder = f"main_decoders.{task}.seg_model."

    def mapped(key: str) -> str | None:
        if key.startswith("encoders.AERIAL_RGBI.seg_model."):
            return "arch_vhr.encoder." + key[len("encoders.AERIAL_RGBI.seg_model.") :]
        if key.startswith(decoder):
            return _smp_key(key[len(decoder) :])
        if key.startswith("encoders.SENTINEL2_TS."):
            return "arch_hr." + key[len("encoders.SENTINEL2_TS.") :]
        return None

    return mapped


def _hub_task(keys: list[str]) -> str:
    tasks = sorted({k.split(".")[1] for k in keys if k.startswith("main_decoders.")})
    return HUB_TASK if HUB_TASK in tasks or not tasks else tasks[0]


@dataclass(frozen=True)
class Layout:
    """One code's checkpoint layout.

    Attributes:
        name: its short name (reports, errors, the README's table).
        description: whose files have it.
        signature: key prefixes (after unwrapping) that only this layout has.
        mapper: the checkpoint's keys → a function from one key to flair2's (None: not the network).
    """

    name: str
    description: str
    signature: tuple[str, ...]
    mapper: Callable[[list[str]], Callable[[str], str | None]]


LAYOUTS: tuple[Layout, ...] = (
    Layout(
        "flair2",
        "flair2 / FLAIR #2 reference (IGNF/FLAIR-2)",
        ("arch_vhr.", "arch_hr."),
        lambda keys: _flair2_key,
    ),
    Layout(
        "flair-1",
        "FLAIR #1 / FLAIR-INC (IGNF/FLAIR-1): .ckpt or .pth",
        ("seg_model.",),
        lambda keys: _flair1_key,
    ),
    Layout(
        "flair-hub",
        "FLAIR-HUB (IGNF/FLAIR-HUB)",
        ("encoders.", "main_decoders."),
        lambda keys: _hub_key(_hub_task(keys)),
    ),
    Layout(
        "smp",
        "bare segmentation_models_pytorch state dict (FLAIR-INC .pth)",
        ("encoder.", "decoder.", "segmentation_head."),
        lambda keys: _smp_key,
    ),
)


@dataclass
class ForeignLoad:
    """What :func:`load_foreign_weights` did.

    Attributes:
        layout: the recognised layout's name.
        loaded: flair2 keys loaded whole.
        partial: flair2 key → what part was loaded (class rows, input channels).
        initialised: flair2 key → why it kept its initialisation (missing, shape).
        ignored: checkpoint keys that are not part of the flair2 model.
        nomenclature: the head's nomenclature, when a head was mapped.
        classes_mapped: flair2 class names taken from the checkpoint's head.
    """

    layout: str
    loaded: list[str] = field(default_factory=list)
    partial: dict[str, str] = field(default_factory=dict)
    initialised: dict[str, str] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    nomenclature: str | None = None
    classes_mapped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A few lines for the log: counts, then the first keys of each kind."""
        lines = [
            f"layout {self.layout}: {len(self.loaded)} tensors loaded, {len(self.partial)} in "
            f"part, {len(self.initialised)} left at their initialisation, "
            f"{len(self.ignored)} checkpoint entries not used"
        ]
        if self.nomenclature:
            lines.append(
                f"head: {self.nomenclature} → flair2's 13 classes, rows taken for "
                f"{len(self.classes_mapped)}: {', '.join(self.classes_mapped)}"
            )
        for key, why in list(self.partial.items())[:5]:
            lines.append(f"  partly loaded {key}: {why}")
        for key, why in list(self.initialised.items())[:10]:
            lines.append(f"  left at initialisation {key}: {why}")
        return "\n".join(lines)


def _unwrap(raw: Mapping[str, Any]) -> tuple[dict[str, Tensor], list[str]]:
    """(the network's tensors, the entries dropped as not the network's)."""
    state: Mapping[str, Any] = raw
    for wrapper in ("state_dict", "model"):
        inner = state.get(wrapper)
        if isinstance(inner, Mapping) and any(isinstance(v, Tensor) for v in inner.values()):
            state = inner
            break
    tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
    if tensors and all(k.startswith("module.") for k in tensors):  # DataParallel / DDP
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    dropped: list[str] = []
    if any(k.startswith("model.") for k in tensors):  # the Lightning module's attribute
        dropped = [k for k in tensors if not k.startswith("model.")]  # loss weights…
        tensors = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    return tensors, dropped


def recognise_layout(
    state: Mapping[str, Tensor], expected: Mapping[str, Tensor]
) -> tuple[Layout, dict[str, str]]:
    """The layout whose translation fits ``expected`` best, and its key map.

    Returns:
        (layout, {flair2 key: checkpoint key}) for the translated keys the model has.

    Raises:
        CheckpointError: no layout maps a single key onto the model; the message
            names the closest layout (the one whose key prefixes the file has most).
    """
    keys = list(state)
    best: tuple[int, Layout, dict[str, str]] | None = None
    for layout in LAYOUTS:
        mapper = layout.mapper(keys)
        mapping: dict[str, str] = {}
        for key in keys:
            if any(key.startswith(s) for s in layout.signature):
                target = mapper(key)
                if target is not None and target in expected:
                    mapping[target] = key
        if mapping and (best is None or len(mapping) > best[0]):
            best = (len(mapping), layout, mapping)
    if best is not None:
        return best[1], best[2]

    def prefixed(layout: Layout) -> int:
        return sum(any(k.startswith(s) for s in layout.signature) for k in keys)

    closest = max(LAYOUTS, key=prefixed)
    shown = ", ".join(keys[:3]) or "no tensors"
    raise CheckpointError(
        f"no key of the checkpoint matches a known layout ({shown}…); the closest is "
        f"{closest.name} ({closest.description}: keys starting with "
        f"{' or '.join(closest.signature)}), with {prefixed(closest)} of {len(keys)} keys"
    )


def _copy_head(value: Tensor, want: Tensor, mapping: dict[int, int]) -> Tensor:
    merged = want.detach().clone()
    for target, source in mapping.items():
        merged[target] = value[source].to(merged.dtype)
    return merged


def load_foreign_weights(
    model: nn.Module,
    source: str | Path | Mapping[str, Any],
    nomenclature: str | None = None,
) -> ForeignLoad:
    """Load what fits of another code's checkpoint into a flair2 model.

    Tensors of the same name (after translation) and shape are copied; a
    class-score layer with another number of classes is mapped class by class
    (:func:`class_mapping`), the classes without a counterpart keep their
    initialisation; a first convolution with fewer input channels (RGBI into
    RGBIE) gives its channels, the others keep theirs. Everything else keeps
    its initialisation and is listed with the reason.

    Args:
        model: a flair2 model (:class:`~flair2.models.unet.AerialUNet` or
            :class:`~flair2.models.utt.UTT`).
        source: a checkpoint file (``.ckpt``/``.pth``/``.pt``, read weights-only,
            or ``.safetensors``) or an in-memory checkpoint / state dict.
        nomenclature: the head's classes (a key of :data:`flair2.classes.NOMENCLATURES`); None:
            from the head's size (:data:`DEFAULT_NOMENCLATURE`, COSIA's for a
            19-class FLAIR-HUB head).

    Returns:
        What was loaded (:class:`ForeignLoad`); its summary is also logged.

    Raises:
        CheckpointError: unreadable file, no layout recognised, or an unknown nomenclature.
    """
    name = f"init_weights {source}" if isinstance(source, (str, Path)) else "init_weights"
    try:
        raw = read_checkpoint_file(source) if isinstance(source, (str, Path)) else source
    except CheckpointError as error:
        raise type(error)(f"init_weights: {error}") from None
    state, dropped = _unwrap(raw)
    expected = model.state_dict()
    try:
        layout, mapping = recognise_layout(state, expected)
    except CheckpointError as error:
        raise CheckpointError(f"{name}: {error}") from None
    report = ForeignLoad(layout.name)
    used = set(mapping.values())
    report.ignored = dropped + [k for k in state if k not in used]
    new_state: dict[str, Tensor] = {}
    classes: dict[int, int] | None = None
    for key, want in expected.items():
        if key not in mapping:
            report.initialised[key] = "missing in the checkpoint"
            continue
        value = state[mapping[key]]
        if tuple(value.shape) == tuple(want.shape):
            new_state[key] = value.to(want.dtype)
            report.loaded.append(key)
        elif key in HEAD_KEYS and value.shape[1:] == want.shape[1:]:
            if classes is None:
                chosen = nomenclature or DEFAULT_NOMENCLATURE.get(value.shape[0])
                if chosen == "flair-19" and layout.name == "flair-hub":
                    chosen = "cosia-19"
                if chosen is None or len(NOMENCLATURES.get(chosen, ())) != value.shape[0]:
                    report.initialised[key] = (
                        f"a {value.shape[0]}-class head of unknown nomenclature "
                        f"(name it among {', '.join(NOMENCLATURES)})"
                    )
                    continue
                classes = class_mapping(chosen)
                report.nomenclature = chosen
                report.classes_mapped = [CLASSES[t] for t in sorted(classes)]
            new_state[key] = _copy_head(value, want, classes)
            report.partial[key] = (
                f"{len(classes)} of {want.shape[0]} class rows ({report.nomenclature})"
            )
        elif (
            value.ndim == 4
            and value.shape[0] == want.shape[0]
            and value.shape[2:] == want.shape[2:]
            and value.shape[1] < want.shape[1]
        ):
            merged = want.detach().clone()
            merged[:, : value.shape[1]] = value.to(merged.dtype)
            new_state[key] = merged
            report.partial[key] = f"input channels 0–{value.shape[1] - 1} of {want.shape[1]}"
        else:
            report.initialised[key] = (
                f"shape {tuple(value.shape)} in the checkpoint vs {tuple(want.shape)} here"
            )
    with torch.no_grad():
        model.load_state_dict(new_state, strict=False)
    logger.info("%s\n%s", name, report.summary())
    return report
