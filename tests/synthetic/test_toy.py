"""The toy dataset generator: layout, georeferencing, indexes, determinism, learnability."""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio

from flair2.config import load_config
from flair2.data.discovery import discover
from flair2.synthetic import (
    CENTROIDS_NAME,
    METADATA_NAME,
    TEST_ROOTS,
    TRAIN_ROOTS,
    ToySummary,
    generate_toy_dataset,
    toy_config_dict,
)

SMALL = {
    "patch_size": 64,
    "num_domains": 2,
    "zones_per_domain": 1,
    "patches_per_zone": 2,
    "num_test_domains": 1,
    "test_patches_per_zone": 2,
    "num_dates": 4,
    "sat_patch_size": 8,
}
PRODUCT = re.compile(r"^S2[AB]_MSIL2A_(\d{8})T\d{6}_N\d{4}_R\d{3}_T\d{2}[A-Z]{3}_\d{8}T\d{6}$")


def _zones(root: Path, split_roots: dict[str, str]) -> list[tuple[str, str]]:
    aerial = root / split_roots["aerial"]
    return sorted((d.name, z.name) for d in aerial.iterdir() for z in d.iterdir())


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ToySummary]:
    root = tmp_path_factory.mktemp("toy") / "ds"
    return root, generate_toy_dataset(root, seed=3, **SMALL)


def test_layout_follows_the_official_names(small: tuple[Path, ToySummary]) -> None:
    root, summary = small
    assert summary.num_train_patches == 4 and summary.num_test_patches == 2
    assert len(summary.train_domains) == 2 and len(summary.test_domains) == 1
    ids = set()
    for split_roots, n_domains in ((TRAIN_ROOTS, 2), (TEST_ROOTS, 1)):
        zones = _zones(root, split_roots)
        assert len(zones) == n_domains
        for domain, zone in zones:
            assert re.fullmatch(r"D\d{3}_(2018|2019|2020|2021)", domain)
            assert re.fullmatch(r"Z\d+_[A-Za-z0-9]+", zone)
            imgs = sorted((root / split_roots["aerial"] / domain / zone / "img").iterdir())
            msks = sorted((root / split_roots["labels"] / domain / zone / "msk").iterdir())
            assert len(imgs) == 2
            assert [p.name for p in msks] == [p.name.replace("IMG_", "MSK_") for p in imgs]
            for p in imgs:
                assert re.fullmatch(r"IMG_\d{6}\.tif", p.name)
                ids.add(p.name)
            sen = root / split_roots["sen"] / domain / zone / "sen"
            stem = f"SEN2_sp_{domain}-{zone}"
            assert sorted(p.name for p in sen.iterdir()) == sorted(
                f"{stem}_{s}" for s in ("data.npy", "masks.npy", "products.txt")
            )
    assert len(ids) == 6  # patch ids are unique across the dataset
    text = summary.format()
    assert "train: 4 patches" in text and "4–4 Sentinel-2 dates" in text
    assert (root / CENTROIDS_NAME).is_file() and (root / METADATA_NAME).is_file()


def test_rasters_are_georeferenced_5_band_uint8(small: tuple[Path, ToySummary]) -> None:
    root, _ = small
    imgs = sorted((root / TRAIN_ROOTS["aerial"]).rglob("IMG_*.tif"))
    for img_path in imgs:
        msk_path = (
            Path(str(img_path).replace(TRAIN_ROOTS["aerial"], TRAIN_ROOTS["labels"])).parent.parent
            / "msk"
            / img_path.name.replace("IMG_", "MSK_")
        )
        with rasterio.open(img_path) as img, rasterio.open(msk_path) as msk:
            assert (img.count, img.width, img.height) == (5, 64, 64)
            assert img.dtypes == ("uint8",) * 5
            assert img.crs.to_epsg() == 2154
            assert img.transform.a == pytest.approx(0.2) and img.transform.e == pytest.approx(-0.2)
            assert 100_000 < img.transform.c < 1_300_000 and 6_000_000 < img.transform.f < 7_200_000
            assert (msk.count, msk.dtypes[0], msk.shape) == (1, "uint8", (64, 64))
            assert msk.transform == img.transform and msk.crs == img.crs
            labels = msk.read(1)
            assert labels.min() >= 1 and labels.max() <= 19
            assert img.read().std() > 1  # textured, not constant


