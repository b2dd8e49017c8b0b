"""ipywidgets explorers for the chapters. They call vaelib and contain no math of their own.

The shared plumbing is :class:`FigureExplorer`: controls (sliders, dropdowns, ...) wired to a draw
function ``draw(fig, **values)`` that fills a matplotlib figure. The figure is never shown through
pyplot: it is rendered off-screen (Agg) into PNG bytes and written into one ``ipywidgets.Image``
that is updated in place, so a move redraws without flicker, without a new figure per move (no leak),
and without ipympl. ``draw`` may return a short HTML/text string (e.g. the numbers on the plot), shown
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

import io
from collections.abc import Callable
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["FigureExplorer", "static_figure", "figure_to_png"]

DrawFn = Callable[..., Any]


def figure_to_png(fig: Figure, dpi: int | None = None) -> bytes:
    """Render a matplotlib figure to PNG bytes (off-screen)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


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
        image: the ``ipywidgets.Image`` that shows the figure (``image.value`` holds the PNG bytes).
        readout: an ``ipywidgets.HTML`` with whatever ``draw`` returned.
        figure: the single off-screen matplotlib figure, reused on every redraw.
    """

    def __init__(self, draw: DrawFn, figsize: tuple[float, float] = (7.0, 4.0), dpi: int = 90,
                 **controls: widgets.ValueWidget) -> None:
        if not controls:
            raise ValueError("FigureExplorer needs at least one control, e.g. mean=FloatSlider(...).")
        for name, control in controls.items():
            if not hasattr(control, "value"):
                raise TypeError(f"control {name!r} is a {type(control).__name__}, which has no "
                                "`.value`; pass an ipywidgets value widget such as FloatSlider.")
        self.draw = draw
        self.dpi = dpi
        self.controls = dict(controls)
        self.figure = Figure(figsize=figsize)  # not registered with pyplot: never auto-shown, no leak
        FigureCanvasAgg(self.figure)
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%"))
        self.readout = widgets.HTML()
        self.redraws = 0
        box = widgets.HBox if len(controls) <= 2 else widgets.VBox
        super().__init__([box(list(controls.values())), self.image, self.readout])
        for control in controls.values():
            control.observe(self._on_change, names="value")
        self.update()

    @property
    def values(self) -> dict[str, Any]:
        """The current value of every control, by name."""
        return {name: control.value for name, control in self.controls.items()}

    def _on_change(self, _change: dict) -> None:
        self.update()

    def update(self) -> None:
        """Redraw the figure with the controls' current values, in place."""
        self.figure.clear()
        readout = self.draw(self.figure, **self.values)
        self.image.value = figure_to_png(self.figure, dpi=self.dpi)
        self.readout.value = "" if readout is None else str(readout)
        self.redraws += 1
