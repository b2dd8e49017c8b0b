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
    """The log-mean-exp of a along dim."""
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
    assert ("@torch.no_grad()\ndef my_log_mean_exp(a, dim=0):\n"
            "    \"\"\"The log-mean-exp of a along dim.\"\"\"\n"
            "    raise NotImplementedError") in stub
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
    assert len(solutions) >= 2, (
        f"{chapter.name} needs at least two exercises (cells tagged solution)")


# each student notebook, executed: build/executed/ from make test, or run now
@pytest.mark.notebooks
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


# --- issue 24: the student edition gives no answer away ------------------------------------------

from scripts.make_student import FormulaInDocstring, formula_markers  # noqa: E402

#: What the student edition's stubs once gave away (issue 24), word for word ...
STUB_GIVEAWAYS = ["softmax of log w", "Σ_k w̃_k ∇ log w_k", "Σ_k w̃_k² ∂_z log w_k",
                  "(1/K) Σ_k log w_k"]
#: ... and what chapter 9's own code did: its exercises' answers, defined and imported by name.
CODE_GIVEAWAYS = ["def slerp_inline", "grid_inline", "import encode_dataset, inverse_cdf_grid",
                  "lerp, slerp"]


def test_make_student_refuses_a_solution_docstring_that_states_its_formula():
    source = ('def weights(log_w):\n    """w̃ = softmax of log w over dim 0."""\n'
              '    return log_w.softmax(0)\n')
    with pytest.raises(FormulaInDocstring, match="weights"):
        stub_source(source)
    fine = ('def weights(log_w):\n    """The normalized weights: (K, N) -> (K, N)."""\n'
            '    # w̃ = softmax\n    return 1\n')
    assert "softmax" not in stub_source(fine)


def _cells(notebook, exercise):
    return [c.source for c in notebook.cells if c.cell_type == "code"
            and ("exercise" in c.metadata.get("tags", [])) == exercise]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_no_stub_docstring_states_its_formula(chapter, student_dir):
    student = nbformat.read(student_dir / chapter.name, as_version=4)
    code = "\n".join(c.source for c in student.cells if c.cell_type == "code")
    stubs = "\n".join(_cells(student, exercise=True))
    for giveaway in CODE_GIVEAWAYS:
        assert giveaway not in code, giveaway
    for giveaway in STUB_GIVEAWAYS:
        assert giveaway not in stubs, giveaway
    for source in _cells(student, exercise=True):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef):
                docstring = ast.get_docstring(node) or ""
                assert not formula_markers(docstring), (node.name, docstring)


def _student_namespace(student) -> dict:
    """What the student edition's own code (outside the exercise cells) binds: its imports, its
    UPPERCASE constants and the functions it defines, executed without running the chapter (and
    its refuse_as_answer calls, as the notebook runs them)."""
    namespace: dict = {}
    for source in _cells(student, exercise=False):
        # IPython magics (%matplotlib ..., !pip ...) are not Python: blank them out
        source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                           for line in source.splitlines())
        tree = ast.parse(source)
        for node in tree.body:
            constant = (isinstance(node, ast.Assign) and len(node.targets) == 1
                        and isinstance(node.targets[0], ast.Name) and node.targets[0].id.isupper())
            refusal = (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                       and getattr(node.value.func, "id", "") == "refuse_as_answer")
            definition = isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef))
            if constant or refusal or definition:
                try:
                    exec(compile(ast.Module([node], []), "<student>", "exec"), namespace)
                except Exception:  # noqa: BLE001 - an optional import (Colab's) may be missing
                    pass
    return namespace


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_no_exercise_answer_is_defined_or_imported_in_the_student_edition(chapter, student_dir,
                                                                           monkeypatch, capsys):
    """Every function the student edition defines or imports by name, run through every check of
    the chapter: none is accepted (so none is an answer a student could pass on)."""
    import inspect
    import re

    import vaelib.exercises as exercises
    from vaelib.exercises import _core

    monkeypatch.setattr(_core, "TIME_LIMIT_S", 2.0)
    student = nbformat.read(student_dir / chapter.name, as_version=4)
    checks = sorted(set(re.findall(r"\b(check_\w+)\(", chapter.with_suffix(".py").read_text())))
    assert checks, chapter
    namespace = _student_namespace(student)
    candidates = {name: value for name, value in namespace.items()
                  if (inspect.isfunction(value) or inspect.isbuiltin(value))
                  and not name.startswith(("check_", "_"))}
    assert {"torch", "np"} & set(namespace), "the chapter's imports were not executed"
    assert candidates
    accepted = []
    for check in checks:
        for name, function in candidates.items():
            if getattr(exercises, check)(function):
                accepted.append((check, name))
    capsys.readouterr()
    assert not accepted, f"the student edition defines or imports an answer: {accepted}"
