"""Tests of the per-patch prediction writer and the background writer."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin

from flair2.classes import PALETTE, hex_to_rgb
from flair2.formats import VALUES_TAG
from flair2.prediction.writer import (
    AsyncWriter,
    is_done,
    prediction_path,
    probability_path,
    write_prediction,
)

CRS_2154 = CRS.from_epsg(2154)
TRANSFORM = from_origin(843000.0, 6520000.0, 0.2, 0.2)


def _classes(h: int = 8, w: int = 12) -> np.ndarray:
    return (np.arange(h * w).reshape(h, w) % 13).astype(np.uint8)


def test_paths_and_id_cleaning(tmp_path):
    assert prediction_path(tmp_path, "077413") == tmp_path / "PRED_077413.tif"
    assert prediction_path(tmp_path, "IMG_077413.tif") == tmp_path / "PRED_077413.tif"
    assert probability_path(tmp_path, "077413") == tmp_path / "PROB_077413.tif"
    with pytest.raises(ValueError, match="invalid patch id"):
        prediction_path(tmp_path, "../x")


def test_model_values_georeferencing_palette_and_tag(tmp_path):
    classes = _classes()
    path = prediction_path(tmp_path, "000001")
    write_prediction(path, classes, crs=CRS_2154, transform=TRANSFORM)
    with rasterio.open(path) as src:
        assert src.count == 1
        assert src.dtypes == ("uint8",)
        assert src.compression is not None and src.compression.value == "LZW"
        assert src.crs == CRS_2154
        assert src.transform == TRANSFORM
        assert src.tags()[VALUES_TAG] == "model"
        np.testing.assert_array_equal(src.read(1), classes)
        cmap = src.colormap(1)
    assert cmap[0] == (*hex_to_rgb(PALETTE[0]), 255)  # building
    assert cmap[0] == (0xDB, 0x0E, 0x9A, 255)
    assert cmap[4] == (0x15, 0x53, 0xAE, 255)  # water
    assert cmap[12] == (0, 0, 0, 255)  # other


def test_labels_mode_adds_one_and_shifts_colour_table(tmp_path):
    classes = _classes()
    path = tmp_path / "PRED_000002.tif"
    write_prediction(path, classes, crs=CRS_2154, transform=TRANSFORM, values="labels")
    with rasterio.open(path) as src:
        data = src.read(1)
        assert src.tags()[VALUES_TAG] == "labels"
        cmap = src.colormap(1)
    np.testing.assert_array_equal(data, classes + 1)
    assert data.min() == 1 and data.max() == 13
    assert cmap[1] == (0xDB, 0x0E, 0x9A, 255)  # label 1 = building
    assert cmap[5] == (0x15, 0x53, 0xAE, 255)  # label 5 = water
    assert cmap[13] == (0, 0, 0, 255)


def test_probabilities_file(tmp_path):
    classes = np.zeros((4, 6), dtype=np.uint8)
    probs = np.zeros((13, 4, 6), dtype=np.float32)
    probs[0] = 0.5
    probs[1] = 0.25
    probs[2] = 1.0
    probs[3, 0, 0] = 0.1
    path = prediction_path(tmp_path, "000003")
    write_prediction(path, classes, crs=CRS_2154, transform=TRANSFORM, probabilities=probs)
    prob_path = probability_path(tmp_path, "000003")
    assert prob_path.is_file()
    with rasterio.open(prob_path) as src:
        assert src.count == 13
        assert set(src.dtypes) == {"uint8"}
        assert src.compression.value == "LZW"
        assert src.crs == CRS_2154 and src.transform == TRANSFORM
        assert src.descriptions[0] == "building"
        data = src.read()
    assert data.shape == (13, 4, 6)
    assert np.all(data[0] == 128)  # round(0.5 * 255) = 127.5 → 128 (round half to even)
    assert np.all(data[1] == 64)  # round(63.75)
    assert np.all(data[2] == 255)
    assert data[3, 0, 0] == 26  # round(25.5) → 26
    assert np.all(data[4:] == 0)


def test_bad_inputs_are_rejected(tmp_path):
    path = tmp_path / "PRED_000001.tif"
    with pytest.raises(ValueError, match="values must be"):
        write_prediction(path, _classes(), crs=None, transform=None, values="other")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"found values 0\.\.13"):
        write_prediction(
            path,
            np.array([[0, 13]], dtype=np.uint8),
            crs=None,
            transform=None,
        )
    with pytest.raises(ValueError, match=r"\(K, 8, 12\)"):
        write_prediction(
            path, _classes(), crs=None, transform=None, probabilities=np.zeros((13, 4, 4))
        )
    assert list(tmp_path.iterdir()) == []


def test_failure_mid_write_leaves_no_file(tmp_path, monkeypatch):
    def broken_write(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(rasterio.io.DatasetWriter, "write", broken_write)
    path = prediction_path(tmp_path, "000004")
    with pytest.raises(OSError, match="disk full"):
        write_prediction(path, _classes(), crs=CRS_2154, transform=TRANSFORM)
    assert list(tmp_path.iterdir()) == []
    assert not is_done(tmp_path, "000004")


def test_failure_after_data_written_leaves_no_file(tmp_path, monkeypatch):
    # The band is already written when the colour table fails: still nothing left behind.
    def broken(self, *args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(rasterio.io.DatasetWriter, "write_colormap", broken)
    with pytest.raises(RuntimeError, match="boom"):
        write_prediction(tmp_path / "PRED_000005.tif", _classes(), crs=None, transform=None)
    assert list(tmp_path.iterdir()) == []


def test_is_done(tmp_path):
    assert not is_done(tmp_path, "000006")
    write_prediction(
        prediction_path(tmp_path, "000006"), _classes(), crs=CRS_2154, transform=TRANSFORM
    )
    assert is_done(tmp_path, "000006")
    assert not is_done(tmp_path, "000006", with_probabilities=True)
    probs = np.full((13, 8, 12), 1 / 13, dtype=np.float32)
    write_prediction(
        prediction_path(tmp_path, "000006"),
        _classes(),
        crs=CRS_2154,
        transform=TRANSFORM,
        probabilities=probs,
    )
    assert is_done(tmp_path, "000006", with_probabilities=True)


def test_async_writer_runs_every_job_in_order():
    done: list[int] = []
    main = threading.get_ident()
    threads: set[int] = set()

    def job(i: int, *, delay: float = 0.0) -> None:
        time.sleep(delay)
        threads.add(threading.get_ident())
        done.append(i)

    with AsyncWriter(maxsize=2) as writer:
        for i in range(10):
            writer.submit(job, i, delay=0.001)
    assert done == list(range(10))
    assert main not in threads and len(threads) == 1


def test_async_writer_writes_files(tmp_path):
    with AsyncWriter() as writer:
        for i in range(3):
            path = prediction_path(tmp_path, f"00000{i}")
            writer.submit(write_prediction, path, _classes(), crs=CRS_2154, transform=TRANSFORM)
    assert all(is_done(tmp_path, f"00000{i}") for i in range(3))


def test_async_writer_reraises_worker_exception_on_close():
    ran: list[int] = []

    def job(i: int) -> None:
        if i == 1:
            raise ValueError("bad patch 1")
        ran.append(i)

    writer = AsyncWriter()
    writer.submit(job, 0)
    writer.submit(job, 1)
    writer.submit(job, 2)
    with pytest.raises(ValueError, match="bad patch 1"):
        writer.close()
    # Jobs after the failure are skipped, and the error is raised again on later calls.
    assert ran == [0]
    with pytest.raises(ValueError, match="bad patch 1"):
        writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(job, 3)


def test_async_writer_submit_raises_after_failure_and_context_manager_raises():
    def fail() -> None:
        raise OSError("no space")

    with pytest.raises(OSError, match="no space"), AsyncWriter() as writer:
        writer.submit(fail)
        # Wait for the worker to record the failure: the next submit must raise it.
        writer._queue.join()
        writer.submit(lambda: None)


def test_async_writer_body_exception_wins():
    def fail() -> None:
        raise OSError("worker failed")

    with pytest.raises(KeyError, match="body failed"), AsyncWriter() as writer:
        writer.submit(fail)
        raise KeyError("body failed")
