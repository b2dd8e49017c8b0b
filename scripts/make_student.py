"""Write the student edition: every chapter with its reference solutions replaced by stubs.

A cell tagged ``solution`` keeps its comments, its function signatures and docstrings, and the names
it assigns; function bodies become ``raise NotImplementedError`` and assigned values become ``...``.
The cell is re-tagged ``exercise``. The exercise checks that follow then report "not attempted yet"
instead of crashing, so the whole student notebook still runs top to bottom.

    python -m scripts.make_student            # chapters/*.ipynb -> student/*.ipynb
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

import nbformat

from scripts.atomic import write_notebook_atomic

ROOT = Path(__file__).resolve().parents[1]
BANNER = ("**Student edition.** The reference solutions of the exercises are removed: each cell marked "
          "✍️ holds a stub for you to complete, and the check below it tells you whether your answer "
          "is right. The full chapter (with solutions) is in `chapters/`.")
STUB_HEADER = "# ✍️ Exercise: replace each `...` / `raise NotImplementedError` with your answer.\n"


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


def make_student_notebook(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``notebook`` with every ``solution`` cell stubbed and a banner on top."""
    student = nbformat.from_dict(notebook)
    for cell in student.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell.cell_type == "code" and "solution" in tags:
            cell.source = stub_source(cell.source)
            cell.metadata["tags"] = [t for t in tags if t != "solution"] + ["exercise"]
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
        student = make_student_notebook(nbformat.read(source, as_version=4))
        write_notebook_atomic(args.out / source.name, student)
    print(f"wrote {len(sources)} student notebooks to {args.out}")


if __name__ == "__main__":
    main()
