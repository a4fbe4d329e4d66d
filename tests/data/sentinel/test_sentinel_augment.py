"""Sentinel-2 date dropout and jitter (training only), and half-monthly means."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest
import torch

from flair2.config import config_from_dict
from flair2.data.datamodule import FlairDataModule
from flair2.data.records import SentinelFiles
from flair2.data.sentinel import SentinelProcessor
from flair2.data.sentinel.augment import augment_dates, date_keep_mask, jitter_positions
from flair2.data.sentinel.periods import period_average, period_keys
from flair2.errors import ConfigError
from flair2.settings import SentinelSettings

D = datetime.date
REF = D(2021, 5, 15)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def numbered_sample(t: int = 6) -> dict:
    """sen2 whose every value is its date's index, so kept rows can be traced."""
    sen2 = torch.arange(t, dtype=torch.float32).reshape(t, 1, 1, 1).expand(t, 2, 3, 3).clone()
    return {"sen2": sen2, "positions": torch.arange(t) * 10, "patch_id": "000001"}


def test_dropout_always_keeps_a_date() -> None:
    gen = seeded(0)
    rescued = 0
    for _ in range(500):
        keep = date_keep_mask(3, 0.95, gen)
        assert keep.dtype == torch.bool and keep.shape == (3,)
        assert keep.sum() >= 1
        rescued += int(keep.sum() == 1)
    assert rescued > 400  # at p = 0.95 nearly every draw loses all three and keeps one
    assert date_keep_mask(1, 0.9, gen).tolist() == [True]


def test_dropout_rate_matches_the_setting() -> None:
    gen = seeded(1)
    keeps = torch.stack([date_keep_mask(20, 0.3, gen) for _ in range(500)])
    dropped = 1.0 - keeps.float().mean().item()
    # 10 000 Bernoulli draws: standard deviation 0.0046.
    assert dropped == pytest.approx(0.3, abs=0.02)
    # Every date is dropped at the same rate (none favoured).
    per_date = 1.0 - keeps.float().mean(0)
    assert per_date.min() > 0.2 and per_date.max() < 0.4


def test_dropout_keeps_series_and_positions_aligned() -> None:
    sample = numbered_sample(6)
    out = augment_dates(sample, dropout=0.5, generator=seeded(3))
    kept = out["sen2"][:, 0, 0, 0].long()
    assert 1 <= len(kept) < 6  # this seed drops some
    assert out["positions"].tolist() == (kept * 10).tolist()
    assert torch.equal(out["sen2"], sample["sen2"][kept])
    assert out["patch_id"] == "000001" and sample["sen2"].shape[0] == 6  # input untouched


def test_same_seed_same_draws_other_seed_other_draws() -> None:
    def draw(seed: int) -> list[list[int]]:
        gen = seeded(seed)
        outs = [augment_dates(numbered_sample(8), 0.4, 5, gen) for _ in range(5)]
        return [o["positions"].tolist() for o in outs]

    assert draw(7) == draw(7)
    assert draw(7) != draw(8)
    # The global generator (what DataLoader workers seed) works the same way.
    torch.manual_seed(11)
    first = augment_dates(numbered_sample(8), 0.4, 5)["positions"]
    torch.manual_seed(11)
    assert torch.equal(augment_dates(numbered_sample(8), 0.4, 5)["positions"], first)


def test_jitter_stays_within_bounds_and_covers_them() -> None:
    gen = seeded(4)
    positions = torch.tensor([100, 50, 0, -50], dtype=torch.int64)
    shifts = torch.cat([jitter_positions(positions, 3, gen) - positions for _ in range(300)])
    assert shifts.dtype == torch.int64
    assert shifts.min().item() == -3 and shifts.max().item() == 3
    assert set(shifts.tolist()) == set(range(-3, 4))
    out = augment_dates(numbered_sample(4), jitter=2, generator=gen)
    assert out["sen2"].shape[0] == 4  # jitter alone drops nothing
    assert (out["positions"] - torch.arange(4) * 10).abs().max() <= 2


def test_nothing_is_drawn_when_off() -> None:
    sample = numbered_sample(5)
    state = torch.get_rng_state()
    assert augment_dates(sample, 0.0, 0) is sample
    assert augment_dates({"aerial": torch.zeros(1)}, 0.5, 3) == {"aerial": torch.zeros(1)}
    assert torch.equal(torch.get_rng_state(), state)


