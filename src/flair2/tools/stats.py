"""Statistics of the training split: class frequencies, class weights, band means and stds.

``flair2 stats --config CFG`` reads every training patch once (the same split and
readers as training: :func:`flair2.data.discovery.discover`,
:class:`flair2.data.dataset.FlairDataset`), one patch at a time, so memory stays
flat however large the dataset, and writes:

- per class (the model's classes, after the 19 → 13 mapping): pixel count,
  frequency, and suggested loss weights for each branch;
- aerial per-band mean and standard deviation, in 0–255 and after the model's
  scaling (÷ 255);
- Sentinel-2 per-band mean and standard deviation of the series as the model gets
  it (crop, cloud filter, monthly or half-monthly means as configured), in raw
  reflectance units: the ``sat_mean``/``sat_std`` that ``sen2_scaling: standardize``
  subtracts and divides by (:func:`flair2.data.sentinel.operations.scale_series`);
- a configuration snippet with ``weights_aerial_satellite``, ``sat_mean`` and ``sat_std``.

Suggested class weights: ``1 / sqrt(frequency)``, scaled to a mean of 1 over the
weighted classes. Inverse frequency would weigh a class of 0.1 % of the pixels 200
times one of 20 %, so that a handful of pixels would steer each batch's loss; the
square root keeps the ranking with a ratio of about 14. A class absent
from the split gets 0 (nothing to learn it from), and so does a class the
configuration weighs 0 on a branch ("plowed land" on the satellite branch in the
reference configuration), and "other" always (not a class to learn, and left out of
the mIoU). The mean of 1 keeps numbers
readable; the weighted cross-entropy divides by the weights of the pixels anyway.

Standard deviations are population ones (``ddof = 0``), accumulated patch by patch
with Chan's pairwise update in float64.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from flair2.classes import CLASSES
from flair2.config import Config
from flair2.data.dataset import FlairDataset, raster_size
from flair2.data.discovery import discover
from flair2.errors import ConfigError, DataError
from flair2.io import write_text_atomic
from flair2.settings import SampleSettings

log = logging.getLogger(__name__)

#: How the suggested class weights are computed (written into the stats file).
WEIGHT_SCHEME = (
    "1/sqrt(pixel frequency), mean 1 over the weighted classes; 0 for classes absent "
    "from the split and for those the configuration weighs 0 on that branch"
)


class RunningMoments:
    """Per-channel count, mean and sum of squared deviations, merged batch by batch.

    Chan et al.'s pairwise update: numerically stable in float64 however many
    values are added, unlike accumulating sums of squares.

    Args:
        channels: number of channels C.
    """

    def __init__(self, channels: int) -> None:
        self.count = 0
        self.mean = np.zeros(channels, dtype=np.float64)
        self.m2 = np.zeros(channels, dtype=np.float64)

    def add(self, values: np.ndarray) -> None:
        """Add values laid out (N, C): N observations of C channels."""
        n = values.shape[0]
        if n == 0:
            return
        values = values.astype(np.float64, copy=False)
        mean = values.mean(axis=0)
        m2 = ((values - mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * n / total)
        self.count = total

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per channel (NaN before any value)."""
        if self.count == 0:
            return np.full_like(self.mean, np.nan)
        return np.sqrt(self.m2 / self.count)


def suggested_class_weights(counts: Sequence[int], base: Sequence[float]) -> list[float]:
    """Class weights from pixel counts (see the module docstring for the scheme).

    Args:
        counts: pixel count per class (K,).
        base: the configuration's weights for the branch (K,); a 0 stays 0.

    Returns:
        K weights: ``1/sqrt(frequency)`` for classes with pixels and a non-zero base
        weight, scaled to mean 1 over them; 0 for the others.
    """
    total = float(sum(counts))
    raw = [
        1.0 / math.sqrt(c / total) if c > 0 and b > 0 and total > 0 else 0.0
        for c, b in zip(counts, base)
    ]
    weighted = [w for w in raw if w > 0]
    if not weighted:
        return raw
    scale = len(weighted) / sum(weighted)
    return [w * scale for w in raw]


