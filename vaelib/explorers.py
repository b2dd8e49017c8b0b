"""The latent-space explorers of chapter 9, all on one base, :class:`LatentView`.

They call the model (``encode``, ``decode_mean``, ``log_prior``, ``approximate_posterior``) and
:mod:`vaelib.latent` (encodings, activity, lerp/slerp, the inverse-CDF grid), and only draw.
Every one has a static twin, ``show_static()``, for GitHub and nbval.

- LatentExplorer: a slider per latent unit (the most active ones when there are many) and the
  decoded image, updated in place as a PNG made without matplotlib (a decode and a PNG take a
  few milliseconds); a chooser starts the sliders from a test image's posterior mean.
- LatentMap: the test set encoded (posterior means, coloured by digit) beside the decoded
  manifold on the inverse-CDF grid; two sliders pick a point, decoded and marked on both.
- Interpolation: decoded images along the linear and the spherical path between two encodings,
  and the norm of z along each.
- PosteriorUncertainty: q(z|x) as 1σ and 2σ ellipses on the map, and decoded samples from it.
"""

from __future__ import annotations

import io
import math
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse
from PIL import Image as _PILImage  # Pillow: a dependency of matplotlib
from scipy import stats as _stats

from .figures import COLORS, FigureExplorer, alt_text, set_alt_text, static_figure
from .gaussian import DiagonalGaussian
from .latent import (
    encode_dataset,
    latent_activity,
    latent_grid,
    lerp,
    most_active_dims,
    slerp,
)

__all__ = ["DIGIT_CMAP", "LatentView", "LatentExplorer", "LatentMap", "Interpolation",
           "PosteriorUncertainty"]

#: The ten digit colours (matplotlib's tab10), shared by every latent-space figure.
DIGIT_CMAP = ListedColormap(plt.get_cmap("tab10").colors, name="digits")
_INK = "gray_r"  # decoded images: dark ink on white, as in chapter 8


# ----------------------------------------------------------------------------------- helpers

def _check_vae(model: Any) -> None:
    for attr in ("encode", "decode_mean", "log_prior", "latent_dim", "data_dim", "check_data"):
        if not hasattr(model, attr):
            raise TypeError(f"model must be a vaelib.vae.VAE (with encode, decode_mean, "
                            f"latent_dim, ...); got a {type(model).__name__}, which has no "
                            f"`{attr}`.")


def _image_shape(model: Any, image_shape: tuple[int, int] | None) -> tuple[int, int]:
    """(H, W) of one image: square by default (784 -> 28 × 28)."""
    if image_shape is None:
        side = math.isqrt(model.data_dim)
        if side * side != model.data_dim:
            raise ValueError(f"data_dim={model.data_dim} is not a square image; pass "
                             "image_shape=(H, W) with H * W = data_dim.")
        return side, side
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 2 or shape[0] * shape[1] != model.data_dim:
        raise ValueError(f"image_shape must be (H, W) with H * W = data_dim = {model.data_dim}, "
                         f"got {image_shape!r}.")
    return shape


def _check_data(model: Any, x: Any) -> torch.Tensor:
    if x is None:
        raise ValueError("pass x, the images to encode (e.g. the binarized test set, (N, D)).")
    x = model.check_data(x)
    if len(x) < 2:
        raise ValueError(f"x must hold at least 2 images, got {len(x)}.")
    return x


def _check_labels(labels: Any, num_points: int) -> torch.Tensor | None:
    if labels is None:
        return None
    labels = torch.as_tensor(labels).reshape(-1).cpu()
    if len(labels) != num_points:
        raise ValueError(f"labels must have one entry per image ({num_points}), got {len(labels)}.")
    return labels.long()


def _check_index(index: Any, num_points: int, what: str = "index") -> int:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not (
            0 <= int(index) < num_points):
        raise ValueError(f"{what} must be an integer in [0, {num_points - 1}] (a row of x), "
                         f"got {index!r}.")
    return int(index)


