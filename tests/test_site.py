"""The readable site and the slides are built from the executed chapters."""

import base64
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbconvert import SlidesExporter

from scripts.build_site import (
    SETUP_TAG,
    build_site,
    figure_descriptions,
    progress_text,
    without_widgets,
)
from scripts.executed import executed_notebook

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
SETUP_MARK = "VAE_COURSE_REPO"  # a word of the Colab set-up cell that no other cell uses


@pytest.mark.notebooks  # every chapter, executed: build/executed/ from make test, or run here now
def test_site_has_an_index_and_every_chapter_with_its_figures(tmp_path):
    notebooks = [executed_notebook(c) for c in CHAPTERS]  # kept from make test's nbval run
    figures = build_site(notebooks, [c.stem for c in CHAPTERS], tmp_path)
    index = (tmp_path / "index.html").read_text()
    assert (tmp_path / "mathjax" / "MathJax.js").is_file()  # math renders offline
    for chapter in CHAPTERS:
        page = tmp_path / f"{chapter.stem}.html"
        assert f'href="{page.name}"' in index
        html = page.read_text()
        assert figures[page.name] >= 1, f"{page.name} has no figure"
        assert 'src="mathjax/MathJax.js' in html, f"{page.name} does not load the bundled MathJax"
        assert "application/vnd.jupyter.widget-view+json" not in html
        assert not re.search(r"Traceback \(most recent call last\)", html)
        images = re.findall(r"<img\b[^>]*>", html)
        assert all(re.search(r' alt="Figure[^"]*"', img) for img in images), page.name
        assert "No description has been provided" not in html
        assert 'href="notation.html"' in html and f'href="notebooks/{chapter.stem}.ipynb"' in html
        assert "A progress bar ran here" not in html, (
            f"{page.name}: a progress bar lost its final text")
        assert SETUP_MARK not in html, f"{page.name}: shows the Colab set-up cell"
    assert (tmp_path / "notation.html").is_file()


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_has_slides_and_exports(chapter):
    nb = nbformat.read(chapter, as_version=4)
    types = [c.metadata.get("slideshow", {}).get("slide_type") for c in nb.cells]
    assert types[0] == "slide", f"{chapter.name}: the first cell should open a slide"
    assert types.count("slide") >= 4, (
        f"{chapter.name}: mark each new idea as a slide (RISE metadata)")
    body, _ = SlidesExporter().from_notebook_node(nb)
    assert "reveal" in body.lower()
    assert body.count("<section") >= types.count("slide")


# --- navigation, notation, downloads, figure descriptions, progress bars (synthetic chapters) -----

_PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(64))).decode()  # any bytes will do
_PNG2 = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(64, 128))).decode()


def _tqdm_state(model_id="box"):
    """The widget state tqdm.notebook leaves behind: an HBox of label, progress bar, label."""
    def model(name, **state):
        return {"model_name": name, "model_module": "@jupyter-widgets/controls",
                "model_module_version": "2.0.0", "state": {"_model_name": name, **state}}
    children = ["IPY_MODEL_left", "IPY_MODEL_bar", "IPY_MODEL_right"]
    return {"application/vnd.jupyter.widget-state+json": {"version_major": 2, "version_minor": 0,
                                                           "state": {
        model_id: model("HBoxModel", children=children),
        "left": model("HTMLModel", value="train: 100%"),
        "bar": model("FloatProgressModel", value=70, max=70),
        "right": model("HTMLModel", value=" 70/70 [00:10&lt;00:00, 6.94epoch/s]"),
    }}}


def _chapter(number, title, *, tqdm_state=True):
    nb = nbformat.v4.new_notebook()
    image = nbformat.v4.new_output("display_data",
                                   data={"image/png": _PNG, "text/plain": "<Figure>"})
    untitled = nbformat.v4.new_output("display_data",
                                      data={"image/png": _PNG2, "text/plain": "<Figure>"})
    bar = nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "box", "version_major": 2,
                                                     "version_minor": 0},
        "text/plain": "train:   0%|          | 0/70 [00:00<?, ?epoch/s]"})
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# Chapter {number} — {title}\n\n*Symbols: see the course's "
                                      "[notation page](../docs/notation.md).*"),
        nbformat.v4.new_code_cell('fig, ax = plt.subplots()\n'
                                  'ax.set(title=f"The ELBO of {name}", xlabel="K")',
                                  outputs=[image]),
        nbformat.v4.new_code_cell("plt.plot(x)", outputs=[untitled]),
        nbformat.v4.new_markdown_cell("*Above:* the weights spread out as $d$ grows. More text."),
        nbformat.v4.new_code_cell("train(model, x)", outputs=[bar]),
    ]
    if tqdm_state:
        nb.metadata["widgets"] = _tqdm_state()
    return nb


def _build(tmp_path, **kwargs):
    notebooks = [_chapter(1, "First"), _chapter(2, "Second"),
                 _chapter(3, "Third", tqdm_state=False)]
    build_site(notebooks, ["01_first", "02_second", "03_third"], tmp_path, **kwargs)
    return {p.name: p.read_text() for p in tmp_path.glob("*.html")}


