"""The Jupytext pairs cannot drift: every chapter .py has its .ipynb (and the reverse), the .ipynb is
exactly what `jupytext --to ipynb --update` makes from the .py, and no notebook carries outputs."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
SOURCES = sorted(CHAPTERS.glob("[0-9][0-9]_*.py"))
NOTEBOOKS = sorted(CHAPTERS.glob("[0-9][0-9]_*.ipynb"))


def test_there_are_chapters():
    assert SOURCES, "no chapters/NN_name.py found"


def test_every_half_of_every_pair_exists():
    stems_py = {p.stem for p in SOURCES}
    stems_nb = {p.stem for p in NOTEBOOKS}
    assert not stems_py - stems_nb, f".py without .ipynb: {sorted(stems_py - stems_nb)} (run make sync)"
    assert not stems_nb - stems_py, f".ipynb without .py: {sorted(stems_nb - stems_py)}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs_and_a_python_kernel(notebook):
    nb = json.loads(notebook.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"cell {i} of {notebook.name} has stored outputs"
            assert cell["execution_count"] is None, f"cell {i} of {notebook.name} was executed"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_notebook_is_regenerated_exactly_from_its_py(source, tmp_path):
    notebook = source.with_suffix(".ipynb")
    if not notebook.exists():
        pytest.fail(f"{notebook.name} is missing")
    shutil.copy(ROOT / "jupytext.toml", tmp_path / "jupytext.toml")
    shutil.copy(source, tmp_path / "x.py")
    shutil.copy(notebook, tmp_path / "x.ipynb")
    subprocess.run([sys.executable, "-m", "jupytext", "--quiet", "--to", "ipynb", "--update", "x.py"],
                   cwd=tmp_path, check=True, capture_output=True)
    regenerated = (tmp_path / "x.ipynb").read_text()
    assert regenerated == notebook.read_text(), (
        f"{notebook.name} is out of sync with {source.name}: run "
        f"`cd chapters && jupytext --to ipynb --update {source.name}` (or make sync)")
