"""The chapter 3 self-checks: right answers pass, typical wrong answers get the right hint, stubs
are "not attempted yet", nothing raises. The reference answers are checked against independent
computations (numerical minimization, quadrature, the exact posterior mean)."""

import math

import pytest
import torch
from scipy import integrate, optimize, stats

from vaelib.exercises.ch03 import (
    _posterior_mean_cases,
    check_best_proposal_variance,
    check_self_normalized_posterior_mean,
    check_smallest_proposal_std,
)


def verdict(capsys, check, answer):
    """Run a check; return (its bool, what it printed). It must never raise."""
    result = check(answer)
    out = capsys.readouterr().out
    assert isinstance(result, bool)
    assert "Traceback" not in out
    return result, out


def stub(*args, **kwargs):
    raise NotImplementedError


# --------------------------------------------------------------------------------------------
# Exercise 1: self-normalized posterior mean
# --------------------------------------------------------------------------------------------

def _estimate(model, x, proposal, num_samples, generator, weights="right", dim=0):
    z = proposal.rsample(num_samples, generator=generator)
    log_joint, log_q = model.log_joint(x, z), proposal.log_prob(z)
    log_w = {"right": log_joint - log_q, "no_q": log_joint, "plus_q": log_joint + log_q,
             "no_prior": model.log_likelihood(x, z) - log_q}[weights]
    return (torch.softmax(log_w, dim=dim)[..., None] * z).sum(dim=0)


def right_mean(model, x, proposal, num_samples, generator=None):
    return _estimate(model, x, proposal, num_samples, generator)


def test_posterior_mean_right_answer_passes(capsys):
    ok, out = verdict(capsys, check_self_normalized_posterior_mean, right_mean)
    assert ok and "✅" in out


def test_posterior_mean_reference_is_near_the_exact_posterior_mean():
    # the reference estimator with many samples converges to E[z|x] of the linear-Gaussian model
    for _, model, x, proposal, _ in _posterior_mean_cases():
        estimate = _estimate(model, x, proposal, 200_000, torch.Generator().manual_seed(0))
        exact, _ = model.posterior_parameters(x)
        assert torch.allclose(estimate, exact, atol=0.01)


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda m, x, q, k, g=None: q.rsample(k, generator=g).mean(0), "without weights"),
        (lambda m, x, q, k, g=None: _estimate(m, x, q, k, g, weights="no_q"), "divide by q"),
        (lambda m, x, q, k, g=None: _estimate(m, x, q, k, g, weights="plus_q"), "you added log q"),
        (
            lambda m, x, q, k, g=None: _estimate(m, x, q, k, g, weights="no_prior"),
            "the prior is missing",
        ),
        (lambda m, x, q, k, g=None: _estimate(m, x, q, k, g, dim=1), "over the K samples"),
    ],
)
def test_posterior_mean_typical_mistakes_get_their_hint(capsys, wrong, hint):
    ok, out = verdict(capsys, check_self_normalized_posterior_mean, wrong)
    assert not ok and "❌" in out and hint in out


def test_posterior_mean_unnormalized_sum_gets_its_hint(capsys):
    def unnormalized(model, x, proposal, num_samples, generator=None):
        z = proposal.rsample(num_samples, generator=generator)
        w = (model.log_joint(x, z) - proposal.log_prob(z)).exp()
        return (w[..., None] * z).mean(0)

    ok, out = verdict(capsys, check_self_normalized_posterior_mean, unnormalized)
    assert not ok and "Divide by Σ_k w_k" in out


def test_posterior_mean_outside_log_space_fails_on_underflow(capsys):
    def naive(model, x, proposal, num_samples, generator=None):
        z = proposal.rsample(num_samples, generator=generator)
        w = (model.log_joint(x, z) - proposal.log_prob(z)).exp()  # underflows to 0 far away
        return (w[..., None] * z).sum(0) / w.sum(0)[..., None]

    ok, out = verdict(capsys, check_self_normalized_posterior_mean, naive)
    assert not ok and "softmax" in out and "below -1000" in out


def test_posterior_mean_other_random_numbers_get_the_sampling_hint(capsys):
    def one_at_a_time(model, x, proposal, num_samples, generator=None):
        z = torch.cat([proposal.rsample(1, generator=generator) for _ in range(num_samples)])
        log_w = model.log_joint(x, z) - proposal.log_prob(z)
        return (torch.softmax(log_w, 0)[..., None] * z).sum(0)

    ok, out = verdict(capsys, check_self_normalized_posterior_mean, one_at_a_time)
    assert not ok and "one call" in out


def test_posterior_mean_wrong_shape_and_crashes_are_reported(capsys):
    ok, out = verdict(capsys, check_self_normalized_posterior_mean,
                      lambda m, x, q, k, g=None: right_mean(m, x, q, k, g)[:, 0])
    assert not ok and "expected shape" in out
    ok, out = verdict(
        capsys, check_self_normalized_posterior_mean, lambda m, x, q, k, g=None: 1 / 0
    )
    assert not ok and "ZeroDivisionError" in out
    ok, out = verdict(
        capsys, check_self_normalized_posterior_mean, lambda m, x, q, k, g=None: "zero"
    )
    assert not ok and "❌" in out