def _two_dims(model: Any, dims: Any) -> tuple[int, int]:
    """The two latent units a 2-D view shows: (0, 1) for a 2-D model, else ``dims``, required."""
    d = model.latent_dim
    if dims is None:
        if d == 2:
            return 0, 1
        raise ValueError(
            f"this view draws a 2-D latent space, and the model has latent_dim={d}. Train a model "
            "with latent_dim=2, or pass dims=(i, j) to show units i and j (the other units are "
            "held at 0, the prior mean), e.g. the two most active: "
            "dims=vaelib.latent.most_active_dims(mu, 2).tolist().")
    dims = tuple(int(j) for j in dims)
    if len(dims) != 2 or dims[0] == dims[1] or not all(0 <= j < d for j in dims):
        raise ValueError(f"dims must be two different units in [0, {d - 1}], got {dims!r}.")
    return dims


def _pixels(images: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
    """Decoded means ``(..., D)`` -> uint8 ``(..., H, W)``, dark ink on white (255 = white)."""
    array = images.detach().float().cpu().clamp(0, 1).reshape(*images.shape[:-1], *shape)
    return np.round(255.0 * (1.0 - array.numpy())).astype(np.uint8)


def _png(pixels: np.ndarray, scale: int = 1) -> bytes:
    """A uint8 grey image ``(H, W)`` to PNG bytes, upscaled ``scale`` times with crisp pixels."""
    image = _PILImage.fromarray(np.ascontiguousarray(pixels))
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale),
                             _PILImage.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # fast; the image is tiny anyway
    return buffer.getvalue()


def _tile(images: torch.Tensor, shape: tuple[int, int], columns: int, pad: int = 0,
          fill: float = 0.25) -> np.ndarray:
    """``(n, D)`` images -> one float array of ``ceil(n / columns)`` rows, for one ``imshow``.

    ``pad`` pixels of grey level ``fill`` separate the images (empty slots are white).
    """
    n, (h, w) = len(images), shape
    rows = max(1, math.ceil(n / columns))
    canvas = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad), fill, dtype=np.float32)
    array = images.detach().float().cpu().clamp(0, 1).reshape(n, h, w).numpy()
    for k in range(rows * columns):
        r, c = divmod(k, columns)
        block = array[k] if k < n else 0.0
        canvas[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = block
    return canvas


def _digit_legend(ax, labels: torch.Tensor | None, **kwargs) -> None:
    if labels is None:
        return
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], linestyle="", marker="o", markersize=5, color=DIGIT_CMAP(int(k)),
                      label=str(int(k))) for k in torch.unique(labels)]
    ax.legend(handles=handles, title="digit", fontsize=7, title_fontsize=8, handletextpad=0.1,
              borderpad=0.2, labelspacing=0.2, **kwargs)


def _scatter_means(ax, mu: torch.Tensor, labels: torch.Tensor | None, dims: tuple[int, int],
                   **kwargs) -> None:
    """The posterior means in units ``dims``, coloured by digit."""
    points = mu[:, list(dims)].detach().float().cpu().numpy()
    colors = (DIGIT_CMAP(labels.numpy() % 10) if labels is not None else COLORS["importance"])
    ax.scatter(points[:, 0], points[:, 1], c=colors, s=kwargs.pop("s", 5),
               alpha=kwargs.pop("alpha", 0.6), linewidths=0, rasterized=True, **kwargs)


def _describe(index: int, labels: torch.Tensor | None) -> str:
    return f"#{index}" + ("" if labels is None else f" (a {int(labels[index])})")


# ----------------------------------------------------------------------------------- the base

class LatentView:
    """What every latent-space explorer keeps: the model, the images, their digits and encodings.

    Attributes (set by :meth:`_keep_model_and_data`): ``model``; ``image_shape`` (H, W); ``x``
    ``(N, D)``; ``labels`` ``(N,)`` or None; ``mu``, ``logvar`` ``(N, d)`` each, the parameters
    of q(z|x) for every image. A new explorer subclasses it beside its widget class
    (``class MyView(LatentView, FigureExplorer)``) and calls ``_keep_model_and_data`` first.
    """

    def _keep_model_and_data(self, model: Any, x: Any, labels: Any, image_shape: Any,
                             x_required: bool = True) -> None:
        """Check and keep the model, x, labels and their encodings (x may be None if not
        ``x_required``: then x, labels, mu and logvar are None)."""
        _check_vae(model)
        self.model = model
        self.image_shape = _image_shape(model, image_shape)
        self.x = self.labels = self.mu = self.logvar = None
        if x is None and not x_required:
            return
        self.x = _check_data(model, x)
        self.labels = _check_labels(labels, len(self.x))
        self.mu, self.logvar = encode_dataset(model, self.x)  # (N, d) each


