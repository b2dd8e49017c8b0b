"""PosteriorUncertainty: q(z|x) as 1σ and 2σ ellipses on the latent map, and decoded samples
from it.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse

from ..figures import COLORS, FigureExplorer
from ..gaussian import DiagonalGaussian
from .base import (
    _INK,
    DIGIT_CMAP,
    LatentView,
    _check_index,
    _describe,
    _scatter_means,
    _tile,
    _two_dims,
)

__all__ = ["PosteriorUncertainty"]

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
        std = q.stddev[0]  # (d,)
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
