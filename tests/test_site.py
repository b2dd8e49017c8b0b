"""The readable site and the slides are built from the executed chapters."""

import re
from pathlib import Path

import nbformat
import pytest
from nbconvert import SlidesExporter

from scripts.build_site import build_site
from scripts.executed import executed_notebook

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))


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


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_chapter_has_slides_and_exports(chapter):
    nb = nbformat.read(chapter, as_version=4)
    types = [c.metadata.get("slideshow", {}).get("slide_type") for c in nb.cells]
    assert types[0] == "slide", f"{chapter.name}: the first cell should open a slide"
    assert types.count("slide") >= 4, f"{chapter.name}: mark each new idea as a slide (RISE metadata)"
    body, _ = SlidesExporter().from_notebook_node(nb)
    assert "reveal" in body.lower()
    assert body.count("<section") >= types.count("slide")