def test_sentinel_arrays_and_products(small: tuple[Path, ToySummary]) -> None:
    root, summary = small
    for split_roots in (TRAIN_ROOTS, TEST_ROOTS):
        for domain, zone in _zones(root, split_roots):
            sen = root / split_roots["sen"] / domain / zone / "sen" / f"SEN2_sp_{domain}-{zone}"
            data = np.load(f"{sen}_data.npy")
            masks = np.load(f"{sen}_masks.npy")
            products = Path(f"{sen}_products.txt").read_text().splitlines()
            t = summary.zones[f"{domain}/{zone}"]
            assert data.dtype == np.uint16 and data.shape[:2] == (t, 10) and t == 4
            assert masks.dtype == np.uint8 and masks.shape == (t, 2, *data.shape[2:])
            assert masks.max() <= 100 and data.min() >= 1  # 0 would read as padding
            assert len(products) == t
            dates = [
                datetime.datetime.strptime(PRODUCT.match(p).group(1), "%Y%m%d") for p in products
            ]
            assert dates == sorted(dates) and len(set(dates)) == t
            assert {d.year for d in dates} == {int(domain[-4:])}
            # One date is cloudy over the whole super-area.
            assert ((masks[:, 0] >= 60).mean(axis=(1, 2)) == 1.0).any()


def test_indexes_match_files_and_geometry(small: tuple[Path, ToySummary]) -> None:
    root, _ = small
    centroids = json.loads((root / CENTROIDS_NAME).read_text())
    metadata = json.loads((root / METADATA_NAME).read_text())
    imgs = sorted(root.glob("*/D*/Z*/img/IMG_*.tif"))
    assert set(centroids) == {p.name for p in imgs}
    assert set(metadata) == {p.stem for p in imgs}
    by_zone: dict[tuple[str, str], list[tuple[list[int], float, float]]] = {}
    for p in imgs:
        rec = metadata[p.stem]
        domain, zone = p.parts[-4], p.parts[-3]
        assert (rec["domain"], rec["zone"]) == (domain, zone)
        assert rec["date"].startswith(domain[-4:]) and re.fullmatch(r"\d{1,2}h\d{2}", rec["time"])
        assert isinstance(rec["camera"], str) and isinstance(rec["patch_centroid_z"], float)
        with rasterio.open(p) as src:
            left, top = src.transform.c, src.transform.f
        assert (rec["x"], rec["y"]) == pytest.approx((left, top))
        cx, cy = rec["patch_centroid_x"], rec["patch_centroid_y"]
        assert (cx, cy) == pytest.approx((left + 6.4, top - 6.4))  # 64 px × 0.2 m / 2
        by_zone.setdefault((domain, zone), []).append((centroids[p.name], cx, cy))
    for patches in by_zone.values():
        # Centroid rows/cols move with the patch centre, 10 m per Sentinel-2 pixel.
        (rc0, x0, y0), (rc1, x1, y1) = patches[0], patches[1]
        assert x1 - x0 == pytest.approx(10 * (rc1[1] - rc0[1]))
        assert y1 - y0 == pytest.approx(-10 * (rc1[0] - rc0[0]))


def test_border_and_all_cloudy_patches(small: tuple[Path, ToySummary]) -> None:
    root, summary = small
    centroids = json.loads((root / CENTROIDS_NAME).read_text())
    half = SMALL["sat_patch_size"] // 2
    assert summary.border_patches
    for name in summary.border_patches:
        assert centroids[f"{name}.tif"][0] < half  # the crop starts above row 0
    (cloudy,) = summary.all_cloudy_patches
    (img,) = root.glob(f"{TRAIN_ROOTS['aerial']}/*/*/img/{cloudy}.tif")
    domain, zone = img.parts[-4], img.parts[-3]
    masks = np.load(
        root / TRAIN_ROOTS["sen"] / domain / zone / "sen" / f"SEN2_sp_{domain}-{zone}_masks.npy"
    )
    row, col = centroids[f"{cloudy}.tif"]
    crop = masks[:, 0, max(row - half, 0) : row + half, max(col - half, 0) : col + half]
    assert ((crop >= 60).mean(axis=(1, 2)) >= 0.5).all()  # every date would be filtered


