"""vaelib.exercises.ch02: right answers pass, typical slips get the right hint, stubs are "not attempted"."""

import math

import pytest
import torch

from vaelib.estimators import log_mean_exp, naive_mc_log_marginal
from vaelib.exercises.ch02 import check_log_mean_exp, check_naive_log_marginal, check_samples_needed
from tests.exercise_helpers import verdict


def stub(*args, **kwargs):
    raise NotImplementedError


# --- log-mean-exp -----------------------------------------------------------------------------


def max_shift_log_mean_exp(a, dim=0):
    m = a.max(dim=dim, keepdim=True).values
    return (m + (a - m).exp().sum(dim=dim, keepdim=True).log()).squeeze(dim) - math.log(a.shape[dim])


@pytest.mark.parametrize("right", [
    max_shift_log_mean_exp,
])
def test_log_mean_exp_right_answers_pass(right, capsys):
    passed, text = verdict(check_log_mean_exp, right, capsys)
    assert passed and "✅" in text


@pytest.mark.parametrize("wrong, hint", [
    (lambda a, dim=0: a.exp().mean(dim=dim).log(), "inf or NaN"),
    (lambda a, dim=0: max_shift_log_mean_exp(a, dim) + math.log(a.shape[dim]), "log-SUM-exp"),
    (lambda a, dim=0: a.mean(dim=dim), "averaged the logs"),
    (lambda a, dim=0: a.max(dim=dim).values, "only the largest term"),
    (lambda a, dim=0: max_shift_log_mean_exp(a, dim) - a.max(dim=dim).values, "add the maximum m back"),
    (lambda a, dim=0: max_shift_log_mean_exp(a, 0), "dim removed"),
    (lambda a, dim=0: max_shift_log_mean_exp(a, dim).unsqueeze(dim), "dim removed"),
    # the exercise forbids torch.logsumexp (and vaelib's log_mean_exp, which calls it)
    (lambda a, dim=0: torch.logsumexp(a, dim=dim) - math.log(a.shape[dim]), "torch.logsumexp"),
    (lambda a, dim=0: a.logsumexp(dim) - math.log(a.shape[dim]), "torch.logsumexp"),
    (lambda a, dim=0: torch.special.logsumexp(a, dim) - math.log(a.shape[dim]), "torch.logsumexp"),
    (lambda a, dim=0: log_mean_exp(a, dim=dim), "torch.logsumexp"),
    (lambda a, dim=0: -max_shift_log_mean_exp(a, dim), "wrong sign"),
])
def test_log_mean_exp_wrong_answers_get_the_right_hint(wrong, hint, capsys):
    passed, text = verdict(check_log_mean_exp, wrong, capsys)
    assert not passed and "❌" in text
    assert hint in text, text


@pytest.mark.parametrize("answer", [stub, None, ...])
def test_log_mean_exp_stub_is_not_attempted(answer, capsys):
    passed, text = verdict(check_log_mean_exp, answer, capsys)
    assert not passed and "not attempted yet" in text


# --- the naive estimator ----------------------------------------------------------------------


def naive(model, x, num_samples, generator=None, *, reduce="log_mean_exp", use_joint=False):
    z = model.sample_prior(num_samples, num_points=x.shape[0], generator=generator)  # (K, N, d)
    terms = (model.log_joint if use_joint else model.log_likelihood)(x, z)  # (K, N)
    if reduce == "mean_of_logs":
        return terms.mean(dim=0)
    if reduce == "logsumexp":
        return torch.logsumexp(terms, dim=0)
    return log_mean_exp(terms, dim=0)


@pytest.mark.parametrize("right", [
    naive,
    naive_mc_log_marginal,
    lambda model, x, K, generator=None: naive(model, x, K),  # ignores the generator: still right
])
def test_naive_right_answers_pass(right, capsys):
    assert verdict(check_naive_log_marginal, right, capsys)[0]