# ----------------------------------------------------------------------------------- LatentExplorer

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
        set_alt_text(self.image_alt, f"Decoded image E[x | z] (pixel probabilities, dark on white) at the "
                                     f"sliders' z, ‖z‖ = {float(z.norm()):.2f}")
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



# ----------------------------------------------------------------------------------- LatentMap

class LatentMap(LatentView, FigureExplorer):
    """The 2-D latent space: where the test images are encoded, and what the decoder makes of it.

    Left, the posterior means μ(x) of ``x``, coloured by digit (the *means* of q(z|x), not
    samples: each posterior has a spread, see :class:`PosteriorUncertainty`), with the manifold's
    grid points (+). Middle, the decoded means on a ``grid_size × grid_size`` grid placed by the
    inverse Gaussian CDF, ``z = Φ⁻¹(u)`` for u at ``(i + ½) / n`` (Kingma & Welling 2014, fig. 4;
    :func:`vaelib.latent.latent_grid`): every image stands for the same prior mass 1/n², so the
    axes are linear in u = Φ(z), ticks labelled in z. Right, the image decoded at the point the
    two sliders pick, marked on both maps.

    For a model with ``latent_dim != 2``, pass ``dims=(i, j)``: the scatter then shows those two
    coordinates of the posterior means (a projection), and the manifold and the picked point hold
    the other units at 0 (the prior mean); without ``dims`` it is an error.

    Args:
        model: a :class:`vaelib.vae.VAE`; x: ``(N, D)`` images to encode; labels: ``(N,)`` digits.
        dims: the two units to show (default (0, 1) for a 2-D model).
        grid_size: n, images per side of the manifold.
        bound: the sliders and the scatter run over ``[-bound, bound]``.
        start: the point (z_i, z_j) picked at first.

    Attributes (besides :class:`FigureExplorer`'s ``controls``, ``image``, ``figure``, ``readout``):
        mu, logvar: the encodings of x, ``(N, d)``; grid: ``(n, n, d)`` the grid's latents;
        manifold: ``(n, n, D)`` their decoded means; z: the picked latent ``(d,)``;
        decoded: ``model.decode_mean(z)``, ``(D,)``.
    """

    def __init__(self, model, x: torch.Tensor, labels: Any = None, *, dims: Any = None,
                 grid_size: int = 15, bound: float = 3.5, step: float = 0.05,
                 start: tuple[float, float] = (0.0, 0.0),
                 figsize: tuple[float, float] = (12.5, 4.4),
                 dpi: int = 80, image_shape: tuple[int, int] | None = None) -> None:
        self._keep_model_and_data(model, x, labels, image_shape)
        self.dims = _two_dims(model, dims)
        if isinstance(grid_size, bool) or not isinstance(grid_size, int) or grid_size < 2:
            raise ValueError(f"grid_size must be an integer >= 2, got {grid_size!r}.")
        self.bound = float(bound)
        self.grid = self._embed(latent_grid(grid_size, dtype=model.dtype))  # (n, n, d)
        with torch.no_grad():
            self.manifold = model.decode_mean(self.grid)  # (n, n, D)
        self._manifold_tile = _tile(self.manifold.reshape(-1, model.data_dim), self.image_shape,
                                    columns=grid_size)
        self.z: torch.Tensor | None = None
        self.decoded: torch.Tensor | None = None
        i, j = self.dims
        sliders = {name: widgets.FloatSlider(
            value=float(v), min=-self.bound, max=self.bound, step=step, description=f"z[{k}]",
            continuous_update=True, readout_format="+.2f", layout=widgets.Layout(width="330px"))
            for name, v, k in (("z1", start[0], i), ("z2", start[1], j))}
        super().__init__(self.draw, figsize=figsize, dpi=dpi, **sliders)

    def _embed(self, z2: torch.Tensor) -> torch.Tensor:
        """``(..., 2)`` values of the two shown units -> ``(..., d)`` latents (the rest 0)."""
        z = torch.zeros(*z2.shape[:-1], self.model.latent_dim, dtype=self.model.dtype,
                        device=self.model.device)
        z[..., list(self.dims)] = z2.to(z)
        return z

    @torch.no_grad()
    def draw(self, fig: Figure, z1: float, z2: float) -> str:
        """The scatter, the manifold and the decoded point (see the class docstring)."""
        z = self._embed(torch.tensor([z1, z2]))  # (d,)
        decoded = self.model.decode_mean(z)  # (D,)
        if fig is self.figure:  # the live widget's state (not the static twin's)
            self.z, self.decoded = z, decoded
        i, j = self.dims
        n = self.grid.shape[0]
        ax_map, ax_grid, ax_img = fig.subplots(
            1, 3, gridspec_kw=dict(width_ratios=[1, 1.1, 0.45], wspace=0.5))
        _scatter_means(ax_map, self.mu, self.labels, self.dims)
        grid = self.grid.reshape(-1, self.model.latent_dim)[:, [i, j]].cpu()
        ax_map.scatter(grid[:, 0], grid[:, 1], marker="+", s=10, color="0.3", linewidths=0.6,
                       alpha=0.6, label="grid of the manifold")
        ax_map.plot([z1], [z2], marker="*", markersize=17, color="white", markeredgecolor="black",
                    linestyle="")
        ax_map.set(xlim=(-self.bound, self.bound), ylim=(-self.bound, self.bound), aspect="equal",
                   xlabel=f"z[{i}]", ylabel=f"z[{j}]",
                   title=f"Test images encoded: μ(x) of {len(self.mu)} images")
        _digit_legend(ax_map, self.labels, loc="upper left", bbox_to_anchor=(1.0, 1.0))

        ax_grid.imshow(self._manifold_tile, cmap=_INK, vmin=0, vmax=1, extent=(0, 1, 0, 1),
                       interpolation="nearest")
        u1, u2 = _stats.norm.cdf([z1, z2])  # the picked point in probability coordinates
        c1, c2 = min(int(u1 * n), n - 1), min(int(u2 * n), n - 1)  # its cell of the grid
        ax_grid.add_patch(plt.Rectangle((c1 / n, c2 / n), 1 / n, 1 / n, fill=False,
                                        edgecolor=COLORS["naive"], linewidth=1.8))
        ax_grid.plot([u1], [u2], marker="*", markersize=12, color="white",
                     markeredgecolor="black", linestyle="")
        ticks = [-2.0, -1.0, 0.0, 1.0, 2.0]
        ax_grid.set_xticks(_stats.norm.cdf(ticks), [f"{t:g}" for t in ticks])
        ax_grid.set_yticks(_stats.norm.cdf(ticks), [f"{t:g}" for t in ticks])
        ax_grid.grid(False)
        ax_grid.set(xlabel=f"z[{i}] (placed at Φ(z))", ylabel=f"z[{j}] (placed at Φ(z))",
                    title=f"Decoded on the grid z = Φ⁻¹(u), {n} × {n}")

        ax_img.imshow(_pixels(decoded, self.image_shape), cmap="gray", vmin=0, vmax=255)
        ax_img.set_axis_off()
        ax_img.set_title(f"decoded at\nz[{i}] = {z1:+.2f}, z[{j}] = {z2:+.2f}")
        log_prior = float(self.model.log_prior(z))
        return (f"picked z[{i}] = {z1:+.2f}, z[{j}] = {z2:+.2f} (u = {u1:.2f}, {u2:.2f}): "
                f"log p(z) = {log_prior:.2f} nats; grid cell ({c1}, {c2}) of {n} × {n}, each "
                f"holding prior mass 1/{n * n}")



