"""Estimators of the marginal likelihood log p(x) and its lower bounds (ch. 2-5).

Written once for any :class:`vaelib.protocols.LatentVariableModel` (``log_joint``,
``log_likelihood``; ``sample_prior`` for naive Monte Carlo) and any
:class:`vaelib.protocols.Proposal` q(z|x) (``rsample(sample_shape)``, ``log_prob``: e.g.
:class:`vaelib.gaussian.DiagonalGaussian`, :class:`vaelib.gaussian.FullGaussian`), so the toy
models and the neural VAE share them. Shapes: x ``(N, D)``, z ``(K, N, d)``, log-weights ``(K, N)``;
every estimator returns one value per data point, ``(N,)``.

All of them work in log space: importance weights ``w_k = p(x, z_k) / q(z_k|x)`` overflow or
underflow as soon as D is more than a handful, their logs do not.

Memory: the model evaluates ``K × N`` latents at once. For large K (e.g. K = 5000 on MNIST) pass
``chunk_size``: the log-weights are then computed ``chunk_size`` samples at a time and concatenated
(same distribution, different random numbers than one big draw), and the bounds are computed from
the full ``(K, N)`` matrix, so they are exact and gradients still flow through ``rsample``.
"""

from __future__ import annotations

import math

import torch

from .checks import check_dim, check_num_samples, check_tensor
from .protocols import LatentVariableModel, Proposal, SamplesPrior

__all__ = [
    "log_mean_exp",
    "log_importance_weights",
    "naive_mc_log_marginal",
    "importance_log_marginal",
    "effective_sample_size",
    "elbo",
    "iwae_bound",
]


def log_mean_exp(a: torch.Tensor, dim: int = 0, keepdim: bool = False) -> torch.Tensor:
    """``log (1/K) Σ_k exp(a_k) = logsumexp(a) - log K``, stably (ch. 2).

    ``logsumexp`` subtracts the maximum before exponentiating, so values like ±1e4 neither
    overflow nor underflow; ``-inf`` entries contribute 0 (all ``-inf`` gives ``-inf``).

    Args:
        a: a tensor with ``K = a.shape[dim]`` entries along ``dim``.

    Returns:
        ``a`` reduced over ``dim``.
    """
    check_tensor("a", a, min_dim=1)
    dim = check_dim("a", a, dim)
    if a.shape[dim] == 0:
        raise ValueError(f"log_mean_exp needs at least one value along dim {dim} (K >= 1) to "
                         f"average, got a tensor of shape {tuple(a.shape)}.")
    return torch.logsumexp(a, dim=dim, keepdim=keepdim) - math.log(a.shape[dim])


def _rsample(proposal: Proposal, sample_shape: tuple[int, ...], generator) -> torch.Tensor:
    """``proposal.rsample(sample_shape)``, passing ``generator`` only when there is one (a
    ``torch.distributions`` proposal takes none)."""
    if generator is None:
        return proposal.rsample(sample_shape)
    return proposal.rsample(sample_shape, generator=generator)


