"""The course's figures: one style, and one draw function shown static or live.

:func:`use_course_style`, :data:`COLORS` (one colour per role) and :func:`reference_line` (the
exact value, dashed) give every chapter the same look. :class:`FigureExplorer` is the plumbing
of every live figure: controls (sliders, dropdowns, ...) wired to a draw function
``draw(fig, **values)`` that fills a matplotlib figure. The figure is never shown through pyplot:
it is rendered off-screen (Agg) into PNG bytes and written into one ``ipywidgets.Image`` that is
updated in place, so a move redraws without flicker, without a new figure per move (no leak), and
without ipympl. ``draw`` may return a short HTML/text string (e.g. the numbers on the plot), shown
under the figure.

Every explorer has a static twin for GitHub and nbval: :func:`static_figure` draws the same function
once with fixed values, through pyplot, as an ordinary inline figure.

Example::

    def draw(fig, mean, scale):
        ax = fig.subplots()
        ...
        return f"ESS = {ess:.1f}"

    static_figure(draw, mean=0.0, scale=1.0)              # the static figure
    FigureExplorer(draw, mean=FloatSlider(...), scale=FloatSlider(...))  # the live one
"""

from __future__ import annotations

import html
import io
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["COLORS", "use_course_style", "reference_line", "FigureExplorer", "static_figure",
           "figure_to_png", "describe_figure", "alt_text", "set_alt_text"]

# ---------------------------------------------------------------------------------------- the style

#: One colour per role, used consistently across chapters. Okabe & Ito's colour-blind-safe palette
#: (with a dark grey for the prior): every two roles stay apart by CIELAB ΔE > 15 under simulated
#: protanopia, deuteranopia and tritanopia (tests/test_palette.py). Where a figure compares curves,
#: give them a second cue too (line style, marker or hatching), not colour alone.
COLORS = {
    "exact": "#000000",       # the truth: exact log p(x), exact posterior (black)
    "naive": "#D55E00",       # naive Monte Carlo from the prior (vermillion)
    "importance": "#0072B2",  # importance sampling / IWAE (blue)
    "elbo": "#009E73",        # the ELBO (bluish green)
    "posterior": "#CC79A7",   # p(z|x) (reddish purple)
    "proposal": "#E69F00",    # q(z|x) (orange)
    "prior": "#555555",       # p(z) (dark grey)
}


def use_course_style() -> None:
    """A clean, readable default style for every chapter's figures (call once, first cell)."""
    mpl.rcParams.update({
        "figure.figsize": (7.0, 4.0),
        "figure.dpi": 100,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.titlesize": 12,
        "axes.labelsize": 11,
        "legend.frameon": False,
        "font.size": 10,
    })


def reference_line(ax: Axes, value: float, label: str = "exact", horizontal: bool = True) -> None:
    """Draw the exact value as a dashed black line: every estimate is judged against the truth."""
    draw = ax.axhline if horizontal else ax.axvline
    draw(value, color=COLORS["exact"], linestyle="--", linewidth=1.2, label=label)


# ------------------------------------------------------------------------------------ the plumbing

DrawFn = Callable[..., Any]


def figure_to_png(fig: Figure, dpi: int | None = None) -> bytes:
    """Render a matplotlib figure to PNG bytes (off-screen)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def describe_figure(fig: Figure) -> str:
    """A short text description of a figure, for readers who cannot see it: its overall title,
    then each panel's title, or its axis labels ("y against x") when it has no title."""
    parts = []
    if fig._suptitle is not None and fig._suptitle.get_text():
        parts.append(fig._suptitle.get_text())
    for ax in fig.axes:
        titles = (ax.get_title("left"), ax.get_title(), ax.get_title("right"))
        title = " ".join(t for t in titles if t)
        if title:
            parts.append(title)
        elif ax.get_ylabel() and ax.get_xlabel():
            parts.append(f"{ax.get_ylabel()} against {ax.get_xlabel()}")
    parts = [" ".join(p.split()) for p in dict.fromkeys(parts)]
    return "Figure: " + "; ".join(parts) if parts else "Figure"


def static_figure(draw: DrawFn, figsize: tuple[float, float] = (7.0, 4.0), **values: Any) -> None:
    """Draw ``draw(fig, **values)`` once as an ordinary inline figure; print what it returns.

    Returns None (a returned figure would be displayed a second time as a cell's last value), and
    closes the figure once shown, so a chapter calling it many times leaks nothing.
    """
    fig = plt.figure(figsize=figsize)
    readout = draw(fig, **values)
    if readout:
        print(_strip_html(str(readout)))
    plt.show()
    plt.close(fig)


def _strip_html(text: str) -> str:
    import re

    return re.sub(r"<[^>]+>", "", text)


# Screen readers read it; sighted readers do not see it (the usual "visually hidden" CSS).
_VISUALLY_HIDDEN = ("position:absolute;width:1px;height:1px;margin:-1px;padding:0;overflow:hidden;"
                    "clip:rect(0,0,0,0);white-space:nowrap;border:0")


