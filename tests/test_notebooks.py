"""The quickstart notebooks run top to bottom in a Jupyter kernel of this interpreter.

The notebooks assert on what they show (the right document retrieved first, vector lengths,
error classes), so a notebook that runs but retrieves nonsense fails here too. NEBULA_* are
cleared by conftest.py, so they run against the emulator they start themselves.

The kernel is a kernelspec written for this test that points at `sys.executable`: the
ambient `python3` kernelspec may belong to another Python (a user-wide Jupyter install), and
in CI only `.venv` exists.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "nebula-test-venv"


@pytest.fixture
def venv_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec running ipykernel under this very interpreter, found first by Jupyter."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "nebulablock-embeddings tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), "utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return KERNEL


def test_both_quickstarts_exist() -> None:
    assert [path.name for path in NOTEBOOKS] == [
        "langchain_quickstart.ipynb",
        "llamaindex_quickstart.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_is_committed_clean(path: Path) -> None:
    """No outputs in git, and installing is a documented step, never a code cell."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert not any("pip install" in cell.source for cell in code)
    assert any(
        cell.cell_type == "markdown" and "pip install 'nebulablock-embeddings[" in cell.source
        for cell in nb.cells
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_and_its_checks_pass(path: Path, venv_kernel: str, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    client = NotebookClient(
        nb,
        kernel_name=venv_kernel,
        timeout=120,
        resources={"metadata": {"path": str(tmp_path)}},
    )

    client.execute()  # raises CellExecutionError, with the cell and its traceback, on failure

    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
    configure = "".join(o.get("text", "") for o in code[0].outputs)
    assert configure.startswith("NEBULA_API_KEY is not set: using a local NebulaBlock emulator")
    assert "".join(o.get("text", "") for o in code[-1].outputs).strip() == sys.executable