@pytest.mark.parametrize("answer", [stub, None, ..., lambda *a, **k: None])
def test_posterior_mean_stub_is_not_attempted(capsys, answer):
    ok, out = verdict(capsys, check_self_normalized_posterior_mean, answer)
    assert not ok and "not attempted yet" in out


# --------------------------------------------------------------------------------------------
# Exercise 2: best proposal variance
# --------------------------------------------------------------------------------------------

def right_best(posterior_var, offset):
    linear = 3 * posterior_var + 2 * offset**2
    return (linear + math.sqrt(linear**2 - 8 * posterior_var**2)) / 4


def log_rho(v, posterior_var, offset):
    """log κ for q = N(μ⋆ + Δ, v), p(z|x) = N(μ⋆, σ⋆²)."""
    return (
        math.log(v)
        - 0.5 * math.log(posterior_var * (2 * v - posterior_var))
        + offset**2 / (2 * v - posterior_var)
    )


@pytest.mark.parametrize(
    "posterior_var, offset", [(1.0, 0.0), (0.3, 0.5), (2.0, -3.0), (0.05, 0.1), (1.0, 2.0)]
)
def test_best_variance_reference_minimizes_rho_numerically(posterior_var, offset):
    found = optimize.minimize_scalar(
        log_rho,
        bounds=(posterior_var / 2 * (1 + 1e-9), 100 * posterior_var + 10 * offset**2),
        args=(posterior_var, offset),
        method="bounded",
        options={"xatol": 1e-12},
    )
    assert math.isclose(found.x, right_best(posterior_var, offset), rel_tol=1e-6)


def test_best_variance_rho_formula_matches_quadrature():
    posterior_var, offset, v = 0.3, 0.5, 0.7
    def integrand(z):
        return math.exp(2 * stats.norm.logpdf(z, 0, math.sqrt(posterior_var))
                        - stats.norm.logpdf(z, offset, math.sqrt(v)))

    value = integrate.quad(integrand, -15, 15, epsabs=0, epsrel=1e-11)[0]
    assert math.isclose(math.log(value), log_rho(v, posterior_var, offset), rel_tol=1e-9)


def test_best_variance_right_answer_passes(capsys):
    ok, out = verdict(capsys, check_best_proposal_variance, right_best)
    assert ok and "✅" in out
    ok, _ = verdict(
        capsys, check_best_proposal_variance, lambda a, d: torch.tensor([right_best(a, d)])
    )
    assert ok  # a one-element tensor is fine


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda a, d: a, "only when the mean is exact"),
        (lambda a, d: math.sqrt(right_best(a, d)), "standard deviation"),
        (lambda a, d: a + d**2, "not the minimizer"),
        (
            lambda a, d: (
                ((3 * a + 2 * d * d) - math.sqrt((3 * a + 2 * d * d) ** 2 - 8 * a * a)) / 4
            ),
            "smaller root",
        ),
        (lambda a, d: a * a / (2 * a + 2 * d * d), "dropped the ½"),
        (
            lambda a, d: ((3 * a + 2 * d) + math.sqrt((3 * a + 2 * d) ** 2 - 8 * a * a)) / 4,
            "use Δ², not Δ",
        ),
        (lambda a, d: 2 * right_best(a, d), "twice the right value"),
    ],
)
def test_best_variance_typical_mistakes_get_their_hint(capsys, wrong, hint):
    ok, out = verdict(capsys, check_best_proposal_variance, wrong)
    assert not ok and "❌" in out and hint in out


def test_best_variance_nan_and_crashes_are_reported(capsys):
    ok, out = verdict(capsys, check_best_proposal_variance, lambda a, d: float("nan"))
    assert not ok and "NaN" in out
    ok, out = verdict(capsys, check_best_proposal_variance, lambda a, d: math.sqrt(-1.0))
    assert not ok and "ValueError" in out
    ok, out = verdict(capsys, check_best_proposal_variance, lambda a, d: [1.0, 2.0])
    assert not ok and "one number" in out


@pytest.mark.parametrize("answer", [stub, None, ...])
def test_best_variance_stub_is_not_attempted(capsys, answer):
    ok, out = verdict(capsys, check_best_proposal_variance, answer)
    assert not ok and "not attempted yet" in out


# --------------------------------------------------------------------------------------------
# Exercise 3: smallest proposal std with a finite k-th moment
# --------------------------------------------------------------------------------------------

