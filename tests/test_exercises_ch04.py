"""vaelib.exercises.ch04: right answers pass, typical slips get the right hint, nothing raises.

Also checks numerically the claims the hints of ``check_which_is_larger`` make (questions 4 and 6:
"either" really can go both ways).
"""

import math

import pytest
import torch

from vaelib.estimators import log_importance_weights
from vaelib.exercises.ch04 import (
    check_elbo_from_log_weights,
    check_iwae_from_log_weights,
    check_which_is_larger,
)
from vaelib.gaussian import DiagonalGaussian, FullGaussian
from vaelib.toy import LinearGaussian

RIGHT_ANSWERS = {1: "B", 2: "B", 3: "A", 4: "either", 5: "A", 6: "either"}


def verdict(capsys, check, answer):
    ok = check(answer)
    out = capsys.readouterr().out
    assert "Traceback" not in out
    assert out.count("\n") == 1, out  # exactly one line: the verdict
    return ok, out


def not_implemented(log_w):
    raise NotImplementedError


# --- exercise 1: the ELBO from log-weights --------------------------------------------------------


def test_elbo_right_answers_pass(capsys):
    ok, out = verdict(capsys, check_elbo_from_log_weights, lambda log_w: log_w.mean(dim=0))
    assert ok and out.startswith("✅")
    # NumPy in, NumPy out is fine too
    ok, _ = verdict(capsys, check_elbo_from_log_weights, lambda log_w: log_w.numpy().mean(axis=0))
    assert ok


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (lambda log_w: torch.logsumexp(log_w, 0) - math.log(log_w.shape[0]), "IWAE"),
        (lambda log_w: log_w.sum(dim=0), "divide by K"),
        (lambda log_w: -log_w.mean(dim=0), "wrong sign"),
        (lambda log_w: log_w.mean(dim=1), "dim 1"),
        (lambda log_w: log_w.mean(), "single number"),
        (lambda log_w: log_w.exp().mean(dim=0), "mean weight"),
        (lambda log_w: 0.5 * log_w.mean(dim=0), "half"),
    ],
)
def test_elbo_wrong_answers_get_the_right_hint(capsys, wrong, hint):
    ok, out = verdict(capsys, check_elbo_from_log_weights, wrong)
    assert not ok and out.startswith("❌")
    assert hint in out, out


@pytest.mark.parametrize("stub", [None, ..., not_implemented])
def test_elbo_stubs_are_not_attempted(capsys, stub):
    ok, out = verdict(capsys, check_elbo_from_log_weights, stub)
    assert not ok and "not attempted yet" in out


def test_elbo_crashes_and_non_functions_are_reported_without_raising(capsys):
    ok, out = verdict(capsys, check_elbo_from_log_weights, lambda log_w: log_w.reshape(-1, 2, 99))
    assert not ok and "RuntimeError" in out
    ok, out = verdict(capsys, check_elbo_from_log_weights, 3.0)
    assert not ok and "pass your function" in out


def test_elbo_input_mutation_does_not_fool_the_check(capsys):
    def mutating(log_w):
        log_w.zero_()  # edits the input in place, then returns zeros
        return log_w.mean(dim=0)

    ok, out = verdict(capsys, check_elbo_from_log_weights, mutating)
    assert not ok


# --- exercise 2: the IWAE bound from log-weights ------------------------------------------------


def stable_iwae(log_w):
    m = log_w.max(dim=0).values
    return m + torch.log(torch.exp(log_w - m).mean(dim=0))


def test_iwae_right_answers_pass(capsys):
    ok, out = verdict(capsys, check_iwae_from_log_weights, stable_iwae)
    assert ok and out.startswith("✅")


def global_max_iwae(log_w):
    m = log_w.max()  # one maximum over all data points: -inf for a column far below it
    return m + torch.log(torch.exp(log_w - m).mean(dim=0))