def test_every_chapter_page_links_previous_next_all_chapters_notation_and_its_notebook(
        tmp_path, monkeypatch):
    monkeypatch.delenv("VAELIB_LAUNCH_URL", raising=False)
    pages = _build(tmp_path)
    first, middle, last = pages["01_first.html"], pages["02_second.html"], pages["03_third.html"]
    assert 'rel="prev"' not in first and 'href="02_second.html" rel="next"' in first
    assert 'href="01_first.html" rel="prev"' in middle
    assert 'href="03_third.html" rel="next"' in middle
    assert 'href="02_second.html" rel="prev"' in last and 'rel="next"' not in last
    for name in ("01_first", "02_second", "03_third"):
        page = pages[f"{name}.html"]
        for other in ("01_first", "02_second", "03_third"):
            assert f'href="{other}.html"' in page  # the chapter list, on every page
        assert 'href="notation.html"' in page and 'href="../docs/notation.md"' not in page
        assert f'href="notebooks/{name}.ipynb" download' in page
        downloaded = nbformat.reads((tmp_path / "notebooks" / f"{name}.ipynb").read_text(),
                                    as_version=4)
        assert all(c.get("outputs", []) == [] for c in downloaded.cells if c.cell_type == "code")
        assert "Launch this chapter" not in page  # the course offers no launch URL here
    assert 'href="notation.html"' in pages["index.html"]


def test_the_notation_page_is_on_the_site(tmp_path):
    pages = _build(tmp_path)
    notation = pages["notation.html"]
    assert "Notation" in notation and "relative variance" in notation
    assert 'src="mathjax/MathJax.js' in notation and 'href="01_first.html"' in notation


def test_a_launch_link_only_when_the_course_offers_one(tmp_path, monkeypatch):
    monkeypatch.delenv("VAELIB_LAUNCH_URL", raising=False)
    url = "https://colab.research.google.com/github/owner/vae-course/blob/main/chapters/{stem}.ipynb"
    pages = _build(tmp_path / "a", launch_url=url)
    assert "chapters/02_second.ipynb" in pages["02_second.html"]
    assert "Launch this chapter" in pages["02_second.html"]
    monkeypatch.setenv("VAELIB_LAUNCH_URL", "https://mybinder.org/v2/gh/owner/vae-course/main?labpath=chapters/{stem}.ipynb")
    pages = _build(tmp_path / "b")
    assert "labpath=chapters/01_first.ipynb" in pages["01_first.html"]


def test_every_figure_has_a_description_from_its_title_or_caption(tmp_path):
    pages = _build(tmp_path)
    page = pages["01_first.html"]
    images = re.findall(r"<img[^>]*>", page)
    assert len(images) == 2 and all(' alt="' in img for img in images)
    assert 'alt="Figure: The ELBO of …"' in page  # from the title in the code
    assert 'alt="Figure: Above: the weights spread out as d grows"' in page  # from the caption
    assert "No description has been provided" not in page


def test_a_progress_bar_shows_its_final_text_not_a_widget_note(tmp_path):
    pages = _build(tmp_path)
    assert "train: 100%|██████████| 70/70 [00:10&lt;00:00, 6.94epoch/s]" in pages["01_first.html"]
    assert "An interactive widget is here" not in pages["01_first.html"]
    assert "A progress bar ran here" in pages["03_third.html"]  # no recorded state: say what it was


def test_progress_text_ignores_other_widgets():
    recorded = _tqdm_state()["application/vnd.jupyter.widget-state+json"]["state"]
    states = {k: v["state"] for k, v in recorded.items()}
    assert progress_text("box", states).startswith("train: 100%|")
    assert progress_text("left", states) is None and progress_text("missing", states) is None
    nb = _chapter(1, "x")
    widget_state = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]
    widget_state["state"]["box"]["state"]["children"] = []
    nb.cells[4].outputs[0]["data"]["text/plain"] = "FigureExplorer(children=(...))"
    assert "An interactive widget is here" in json.dumps(without_widgets(nb).cells[4].outputs)
    assert figure_descriptions(nbformat.v4.new_notebook()) == {}