def right_threshold(posterior_std, k):
    return posterior_std * math.sqrt((k - 1) / k)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_threshold_separates_finite_from_infinite_moments(k):
    # ∫_{-L}^{L} p^k / q^(k-1) dz converges just above the threshold and blows up just below it
    def truncated(std_q, half_width):
        def integrand(z):
            return math.exp(k * stats.norm.logpdf(z) - (k - 1) * stats.norm.logpdf(z, 0, std_q))

        return integrate.quad(integrand, -half_width, half_width, limit=200)[0]

    threshold = right_threshold(1.0, k)
    above, below = threshold * 1.05, threshold * 0.95
    assert math.isclose(truncated(above, 20.0), truncated(above, 30.0), rel_tol=1e-6)
    assert truncated(below, 20.0) > 1e6 * truncated(below, 10.0)


def test_threshold_right_answer_passes(capsys):
    ok, out = verdict(capsys, check_smallest_proposal_std, right_threshold)
    assert ok and "✅" in out


@pytest.mark.parametrize("wrong, hint", [
    (lambda s, k: s**2 * (k - 1) / k, "threshold for the variance"),
    (lambda s, k: s * (k - 1) / k, "square root of (k-1)/k"),
    (lambda s, k: s / math.sqrt(2), "k = 2 only"),
    (lambda s, k: s, "power of q is k-1"),
    (lambda s, k: s * math.sqrt(k / (k - 1)) if k > 1 else 0.0, "upside down"),
    (lambda s, k: -right_threshold(s, k), "wrong sign"),
])
def test_threshold_typical_mistakes_get_their_hint(capsys, wrong, hint):
    ok, out = verdict(capsys, check_smallest_proposal_std, wrong)
    assert not ok and "❌" in out and hint in out


def test_threshold_k_equal_one_and_crashes(capsys):
    # σ⋆ √(k/(k-1)) divides by zero at k = 1: reported, not raised
    ok, out = verdict(capsys, check_smallest_proposal_std,
                      lambda s, k: right_threshold(s, k) if k > 1 else s * math.sqrt(k / (k - 1)))
    assert not ok and "ZeroDivisionError" in out
    ok, out = verdict(capsys, check_smallest_proposal_std,
                      lambda s, k: right_threshold(s, k) if k > 1 else math.inf)
    assert not ok and "not finite" in out


@pytest.mark.parametrize("answer", [stub, None, ...])
def test_threshold_stub_is_not_attempted(capsys, answer):
    ok, out = verdict(capsys, check_smallest_proposal_std, answer)
    assert not ok and "not attempted yet" in out


# --------------------------------------------------------------------------------------------
# Issue 24: a table of the fixed cases no longer passes; named hints for sampling slips
# --------------------------------------------------------------------------------------------

def _table_of_fixed_cases(reference, cases):
    """A 'solution' that looks the fixed test cases up (they are visible in the installed source).
    """
    table = {case: reference(*case) for case in cases}
    return lambda *case: table.get(case, 1.0)


def _best_variance_reference(posterior_var, offset):
    linear = 3 * posterior_var + 2 * offset**2
    return (linear + math.sqrt(linear**2 - 8 * posterior_var**2)) / 4


@pytest.mark.parametrize("check, reference, cases", [
    (check_best_proposal_variance, _best_variance_reference,
     [(0.3, 0.5), (2.0, -3.0), (1.0, 0.0), (0.05, 0.1)]),
    (check_smallest_proposal_std, lambda s, k: s * math.sqrt((k - 1) / k),
     [(0.3, 4), (2.0, 3), (1.0, 2), (0.5, 10), (1.5, 1)]),
])
def test_a_table_of_the_fixed_cases_is_refused(check, reference, cases, capsys):
    for _ in range(5):  # a random case on every call: never passes
        ok, out = verdict(capsys, check, _table_of_fixed_cases(reference, cases))
        assert not ok, out
    ok, out = verdict(capsys, check, reference)
    assert ok, out


def _one_short(model, x, proposal, num_samples, generator=None):
    return right_mean(model, x, proposal, num_samples - 1, generator)


def _from_the_prior(model, x, proposal, num_samples, generator=None):
    z = model.sample_prior(num_samples, num_points=x.shape[0], generator=generator)
    w = torch.softmax(model.log_likelihood(x, z), dim=0)
    return (w[..., None] * z).sum(0)


def _prior_draws_q_weights(model, x, proposal, num_samples, generator=None):
    z = model.sample_prior(num_samples, num_points=x.shape[0], generator=generator)
    w = torch.softmax(model.log_joint(x, z) - proposal.log_prob(z), dim=0)
    return (w[..., None] * z).sum(0)


@pytest.mark.parametrize("wrong, hint", [
    (_one_short, "one fewer than num_samples"),
    (_from_the_prior, "from the prior p(z)"),
    (_prior_draws_q_weights, "prior draws"),
])
def test_posterior_mean_sampling_slips_are_named(wrong, hint, capsys):
    ok, out = verdict(capsys, check_self_normalized_posterior_mean, wrong)
    assert not ok and hint in out, out