def test_only_the_training_set_augments_dates(tiny_config) -> None:
    cfg = tiny_config(sat_date_dropout=0.5, sat_date_jitter=4, average_month=False)
    dm = FlairDataModule(cfg)
    dm.setup("fit")
    dm.setup("predict")
    train, val, test = dm.train_dataset, dm.val_dataset, dm.predict_dataset
    assert train.augment and not val.augment and not test.augment
    torch.manual_seed(0)
    for dataset in (val, test):
        for index in range(len(dataset)):
            series, positions = dataset.read_sentinel(dataset.records[index])
            for _ in range(3):
                sample = dataset.load(index)
                assert torch.equal(sample["positions"], torch.from_numpy(positions))
                assert torch.equal(sample["sen2"], torch.from_numpy(series))
    changed = 0
    for _ in range(5):
        for index in range(len(train)):
            _, positions = train.read_sentinel(train.records[index])
            sample = train.load(index)
            kept = sample["positions"]
            assert 1 <= len(kept) <= len(positions)
            changed += int(len(kept) < len(positions) or not np.array_equal(kept, positions))
    assert changed > 0


# ---------------------------------------------------------------------------
# Half-monthly means

DATES = [D(2021, 1, 3), D(2021, 1, 15), D(2021, 1, 16), D(2021, 1, 31), D(2021, 2, 10)]
DATES += [D(2021, 3, 20)]


def test_half_month_keys_split_on_the_16th() -> None:
    assert period_keys(DATES, "half_month").tolist() == [
        k * 2 + h for k, h in [(24252, 0), (24252, 0), (24252, 1), (24252, 1), (24253, 0)]
    ] + [24254 * 2 + 1]
    assert period_keys(DATES, "month").tolist() == [24252] * 4 + [24253, 24254]


def test_half_month_average_by_hand() -> None:
    series = np.array([1, 3, 10, 20, 7, 5], dtype=np.uint16).reshape(6, 1, 1, 1)
    means, positions = period_average(series, DATES, 2021, 5, 15, period="half_month")
    # Jan 1–15: (1 + 3)/2; Jan 16–31: (10 + 20)/2; Feb 1–15: 7; Mar 16–31: 5.
    assert means.dtype == np.float32 and means[:, 0, 0, 0].tolist() == [2.0, 15.0, 7.0, 5.0]
    expected = [REF - D(2021, 1, 8), REF - D(2021, 1, 23), REF - D(2021, 2, 8)]
    expected += [REF - D(2021, 3, 23)]
    assert positions.tolist() == [d.days for d in expected]
    # Dates out of order, one left out, another year: grouped the same way.
    order = [5, 2, 0, 4, 1, 3]
    keep = np.array([True, True, True, True, False, True])  # drops Jan 15 (order[4] = 1)
    means, positions = period_average(
        series[order], [DATES[i] for i in order], 2021, 5, 15, keep=keep, period="half_month"
    )
    assert means[:, 0, 0, 0].tolist() == [1.0, 15.0, 7.0, 5.0]
    assert positions[0] == (REF - D(2021, 1, 8)).days
    # Monthly means of the same series, for comparison.
    means, positions = period_average(series, DATES, 2021, 5, 15, period="month")
    assert means[:, 0, 0, 0].tolist() == [8.5, 7.0, 5.0]
    assert positions.tolist() == [(REF - D(2021, m, 15)).days for m in (1, 2, 3)]


def test_processor_half_monthly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 10000, (6, 10, 12, 12), dtype=np.uint16)
    files = SentinelFiles(
        data=tmp_path / "SEN2_sp_D004_2021-Z1_UF_data.npy",
        masks=tmp_path / "SEN2_sp_D004_2021-Z1_UF_masks.npy",
        products=tmp_path / "SEN2_sp_D004_2021-Z1_UF_products.txt",
    )
    np.save(files.data, data)
    np.save(files.masks, np.zeros((6, 2, 12, 12), dtype=np.uint8))
    files.products.write_text(
        "".join(f"S2A_MSIL2A_{d:%Y%m%d}T105021_N0300_R051_T31UDP_{d:%Y%m%d}T1\n" for d in DATES)
    )
    cfg = config_from_dict({"sat_patch_size": 8, "average_period": "half_month"})
    series, positions = SentinelProcessor(SentinelSettings.from_config(cfg))(files, (6, 6))
    crop = data[:, :, 2:10, 2:10].astype(np.float64)
    expected = np.stack([crop[:2].mean(0), crop[2:4].mean(0), crop[4], crop[5]])
    np.testing.assert_allclose(series, expected, rtol=1e-6)
    assert positions.tolist() == [
        (REF - D(2021, m, d)).days for m, d in [(1, 8), (1, 23), (2, 8), (3, 23)]
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"average_month": False, "average_period": "half_month"}, "average_period"),
        ({"average_period": "week"}, "average_period"),
        ({"sat_date_dropout": 1.0}, "sat_date_dropout"),
        ({"sat_date_jitter": -1}, "sat_date_jitter"),
    ],
)
def test_bad_settings_are_config_errors(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict(overrides)
