"""Find every patch of a split in the official FLAIR #2 layout and pair its files by id.

Layout (see DATA-FORMAT.md): each source has one root per split, below it
``<domain>/<zone>/<kind>/``: ``img/IMG_<id>.tif`` (aerial), ``msk/MSK_<id>.tif``
(labels), ``sen/SEN2_sp_<domain>[-_]<zone>_{data.npy,masks.npy,products.txt}``.
Two JSON indexes sit beside the roots: patch centroids in the zone's Sentinel-2
super-area, and aerial metadata records.

Problems (a missing file, an orphan mask, a patch without centroid or metadata,
a zone without Sentinel-2 files) raise :class:`~flair2.errors.DataError` by
default. With an ``on_problem`` callback each problem is reported and the patch
skipped instead; the data checker collects them all this way, and
``skip_invalid_patches`` counts them in a warning.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flair2.config import Config
from flair2.data.records import PatchRecord, SentinelFiles
from flair2.data.splits import split_domains
from flair2.errors import DataError
from flair2.formats import (
    DOMAIN_PATTERN,
    IMG_PATTERN,
    MSK_PATTERN,
    SENTINEL_DATA,
    SENTINEL_GLOB,
    SENTINEL_MASKS,
    SENTINEL_PRODUCTS,
    SENTINEL_SUFFIXES,
    image_name,
    image_stem,
    mask_name,
)
from flair2.settings import SplitSettings

log = logging.getLogger(__name__)


ProblemHandler = Callable[[str], None]


def _raise(message: str) -> None:
    raise DataError(message)


def load_json_index(path: str | Path, what: str) -> dict[str, Any]:
    """Read a JSON object (the centroids or the metadata index).

    Args:
        path: the JSON file.
        what: the config key naming it, used in error messages.

    Raises:
        DataError: the path is empty or missing, or the file is not a JSON object.
    """
    if not str(path):
        raise DataError(f"config key '{what}' is empty: give the path of the JSON file")
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{what}: file {p} not found (check config key '{what}')")
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{p}: not valid JSON ({exc}); re-extract the file") from None
    if not isinstance(obj, dict):
        raise DataError(f"{p}: expected a JSON object mapping patch names to values")
    return obj


def _require_dir(root: str | Path, key: str) -> Path:
    if not str(root):
        raise DataError(f"config key '{key}' is empty: give the folder of that split")
    p = Path(root)
    if not p.is_dir():
        raise DataError(f"{key}: folder {p} not found (check config key '{key}')")
    return p


def list_domains(root: str | Path) -> list[str]:
    """Sorted names of the domain folders below a split root (e.g. ``D004_2021``).

    Folders that do not look like domains (hidden ones, ``__MACOSX``…) are ignored.
    """
    return sorted(
        d.name for d in Path(root).iterdir() if d.is_dir() and DOMAIN_PATTERN.match(d.name)
    )


def _list_ids(folder: Path, pattern: re.Pattern[str]) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    for f in folder.iterdir():
        m = pattern.match(f.name)
        if m:
            found[m.group(1)] = f
    return found


def find_sentinel_files(sen_zone_dir: Path) -> SentinelFiles | None:
    """The zone's three Sentinel-2 files, found by suffix; None if any is missing."""
    if not sen_zone_dir.is_dir():
        return None
    parts: dict[str, Path] = {}
    for suffix in SENTINEL_SUFFIXES:
        matches = sorted(sen_zone_dir.glob(SENTINEL_GLOB.format(suffix=suffix)))
        if len(matches) != 1:
            return None
        parts[suffix] = matches[0]
    return SentinelFiles(parts[SENTINEL_DATA], parts[SENTINEL_MASKS], parts[SENTINEL_PRODUCTS])


def _parse_centroid(value: Any) -> tuple[int, int] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        try:
            return int(value[0]), int(value[1])
        except (TypeError, ValueError):
            return None
    return None


def metadata_record(metadata: dict[str, Any], pid: str, image: Path) -> dict[str, Any]:
    """The aerial metadata record of a patch: ``metadata["IMG_<id>"]``, a JSON object.

    Keyed by the official stem whatever the case of the image file's name.

    Raises:
        DataError: no such record, or not an object (the message starts with ``image``).
    """
    key = image_stem(pid)
    entry = metadata.get(key)
    if not isinstance(entry, dict):
        raise DataError(f"{image}: no record {key} in the aerial metadata JSON")
    return entry