@dataclass
class DatasetStats:
    """What :func:`compute_stats` measured on the training split."""

    class_names: list[str]
    class_counts: list[int]
    base_weights: tuple[list[float], list[float]]
    num_patches: int
    num_patches_total: int
    domains: list[str]
    aerial_mean: list[float]
    aerial_std: list[float]
    sat_mean: list[float] | None = None
    sat_std: list[float] | None = None
    sat_dates: int = 0
    sat_processing: dict[str, Any] = field(default_factory=dict)

    @property
    def frequencies(self) -> list[float]:
        """Pixel share of each class (0 when there is no pixel at all)."""
        total = sum(self.class_counts)
        return [c / total if total else 0.0 for c in self.class_counts]

    def class_weights(self) -> tuple[list[float], list[float]]:
        """Suggested (aerial, satellite) weights per class; "other" always 0."""
        # "other" gathers the nomenclature's unlabelled or unclassifiable pixels and
        # is left out of the mIoU: not a class to learn, whatever the config says.
        aerial, satellite = (
            [0.0 if name == "other" else w for name, w in zip(self.class_names, base)]
            for base in self.base_weights
        )
        return (
            suggested_class_weights(self.class_counts, aerial),
            suggested_class_weights(self.class_counts, satellite),
        )

    def config_snippet(self) -> dict[str, Any]:
        """Keys ready to paste into a configuration file."""
        aerial, satellite = self.class_weights()
        snippet: dict[str, Any] = {
            "weights_aerial_satellite": {
                name: [round(a, 4), round(s, 4)]
                for name, a, s in zip(self.class_names, aerial, satellite)
            }
        }
        if self.sat_mean is not None and self.sat_std is not None:
            snippet["sat_mean"] = [round(v, 3) for v in self.sat_mean]
            snippet["sat_std"] = [round(v, 3) for v in self.sat_std]
        return snippet

    def to_dict(self) -> dict[str, Any]:
        """Everything, as plain data (the content of the stats file)."""
        aerial_w, sat_w = self.class_weights()
        classes = {
            name: {
                "pixels": int(count),
                "frequency": freq,
                "weight_aerial": wa,
                "weight_satellite": ws,
            }
            for name, count, freq, wa, ws in zip(
                self.class_names, self.class_counts, self.frequencies, aerial_w, sat_w
            )
        }
        out: dict[str, Any] = {
            "split": "train",
            "patches": self.num_patches,
            "patches_in_split": self.num_patches_total,
            "domains": self.domains,
            "class_weight_scheme": WEIGHT_SCHEME,
            "classes": classes,
            "aerial": {
                "mean": self.aerial_mean,
                "std": self.aerial_std,
                "mean_scaled": [v / 255.0 for v in self.aerial_mean],
                "std_scaled": [v / 255.0 for v in self.aerial_std],
                "units": "mean/std: 0-255; *_scaled: after the model's scaling (/255)",
            },
        }
        if self.sat_mean is not None:
            out["sentinel"] = {
                "mean": self.sat_mean,
                "std": self.sat_std,
                "dates": self.sat_dates,
                "units": "raw reflectance (sat_mean/sat_std of sen2_scaling: standardize)",
                **self.sat_processing,
            }
        out["config_snippet"] = self.config_snippet()
        return out


def _spread(count: int, limit: int | None) -> list[int]:
    """``limit`` indices spread evenly over ``range(count)`` (all when no limit)."""
    if limit is None or limit >= count:
        return list(range(count))
    return sorted(set(np.linspace(0, count - 1, limit).round().astype(int).tolist()))


def _iterate(indices: list[int], progress: bool) -> Iterable[int]:
    if not progress:
        return indices
    from rich.progress import track

    return track(indices, description="Reading training patches", total=len(indices))