# ----------------------------------------------------------------------------------- Interpolation

class Interpolation(LatentView, FigureExplorer):
    """Decoded images along a path between the codes (posterior means) of two test images.

    ``linear``: ``z_t = (1 - t) μ_a + t μ_b`` (:func:`vaelib.latent.lerp`); ``spherical``: along the
    great circle (:func:`vaelib.latent.slerp`); ``both``: one strip each. Below the strips, ‖z_t‖
    along each path, against the band where the norms of the test images' codes lie (5 to 95 %):
    the linear path's middle falls short of it in high dimension, the spherical one does not.

    Args:
        model: a :class:`vaelib.vae.VAE`; x: ``(N, D)`` images; labels: ``(N,)`` digits.
        start, end: the two images (rows of x); steps: points along the path (2 to 16);
        method: ``"linear"``, ``"spherical"`` or ``"both"``.

    Attributes (besides :class:`FigureExplorer`'s): t ``(T,)``; paths: method -> z ``(T, d)``;
        decoded: method -> ``(T, D)``, ``model.decode_mean`` of each path; mu, logvar ``(N, d)``.
    """

    METHODS = ("linear", "spherical", "both")

    def __init__(self, model, x: torch.Tensor, labels: Any = None, *, start: int = 0,
                 end: int = 1, steps: int = 9, method: str = "both",
                 figsize: tuple[float, float] = (12.0, 5.2), dpi: int = 80,
                 image_shape: tuple[int, int] | None = None) -> None:
        self._keep_model_and_data(model, x, labels, image_shape)
        norms = self.mu.norm(dim=-1).float().cpu().numpy()  # ‖μ(x)‖ of every image
        self.norm_band = tuple(np.percentile(norms, [5, 95]))
        start = _check_index(start, len(self.x), "start")
        end = _check_index(end, len(self.x), "end")
        if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= 16:
            raise ValueError(f"steps must be an integer from 2 to 16, got {steps!r}.")
        if method not in self.METHODS:
            raise ValueError(f"method must be one of {self.METHODS}, got {method!r}.")
        self.t = self.paths = self.decoded = None
        last = len(self.x) - 1
        super().__init__(
            self.draw, figsize=figsize, dpi=dpi,
            start=widgets.IntSlider(value=start, min=0, max=last, description="from image"),
            end=widgets.IntSlider(value=end, min=0, max=last, description="to image"),
            steps=widgets.IntSlider(value=steps, min=2, max=16, description="steps"),
            method=widgets.ToggleButtons(options=list(self.METHODS), value=method,
                                         description="path"))

    @torch.no_grad()
    def draw(self, fig: Figure, start: int, end: int, steps: int, method: str) -> str:
        """The strips of decoded images and ‖z_t‖ along the paths."""
        start = _check_index(start, len(self.x), "start")
        end = _check_index(end, len(self.x), "end")
        if method not in self.METHODS:
            raise ValueError(f"method must be one of {self.METHODS}, got {method!r}.")
        z0, z1 = self.mu[start], self.mu[end]  # (d,) each
        t = torch.linspace(0, 1, steps, dtype=z0.dtype, device=z0.device)  # (T,)
        methods = ["linear", "spherical"] if method == "both" else [method]
        interpolate = {"linear": lerp, "spherical": slerp}
        paths = {m: interpolate[m](z0, z1, t) for m in methods}  # (T, d) each
        decoded = {m: self.model.decode_mean(p) for m, p in paths.items()}  # (T, D) each
        if fig is self.figure:
            self.t, self.paths, self.decoded = t, paths, decoded
        h, w = self.image_shape
        axes = fig.subplots(len(methods) + 1, 1,
                            gridspec_kw=dict(height_ratios=[1.0] * len(methods) + [1.25]))
        colors = {"linear": COLORS["naive"], "spherical": COLORS["importance"]}  # colour-blind safe
        for ax, m in zip(axes, methods):
            ax.imshow(_tile(decoded[m], self.image_shape, columns=steps, pad=1), cmap=_INK,
                      vmin=0, vmax=1)
            ax.set_xticks([(w + 1) * c + w / 2 for c in range(steps)],
                          [f"{float(v):.2f}" for v in t])
            ax.set_yticks([])
            ax.grid(False)
            ax.tick_params(length=0, labelsize=8)
            ax.set_ylabel(m, color=colors[m], fontsize=11)
        axes[0].set_title(f"From test image {_describe(start, self.labels)} to "
                          f"{_describe(end, self.labels)}: decoded E[x | z_t] at t =")
        ax = axes[-1]
        ax.axhspan(*self.norm_band, color="0.85", label="‖μ(x)‖ of the test images (5–95 %)")
        tt = t.cpu().numpy()
        for m in methods:
            ax.plot(tt, paths[m].norm(dim=-1).cpu().numpy(), marker="o" if m == "linear" else "s",
                    markersize=4, linestyle="--" if m == "linear" else "-", color=colors[m], label=m)
        ax.set(xlabel="t", ylabel="‖z_t‖", xlim=(-0.02, 1.02))
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
        middle = steps // 2
        parts = [f"{m}: {float(paths[m][middle].norm()):.2f}" for m in methods]
        return (f"‖z‖ at t = {float(t[middle]):.2f}: " + ", ".join(parts) +
                f" (endpoints {float(z0.norm()):.2f} and {float(z1.norm()):.2f})")



