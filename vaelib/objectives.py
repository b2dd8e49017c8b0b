"""Training on the importance-weighted bound IWAE_K, and its gradient estimators (ch. 10).

For a data point x and K reparameterized samples ``z_k = μ_φ(x) + σ_φ(x) ⊙ eps_k`` with log-weights
``log w_k = log p_θ(x, z_k) - log q_φ(z_k|x)``, one draw of the bound is

    log p̂_K = log (1/K) Σ_k w_k,          E[log p̂_K] = IWAE_K   (ch. 4: ELBO = IWAE_1 <= IWAE_K).

**Its gradient** (the derivative of a log of a sum) weighs each sample's gradient by its
*self-normalized* weight ``w̃_k = w_k / Σ_j w_j`` (a softmax of the log-weights):

    ∇ log p̂_K = Σ_k w̃_k ∇ log w_k.                                                   (plain)

With K = 1, ``w̃_1 = 1`` and this is the reparameterized ELBO gradient of ch. 7, exactly.

**DReG** (doubly reparameterized gradient, Tucker et al., 2019). For the encoder φ, ``∇_φ log w_k``
has a path part (through z_k) and a score part ``-∂_φ log q_φ(z_k|x)`` (z_k held fixed). Applying
the reparameterization trick a second time to the score part turns the encoder's gradient into

    ∇_φ^DReG = Σ_k w̃_k² ∂_z log w_k(z_k) · ∂z_k/∂φ        (log q's φ held fixed in log w_k),

(for a flow posterior, ch. 11, log q_φ(z_k|x) at fixed φ inverts its maps with their weights,
μ, logvar and the context held fixed: ``FlowPosterior.log_prob(z, hold_parameters=True)``),
which has the same expectation as the plain estimator's φ-part and a signal-to-noise ratio that
no longer falls with K (Rainforth et al., 2018 showed the plain one's falls like 1/√K). The decoder
θ keeps the plain gradient ``Σ_k w̃_k ∇_θ log p_θ(x, z_k)``.

Both are implemented as a *surrogate*: a tensor whose value is the bound's estimate ``log p̂_K``
and whose autograd gradient is the chosen estimator, so a training loop minimizes ``-surrogate``.

:func:`iwae_bound_1d` is the exact reference: IWAE_K itself (not a Monte Carlo estimate) for a
model with a one-dimensional latent, differentiable, so its autograd gradient is the exact
expectation that the estimators above are checked against.

Shapes: x ``(N, D)``, z ``(K, N, d)``, log-weights ``(K, N)``; the surrogate is ``(N,)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from .checks import check_dim, check_num_samples, check_positive_int, check_tensor
from .estimators import log_mean_exp
from .gaussian import LOG_2PI, DiagonalGaussian
from .protocols import LatentVariableModel

if TYPE_CHECKING:
    from .flows import FlowPosterior

__all__ = ["ENCODER_GRADIENTS", "self_normalized_weights", "iwae_surrogate",
           "iwae_surrogate_at", "iwae_bound_1d"]

#: The estimators of the encoder's gradient of IWAE_K.
ENCODER_GRADIENTS = ("plain", "dreg")


def self_normalized_weights(log_w: torch.Tensor, dim: int = 0,
                            validate: bool = True) -> torch.Tensor:
    """``w̃_k = w_k / Σ_j w_j = softmax(log w)_k`` along ``dim`` (ch. 10), computed stably.

    Args:
        log_w: log-weights, e.g. ``(K, N)``; ``-inf`` (a weight of 0) is allowed, but not for every
            k of a column, and neither NaN nor ``+inf``: each would make w̃ NaN.
        validate: read the values to refuse those cases (a host sync on a GPU; the training step
            passes False).

    Returns:
        Non-negative weights of the same shape, summing to 1 along ``dim``.
    """
    check_tensor("log_w", log_w, min_dim=1)
    dim = check_dim("log_w", log_w, dim)
    if validate:
        _check_log_weights(log_w, dim)
    return torch.softmax(log_w, dim=dim)


def _check_log_weights(log_w: torch.Tensor, dim: int) -> None:
    """No NaN, no +inf, and some finite weight along ``dim`` in every column."""
    if bool(torch.isnan(log_w).any()):
        raise ValueError(f"log_w contains {int(torch.isnan(log_w).sum())} NaN value(s): check how "
                         "the log-weights were computed (NaN weights in the model?).")
    if bool((log_w == math.inf).any()):
        raise ValueError(f"log_w contains +inf ({int((log_w == math.inf).sum())} value(s)): an "
                         "infinite weight makes w̃ = inf / inf undefined; check log p(x, z) and "
                         "log q(z|x) (a log-density of +inf is a density that blew up).")
    empty = (log_w == -math.inf).all(dim=dim)  # every weight 0 along dim: 0 / 0
    if bool(empty.any()):
        raise ValueError(f"log_w is -inf for every sample along dim {dim} in {int(empty.sum())} of "
                         f"{empty.numel()} column(s): all their weights are 0, so w̃ = 0 / 0 is "
                         "undefined; q(z|x) put no sample where p(x, z) > 0 (draw more samples, or "
                         "check the model).")


def _check_encoder_gradient(encoder_gradient: object) -> str:
    if encoder_gradient not in ENCODER_GRADIENTS:
        raise ValueError(f"unknown encoder_gradient {encoder_gradient!r}; choose 'plain' (autograd "
                         "of the bound) or 'dreg' (doubly reparameterized, Tucker et al. 2019).")
    return encoder_gradient


def iwae_surrogate(
    model: LatentVariableModel,
    x: torch.Tensor,
    proposal: DiagonalGaussian,
    num_samples: int,
    encoder_gradient: str = "plain",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One draw of ``log (1/K) Σ_k w_k`` per data point, with the chosen gradient (ch. 10).

    Args:
        model: a :class:`vaelib.protocols.LatentVariableModel` (its ``log_joint(x, z)``: x
            ``(N, D)``, z ``(K, N, d)`` -> ``(K, N)``).
        x: ``(N, D)`` data.
        proposal: q(z|x) over ``(N, d)`` carrying the encoder's graph (e.g.
            ``model.posterior(x)``): a :class:`~vaelib.gaussian.DiagonalGaussian`, or a
            :class:`~vaelib.flows.FlowPosterior`, whose samples and log q come from one pass
            (``rsample_with_log_prob``).
        num_samples: K >= 1.
        encoder_gradient: ``"plain"``: autograd of the bound, ``Σ_k w̃_k ∇ log w_k``;
            ``"dreg"``: the decoder's gradient as in plain, the encoder's
            ``Σ_k w̃_k² ∂_z log w_k ∂z_k/∂φ`` (see the module docstring); for a flow posterior
            log q(z_k|x) at fixed φ inverts its maps with their weights held fixed.
        generator: optional ``torch.Generator`` for the samples.

    Returns:
        ``(N,)``: the value is the IWAE_K estimate ``log p̂_K`` (the same number for both
        estimators, and for the same generator state the same as
        :func:`vaelib.estimators.iwae_bound`); its gradient is the chosen estimator. Minimize
        ``-surrogate.mean()`` to train. :func:`iwae_surrogate_at` is the same for samples and
        log-joint values the caller computed (a trainer that logs ``log p(x|z_k)`` as well).
    """
    num_samples = check_num_samples(num_samples)
    encoder_gradient = _check_encoder_gradient(encoder_gradient)
    one_pass = _is_flow(proposal)  # a FlowPosterior: z and log q from one pass
    if not (isinstance(proposal, DiagonalGaussian) or one_pass):
        raise TypeError(f"proposal must be a DiagonalGaussian or a FlowPosterior (the encoder's "
                        f"q(z|x)), got {type(proposal).__name__}.")
    check_tensor("x", x, min_dim=1)
    shape = (*proposal.batch_shape, *proposal.event_shape)  # (N, d)
    try:  # (N, d) against (N, D): the same N points (or one q broadcast over them); no sync
        torch.broadcast_shapes(proposal.batch_shape, x.shape[:-1])
    except RuntimeError:
        raise ValueError(f"proposal is q(z|x) of shape {shape} (N, d) and x "
                         f"has shape {tuple(x.shape)} (N, D): they must describe the same N data "
                         "points; build it from this x, e.g. model.posterior(x)."
                         ) from None
    if one_pass:  # z and log q(z|x) from one pass through the maps
        z, log_q = proposal.rsample_with_log_prob((num_samples,), generator=generator)
        return iwae_surrogate_at(z, model.log_joint(x, z), proposal, encoder_gradient, log_q)
    z = proposal.rsample((num_samples,), generator=generator)  # (K, N, d), z = μ + σ ⊙ eps
    return iwae_surrogate_at(z, model.log_joint(x, z), proposal, encoder_gradient)


