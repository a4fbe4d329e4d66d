"""Which train-folder domains train and which validate: unseen domains, as the reference splits."""

from __future__ import annotations

import random

from flair2.errors import DataError


def split_domains(
    domains: list[str],
    *,
    val_fraction: float,
    seed: int,
    val_domains: list[str] | None = None,
    train_domains: list[str] | None = None,
) -> tuple[list[str], list[str]]:
    """Split the train folder's domains into training and validation domains.

    Validation domains are unseen in training, as test domains are. Explicit
    lists win; otherwise the sorted domains are shuffled with ``seed`` and the
    last ``val_fraction`` (at least one when there are two or more domains and
    the fraction is positive) go to validation — deterministic for the seed.

    Raises:
        DataError: an explicit domain is not in the train folder, or a split is empty.
    """
    available = sorted(domains)
    for key, given in (("val_domains", val_domains), ("train_domains", train_domains)):
        unknown = [d for d in given or [] if d not in available]
        if unknown:
            raise DataError(
                f"config key '{key}': domains {unknown} not in the train folder; "
                f"available: {', '.join(available)}"
            )
    if val_domains is not None:
        val = sorted(val_domains)
        train = sorted(train_domains) if train_domains is not None else None
        if train is None:
            train = [d for d in available if d not in val]
    else:
        pool = sorted(train_domains) if train_domains is not None else available
        shuffled = list(pool)
        random.Random(seed).shuffle(shuffled)
        n_val = round(len(shuffled) * val_fraction)
        if val_fraction > 0 and len(shuffled) >= 2:
            n_val = min(max(n_val, 1), len(shuffled) - 1)
        val = sorted(shuffled[len(shuffled) - n_val :]) if n_val else []
        train = sorted(shuffled[: len(shuffled) - n_val])
    overlap = sorted(set(train) & set(val))
    if overlap:
        raise DataError(f"domains {overlap} are in both train_domains and val_domains")
    if not train:
        raise DataError("no training domain left: lower val_fraction or list train_domains")
    return train, val
