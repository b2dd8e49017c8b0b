"""Self-checks for chapter 03 (importance sampling). See :mod:`vaelib.exercises._core` for the
verdicts.

- :func:`check_self_normalized_posterior_mean`: ``E[z|x] ≈ Σ_k w̄_k z_k`` with ``w̄ = softmax(log
w)``;
- :func:`check_best_proposal_variance`: the σ_q² that minimizes ``κ = E_q[w²]/p(x)²`` when the
  proposal's mean is off by Δ (the larger root of ``2v² - (3σ⋆² + 2Δ²) v + σ⋆⁴ = 0``);
- :func:`check_smallest_proposal_std`: ``E_q[w^k] < ∞`` iff ``σ_q > σ⋆ √((k-1)/k)`` (centred q).
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from typing import Any

import torch

from ..gaussian import DiagonalGaussian
from ..toy import LinearGaussian
from ._core import ExerciseFailed, as_float64, close, diagnose, run_check

__all__ = [
    "check_self_normalized_posterior_mean",
    "check_best_proposal_variance",
    "check_smallest_proposal_std",
]


# ---------------------------------------------------------------------------------------------
# Exercise 1: self-normalized importance sampling of the posterior mean
# ---------------------------------------------------------------------------------------------

def _posterior_mean_cases() -> list[
    tuple[str, LinearGaussian, torch.Tensor, DiagonalGaussian, int]
]:
    """(description, model, x (N, D), proposal q(z|x), K): an ordinary case and one whose
    log-weights are below -1000 (exp underflows to 0 there)."""
    g = torch.Generator().manual_seed(3)
    model = LinearGaussian.random(5, 2, noise_std=0.7, generator=g)
    x, _ = model.sample(4, generator=g)  # (4, 5)
    mean, cov = model.posterior_parameters(x)
    logvar = cov.diagonal().log().expand_as(mean)  # a diagonal q, a little off the posterior
    proposal = DiagonalGaussian(mean + 0.3, logvar + 0.4)
    far_model = LinearGaussian(model.W, model.b, 0.05)
    x_far = x + 1.5  # off the decoder's range: log p(x, z) < -1000 for every z near the posterior
    mean_far, cov_far = far_model.posterior_parameters(x_far)
    proposal_far = DiagonalGaussian(
        mean_far + 0.01, cov_far.diagonal().log().expand_as(mean_far) + 0.3
    )
    return [("an ordinary data set", model, x, proposal, 64),
            ("data points whose log-weights are below -1000", far_model, x_far, proposal_far, 64)]


def _posterior_mean_variants(
    model: Any, x: torch.Tensor, proposal: Any, num_samples: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, str]]]:
    """The reference estimate, its standard error, and typical wrong answers, all from the same
    random numbers."""
    with torch.no_grad():
        # (K, N, d)
        z = proposal.rsample(num_samples, generator=torch.Generator().manual_seed(seed))
        log_joint = model.log_joint(x, z)  # (K, N)
        log_q = proposal.log_prob(z)  # (K, N)
        log_w = log_joint - log_q

        def weighted(log_weights: torch.Tensor, dim: int = 0) -> torch.Tensor:
            return (torch.softmax(log_weights, dim=dim)[..., None] * z).sum(dim=0)

        reference = weighted(log_w)
        # Monte Carlo standard error of the self-normalized estimate: √(Σ_k w̄_k² (z_k - ẑ)²), (N,
        # d)
        w_bar = torch.softmax(log_w, dim=0)[..., None]
        std_err = (w_bar.square() * (z - reference).square()).sum(dim=0).sqrt()
        variants = [
            (
                z.mean(dim=0),
                "you averaged the samples without weights: that estimates the mean of "
                "q, not of p(z|x). Weight each z_k by w̄_k = w_k / Σ_j w_j.",
            ),
            (
                (log_w.exp()[..., None] * z).mean(dim=0),
                "you averaged w_k z_k over K: that estimates p(x)·E[z|x]. Divide by Σ_k w_k "
                "instead of K (self-normalize).",
            ),
            (
                weighted(log_joint),
                "your weights are p(x, z_k): divide by q(z_k|x), i.e. subtract "
                "proposal.log_prob(z) from the log-weights.",
            ),
            (
                weighted(log_joint + log_q),
                "you added log q(z_k|x): the weight divides by q, so subtract its log.",
            ),
            (
                weighted(model.log_likelihood(x, z) - log_q),
                "your weights are p(x|z_k)/q(z_k|x): the prior is missing, use model.log_joint(x, "
                "z).",
            ),
            (
                weighted(model.log_likelihood(x, z)),
                "your weights are p(x|z_k): use w_k = p(x, z_k) / q(z_k|x).",
            ),
            (
                weighted(log_w, dim=1),
                "you normalized the weights over the data points: normalize "
                "over the K samples, dim=0.",
            ),
        ]
        # The same random numbers, used with the wrong distribution or one sample short.
        eps = (z - proposal.mean) / proposal.stddev  # the standard-normal draws behind z, (K, N, d)
        short = proposal.rsample(num_samples - 1, generator=torch.Generator().manual_seed(seed))
        short_w = model.log_joint(x, short) - proposal.log_prob(short)
        variants += [
            ((torch.softmax(short_w, 0)[..., None] * short).sum(0),
             f"you used {num_samples - 1} samples, one fewer than num_samples = {num_samples} (an "
             "off-by-one in a range or a slice?): draw and weigh all K."),
            ((torch.softmax(model.log_likelihood(x, eps), 0)[..., None] * eps).sum(0),
             "you drew the z_k from the prior p(z) (model.sample_prior), with weights p(x|z_k): "
             "that is a valid estimator, but this exercise importance-samples from the proposal "
             "q(z|x): draw z with proposal.rsample."),
            ((torch.softmax(model.log_joint(x, eps) - proposal.log_prob(eps), 0)[..., None]
              * eps).sum(0),
             "your z_k are prior draws (model.sample_prior) but your weights divide by q(z_k|x): "
             "draw the z_k from the proposal, proposal.rsample."),
        ]
    return reference, std_err, variants


def check_self_normalized_posterior_mean(posterior_mean_estimate: Callable[..., Any]) -> bool:
    """Check ``posterior_mean_estimate(model, x, proposal, num_samples, generator) -> (N, d)``.

    The answer must equal ``Σ_k w̄_k z_k`` (``w̄ = softmax(log w)`` over the K samples) computed
    with the same random numbers, also when the log-weights are below -1000.
    """
    def body(fn: Callable[..., Any]) -> str:
        for i, (what, model, x, proposal, num_samples) in enumerate(_posterior_mean_cases()):
            seed = 11 + i
            answer = fn(model, x, proposal, num_samples, torch.Generator().manual_seed(seed))
            if answer is None or answer is Ellipsis:
                raise NotImplementedError
            reference, std_err, variants = _posterior_mean_variants(
                model, x, proposal, num_samples, seed
            )
            got = as_float64(answer)
            if got.shape != reference.shape:
                raise ExerciseFailed(
                    f"expected shape {tuple(reference.shape)} = (N, d), got {tuple(got.shape)}: "
                    "return one d-vector per data point, the weighted sum over the K samples "
                    "(dim=0).")
            if not torch.isfinite(got).all():
                raise ExerciseFailed(
                    f"on {what} your answer contains NaN or infinity: exp(log_w) underflows to 0 "
                    "and 0/0 = NaN. Normalize in log space: w̄ = torch.softmax(log_w, dim=0).")
            if close(got, reference, rtol=1e-8, atol=1e-10):
                continue
            for wrong, hint in variants:
                if torch.isfinite(wrong).all() and torch.allclose(got, wrong, rtol=1e-6, atol=1e-9):
                    raise ExerciseFailed(f"on {what}, {hint}")
            exact_mean, _ = model.posterior_parameters(x)
            if ((got - exact_mean).abs() < 6 * std_err + 1e-9).all():  # right in distribution
                raise ExerciseFailed(
                    f"on {what} your estimate is near E[z|x] but differs from the reference "
                    "computed with the same random numbers: draw all K samples from the proposal "
                    "in one call, proposal.rsample(num_samples, generator=generator), with the "
                    "generator you are given.")
            raise ExerciseFailed(f"on {what}, " + diagnose(got, reference))
        return "Self-normalized weights estimate posterior expectations without knowing p(x)."

    return run_check("self-normalized posterior mean", posterior_mean_estimate, body)


# ---------------------------------------------------------------------------------------------
# Exercise 2: the best proposal variance for a proposal whose mean is off by Δ
# ---------------------------------------------------------------------------------------------

def _best_variance(posterior_var: float, offset: float) -> tuple[float, float]:
    """Both roots of 2v² - (3σ⋆² + 2Δ²) v + σ⋆⁴ = 0 (d log κ / dv = 0): (larger, smaller)."""
    linear = 3 * posterior_var + 2 * offset**2
    root = math.sqrt(linear**2 - 8 * posterior_var**2)
    return (linear + root) / 4, (linear - root) / 4


def _fresh_random() -> random.Random:
    """A generator seeded from the operating system on every call: a case no table can list."""
    return random.Random(os.urandom(16))


def check_best_proposal_variance(best_proposal_variance: Callable[[float, float], Any]) -> bool:
    """Check ``best_proposal_variance(posterior_var, offset)``: the σ_q² minimizing
    ``κ = σ_q² / (σ⋆ √(2σ_q² - σ⋆²)) · exp(Δ² / (2σ_q² - σ⋆²))``, on fixed cases and one drawn at
    random on every call."""
    rng = _fresh_random()
    cases = [(0.3, 0.5), (2.0, -3.0), (1.0, 0.0), (0.05, 0.1),  # (σ⋆², Δ)
             (round(rng.uniform(0.1, 3.0), 6), round(rng.uniform(-3.0, 3.0), 6))]

    def body(fn: Callable[[float, float], Any]) -> str:
        for posterior_var, offset in cases:
            answer = fn(posterior_var, offset)
            if answer is None or answer is Ellipsis:
                raise NotImplementedError
            got = as_float64(answer)
            if got.numel() != 1:
                raise ExerciseFailed("expected one number (a variance), got shape "
                                     f"{tuple(got.shape)}.")
            got = got.reshape(())
            if not torch.isfinite(got):
                raise ExerciseFailed(
                    "your answer is NaN or infinite: check the square root of the "
                    "discriminant (3σ⋆² + 2Δ²)² - 8σ⋆⁴, which is never negative."
                )
            want, smaller = _best_variance(posterior_var, offset)
            if math.isclose(got.item(), want, rel_tol=1e-7):
                continue
            linear_delta = 3 * posterior_var + 2 * offset  # Δ instead of Δ²
            extras = [
                (
                    smaller,
                    "that is the smaller root of the quadratic. It lies below σ⋆²/2, where "
                    "2σ_q² - σ⋆² < 0 and κ is infinite: take the larger root.",
                ),
                (
                    posterior_var,
                    "σ_q² = σ⋆² is best only when the mean is exact (Δ = 0); with an "
                    "offset the minimum moves to a wider proposal. Differentiate log κ "
                    "in v.",
                ),
                (
                    math.sqrt(want),
                    "you returned a standard deviation: the question asks for the "
                    "variance v = σ_q².",
                ),
                (
                    posterior_var + offset**2,
                    "σ⋆² + Δ² is a reasonable guess but not the minimizer: "
                    "set d log κ / dv = 0 and solve the quadratic.",
                ),
                (
                    posterior_var**2 / (2 * posterior_var + 2 * offset**2),
                    "you dropped the ½ in front of log(2v - σ⋆²): √(2v - σ⋆²) in the denominator "
                    "of κ gives -½ log(2v - σ⋆²).",
                ),
            ]
            if linear_delta**2 - 8 * posterior_var**2 >= 0:
                extras.append(
                    (
                        (linear_delta + math.sqrt(linear_delta**2 - 8 * posterior_var**2)) / 4,
                        "the offset enters κ squared, (μ_q - μ⋆)²: use Δ², not Δ.",
                    )
                )
            hint = diagnose(got, torch.tensor(want, dtype=torch.float64), extras)
            raise ExerciseFailed(f"for σ⋆² = {posterior_var}, Δ = {offset}: {hint}")
        return "When the mean is off, the best proposal is wider than the posterior."

    return run_check("best proposal variance", best_proposal_variance, body)


# ---------------------------------------------------------------------------------------------
# Exercise 3: which moments of the weights are finite
# ---------------------------------------------------------------------------------------------

def check_smallest_proposal_std(smallest_proposal_std: Callable[[float, int], Any]) -> bool:
    """Check ``smallest_proposal_std(posterior_std, k) = σ⋆ √((k-1)/k)``: for a proposal centred on
    the posterior, ``E_q[w^k] = p(x)^k ∫ p^k / q^(k-1) dz`` is finite iff σ_q is above it. Fixed
    cases and one drawn at random on every call."""
    rng = _fresh_random()
    cases = [(0.3, 4), (2.0, 3), (1.0, 2), (0.5, 10), (1.5, 1),  # (σ⋆, k)
             (round(rng.uniform(0.1, 3.0), 6), rng.randint(3, 20))]

    def body(fn: Callable[[float, int], Any]) -> str:
        for posterior_std, k in cases:
            answer = fn(posterior_std, k)
            if answer is None or answer is Ellipsis:
                raise NotImplementedError
            got = as_float64(answer)
            if got.numel() != 1:
                raise ExerciseFailed(f"expected one number (a standard deviation), got shape "
                                     f"{tuple(got.shape)}.")
            got = got.reshape(())
            want = posterior_std * math.sqrt((k - 1) / k)
            if math.isfinite(got.item()) and math.isclose(
                got.item(), want, rel_tol=1e-9, abs_tol=1e-12
            ):
                continue
            if not torch.isfinite(got):
                raise ExerciseFailed(f"for σ⋆ = {posterior_std}, k = {k} your answer is not "
                                     "finite: the threshold is finite for every k ≥ 1 (for k = 1 "
                                     "it is 0: the mean of the weights is always p(x)).")
            extras = [
                (
                    posterior_std**2 * (k - 1) / k,
                    "that is the threshold for the variance σ_q²; "
                    "return "
                    "the standard deviation σ_q (its square root).",
                ),
                (
                    posterior_std * (k - 1) / k,
                    "the condition k/σ⋆² - (k-1)/σ_q² > 0 bounds σ_q²: "
                    "take "
                    "the square root of (k-1)/k.",
                ),
                (
                    posterior_std / math.sqrt(2),
                    "σ⋆/√2 is the answer for k = 2 only: redo the "
                    "exponent "
                    "of p(z|x)^k / q(z|x)^(k-1) for general k.",
                ),
                (
                    posterior_std,
                    "the k-th moment is ∫ q (p/q)^k dz = ∫ p^k / q^(k-1) dz: the power "
                    "of q is k-1, not k.",
                ),
            ]
            if k > 1:
                extras.append(
                    (
                        posterior_std * math.sqrt(k / (k - 1)),
                        "your ratio is upside down: finiteness needs k/σ⋆² > (k-1)/σ_q², "
                        "i.e. σ_q² > σ⋆² (k-1)/k.",
                    )
                )
            hint = diagnose(got, torch.tensor(want, dtype=torch.float64), extras)
            raise ExerciseFailed(f"for σ⋆ = {posterior_std}, k = {k}: {hint}")
        return "Only a proposal at least as wide as the posterior has every moment of w finite."

    return run_check("smallest proposal std", smallest_proposal_std, body)