def test_config_loads_and_discovery_finds_every_patch(small: tuple[Path, ToySummary]) -> None:
    root, summary = small
    cfg = load_config(summary.config_path)
    assert cfg.data.path_aerial_train == str(root / TRAIN_ROOTS["aerial"])
    assert toy_config_dict(root) == {k: getattr(cfg.data, k) for k in toy_config_dict(root)}
    assert cfg.sat_patch_size == 8 and cfg.patch_size == 64
    splits = discover(cfg)
    assert len(splits.train) + len(splits.val) == summary.num_train_patches
    assert len(splits.test) == summary.num_test_patches


def _arrays(root: Path) -> dict[str, np.ndarray]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.suffix == ".tif":
            with rasterio.open(p) as src:
                out[str(p.relative_to(root))] = src.read()
        elif p.suffix == ".npy":
            out[str(p.relative_to(root))] = np.load(p)
    return out


def test_same_seed_same_arrays_other_seed_differs(tmp_path: Path) -> None:
    kwargs = {**SMALL, "num_domains": 1, "num_test_domains": 1}
    generate_toy_dataset(tmp_path / "a", seed=7, **kwargs)
    generate_toy_dataset(tmp_path / "b", seed=7, **kwargs)
    generate_toy_dataset(tmp_path / "c", seed=8, **kwargs)
    a, b = _arrays(tmp_path / "a"), _arrays(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) == 2 * 4 + 2 * 2
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    for name in (CENTROIDS_NAME, METADATA_NAME):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    c = _arrays(tmp_path / "c")
    assert sorted(c) != sorted(a)  # other domains and ids
    first_a = next(v for k, v in a.items() if k.endswith("data.npy"))
    first_c = next(v for k, v in c.items() if k.endswith("data.npy"))
    assert first_a.shape != first_c.shape or not np.array_equal(first_a, first_c)


