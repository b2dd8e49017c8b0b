"""Export every chapter to reveal.js slides (HTML), from its executed notebook.

Markdown cells that open a new idea carry RISE slide metadata (``slide_type: slide``); the export
keeps that structure. To present live with working widgets, use RISE inside JupyterLab instead (the
``jupyterlab-rise`` extension is installed: open a chapter and press Alt+R). The Colab set-up cell
(tagged ``colab-setup``) is left out of the slides.

What the slides load, and from where: MathJax is always copied beside them (``slides/mathjax/``,
from the installed ``jupyter-server-mathjax``), so the math renders offline. reveal.js (the slide
engine), require.js (its loader) and jQuery are not installed with Python packages: with
``--reveal-dir`` (a local reveal.js 4 folder, e.g. ``npm pack reveal.js@4.0.2`` unpacked),
``--require-js`` and ``--jquery-js`` (local ``require.min.js`` and ``jquery.min.js``) they are
copied beside the slides too and the slides work with no connection; without them the slides load
those from their CDNs (unpkg.com, cdnjs.cloudflare.com) and need a connection. (nbconvert's template
also imports the Mermaid diagram library from its CDN; no chapter draws a Mermaid diagram, so
offline it is simply not loaded.)

    python -m scripts.build_slides [--out slides]
        [--reveal-dir DIR --require-js FILE --jquery-js FILE]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from nbconvert import SlidesExporter

from scripts.atomic import write_atomic
from scripts.build_site import copy_mathjax, for_reading
from scripts.executed import executed_notebook

ROOT = Path(__file__).resolve().parents[1]
MATHJAX_URL = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


def slides_exporter(reveal_prefix: str | None = None, require_js: str | None = None,
                    jquery_js: str | None = None) -> SlidesExporter:
    """A SlidesExporter that reads MathJax from ``mathjax/`` beside the slides, and reveal.js,
    require.js and jQuery from the given relative locations (None: their CDNs)."""
    exporter = SlidesExporter(mathjax_url=MATHJAX_URL)
    if reveal_prefix:
        exporter.reveal_url_prefix = reveal_prefix
    if require_js:
        exporter.require_js_url = require_js
    if jquery_js:
        exporter.jquery_url = jquery_js
    return exporter


def export_slides(nb, out: Path, exporter: SlidesExporter | None = None) -> None:
    """The chapter ``nb`` as slides in ``out``, without its Colab set-up cell (tagged
    ``colab-setup``) and with each widget replaced by what a static page can show."""
    body, _ = (exporter or slides_exporter()).from_notebook_node(for_reading(nb))
    write_atomic(out, body)


def bundle(out: Path, reveal_dir: Path | None, require_js: Path | None,
           jquery_js: Path | None = None) -> SlidesExporter:
    """Copy MathJax (always) and reveal.js / require.js / jQuery (when given) beside the slides in
    ``out``; return the exporter that points at those copies."""
    copy_mathjax(out / "mathjax")
    reveal_prefix = require_url = jquery_url = None
    if reveal_dir is not None:
        if not (reveal_dir / "dist" / "reveal.js").is_file():
            raise SystemExit(f"{reveal_dir} is not a reveal.js 4 folder (no dist/reveal.js).")
        shutil.copytree(reveal_dir, out / "reveal.js", dirs_exist_ok=True)
        reveal_prefix = "reveal.js"
    if require_js is not None:
        if not require_js.is_file():
            raise SystemExit(f"{require_js} is not a file.")
        shutil.copyfile(require_js, out / "require.min.js")
        require_url = "require.min.js"
    if jquery_js is not None:
        if not jquery_js.is_file():
            raise SystemExit(f"{jquery_js} is not a file.")
        shutil.copyfile(jquery_js, out / "jquery.min.js")
        jquery_url = "jquery.min.js"
    return slides_exporter(reveal_prefix, require_url, jquery_url)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", type=Path, default=ROOT / "chapters")
    parser.add_argument("--out", type=Path, default=ROOT / "slides")
    parser.add_argument("--reveal-dir", type=Path, default=None,
                        help="a local reveal.js 4 folder to copy beside the slides "
                             "(offline slides)")
    parser.add_argument("--require-js", type=Path, default=None,
                        help="a local require.min.js to copy beside the slides (offline slides)")
    parser.add_argument("--jquery-js", type=Path, default=None,
                        help="a local jquery.min.js to copy beside the slides (offline slides)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    exporter = bundle(args.out, args.reveal_dir, args.require_js, args.jquery_js)
    for source in sorted(args.chapters.glob("[0-9][0-9]_*.ipynb")):
        target = args.out / f"{source.stem}.slides.html"
        export_slides(executed_notebook(source), target, exporter)
        print(f"wrote {target}")
    if None in (args.reveal_dir, args.require_js, args.jquery_js):
        print("note: reveal.js, require.js and jQuery load from their CDNs unless bundled (a "
              "connection is needed); pass --reveal-dir, --require-js and --jquery-js to bundle "
              "them. MathJax is bundled.")


if __name__ == "__main__":
    main()
