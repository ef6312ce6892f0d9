"""Every notebook runs top to bottom in a real Jupyter kernel (nbclient + ipykernel), the
project's own Python (checked), and is committed with its outputs cleared."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
DATA = Path(os.environ.get("QNN_DATA_DIR", Path.home() / ".cache" / "qnn" / "data"))
NEEDS_DATA = {"heart_conformal_explain.ipynb": DATA / "heart" / "heart_failure_prediction" / "heart.csv"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_in_a_kernel(path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    need = NEEDS_DATA.get(path.name)
    if need is not None and not need.is_file():
        pytest.skip(f"{need} not found (set QNN_DATA_DIR)")
    nb = nbformat.read(path, as_version=4)
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None
               for c in nb.cells if c.cell_type == "code"), f"{path.name}: commit it with outputs cleared"
    # the kernel must be this interpreter (the project's venv), with this checkout first on sys.path
    nb.cells.insert(0, nbformat.v4.new_code_cell("import sys, qnn; print(sys.executable); print(qnn.__file__)"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    client = NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    exe, qnn_file = nb.cells[0].outputs[0]["text"].split()
    assert Path(exe).resolve() == Path(sys.executable).resolve()
    assert Path(qnn_file).resolve().is_relative_to(ROOT / "qnn")


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"quickstart.ipynb", "layer_swap.ipynb", "qrnn_small_task.ipynb",
                                           "heart_conformal_explain.ipynb"}
