"""LatentMap: the test set encoded (posterior means, coloured by digit) beside the decoded
manifold on the inverse-CDF grid; two sliders pick a point, decoded and marked on both.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from scipy import stats as _stats

from ..figures import COLORS, FigureExplorer
from ..latent import latent_grid
from .base import (
    _INK,
    LatentView,
    _digit_legend,
    _pixels,
    _scatter_means,
    _tile,
    _two_dims,
)

__all__ = ["LatentMap"]

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