@pytest.mark.parametrize(
    ("forbidden", "hint"),
    [
        # the exercise asks for the max-shift written out, without torch.logsumexp
        (lambda log_w: torch.logsumexp(log_w, 0) - math.log(log_w.shape[0]), "torch.logsumexp"),
        (lambda log_w: log_w.logsumexp(0) - math.log(log_w.shape[0]), "torch.logsumexp"),
        (
            lambda log_w: torch.special.logsumexp(log_w, 0) - math.log(log_w.shape[0]),
            "torch.logsumexp",
        ),
        # one global maximum fails when data points' log-weights lie far apart
        (global_max_iwae, "maximum over dim 0"),
    ],
)
def test_iwae_answers_the_exercise_forbids_are_refused(capsys, forbidden, hint):
    ok, out = verdict(capsys, check_iwae_from_log_weights, forbidden)
    assert not ok and out.startswith("❌") and hint in out, out


def test_iwae_nan_hint_does_not_recommend_the_forbidden_function(capsys):
    ok, out = verdict(capsys, check_iwae_from_log_weights,
                      lambda log_w: torch.log(torch.exp(log_w).mean(dim=0)))
    assert not ok and "logsumexp" not in out, out


@pytest.mark.parametrize(
    ("wrong", "hint"),
    [
        (lambda log_w: log_w.mean(dim=0), "ELBO"),
        (lambda log_w: torch.logsumexp(log_w, 0), "subtract log K"),
        (lambda log_w: torch.logsumexp(log_w, 0) + math.log(log_w.shape[0]), "you added log K"),
        (lambda log_w: torch.log(torch.exp(log_w).mean(dim=0)), "log-sum-exp trick"),  # naive
        (lambda log_w: log_w.max(dim=0).values, "only the largest"),
        (lambda log_w: log_w.max(dim=0).values - math.log(log_w.shape[0]), "only the largest"),
        (lambda log_w: torch.logsumexp(log_w, 1) - math.log(log_w.shape[1]), "dim 1"),
        (lambda log_w: -stable_iwae(log_w), "wrong sign"),
    ],
)
def test_iwae_wrong_answers_get_the_right_hint(capsys, wrong, hint):
    ok, out = verdict(capsys, check_iwae_from_log_weights, wrong)
    assert not ok and out.startswith("❌")
    assert hint in out, out


@pytest.mark.parametrize("stub", [None, ..., not_implemented])
def test_iwae_stubs_are_not_attempted(capsys, stub):
    ok, out = verdict(capsys, check_iwae_from_log_weights, stub)
    assert not ok and "not attempted yet" in out


# --- exercise 3: which one can never be smaller -------------------------------------------------


def test_which_is_larger_right_answers_pass_in_any_spelling(capsys):
    ok, out = verdict(capsys, check_which_is_larger, RIGHT_ANSWERS)
    assert ok and out.startswith("✅")
    spelled = {str(k): v.lower() + " " for k, v in RIGHT_ANSWERS.items()}  # "1": "b ", ...
    assert verdict(capsys, check_which_is_larger, spelled)[0]
    assert verdict(capsys, check_which_is_larger, [RIGHT_ANSWERS[k] for k in range(1, 7)])[0]


@pytest.mark.parametrize(
    ("question", "wrong", "hint"),
    [
        (1, "A", "Jensen"),  # the bound the wrong way round
        (2, "A", "never decreases"),
        (3, "B", "lower bound"),
        (4, "B", "not for one draw"),
        (5, "either", "KL divergence is >= 0"),
        (6, "A", "either KL can be the larger"),
    ],
)
def test_which_is_larger_wrong_answers_get_the_right_hint(capsys, question, wrong, hint):
    answers = {**RIGHT_ANSWERS, question: wrong}
    ok, out = verdict(capsys, check_which_is_larger, answers)
    assert not ok and f"question {question}:" in out and hint in out and "5 of 6" in out


@pytest.mark.parametrize(
    ("answers", "hint"),
    [
        ({1: "B", 2: "B"}, "missing 3, 4, 5, 6"),
        ({**RIGHT_ANSWERS, 3: "bigger"}, "'A', 'B' or 'either'"),
        ({**RIGHT_ANSWERS, 3: ...}, "'A', 'B' or 'either'"),
        ({**RIGHT_ANSWERS, 7: "A"}, "no question 7"),
        ({"one": "A"}, "question numbers"),
        ("B", "should be a dict"),
    ],
)
def test_which_is_larger_malformed_answers_get_a_hint(capsys, answers, hint):
    ok, out = verdict(capsys, check_which_is_larger, answers)
    assert not ok and hint in out, out


