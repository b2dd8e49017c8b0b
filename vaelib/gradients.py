"""Two Monte Carlo estimators of the gradient of an expectation under a diagonal Gaussian (ch. 7).

For ``q_φ = N(μ, diag σ²)`` with parameters ``φ = (μ, log σ²)`` and a function ``f`` of ``z``, we
want ``∇_φ E_q[f(z)]``. The gradient cannot be moved inside the expectation as it stands, because
the *distribution* depends on φ. Two rewritings make it an expectation again:

**Score function (REINFORCE, log-derivative trick).** ``∇_φ q = q ∇_φ log q``, so

    ∇_φ E_q[f(z)] = ∫ f(z) ∇_φ q_φ(z) dz = E_q[ f(z) ∇_φ log q_φ(z) ],

and, since ``E_q[∇_φ log q_φ(z)] = 0``, any baseline ``b`` not depending on ``z`` may be subtracted:
``E_q[(f(z) - b) ∇_φ log q_φ(z)]``. For the diagonal Gaussian, with ``eps = (z - μ) / σ``,

    ∇_μ log q = (z - μ) / σ² = eps / σ,   ∇_{log σ²} log q = ½ ((z - μ)²/σ² - 1) = ½ (eps² - 1).

It needs only the values of ``f`` (no derivative), but its variance is usually large.

**Pathwise (reparameterization).** ``z = μ + σ ⊙ eps`` with ``eps ~ N(0, I)`` whose law does not
depend on φ, so the gradient moves inside the expectation over ``eps``:

    ∇_μ E_q[f(z)] = E[∇_z f(z)],      ∇_{log σ²} E_q[f(z)] = E[∇_z f(z) ⊙ ½ σ ⊙ eps]

(``∂z/∂ log σ² = ½ σ eps`` because ``σ = exp(½ log σ²)``). It needs ``∇_z f`` and usually has a far
smaller variance.

Both functions return **per-sample** estimates, one per draw ``z_k``: shape ``(K, ..., d)`` for
``μ`` and for ``log σ²``. Their mean over ``K`` is the usual K-sample estimate; their spread is what
the chapter compares. ``GradientSamples.mean()`` and ``.std_error()`` summarize them.

Shapes: ``mean``/``logvar`` are ``(..., d)`` (``...`` any batch shape, e.g. several parameter
settings at once); ``f`` maps ``z`` of shape ``(K, ..., d)`` to values ``(K, ...)`` and must act on
each ``z[k, ...]`` row separately (the usual case: a sum over the last dim).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from .checks import check_num_samples, check_tensor
from .gaussian import DiagonalGaussian

__all__ = ["GradientSamples", "score_function_gradient", "pathwise_gradient"]

ScalarFunction = Callable[[torch.Tensor], torch.Tensor]


class GradientSamples(NamedTuple):
    """Per-sample gradient estimates of ``E_q[f(z)]`` (unpacks as ``grad_mean, grad_logvar``).

    Attributes:
        grad_mean: ``(K, ..., d)`` estimates of ``∇_μ E_q[f(z)]``, one per sample ``z_k``.
        grad_logvar: ``(K, ..., d)`` estimates of ``∇_{log σ²} E_q[f(z)]``.
    """

    grad_mean: torch.Tensor
    grad_logvar: torch.Tensor

    def mean(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The K-sample estimates ``(1/K) Σ_k``: two tensors of shape ``(..., d)``."""
        return self.grad_mean.mean(dim=0), self.grad_logvar.mean(dim=0)

    def std_error(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Standard errors of :meth:`mean`: sample std (Bessel-corrected) / sqrt(K), ``(..., d)``.

        Exact for independent per-sample estimates (no baseline, a constant baseline, or the
        pathwise estimator); approximate for the leave-one-out baseline, whose estimates are
        slightly correlated. Needs K >= 2.
        """
        num_samples = self.grad_mean.shape[0]
        if num_samples < 2:
            raise ValueError("a standard error needs at least 2 samples; use num_samples >= 2.")
        scale = num_samples**-0.5
        return self.grad_mean.std(dim=0) * scale, self.grad_logvar.std(dim=0) * scale


def _prepare(
    f: object, mean: torch.Tensor, logvar: torch.Tensor, num_samples: object
) -> DiagonalGaussian:
    """Validate the arguments shared by both estimators; return q with detached parameters."""
    if not callable(f):
        raise TypeError(
            f"f must be a function of z, got {type(f).__name__}; pass e.g. "
            "f=lambda z: z.square().sum(dim=-1)."
        )
    check_num_samples(num_samples)
    check_tensor("mean", mean, min_dim=1)
    check_tensor("logvar", logvar, min_dim=1)
    # The estimators *return* gradients: they never backpropagate into the caller's graph.
    return DiagonalGaussian(mean.detach(), logvar.detach())


def _check_values(values: object, z: torch.Tensor) -> torch.Tensor:
    """``f(z)`` must be a finite floating tensor of shape ``z.shape[:-1]`` = ``(K, ...)``."""
    if not isinstance(values, torch.Tensor) or not values.is_floating_point():
        raise TypeError(
            f"f(z) must return a floating-point torch.Tensor, got {type(values).__name__}; "
            "write f with torch operations (e.g. torch.exp, not math.exp)."
        )
    if values.shape != z.shape[:-1]:
        raise ValueError(
            f"f(z) must return one value per sample, shape {tuple(z.shape[:-1])} for z of shape "
            f"{tuple(z.shape)}, got {tuple(values.shape)}; reduce over the last dim, e.g. "
            "z.square().sum(dim=-1)."
        )
    if not bool(torch.isfinite(values).all()):
        raise ValueError("f(z) returned NaN or infinite values; check f on the samples of q.")
    return values


def _draw(q: DiagonalGaussian, num_samples: int, generator: torch.Generator | None):
    """``eps ~ N(0, I)`` and ``z = μ + σ ⊙ eps``, both ``(K, ..., d)``: ``q.rsample((K,))``'s
    draw (the same numbers for the same generator), keeping the noise the estimators need."""
    eps = q.standard_noise((num_samples,), generator)
    return eps, q.reparameterize(eps)


def score_function_gradient(
    f: ScalarFunction,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    num_samples: int,
    generator: torch.Generator | None = None,
    baseline: float | torch.Tensor | str | None = None,
) -> GradientSamples:
    """Score-function (REINFORCE) estimates of ``∇_{μ, log σ²} E_q[f(z)]``, ``q = N(μ, diag σ²)``.

    Per sample ``z_k = μ + σ ⊙ eps_k``:

        ĝ_μ,k      = (f(z_k) - b_k) · eps_k / σ            [ = (f - b) ∇_μ log q(z_k) ]
        ĝ_logvar,k = (f(z_k) - b_k) · ½ (eps_k² - 1)       [ = (f - b) ∇_{log σ²} log q(z_k) ]

    Each is unbiased for any baseline ``b_k`` independent of ``z_k``, because
    ``E_q[∇_φ log q(z)] = 0``. ``f`` is only evaluated (under ``torch.no_grad``): it need not be
    differentiable, or even continuous. Derived in chapter 7.

    Args:
        f: maps ``z`` ``(K, ..., d)`` to values ``(K, ...)``, row by row.
        mean: ``(..., d)`` means μ (detached: the result is a gradient, not part of a graph).
        logvar: ``(..., d)`` log-variances log σ².
        num_samples: K >= 1 draws per batch entry.
        generator: optional ``torch.Generator``; the draws are those of
            ``DiagonalGaussian(mean, logvar).rsample((K,), generator)``.
        baseline: ``None`` (b = 0); a number or a tensor broadcastable to the batch shape ``(...)``
            (a control variate that must not depend on the samples); or ``"leave_one_out"``:
            ``b_k = mean of f(z_j) over j ≠ k`` (needs K >= 2; still unbiased, since it is
            independent of ``z_k``).

    Returns:
        ``GradientSamples(grad_mean, grad_logvar)``, each ``(K, ..., d)``.
    """
    q = _prepare(f, mean, logvar, num_samples)
    if isinstance(baseline, str) and baseline != "leave_one_out":
        raise ValueError(
            f"baseline must be None, a number, a tensor or 'leave_one_out', got {baseline!r}."
        )
    if baseline == "leave_one_out" and num_samples < 2:
        raise ValueError(
            "the leave-one-out baseline needs num_samples >= 2 (it averages the other samples)."
        )
    eps, z = _draw(q, num_samples, generator)
    with torch.no_grad():
        values = _check_values(f(z), z)  # (K, ...)
    if baseline is None:
        centred = values
    elif isinstance(baseline, str):  # leave one out: b_k = (Σ_j f_j - f_k) / (K - 1)
        centred = values - (values.sum(dim=0) - values) / (num_samples - 1)
    else:
        b = torch.as_tensor(baseline, dtype=values.dtype, device=values.device)
        if b.dim() > values.dim() - 1 or torch.broadcast_shapes(b.shape, values.shape[1:]) != \
                values.shape[1:]:
            raise ValueError(
                f"a tensor baseline must broadcast to the batch shape {tuple(values.shape[1:])} "
                f"(one number per batch entry, not per sample), got shape {tuple(b.shape)}."
            )
        centred = values - b
    weight = centred.unsqueeze(-1)  # (K, ..., 1)
    grad_mean = weight * eps / q.stddev  # (f - b) (z - μ) / σ²
    grad_logvar = weight * 0.5 * (eps.square() - 1.0)  # (f - b) ½ ((z - μ)²/σ² - 1)
    return GradientSamples(grad_mean, grad_logvar)


def pathwise_gradient(
    f: ScalarFunction,
    mean: torch.Tensor,
    logvar: torch.Tensor,
    num_samples: int,
    generator: torch.Generator | None = None,
) -> GradientSamples:
    """Pathwise (reparameterized) estimates of ``∇_{μ, log σ²} E_q[f(z)]``, ``q = N(μ, diag σ²)``.

    With ``z_k = μ + σ ⊙ eps_k``, ``eps_k ~ N(0, I)`` and the chain rule through ``z``:

        ĝ_μ,k      = ∇_z f(z_k)                      [ ∂z/∂μ = 1 ]
        ĝ_logvar,k = ∇_z f(z_k) ⊙ ½ σ ⊙ eps_k         [ ∂z/∂ log σ² = ½ σ eps ]

    Unbiased whenever ``f`` is differentiable and the expectations exist (derived in chapter 7).
    ``∇_z f`` is computed by autograd, so ``f`` must be written with differentiable torch ops.
    The mean of the per-sample estimates equals the autograd gradient of
    ``(1/K) Σ_k f(DiagonalGaussian(mean, logvar).rsample((K,), generator)[k])`` for the same
    generator.

    Args:
        f: maps ``z`` ``(K, ..., d)`` to values ``(K, ...)``, row by row, differentiably.
        mean: ``(..., d)`` means μ.
        logvar: ``(..., d)`` log-variances log σ².
        num_samples: K >= 1 draws per batch entry.
        generator: optional ``torch.Generator``.

    Returns:
        ``GradientSamples(grad_mean, grad_logvar)``, each ``(K, ..., d)``.
    """
    q = _prepare(f, mean, logvar, num_samples)
    eps, z = _draw(q, num_samples, generator)
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        values = _check_values(f(z), z)  # (K, ...)
        if not values.requires_grad:
            raise ValueError(
                "f(z) does not depend differentiably on z (it returned a tensor without gradient: "
                "a .detach(), .item(), NumPy or integer step inside f?); the pathwise estimator "
                "needs ∇_z f: write f with torch operations, or use score_function_gradient."
            )
        # rows are independent, so the gradient of the sum is each row's own ∇_z f(z_k)
        (grad_z,) = torch.autograd.grad(values.sum(), z, allow_unused=True)
    if grad_z is None:
        grad_z = torch.zeros_like(z)
    grad_z = grad_z.detach()
    return GradientSamples(grad_z, grad_z * 0.5 * q.stddev * eps)
