"""Self-checks for chapter 07 (the reparameterization trick). See :mod:`vaelib.exercises._core`.

- :func:`check_pathwise_sample`: ``z = μ + exp(½ log σ²) ⊙ eps``, differentiable in μ and log σ².
- :func:`check_score_mu`: the score ``∇_μ log q(z) = (z - μ) / σ²`` of a diagonal Gaussian.
- :func:`check_minibatch_elbo_estimate`: the doubly stochastic ELBO estimate
  ``(n/m) Σ_{i in batch} (1/V) Σ_v log w_iv``.
"""

from __future__ import annotations

from typing import Any

import torch

from ._core import ExerciseFailed, as_float64, close, diagnose, forbidden_calls, run_check
from ._core import require_callable as _callable
from ._core import returned_value as _result

__all__ = ["check_pathwise_sample", "check_score_mu", "check_minibatch_elbo_estimate"]

DT = torch.float64


def _case(seed: int, shape: tuple[int, ...] = (5, 3)) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(shape, generator=g, dtype=DT)
    logvar = torch.empty(shape, dtype=DT).uniform_(-2.0, 2.0, generator=g)  # σ from 0.37 to 2.7
    eps = torch.randn(shape, generator=g, dtype=DT)
    return mu, logvar, eps


def check_pathwise_sample(pathwise_sample: Any) -> bool:
    """Check ``pathwise_sample(mu, logvar, eps) -> z = mu + exp(½ logvar) * eps`` (ch. 7).

    Also checks that z is differentiable in ``mu`` and ``logvar`` with the right gradients
    (∂z/∂μ = 1, ∂z/∂ log σ² = ½ σ eps): the reason the trick exists.
    """

    def body(fn: Any) -> str:
        _callable(fn, "pathwise_sample(mu, logvar, eps)")
        mu, logvar, eps = _case(0)
        mu_, logvar_ = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
        got = _result(fn(mu_, logvar_, eps.clone()))
        std = torch.exp(0.5 * logvar)
        want = mu + std * eps
        nonfinite = (
            "your z contains NaN or infinity: logvar = log σ² is negative wherever σ < 1, "
            "so no square root or log of it; the scale is σ = exp(½ logvar)."
        )
        if not close(got, want, rtol=1e-6, atol=1e-9, nonfinite_hint=nonfinite):
            again = as_float64(_result(fn(mu.clone(), logvar.clone(), eps.clone())))
            if not torch.equal(again, as_float64(got)):
                raise ExerciseFailed(
                    "your z changes from one call to the next with the same mu, "
                    "logvar and eps: you drew new noise (torch.randn...) instead "
                    "of using the eps you are given. z = μ + σ ⊙ eps with that "
                    "eps."
                )
            other = as_float64(_result(fn(mu.clone(), logvar.clone(), -2.0 * eps)))
            if torch.equal(other, as_float64(got)):
                raise ExerciseFailed("your z does not change when eps does: use the eps you are "
                                     "given, z = μ + σ ⊙ eps.")
            raise ExerciseFailed(
                diagnose(
                    got,
                    want,
                    extra=[
                        (
                            mu + logvar.exp() * eps,
                            "you scaled eps by the variance σ² = exp(logvar); the "
                            "scale is the standard deviation σ, the square root of the variance.",
                        ),
                        (
                            mu + logvar * eps,
                            "logvar is log σ², not σ: recover the standard deviation σ "
                            "from it first.",
                        ),
                        (
                            mu + eps / std,
                            "you divided eps by σ: the noise is scaled up by σ, not down.",
                        ),
                        (
                            mu + 2 * std * eps,
                            "you scaled eps by 2σ: the ½ in exp(½ logvar) belongs in the "
                            "exponent, and nothing multiplies σ.",
                        ),
                        (std * eps, "you forgot to add the mean μ."),
                        (
                            mu + torch.exp(2 * logvar) * eps,
                            "exp(2 logvar) is σ⁴: halve logvar inside the "
                            "exp "
                            "instead of doubling it.",
                        ),
                        (
                            mu - std * eps,
                            "-eps gives a valid sample too, but the convention (and this "
                            "check) is z = μ + σ ⊙ eps with the eps you are given.",
                        ),
                        (mu + eps, "you forgot to scale eps by σ = exp(½ logvar)."),
                    ],
                ),
                formula="z = μ + σ ⊙ eps with σ = exp(½ logvar).",
            )
        if not isinstance(got, torch.Tensor) or not got.requires_grad:
            raise ExerciseFailed(
                "the values are right, but z does not depend differentiably on mu and logvar "
                "(a .detach(), torch.no_grad(), NumPy or q.sample() inside?): without that path "
                "no gradient reaches the encoder."
            )
        grad_mu, grad_logvar = torch.autograd.grad(got.sum(), (mu_, logvar_), allow_unused=True)
        if grad_mu is None or not torch.allclose(grad_mu, torch.ones_like(mu)):
            raise ExerciseFailed("the values are right but ∂z/∂μ is not 1: add mu itself, "
                                 "not a detached copy.")
        if grad_logvar is None or not torch.allclose(grad_logvar, 0.5 * std * eps, rtol=1e-6,
                                                     atol=1e-9):
            raise ExerciseFailed(
                "the values are right but ∂z/∂logvar is not ½ σ eps: compute "
                "σ = exp(½ logvar) from logvar with torch operations "
                "(no .detach())."
            )
        return "z = μ + exp(½ log σ²) ⊙ ε, and gradients flow to μ and log σ²."

    return run_check("pathwise_sample", pathwise_sample, body)