def compute_stats(
    cfg: Config, max_patches: int | None = None, progress: bool = False
) -> DatasetStats:
    """Read the training split patch by patch and measure its statistics.

    Args:
        cfg: the configuration (data paths, split, ``num_classes``, Sentinel-2
            processing, ``arch``: Sentinel-2 is read for ``utt`` and ``utae``).
        max_patches: read at most this many patches, spread evenly over the split
            (domains are listed in order, so the first ones would cover few).
        progress: show a rich progress bar.

    Raises:
        DataError: a file is missing or unreadable (unless ``skip_invalid_patches``).
        ConfigError: ``max_patches`` < 1.
    """
    if max_patches is not None and max_patches < 1:
        raise ConfigError(f"--max-patches: must be >= 1, got {max_patches}")
    records = discover(cfg, stages=("fit",)).train
    with_sentinel = cfg.with_sentinel()
    # The series as the model gets it, unscaled: standardising with mean 0 and std 1
    # is the identity on raw values (averaged or not).
    channels_sat = cfg.num_channels_sat
    samples = SampleSettings.from_config(cfg)
    raw = dataclasses.replace(
        samples.sentinel,
        sen2_scaling="standardize",
        sat_mean=(0.0,) * channels_sat,
        sat_std=(1.0,) * channels_sat,
    )
    patch_size = cfg.patch_size or raster_size(records[0].aerial)
    dataset = FlairDataset(
        records,
        dataclasses.replace(samples, sentinel=raw),
        patch_size=patch_size,
        with_sentinel=with_sentinel,
        on_invalid="drop" if cfg.skip_invalid_patches else "raise",
    )
    counts = np.zeros(cfg.num_classes, dtype=np.int64)
    aerial = RunningMoments(cfg.num_channels_aerial)
    sat = RunningMoments(channels_sat)
    indices = _spread(len(records), max_patches)
    skipped = sat_dates = 0
    for index in _iterate(indices, progress):
        sample = dataset[index]
        if "invalid" in sample:
            skipped += 1
            continue
        labels = sample["labels"].numpy()
        counts += np.bincount(labels.ravel(), minlength=cfg.num_classes)[: cfg.num_classes]
        image = sample["aerial"].numpy()
        aerial.add(image.reshape(image.shape[0], -1).T)
        if with_sentinel:
            series = sample["sen2"].numpy()  # (T, C, S, S)
            sat.add(series.transpose(0, 2, 3, 1).reshape(-1, series.shape[1]))
            sat_dates += series.shape[0]
    if skipped:
        log.warning("skipped %d unreadable patch(es) (skip_invalid_patches)", skipped)
    if aerial.count == 0:
        raise DataError("no readable training patch: nothing to measure")
    return DatasetStats(
        class_names=list(CLASSES[: cfg.num_classes]),
        class_counts=[int(c) for c in counts],
        base_weights=cfg.class_weights(),
        num_patches=len(indices) - skipped,
        num_patches_total=len(records),
        domains=sorted({records[i].domain for i in indices}),
        aerial_mean=aerial.mean.tolist(),
        aerial_std=aerial.std.tolist(),
        sat_mean=sat.mean.tolist() if with_sentinel else None,
        sat_std=sat.std.tolist() if with_sentinel else None,
        sat_dates=sat_dates,
        sat_processing={
            "filter_clouds": cfg.filter_clouds,
            "average_month": cfg.average_month,
            "average_period": cfg.average_period,
        }
        if with_sentinel
        else {},
    )


def stats_format(path: str | Path) -> str:
    """The format named by the file's extension, "yaml" or "json"; ConfigError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json":
        return "json"
    raise ConfigError(f"--out {path}: the file name must end in .yaml, .yml or .json")


def write_stats(stats: DatasetStats, path: str | Path) -> Path:
    """Write the statistics as YAML (``.yaml``/``.yml``) or JSON (``.json``), atomically.

    Raises:
        ConfigError: another file extension.
    """
    data = stats.to_dict()
    if stats_format(path) == "yaml":
        text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    else:
        text = json.dumps(data, indent=2) + "\n"
    write_text_atomic(path, text)
    return Path(path)


def snippet_text(stats: DatasetStats) -> str:
    """The configuration snippet as YAML text (to print)."""
    return yaml.safe_dump(stats.config_snippet(), sort_keys=False, default_flow_style=None)
