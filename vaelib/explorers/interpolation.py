"""Interpolation: decoded images along the linear and the spherical path between two
encodings, and the norm of z along each.
"""

from __future__ import annotations

from typing import Any

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.figure import Figure

from ..figures import COLORS, FigureExplorer
from ..latent import lerp, slerp
from .base import _INK, LatentView, _check_index, _describe, _tile

__all__ = ["Interpolation"]

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
            linear = m == "linear"
            ax.plot(tt, paths[m].norm(dim=-1).cpu().numpy(), marker="o" if linear else "s",
                    markersize=4, linestyle="--" if linear else "-", color=colors[m], label=m)
        ax.set(xlabel="t", ylabel="‖z_t‖", xlim=(-0.02, 1.02))
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
        middle = steps // 2
        parts = [f"{m}: {float(paths[m][middle].norm()):.2f}" for m in methods]
        return (f"‖z‖ at t = {float(t[middle]):.2f}: " + ", ".join(parts) +
                f" (endpoints {float(z0.norm()):.2f} and {float(z1.norm()):.2f})")