def test_conftest_records_widget_state_from_kernel_messages(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("root_conftest", ROOT / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    path = tmp_path / "nb.ipynb"
    conftest._remember_widget(path, {"msg_type": "comm_open", "content": {
        "comm_id": "bar", "target_name": "jupyter.widget",
        "data": {"state": {"_model_name": "FloatProgressModel", "value": 0, "max": 70}}}})
    conftest._remember_widget(path, {"msg_type": "comm_msg", "content": {
        "comm_id": "bar", "data": {"method": "update", "state": {"value": 70}}}})
    conftest._remember_widget(path, {"msg_type": "comm_msg", "content": {
        "comm_id": "other", "data": {"method": "update", "state": {"value": 1}}}})
    assert conftest._widgets.pop(path) == {
        "bar": {"_model_name": "FloatProgressModel", "value": 70, "max": 70}}


def test_slides_bundle_mathjax_and_read_reveal_and_require_from_local_copies(tmp_path):
    from scripts.build_slides import bundle, export_slides

    reveal = tmp_path / "reveal-src"
    (reveal / "dist").mkdir(parents=True)
    (reveal / "dist" / "reveal.js").write_text("/* reveal */")
    (reveal / "plugin" / "notes").mkdir(parents=True)
    (reveal / "plugin" / "notes" / "notes.js").write_text("/* notes */")
    require = tmp_path / "require.min.js"
    require.write_text("/* require */")
    jquery = tmp_path / "jquery.min.js"
    jquery.write_text("/* jquery */")
    out = tmp_path / "slides"
    out.mkdir()
    exporter = bundle(out, reveal, require, jquery)
    export_slides(_chapter(1, "First"), out / "01_first.slides.html", exporter)
    body = (out / "01_first.slides.html").read_text()
    assert (out / "mathjax" / "MathJax.js").is_file() and 'src="mathjax/MathJax.js' in body
    assert '"reveal.js/dist/reveal.js"' in body
    assert (out / "reveal.js" / "dist" / "reveal.js").is_file()
    assert 'src="require.min.js"' in body and (out / "require.min.js").is_file()
    assert 'src="jquery.min.js"' in body
    # nothing the slides need comes from the network (Mermaid, unused by the chapters, is the
    # exception)
    loaded = (re.findall(r'(?:src|href)="(https?://[^"]+)"', body)
              + re.findall(r'"(https?://[^"]+\.js)"', body))
    assert [url for url in loaded if "mermaid" not in url] == [], loaded


def test_slides_without_local_copies_still_bundle_mathjax(tmp_path):
    from scripts.build_slides import bundle, export_slides

    exporter = bundle(tmp_path, None, None)
    export_slides(_chapter(1, "First"), tmp_path / "s.slides.html", exporter)
    body = (tmp_path / "s.slides.html").read_text()
    assert 'src="mathjax/MathJax.js' in body
    assert "cdnjs.cloudflare.com/ajax/libs/mathjax" not in body


# --- the Colab set-up cell: in the notebooks, not on the site or the slides ----------------------

def _setup_cell():
    """Chapter 1's real set-up cell, as the notebooks hold it (tests/test_one_click.py checks that
    every chapter has the same one, tagged, as its first code cell)."""
    nb = nbformat.read(CHAPTERS[0], as_version=4)
    (cell,) = [c for c in nb.cells if SETUP_TAG in c.metadata.get("tags", [])]
    assert SETUP_MARK in cell.source
    assert sum(SETUP_MARK in c.source for c in nb.cells) == 1  # the mark is the set-up cell's only
    return cell


def _chapter_with_setup(number, title, *, slide_type=None):
    """A small chapter that opens with the real set-up cell; ``slide_type`` replaces its RISE
    metadata (e.g. None: no "skip"), so the tag alone must keep it off the slides."""
    nb = _chapter(number, title)
    cell = nbformat.from_dict(_setup_cell())
    cell.metadata.pop("slideshow", None)
    if slide_type:
        cell.metadata["slideshow"] = {"slide_type": slide_type}
    nb.cells.insert(1, cell)
    return nb


def test_the_site_leaves_out_the_setup_cell_but_its_notebooks_keep_it(tmp_path):
    notebooks = [_chapter_with_setup(1, "First"), _chapter_with_setup(2, "Second")]
    build_site(notebooks, ["01_first", "02_second"], tmp_path)
    for name in ("01_first", "02_second"):
        page = (tmp_path / f"{name}.html").read_text()
        assert SETUP_MARK not in page and "google.colab" not in page
        assert "The ELBO of" in page  # the chapter's own cells are still there
        downloaded = nbformat.read(tmp_path / "notebooks" / f"{name}.ipynb", as_version=4)
        assert [SETUP_TAG in c.metadata.get("tags", []) for c in downloaded.cells].count(True) == 1
    assert SETUP_TAG in notebooks[0].cells[1].metadata["tags"]  # the input is left as it was


@pytest.mark.parametrize("slide_type", [None, "slide", "skip"])
def test_the_slides_leave_out_the_setup_cell(tmp_path, slide_type):
    from scripts.build_slides import export_slides

    nb = _chapter_with_setup(1, "First", slide_type=slide_type)
    export_slides(nb, tmp_path / "s.slides.html")
    body = (tmp_path / "s.slides.html").read_text()
    assert SETUP_MARK not in body and "google.colab" not in body
    assert "The ELBO of" in body
    assert SETUP_TAG in nb.cells[1].metadata["tags"]


def test_the_setup_cell_is_in_every_chapter_notebook_and_its_source():
    cell = _setup_cell()
    for path in CHAPTERS:
        nb = nbformat.read(path, as_version=4)
        tagged = [c.source for c in nb.cells if SETUP_TAG in c.metadata.get("tags", [])]
        assert tagged == [cell.source], path.name
        assert f'tags=["{SETUP_TAG}"]' in path.with_suffix(".py").read_text(), path.name