def check_score_mu(score_mu: Any) -> bool:
    """Check ``score_mu(z, mu, logvar) -> ∇_μ log q(z) = (z - mu) / exp(logvar)``, (N, d)."""

    def body(fn: Any) -> str:
        _callable(fn, "score_mu(z, mu, logvar)")
        mu, logvar, eps = _case(1)
        z = mu + torch.exp(0.5 * logvar) * eps
        with forbidden_calls(others=[(torch.autograd, "grad"), (torch.autograd, "backward"),
                                     (torch.Tensor, "backward")],
                             c_names=["run_backward"]) as used:  # every autograd entry point
            got = _result(fn(z.clone(), mu.clone(), logvar.clone()))
        want = (z - mu) / logvar.exp()
        got_t = as_float64(got)
        nonfinite = (
            "your score contains NaN or infinity: logvar = log σ² can be negative, so no "
            "square root or log of it; σ² = exp(logvar)."
        )
        if got_t.shape == want.shape[:-1]:
            raise ExerciseFailed(
                f"expected shape {tuple(want.shape)}: ∇_μ log q has one entry per coordinate μ_j, "
                "so don't sum over the last dim."
            )
        if not close(got, want, rtol=1e-6, atol=1e-9, nonfinite_hint=nonfinite):
            std = torch.exp(0.5 * logvar)
            raise ExerciseFailed(
                diagnose(
                    got,
                    want,
                    extra=[
                        (
                            (mu - z) / logvar.exp(),
                            "wrong sign: differentiating -(z - μ)² with respect to μ "
                            "(not z) flips the sign once more.",
                        ),
                        (
                            (z - mu) / std,
                            "you divided by σ; the score divides by the variance σ² = exp(logvar).",
                        ),
                        ((z - mu) * logvar.exp(), "you multiplied by σ²; divide by it."),
                        (z - mu, "you forgot to divide by σ² = exp(logvar)."),
                        ((z - mu) / logvar, "logvar is log σ²; divide by σ² = exp(logvar)."),
                        (
                            0.5 * (z - mu) / logvar.exp(),
                            "a factor ½ too many: the ½ of -(z - μ)²/(2σ²) "
                            "cancels against the 2 from differentiating the square.",
                        ),
                    ],
                ),
                formula="∇_μ log q(z) = (z - μ) / σ², σ² = exp(logvar).",
            )
        if used:
            raise ExerciseFailed("the values are right, but your function calls autograd "
                                 f"({used[0]}): the exercise asks you to differentiate log q by "
                                 "hand and return the formula.")
        return "∇_μ log q(z) = (z - μ)/σ² = ε/σ."

    return run_check("score_mu", score_mu, body)


def _scalar(value: Any) -> torch.Tensor:
    got = as_float64(value)
    if got.numel() != 1:
        raise ExerciseFailed(
            f"return one number (an estimate of the whole data set's ELBO), got shape "
            f"{tuple(got.shape)}: sum over the minibatch after averaging over the V samples."
        )
    return got.reshape(())


