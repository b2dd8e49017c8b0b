"""Executed copies of notebooks, shared by the site, the slides and their tests.

``make test`` executes every chapter once (nbval), and the repository's ``conftest.py`` keeps each
executed notebook in ``build/executed/``. :func:`executed_notebook` returns that copy when it is
newer than its source, and otherwise executes the source now (with nbclient, in the source's folder)
and keeps the result the same way, so each product is built from the one execution whenever there
is one.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

from scripts.atomic import write_notebook_atomic

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = ROOT / "build" / "executed"


def executed_path(source: Path) -> Path:
    return EXECUTED / Path(source).resolve().relative_to(ROOT)


def executed_notebook(source: Path, timeout: int = 600) -> nbformat.NotebookNode:
    """The executed version of the notebook ``source`` (see the module docstring)."""
    source = Path(source).resolve()
    target = executed_path(source)
    if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
        return nbformat.read(target, as_version=4)
    nb = nbformat.read(source, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(source.parent)}}).execute()
    write_notebook_atomic(target, nb)
    return nb
