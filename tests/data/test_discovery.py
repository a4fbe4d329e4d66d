"""Discovery: pairing by id, the domain split, and every error it names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flair2.config import config_from_dict
from flair2.data.discovery import discover, discover_split
from flair2.data.splits import split_domains
from flair2.errors import DataError

LAYOUT = {
    "D001_2020": {"Z1_UF": ["000001", "000010", "000002"]},
    "D002_2021": {"Z1_UA": ["000003"], "Z2_UF": ["000004"]},
    "D003_2019": {"Z3_AB": ["000005"]},
}


def make_layout(root: Path, layout: dict = LAYOUT, split: str = "train") -> dict[str, Path]:
    """Empty files with official names: discovery only looks at names."""
    roots = {
        "aerial": root / f"aerial_{split}",
        "labels": root / f"labels_{split}",
        "sen": root / f"sen_{split}",
    }
    centroids, metadata = {}, {}
    for domain, zones in layout.items():
        for zone, ids in zones.items():
            (roots["aerial"] / domain / zone / "img").mkdir(parents=True, exist_ok=True)
            (roots["labels"] / domain / zone / "msk").mkdir(parents=True, exist_ok=True)
            sen = roots["sen"] / domain / zone / "sen"
            sen.mkdir(parents=True, exist_ok=True)
            for suffix in ("data.npy", "masks.npy", "products.txt"):
                (sen / f"SEN2_sp_{domain}-{zone}_{suffix}").touch()
            for pid in ids:
                (roots["aerial"] / domain / zone / "img" / f"IMG_{pid}.tif").touch()
                (roots["labels"] / domain / zone / "msk" / f"MSK_{pid}.tif").touch()
                centroids[f"IMG_{pid}.tif"] = [20, 30]
                metadata[f"IMG_{pid}"] = {"domain": domain, "zone": zone}
    roots["centroids"] = root / "centroids.json"
    roots["metadata"] = root / "metadata.json"
    roots["centroids"].write_text(json.dumps(centroids))
    roots["metadata"].write_text(json.dumps(metadata))
    return roots


def walk(roots: dict[str, Path], **kwargs):
    return discover_split(
        roots["aerial"],
        roots["sen"],
        roots["labels"],
        json.loads(roots["centroids"].read_text()),
        json.loads(roots["metadata"].read_text()),
        require_labels=True,
        **kwargs,
    )


def test_pairs_by_id_sorted_numerically(tmp_path: Path) -> None:
    roots = make_layout(tmp_path)
    recs = walk(roots)
    assert [r.patch_id for r in recs] == [
        "000001",
        "000002",
        "000010",
        "000003",
        "000004",
        "000005",
    ]
    for r in recs:
        assert r.aerial.name == f"IMG_{r.patch_id}.tif"
        assert r.label is not None and r.label.name == f"MSK_{r.patch_id}.tif"
        assert r.label.parts[-4:-2] == r.aerial.parts[-4:-2] == (r.domain, r.zone)
        assert r.sentinel.data.name == f"SEN2_sp_{r.domain}-{r.zone}_data.npy"
        assert r.centroid == (20, 30)
        assert r.metadata == {"domain": r.domain, "zone": r.zone}


def test_underscore_sentinel_names_are_found(tmp_path: Path) -> None:
    roots = make_layout(tmp_path, {"D001_2020": {"Z1_UF": ["000001"]}})
    sen = roots["sen"] / "D001_2020" / "Z1_UF" / "sen"
    for f in sen.iterdir():
        f.rename(sen / f.name.replace("-Z1", "_Z1"))
    (rec,) = walk(roots)
    assert rec.sentinel.masks.name == "SEN2_sp_D001_2020_Z1_UF_masks.npy"


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("mask", "IMG_000002.tif: no mask, expected"),
        ("image", "MSK_000002.tif: orphan mask, no aerial image IMG_000002.tif"),
        ("centroid", "IMG_000002.tif: centroid missing from the centroids JSON"),
        ("metadata", "IMG_000002.tif: no record IMG_000002 in the aerial metadata JSON"),
        ("sentinel", "zone D001_2020/Z1_UF: Sentinel-2 files missing in"),
    ],
)
def test_each_problem_is_one_clear_error(tmp_path: Path, breakage: str, message: str) -> None:
    roots = make_layout(tmp_path)
    base = ("D001_2020", "Z1_UF")
    if breakage == "mask":
        (roots["labels"].joinpath(*base, "msk", "MSK_000002.tif")).unlink()
    elif breakage == "image":
        (roots["aerial"].joinpath(*base, "img", "IMG_000002.tif")).unlink()
    elif breakage == "centroid":
        c = json.loads(roots["centroids"].read_text())
        del c["IMG_000002.tif"]
        roots["centroids"].write_text(json.dumps(c))
    elif breakage == "metadata":
        m = json.loads(roots["metadata"].read_text())
        del m["IMG_000002"]
        roots["metadata"].write_text(json.dumps(m))
    elif breakage == "sentinel":
        next(roots["sen"].joinpath(*base, "sen").glob("*_masks.npy")).unlink()
    with pytest.raises(DataError, match=message.replace(".", r"\.").replace("(", r"\(")):
        walk(roots)
    # With a callback the problem is reported and the rest is kept.
    problems: list[str] = []
    recs = walk(roots, on_problem=problems.append)
    assert len(problems) == 1 and message in problems[0]
    expected = 3 if breakage == "sentinel" else 5
    assert len(recs) == expected


def test_split_is_domain_wise_and_seeded() -> None:
    domains = [f"D{i:03d}_2021" for i in range(10)]
    train, val = split_domains(domains, val_fraction=0.2, seed=2022)
    assert len(val) == 2 and len(train) == 8 and not set(train) & set(val)
    assert (train, val) == split_domains(list(reversed(domains)), val_fraction=0.2, seed=2022)
    others = {tuple(split_domains(domains, val_fraction=0.2, seed=s)[1]) for s in range(10)}
    assert len(others) > 1  # the seed matters
    # At least one validation domain as soon as there are two domains.
    assert split_domains(domains[:2], val_fraction=0.2, seed=0)[1] != []
    assert split_domains(domains, val_fraction=0.0, seed=0) == (sorted(domains), [])


def test_explicit_domain_lists() -> None:
    domains = ["D001_2020", "D002_2021", "D003_2019"]
    assert split_domains(domains, val_fraction=0.2, seed=0, val_domains=["D002_2021"]) == (
        ["D001_2020", "D003_2019"],
        ["D002_2021"],
    )
    with pytest.raises(DataError, match=r"config key 'val_domains': domains \['D999_2020'\]"):
        split_domains(domains, val_fraction=0.2, seed=0, val_domains=["D999_2020"])
    with pytest.raises(DataError, match="in both train_domains and val_domains"):
        split_domains(
            domains, val_fraction=0.2, seed=0, val_domains=["D001_2020"], train_domains=domains
        )


def config_for(roots: dict[str, Path], test_roots: dict[str, Path] | None = None, **extra):
    data = {
        "path_aerial_train": str(roots["aerial"]),
        "path_sen_train": str(roots["sen"]),
        "path_labels_train": str(roots["labels"]),
        "path_sp_centroids": str(roots["centroids"]),
        "path_metadata_aerial": str(roots["metadata"]),
    }
    if test_roots:
        data.update(
            path_aerial_test=str(test_roots["aerial"]),
            path_sen_test=str(test_roots["sen"]),
        )
    return config_from_dict({"data": data, **extra})


def test_discover_from_config(tmp_path: Path) -> None:
    roots = make_layout(tmp_path)
    cfg = config_for(roots, val_domains=["D003_2019"])
    splits = discover(cfg, stages=("fit",))
    assert {r.domain for r in splits.train} == {"D001_2020", "D002_2021"}
    assert [r.patch_id for r in splits.val] == ["000005"]
    assert splits.test == []


def test_missing_folder_names_the_key(tmp_path: Path) -> None:
    roots = make_layout(tmp_path)
    roots["aerial"] = tmp_path / "nowhere"
    with pytest.raises(DataError, match="data.path_aerial_train: folder .*nowhere not found"):
        discover(config_for(roots), stages=("fit",))
    with pytest.raises(DataError, match="config key 'data.path_aerial_test' is empty"):
        discover(config_for(make_layout(tmp_path / "b")), stages=("test",))


def test_bad_json_is_named(tmp_path: Path) -> None:
    roots = make_layout(tmp_path)
    roots["centroids"].write_text("{not json")
    with pytest.raises(DataError, match=r"centroids.json: not valid JSON"):
        discover(config_for(roots), stages=("fit",))


def test_skip_invalid_patches_counts_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    roots = make_layout(tmp_path)
    roots["labels"].joinpath("D001_2020", "Z1_UF", "msk", "MSK_000001.tif").unlink()
    cfg = config_for(roots, val_domains=["D003_2019"], skip_invalid_patches=True)
    splits = discover(cfg, stages=("fit",))
    assert "000001" not in [r.patch_id for r in splits.train]
    assert "skipped 1 patch(es)" in caplog.text


def test_the_same_patch_id_twice_in_a_split_is_an_error_naming_both(tmp_path: Path) -> None:
    layout = {"D001_2020": {"Z1_UF": ["000001", "000002"]}, "D002_2021": {"Z2_UA": ["000002"]}}
    roots = make_layout(tmp_path, layout)
    first = roots["aerial"] / "D001_2020" / "Z1_UF" / "img" / "IMG_000002.tif"
    second = roots["aerial"] / "D002_2021" / "Z2_UA" / "img" / "IMG_000002.tif"
    # Across train and validation (they share the JSON indexes) as within one of them.
    for extra in ({"val_domains": ["D002_2021"]}, {"val_domains": []}):
        with pytest.raises(DataError) as err:
            discover(config_for(roots, **extra), stages=("fit",))
        message = str(err.value)
        assert "duplicate patch id 000002 in the train split" in message
        assert str(first) in message and str(second) in message
    # skip_invalid_patches cannot pick one of the two: still an error.
    with pytest.raises(DataError, match="duplicate patch id 000002"):
        discover(config_for(roots, skip_invalid_patches=True), stages=("fit",))
    test_roots = make_layout(tmp_path / "t", layout, split="test")
    cfg = config_for(roots, test_roots=test_roots)
    with pytest.raises(DataError, match="duplicate patch id 000002 in the test split"):
        discover(cfg, stages=("test",))