def _is_flow(proposal: object) -> bool:
    """A :class:`vaelib.flows.FlowPosterior` (or another q that gives z and log q together)."""
    return hasattr(proposal, "rsample_with_log_prob") and not isinstance(proposal,
                                                                          DiagonalGaussian)


def iwae_surrogate_at(
    z: torch.Tensor,
    log_joint: torch.Tensor,
    proposal: DiagonalGaussian | FlowPosterior,
    encoder_gradient: str = "plain",
    log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`iwae_surrogate` at samples drawn by the caller (ch. 10).

    Args:
        z: ``(K, N, d)`` reparameterized samples of ``proposal`` (``proposal.rsample((K,))``).
        log_joint: ``(K, N)`` values ``log p(x, z_k)``, differentiable in the model and in z.
        proposal: q(z|x), the :class:`~vaelib.gaussian.DiagonalGaussian` or the
            :class:`~vaelib.flows.FlowPosterior` z was drawn from.
        encoder_gradient: ``"plain"`` or ``"dreg"``, as in :func:`iwae_surrogate`.
        log_q: ``(K, N)`` log q(z_k|x), computed with z (``proposal.rsample_with_log_prob``);
            needed for a flow posterior with the plain gradient; None: ``proposal.log_prob(z)``
            (a Gaussian). DReG computes log q itself, with q's parameters held fixed.

    Returns:
        ``(N,)``, as :func:`iwae_surrogate`.
    """
    encoder_gradient = _check_encoder_gradient(encoder_gradient)
    if log_q is None and _is_flow(proposal) and encoder_gradient == "plain":
        raise ValueError("iwae_surrogate_at with a FlowPosterior needs log_q, log q(z_k|x) from "
                         "the same pass that drew z: z, log_q = "
                         "proposal.rsample_with_log_prob((K,)).")
    if encoder_gradient == "plain":
        log_w = log_joint - (proposal.log_prob(z) if log_q is None else log_q)  # (K, N)
        return log_mean_exp(log_w, dim=0)  # autograd: Σ_k w̃_k ∇ log w_k
    # DReG: log q with its parameters held fixed, so φ reaches log w_k only through z_k ...
    if _is_flow(proposal):  # the maps inverted with their weights, μ, logvar and context held
        log_q_held = proposal.log_prob(z, hold_parameters=True)
    else:
        log_q_held = DiagonalGaussian(proposal.mean.detach(), proposal.logvar.detach(),
                                      validate_args=False).log_prob(z)
    log_w = log_joint - log_q_held  # (K, N), the same values as plain
    weights = self_normalized_weights(log_w.detach(), dim=0, validate=False)  # w̃_k, (K, N)
    if z.requires_grad:  # ... and the gradient reaching z_k is scaled once more by w̃_k: w̃_k²
        z.register_hook(lambda grad: grad * weights.unsqueeze(-1))
    bound = log_mean_exp(log_w.detach(), dim=0)  # (N,), the value
    weighted = (weights * log_w).sum(dim=0)  # gradient Σ_k w̃_k ∇ log w_k (θ), then × w̃_k (φ)
    return bound + (weighted - weighted.detach())


def iwae_bound_1d(
    log_joint: Callable[[torch.Tensor], torch.Tensor],
    mean: torch.Tensor,
    logvar: torch.Tensor,
    num_samples: int,
    eps_points: int = 801,
    eps_max: float = 12.0,
    log_t_range: tuple[float, float] = (-40.0, 80.0),
    log_t_points: int = 1201,
) -> torch.Tensor:
    """The exact ``IWAE_K = E[log (1/K) Σ_k w_k]`` for a one-dimensional latent, by quadrature.

    For a positive random variable A, ``log A = ∫_0^∞ (e^{-t} - e^{-tA}) dt / t`` (Frullani's
    integral). With ``A = (1/K) Σ_k w_k / c`` (c a constant) and independent ``z_k ~ q``,
    ``E[e^{-tA}] = L(t/K)^K`` where ``L(s) = E_q[exp(-s w(z) / c)]``, so

        IWAE_K = log c + ∫_{-∞}^{∞} (exp(-e^u) - L(e^u / K)^K) du          (t = e^u),

    a K-fold integral reduced to two one-dimensional ones for every K. ``L`` is computed on the
    grid ``z = μ + σ ε`` (trapezoid rule in ε, weighted by the standard normal density), so the
    result is differentiable in ``mean``, ``logvar`` and whatever parameters ``log_joint`` uses:
    its autograd gradient is ``∇ IWAE_K``, the exact expectation of the gradient estimators.

    **Precision.** Everything is computed in float64, whatever the dtype of ``mean`` and
    ``logvar``: ``L(t/K)^K`` raises a rounding error of ``log L`` to the K-th power, so in float32
    a standard-normal model whose exact answer is 0 came out at -0.0018 for K = 10⁴ and -6.0 for
    K = 10⁹ (float64: within 1e-6). ``log_joint`` receives z in the dtype of ``mean`` (a float32
    network works as it is); the result is returned in that dtype too.

    Args:
        log_joint: ``z (M,) -> log p(x, z) (M,)`` for the data point x, finite on the grid.
        mean, logvar: finite scalar tensors, q(z|x) = N(mean, exp(logvar)).
        num_samples: K >= 1.
        eps_points, eps_max: the ε grid (q's standard units) for the expectations under q:
            ``eps_points >= 2`` points over ``[-eps_max, eps_max]``.
        log_t_range, log_t_points: the grid of u = log t (``log_t_points >= 2``).

    Returns:
        A scalar tensor. Raises ``ValueError`` for bad input (named), and when the integrand has
        not died out at the ends of the grids (widen them).
    """
    num_samples = check_num_samples(num_samples)
    mean, logvar = torch.as_tensor(mean), torch.as_tensor(logvar)
    if mean.numel() != 1 or logvar.numel() != 1:
        raise ValueError(f"mean and logvar must be scalars (a one-dimensional latent), got shapes "
                         f"{tuple(mean.shape)} and {tuple(logvar.shape)}.")
    _check_grid(eps_points, eps_max, log_t_range, log_t_points)
    dtype = mean.dtype if mean.is_floating_point() else torch.get_default_dtype()  # the caller's
    if mean.device.type == "mps":
        raise ValueError("iwae_bound_1d computes in float64, which Apple's MPS does not have: pass "
                         "mean and logvar (and compute log_joint) on the CPU.")
    mean = mean.reshape(()).to(torch.float64)
    logvar = logvar.reshape(()).to(device=mean.device, dtype=torch.float64)
    if not (math.isfinite(mean.item()) and math.isfinite(logvar.item())):
        raise ValueError(f"mean and logvar must be finite numbers, got mean={mean.item()} and "
                         f"logvar={logvar.item()} (a diverged encoder?).")
    eps = torch.linspace(-eps_max, eps_max, eps_points, dtype=torch.float64, device=mean.device)
    step = eps[1] - eps[0]
    trapezoid = torch.full_like(eps, math.log(step))  # log of the trapezoid weights
    trapezoid[[0, -1]] -= math.log(2)
    log_density = -0.5 * (eps.square() + LOG_2PI) + trapezoid  # log [N(ε; 0, 1) dε], (M,)
    log_density = log_density - torch.logsumexp(log_density, dim=0)  # sum exactly 1: L(0)^K = 1
    z = (mean + torch.exp(0.5 * logvar) * eps).to(dtype)  # (M,), in the caller's dtype
    log_q = -0.5 * (LOG_2PI + logvar + eps.square())  # log q(z) at z = μ + σ ε
    log_p = log_joint(z)  # log p(x, z), (M,)
    if not isinstance(log_p, torch.Tensor) or log_p.shape != z.shape:
        raise ValueError(f"log_joint must map z of shape {tuple(z.shape)} to log p(x, z) of the "
                         f"same shape, got {getattr(log_p, 'shape', type(log_p).__name__)}.")
    log_w = _check_log_joint(log_p, z).to(torch.float64) - log_q  # (M,)
    log_c = torch.logsumexp(log_density + log_w, dim=0).detach()  # ≈ log E_q[w] = log p(x)
    w = torch.exp(log_w - log_c)  # w / c, mean 1 under q (on the grid), (M,)
    u = torch.linspace(*log_t_range, log_t_points, dtype=torch.float64, device=mean.device)
    s = torch.exp(u) / num_samples  # (T,)
    log_laplace = torch.logsumexp(log_density - s[:, None] * w, dim=1)  # log L(t/K), (T,)
    integrand = torch.exp(-torch.exp(u)) - torch.exp(num_samples * log_laplace)  # (T,)
    if not bool(torch.isfinite(integrand).all()):
        raise ValueError("the integrand is not finite: log p(x, z) - log q(z) overflows on the ε "
                         "grid (q far narrower than the posterior?); reduce eps_max.")
    ends = integrand.detach()[[0, -1]].abs().max().item()
    if not ends < 1e-10 or not (log_density.exp() * w).detach()[[0, -1]].max().item() < 1e-12:
        raise ValueError("the integrand does not vanish at the ends of the grid: widen eps_max or "
                         "log_t_range (q or the posterior may be very wide or narrow).")
    return (log_c + torch.trapezoid(integrand, u)).to(dtype)


def _check_grid(eps_points: object, eps_max: object, log_t_range: object,
                log_t_points: object) -> None:
    """The quadrature grids of :func:`iwae_bound_1d`: at least 2 points over a finite interval."""
    check_positive_int("eps_points", eps_points, minimum=2)  # grid sizes
    check_positive_int("log_t_points", log_t_points, minimum=2)
    if not (isinstance(eps_max, (int, float)) and math.isfinite(eps_max) and eps_max > 0):
        raise ValueError(f"eps_max must be a finite number > 0 (q's standard deviations each side "
                         f"of its mean), got {eps_max!r}.")
    try:
        lo, hi = (float(v) for v in log_t_range)
    except (TypeError, ValueError):
        raise ValueError(f"log_t_range must be two numbers (low, high), got "
                         f"{log_t_range!r}.") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"log_t_range must be two finite numbers with low < high, got "
                         f"{log_t_range!r}.")


def _check_log_joint(log_p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """log p(x, z) on the grid must be finite: NaN or +inf is a broken model, and -inf (a density
    of 0 where q has mass) makes IWAE_K = -inf for every K, which the quadrature cannot return."""
    bad = ~torch.isfinite(log_p)
    if bool(bad.any()):
        where = z[bad.nonzero()[0, 0]].item()
        raise ValueError(f"log_joint returned NaN or ±inf at {int(bad.sum())} of {len(z)} points "
                         f"of the grid (e.g. z = {where:.4g}): check the model (NaN weights, a log "
                         "of 0 or of a negative number). IWAE_K needs log p(x, z) finite wherever "
                         "q(z|x) has mass (where p(x, z) = 0 on q's mass, IWAE_K = -inf for every "
                         "K).")
    return log_p
