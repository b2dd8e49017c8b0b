"""What every latent-space explorer shares: the base :class:`LatentView` (the model, the images,
their digits and encodings, checked once) and the small helpers the explorers draw with
(decoded means to pixels and PNG bytes, tiles of images, the digit colours).
"""

from __future__ import annotations

import io
import math
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap
from PIL import Image as _PILImage  # Pillow: a dependency of matplotlib

from ..figures import COLORS
from ..latent import encode_dataset

__all__ = ["DIGIT_CMAP", "LatentView"]

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


def _check_finite_weights(model: Any) -> None:
    """Weights with NaN or ±inf decode nothing but NaN: refuse them, naming the tensors (as
    :func:`vaelib.checkpoint.load_model` does for a saved model)."""
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    bad = [f"{name} ({int((~torch.isfinite(v)).sum())} of {v.numel()} values)"
           for name, v in tensors.items()
           if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise ValueError(
            f"the model's weights contain NaN or infinite values: {', '.join(bad[:6])}. A model "
            "with them decodes only NaN, so an explorer would draw garbage (did training "
            "diverge?): load an earlier checkpoint, or train again with a smaller learning rate.")


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
        _check_finite_weights(model)
        self.model = model
        self.image_shape = _image_shape(model, image_shape)
        self.x = self.labels = self.mu = self.logvar = None
        if x is None and not x_required:
            return
        self.x = _check_data(model, x)
        self.labels = _check_labels(labels, len(self.x))
        self.mu, self.logvar = encode_dataset(model, self.x)  # (N, d) each
