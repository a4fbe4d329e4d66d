"""What passes ``flair2 check-data`` is readable by training: the same inputs fail both.

Every broken dataset of ``tests/test_broken_inputs.py`` that stops ``flair2 train``
or ``flair2 predict`` must also fail ``flair2 check-data`` (exit status 1, the
culprit named in the report), and a patch id given twice fails all three.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import tiny_settings
from flair2.cli import main
from flair2.config import config_from_dict
from flair2.data.discovery import discover
from flair2.errors import DataError
from test_broken_inputs import CASES, Case, _config_file

#: The cases that break the dataset itself (not a checkpoint or a resumed run).
DATASET_CASES = [c for c in CASES if c.command in ("train", "predict")]


@pytest.fixture
def root(tiny_root: Path, tmp_path: Path) -> Path:
    """A fresh copy of the tiny dataset to break."""
    copy = tmp_path / "data"
    shutil.copytree(tiny_root, copy)
    return copy


def check_data(config: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    capsys.readouterr()
    status = main(["check-data", "--config", str(config)])
    return status, capsys.readouterr().out


def test_there_are_dataset_cases_to_compare() -> None:
    assert len(DATASET_CASES) >= 15


@pytest.mark.parametrize("case", DATASET_CASES, ids=[c.name for c in DATASET_CASES])
def test_what_stops_training_fails_check_data(
    case: Case, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    culprit = case.breaker(root)
    config = _config_file(root, tmp_path, case.settings)  # the very config training failed on
    status, out = check_data(config, capsys)
    assert status == 1, out
    errors = out.split("Warnings:")[0]
    assert culprit.name in errors, out


def test_a_clean_copy_passes_check_data(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # The cases above fail because of what they break, not because of the setup.
    status, out = check_data(_config_file(root, tmp_path, {}), capsys)
    assert status == 0, out


def test_a_product_date_training_refuses_fails_check_data(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    products = next(root.glob("flair_sen_train/*/*/sen/SEN2*_products.txt"))
    lines = products.read_text().splitlines()
    lines[2] = lines[2][:11] + "201803 5" + lines[2][19:]
    products.write_text("\n".join(lines) + "\n")
    status, out = check_data(_config_file(root, tmp_path, {}), capsys)
    assert status == 1
    (line,) = [x for x in out.splitlines() if str(products) in x]
    assert "line 3" in line and "201803 5" in line


def test_nan_in_float_sentinel_data_fails_check_data(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = next(root.glob("flair_sen_train/*/*/sen/SEN2*_data.npy"))
    array = np.load(data).astype(np.float32)
    array[:, :, :, :] = np.nan  # every crop of the zone holds NaN: training refuses them
    np.save(data, array)
    status, out = check_data(_config_file(root, tmp_path, {}), capsys)
    assert status == 1
    (line,) = [x for x in out.splitlines() if str(data) in x and "NaN" in x]
    assert f"{array.size} NaN or infinite value(s)" in line


def test_a_lower_case_image_name_finds_its_metadata_in_both(
    root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # The metadata index is keyed IMG_<id> whatever the file's case; training once
    # looked the record up by the file's own stem and failed where check-data passed.
    image = next(root.glob("flair_aerial_train/*/*/img/IMG_*.tif"))
    image.rename(image.with_name(image.name.lower()))
    settings = tiny_settings(root, tmp_path / "out")
    splits = discover(config_from_dict(settings), stages=("fit",))
    (rec,) = [r for r in splits.train + splits.val if r.aerial.name == image.name.lower()]
    assert rec.metadata["camera"]
    config = tmp_path / "config.yml"
    config.write_text(yaml.safe_dump(settings))
    assert check_data(config, capsys)[0] == 0


def _duplicate(root: Path, split: str) -> tuple[Path, Path]:
    """Copy one patch's zone into a new domain holding just that patch, under the same id."""
    folder_name = "flair_{}_train" if split == "train" else "flair_2_{}_test"
    roots = {k: root / folder_name.format(k) for k in ("aerial", "labels", "sen")}
    first = sorted(roots["aerial"].glob("*/*/img/IMG_*.tif"))[0]
    domain, zone = first.parts[-4], first.parts[-3]
    for folder in roots.values():
        shutil.copytree(folder / domain / zone, folder / "D999_2021" / zone)
    kept = {first.name, "MSK_" + first.name[4:]}
    for kind in ("aerial", "labels"):
        for path in (roots[kind] / "D999_2021" / zone).glob("*/*.tif"):
            if path.name not in kept:
                path.unlink()
    return first, roots["aerial"] / "D999_2021" / zone / "img" / first.name


@pytest.mark.parametrize("split", ["train", "test"])
def test_a_patch_id_twice_fails_check_data_naming_both_files(
    split: str, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    first, copy = _duplicate(root, split)
    status, out = check_data(_config_file(root, tmp_path, {}), capsys)
    assert status == 1
    (line,) = [x for x in out.splitlines() if f"duplicate patch id {first.stem[4:]}" in x]
    assert f"in the {split} split" in line
    assert str(first) in line and str(copy) in line


@pytest.mark.parametrize("split", ["train", "test"])
def test_training_and_predict_refuse_a_patch_id_twice(
    split: str, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    first, copy = _duplicate(root, split)
    # Train and validation together: one domain of each holds the id.
    settings = tiny_settings(root, tmp_path / "out", val_domains=[copy.parts[-4]])
    stage = "fit" if split == "train" else "test"
    with pytest.raises(DataError) as err:
        discover(config_from_dict(settings), stages=(stage,))
    message = str(err.value)
    assert "\n" not in message
    assert str(first) in message and str(copy) in message