def discover_split(
    aerial_root: str | Path,
    sen_root: str | Path,
    labels_root: str | Path | None,
    centroids: dict[str, Any],
    metadata: dict[str, Any] | None,
    domains: list[str] | None = None,
    *,
    require_labels: bool,
    on_problem: ProblemHandler | None = None,
) -> list[PatchRecord]:
    """List and pair every patch of one split.

    Args:
        aerial_root: root of the aerial folders (e.g. ``flair_aerial_train``).
        sen_root: root of the Sentinel-2 folders.
        labels_root: root of the mask folders, or None (no labels).
        centroids: the centroids index, ``{"IMG_<id>.tif": [row, col]}``.
        metadata: the aerial metadata index ``{"IMG_<id>": {...}}``, or None when
            metadata is not used (records then carry an empty dict).
        domains: the domains to walk (default: all below ``aerial_root``).
        require_labels: a patch without a mask is a problem (train/validation).
        on_problem: called with a message for each problem, the patch being
            skipped; None raises :class:`DataError` at the first one.

    Returns:
        Records sorted by domain, zone, then numeric patch id.
    """
    report = on_problem or _raise
    aerial_root = Path(aerial_root)
    sen_root = Path(sen_root)
    labels_path = Path(labels_root) if labels_root else None
    records: list[PatchRecord] = []
    for domain in domains if domains is not None else list_domains(aerial_root):
        domain_dir = aerial_root / domain
        if not domain_dir.is_dir():
            report(f"domain {domain}: folder {domain_dir} not found")
            continue
        zones = sorted(z.name for z in domain_dir.iterdir() if z.is_dir())
        if not zones:
            report(f"domain {domain}: no zone folder in {domain_dir}")
        for zone in zones:
            images = _list_ids(domain_dir / zone / "img", IMG_PATTERN)
            masks = (
                _list_ids(labels_path / domain / zone / "msk", MSK_PATTERN) if labels_path else {}
            )
            for pid in sorted(set(masks) - set(images), key=int):
                report(f"{masks[pid]}: orphan mask, no aerial image IMG_{pid}.tif beside it")
            if not images:
                continue
            sen = find_sentinel_files(sen_root / domain / zone / "sen")
            if sen is None:
                report(
                    f"zone {domain}/{zone}: Sentinel-2 files missing in "
                    f"{sen_root / domain / zone / 'sen'} (need one each of *_data.npy, "
                    "*_masks.npy, *_products.txt)"
                )
                continue
            for pid in sorted(images, key=int):
                img = images[pid]
                label = masks.get(pid)
                if require_labels and label is None:
                    expected = (
                        labels_path / domain / zone / "msk" / mask_name(pid)
                        if labels_path
                        else mask_name(pid)
                    )
                    report(f"{img}: no mask, expected {expected}")
                    continue
                # The index is keyed by the official name, IMG_<id>.tif.
                raw = centroids.get(image_name(pid))
                centroid = _parse_centroid(raw)
                if centroid is None:
                    what = "missing from" if raw is None else f"malformed ({raw!r}) in"
                    report(f"{img}: centroid {what} the centroids JSON")
                    continue
                record: dict[str, Any] = {}
                if metadata is not None:
                    try:
                        record = metadata_record(metadata, pid, img)
                    except DataError as exc:
                        report(str(exc))
                        continue
                records.append(
                    PatchRecord(
                        patch_id=pid,
                        domain=domain,
                        zone=zone,
                        aerial=img,
                        label=label,
                        sentinel=sen,
                        centroid=centroid,
                        metadata=record,
                    )
                )
    return records


def check_unique_ids(records: list[PatchRecord], split: str, report: ProblemHandler) -> None:
    """Report each patch id that appears twice in a split, naming both images.

    Centroids, aerial metadata and prediction files are keyed by patch id: two
    patches with one id would silently share one centroid, or one ``PRED_`` file.
    One dict pass, so it costs nothing at the full dataset's 78,000 patches.

    Args:
        records: the patches of one split (train and validation together: they
            share the JSON indexes).
        split: its name, for the message.
        report: called with one message per duplicate.
    """
    first: dict[str, Path] = {}
    for rec in records:
        seen = first.setdefault(rec.patch_id, rec.aerial)
        if seen != rec.aerial:
            report(
                f"{rec.aerial}: duplicate patch id {rec.patch_id} in the {split} split, also "
                f"{seen}; patch ids must be unique (centroids, metadata and predictions are "
                "keyed by id): rename or remove one"
            )


