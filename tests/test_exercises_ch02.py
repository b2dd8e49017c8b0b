"""vaelib.exercises.ch02: right answers pass, typical slips get the right hint, stubs are "not
attempted".
"""

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
    return (m + (a - m).exp().sum(dim=dim, keepdim=True).log()).squeeze(dim) - math.log(
        a.shape[dim]
    )


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
    (lambda a, dim=0: max_shift_log_mean_exp(a, dim) - a.max(dim=dim).values, "add the maximum m "
                                                                              "back"),
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
    lambda model, x, K, generator=None: naive(model, x, K),  # ignores the generator: still right
])
def test_naive_right_answers_pass(right, capsys):
    assert verdict(check_naive_log_marginal, right, capsys)[0]


@pytest.mark.parametrize("wrong, hint", [
    (lambda m, x, K, g=None: naive(m, x, K, g, reduce="mean_of_logs"), "you averaged log p(x|z_k)"),
    (lambda m, x, K, g=None: naive(m, x, K, g, reduce="logsumexp"), "log K too high"),
    (lambda m, x, K, g=None: naive(m, x, K, g, use_joint=True), "the prior is already in the "
                                                                "sampling"),
    (lambda m, x, K, g=None: naive(m, x, K, g).exp(), "you returned p̂(x)"),
    (lambda m, x, K, g=None: -naive(m, x, K, g), "wrong sign"),
    (lambda m, x, K, g=None: naive(m, x, K, g)[None], "expected shape (N,)"),
    (lambda m, x, K, g=None: naive(m, x, 3, g), "standard errors from the exact log p(x)"),
    (lambda m, x, K, g=None: naive(m, x, K, g) - math.inf, "inf or NaN"),
    # the closed form, which the exercise does not ask for, and an estimate frozen by a fixed seed
    (lambda m, x, K, g=None: m.log_marginal(x), "model.log_marginal"),
    (lambda m, x, K, g=None: naive(m, x, K, torch.Generator().manual_seed(0)), "two different "
                                                                               "generators"),
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
    log_lik = model.log_likelihood(
        x, model.sample_prior(num_draws, num_points=1, generator=generator)
    )[:, 0]
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


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda m, x, e: samples_needed(m, x, e, minus_one=False), "you used E[w²]"),
        (lambda m, x, e: samples_needed(m, x, e, power=1), "ε squared"),
        (lambda m, x, e: samples_needed(m, x, e, power=1, root=True), "ρ is a variance already"),
        (lambda m, x, e: samples_needed(m, x, e, power=-2), "divide by ε², don't multiply"),
        (lambda m, x, e: -samples_needed(m, x, e), "positive number"),
        (lambda m, x, e: [1.0, 2.0], "return one number"),
        (lambda m, x, e: 10 * samples_needed(m, x, e), "times the exact value"),
        # the closed form, which the exercise forbids
        (exact_samples_needed, "not the closed form"),
        (
            lambda m, x, e: (m.log_marginal(x) * 0).item() + samples_needed(m, x, e),
            "model.log_marginal",
        ),
    ],
)
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


# --- issue 24 / 23: the shortcuts and slips these checks once accepted --------------------------


def global_max_log_mean_exp(a, dim=0):
    """One maximum over the whole tensor instead of one along dim."""
    m = a.max()
    return m + (a - m).exp().mean(dim=dim).log()


def test_log_mean_exp_refuses_one_global_maximum(capsys):
    passed, text = verdict(check_log_mean_exp, global_max_log_mean_exp, capsys)
    assert not passed and "one maximum over the whole tensor" in text, text


def _scipy_lme(a, dim=0):
    import scipy.special
    return torch.as_tensor(scipy.special.logsumexp(a.numpy(), axis=dim)) - math.log(a.shape[dim])


@pytest.mark.parametrize(
    "back_door, hint",
    [
        (_scipy_lme, "scipy.special.logsumexp"),
        (
            lambda a, dim=0: torch.ops.aten.logsumexp(a, [dim]) - math.log(a.shape[dim]),
            "torch.logsumexp",
        ),
        # log-sum-exp = a_k - log_softmax(a)_k, for any k (here the largest)
        (
            lambda a, dim=0: (
                (a - torch.log_softmax(a, dim)).max(dim=dim).values - math.log(a.shape[dim])
            ),
            "log_softmax",
        ),
        (
            lambda a, dim=0: (
                (a - torch.nn.functional.log_softmax(a, dim=dim)).amax(dim) - math.log(a.shape[dim])
            ),
            "log_softmax",
        ),
        (lambda a, dim=0: (a - a.softmax(dim).log()).amax(dim) - math.log(a.shape[dim]), "softmax"),
    ],
)
def test_log_mean_exp_back_doors_are_refused(back_door, hint, capsys):
    passed, text = verdict(check_log_mean_exp, back_door, capsys)
    assert not passed and hint in text and "write it" in text, text


def test_log_mean_exp_refuses_logsumexp_imported_under_another_name(capsys):
    from torch import logsumexp as lse

    passed, text = verdict(
        check_log_mean_exp, lambda a, dim=0: lse(a, dim) - math.log(a.shape[dim]), capsys
    )
    assert not passed and "torch.logsumexp" in text, text


def test_the_naive_check_offers_no_way_to_the_exact_marginal(capsys):
    def peek(model, x, K, generator=None):  # the real model behind the sampling-only view
        inner = object.__getattribute__(model, "_model")
        return inner.log_marginal(x) + 1e-4 * torch.randn(x.shape[0], dtype=x.dtype)

    passed, text = verdict(check_naive_log_marginal, peek, capsys)
    assert not passed and "log_marginal" in text, text


def test_samples_needed_refuses_too_few_draws_every_time(capsys):
    """100 draws of the right formula once passed about 4 runs in 20: now never."""
    for _ in range(20):
        passed, text = verdict(check_samples_needed,
                               lambda m, x, e: samples_needed(m, x, e, num_draws=100), capsys)
        assert not passed and "drew 100 prior samples" in text, text


def test_samples_needed_is_deterministic_for_an_answer_without_a_generator(capsys):
    def no_generator(model, x, rel_error):
        log_lik = model.log_likelihood(x, model.sample_prior(20_000, num_points=1))[:, 0]
        log_w = log_lik - log_mean_exp(log_lik, dim=0)
        return ((2 * log_w).exp().mean().item() - 1) / rel_error**2

    texts = {verdict(check_samples_needed, no_generator, capsys)[1] for _ in range(3)}
    assert len(texts) == 1 and "✅" in texts.pop()


def test_the_whole_formula_only_after_several_tries(capsys, monkeypatch):
    from vaelib.exercises import _core

    monkeypatch.setattr(_core, "_failures", {})
    wrong = lambda m, x, e: 10 * samples_needed(m, x, e)  # noqa: E731
    first = verdict(check_samples_needed, wrong, capsys)[1]
    assert "times the exact value" in first and "mean(w²)/mean(w)² - 1" not in first
    verdict(check_samples_needed, wrong, capsys)
    third = verdict(check_samples_needed, wrong, capsys)[1]
    assert "After 3 tries" in third and "mean(w²)/mean(w)² - 1" in third, third


def test_the_naive_check_refuses_vaelibs_own_estimator(capsys):
    """The chapter imports naive_mc_log_marginal: passing it is not writing the estimator."""
    passed, text = verdict(check_naive_log_marginal, naive_mc_log_marginal, capsys)
    assert not passed and "naive_mc_log_marginal" in text and "write it" in text, text
