"""``flair2 stats``: class counts and weights on crafted masks, band statistics vs numpy."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import yaml

from conftest import tiny_settings
from flair2.classes import CLASSES
from flair2.cli import main
from flair2.config import config_from_dict
from flair2.data.discovery import discover
from flair2.data.sentinel import crop_centered
from flair2.synthetic import generate_toy_dataset
from flair2.tools.stats import RunningMoments, compute_stats, suggested_class_weights

#: Crafted masks of the two training patches (label values 1–19).
MASK_A = np.full((64, 64), 6, dtype=np.uint8)  # coniferous ...
MASK_A[:32] = 1  # ... and building, 2048 pixels each
MASK_B = np.full((64, 64), 19, dtype=np.uint8)  # "other" (19 → model index 12)
MASK_B[:16, :16] = 12  # plowed land, 256 pixels
MASK_B[40:48, 40:48] = 5  # water, 64 pixels
#: Model index → pixel count, by hand: 19 becomes "other" (index 12).
COUNTS = {0: 2048, 4: 64, 5: 2048, 11: 256, 12: 4096 - 256 - 64}


@pytest.fixture(scope="module")
def crafted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A toy dataset of two domains: the training one's two masks replaced by MASK_A/B."""
    root = tmp_path_factory.mktemp("stats") / "toy"
    generate_toy_dataset(
        root,
        patch_size=64,
        seed=3,
        num_domains=2,
        zones_per_domain=1,
        patches_per_zone=2,
        num_test_domains=1,
        test_patches_per_zone=1,
        num_dates=4,
        sat_patch_size=8,
    )
    domains = sorted(p.name for p in (root / "flair_aerial_train").iterdir())
    settings = tiny_settings(
        root,
        root.parent / "out",
        val_domains=[domains[1]],
        filter_clouds=False,
        average_month=False,
    )
    cfg = config_from_dict(settings)
    train = discover(cfg, stages=("fit",)).train
    assert len(train) == 2
    for rec, mask in zip(train, (MASK_A, MASK_B)):
        with rasterio.open(rec.label) as src:
            profile = src.profile
        with rasterio.open(rec.label, "w", **profile) as dst:
            dst.write(mask[None])
    return {"cfg": cfg, "settings": settings, "train": train, "root": root}


def test_running_moments_match_numpy() -> None:
    rng = np.random.default_rng(0)
    chunks = [rng.normal(5000, 300, (n, 3)) for n in (1, 7, 1000, 0, 50)]
    moments = RunningMoments(3)
    for chunk in chunks:
        moments.add(chunk)
    everything = np.concatenate(chunks)
    np.testing.assert_allclose(moments.mean, everything.mean(0), rtol=1e-12)
    np.testing.assert_allclose(moments.std, everything.std(0), rtol=1e-10)
    assert moments.count == len(everything)


def test_suggested_weights_by_hand() -> None:
    # Frequencies 1/4, 3/4, 0 → 1/sqrt: 2, 2/sqrt(3); the absent class and the one
    # weighed 0 get 0; mean 1 over the others.
    weights = suggested_class_weights([100, 300, 0, 50], [1.0, 1.0, 1.0, 0.0])
    raw = [1 / math.sqrt(100 / 450), 1 / math.sqrt(300 / 450)]
    scale = 2 / sum(raw)
    assert weights == pytest.approx([raw[0] * scale, raw[1] * scale, 0.0, 0.0])
    assert sum(weights) / 2 == pytest.approx(1.0)