# ------------------------------------------------------------------------ PosteriorUncertainty

class PosteriorUncertainty(LatentView, FigureExplorer):
    """q(z|x) is a distribution, not a point: its 1σ and 2σ ellipses, and decoded samples from it.

    Left, the codes of all of ``x`` (faint) and the ellipses ``{z : Σ_k ((z_k - μ_k) / σ_k)² =
    c²}``, c = 1, 2, of q(z|x) for each image in ``indices`` (in two dimensions they hold
    1 - e^{-c²/2} = 39 % and 86 % of its mass). Middle, a zoom on the chosen image's q(z|x), with
    ``num_samples`` draws z ~ q(z|x). Right, the image, its reconstruction E[x | z = μ] and the
    decoded draws E[x | z_k]. For a model with ``latent_dim != 2`` pass ``dims=(i, j)``: the
    ellipses are then q's marginal in those two units (exact for a diagonal Gaussian) and the
    samples are drawn in all units.

    Args:
        model: a :class:`vaelib.vae.VAE`; x: ``(N, D)`` images; labels: ``(N,)`` digits.
        indices: the images offered (default: the first of each digit, or the first ten).
        dims: the two units drawn (default (0, 1) for a 2-D model).
        num_samples: draws from q(z|x) at first (1 to 16); seed: the draw's seed.

    Attributes (besides :class:`FigureExplorer`'s): posterior: the chosen q(z|x), a
        :class:`vaelib.gaussian.DiagonalGaussian` over ``(1, d)``; samples: ``(K, d)``;
        decoded_samples: ``(K, D)``; reconstruction: ``(D,)``; mu, logvar ``(N, d)``.
    """

    def __init__(self, model, x: torch.Tensor, labels: Any = None, *, indices: Any = None,
                 dims: Any = None, num_samples: int = 8, seed: int = 0,
                 figsize: tuple[float, float] = (12.5, 4.4), dpi: int = 80,
                 image_shape: tuple[int, int] | None = None) -> None:
        self._keep_model_and_data(model, x, labels, image_shape)
        self.dims = _two_dims(model, dims)
        if indices is None:
            if self.labels is not None:
                indices = [int((self.labels == k).nonzero()[0]) for k in torch.unique(self.labels)]
            else:
                indices = list(range(min(10, len(self.x))))
        indices = [_check_index(i, len(self.x), "each of indices") for i in indices]
        if not indices:
            raise ValueError("indices must name at least one image.")
        self.indices = indices
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or not (
                1 <= num_samples <= 16):
            raise ValueError(f"num_samples must be an integer from 1 to 16, got {num_samples!r}.")
        self.posterior = self.samples = self.decoded_samples = self.reconstruction = None
        options = [(_describe(i, self.labels), i) for i in indices]
        super().__init__(
            self.draw, figsize=figsize, dpi=dpi,
            image=widgets.Dropdown(options=options, value=indices[0], description="image"),
            num_samples=widgets.IntSlider(value=num_samples, min=1, max=16, description="samples"),
            seed=widgets.IntSlider(value=int(seed), min=0, max=99, description="draw #"))

    def _ellipses(self, ax, index: int, color, linewidth: float) -> None:
        i, j = self.dims
        center = (float(self.mu[index, i]), float(self.mu[index, j]))
        std = (0.5 * self.logvar[index]).exp()  # σ of q(z|x), (d,)
        for c, style in ((1, "-"), (2, "--")):
            ax.add_patch(Ellipse(center, 2 * c * float(std[i]), 2 * c * float(std[j]),
                                 fill=False, edgecolor=color, linewidth=linewidth, linestyle=style))

    @torch.no_grad()
    def draw(self, fig: Figure, image: int, num_samples: int, seed: int) -> str:
        """The ellipses on the map, the zoom with the samples, and the decoded samples."""
        index = _check_index(image, len(self.x), "image")
        q = DiagonalGaussian(self.mu[index:index + 1], self.logvar[index:index + 1])  # (1, d)
        generator = torch.Generator().manual_seed(int(seed))
        samples = q.sample(num_samples, generator=generator)[:, 0]  # (K, d)
        decoded = self.model.decode_mean(samples)  # (K, D)
        reconstruction = self.model.decode_mean(q.mean[0])  # (D,)
        if fig is self.figure:
            self.posterior, self.samples = q, samples
            self.decoded_samples, self.reconstruction = decoded, reconstruction
        i, j = self.dims
        color = (DIGIT_CMAP(int(self.labels[index]) % 10) if self.labels is not None
                 else COLORS["importance"])
        ax_map, ax_zoom, ax_img = fig.subplots(1, 3, gridspec_kw=dict(width_ratios=[1, 1, 0.9]))
        for ax in (ax_map, ax_zoom):
            _scatter_means(ax, self.mu, self.labels, self.dims, s=4, alpha=0.25)
        for k in self.indices:
            col = DIGIT_CMAP(int(self.labels[k]) % 10) if self.labels is not None else "0.3"
            self._ellipses(ax_map, k, col, 2.2 if k == index else 1.0)
        ax_map.set(aspect="equal", xlabel=f"z[{i}]", ylabel=f"z[{j}]",
                   title="q(z|x): 1σ (solid) and 2σ (dashed) ellipses")
        ax_map.autoscale_view()
        std = q.std[0]  # (d,)
        mean = q.mean[0]
        pts = samples[:, [i, j]].cpu().numpy()
        self._ellipses(ax_zoom, index, color, 2.2)
        ax_zoom.scatter(pts[:, 0], pts[:, 1], s=22, color="black", zorder=3,
                        label=f"{num_samples} samples z ~ q(z|x)")
        ax_zoom.plot([float(mean[i])], [float(mean[j])], marker="+", markersize=14, color="black",
                     linestyle="", label="μ(x)")
        half = 3.5 * float(max(std[i], std[j]))  # a square window of ±3.5 σ around μ
        ax_zoom.set(xlim=(float(mean[i]) - half, float(mean[i]) + half),
                    ylim=(float(mean[j]) - half, float(mean[j]) + half), aspect="equal",
                    xlabel=f"z[{i}]", ylabel=f"z[{j}]",
                    title=f"Zoom on q(z|x) of {_describe(index, self.labels)}")
        ax_zoom.legend(loc="lower right", fontsize=7)
        columns = 4
        tiles = torch.cat([self.x[index:index + 1].to(decoded), reconstruction[None], decoded])
        ax_img.imshow(_tile(tiles, self.image_shape, columns=columns, pad=1),
                      cmap=_INK, vmin=0, vmax=1)
        ax_img.set_axis_off()
        ax_img.set_title("the image, E[x | μ], then E[x | z_k] for each sample", fontsize=10)
        ratio = 1.0 / float(std[[i, j]].max())
        return (f"q(z|x) of {_describe(index, self.labels)}: μ = ({float(mean[i]):+.2f}, "
                f"{float(mean[j]):+.2f}), σ = ({float(std[i]):.3f}, {float(std[j]):.3f}) in "
                f"z[{i}], z[{j}]: at least {ratio:.0f}× narrower than the prior N(0, 1)")

