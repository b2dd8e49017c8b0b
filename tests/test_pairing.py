"""The Jupytext pairs cannot drift: every chapter .py has its .ipynb (and the reverse), the .ipynb
is exactly what `jupytext --to ipynb --update` makes from the .py, and no notebook carries
outputs."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # jupytext round trips of every chapter, in subprocesses

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ROOT / "chapters"
SOURCES = sorted(CHAPTERS.glob("[0-9][0-9]_*.py"))
NOTEBOOKS = sorted(CHAPTERS.glob("[0-9][0-9]_*.ipynb"))


def test_there_are_chapters():
    assert SOURCES, "no chapters/NN_name.py found"


def test_every_half_of_every_pair_exists():
    stems_py = {p.stem for p in SOURCES}
    stems_nb = {p.stem for p in NOTEBOOKS}
    assert not stems_py - stems_nb, (
        f".py without .ipynb: {sorted(stems_py - stems_nb)} (run make sync)")
    assert not stems_nb - stems_py, f".ipynb without .py: {sorted(stems_nb - stems_py)}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_has_no_outputs_and_a_python_kernel(notebook):
    nb = json.loads(notebook.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"cell {i} of {notebook.name} has stored outputs"
            assert cell["execution_count"] is None, f"cell {i} of {notebook.name} was executed"


def jupytext(tmp_path, *args):
    subprocess.run([sys.executable, "-m", "jupytext", "--quiet", *args], cwd=tmp_path, check=True,
                   capture_output=True)


@pytest.mark.parametrize("with_config", [True, False], ids=["jupytext.toml", "no-config"])
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_notebook_is_regenerated_exactly_from_its_py(source, with_config, tmp_path):
    """Also without jupytext.toml: each .py header carries the filters, so any copy regenerates
    alike."""
    notebook = source.with_suffix(".ipynb")
    if not notebook.exists():
        pytest.fail(f"{notebook.name} is missing")
    if with_config:
        shutil.copy(ROOT / "jupytext.toml", tmp_path / "jupytext.toml")
    shutil.copy(source, tmp_path / "x.py")
    shutil.copy(notebook, tmp_path / "x.ipynb")
    jupytext(tmp_path, "--to", "ipynb", "--update", "x.py")
    regenerated = (tmp_path / "x.ipynb").read_text()
    assert regenerated == notebook.read_text(), (
        f"{notebook.name} is out of sync with {source.name}: run "
        f"`cd chapters && jupytext --to ipynb --update {source.name}` (or make sync)")


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_saving_the_notebook_writes_back_the_same_py(source, tmp_path):
    """What JupyterLab writes to the .py when a student saves the notebook is the committed .py."""
    shutil.copy(ROOT / "jupytext.toml", tmp_path / "jupytext.toml")
    shutil.copy(source.with_suffix(".ipynb"), tmp_path / "x.ipynb")
    jupytext(tmp_path, "--to", "py:percent", "-o", "y.py", "x.ipynb")
    assert (tmp_path / "y.py").read_text() == source.read_text(), (
        f"{source.name} is not in the form Jupytext writes: regenerate it from its notebook")
