"""How to read a prediction file's pixel values: model indices 0–12 or label values 1–13.

flair2 tags its ``PRED_`` files (``FLAIR2_VALUES=model|labels``) and a tagged file
is always read as its tag says. Another tool's file carries no tag, and both
readings are plausible: the reference writes 0–12, most GIS workflows keep the
label nomenclature 1–13. Read the wrong way, a near-perfect prediction scores
an mIoU near 0 without any error; so an untagged folder is never read by default.

With ``values="auto"`` (the default) the reading of the untagged files of a folder
is decided, over all of them together:

1. **by their values**: a 0 anywhere can only be a model index → ``model``; the
   value K (13 for 13 classes) anywhere can only be a label → ``labels``; both is
   an error (the values fit neither reading);
2. else (every value in 1..K−1) **by the masks**: both readings are scored, and the
   one whose pixel accuracy is higher by at least :data:`MARGIN` is chosen, with a
   warning naming both accuracies; closer than that, the folder is refused as
   ambiguous, naming ``--values``.

A file whose values fit neither reading (a 255, a 0 beside a K) is an error naming
it, whatever the rest of the folder says.

``values="model"`` or ``"labels"`` forces the reading of untagged files. Tagged
files still follow their tag: the tag was written by the tool that knew; a tag
contradicting the forced option is logged once (a count and an example file). The
decision is recorded in ``metrics.json`` (``untagged_predictions``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from flair2.errors import DataError
from flair2.formats import VALUES_LABELS, VALUES_MODEL, VALUES_TAG, Values

log = logging.getLogger(__name__)

#: What ``--values`` accepts: ``auto`` decides the reading of untagged files.
ValuesOption = Literal["auto", "model", "labels"]
#: The two readings, in the order they are scored.
READINGS: tuple[Values, Values] = ("model", "labels")
#: How much higher (pixel accuracy, absolute) one reading must score to be chosen
#: by the masks. A prediction read one class off matches its mask on few pixels:
#: the right reading of any useful prediction wins by far more than this, and
#: closer than this the masks cannot tell the readings apart.
MARGIN = 0.05


def file_reading(tags: dict[str, str], option: ValuesOption) -> Values | None:
    """The reading a file's tag (or a forced option) gives; None: undecided (untagged, auto)."""
    tag = tags.get(VALUES_TAG)
    if tag is not None:
        convention = tag.strip().lower()
        if convention not in (VALUES_MODEL, VALUES_LABELS):
            raise DataError(f"tag {VALUES_TAG}={convention!r}; expected 'model' or 'labels'")
        return "model" if convention == VALUES_MODEL else "labels"
    return None if option == "auto" else option


@dataclass
class UntaggedEvidence:
    """What the untagged files of a folder say about their reading, gathered file by file.

    Attributes:
        num_classes: K.
        files: untagged files seen.
        with_zero: the first untagged file holding a 0 (only a model index can be 0).
        with_top: the first holding the value K (only a label can be K).
        agree: pixels whose value equals the mask's model index, per reading.
        pixels: pixels seen.
    """

    num_classes: int
    files: int = 0
    with_zero: Path | None = None
    with_top: Path | None = None
    agree: dict[str, int] = field(default_factory=lambda: {VALUES_MODEL: 0, VALUES_LABELS: 0})
    pixels: int = 0

    def add(self, path: Path, pred: np.ndarray, truth: np.ndarray) -> None:
        """Take one untagged file: (H, W) raw values and its mask as model indices."""
        self.files += 1
        if self.with_zero is None and bool((pred == 0).any()):
            self.with_zero = path
        if self.with_top is None and bool((pred == self.num_classes).any()):
            self.with_top = path
        values = pred.astype(np.int16)
        self.agree[VALUES_MODEL] += int(np.count_nonzero(values == truth))
        self.agree[VALUES_LABELS] += int(np.count_nonzero(values - 1 == truth))
        self.pixels += int(truth.size)

    def accuracy(self, reading: Values) -> float:
        """Pixel accuracy of the untagged files under ``reading``."""
        return self.agree[reading] / self.pixels if self.pixels else float("nan")

    def decide(self) -> tuple[Values, str]:
        """The reading of the untagged files, and what decided it (``values`` or ``masks``).

        Raises:
            DataError: the values fit neither reading, or the masks cannot tell.
        """
        top = self.num_classes
        if self.with_zero is not None and self.with_top is not None:
            raise DataError(
                f"untagged predictions hold both 0 ({self.with_zero}) and {top} "
                f"({self.with_top}): the values fit neither model indices 0–{top - 1} nor "
                f"labels 1–{top}; write the folder with one convention"
            )
        if self.with_zero is not None:
            log.info("untagged predictions read as model indices: %s holds a 0", self.with_zero)
            return "model", "values"
        if self.with_top is not None:
            log.info("untagged predictions read as labels: %s holds a %d", self.with_top, top)
            return "labels", "values"
        model, labels = self.accuracy("model"), self.accuracy("labels")
        if abs(model - labels) < MARGIN or not np.isfinite(model - labels):
            raise DataError(
                f"{self.files} untagged prediction file(s) hold only values 1–{top - 1}, which "
                f"fit both model indices and labels, and the masks cannot tell (pixel accuracy "
                f"{model:.3f} read as model indices, {labels:.3f} as labels): pass "
                "--values model or --values labels"
            )
        reading: Values = "model" if model > labels else "labels"
        described = f"model indices 0–{top - 1}" if reading == "model" else f"labels 1–{top}"
        log.warning(
            "%d untagged prediction file(s) read as %s (pixel accuracy %.3f as model indices, "
            "%.3f as labels); pass --values to force a reading",
            self.files,
            described,
            model,
            labels,
        )
        return reading, "masks"


def as_indices(pred: np.ndarray, reading: Values) -> np.ndarray:
    """Raw values → model indices under a reading (labels are shifted down by one)."""
    return pred if reading == VALUES_MODEL else pred.astype(np.int16) - 1
