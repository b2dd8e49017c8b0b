"""KL divergences between diagonal Gaussians: closed forms (ch. 6) and a Monte Carlo check (ch. 5).

For ``q = N(μ_q, diag σ_q²)`` and ``p = N(μ_p, diag σ_p²)`` the KL divergence splits over
dimensions, and each dimension has the closed form (derived in ch. 6)

    KL(q ‖ p) = ½ Σ_j [ σ_q,j² / σ_p,j² + (μ_q,j - μ_p,j)² / σ_p,j² - 1 - log(σ_q,j² / σ_p,j²) ].

With the prior ``p = N(0, I)`` this is the VAE's regularizer ``½ Σ_j (σ_j² + μ_j² - 1 - log σ_j²)``.
The closed form is registered with ``torch.distributions``: ``kl_divergence(q, p)`` for two
:class:`vaelib.gaussian.DiagonalGaussian` returns :func:`gaussian_kl_between`. Arguments named
``mean`` hold means μ (as in :mod:`vaelib.gaussian`).

Numerics: ``σ² - 1 - log σ²`` is computed as ``expm1(logvar) - logvar``, which is exactly 0 at
``logvar = 0`` and keeps its accuracy near it (no cancellation of ``exp(logvar) - 1``). At
``logvar = ±∞`` (σ² = ∞ or a point mass) the term is its limit, ``+∞``, not ``∞ - ∞ = NaN``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from torch.distributions import kl

from .checks import check_num_samples, check_tensor
from .gaussian import DiagonalGaussian

__all__ = ["gaussian_kl", "gaussian_kl_between", "mc_kl", "MonteCarloEstimate"]


def _check_same_shape(**tensors: torch.Tensor) -> None:
    for name, value in tensors.items():
        check_tensor(name, value, min_dim=1)
    shapes = {name: tuple(value.shape) for name, value in tensors.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"the arguments must all have the same shape (..., d), got {shapes}.")


def _ratio_term(log_ratio: torch.Tensor) -> torch.Tensor:
    """``r - 1 - log r = expm1(log r) - log r`` elementwise, with its limit +∞ at ``log r = ±∞``."""
    term = torch.expm1(log_ratio) - log_ratio  # at log r = +∞ this would be ∞ - ∞ = NaN
    return torch.where(torch.isinf(log_ratio), torch.inf, term)


def gaussian_kl(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(μ, diag σ²) ‖ N(0, I)) = ½ Σ_j (σ_j² + μ_j² - 1 - log σ_j²)`` (ch. 6).

    Here σ² = exp(logvar).

    Args:
        mean: ``(..., d)`` means.
        logvar: ``(..., d)`` log-variances.

    Returns:
        ``(...)``: the KL summed over the last dim (one number per data point for ``(N, d)``).
        Exactly 0 at ``mean = 0, logvar = 0``; finite for ``|logvar| <= 80`` in float32 and float64;
        +∞ where a logvar is ±∞.
    """
    _check_same_shape(mean=mean, logvar=logvar)
    # σ² - 1 - log σ² = expm1(logvar) - logvar  (>= 0, = 0 only at logvar = 0)
    return 0.5 * (_ratio_term(logvar) + mean.square()).sum(dim=-1)


