"""The geometry of a VAE's latent space (ch. 9): encodings, active units, interpolation, grids.

- :func:`encode_dataset` gives the parameters of q(z|x) for a whole data set, in chunks, without
  gradients: ``mu (N, d)``, ``logvar (N, d)``.
- :func:`latent_activity` is Burda et al.'s (2015) activity of each unit,
  ``A_j = Var_x[E_q[z_j|x]]``, the variance over the data of the posterior mean (ch. 8);
  :func:`most_active_dims` ranks by it.
- :func:`lerp` and :func:`slerp` interpolate between two latent codes, linearly or along a great
  circle (Shoemake 1985; White 2016, "Sampling generative networks").
- :func:`inverse_cdf_grid` places points at equal steps of prior *probability*, not of z
  (Kingma & Welling 2014, fig. 4): ``z_i = Φ⁻¹((i + ½) / n)``.

Shapes: N data points, D data dim, d latent dim, T points along a path.
"""

from __future__ import annotations

import torch

__all__ = ["encode_dataset", "latent_activity", "most_active_dims", "lerp", "slerp",
           "inverse_cdf_grid", "latent_grid"]


@torch.no_grad()
def encode_dataset(model, x: torch.Tensor,
                   batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """The parameters of q(z|x) for every row of x: ``(mu (N, d), logvar (N, d))``, no gradients.

    Args:
        model: a :class:`vaelib.vae.VAE` (anything with ``check_data`` and ``encode``).
        x: ``(N, D)`` data (moved to the model's device).
        batch_size: data points per encoder call (bounds the memory used).
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}.")
    x = model.check_data(x)
    if len(x) == 0:
        raise ValueError("x is empty: pass at least one data point (N >= 1).")
    parts = [model.encode(chunk) for chunk in x.split(batch_size)]  # (mu, logvar[, context])
    mu = torch.cat([part[0] for part in parts])
    logvar = torch.cat([part[1] for part in parts])
    return mu, logvar


def latent_activity(mu: torch.Tensor) -> torch.Tensor:
    """``A_j = Var_n[mu_nj]``, how much unit j's posterior mean moves with the data.

    ``(N, d) -> (d,)``.

    A unit with ``A_j`` near 0 gives every x the same posterior mean: the decoder cannot read
    anything from it (an *inactive* unit; Burda et al. call a unit active when ``A_j > 0.01``).
    The variance is the population one (divides by N).
    """
    if not isinstance(mu, torch.Tensor) or mu.dim() != 2 or len(mu) < 2:
        got = tuple(mu.shape) if isinstance(mu, torch.Tensor) else type(mu).__name__
        raise ValueError(
            f"mu must be a tensor of shape (N, d) with N >= 2 posterior means, got {got}.")
    return mu.var(dim=0, unbiased=False)


def most_active_dims(mu: torch.Tensor, k: int) -> torch.Tensor:
    """The indices of the k units with the largest activity :func:`latent_activity`, largest first.

    Args:
        mu: ``(N, d)`` posterior means over a data set.
        k: how many (``1 <= k``; at most d are returned).

    Returns:
        ``(min(k, d),)`` int64 indices, sorted by decreasing activity (ties: the lower index first).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}.")
    activity = latent_activity(mu)
    order = torch.sort(-activity, stable=True).indices  # decreasing activity; stable: ties by index
    return order[:k].cpu()


def _path_inputs(z0: torch.Tensor, z1: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
    for name, z in (("z0", z0), ("z1", z1)):
        if not isinstance(z, torch.Tensor) or not z.is_floating_point() or z.dim() == 0:
            raise TypeError(f"{name} must be a floating-point tensor of shape (..., d).")
    if z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must have the same shape, got {tuple(z0.shape)} and "
                         f"{tuple(z1.shape)}.")
    t = torch.as_tensor(t, dtype=z0.dtype, device=z0.device)
    if t.dim() > 1:
        raise ValueError(
            f"t must be a number or a 1-D tensor of times (T,), got shape {tuple(t.shape)}.")
    t = t.reshape(-1)
    return t, t.reshape(-1, *([1] * z0.dim()))  # (T,) and (T, 1, ..., 1) to broadcast with (..., d)


