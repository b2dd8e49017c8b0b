"""vaelib.figures: the shared FigureExplorer plumbing redraws in place and leaks no figures."""

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pytest

from vaelib.figures import FigureExplorer, static_figure


def draw_gaussian(fig, mean, scale):
    ax = fig.subplots()
    z = np.linspace(-5, 5, 200)
    ax.plot(z, np.exp(-0.5 * ((z - mean) / scale) ** 2) / scale)
    return f"mean = {mean:.2f}, scale = {scale:.2f}"


def make_explorer():
    return FigureExplorer(draw_gaussian, mean=widgets.FloatSlider(value=0.0, min=-2, max=2),
                          scale=widgets.FloatSlider(value=1.0, min=0.5, max=2))


def test_moving_a_control_redraws_the_image_and_the_readout():
    explorer = make_explorer()
    before = bytes(explorer.image.value)
    assert before.startswith(b"\x89PNG") and explorer.readout.value == "mean = 0.00, scale = 1.00"
    explorer.controls["mean"].value = 1.5
    assert bytes(explorer.image.value) != before
    assert explorer.readout.value == "mean = 1.50, scale = 1.00"
    assert explorer.values == {"mean": 1.5, "scale": 1.0}


def test_many_moves_reuse_one_figure_and_leak_nothing():
    open_before = plt.get_fignums()
    explorer = make_explorer()
    figure = explorer.figure
    for value in np.linspace(-2, 2, 40):
        explorer.controls["mean"].value = float(value)
    assert explorer.redraws == 41 and explorer.figure is figure
    assert len(figure.axes) == 1  # cleared before each redraw, not stacked
    assert plt.get_fignums() == open_before  # never registered with pyplot


def test_static_figure_draws_once_prints_the_readout_and_leaks_nothing(capsys, monkeypatch):
    drawn = []
    monkeypatch.setattr(plt, "show", lambda: drawn.append([len(f.axes) for f in map(plt.figure,
                                                                                  plt.get_fignums())]))
    open_before = plt.get_fignums()
    assert static_figure(draw_gaussian, mean=0.5, scale=1.0) is None
    assert "mean = 0.50" in capsys.readouterr().out
    assert drawn and drawn[0][-1] == 1  # one axes on the figure that was shown
    assert plt.get_fignums() == open_before


def test_bad_controls_are_clear_errors():
    with pytest.raises(ValueError, match="at least one control"):
        FigureExplorer(draw_gaussian)
    with pytest.raises(TypeError, match="value widget"):
        FigureExplorer(draw_gaussian, mean=widgets.Button())


def test_a_draw_function_that_raises_shows_the_error_and_keeps_the_controls_consistent():
    def draw(fig, mean, scale):
        if mean > 1:
            raise ValueError(f"no curve for mean {mean} <here>")
        return draw_gaussian(fig, mean, scale)

    explorer = FigureExplorer(draw, mean=widgets.FloatSlider(value=0.5, min=-2, max=2),
                              scale=widgets.FloatSlider(value=1.0, min=0.5, max=2))
    good = bytes(explorer.image.value)
    explorer.controls["mean"].value = 1.5  # the draw function raises
    # The picture and the controls agree again: the slider is back where the figure was drawn,
    # and the error is shown under the figure (escaped), naming the values that failed.
    assert explorer.values == {"mean": 0.5, "scale": 1.0}
    assert bytes(explorer.image.value) == good
    message = explorer.readout.value
    assert "ValueError: no curve for mean 1.5 &lt;here&gt;" in message
    assert "mean=1.5" in message and "mean=0.5" in message
    explorer.controls["scale"].value = 2.0  # the next good move draws, and clears the error
    assert "ValueError" not in explorer.readout.value
    assert explorer.readout.value == "mean = 0.50, scale = 2.00"


def test_a_draw_function_that_fails_at_once_is_an_error():
    def draw(fig, mean):
        raise RuntimeError("broken")

    with pytest.raises(RuntimeError, match="broken"):
        FigureExplorer(draw, mean=widgets.FloatSlider())


def test_the_explorers_image_carries_a_description_of_the_figure():
    from vaelib.figures import describe_figure

    def draw(fig, mean):
        ax1, ax2 = fig.subplots(1, 2)
        ax1.set(title=f"density at mean {mean:.1f}", xlabel="z")
        ax2.set(xlabel="K", ylabel="estimate")
        fig.suptitle("Two views")
        return None

    explorer = FigureExplorer(draw, mean=widgets.FloatSlider(value=0.0, min=-2, max=2))
    assert explorer.image_alt.alt == "Figure: Two views; density at mean 0.0; estimate against K"
    assert explorer.image_alt in explorer.children and explorer.image.tooltip is None
    explorer.controls["mean"].value = 1.5
    assert "density at mean 1.5" in explorer.image_alt.alt  # follows the redraw
    assert "density at mean 1.5" in explorer.image_alt.value  # ... in the text screen readers read
    fig = plt.figure()
    try:
        assert describe_figure(fig) == "Figure"
    finally:
        plt.close(fig)
