"""The student edition: solution cells become stubs, and the whole notebook still runs."""

import ast
import json
from pathlib import Path

import nbformat
import pytest

from scripts.executed import executed_notebook
from scripts.make_student import main as make_student, make_student_notebook, stub_source

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
STUDENT = ROOT / "build" / "student"  # where `make test` builds it (`make student` writes student/)


def test_stub_keeps_signature_docstring_comments_and_names():
    source = '''# Exercise: the stable log-mean-exp.
import torch


@torch.no_grad()
def my_log_mean_exp(a, dim=0):
    """log (1/K) Σ exp(a)."""
    m = a.max(dim).values
    return m + (a - m).exp().mean(dim).log()


def helper(x):
    return 2 * x


# your estimate:
answer, other = my_log_mean_exp(torch.randn(3)), 1
total: float = 3.0
print(answer)
'''
    stub = stub_source(source)
    ast.parse(stub)
    assert "@torch.no_grad()\ndef my_log_mean_exp(a, dim=0):\n    \"\"\"log (1/K) Σ exp(a).\"\"\"\n" \
           "    raise NotImplementedError" in stub
    assert "def helper(x):\n    raise NotImplementedError" in stub
    assert "answer, other = ...  # your answer here" in stub and "total = ..." in stub
    assert "# Exercise: the stable log-mean-exp." in stub and "# your estimate:" in stub
    assert "import torch" in stub
    for gone in ["a.max", "2 * x", "print(answer)", "3.0"]:
        assert gone not in stub


def test_student_notebook_stubs_only_solution_cells():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("y = x + 1", metadata={"tags": ["solution"]}),
    ])
    student = make_student_notebook(nb)
    assert [c.source for c in nb.cells][2] == "y = x + 1"  # the input is not modified
    assert student.cells[0].source == "# Title" and "Student edition" in student.cells[1].source
    assert student.cells[2].source == "x = 1"
    assert student.cells[3].metadata["tags"] == ["exercise"]
    assert student.cells[3].source.endswith("y = ...  # your answer here")


@pytest.fixture(scope="module")
def student_dir():
    stale = not STUDENT.is_dir() or any(
        not (STUDENT / c.name).is_file() or (STUDENT / c.name).stat().st_mtime < c.stat().st_mtime
        for c in CHAPTERS)
    if stale:
        make_student(["--out", str(STUDENT)])
    return STUDENT


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_has_at_least_two_exercises_with_solutions(chapter):
    nb = nbformat.read(chapter, as_version=4)
    solutions = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert len(solutions) >= 2, f"{chapter.name} needs at least two exercises (cells tagged solution)"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_student_edition_runs_and_reports_not_attempted(chapter, student_dir):
    student = student_dir / chapter.name
    nb = executed_notebook(student)  # kept from make test's nbval run, or executed now
    text = json.dumps([c.get("outputs", []) for c in nb.cells if c.cell_type == "code"])
    assert '"output_type": "error"' not in text
    assert text.count("not attempted yet") >= 2, "the checks should say the exercises are not done"
    solution_code = [c.source for c in nbformat.read(chapter, as_version=4).cells
                     if "solution" in c.metadata.get("tags", [])]
    stubs = [c.source for c in nb.cells if "exercise" in c.metadata.get("tags", [])]
    assert len(stubs) == len(solution_code)
