"""Build the readable course site: every executed chapter as an HTML page, and an index.

Reads the executed chapters (``build/executed/chapters/*.ipynb``, kept from ``make test``'s one
execution by the repository's ``conftest.py``, or executed now if missing or stale) and writes
``site/index.html`` and ``site/NN_name.html`` with their figures embedded and their LaTeX rendered
by MathJax, copied into ``site/mathjax/`` so the site reads offline too, and ``site/notation.html``
(the course's table of symbols, ``docs/notation.md``). The pages leave out the Colab set-up cell
(tagged ``colab-setup``: plumbing, not course); the downloadable notebooks keep it.

Every chapter page carries the course navigation: the previous and next chapters, the list of all
chapters, the notation page, a "download this notebook" link (``site/notebooks/NN_name.ipynb``, the
chapter without outputs) and, only when the course is published somewhere that runs notebooks
(``--launch-url``, e.g. a Colab or Binder URL with ``{stem}`` for the chapter's name), a launch
link. Every figure gets an ``alt`` description from its titles in the code that drew it, or else
from the caption after it. Widgets cannot run in a static page: a progress bar is shown as its final
text (from the widget state kept with the executed notebook), any other widget is replaced by a note
(the static figure beside it shows the same view).

    python -m scripts.build_site [--out site] [--launch-url URL]
"""

from __future__ import annotations

import argparse
import html
import os
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
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
WIDGET_NOTE = ("<p><em>An interactive widget is here in the notebook. Open the chapter in "
               "JupyterLab to move it; the static figure beside it shows one of its views."
               "</em></p>")
PROGRESS_NOTE = "<p><em>A progress bar ran here (its final state was not recorded).</em></p>"
NOTATION = ROOT / "docs" / "notation.md"
#: Environment variable with the launch URL template (like ``--launch-url``).
LAUNCH_ENV = "VAELIB_LAUNCH_URL"
#: The tag of each chapter's Colab set-up cell: plumbing, kept in the notebooks (and the notebook a
#: reader downloads) but left out of the site's pages and the slides.
SETUP_TAG = "colab-setup"


