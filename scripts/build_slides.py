"""Export every chapter to reveal.js slides (HTML), from its executed notebook.

Markdown cells that open a new idea carry RISE slide metadata (``slide_type: slide``); the export keeps
that structure. To present live with working widgets, use RISE inside JupyterLab instead (the
``jupyterlab-rise`` extension is installed: open a chapter and press Alt+R).

    python -m scripts.build_slides [--out slides]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nbconvert import SlidesExporter

from scripts.atomic import write_atomic
from scripts.build_site import without_widgets
from scripts.executed import executed_notebook

ROOT = Path(__file__).resolve().parents[1]


def export_slides(nb, out: Path) -> None:
    body, _ = SlidesExporter().from_notebook_node(without_widgets(nb))
    write_atomic(out, body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", type=Path, default=ROOT / "chapters")
    parser.add_argument("--out", type=Path, default=ROOT / "slides")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for source in sorted(args.chapters.glob("[0-9][0-9]_*.ipynb")):
        target = args.out / f"{source.stem}.slides.html"
        export_slides(executed_notebook(source), target)
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
