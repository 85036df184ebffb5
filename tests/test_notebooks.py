"""The example notebooks run top to bottom, at quick settings, in this interpreter's kernel."""

import json
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
KERNEL = "aelab-tests"
BUDGET_S = 60  # each notebook, kernel start included, at quick settings

# appended to each run: which Python the kernel is, and whether aelab left the backend alone
_PROBE = "import sys, matplotlib\nprint(sys.executable)\nprint(matplotlib.get_backend())"


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A kernelspec that starts this very interpreter, found through a private JUPYTER_PATH.

    The stock "python3" spec starts whatever ``python`` resolves to; this one
    names ``sys.executable``, so the notebooks run against the aelab under test.
    """
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "aelab tests", "language": "python"})
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(root))
        patch.delenv("MPLBACKEND", raising=False)  # the kernel picks its inline backend itself
        yield KERNEL


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"sheet6_rectangle.ipynb", "moons_code_gmm.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, kernel, tmp_path):
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(_PROBE))
    start = time.perf_counter()
    # a failing cell raises CellExecutionError with its traceback
    NotebookClient(
        nb, kernel_name=kernel, timeout=BUDGET_S, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    seconds = time.perf_counter() - start
    assert seconds < BUDGET_S, f"{path.name} took {seconds:.0f} s, over its {BUDGET_S} s budget"

    executable, backend = nb.cells[-1].outputs[0]["text"].split()
    assert Path(executable) == Path(sys.executable)
    # %matplotlib inline runs before aelab is imported: aelab must not have switched it
    assert backend in ("inline", "module://matplotlib_inline.backend_inline")
    # every figure a cell returns is shown as an image
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    images = sum("image/png" in out.get("data", {}) for cell in code for out in cell.outputs)
    figure_cells = sum("plots." in cell.source for cell in code)
    assert images >= figure_cells >= 2