def check_minibatch_elbo_estimate(minibatch_elbo_estimate: Any) -> bool:
    """Check ``minibatch_elbo_estimate(log_w, num_data) -> (n/m) Σ_i (1/V) Σ_v log_w[v, i]``.

    ``log_w`` has shape ``(V, m)`` (V samples for each of the m minibatch points); the answer is
    one number, an unbiased estimate of the full-data ELBO Σ_{i=1}^n ELBO_i.
    """

    def body(fn: Any) -> str:
        _callable(fn, "minibatch_elbo_estimate(log_w, num_data)")
        g = torch.Generator().manual_seed(2)
        # (V, m, n): the second case has a batch size m that does not divide n, and V < m and V > m
        # so that confusing the two axes changes the answer.
        for V, m, n in [(3, 8, 200), (2, 5, 53), (6, 4, 1001)]:
            log_w = -5.0 + torch.randn(V, m, generator=g, dtype=DT)
            log_w_ = log_w.clone().requires_grad_(True)
            got = _result(fn(log_w_, n))
            got_t = _scalar(got)
            want = (n / m) * log_w.mean(dim=0).sum()
            nonfinite = ("your estimate is NaN or infinite, though every log_w is finite: no log "
                         "or exp is needed here, only means, sums and the factor n/m.")
            if not close(got_t, want, rtol=1e-9, atol=1e-9, nonfinite_hint=nonfinite):
                raise ExerciseFailed(f"(V = {V}, m = {m}, n = {n}) " + diagnose(got_t, want, extra=[
                    ((n // m) * log_w.mean(dim=0).sum(), f"n // m is integer division ({n} // {m} "
                                                         "= "
                     f"{n // m}, not {n / m:.4g}): use n / m."),
                    ((n / V) * log_w.mean(dim=0).sum(), "you scaled by n / log_w.shape[0]: dim 0 "
                     "holds the V samples; the batch size m is log_w.shape[1] (the number of data "
                     "points, the x.shape[0] of the minibatch)."),
                    ((n / V) * log_w.mean(dim=1).sum(), "the axes are swapped: log_w has shape "
                     "(V, m), so average over dim 0 (the V samples) and scale by n / m with "
                     "m = log_w.shape[1]."),
                    (log_w.mean(dim=0).sum(), "you summed the minibatch but forgot to scale by n/m "
                     "(each point is in the batch with probability m/n)."),
                    (log_w.mean(), "that is the average ELBO per data point; multiply by n for the "
                     "whole data set's ELBO."),
                    ((m / n) * log_w.mean(dim=0).sum(), "the scale is n/m (data set size over "
                                                        "batch "
                     "size), not m/n."),
                    ((n / m) * log_w.sum(), "you summed over the V samples; average them (1/V)."),
                    (log_w.sum(), "you summed everything: the V samples of a point are averaged, "
                     "and the batch stands for the whole data set (a scale factor is missing)."),
                    (n * log_w.sum(), "the V samples of a point are averaged, not summed, and the "
                     "batch's share of the data set sets the scale (not n alone)."),
                    ((200 / 8) * log_w.mean(dim=0).sum(), "right on one case but not on another: "
                     "read V and m from log_w.shape and use num_data instead of fixed numbers."),
                ]), formula="(n/m) Σ_{i in batch} (1/V) Σ_v log w_iv.")
            if not isinstance(got, torch.Tensor):
                raise ExerciseFailed("the value is right, but you returned a Python number "
                                     "(.item(), float() or math inside?): return a tensor, so the "
                                     "gradient reaches the encoder and decoder.")
            if not got.requires_grad:
                raise ExerciseFailed("the value is right, but it has no gradient (a .detach() or "
                                     "torch.no_grad() inside?): the estimate is what training "
                                     "differentiates.")
            (grad,) = torch.autograd.grad(got.sum(), log_w_, allow_unused=True)
            if grad is None or not torch.allclose(grad, torch.full_like(log_w, n / (m * V))):
                raise ExerciseFailed("the value is right but its gradient is not n/(m V) for every "
                                     "log w: compute it from log_w with torch operations.")
        return "(n/m) Σ_batch (1/V) Σ_v log w is unbiased for the full-data ELBO."

    return run_check("minibatch_elbo_estimate", minibatch_elbo_estimate, body)