def test_counts_frequencies_and_weights_of_the_crafted_masks(crafted) -> None:
    stats = compute_stats(crafted["cfg"])
    expected = [COUNTS.get(i, 0) for i in range(13)]
    assert stats.class_names == CLASSES
    assert stats.class_counts == expected
    assert stats.frequencies == pytest.approx([c / 8192 for c in expected])
    aerial, satellite = stats.class_weights()
    # Aerial: building, water, coniferous, plowed land weighted (other 0), 1/sqrt(f):
    # 2, sqrt(128), 2, sqrt(32), divided by their mean.
    raw = {0: 2.0, 4: math.sqrt(128), 5: 2.0, 11: math.sqrt(32)}
    mean = sum(raw.values()) / 4
    assert aerial == pytest.approx([raw.get(i, 0.0) / mean for i in range(13)])
    # Satellite: plowed land is weighed 0 by the reference configuration: it stays 0.
    raw_sat = {0: 2.0, 4: math.sqrt(128), 5: 2.0}
    mean_sat = sum(raw_sat.values()) / 3
    assert satellite == pytest.approx([raw_sat.get(i, 0.0) / mean_sat for i in range(13)])
    assert stats.num_patches == 2 and stats.num_patches_total == 2
    # "other" gets 0 even where the configuration weighs it.
    weighted_other = dataclasses.replace(stats, base_weights=([1.0] * 13, [1.0] * 13))
    assert [w[12] for w in weighted_other.class_weights()] == [0.0, 0.0]
    assert weighted_other.class_weights()[1][11] > 0  # plowed land, no longer weighed 0


def test_band_statistics_match_numpy_over_the_same_files(crafted) -> None:
    stats = compute_stats(crafted["cfg"])
    images = []
    series = []
    for rec in crafted["train"]:
        with rasterio.open(rec.aerial) as src:
            images.append(src.read().reshape(5, -1).astype(np.float64))
        data = np.load(rec.sentinel.data)
        crop = crop_centered(data, rec.centroid, 8)  # no filter, no averaging: raw dates
        series.append(crop.transpose(1, 0, 2, 3).reshape(10, -1).astype(np.float64))
    pixels = np.concatenate(images, axis=1)
    np.testing.assert_allclose(stats.aerial_mean, pixels.mean(1), rtol=1e-10)
    np.testing.assert_allclose(stats.aerial_std, pixels.std(1), rtol=1e-9)
    sat = np.concatenate(series, axis=1)
    np.testing.assert_allclose(stats.sat_mean, sat.mean(1), rtol=1e-6)
    np.testing.assert_allclose(stats.sat_std, sat.std(1), rtol=1e-6)
    assert stats.sat_dates == sum(s.shape[1] // 64 for s in series)
    scaled = stats.to_dict()["aerial"]
    assert scaled["mean_scaled"] == pytest.approx((pixels.mean(1) / 255).tolist())
    assert scaled["std_scaled"] == pytest.approx((pixels.std(1) / 255).tolist())


def test_max_patches_reads_fewer(crafted) -> None:
    stats = compute_stats(crafted["cfg"], max_patches=1)
    assert stats.num_patches == 1 and sum(stats.class_counts) == 4096


def test_cli_writes_the_file_and_a_pasteable_snippet(
    crafted, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "cfg.yml"
    config.write_text(yaml.safe_dump(crafted["settings"]))
    out = tmp_path / "stats.json"
    assert main(["stats", "--config", str(config), "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["classes"]["building"]["pixels"] == 2048
    assert data["classes"]["other"]["weight_aerial"] == 0.0
    snippet = data["config_snippet"]
    assert set(snippet) == {"weights_aerial_satellite", "sat_mean", "sat_std"}
    # The snippet, pasted into the configuration, is valid as is.
    pasted = {**crafted["settings"], **snippet, "sen2_scaling": "standardize"}
    cfg = config_from_dict(pasted)
    assert cfg.class_weights()[0][0] == pytest.approx(
        data["classes"]["building"]["weight_aerial"], abs=1e-4
    )
    # The command prints it last, after its log lines.
    printed = capsys.readouterr().out
    assert yaml.safe_load(printed[printed.index("weights_aerial_satellite:") :]) == snippet
    # The default file is YAML in the run folder.
    assert main(["stats", "--config", str(config), "--max-patches", "1"]) == 0
    default = Path(crafted["settings"]["out_folder"]) / "run" / "dataset_stats.yaml"
    assert yaml.safe_load(default.read_text())["patches"] == 1


def test_cli_refuses_a_bad_file_name_before_reading(
    crafted, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config = tmp_path / "cfg.yml"
    config.write_text(yaml.safe_dump(crafted["settings"]))
    out = tmp_path / "stats.txt"
    assert main(["stats", "--config", str(config), "--out", str(out)]) == 2
    assert "stats.txt: the file name must end in .yaml, .yml or .json" in capsys.readouterr().err
    assert not out.exists()