def alt_text(text: str = "") -> widgets.HTML:
    """The text alternative of an ``ipywidgets.Image``, as an HTML widget to put beside it.

    ``Image`` has no ``alt`` attribute, and its ``tooltip`` cannot stand in: with ipywidgets 8.1 a
    tooltip on an Image makes JupyterLab fail to draw the image at all ("Failed to create view for
    'ImageView'"). So the description is visually hidden text next to the image, which screen
    readers read in place. The plain text is kept in the widget's ``alt`` attribute.
    """
    widget = widgets.HTML()
    set_alt_text(widget, text)
    return widget


def set_alt_text(widget: widgets.HTML, text: str) -> None:
    """Set the description an :func:`alt_text` widget gives its image."""
    widget.alt = text
    widget.value = f'<span style="{_VISUALLY_HIDDEN}">{html.escape(text)}</span>' if text else ""


class FigureExplorer(widgets.VBox):
    """Controls above one figure that is redrawn in place whenever a control moves.

    Args:
        draw: ``draw(fig, **values) -> str | None``; called with a cleared figure and the current
            value of every control, keyed by the keyword it was given under.
        figsize: the figure size in inches.
        dpi: rendering resolution (lower is faster; 90 keeps a redraw well under 100 ms).
        **controls: ipywidgets value widgets (``FloatSlider``, ``IntSlider``, ``Dropdown``, ...).

    Attributes:
        controls: dict name -> widget; set ``explorer.controls["mean"].value = 1.0`` to move one.
        image: the ``ipywidgets.Image`` that shows the figure (``image.value`` holds the PNG bytes;
            its description from the figure's titles (:func:`describe_figure`) is ``image_alt``,
            an :func:`alt_text` widget beside it).
        readout: an ``ipywidgets.HTML`` with whatever ``draw`` returned, or the error it raised.
        figure: the single off-screen matplotlib figure, reused on every redraw.

    If ``draw`` raises when a control moves, the error is shown in ``readout`` and the controls go
    back to the last values that could be drawn, so they always describe the picture shown. If it
    raises for the initial values, the constructor raises.
    """

    def __init__(self, draw: DrawFn, figsize: tuple[float, float] = (7.0, 4.0), dpi: int = 90,
                 **controls: widgets.ValueWidget) -> None:
        if not controls:
            raise ValueError(
                "FigureExplorer needs at least one control, e.g. mean=FloatSlider(...).")
        for name, control in controls.items():
            if not hasattr(control, "value"):
                raise TypeError(f"control {name!r} is a {type(control).__name__}, which has no "
                                "`.value`; pass an ipywidgets value widget such as FloatSlider.")
        self.draw = draw
        self.dpi = dpi
        self.controls = dict(controls)
        # not registered with pyplot: never auto-shown, no leak
        self.figure = Figure(figsize=figsize)
        FigureCanvasAgg(self.figure)
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.image_alt = alt_text()
        self.readout = widgets.HTML()
        self.redraws = 0
        self._drawn: dict[str, Any] | None = None  # the values of the picture shown
        self._restoring = False
        box = widgets.HBox if len(controls) <= 2 else widgets.VBox
        super().__init__([box(list(controls.values())), self.image, self.image_alt, self.readout])
        for control in controls.values():
            control.observe(self._on_change, names="value")
        self.update()

    @property
    def values(self) -> dict[str, Any]:
        """The current value of every control, by name."""
        return {name: control.value for name, control in self.controls.items()}

    def _on_change(self, _change: dict) -> None:
        if not self._restoring:
            self.update()

    def update(self) -> None:
        """Redraw the figure with the controls' current values, in place."""
        values = self.values
        self.figure.clear()
        try:
            readout = self.draw(self.figure, **values)
            png = figure_to_png(self.figure, dpi=self.dpi)
        except Exception as err:
            if self._drawn is None:  # nothing drawn yet: the draw function itself is broken
                raise
            self._show_error(values, err)
            return
        self.image.value = png
        set_alt_text(self.image_alt, describe_figure(self.figure))
        self.readout.value = "" if readout is None else str(readout)
        self._drawn = values
        self.redraws += 1

    def _show_error(self, values: dict[str, Any], err: Exception) -> None:
        """Put the controls back to the picture shown (the image is unchanged) and say why."""
        self._restoring = True
        try:
            for name, value in self._drawn.items():
                self.controls[name].value = value
        finally:
            self._restoring = False
        asked = ", ".join(f"{name}={value!r}" for name, value in values.items())
        shown = ", ".join(f"{name}={value!r}" for name, value in self._drawn.items())
        self.readout.value = (
            f"<span style='color: #b00'>Could not draw {html.escape(asked)}: "
            f"{html.escape(type(err).__name__)}: {html.escape(str(err))}</span><br>"
            f"The controls are back at {html.escape(shown)}, the figure shown.")

    def show_static(self, **overrides: Any) -> None:
        """The static twin: the same draw function, once, through pyplot (for GitHub and nbval),
        with the controls' current values unless ``overrides`` names some."""
        unknown = set(overrides) - set(self.controls)
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)}; this explorer has "
                             f"{sorted(self.controls)}.")
        static_figure(self.draw, figsize=tuple(self.figure.get_size_inches()),
                      **{**self.values, **overrides})
