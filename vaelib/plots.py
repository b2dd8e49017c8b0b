"""The matplotlib figures the chapters share, and the course's plotting style.

Functions here take an ``ax`` (or a figure) and draw on it, so the same code serves a static inline
figure and a :class:`vaelib.widgets.FigureExplorer`.
"""

from __future__ import annotations

import matplotlib as mpl
from matplotlib.axes import Axes

__all__ = ["COLORS", "use_course_style", "reference_line"]

#: One colour per role, used consistently across chapters.
COLORS = {
    "exact": "black",       # the truth: exact log p(x), exact posterior
    "naive": "#d62728",     # naive Monte Carlo from the prior
    "importance": "#1f77b4",  # importance sampling / IWAE
    "elbo": "#2ca02c",      # the ELBO
    "posterior": "#9467bd",  # p(z|x)
    "proposal": "#ff7f0e",  # q(z|x)
    "prior": "#7f7f7f",     # p(z)
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
    """Draw the exact value as a dashed black line, so every estimate is judged against the truth."""
    draw = ax.axhline if horizontal else ax.axvline
    draw(value, color=COLORS["exact"], linestyle="--", linewidth=1.2, label=label)