@pytest.mark.parametrize("wrong, hint", [
    (lambda m, x, K, g=None: naive(m, x, K, g, reduce="mean_of_logs"), "you averaged log p(x|z_k)"),
    (lambda m, x, K, g=None: naive(m, x, K, g, reduce="logsumexp"), "log K too high"),
    (lambda m, x, K, g=None: naive(m, x, K, g, use_joint=True), "the prior is already in the sampling"),
    (lambda m, x, K, g=None: naive(m, x, K, g).exp(), "you returned p̂(x)"),
    (lambda m, x, K, g=None: -naive(m, x, K, g), "wrong sign"),
    (lambda m, x, K, g=None: naive(m, x, K, g)[None], "expected shape (N,)"),
    (lambda m, x, K, g=None: naive(m, x, 3, g), "standard errors from the exact log p(x)"),
    (lambda m, x, K, g=None: naive(m, x, K, g) - math.inf, "inf or NaN"),
    # the closed form, which the exercise does not ask for, and an estimate frozen by a fixed seed
    (lambda m, x, K, g=None: m.log_marginal(x), "model.log_marginal"),
    (lambda m, x, K, g=None: naive(m, x, K, torch.Generator().manual_seed(0)), "two different generators"),
])
def test_naive_wrong_answers_get_the_right_hint(wrong, hint, capsys):
    passed, text = verdict(check_naive_log_marginal, wrong, capsys)
    assert not passed and "❌" in text
    assert hint in text, text


@pytest.mark.parametrize("answer", [stub, None, ...])
def test_naive_stub_is_not_attempted(answer, capsys):
    passed, text = verdict(check_naive_log_marginal, answer, capsys)
    assert not passed and "not attempted yet" in text


# --- samples needed ---------------------------------------------------------------------------


def samples_needed(model, x, rel_error, *, num_draws=200_000, minus_one=True, power=2, root=False):
    generator = torch.Generator().manual_seed(5)
    log_lik = model.log_likelihood(x, model.sample_prior(num_draws, num_points=1, generator=generator))[:, 0]
    log_w = log_lik - log_mean_exp(log_lik, dim=0)
    second_moment = (2 * log_w).exp().mean().item()
    rho = second_moment - 1 if minus_one else second_moment
    return (math.sqrt(rho) if root else rho) / rel_error**power


def exact_samples_needed(model, x, rel_error):
    """ρ/ε² from the closed form E[p(x|z)²] = (4πs²)^{-D/2} N(x; b, W Wᵀ + s²/2 I)."""
    s2, D = model.noise_std**2, model.data_dim
    cov = model.W @ model.W.T + 0.5 * s2 * torch.eye(D, dtype=model.W.dtype)
    log_second = (-0.5 * D * math.log(4 * math.pi * s2)
                  + torch.distributions.MultivariateNormal(model.b, cov).log_prob(x))
    return ((log_second - 2 * model.log_marginal(x)).exp().item() - 1) / rel_error**2


@pytest.mark.parametrize("right", [samples_needed])
def test_samples_needed_right_answers_pass(right, capsys):
    assert verdict(check_samples_needed, right, capsys)[0]


@pytest.mark.parametrize("wrong, hint", [
    (lambda m, x, e: samples_needed(m, x, e, minus_one=False), "you used E[w²]"),
    (lambda m, x, e: samples_needed(m, x, e, power=1), "ε squared"),
    (lambda m, x, e: samples_needed(m, x, e, power=1, root=True), "ρ is a variance already"),
    (lambda m, x, e: samples_needed(m, x, e, power=-2), "divide by ε², don't multiply"),
    (lambda m, x, e: -samples_needed(m, x, e), "positive number"),
    (lambda m, x, e: [1.0, 2.0], "return one number"),
    (lambda m, x, e: 10 * samples_needed(m, x, e), "times the exact value"),
    # the closed form, which the exercise forbids
    (exact_samples_needed, "not the closed form"),
    (lambda m, x, e: (m.log_marginal(x) * 0).item() + samples_needed(m, x, e), "model.log_marginal"),
])
def test_samples_needed_wrong_answers_get_the_right_hint(wrong, hint, capsys):
    passed, text = verdict(check_samples_needed, wrong, capsys)
    assert not passed and "❌" in text
    assert hint in text, text


@pytest.mark.parametrize("answer", [stub, None, ...])
def test_samples_needed_stub_is_not_attempted(answer, capsys):
    passed, text = verdict(check_samples_needed, answer, capsys)
    assert not passed and "not attempted yet" in text


def test_checks_are_exported_from_the_package():
    import vaelib.exercises as exercises

    for name in ("check_log_mean_exp", "check_naive_log_marginal", "check_samples_needed"):
        assert getattr(exercises, name) is globals()[name]
