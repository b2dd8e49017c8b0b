"""LatentExplorer: a slider per latent unit and the decoded image, updated in place.

The image is a PNG made without matplotlib (a decode and a PNG take a few milliseconds); a chooser
starts the sliders from a test image's posterior mean. Its static twin is a latent traversal.
"""

from __future__ import annotations

import math
from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure

from ..figures import alt_text, set_alt_text, static_figure
from ..latent import latent_activity, most_active_dims
from .base import _INK, LatentView, _check_index, _describe, _pixels, _png, _tile

__all__ = ["LatentExplorer"]

class LatentExplorer(LatentView, widgets.HBox):
    """A slider per latent unit and the image the decoder makes of z, updated as a slider moves.

    The sliders set z; the image is ``model.decode_mean(z)`` (the decoder's mean, e.g. pixel
    probabilities), drawn dark on white. With more than ``max_sliders`` units, sliders are given to
    the most *active* ones (largest variance of the posterior mean over ``x``, Burda et al. 2015;
    :func:`vaelib.latent.most_active_dims`), most active first; the other units stay where the
    last chosen test image put them (its posterior mean), or at 0 after :meth:`reset`. A chooser
    ("test image") sets every unit to that image's posterior mean, so the image shown starts as its
    reconstruction. A move decodes one z and writes one small PNG, without matplotlib (a few
    milliseconds on a laptop CPU).

    Args:
        model: a :class:`vaelib.vae.VAE`.
        x: ``(N, D)`` images to start from and to rank the units by (e.g. the binarized test set);
            optional when ``latent_dim <= max_sliders`` (then there is no chooser).
        labels: ``(N,)`` their digits (shown beside the chosen image), optional.
        dims: the units to give sliders to (default: all, or the ``max_sliders`` most active).
        max_sliders: at most this many sliders.
        start: the test image to start from (default 0); None starts at z = 0.
        bound: sliders run over ``[-bound, bound]`` (default: 3, widened to hold every posterior
            mean of ``x`` with 0.5 to spare, so a test image's code is never clipped).
        step: the sliders' step (the arrow keys move one step).
        scale: the decoded image is shown ``scale`` times its size in pixels.

    Attributes:
        sliders: the ``FloatSlider`` of each unit in ``dims`` (in that order).
        dims: the units that have sliders; ``activity``: every unit's activity over x (or None).
        chooser: the ``IntSlider`` over the rows of x (None without x); ``reset_button``.
        image: the ``ipywidgets.Image`` of the decoded image (PNG bytes in ``image.value``).
        thumbnail: the chosen test image; ``readout``: ‖z‖ and log p(z) as HTML.
        z: the current latent ``(d,)``; decoded: ``model.decode_mean(z)``, ``(D,)``.
        mu, logvar: the encodings of x, ``(N, d)`` each (None without x).
    """

    def __init__(self, model, x: torch.Tensor | None = None, labels: Any = None, *,
                 dims: Any = None, max_sliders: int = 8, start: int | None = 0,
                 bound: float | None = None, step: float = 0.05, scale: int = 8,
                 image_shape: tuple[int, int] | None = None) -> None:
        self._keep_model_and_data(model, x, labels, image_shape, x_required=False)
        if isinstance(max_sliders, bool) or not isinstance(max_sliders, int) or max_sliders < 1:
            raise ValueError(f"max_sliders must be an integer >= 1, got {max_sliders!r}.")
        if not step > 0:
            raise ValueError(f"step must be > 0, got {step!r}.")
        self.scale = int(scale)
        d = model.latent_dim
        self.activity = latent_activity(self.mu) if self.mu is not None else None  # (d,)
        if dims is not None:
            dims = [int(j) for j in dims]
            if not dims or len(set(dims)) != len(dims) or not all(0 <= j < d for j in dims):
                raise ValueError(f"dims must be different units in [0, {d - 1}], got {dims!r}.")
        elif d <= max_sliders:
            dims = list(range(d))
        elif self.mu is not None:
            dims = most_active_dims(self.mu, max_sliders).tolist()
        else:
            raise ValueError(
                f"the model has latent_dim={d} > max_sliders={max_sliders}: pass x (e.g. the test "
                "images) so that the most active units get the sliders, or choose them with "
                "dims=[...].")
        self.dims = dims
        if bound is None:
            bound = 3.0
            if self.mu is not None:  # every posterior mean fits, with 0.5 to spare
                bound = max(bound, math.ceil(2 * float(self.mu[:, dims].abs().max())) / 2 + 0.5)
        if not bound > 0:
            raise ValueError(f"bound must be > 0, got {bound!r}.")
        self.bound = float(bound)

        self.z = torch.zeros(d, dtype=model.dtype, device=model.device)  # (d,)
        self.decoded: torch.Tensor | None = None  # (D,)
        self.redraws = 0
        self._base = self.z.clone()  # the units without a slider take their value from here
        self._holding = False  # True while several sliders are set at once (one redraw at the end)
        self.chosen: int | None = None

        self.sliders = [widgets.FloatSlider(
            value=0.0, min=-self.bound, max=self.bound, step=step, description=f"z[{j}]",
            continuous_update=True, readout_format="+.2f",
            layout=widgets.Layout(width="360px")) for j in dims]
        for slider in self.sliders:
            slider.observe(self._on_slider, names="value")
        h, w = self.image_shape
        self.image = widgets.Image(format="png", width=w * self.scale, height=h * self.scale)
        self.thumbnail = widgets.Image(format="png", width=w * 4, height=h * 4)
        self.image_alt, self.thumbnail_alt = alt_text(), alt_text()  # the images' descriptions
        self.caption = widgets.HTML()
        self.readout = widgets.HTML()
        shown = ("all units" if len(dims) == d else
                 f"the {len(dims)} most active of {d} units (the others stay fixed)")
        left = [widgets.HTML(f"<b>z</b>: {shown}"), *self.sliders]
        self.chooser = self.reset_button = None
        if self.x is not None:
            self.chooser = widgets.IntSlider(
                value=0 if start is None else _check_index(start, len(self.x), "start"),
                min=0, max=len(self.x) - 1, description="test image",
                layout=widgets.Layout(width="360px"))
            self.chooser.observe(self._on_choose, names="value")
            self.reset_button = widgets.Button(description="z = 0 (prior mean)",
                                               layout=widgets.Layout(width="180px"))
            self.reset_button.on_click(lambda _button: self.reset())
            left += [widgets.HTML("<b>start from</b> the posterior mean of"), self.chooser,
                     self.reset_button]
        right = widgets.VBox([
            widgets.HBox([widgets.VBox([widgets.HTML("decoded: E[x | z]"), self.image,
                                        self.image_alt]),
                          widgets.VBox([self.caption, self.thumbnail, self.thumbnail_alt])]),
            self.readout])
        super().__init__([widgets.VBox(left), right])
        if self.x is not None and start is not None:
            self.choose(start)
        else:
            self.reset()

    # -- moving -----------------------------------------------------------------------------------

    def _on_slider(self, _change: dict) -> None:
        if not self._holding:
            self.update()

    def _on_choose(self, change: dict) -> None:
        if not self._holding:
            self.choose(change["new"])

    def _set_sliders(self, z: torch.Tensor) -> None:
        self._holding = True
        try:
            for j, slider in zip(self.dims, self.sliders):
                slider.value = float(z[j])
        finally:
            self._holding = False

    def choose(self, index: int) -> None:
        """Set every unit to the posterior mean of test image ``index`` (its code) and redraw."""
        if self.x is None:
            raise ValueError("this explorer has no images to choose from: pass x when building it.")
        index = _check_index(index, len(self.x))
        self.chosen = index
        self._base = self.mu[index].clone()
        self._set_sliders(self._base)
        if self.chooser.value != index:
            self._holding = True
            try:
                self.chooser.value = index
            finally:
                self._holding = False
        h, w = self.image_shape
        self.thumbnail.value = _png(_pixels(self.x[index], (h, w)), 4)
        self.caption.value = f"test image {_describe(index, self.labels)}"
        set_alt_text(self.thumbnail_alt, f"Test image {_describe(index, self.labels)}, whose "
                                         "posterior mean the sliders start from")
        self.update()

    def reset(self) -> None:
        """z = 0, the prior's mean (the image the decoder makes of the most probable z)."""
        self.chosen = None
        self._base = torch.zeros_like(self._base)
        self._set_sliders(self._base)
        h, w = self.image_shape
        self.thumbnail.value = _png(np.full((h, w), 255, dtype=np.uint8), 4)
        self.caption.value = "z = 0: no test image"
        set_alt_text(self.thumbnail_alt, "Test image: none (blank), the sliders start from z = 0")
        self.update()

    def set_latent(self, z: Any) -> None:
        """Set every unit of z at once (``(d,)``; slider units are clipped to ±bound)."""
        z = torch.as_tensor(z, dtype=self.z.dtype, device=self.z.device).reshape(-1)
        if z.shape != self.z.shape:
            raise ValueError(f"z must have {self.model.latent_dim} entries, got {len(z)}.")
        self._base = z.clone()
        self._set_sliders(self._base)
        self.update()

    @torch.no_grad()
    def update(self) -> None:
        """Decode z (the sliders, and the fixed units) and show it, in place."""
        z = self._base.clone()
        z[self.dims] = torch.tensor([s.value for s in self.sliders], dtype=z.dtype,
                                    device=z.device)
        self.z = z  # (d,)
        self.decoded = self.model.decode_mean(z)  # (D,): E[x|z]
        self.image.value = _png(_pixels(self.decoded, self.image_shape), self.scale)
        set_alt_text(self.image_alt, "Decoded image E[x | z] (pixel probabilities, dark on white) "
                                     f"at the sliders' z, ‖z‖ = {float(z.norm()):.2f}")
        log_prior = float(self.model.log_prior(z))
        self.readout.value = (f"‖z‖ = {float(z.norm()):.2f} &nbsp; log p(z) = {log_prior:.2f} "
                              f"nats (largest at z = 0: {float(self.model.log_prior(0 * z)):.2f})")
        self.redraws += 1

    # -- the static twin --------------------------------------------------------------------------

    @torch.no_grad()
    def draw_traversal(self, fig: Figure, values: Any = None) -> str:
        """A latent traversal: row r moves unit ``dims[r]`` over ``values``; the rest stay at z."""
        values = torch.linspace(-3, 3, 7) if values is None else torch.as_tensor(values).reshape(-1)
        rows = []
        for j in self.dims:
            z = self.z.expand(len(values), -1).clone()  # (C, d)
            z[:, j] = values.to(z)
            rows.append(self.model.decode_mean(z))  # (C, D)
        tile = _tile(torch.cat(rows), self.image_shape, columns=len(values), pad=1)
        ax = fig.subplots()
        ax.imshow(tile, cmap=_INK, vmin=0, vmax=1)
        h, w = self.image_shape
        ax.set_xticks([(w + 1) * c + w / 2 for c in range(len(values))],
                      [f"{float(v):+.1f}" for v in values])
        labels = [f"z[{j}]" + (f"  (A = {float(self.activity[j]):.2f})"
                               if self.activity is not None else "") for j in self.dims]
        ax.set_yticks([(h + 1) * r + h / 2 for r in range(len(self.dims))], labels)
        ax.grid(False)
        ax.tick_params(length=0)
        ax.set_xlabel("value of the unit that moves")
        start = (f"the code of test image {_describe(self.chosen, self.labels)}"
                  if self.chosen is not None else "z = 0")
        ax.set_title(f"Latent traversal: each row moves one unit; the others stay at {start}")
        return f"units shown: {self.dims}"

    def show_static(self, values: Any = None) -> None:
        """Draw the static twin, a latent traversal around the current z, as an inline figure."""
        rows = len(self.dims)
        count = 7 if values is None else len(torch.as_tensor(values).reshape(-1))
        figsize = (min(12.0, 1.0 + 0.75 * count), 0.75 * rows + 1.0)
        static_figure(self.draw_traversal, figsize=figsize, values=values)