def chapter_title(nb: nbformat.NotebookNode, fallback: str) -> str:
    """The first Markdown heading of a chapter."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#+\s+(.+)$", cell.source, flags=re.M)
            if match:
                return match.group(1).strip()
    return fallback


def _widget_states(nb: nbformat.NotebookNode) -> dict[str, dict]:
    """{model id: the widget's last state} from the notebook's saved widget state (may be empty)."""
    saved = nb.metadata.get("widgets", {}).get(WIDGET_STATE_MIME, {}).get("state", {})
    return {model_id: entry.get("state", {}) for model_id, entry in saved.items()}


def _html_text(value: str) -> str:
    """The plain text of a small HTML label (tqdm's labels are text with entities, maybe tags)."""
    text = html.unescape(re.sub(r"<[^>]+>", "", value or ""))
    return text.replace("\u2007", " ")  # tqdm's figure spaces


def progress_text(model_id: str, states: dict[str, dict]) -> str | None:
    """A tqdm bar's final text, e.g. ``train: 100%|██████████| 70/70 [00:10<00:00]``, or None
    when ``model_id`` is not a tqdm bar (an HBox of a label, a progress bar and a label) or has no
    state."""
    box = states.get(model_id, {})
    if box.get("_model_name") != "HBoxModel":
        return None
    children = [states.get(str(ref).removeprefix("IPY_MODEL_"), {})
                for ref in box.get("children", [])]
    if [c.get("_model_name") for c in children] != ["HTMLModel", "FloatProgressModel", "HTMLModel"]:
        return None
    left, bar, right = children
    maximum, value = bar.get("max") or 0, bar.get("value") or 0
    filled = round(10 * value / maximum) if maximum else 10
    bar_text = "█" * filled + " " * (10 - filled)
    return f"{_html_text(left.get('value'))}|{bar_text}| {_html_text(right.get('value')).strip()}"


def without_setup_cells(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy without the cells tagged ``SETUP_TAG`` (the Colab set-up cell: it does nothing
    outside Colab and is not what a reader of a page or a slide deck came for)."""
    nb = nbformat.from_dict(nb)
    nb.cells = [cell for cell in nb.cells if SETUP_TAG not in cell.metadata.get("tags", [])]
    return nb


def for_reading(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """What a page or a slide deck shows of an executed chapter: no set-up cell, no live widget."""
    return without_widgets(without_setup_cells(nb))


def without_widgets(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy whose widget outputs are replaced by what a static page can show (there is no kernel
    behind it): a progress bar by its final text, any other widget by a note."""
    nb = nbformat.from_dict(nb)
    states = _widget_states(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for i, output in enumerate(cell.get("outputs", [])):
            data = output.get("data", {})
            if WIDGET_MIME not in data:
                continue
            model_id = data[WIDGET_MIME].get("model_id", "")
            text = progress_text(model_id, states)
            if text is not None:
                cell.outputs[i] = nbformat.v4.new_output("stream", name="stderr", text=text + "\n")
            elif _looks_like_progress(data.get("text/plain", "")):
                cell.outputs[i] = nbformat.v4.new_output("display_data",
                                                         data={"text/html": PROGRESS_NOTE})
            else:
                cell.outputs[i] = nbformat.v4.new_output("display_data",
                                                         data={"text/html": WIDGET_NOTE})
    nb.metadata.pop("widgets", None)
    return nb


def _looks_like_progress(text: str) -> bool:
    """tqdm's plain-text fallback: ``desc:   0%|          | 0/70 [00:00<?, ?it/s]``."""
    return bool(re.search(r"\d+%\|.*\|\s*\d+/\d+", text))


# --- figure descriptions ------------------------------------------------------------------------

_TITLE = re.compile(r"""(?:\btitle\s*=\s*|set_title\(\s*|suptitle\(\s*)"""
                    r"""[fr]{0,2}(["'])(.+?)(?<!\\)\1""")


def _plain(text: str) -> str:
    """Readable text from a title or caption: no f-string fields, LaTeX markup or Markdown."""
    text = re.sub(r"\{[^{}]*\}", "…", text) if "{" in text else text
    text = re.sub(r"\\(mathcal|mathrm|operatorname|mathbb|text|boldsymbol)\b", "", text)
    text = re.sub(r"\\([A-Za-z]+)", r"\1", text).replace("\\n", " ")
    text = re.sub(r"[$*_`{}]", "", text)
    return re.sub(r"\s+", " ", text).strip(" .;")


def _first_sentence(markdown: str) -> str:
    body = "\n".join(line for line in markdown.splitlines() if not line.lstrip().startswith("#"))
    body = re.sub(r"\$\$.*?\$\$", "", body, flags=re.S)
    sentence = re.split(r"(?<=[.!?])\s", body.strip(), maxsplit=1)[0]
    return _plain(sentence)[:300]


def figure_descriptions(nb: nbformat.NotebookNode) -> dict[str, str]:
    """{base64 PNG: its description} for every figure of a notebook.

    The description is the figure's titles, read from the code cell that drew it; a cell without a
    title borrows the first sentence of the Markdown cell after it (the caption), or before it.
    """
    descriptions = {}
    cells = nb.cells
    for index, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        images = [o["data"]["image/png"] for o in cell.get("outputs", [])
                  if "image/png" in o.get("data", {})]
        if not images:
            continue
        titles = [_plain(match.group(2)) for match in _TITLE.finditer(cell.source)]
        titles = [t for t in dict.fromkeys(titles) if t]
        if titles:
            text = "Figure: " + "; ".join(titles)
        else:
            after = next((c.source for c in cells[index + 1:] if c.cell_type == "markdown"), "")
            before = next((c.source for c in reversed(cells[:index])
                           if c.cell_type == "markdown"), "")
            caption = _first_sentence(after) or _first_sentence(before)
            text = f"Figure: {caption}" if caption else "Figure"
        for number, image in enumerate(images, 1):
            suffix = f" (image {number} of {len(images)})" if len(images) > 1 else ""
            descriptions[image.strip()[:200]] = text + suffix
    return descriptions


def with_alt_text(page: str, descriptions: dict[str, str]) -> str:
    """Give every embedded PNG of ``page`` an ``alt`` attribute from ``descriptions`` (replacing the
    exporter's placeholder, if any)."""
    def add_alt(match: re.Match) -> str:
        tag = match.group(0)
        data = re.search(r'src="data:image/png;base64,([^"]+)"', tag)
        if data is None:
            return tag
        alt = html.escape(descriptions.get(data.group(1).strip()[:200], "Figure"), quote=True)
        tag = re.sub(r'\salt="[^"]*"', "", tag)
        return tag.replace("<img", f'<img alt="{alt}"', 1)
    return re.sub(r"<img\b[^>]*>", add_alt, page)


# --- navigation ---------------------------------------------------------------------------------

NAV_STYLE = """<style>
 .course-nav { font-family: system-ui, sans-serif; font-size: 0.95rem; max-width: 72rem;
               margin: 0.6rem auto; padding: 0.5rem 1rem; border-bottom: 1px solid #ddd; }
 .course-nav.bottom { border-top: 1px solid #ddd; border-bottom: none; }
 .course-nav a { color: #1f5fa8; text-decoration: none; margin-right: 1.1rem; }
 .course-nav a:hover { text-decoration: underline; }
 .course-nav details { display: inline-block; margin-right: 1.1rem; }
 .course-nav ol { margin: 0.4rem 0; } .course-nav [aria-current] { font-weight: bold; }
</style>"""


def navigation(pages: list[tuple[str, str]], position: int | None, *, download: str | None = None,
               launch: str | None = None, where: str = "top") -> str:
    """The course's navigation bar: contents, previous/next, the chapter list, notation, download,
    launch. ``pages`` are (file, title) of the chapters; ``position`` is this page's index in
    them."""
    links = ['<a href="index.html">Contents</a>']
    if position is not None and position > 0:
        file, title = pages[position - 1]
        links.append(f'<a href="{file}" rel="prev">← Previous: {html.escape(title)}</a>')
    if position is not None and position + 1 < len(pages):
        file, title = pages[position + 1]
        links.append(f'<a href="{file}" rel="next">Next: {html.escape(title)} →</a>')
    current = ' aria-current="page"'
    items = "".join(
        f'<li><a href="{file}"{current if i == position else ""}>{html.escape(title)}</a></li>'
        for i, (file, title) in enumerate(pages))
    links.append(f"<details><summary>All chapters</summary><ol>{items}</ol></details>")
    links.append('<a href="notation.html">Notation</a>')
    if download:
        links.append(f'<a href="{download}" download>Download this notebook</a>')
    if launch:
        href = html.escape(launch, quote=True)
        links.append(f'<a href="{href}">Launch this chapter (runs the notebook)</a>')
    label = "Course" if where == "top" else "Course (bottom)"
    return f'<nav class="course-nav {where}" aria-label="{label}">{" ".join(links)}</nav>'


def with_navigation(page: str, top: str, bottom: str) -> str:
    """Insert the navigation bars right after ``<body>`` and right before ``</body>``."""
    page = page.replace("</head>", NAV_STYLE + "\n</head>", 1)
    page = re.sub(r"(<body[^>]*>)", lambda m: m.group(1) + "\n" + top, page, count=1)
    head, sep, tail = page.rpartition("</body>")
    return head + bottom + "\n" + sep + tail if sep else page + bottom


def clean_notebook(nb: nbformat.NotebookNode) -> str:
    """The chapter as a student downloads it: no outputs, no execution counts, no widget state."""
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nb.metadata.pop("widgets", None)
    return nbformat.writes(nb)


def notation_page(exporter: HTMLExporter, source: Path = NOTATION) -> str:
    """docs/notation.md as an HTML page (rendered like a chapter's Markdown, with MathJax)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(source.read_text())])
    nb.metadata["title"] = "Notation"
    body, _ = exporter.from_notebook_node(nb)
    return body


def copy_mathjax(target: Path) -> None:
    """Copy MathJax (from the jupyter-server-mathjax package) beside the pages, to read offline."""
    import jupyter_server_mathjax

    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (target / "MathJax.js").is_file():
        shutil.copytree(source, target, dirs_exist_ok=True)


def count_figures(page: str) -> int:
    return page.count('src="data:image/png;base64,')


def build_site(notebooks: list[nbformat.NotebookNode], stems: list[str], out: Path,
               launch_url: str | None = None) -> dict[str, int]:
    """Write the site from executed chapters (named by ``stems``); return {page: figures on it}.

    ``launch_url``: a URL template with ``{stem}`` (e.g. a Colab or Binder link to the chapter's
    notebook); each chapter page links to it. None (the default): no launch link, unless the
    environment variable ``VAELIB_LAUNCH_URL`` holds one.
    """
    if not notebooks:
        raise SystemExit("no chapters to build the site from.")
    launch_url = launch_url if launch_url is not None else os.environ.get(LAUNCH_ENV) or None
    out.mkdir(parents=True, exist_ok=True)
    (out / "notebooks").mkdir(exist_ok=True)
    copy_mathjax(out / "mathjax")
    exporter = HTMLExporter(template_name="lab", mathjax_url=MATHJAX_URL)
    titles = [chapter_title(nb, stem) for nb, stem in zip(notebooks, stems, strict=True)]
    pages = [(f"{stem}.html", title) for stem, title in zip(stems, titles)]
    figures, rows = {}, []
    for position, (nb, stem, title) in enumerate(zip(notebooks, stems, titles)):
        nb.metadata["title"] = title
        body, _ = exporter.from_notebook_node(for_reading(nb))
        body = with_alt_text(body, figure_descriptions(nb))
        body = body.replace('href="../docs/notation.md"', 'href="notation.html"')
        download = f"notebooks/{stem}.ipynb"
        write_atomic(out / download, clean_notebook(nb))
        launch = launch_url.format(stem=stem) if launch_url else None
        top = navigation(pages, position, download=download, launch=launch, where="top")
        bottom = navigation(pages, position, download=download, launch=launch, where="bottom")
        page = f"{stem}.html"
        write_atomic(out / page, with_navigation(body, top, bottom))
        figures[page] = count_figures(body)
        number = stem.split("_", 1)[0]
        # the number is shown beside it
        short = re.sub(r"^Chapter\s+\d+\s*[—·:-]\s*", "", title)
        rows.append(f'<li><span class="n">{int(number)}</span> '
                    f'<a href="{page}">{html.escape(short)}</a></li>')
    notation = notation_page(exporter)
    write_atomic(out / "notation.html", with_navigation(notation, navigation(pages, None),
                                                        navigation(pages, None, where="bottom")))
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
<p class="sub">Every step of the derivation written as code and checked numerically. These pages
are the chapters as executed by the course's tests; to run them and move the widgets, open the
notebooks in JupyterLab (<code>make lab</code>).</p>
<ol>
{chapters}
</ol>
<p>The symbols of every chapter: <a href="notation.html">notation</a>.</p>
</body></html>
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", type=Path, default=ROOT / "chapters")
    parser.add_argument("--out", type=Path, default=ROOT / "site")
    parser.add_argument("--launch-url", default=None,
                        help="URL template with {stem} that opens a chapter where it runs (Colab, "
                             f"Binder); default: ${LAUNCH_ENV}, else no launch link")
    args = parser.parse_args(argv)
    sources = sorted(args.chapters.glob("[0-9][0-9]_*.ipynb"))
    figures = build_site([executed_notebook(source) for source in sources],
                         [source.stem for source in sources], args.out, launch_url=args.launch_url)
    for page, n in figures.items():
        print(f"{args.out / page}: {n} figures")
    print(f"open {args.out / 'index.html'}")


if __name__ == "__main__":
    main()
