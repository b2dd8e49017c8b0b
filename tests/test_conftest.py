"""The root conftest.py gives nbval a wait for output that a loaded machine can meet (issue 11)."""

import importlib.util
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
pytest_plugins = ["pytester"]


def root_conftest():
    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nbval_cells_wait_longer_for_output(pytester):
    pytester.makeconftest((ROOT / "conftest.py").read_text())
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nbformat.write(notebook, pytester.path / "tiny.ipynb")
    items, _ = pytester.inline_genitems("--nbval-lax", "tiny.ipynb")
    assert len(items) == 1 and type(items[0]).__name__ == "IPyNbCell"
    timeout = root_conftest().NBVAL_OUTPUT_TIMEOUT
    assert timeout >= 60  # nbval's own is 5 s
    assert items[0].output_timeout == timeout
