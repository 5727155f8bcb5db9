"""The quickstart notebooks run top to bottom after only the install line they declare.

Each notebook states, in a markdown cell before its first code cell, the line a user types
(`pip install 'nebulablock-embeddings[langchain]' langchain-qdrant`). The test installs the
built wheel with exactly that into a fresh venv (wheelhouse.py), plus ipykernel, which the
test harness needs to run a kernel there and a user running Jupyter already has. The kernel
is a kernelspec written for this test that points at that venv's interpreter.

The notebooks assert on what they show (the right document retrieved first, vector lengths,
error classes), so a notebook that runs but retrieves nonsense fails here too. NEBULA_* are
cleared (conftest.py, and the kernel's environment), so they use the emulator they start.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.wheelhouse import InstallLine, Venv, Wheelhouse

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
KERNEL = "nebula-test-venv"
INSTALL = re.compile(r"^\s*(?:#\s*)?(?P<line>pip install .*nebulablock-embeddings.*?)\s*$", re.M)
HARNESS = ("ipykernel",)  # runs the kernel in the venv; not something the notebook imports


def install_line(path: Path) -> InstallLine:
    """The install line declared before the notebook's first code cell."""
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            break
        if match := INSTALL.search(cell.source):
            return InstallLine.parse(match.group("line"))
    raise AssertionError(f"{path.name}: no `pip install` line before the first code cell")


def write_kernelspec(venv: Venv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec running ipykernel under the venv's interpreter, found first by Jupyter."""
    spec_dir = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [str(venv.python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "nebulablock-embeddings tests",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), "utf-8")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # The kernel inherits this process's environment: nothing may put the checkout on its path.
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONNOUSERSITE", "1")
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
    assert install_line(path).extras


@pytest.mark.wheel
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_after_only_its_install_line(
    path: Path, wheelhouse: Wheelhouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = wheelhouse.venv(install_line(path), harness=HARNESS)
    kernel = write_kernelspec(venv, tmp_path, monkeypatch)
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("import sys\nprint(sys.executable)"))
    client = NotebookClient(
        nb,
        kernel_name=kernel,
        timeout=120,
        resources={"metadata": {"path": str(tmp_path)}},
    )

    client.execute()  # raises CellExecutionError, with the cell and its traceback, on failure

    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
    configure = "".join(o.get("text", "") for o in code[0].outputs)
    assert configure.startswith("NEBULA_API_KEY is not set: using a local NebulaBlock emulator")
    assert "".join(o.get("text", "") for o in code[-1].outputs).strip() == str(venv.python)