def _rsample_with_log_prob(proposal: Proposal, sample_shape: tuple[int, ...],
                           generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``(z, log q(z|x))`` from one pass, for a proposal with ``rsample_with_log_prob`` (a
    :class:`vaelib.flows.FlowPosterior`, whose ``log_prob`` would invert its maps)."""
    if generator is None:
        return proposal.rsample_with_log_prob(sample_shape)
    return proposal.rsample_with_log_prob(sample_shape, generator=generator)


def _check_chunk_size(chunk_size: int | None, num_samples: int) -> int:
    return num_samples if chunk_size is None else check_num_samples(chunk_size, "chunk_size")


def log_importance_weights(
    model: LatentVariableModel,
    x: torch.Tensor,
    proposal: Proposal,
    num_samples: int,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """``log w_k = log p(x, z_k) - log q(z_k|x)`` with ``z_k ~ q(z|x)`` (ch. 3).

    Args:
        model: has ``log_joint(x, z)`` (x ``(N, D)``, z ``(K, N, d)`` -> ``(K, N)``).
        x: ``(N, D)`` data.
        proposal: q(z|x) for the N data points: ``rsample((K,))`` -> ``(K, N, d)`` and
            ``log_prob(z)`` -> ``(K, N)``; or ``rsample_with_log_prob((K,))`` -> both at once
            (a :class:`vaelib.flows.FlowPosterior`: z and log q from one pass through its maps).
        num_samples: K >= 1.
        generator: optional ``torch.Generator`` (may live on the CPU while the model is on a GPU).
        chunk_size: draw at most this many samples at a time (bounds the model's memory use).

    Returns:
        ``(K, N)`` log-weights, differentiable through the reparameterized samples.
    """
    num_samples = check_num_samples(num_samples)
    chunk_size = _check_chunk_size(chunk_size, num_samples)
    one_pass = hasattr(proposal, "rsample_with_log_prob")  # a flow: z and log q together
    chunks = []
    for start in range(0, num_samples, chunk_size):
        k = min(chunk_size, num_samples - start)
        if one_pass:
            z, log_q = _rsample_with_log_prob(proposal, (k,), generator)  # (k, N, d), (k, N)
            chunks.append(model.log_joint(x, z) - log_q)  # (k, N)
            continue
        z = _rsample(proposal, (k,), generator)  # (k, N, d)
        chunks.append(model.log_joint(x, z) - proposal.log_prob(z))  # (k, N)
    return torch.cat(chunks) if len(chunks) > 1 else chunks[0]


def naive_mc_log_marginal(
    model: SamplesPrior,
    x: torch.Tensor,
    num_samples: int,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """``log p(x) ≈ log (1/K) Σ_k p(x|z_k)`` with ``z_k ~ p(z)`` from the prior (ch. 2).

    Unbiased for p(x) (not for log p(x)), but almost every z_k from the prior explains x badly, so
    the variance explodes with the dimension: the motivation for importance sampling.

    Args:
        model: has ``sample_prior(K, num_points=N)`` -> ``(K, N, d)`` and ``log_likelihood``.
        x: ``(N, D)``; num_samples: K >= 1; chunk_size: as in :func:`log_importance_weights`.

    Returns:
        ``(N,)``; each data point gets its own K prior samples.
    """
    num_samples = check_num_samples(num_samples)
    check_tensor("x", x, min_dim=2)
    chunk_size = _check_chunk_size(chunk_size, num_samples)
    chunks = []
    for start in range(0, num_samples, chunk_size):
        k = min(chunk_size, num_samples - start)
        z = model.sample_prior(k, num_points=x.shape[0], generator=generator)  # (k, N, d)
        chunks.append(model.log_likelihood(x, z))  # log p(x|z_k), (k, N)
    return log_mean_exp(torch.cat(chunks), dim=0)


def importance_log_marginal(
    model: LatentVariableModel,
    x: torch.Tensor,
    proposal: Proposal,
    num_samples: int,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """``log p(x) ≈ log (1/K) Σ_k p(x, z_k) / q(z_k|x)``, ``z_k ~ q(z|x)`` (ch. 3).

    The average inside the log is an unbiased estimate of p(x) for any q that covers the
    posterior; with q = p(z|x) every weight equals p(x) and the estimate has zero variance.
    Its log is biased low (Jensen), which is why it equals the IWAE bound (ch. 4).

    Returns:
        ``(N,)``. Arguments as in :func:`log_importance_weights`.
    """
    log_w = log_importance_weights(model, x, proposal, num_samples, generator, chunk_size)
    return log_mean_exp(log_w, dim=0)


def effective_sample_size(log_w: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Kish's effective sample size ``ESS = (Σ_k w_k)² / Σ_k w_k²`` from log-weights (ch. 3).

    Between 1 (one weight dominates) and K (all weights equal). Computed in log space as
    ``exp(2 logsumexp(log w) - logsumexp(2 log w))``, so it is scale-free and cannot overflow.

    Args:
        log_w: log-weights, e.g. ``(K, N)``; ``dim`` is the sample dimension.

    Returns:
        ``log_w`` reduced over ``dim``, e.g. ``(N,)``.
    """
    check_tensor("log_w", log_w, min_dim=1)
    if log_w.shape[dim] == 0:
        raise ValueError(f"effective_sample_size needs at least one log-weight along dim {dim} "
                         f"(K >= 1), got a tensor of shape {tuple(log_w.shape)}.")
    return torch.exp(2 * torch.logsumexp(log_w, dim=dim) - torch.logsumexp(2 * log_w, dim=dim))


def elbo(
    model: LatentVariableModel,
    x: torch.Tensor,
    proposal: Proposal,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """``ELBO = E_q[log p(x, z) - log q(z|x)] ≈ (1/K) Σ_k log w_k`` (ch. 4).

    A lower bound on log p(x) by Jensen's inequality; the gap is ``KL(q(z|x) ‖ p(z|x))`` (ch. 5).
    Unbiased for the ELBO itself, and differentiable through ``rsample`` (ch. 7).

    Returns:
        ``(N,)``. Arguments as in :func:`log_importance_weights`.
    """
    log_w = log_importance_weights(model, x, proposal, num_samples, generator, chunk_size)
    return log_w.mean(dim=0)


def iwae_bound(
    model: LatentVariableModel,
    x: torch.Tensor,
    proposal: Proposal,
    num_samples: int,
    generator: torch.Generator | None = None,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """``IWAE_K = E[log (1/K) Σ_k w_k]`` estimated by one draw of K samples (ch. 4).

    ``ELBO = IWAE_1 <= IWAE_K <= IWAE_{K+1} <= log p(x)`` in expectation (Burda et al., 2015);
    the same number as :func:`importance_log_marginal`, read as a bound one can train on.

    Returns:
        ``(N,)``. Arguments as in :func:`log_importance_weights`.
    """
    log_w = log_importance_weights(model, x, proposal, num_samples, generator, chunk_size)
    return log_mean_exp(log_w, dim=0)
