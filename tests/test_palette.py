"""The course's colours stay distinguishable for readers with the common colour-vision deficiencies.

Each colour is passed through Machado, Oliveira & Fernandes's (2009) simulation of protanopia,
deuteranopia and tritanopia (severity 1: the linear-RGB matrices of their table), and every pair of
colours that a figure compares must stay apart by a CIELAB distance ΔE*ab > 15 (2.3 is a just
noticeable difference; 15 is "clearly different colours at a glance"). Colours are also checked as
seen with normal vision. The pairs: every two roles of the course palette, and the chapters' own
palettes of compared curves.
"""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pytest

from vaelib.figures import COLORS

ROOT = Path(__file__).resolve().parents[1]
MIN_DELTA_E = 15.0

#: Machado et al. (2009), severity 1.0, acting on linear RGB.
MACHADO_2009 = {
    "protanopia": np.array([[0.152286, 1.052583, -0.204868],
                            [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968],
                              [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "tritanopia": np.array([[1.255528, -0.076749, -0.178779],
                            [-0.078411, 0.930809, 0.147602],
                            [0.004733, 0.691367, 0.303900]]),
}
VISION = [None, *MACHADO_2009]


def _linear_rgb(color) -> np.ndarray:
    c = np.asarray(mcolors.to_rgb(color), dtype=float)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _lab(linear_rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65 white) of a linear sRGB colour."""
    to_xyz = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
    t = to_xyz @ linear_rgb / np.array([0.95047, 1.0, 1.08883])
    f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def seen(color, deficiency: str | None) -> np.ndarray:
    """The CIELAB colour a reader with ``deficiency`` (None: normal vision) sees."""
    rgb = _linear_rgb(color)
    if deficiency is not None:
        rgb = np.clip(MACHADO_2009[deficiency] @ rgb, 0.0, 1.0)
    return _lab(rgb)


def delta_e(a, b, deficiency: str | None) -> float:
    return float(np.linalg.norm(seen(a, deficiency) - seen(b, deficiency)))


def test_the_simulation_and_the_distance_are_right():
    # CIELAB of sRGB white and of pure red (reference values of the sRGB/CIELAB definitions)
    assert np.allclose(seen("white", None), [100, 0, 0], atol=0.01)
    assert np.allclose(seen("#ff0000", None), [53.24, 80.09, 67.20], atol=0.05)
    # greys are unchanged by every simulation (each matrix row sums to 1)
    for deficiency in MACHADO_2009:
        assert delta_e("#777777", "#777777", deficiency) == 0
        assert np.allclose(MACHADO_2009[deficiency].sum(axis=1), 1, atol=1e-5)
    # the classic confusion: matplotlib's default red and green are close for a deuteranope
    assert delta_e("#d62728", "#2ca02c", "deuteranopia") < 10 < delta_e("#d62728", "#2ca02c", None)


def _chapter_palettes() -> dict[str, dict[str, str]]:
    """The chapters' own palettes of compared curves (dict literals, or a colour beside a role)."""
    palettes = {}
    for chapter in sorted((ROOT / "chapters").glob("[0-9][0-9]_*.py")):
        source = chapter.read_text()
        for match in re.finditer(r"^([A-Z_]+_COLORS) = (\{.*?\})\n", source, flags=re.M | re.S):
            tree = ast.parse(match.group(2), mode="eval")
            palette = eval(compile(tree, chapter.name, "eval"), {"COLORS": COLORS})  # noqa: S307
            palettes[f"{chapter.stem}: {match.group(1)}"] = palette
        gap = re.search(r'^GAP_COLOR = "([^"]+)"', source, flags=re.M)
        if gap:
            palettes[f"{chapter.stem}: GAP_COLOR against the ELBO"] = {"gap": gap.group(1),
                                                                      "elbo": COLORS["elbo"]}
    return palettes


PALETTES = {"the course palette (vaelib.figures.COLORS)": COLORS, **_chapter_palettes()}


@pytest.mark.parametrize("name", list(PALETTES))
@pytest.mark.parametrize("deficiency", VISION, ids=lambda d: d or "normal vision")
def test_compared_colours_stay_distinguishable(name, deficiency):
    palette = PALETTES[name]
    assert len(palette) >= 2
    close = [(a, b, round(delta_e(palette[a], palette[b], deficiency), 1))
             for a, b in itertools.combinations(palette, 2)
             if delta_e(palette[a], palette[b], deficiency) <= MIN_DELTA_E]
    assert not close, f"{name}, {deficiency or 'normal vision'}: too close (ΔE): {close}"


def test_the_chapters_palettes_were_found():
    assert len(PALETTES) >= 5
