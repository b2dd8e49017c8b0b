"""Build the readable course site: every executed chapter as an HTML page, and an index.

Reads the executed chapters (``build/executed/chapters/*.ipynb``, kept from ``make test``'s one
execution by the repository's ``conftest.py``, or executed now if missing or stale) and writes
``site/index.html`` and ``site/NN_name.html`` with their figures embedded and their LaTeX rendered
by MathJax, copied into ``site/mathjax/`` so the site reads offline too. Widgets cannot run in a static page: each widget output is replaced by a note (the static
figure beside it shows the same view).

    python -m scripts.build_site [--out site]
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from scripts.atomic import write_atomic
from scripts.executed import executed_notebook

ROOT = Path(__file__).resolve().parents[1]
MATHJAX_URL = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ("<p><em>An interactive widget is here in the notebook. Open the chapter in JupyterLab "
               "to move it; the static figure beside it shows one of its views.</em></p>")


def chapter_title(nb: nbformat.NotebookNode, fallback: str) -> str:
    """The first Markdown heading of a chapter."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#+\s+(.+)$", cell.source, flags=re.M)
            if match:
                return match.group(1).strip()
    return fallback


def without_widgets(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy whose widget outputs are replaced by a note (there is no kernel behind a static page)."""
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for i, output in enumerate(cell.get("outputs", [])):
            if WIDGET_MIME in output.get("data", {}):
                cell.outputs[i] = nbformat.v4.new_output("display_data", data={"text/html": WIDGET_NOTE})
    nb.metadata.pop("widgets", None)
    return nb


def copy_mathjax(target: Path) -> None:
    """Copy MathJax (from the jupyter-server-mathjax package) beside the pages, for offline reading."""
    import jupyter_server_mathjax

    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (target / "MathJax.js").is_file():
        shutil.copytree(source, target, dirs_exist_ok=True)


def count_figures(page: str) -> int:
    return page.count('src="data:image/png;base64,')


def build_site(notebooks: list[nbformat.NotebookNode], stems: list[str], out: Path
               ) -> dict[str, int]:
    """Write the site from executed chapters (named by ``stems``); return {page: figures on it}."""
    if not notebooks:
        raise SystemExit("no chapters to build the site from.")
    out.mkdir(parents=True, exist_ok=True)
    copy_mathjax(out / "mathjax")
    exporter = HTMLExporter(template_name="lab", mathjax_url=MATHJAX_URL)
    figures, rows = {}, []
    for nb, stem in zip(notebooks, stems, strict=True):
        title = chapter_title(nb, stem)
        nb.metadata["title"] = title
        body, _ = exporter.from_notebook_node(without_widgets(nb))
        page = f"{stem}.html"
        write_atomic(out / page, body)
        figures[page] = count_figures(body)
        number = stem.split("_", 1)[0]
        short = re.sub(r"^Chapter\s+\d+\s*[—·:-]\s*", "", title)  # the number is shown beside it
        rows.append(f'<li><span class="n">{int(number)}</span> <a href="{page}">{html.escape(short)}'
                    f"</a></li>")
    index = INDEX.format(chapters="\n".join(rows))
    write_atomic(out / "index.html", index)
    return figures


INDEX = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>vae-course: Variational Autoencoders, derived step by step</title>
<style>
 body {{ font-family: system-ui, sans-serif; max-width: 46rem; margin: 3rem auto; line-height: 1.5;
        color: #222; padding: 0 1rem; }}
 h1 {{ margin-bottom: 0.2rem; }} .sub {{ color: #555; margin-top: 0; }}
 ol {{ list-style: none; padding: 0; }} li {{ margin: 0.6rem 0; font-size: 1.1rem; }}
 .n {{ display: inline-block; width: 2rem; color: #888; }}
 a {{ color: #1f5fa8; text-decoration: none; }} a:hover {{ text-decoration: underline; }}
</style></head>
<body>
<h1>Variational Autoencoders, derived step by step</h1>
<p class="sub">Every step of the derivation written as code and checked numerically. These pages are
the chapters as executed by the course's tests; to run them and move the widgets, open the notebooks in
JupyterLab (<code>make lab</code>).</p>
<ol>
{chapters}
</ol>
</body></html>
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", type=Path, default=ROOT / "chapters")
    parser.add_argument("--out", type=Path, default=ROOT / "site")
    args = parser.parse_args(argv)
    sources = sorted(args.chapters.glob("[0-9][0-9]_*.ipynb"))
    figures = build_site([executed_notebook(source) for source in sources],
                         [source.stem for source in sources], args.out)
    for page, n in figures.items():
        print(f"{args.out / page}: {n} figures")
    print(f"open {args.out / 'index.html'}")


if __name__ == "__main__":
    main()