def test_existing_dataset_needs_overwrite(tmp_path: Path) -> None:
    kwargs = {**SMALL, "num_domains": 1, "num_test_domains": 0}
    generate_toy_dataset(tmp_path, seed=1, **kwargs)
    with pytest.raises(FileExistsError, match="flair_aerial_train"):
        generate_toy_dataset(tmp_path, seed=2, **kwargs)
    summary = generate_toy_dataset(tmp_path, seed=2, overwrite=True, **kwargs)
    assert len(list(tmp_path.rglob("IMG_*.tif"))) == summary.num_train_patches == 2
    cfg = load_config(summary.config_path)  # no test split: its keys are left empty
    assert (cfg.data.path_aerial_test, cfg.data.path_labels_test) == ("", "")
    splits = discover(cfg, stages=("fit",))
    assert len(splits.train) + len(splits.val) == 2


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [("patch_size", 50, "multiple of 32"), ("sat_patch_size", 12, "multiple of 8"),
     ("num_domains", 0, "num_domains")],
)  # fmt: skip
def test_bad_arguments(tmp_path: Path, key: str, value: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_toy_dataset(tmp_path, **{**SMALL, key: value})


def test_s2_only_classes_look_alike_from_the_air_but_not_from_space(tmp_path: Path) -> None:
    """Classes 10, 11, 12: same aerial statistics, different Sentinel-2 vegetation curves."""
    summary = generate_toy_dataset(
        tmp_path, seed=0, patch_size=256, num_domains=1, zones_per_domain=1, region_size=60.0,
        patches_per_zone=9, num_test_domains=0, num_dates=6, sat_patch_size=8,
    )  # fmt: skip
    centroids = json.loads((tmp_path / CENTROIDS_NAME).read_text())
    pixels: dict[int, list[np.ndarray]] = {c: [] for c in range(1, 13)}
    ndvi: dict[int, list[np.ndarray]] = {c: [] for c in (10, 11, 12)}
    block = 50  # aerial pixels per Sentinel-2 pixel
    for img_path in sorted(tmp_path.rglob("IMG_*.tif")):
        domain, zone = img_path.parts[-4], img_path.parts[-3]
        msk_path = tmp_path / TRAIN_ROOTS["labels"] / domain / zone / "msk"
        with (
            rasterio.open(img_path) as src,
            rasterio.open(msk_path / f"MSK_{img_path.stem[4:]}.tif") as m,
        ):
            img, labels = src.read(), m.read(1)
        for c in pixels:
            pixels[c].append(img[:, labels == c])
        sen = tmp_path / TRAIN_ROOTS["sen"] / domain / zone / "sen" / f"SEN2_sp_{domain}-{zone}"
        data = np.load(f"{sen}_data.npy").astype(np.float64)
        masks = np.load(f"{sen}_masks.npy")
        series = (data[:, 6] - data[:, 2]) / (data[:, 6] + data[:, 2])  # NDVI-like, (T, H, W)
        series[(masks >= 20).any(axis=1)] = np.nan  # cloud or snow
        row, col = centroids[img_path.name]
        # Sentinel-2 pixels wholly inside the 51.2 m patch: rows row-2 … row+1.
        for i in range(row - 2, row + 2):
            for j in range(col - 2, col + 2):
                y0, x0 = 128 + (i - row) * block, 128 + (j - col) * block
                values, counts = np.unique(
                    labels[y0 : y0 + block, x0 : x0 + block], return_counts=True
                )
                cls = int(values[counts.argmax()])
                if counts.max() >= 0.95 * block * block and cls in ndvi:
                    ndvi[cls].append(series[:, i, j])
    assert sum(summary.class_pixels.values()) == 9 * 256 * 256

    by_class = {c: np.concatenate(v, axis=1) for c, v in pixels.items()}
    present = [c for c, v in by_class.items() if v.shape[1] > 1000]
    assert {10, 11, 12} <= set(present)
    means = {c: by_class[c].mean(axis=1) for c in present}
    stds = {c: by_class[c].std(axis=1) for c in present}
    for a, b in ((10, 11), (10, 12), (11, 12)):
        # Same distribution; per-field tints (a few fields per class here) leave a few DN.
        assert np.abs(means[a] - means[b]).max() < 8, (a, b, means[a], means[b])
        assert np.abs(stds[a] - stds[b]).max() < 3, (a, b, stds[a], stds[b])
    # Every other class present differs from them from the air (some band by > 15).
    others = [c for c in present if c < 10]
    assert len(others) >= 4
    for c in others:
        assert np.abs(means[c] - means[10]).max() > 15, (c, means[c], means[10])

    curves = {}
    for c, values in ndvi.items():
        assert len(values) >= 3, f"too few pure Sentinel-2 pixels of class {c}"
        stack = np.stack(values)
        clear = (~np.isnan(stack)).sum(axis=0)  # some dates are cloudy for every pixel
        curves[c] = np.where(clear > 0, np.nansum(stack, axis=0) / np.maximum(clear, 1), np.nan)
    for a, b in ((10, 11), (10, 12), (11, 12)):
        assert np.nanmax(np.abs(curves[a] - curves[b])) > 0.25, (a, b, curves[a], curves[b])


def test_without_edge_cases_every_crop_is_inside_and_usable(tmp_path: Path) -> None:
    # What the reference's loader needs (bench/reference_pipeline.py): it fails on crops
    # leaving the super-area and on crops cloudy on every date.
    root = tmp_path / "ds"
    summary = generate_toy_dataset(root, seed=3, edge_cases=False, **SMALL)
    assert summary.border_patches == [] and summary.all_cloudy_patches == []
    centroids = json.loads((root / CENTROIDS_NAME).read_text())
    half = SMALL["sat_patch_size"] // 2
    for roots in (TRAIN_ROOTS, TEST_ROOTS):
        for img in root.glob(f"{roots['aerial']}/*/*/img/IMG_*.tif"):
            domain, zone = img.parts[-4], img.parts[-3]
            masks = np.load(
                root / roots["sen"] / domain / zone / "sen" / f"SEN2_sp_{domain}-{zone}_masks.npy",
                mmap_mode="r",
            )
            row, col = centroids[img.name]
            assert half <= row <= masks.shape[2] - half and half <= col <= masks.shape[3] - half
            crop = masks[:, 0, row - half : row + half, col - half : col + half]
            assert ((crop >= 60).mean(axis=(1, 2)) < 0.5).any(), img.name
