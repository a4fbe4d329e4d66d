"""The data checker: a clean toy dataset passes; every planted problem is named."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

from flair2.config import Config, config_from_dict
from flair2.data.sentinel.files import read_products
from flair2.errors import DataError
from flair2.synthetic import (
    CENTROIDS_NAME,
    METADATA_NAME,
    TEST_ROOTS,
    TRAIN_ROOTS,
    ToySummary,
    generate_toy_dataset,
    toy_config_dict,
)
from flair2.tools.check import CheckReport, Problem, check_dataset

SIZE = 64


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ToySummary]:
    root = tmp_path_factory.mktemp("check") / "toy"
    summary = generate_toy_dataset(
        root, seed=5, patch_size=SIZE, num_domains=2, zones_per_domain=1, patches_per_zone=2,
        num_test_domains=1, test_patches_per_zone=2, num_dates=4, sat_patch_size=8,
    )  # fmt: skip
    return root, summary


@pytest.fixture
def dataset(pristine: tuple[Path, ToySummary], tmp_path: Path) -> Path:
    """A fresh copy of the toy dataset to damage."""
    root = tmp_path / "toy"
    shutil.copytree(pristine[0], root)
    return root


def config(root: Path, **overrides: object) -> Config:
    return config_from_dict({"data": toy_config_dict(root), "sat_patch_size": 8, **overrides})


def zone_dirs(root: Path, roots: dict[str, str], kind: str) -> list[Path]:
    sub = {"aerial": "img", "labels": "msk", "sen": "sen"}[kind]
    return sorted((root / roots[kind]).glob(f"D*/Z*/{sub}"))


def errors_about(report: CheckReport, path: Path) -> list[Problem]:
    return [p for p in report.errors if str(path) in str(p)]


def rewrite_tif(path: Path, array: np.ndarray) -> None:
    with rasterio.open(path) as src:
        profile = src.profile
    count, height, width = array.shape
    profile.update(count=count, height=height, width=width, dtype=str(array.dtype))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array)


def test_clean_toy_dataset_is_ok(pristine: tuple[Path, ToySummary]) -> None:
    root, summary = pristine
    report = check_dataset(config(root))
    assert report.ok, report.format()
    assert report.errors == []
    s = report.summary
    assert (s.splits["train"].patches, s.splits["test"].patches) == (4, 2)
    assert (s.splits["train"].domains, s.splits["train"].zones) == (2, 2)
    assert (s.splits["test"].domains, s.splits["test"].zones) == (1, 1)
    assert s.dates_per_zone == (4, 4.0, 4)
    assert s.patch_sizes == {SIZE: 6}
    merged = {
        v: s.splits["train"].class_pixels[v] + s.splits["test"].class_pixels[v]
        for v in range(1, 20)
    }
    assert merged == summary.class_pixels
    assert sum(merged.values()) == 6 * SIZE * SIZE
    # The border patches' crops leave the super-area: a warning each, not an error.
    partly = [p for p in report.warnings if "partly outside" in p.message]
    assert sorted(p.file.stem for p in partly) == sorted(summary.border_patches)
    text = report.format()
    assert text.startswith("Dataset check: OK") and "agricultural land" in text
    assert "dates per zone: min 4, mean 4.0, max 4" in text


def test_every_planted_problem_is_reported(dataset: Path) -> None:
    (img_a, img_b), (msk_c, msk_d) = (
        [d for d in zone_dirs(dataset, TRAIN_ROOTS, k)][:2] for k in ("aerial", "labels")
    )
    # Zone A: one mask deleted, another patch's aerial image rewritten with 4 bands.
    masks_a = sorted(msk_c.glob("MSK_*.tif"))
    masks_a[0].unlink()
    four_band = sorted(img_a.glob("IMG_*.tif"))[1]
    with rasterio.open(four_band) as src:
        rewrite_tif(four_band, src.read()[:4])
    # Zone B: the data array truncated, a label value of 25 in one mask.
    (data_b,) = (dataset / TRAIN_ROOTS["sen"]).glob(f"{img_b.parts[-3]}/*/sen/*_data.npy")
    raw = data_b.read_bytes()
    data_b.write_bytes(raw[: len(raw) // 2])
    bad_label = sorted(msk_d.glob("MSK_*.tif"))[0]
    with rasterio.open(bad_label) as src:
        labels = src.read()
    labels[0, :3, :5] = 25
    rewrite_tif(bad_label, labels)
    # Test zone: one product line missing.
    (products,) = (dataset / TEST_ROOTS["sen"]).glob("*/*/sen/*_products.txt")
    lines = products.read_text().splitlines()
    products.write_text("\n".join(lines[:-1]) + "\n")

    report = check_dataset(config(dataset))
    assert not report.ok
    text = report.format()
    assert "FAILED" in text
    missing = sorted(img_a.glob("IMG_*.tif"))[0]
    (p,) = errors_about(report, masks_a[0].name)
    assert p.file == missing and "no mask" in p.message
    (p,) = errors_about(report, four_band)
    assert p.message == "4 bands, expected 5 (num_channels_aerial)"
    (p,) = errors_about(report, data_b)
    assert p.file == data_b and "is not a readable .npy array" in p.message
    (p,) = errors_about(report, bad_label)
    assert "15 pixel(s) with label values outside 1–19 (25)" in p.message
    (p,) = errors_about(report, products)
    assert "3 products listed" in p.message and "holds 4 dates" in p.message
    assert len(report.errors) == 5, text
    for path in (masks_a[0].name, four_band, data_b, bad_label, products):
        assert str(path) in text


def test_truncated_tif_and_shape_mismatches(dataset: Path) -> None:
    img_dir = zone_dirs(dataset, TRAIN_ROOTS, "aerial")[0]
    msk_dir = zone_dirs(dataset, TRAIN_ROOTS, "labels")[0]
    first, second = sorted(img_dir.glob("IMG_*.tif"))
    raw = first.read_bytes()
    first.write_bytes(raw[: len(raw) // 2])  # header intact, pixels cut off
    # The second patch shrinks to 32 px; its mask stays 64 px.
    with rasterio.open(second) as src:
        rewrite_tif(second, src.read()[:, :32, :32])
    (sen,) = (dataset / TRAIN_ROOTS["sen"]).glob(f"{img_dir.parts[-3]}/*/sen")
    masks_file = next(sen.glob("*_masks.npy"))
    np.save(masks_file, np.load(masks_file)[:, :, :-1])

    report = check_dataset(config(dataset), quick=True)
    (p,) = errors_about(report, first)
    assert "unreadable aerial image" in p.message
    msgs = [p.message for p in errors_about(report, second)]
    assert msgs == ["32×32 pixels, the other patches: 64×64"]
    second_mask = msk_dir / second.name.replace("IMG_", "MSK_")
    (p,) = errors_about(report, second_mask)
    assert p.message == "64×64 pixels, the aerial image is 32×32"
    (p,) = errors_about(report, masks_file)
    assert "does not match data shape" in p.message


def test_indexes_centroids_and_orphans(dataset: Path) -> None:
    centroids = json.loads((dataset / CENTROIDS_NAME).read_text())
    metadata = json.loads((dataset / METADATA_NAME).read_text())
    imgs = sorted((dataset / TRAIN_ROOTS["aerial"]).rglob("IMG_*.tif"))
    no_centroid, outside, no_record, bad_record = imgs
    del centroids[no_centroid.name]
    centroids[outside.name] = [500, 3]
    del metadata[no_record.stem]
    metadata[bad_record.stem]["date"] = "yesterday"
    (dataset / CENTROIDS_NAME).write_text(json.dumps(centroids))
    (dataset / METADATA_NAME).write_text(json.dumps(metadata))
    orphan_dir = zone_dirs(dataset, TEST_ROOTS, "labels")[0]
    orphan = orphan_dir / "MSK_999999.tif"
    shutil.copy(next(orphan_dir.glob("MSK_*.tif")), orphan)

    report = check_dataset(config(dataset))
    (p,) = errors_about(report, no_centroid)
    assert "centroid missing" in p.message
    (p,) = errors_about(report, outside)
    assert "[500, 3]" in p.message and "entirely outside" in p.message
    (p,) = errors_about(report, orphan)
    assert "orphan mask" in p.message
    # Named as training names it: the image whose record is missing.
    (p,) = errors_about(report, no_record)
    assert p.message == f"no record {no_record.stem} in the aerial metadata JSON"
    (p,) = [p for p in report.errors if p.file == dataset / METADATA_NAME]
    assert bad_record.stem in p.message and "'date'" in p.message
    assert len(report.errors) == 5, report.format()
    # Without the metadata branch, metadata problems are only warnings.
    relaxed = check_dataset(config(dataset, aerial_metadata=False))
    assert len(relaxed.errors) == 3
    assert {p.file for p in relaxed.warnings} >= {no_record, dataset / METADATA_NAME}


def test_missing_centroids_file_and_empty_config(tmp_path: Path) -> None:
    report = check_dataset(config(tmp_path))
    assert not report.ok
    assert len(report.errors) == 1 and "flair-2_centroids_sp_to_patch.json" in str(report.errors[0])
    (tmp_path / "c.json").write_text("{}")
    empty = check_dataset(
        config_from_dict({"data": {"path_sp_centroids": str(tmp_path / "c.json")}})
    )
    assert [str(p) for p in empty.errors] == [
        "config key 'data.path_metadata_aerial' is empty but aerial_metadata is true",
        "no dataset folder configured: set the data.path_* keys",
    ]


def test_format_truncates_long_lists() -> None:
    report = CheckReport(errors=[Problem(f"problem {i}", Path(f"/x/{i}.tif")) for i in range(7)])
    text = report.format(max_problems=3)
    assert "/x/2.tif: problem 2" in text and "/x/3.tif" not in text
    assert "… and 4 more" in text


def test_aerial_geometry_and_dtype(dataset: Path) -> None:
    (odd, oblong), (wide,) = (
        sorted(zone_dirs(dataset, TRAIN_ROOTS, "aerial")[1].glob("IMG_*.tif")),
        sorted(zone_dirs(dataset, TEST_ROOTS, "aerial")[0].glob("IMG_*.tif"))[:1],
    )
    with rasterio.open(odd) as src:
        pixels = src.read()
    rewrite_tif(odd, pixels[:, :48, :48])
    rewrite_tif(oblong, pixels[:, :, :32])
    rewrite_tif(wide, pixels.astype(np.uint16))
    report = check_dataset(config(dataset))
    assert [p.message for p in errors_about(report, odd)] == [
        "48×48 pixels: the side must be a multiple of 32"
    ]
    assert [p.message for p in errors_about(report, oblong)] == [
        "64×32 pixels: aerial patches must be square"
    ]
    assert [p.message for p in errors_about(report, wide)] == ["dtype uint16, expected uint8"]


def test_missing_test_labels_folder_still_checks_the_images(dataset: Path) -> None:
    shutil.rmtree(dataset / TEST_ROOTS["labels"])
    report = check_dataset(config(dataset))
    assert [str(p) for p in report.errors] == [
        f"data.path_labels_test: folder {dataset / TEST_ROOTS['labels']} not found"
    ]
    assert report.summary.splits["test"].patches == 2
    assert sum(report.summary.splits["test"].class_pixels.values()) == 0


def test_a_patch_id_twice_in_a_split_fails_the_check(dataset: Path) -> None:
    (zone_a, zone_b), (masks_a, masks_b) = (
        zone_dirs(dataset, TRAIN_ROOTS, k)[:2] for k in ("aerial", "labels")
    )
    image = sorted(zone_a.glob("IMG_*.tif"))[0]
    copy = zone_b / image.name
    shutil.copy(image, copy)
    shutil.copy(masks_a / f"MSK_{image.name[4:]}", masks_b / f"MSK_{image.name[4:]}")
    report = check_dataset(config(dataset))
    assert not report.ok
    problems = [str(p) for p in report.errors if "duplicate patch id" in str(p)]
    assert len(problems) == 1
    assert str(image) in problems[0] and str(copy) in problems[0]
    assert "in the train split" in problems[0]


def test_product_dates_are_parsed_as_training_parses_them(dataset: Path) -> None:
    # '201803 5' passed an older, more lenient check and then failed training.
    products = sorted((dataset / TRAIN_ROOTS["sen"]).glob("*/*/sen/*_products.txt"))[0]
    lines = products.read_text().splitlines()
    lines[1] = lines[1][:11] + "201803 5" + lines[1][19:]
    products.write_text("\n".join(lines) + "\n")
    report = check_dataset(config(dataset))
    (problem,) = errors_about(report, products)
    assert "line 2" in str(problem) and "201803 5" in str(problem)
    with pytest.raises(DataError):  # what training reads the file with
        read_products(products)