def gaussian_kl_between(
    mean_q: torch.Tensor, logvar_q: torch.Tensor, mean_p: torch.Tensor, logvar_p: torch.Tensor
) -> torch.Tensor:
    """``KL(N(μ_q, diag σ_q²) ‖ N(μ_p, diag σ_p²))`` summed over the last dim (ch. 6).

    ``½ Σ_j [ r_j - 1 - log r_j + (μ_q,j - μ_p,j)² / σ_p,j² ]`` with ``r_j = σ_q,j² / σ_p,j²``.

    Args:
        mean_q, logvar_q: ``(..., d)`` parameters of q.
        mean_p, logvar_p: ``(..., d)`` parameters of p (same shape as q's).

    Returns:
        ``(...)``; exactly 0 when q and p have the same parameters; +∞ where one of a dimension's
        two log-variances is ±∞ and the other finite (e.g. p a point mass, ``logvar_p = -∞``).
    """
    _check_same_shape(mean_q=mean_q, logvar_q=logvar_q, mean_p=mean_p, logvar_p=logvar_p)
    log_ratio = logvar_q - logvar_p  # log r = log σ_q² - log σ_p²
    mahalanobis = (mean_q - mean_p).square() * torch.exp(-logvar_p)  # (μ_q - μ_p)² / σ_p²
    # At log r = ±∞ the KL is +∞ whatever the means (0 · ∞ in the Mahalanobis term is no NaN then).
    term = torch.where(torch.isinf(log_ratio), torch.inf, _ratio_term(log_ratio) + mahalanobis)
    return 0.5 * term.sum(dim=-1)


@kl.register_kl(DiagonalGaussian, DiagonalGaussian)
def _kl_diagonal_diagonal(q: DiagonalGaussian, p: DiagonalGaussian) -> torch.Tensor:
    """``torch.distributions.kl_divergence(q, p)`` for two :class:`DiagonalGaussian`: the closed
    form of :func:`gaussian_kl_between`, shape ``(...)``."""
    return gaussian_kl_between(q.mean, q.logvar, p.mean, p.logvar)


class MonteCarloEstimate(NamedTuple):
    """A Monte Carlo estimate and its standard error (unpacks as ``estimate, std_error``)."""

    estimate: torch.Tensor
    std_error: torch.Tensor


def mc_kl(
    mean_q: torch.Tensor,
    logvar_q: torch.Tensor,
    mean_p: torch.Tensor | None = None,
    logvar_p: torch.Tensor | None = None,
    num_samples: int = 1000,
    generator: torch.Generator | None = None,
) -> MonteCarloEstimate:
    """Monte Carlo KL: ``KL(q ‖ p) ≈ (1/K) Σ_k [log q(z_k) - log p(z_k)]``, ``z_k ~ q`` (ch. 5-6).

    The samples are reparameterized (``z = μ_q + σ_q ⊙ eps``), so the estimate is differentiable
    in ``mean_q`` and ``logvar_q``, and its gradient is an unbiased estimate of the gradient of the
    closed form (ch. 7).

    Args:
        mean_q, logvar_q: ``(..., d)`` parameters of q.
        mean_p, logvar_p: ``(..., d)`` parameters of p; both None (default) means the prior N(0, I).
        num_samples: K >= 2 samples per batch entry.
        generator: optional ``torch.Generator`` for reproducible samples.

    Returns:
        ``MonteCarloEstimate(estimate, std_error)``, each of shape ``(...)``. ``std_error`` is the
        sample standard deviation of ``log q(z_k) - log p(z_k)`` (with Bessel's correction) divided
        by ``sqrt(K)``: the true KL lies within ``estimate ± 3 std_error`` about 99.7% of the time.
    """
    check_num_samples(num_samples, minimum=2)
    if (mean_p is None) != (logvar_p is None):
        raise ValueError("give both mean_p and logvar_p, or neither (for the prior N(0, I)).")
    if mean_p is None:
        mean_p, logvar_p = torch.zeros_like(mean_q), torch.zeros_like(logvar_q)
    _check_same_shape(mean_q=mean_q, logvar_q=logvar_q, mean_p=mean_p, logvar_p=logvar_p)
    q = DiagonalGaussian(mean_q, logvar_q)
    p = DiagonalGaussian(mean_p, logvar_p)
    z = q.rsample(num_samples, generator=generator)  # (K, ..., d)
    log_ratio = q.log_prob(z) - p.log_prob(z)  # (K, ...)
    std_error = log_ratio.detach().std(dim=0) / num_samples**0.5
    return MonteCarloEstimate(log_ratio.mean(dim=0), std_error)