@dataclass
class Splits:
    """Patch records of each split (empty when the split's folders are not configured)."""

    train: list[PatchRecord] = field(default_factory=list)
    val: list[PatchRecord] = field(default_factory=list)
    test: list[PatchRecord] = field(default_factory=list)


def _skipping_handler(counter: list[str]) -> ProblemHandler:
    def handle(message: str) -> None:
        counter.append(message)
        log.debug("skipped: %s", message)

    return handle


def discover(
    settings: SplitSettings | Config,
    stages: tuple[str, ...] = ("fit", "test"),
    on_problem: ProblemHandler | None = None,
) -> Splits:
    """Discover the train/validation and/or test patches a config points to.

    Args:
        settings: the dataset roots, split keys, ``aerial_metadata`` and
            ``skip_invalid_patches``: a :class:`~flair2.settings.SplitSettings`, or a
            whole configuration, whose keys are taken.
        stages: "fit" for train + validation, "test" for the test split.
        on_problem: per-problem callback; default: raise, or skip and warn when
            ``skip_invalid_patches`` is set.

    Returns:
        The records of each requested split.
    """
    cfg = settings if isinstance(settings, SplitSettings) else SplitSettings.from_config(settings)
    skipped: list[str] = []
    explicit = on_problem
    if on_problem is None and cfg.skip_invalid_patches:
        on_problem = _skipping_handler(skipped)
    d = cfg.data
    centroids = load_json_index(d.path_sp_centroids, "data.path_sp_centroids")
    metadata = (
        load_json_index(d.path_metadata_aerial, "data.path_metadata_aerial")
        if cfg.aerial_metadata
        else None
    )
    splits = Splits()
    if "fit" in stages:
        aerial = _require_dir(d.path_aerial_train, "data.path_aerial_train")
        sen = _require_dir(d.path_sen_train, "data.path_sen_train")
        labels = _require_dir(d.path_labels_train, "data.path_labels_train")
        domains = list_domains(aerial)
        if not domains:
            raise DataError(
                f"data.path_aerial_train: no domain folder (like D004_2021) in {aerial}"
            )
        train_d, val_d = split_domains(
            domains,
            val_fraction=cfg.val_fraction,
            seed=cfg.seed,
            val_domains=list(cfg.val_domains) if cfg.val_domains is not None else None,
            train_domains=list(cfg.train_domains) if cfg.train_domains is not None else None,
        )
        splits.train, splits.val = (
            discover_split(
                aerial,
                sen,
                labels,
                centroids,
                metadata,
                split,
                require_labels=True,
                on_problem=on_problem,
            )
            for split in (train_d, val_d)
        )
        # Fatal even with skip_invalid_patches: neither file can be told to be the right one.
        check_unique_ids(splits.train + splits.val, "train", explicit or _raise)
        if not splits.train:
            raise DataError(f"no training patch found in {aerial} (domains {train_d})")
        log.info(
            "train: %d patches in %d domains; validation: %d patches in %d domains %s",
            len(splits.train),
            len(train_d),
            len(splits.val),
            len(val_d),
            val_d,
        )
    if "test" in stages:
        aerial = _require_dir(d.path_aerial_test, "data.path_aerial_test")
        sen = _require_dir(d.path_sen_test, "data.path_sen_test")
        test_labels = Path(d.path_labels_test) if d.path_labels_test else None
        if test_labels is not None and not test_labels.is_dir():
            raise DataError(
                f"data.path_labels_test: folder {test_labels} not found "
                '(check the key, or set it to "")'
            )
        splits.test = discover_split(
            aerial,
            sen,
            test_labels,
            centroids,
            metadata,
            require_labels=False,
            on_problem=on_problem,
        )
        check_unique_ids(splits.test, "test", explicit or _raise)
        if not splits.test:
            raise DataError(f"no test patch found in {aerial}")
        log.info("test: %d patches", len(splits.test))
    if skipped:
        log.warning(
            "skipped %d patch(es) with problems (skip_invalid_patches); first: %s",
            len(skipped),
            skipped[0],
        )
    return splits
