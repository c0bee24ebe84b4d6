"""The notebooks run top to bottom (nbclient, the python3 kernel of this environment) on quick settings."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ["decode_latent_points.ipynb", "optimize_logp.ipynb"]


def _tagged(notebook: nbformat.NotebookNode, tag: str) -> list[nbformat.NotebookNode]:
    return [cell for cell in notebook.cells if tag in cell.get("metadata", {}).get("tags", [])]


def _has_image(cell: nbformat.NotebookNode) -> bool:
    return any("image/png" in output.get("data", {}) for output in cell.outputs)


def _text(cell: nbformat.NotebookNode) -> str:
    return "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebooks_are_valid_and_have_no_outputs(name: str) -> None:
    notebook = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)
    assert "torch.set_num_threads(1)" in code[0].source  # before torch does any work
    assert _tagged(notebook, "parameters")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_top_to_bottom(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOLKS_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("MOLKS_NOTEBOOK_OUT", str(tmp_path / "optimize"))
    notebook = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    # Raises CellExecutionError, naming the cell, if any cell fails.
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
    for cell in _tagged(notebook, "plot"):  # matplotlib figures
        assert _has_image(cell), cell.source[:80]
    for cell in _tagged(notebook, "grid"):  # molecule grids, or a line saying there was nothing valid to draw
        assert _has_image(cell) or "nothing to draw" in _text(cell), cell.source[:80]

    if name == "decode_latent_points.ipynb":
        (encode,) = _tagged(notebook, "encode")
        assert "codes: (5, " in _text(encode)
        (components,) = _tagged(notebook, "components")
        assert "component 0: " in _text(components)  # one line per prior component
        assert len(_tagged(notebook, "plot")) == 2
    else:
        (run,) = _tagged(notebook, "optimize")
        assert "iteration 1/1" in _text(run)
        assert (tmp_path / "optimize" / "summary.json").is_file()
        assert (tmp_path / "optimize" / "best_molecules.png").is_file()