def lerp(z0: torch.Tensor, z1: torch.Tensor, t) -> torch.Tensor:
    """Linear interpolation ``z_t = (1 - t) z0 + t z1``.

    Args:
        z0, z1: ``(..., d)`` endpoints.
        t: a number or ``(T,)`` times, usually in [0, 1].

    Returns:
        ``(T, ..., d)`` points (``T = 1`` for a number).
    """
    _, tt = _path_inputs(z0, z1, t)
    return (1 - tt) * z0 + tt * z1


def slerp(z0: torch.Tensor, z1: torch.Tensor, t, eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation along the great circle from z0 to z1 (Shoemake 1985, White 2016):

        z_t = sin((1 - t) Ω) / sin Ω · z0 + sin(t Ω) / sin Ω · z1,   cos Ω = z0·z1 / (‖z0‖ ‖z1‖).

    For ``‖z0‖ = ‖z1‖`` every z_t has that norm and the angle to z0 grows as ``t Ω`` (constant
    speed); for unequal norms the path stays in the plane of z0, z1 and its norm moves from ‖z0‖ to
    ‖z1‖. Where the endpoints are (nearly) parallel (``sin Ω < eps``, the formula is 0/0) or one is
    zero, this is :func:`lerp`, the limit Ω -> 0. Antipodal endpoints (Ω = π) have no unique great
    circle: they fall back to :func:`lerp` too. Near Ω = π with unequal norms the weights
    ``1/sin Ω`` are large and the path swings far out (its midpoint is ``lerp``'s divided by
    ``cos(Ω/2)``): slerp suits codes at moderate angles, such as independent codes in high
    dimension, which are nearly orthogonal.

    Args:
        z0, z1: ``(..., d)`` endpoints.
        t: a number or ``(T,)`` times in [0, 1].
        eps: below this ``sin Ω`` the linear path is used.

    Returns:
        ``(T, ..., d)`` points (``T = 1`` for a number).
    """
    _, tt = _path_inputs(z0, z1, t)
    norms = z0.norm(dim=-1, keepdim=True) * z1.norm(dim=-1, keepdim=True)  # (..., 1)
    cos = ((z0 * z1).sum(dim=-1, keepdim=True) / norms.clamp_min(torch.finfo(z0.dtype).tiny))
    omega = torch.arccos(cos.clamp(-1.0, 1.0))  # (..., 1): the angle between z0 and z1
    sin = torch.sin(omega)
    degenerate = (sin < eps) | (norms == 0)  # parallel, antipodal or zero: no unique great circle
    safe_sin = torch.where(degenerate, torch.ones_like(sin), sin)
    w0 = torch.sin((1 - tt) * omega) / safe_sin  # (T, ..., 1)
    w1 = torch.sin(tt * omega) / safe_sin
    spherical = w0 * z0 + w1 * z1
    return torch.where(degenerate, (1 - tt) * z0 + tt * z1, spherical)


def inverse_cdf_grid(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``z_i = Φ⁻¹((i + ½) / n)``, i = 0..n-1: n points at equal steps of N(0, 1) probability.

    Point i is the median of the i-th of n slices of equal prior mass 1/n, so on a grid made of
    these coordinates every image of the latent manifold stands for the same prior mass 1/n²
    (Kingma & Welling 2014, fig. 4), and the grid reaches into the tails only as far as there is
    mass: ``±Φ⁻¹(1 - 1/(2n))``. Returns ``(n,)``, increasing.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1 (points per axis), got {n!r}.")
    u = (torch.arange(n, dtype=torch.float64) + 0.5) / n  # (n,) in (0, 1)
    return torch.special.ndtri(u).to(dtype)  # Φ⁻¹(u)


def latent_grid(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The 2-D manifold grid, ``(n, n, 2)``: entry ``[row, col] = (z1, z2)`` with
    ``z1 = inverse_cdf_grid(n)[col]`` increasing left to right and ``z2`` *decreasing* top to
    bottom, so that tiling the decoded images row by row draws the map as a plot (z2 up)."""
    axis = inverse_cdf_grid(n, dtype)
    z1 = axis.expand(n, n)  # (n, n): varies along columns
    z2 = axis.flip(0)[:, None].expand(n, n)  # (n, n): largest on the top row
    return torch.stack([z1, z2], dim=-1)
