"""The quickstart notebook runs end to end (tiny quick-mode settings) and shows its results."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "flair2-quickstart.ipynb"
KERNEL_NAME = "flair2-test-python"


def _outputs_text(cell: nbformat.NotebookNode) -> str:
    """Every stream and text/plain output of a code cell, joined."""
    parts: list[str] = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
    return "".join(parts)


def _install_kernelspec(root: Path) -> None:
    """A kernelspec that starts this interpreter (the venv's), found through JUPYTER_PATH."""
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "flair2 test kernel",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")


def test_notebook_is_saved_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, "the notebook has no code cells"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]
        # Only the public Python API: no shell escapes.
        assert not any(line.lstrip().startswith("!") for line in cell.source.splitlines())


def test_notebook_runs_in_quick_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_kernelspec(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("FLAIR2_NOTEBOOK_QUICK", "1")
    # The kernel inherits these: its temporary folder stays in tmp_path, and torch
    # and matplotlib stay light on the shared CPU.
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("TMPDIR", str(work))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    errors = [o for c in code for o in c.outputs if o.get("output_type") == "error"]
    assert errors == []
    text = "\n".join(_outputs_text(c) for c in code)
    assert "quick mode: True" in text
    assert str(work) in text  # quick mode works in a temporary folder
    match = re.search(r"^mIoU: (\d+\.\d{4})$", text, flags=re.MULTILINE)
    assert match, "no mIoU line printed"
    assert 0.0 <= float(match.group(1)) <= 1.0
    assert "2 patches predicted" in text
    # The patch figure, the confusion matrix, the IoU bars and the training curves.
    pngs = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 4
    assert "not written" not in text
    # The printed score is the one the report wrote.
    (metrics_json,) = work.glob("flair2-quickstart-*/runs/utt/metrics/metrics.json")
    saved = json.loads(metrics_json.read_text(encoding="utf-8"))["miou"]
    assert float(match.group(1)) == pytest.approx(saved, abs=5e-5)
