"""Write the student edition: every chapter with its reference solutions replaced by stubs.

A cell tagged ``solution`` keeps its comments, its function signatures and docstrings, and the names
it assigns; function bodies become ``raise NotImplementedError`` and assigned values become ``...``.
The cell is re-tagged ``exercise``. A docstring is kept for the student, so it may say what the
function returns and its shapes, never how: a solution whose docstring states a formula (a Σ, an
exp(...), a softmax, an equals sign, ... see :data:`FORMULA_MARKERS`) is refused with a message
saying to move the formula into a comment in the body, which the stub drops.

A cell tagged ``answer`` is the chapter's own derivation of a function an exercise asks the student
to write again: it stays (the chapter uses it), followed by a call to
:func:`vaelib.exercises.refuse_as_answer`, so that no check accepts it, or a wrapper of it. The
exercise checks that follow then report "not attempted yet" instead of crashing, so the whole
student notebook still runs top to bottom.

    python -m scripts.make_student            # chapters/*.ipynb -> student/*.ipynb
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import nbformat

from scripts.atomic import write_notebook_atomic

ROOT = Path(__file__).resolve().parents[1]
BANNER = ("**Student edition.** The reference solutions of the exercises are removed: each cell "
          "marked ✍️ holds a stub for you to complete, and the check below it tells you whether "
          "your answer is right. The full chapter (with solutions) is in `chapters/`.")
STUB_HEADER = "# ✍️ Exercise: replace each `...` / `raise NotImplementedError` with your answer.\n"


#: What a stub's docstring may not contain: the pieces a formula is written with. Words, shapes
#: (N, d), arrows and names such as KL(q ‖ p) or log p(x) are fine.
FORMULA_MARKERS = ("Σ", "∑", "∏", "∫", "∇", "∂", "√", "²", "³", "^", "=", "/", "exp(", "log(",
                   "log (", "softmax", "w̃", "w̄", "Φ", "arccos", "sin(", ".mean", ".sum")


class FormulaInDocstring(ValueError):
    """A solution's docstring, which the student edition keeps, states the answer's formula."""


def formula_markers(docstring: str) -> list[str]:
    """The :data:`FORMULA_MARKERS` found in ``docstring``."""
    return [marker for marker in FORMULA_MARKERS if marker in docstring]


def stub_source(source: str) -> str:
    """The solution cell ``source`` with every answer removed (see the module docstring)."""
    tree = ast.parse(source)
    lines = source.splitlines()
    out: list[str] = []
    taken_until = 0  # lines before this (0-based) are dealt with
    for node in tree.body:
        decorators = getattr(node, "decorator_list", [])
        start = (decorators[0].lineno if decorators else node.lineno) - 1
        # Keep comment lines and blank lines between statements (the instructions).
        out += [line for line in lines[taken_until:start] if not line.strip() or
                line.lstrip().startswith("#")]
        out += _stub_statement(node, lines)
        taken_until = node.end_lineno
    out += [line for line in lines[taken_until:] if line.lstrip().startswith("#")]
    return STUB_HEADER + "\n".join(out).strip("\n")


def _stub_statement(node: ast.stmt, lines: list[str]) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        first = node.body[0]
        has_doc = (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                   and isinstance(first.value.value, str))
        found = formula_markers(first.value.value) if has_doc else []
        if found:
            raise FormulaInDocstring(
                f"the docstring of the solution {node.name}() states a formula "
                f"({', '.join(found)}), which the student edition would keep: say what it returns "
                "and its shapes, and move the formula into a comment in its body (the stub drops "
                "the body).")
        head_end = first.end_lineno if has_doc else first.lineno - 1
        start = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
        indent = " " * first.col_offset
        return lines[start:head_end] + [f"{indent}raise NotImplementedError  # your code here"]
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = " = ".join(ast.get_source_segment("\n".join(lines), t) for t in targets)
        return [f"{names} = ...  # your answer here"]
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return lines[node.lineno - 1: node.end_lineno]  # imports are not the answer
    return []  # other statements (prints, loops computing the answer) are the student's to write


def refuse_answers_source(source: str) -> str:
    """An ``answer`` cell (the chapter's own derivation of what an exercise asks for) followed by
    the call that makes every check refuse its functions as answers."""
    names = [node.name for node in ast.parse(source).body
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if not names:
        raise ValueError("a cell tagged answer must define the function(s) an exercise asks for")
    return (source.rstrip("\n") + "\n\n" + REFUSE_HEADER
            + f"refuse_as_answer({', '.join(names)})")


REFUSE_HEADER = ("# Student edition: the exercises at the end ask you to write this yourself, so "
                 "their checks\n# refuse the function above as an answer.\n"
                 "from vaelib.exercises import refuse_as_answer\n\n")


def make_student_notebook(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``notebook`` with every ``solution`` cell stubbed, every ``answer`` cell's
    functions refused as answers, and a banner on top."""
    student = nbformat.from_dict(notebook)
    for cell in student.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "code" and "solution" in tags:
            cell.source = stub_source(cell.source)
            cell.metadata["tags"] = [t for t in tags if t != "solution"] + ["exercise"]
        elif cell.cell_type == "code" and "answer" in tags:
            cell.source = refuse_answers_source(cell.source)
    banner = nbformat.v4.new_markdown_cell(BANNER)
    banner.id = "student-edition-banner"
    first = 1 if student.cells and student.cells[0].cell_type == "markdown" else 0
    student.cells.insert(first, banner)
    return student


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", type=Path, default=ROOT / "chapters")
    parser.add_argument("--out", type=Path, default=ROOT / "student")
    args = parser.parse_args(argv)
    sources = sorted(args.chapters.glob("[0-9][0-9]_*.ipynb"))
    if not sources:
        raise SystemExit(f"no chapters/NN_name.ipynb found in {args.chapters}")
    args.out.mkdir(parents=True, exist_ok=True)
    for source in sources:
        try:
            student = make_student_notebook(nbformat.read(source, as_version=4))
        except FormulaInDocstring as err:
            raise SystemExit(f"{source.name}: {err}") from None
        write_notebook_atomic(args.out / source.name, student)
    print(f"wrote {len(sources)} student notebooks to {args.out}")


if __name__ == "__main__":
    main()