def test_which_is_larger_stub_is_not_attempted(capsys):
    ok, out = verdict(capsys, check_which_is_larger, ...)
    assert not ok and "not attempted yet" in out


# --- the facts behind the answers (closed forms on the linear-Gaussian model) --------------------


def expected_log_likelihood(model, x, mean, cov):
    """E_q[log p(x|z)] for q = N(mean, cov): -D/2 log 2πs² - (|x - b - W m|² + tr(WᵀW S)) / 2s²."""
    s2 = model.noise_std**2
    residual = x - model.b - mean @ model.W.T
    trace = torch.trace(model.W.T @ model.W @ cov)
    log_norm = -0.5 * model.data_dim * math.log(2 * math.pi * s2)
    return log_norm - (residual.square().sum(-1) + trace) / (2 * s2)


@pytest.fixture(scope="module")
def model_and_x():
    model = LinearGaussian.random(data_dim=4, latent_dim=2, noise_std=0.6,
                                  generator=torch.Generator().manual_seed(0))
    x, _ = model.sample(20, generator=torch.Generator().manual_seed(1))
    return model, x


def test_closed_form_expected_log_likelihood_matches_monte_carlo(model_and_x):
    model, x = model_and_x
    mean, cov = model.posterior_parameters(x)
    exact = expected_log_likelihood(model, x, mean, cov)
    z = FullGaussian(mean, cov).sample(200_000, generator=torch.Generator().manual_seed(2))
    ll = model.log_likelihood(x, z)  # (K, N)
    se = ll.std(dim=0) / math.sqrt(ll.shape[0])
    assert ((ll.mean(dim=0) - exact).abs() < 5 * se).all()


def test_question_6_reconstruction_term_can_be_on_either_side_of_log_p(model_and_x):
    model, x = model_and_x
    log_px = model.log_marginal(x)
    mean, cov = model.posterior_parameters(x)
    # q = p(z|x): E_q[log p(x|z)] - log p(x) = KL(p(z|x) ‖ p(z)) > 0
    assert (expected_log_likelihood(model, x, mean, cov) > log_px).all()
    # q = p(z): E_q[log p(x|z)] - log p(x) = -KL(p(z) ‖ p(z|x)) < 0
    prior_mean, prior_cov = torch.zeros_like(mean), torch.eye(2, dtype=torch.float64)
    assert (expected_log_likelihood(model, x, prior_mean, prior_cov) < log_px).all()


def test_question_4_single_log_weights_fall_on_both_sides_of_log_p(model_and_x):
    model, x = model_and_x
    mean, cov = model.posterior_parameters(x)
    q = DiagonalGaussian(mean + 0.3, (1.5 * cov.diagonal()).log().expand_as(mean))
    log_w = log_importance_weights(model, x, q, 2000, generator=torch.Generator().manual_seed(3))
    log_px = model.log_marginal(x)
    above = (log_w > log_px).double().mean(dim=0)  # (N,)
    assert ((above > 0.05) & (above < 0.95)).all()
    assert (log_w.mean(dim=0) < log_px).all()  # while the averages (ELBO estimates) stay below


def _scipy_iwae(log_w):
    import scipy.special

    return torch.as_tensor(scipy.special.logsumexp(log_w.numpy(), axis=0)) - math.log(
        log_w.shape[0]
    )


@pytest.mark.parametrize(
    ("back_door", "hint"),
    [
        (_scipy_iwae, "scipy.special.logsumexp"),
        (
            lambda log_w: torch.ops.aten.logsumexp(log_w, [0]) - math.log(log_w.shape[0]),
            "torch.logsumexp",
        ),
        (
            lambda log_w: (log_w - torch.log_softmax(log_w, 0)).amax(0) - math.log(log_w.shape[0]),
            "log_softmax",
        ),
    ],
)
def test_iwae_back_doors_to_logsumexp_are_refused(capsys, back_door, hint):
    ok, out = verdict(capsys, check_iwae_from_log_weights, back_door)
    assert not ok and hint in out and "write it" in out, out
