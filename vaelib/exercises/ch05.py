"""Self-checks for chapter 05 (the ELBO's gap is a KL divergence). See
:mod:`vaelib.exercises._core`.

- :func:`check_kl_normal_1d`: ``KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²))`` written from the formula, then
  used to close ``log p(x) = ELBO(q) + KL(q ‖ p(z|x))`` on a 1-D linear-Gaussian model;
- :func:`check_optimal_q_variance`: the variance of the ELBO-optimal q for ``z ~ N(0, 1)``,
  ``x | z ~ N(w z + b, s² I_D)``;
- :func:`check_mean_field_gap`: the gap left by the best diagonal q when the posterior is a 2-D
  Gaussian with correlation ρ.

The reference values come from independent code (``torch.distributions``, the exact posterior of
:class:`vaelib.toy.LinearGaussian`, a log-determinant), on several random cases with fixed seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .. import kl as library_kl
from ..toy import LinearGaussian
from ._core import (LOW_PRECISION_RTOL, ExerciseFailed, NotAttempted, as_float64, close, diagnose,
                    forbidden_calls, low_precision, run_check)

__all__ = ["check_kl_normal_1d", "check_optimal_q_variance", "check_mean_field_gap"]

F64 = torch.float64
LOG_2PI = math.log(2 * math.pi)


def _call(fn: Callable[..., Any], *args: Any) -> torch.Tensor:
    """Call the student's function: a stub (``...`` body, returns None) is "not attempted", a crash
    becomes a hint, and NotImplementedError passes through to :func:`run_check`."""
    try:
        value = fn(*args)
    except (NotImplementedError, ExerciseFailed):
        raise
    except Exception as err:  # noqa: BLE001 - any crash of the student's code becomes a hint
        raise ExerciseFailed(f"your function raised {type(err).__name__}: {err}") from err
    if value is None or value is Ellipsis:
        raise NotAttempted
    return as_float64(value)


# -- KL between two 1-D Gaussians -------------------------------------------------------------


def _kl_1d(
    mean_q: torch.Tensor, var_q: torch.Tensor, mean_p: torch.Tensor, var_p: torch.Tensor
) -> torch.Tensor:
    """The reference, from torch.distributions (independent of the chapter's formula)."""
    q = torch.distributions.Normal(mean_q, var_q.sqrt())
    p = torch.distributions.Normal(mean_p, var_p.sqrt())
    return torch.distributions.kl_divergence(q, p)


def _kl_1d_formula(mean_q, var_q, mean_p, var_p, *, log_sign=-1.0, minus_one=True, div_by=None):
    """The closed form with one part changed: the typical slips, to recognise them."""
    ratio = var_q / var_p
    div = var_p if div_by is None else div_by
    return 0.5 * (ratio + (mean_q - mean_p).square() / div - (1.0 if minus_one else 0.0)
                  + log_sign * torch.log(ratio))


def _kl_cases() -> list[tuple[torch.Tensor, ...]]:
    generator = torch.Generator().manual_seed(501)
    cases = []
    for n in (7, 12):
        mean_q = 2 * torch.randn(n, generator=generator, dtype=F64)
        mean_p = 2 * torch.randn(n, generator=generator, dtype=F64)
        var_q = torch.exp(1.5 * torch.randn(n, generator=generator, dtype=F64))
        var_p = torch.exp(1.5 * torch.randn(n, generator=generator, dtype=F64))
        cases.append((mean_q, var_q, mean_p, var_p))
    return cases


def _closed_form_elbo_1d(
    model: LinearGaussian, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor
) -> torch.Tensor:
    """ELBO of q = N(mean, var) for a d = 1 linear-Gaussian model, in closed form (chapter 5)."""
    s2 = model.noise_std**2
    residual = x - model.decode(mean[:, None])  # x - b - w m, (N, D)
    expected_sq = residual.square().sum(-1) + var * model.W.square().sum()  # E_q ‖x - b - w z‖²
    expected_log_lik = -0.5 * model.data_dim * math.log(2 * math.pi * s2) - expected_sq / (2 * s2)
    kl_prior = 0.5 * (var + mean.square() - 1 - torch.log(var))
    return expected_log_lik - kl_prior


def _identity_residual(fn: Callable[..., Any]) -> tuple[float, float]:
    """max |log p(x) - ELBO(q) - KL_student(q ‖ p(z|x))| over 100 random q on a 1-D linear model,
    and the tolerance it is held to: 1e-9, or float32's relative precision times the largest
    |log p(x)| when the student's KL is float32 (its rounding error is of that order)."""
    generator = torch.Generator().manual_seed(502)
    model = LinearGaussian(torch.tensor([[1.5], [-0.8], [0.4]], dtype=F64),
                           torch.tensor([0.2, 0.0, -0.5], dtype=F64), 0.8)
    x, _ = model.sample(100, generator=generator)
    post_mean, post_cov = model.posterior_parameters(x)  # (N, 1), (1, 1)
    mean = post_mean[:, 0] + torch.randn(100, generator=generator, dtype=F64)
    var = torch.exp(torch.randn(100, generator=generator, dtype=F64))
    gap = model.log_marginal(x) - _closed_form_elbo_1d(model, x, mean, var)
    kl = _call(fn, mean, var, post_mean[:, 0], post_cov[0, 0].expand(100).clone()).reshape(-1)
    tolerance = 1e-9
    if low_precision() is not None:
        scale = max(model.log_marginal(x).abs().max().item(), gap.abs().max().item(), 1.0)
        tolerance = LOW_PRECISION_RTOL * scale
    return (gap - kl).abs().max().item(), tolerance


_LIBRARY_KLS = [(torch.distributions, "kl_divergence"),
                (torch.distributions.kl, "_kl_normal_normal"),
                (library_kl, "gaussian_kl_between"), (library_kl, "gaussian_kl")]


def check_kl_normal_1d(fn: Callable[..., Any]) -> bool:
    """Check ``fn(mean_q, var_q, mean_p, var_p) -> (N,)`` = ``KL(N(mean_q, var_q) ‖ N(mean_p,
    var_p))``.

    The arguments are tensors of shape ``(N,)``; ``var_q`` and ``var_p`` are variances σ².
    """

    def body(fn: Callable[..., Any]) -> str:
        for mean_q, var_q, mean_p, var_p in _kl_cases():
            args = (mean_q.clone(), var_q.clone(), mean_p.clone(), var_p.clone())
            want = _kl_1d(mean_q, var_q, mean_p, var_p)
            with forbidden_calls(others=_LIBRARY_KLS) as used:
                got = _call(fn, *args)
            if used:
                raise ExerciseFailed(f"your function calls {used[0]}, a library KL: the exercise "
                                     "asks for the closed form written from the formula.")
            if got.shape != want.shape:
                raise ExerciseFailed(f"expected shape (N,) = {tuple(want.shape)} (one KL per "
                                     f"entry, computed elementwise), got {tuple(got.shape)}.")
            if close(got, want, rtol=1e-8, atol=1e-10, nonfinite_hint=(
                    "your KL contains NaN or infinity: var_q and var_p are variances (> 0), so log "
                    "them directly; check for a division by var_q where the formula divides by "
                    "var_p.")):
                continue
            extra = [
                (
                    _kl_1d(mean_p, var_p, mean_q, var_q),
                    "you computed KL(p ‖ q): the arguments are in the order (q, p), and the ELBO's "
                    "gap is KL(q ‖ p), an expectation under q. Swap the roles of q and p.",
                ),
                (
                    _kl_1d(mean_q, var_q.square(), mean_p, var_p.square()),
                    "you squared the variances: var_q and var_p already are σ², not standard "
                    "deviations.",
                ),
                (
                    _kl_1d(mean_q, var_q.sqrt(), mean_p, var_p.sqrt()),
                    "you used σ where the formula needs σ² (var_q and var_p are variances).",
                ),
                (
                    _kl_1d_formula(mean_q, var_q, mean_p, var_p, log_sign=1.0),
                    "the log term has the wrong sign: it is - log(σ_q² / σ_p²).",
                ),
                (
                    _kl_1d_formula(mean_q, var_q, mean_p, var_p, minus_one=False),
                    "the -1 is missing (check: KL(q ‖ q) must be exactly 0).",
                ),
                (
                    _kl_1d_formula(mean_q, var_q, mean_p, var_p, div_by=var_q),
                    "(μ_q - μ_p)² is divided by σ_p², the variance of the second distribution, not "
                    "σ_q².",
                ),
                (
                    _kl_1d_formula(mean_q, var_q, mean_p, var_p, div_by=torch.ones_like(var_p)),
                    "(μ_q - μ_p)² must be divided by σ_p².",
                ),
            ]
            raise ExerciseFailed(diagnose(got, want, extra))
        residual, tolerance = _identity_residual(fn)
        if not residual < tolerance:
            precision = ""
            if low_precision() is not None:
                precision = (f" (your KL is {str(low_precision()).replace('torch.', '')}, so it "
                             f"was compared at that precision, tolerance {tolerance:.2g}: this is "
                             "not rounding.)")
            raise ExerciseFailed("your KL matches on the test cases but log p(x) - ELBO(q) - KL "
                                 f"differs by {residual:.3g} on the linear-Gaussian model: does it "
                                 f"broadcast over tensors of shape (N,)?{precision}")
        return (f"With it, log p(x) = ELBO(q) + KL(q ‖ p(z|x)) closes to {residual:.1e} "
                "on 100 random q (1-D linear-Gaussian model).")

    return run_check("KL between two 1-D Gaussians", fn, body)


# -- the ELBO-optimal variance ------------------------------------------------------------------


def _variance_cases() -> list[tuple[torch.Tensor, float]]:
    generator = torch.Generator().manual_seed(503)
    cases = [(torch.tensor([2.0], dtype=F64), 0.8)]  # D = 1; s = 0.8: s, s², 2s² all differ
    for D, s in [(2, 0.7), (5, 1.3), (3, 0.3)]:
        cases.append((torch.randn(D, generator=generator, dtype=F64), s))
    return cases


def check_optimal_q_variance(fn: Callable[..., Any]) -> bool:
    """Check ``fn(w, noise_std) -> v*``: the variance of the ELBO-maximizing q(z|x) = N(m, v) for
    ``z ~ N(0, 1)``, ``x | z ~ N(w z + b, s² I_D)`` (``w`` of shape ``(D,)``, ``noise_std`` = s)."""

    def body(fn: Callable[..., Any]) -> str:
        for w, s in _variance_cases():
            D = w.shape[0]
            # Independent reference: the exact posterior covariance of the model (Bayes' rule).
            model = LinearGaussian(w[:, None], None, s)
            want = model.posterior_parameters(torch.zeros(1, D, dtype=F64))[1].reshape(())
            with forbidden_calls(others=[(LinearGaussian, "posterior_parameters"),
                                         (LinearGaussian, "posterior")]) as used:
                got = _call(fn, w.clone(), s)
            if used:
                raise ExerciseFailed(f"your function calls {used[0]}, the library's exact "
                                     "posterior: the exercise asks you to maximize the ELBO in v "
                                     "by hand.")
            if got.numel() != 1:
                raise ExerciseFailed(f"return one number (got shape {tuple(got.shape)}): the "
                                     "variance depends on w only through ‖w‖² = Σ_i w_i².")
            got = got.reshape(())
            if close(got, want, rtol=1e-8, atol=1e-12, nonfinite_hint=(
                    "your variance is NaN or infinite, but the optimal variance is a finite "
                    "positive number for every w and s > 0: look for a division by 0 or a log or "
                    "square root of a negative number.")):
                continue
            sq = w.square().sum()
            extra = [
                (
                    want.sqrt(),
                    "you returned the standard deviation; the question asks for the variance v.",
                ),
                (1 / want, "that is the precision 1/v = 1 + ‖w‖²/s²: invert it."),
                (
                    1 / (1 + sq / s),
                    "you used s where the formula needs s² (noise_std is a standard deviation).",
                ),
                (
                    s**2 / sq,
                    "the prior's term is missing: the precision is 1 (from the prior N(0, "
                    "1)) + ‖w‖²/s² (from the likelihood).",
                ),
                (1 / (1 + w.sum().square() / s**2), "use ‖w‖² = Σ_i w_i², not (Σ_i w_i)²."),
                (1 / (1 + sq * s**2), "the likelihood's precision is ‖w‖²/s², not ‖w‖² s²."),
                (
                    1 / (1 + sq / (2 * s**2)),
                    "you divided ‖w‖² by 2s²: the ½ of the Gaussian's "
                    "exponent cancels against the 2 from differentiating v (there is no factor 2).",
                ),
            ]
            raise ExerciseFailed(f"(D = {D}, s = {s}) " + diagnose(got, want, extra))
        return "v* = 1 / (1 + ‖w‖²/s²): the exact posterior variance, whatever x is."

    return run_check("optimal variance of q", fn, body)


# -- the mean-field gap -------------------------------------------------------------------------

RHOS = (-0.95, -0.6, -0.2, 0.0, 0.35, 0.7, 0.9)


def _mean_field_gap_reference(rho: float) -> float:
    """½ (Σ_j log Λ_jj - log det Λ) for the precision Λ of a 2-D Gaussian with unit variances."""
    cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=F64)
    precision = torch.linalg.inv(cov)
    return 0.5 * (precision.diagonal().log().sum() - torch.logdet(precision)).item()


def check_mean_field_gap(fn: Callable[..., Any]) -> bool:
    """Check ``fn(rho) -> gap``: ``min over diagonal q`` of ``KL(q ‖ N(μ, Σ))`` for a 2-D Gaussian
    posterior with correlation ``rho`` (a Python float in (-1, 1))."""

    def body(fn: Callable[..., Any]) -> str:
        got_values = []
        for rho in RHOS:
            got = _call(fn, rho)
            if got.numel() != 1:
                raise ExerciseFailed(f"return one number for one ρ, got shape {tuple(got.shape)}.")
            got_values.append(got.reshape(()))
        got = torch.stack(got_values)
        want = torch.tensor([_mean_field_gap_reference(r) for r in RHOS], dtype=F64)
        if close(got, want, rtol=1e-5, atol=1e-7):  # float32 answers pass too
            return "-½ log(1 - ρ²): zero only for ρ = 0, unbounded as |ρ| → 1."
        rho = torch.tensor(RHOS, dtype=F64)
        extra = [
            (-0.5 * torch.log1p(-rho), "use ρ², not ρ: the gap is the same for ρ and -ρ."),
            (-0.5 * torch.log1p(-rho.abs()), "use ρ², not |ρ|."),
            (
                0.5 * rho.square(),
                "ρ²/2 is only the small-ρ approximation of the exact gap -½ log(1 - ρ²).",
            ),
            (-0.5 * torch.log1p(rho.square()), "the argument of the log is 1 - ρ², not 1 + ρ²."),
            (
                torch.log1p(-rho.square()),
                "two slips: the sign (a KL is ≥ 0, and log(1 - ρ²) ≤ 0) "
                "and a factor 2 (the gap is -½ log(1 - ρ²)).",
            ),
        ]
        raise ExerciseFailed(
            diagnose(got, want, extra) + " (tested for ρ in " + ", ".join(map(str, RHOS)) + ")"
        )

    return run_check("mean-field gap", fn, body)
