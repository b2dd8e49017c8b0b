"""vaelib.exercises.ch01: right answers pass, typical slips get the right hint, stubs are "not
attempted".
"""

import math

import pytest
import torch

from vaelib.exercises.ch01 import (
    check_linear_log_marginal,
    check_ml_noise_std,
    check_toy_log_marginal,
)
from tests.exercise_helpers import verdict

LOG_2PI = math.log(2 * math.pi)


def stub(*args, **kwargs):
    raise NotImplementedError


# --- the linear-Gaussian marginal ---------------------------------------------------------------


def linear_log_marginal(x, W, b, noise_std, *, var=None, cov_fn=None, scale_quad=0.5, const=True,
                        center=True, logdet_factor=0.5):
    """log N(x; b, W Wᵀ + s² I) with knobs to introduce the usual slips."""
    D = W.shape[0]
    var = noise_std**2 if var is None else var
    C = (W @ W.T if cov_fn is None else cov_fn(W)) + var * torch.eye(D, dtype=W.dtype)
    u = x - b if center else x
    maha = (u * torch.linalg.solve(C, u.T).T).sum(-1)
    return (
        -scale_quad * maha - logdet_factor * torch.logdet(C) - (0.5 * D * LOG_2PI if const else 0.0)
    )


def test_linear_right_answer_passes(capsys):
    passed, text = verdict(check_linear_log_marginal, linear_log_marginal, capsys)
    assert passed and "✅" in text


def test_linear_answer_via_cholesky_passes(capsys):
    def cholesky_version(x, W, b, noise_std):
        C = W @ W.T + noise_std**2 * torch.eye(W.shape[0], dtype=W.dtype)
        return torch.distributions.MultivariateNormal(
            b, scale_tril=torch.linalg.cholesky(C)
        ).log_prob(x)

    assert verdict(check_linear_log_marginal, cholesky_version, capsys)[0]


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, W, b, s: linear_log_marginal(x, W, b, s, var=s), "you used s where the covariance "
                                                                "needs s²"),
    (lambda x, W, b, s: linear_log_marginal(x, W, b, s, var=s**4), "s⁴"),
    (lambda x, W, b, s: linear_log_marginal(x, W, b, s, cov_fn=lambda W: W.T @ W), "Wᵀ W"),
    (lambda x, W, b, s: linear_log_marginal(x, W, b, s, const=False), "-D/2 · log 2π is missing"),
    (lambda x, W, b, s: linear_log_marginal(x, W, b, s, scale_quad=1.0), "the factor ½"),
    (lambda x, W, b, s: linear_log_marginal(x, W, b, s, logdet_factor=1.0), "log det C needs the "
                                                                            "factor ½"),
    (lambda x, W, b, s: linear_log_marginal(x, W, b, s, logdet_factor=0.0), "-½ log det C is "
                                                                            "missing"),
    (lambda x, W, b, s: linear_log_marginal(x, W, b, s, center=False), "subtract the mean b"),
    (lambda x, W, b, s: linear_log_marginal(x, W, b, s).exp(), "you returned p(x)"),
    (lambda x, W, b, s: -linear_log_marginal(x, W, b, s), "wrong sign"),
    (lambda x, W, b, s: linear_log_marginal(x, W, b, s, var=0.0), "the noise is missing"),
    (lambda x, W, b, s: linear_log_marginal(x, W, b, s)[:, None], "expected shape (N,)"),
    (lambda x, W, b, s: linear_log_marginal(x, W, b, s).sum(), "expected shape (N,)"),
    (lambda x, W, b, s: linear_log_marginal(x, W, b, s) + 0.3, "largest difference"),
])
def test_linear_wrong_answers_get_the_right_hint(wrong, hint, capsys):
    passed, text = verdict(check_linear_log_marginal, wrong, capsys)
    assert not passed and "❌" in text
    assert hint in text, text


def test_linear_crash_is_reported_without_traceback(capsys):
    def crashes(x, W, b, s):  # (N, D) @ (N, D): the shapes do not match
        return x @ x

    passed, text = verdict(check_linear_log_marginal, crashes, capsys)
    assert not passed and "raised" in text


@pytest.mark.parametrize("answer", [stub, None, ...])
def test_linear_stub_is_not_attempted(answer, capsys):
    passed, text = verdict(check_linear_log_marginal, answer, capsys)
    assert not passed and "not attempted yet" in text


# --- the toy's marginal by quadrature ---------------------------------------------------------


def toy_log_marginal(
    model, x, *, use_step=True, use_prior=True, average=False, size=8001, limit=10.0
):
    z_grid = torch.linspace(-limit, limit, size, dtype=x.dtype)
    step = (z_grid[1] - z_grid[0]).item()
    # (G, N)
    terms = (model.log_joint if use_prior else model.log_likelihood)(x, z_grid[:, None, None])
    if average:
        return torch.logsumexp(terms, dim=0) - math.log(size)
    return torch.logsumexp(terms, dim=0) + (math.log(step) if use_step else 0.0)


def test_toy_right_answers_pass(capsys):
    assert verdict(check_toy_log_marginal, toy_log_marginal, capsys)[0]


@pytest.mark.parametrize("wrong, hint", [
    (lambda m, x: toy_log_marginal(m, x, use_step=False), "grid step Δz missing"),
    (lambda m, x: toy_log_marginal(m, x, average=True), "average over the grid"),
    (lambda m, x: toy_log_marginal(m, x, use_prior=False), "the prior is missing"),
    (lambda m, x: toy_log_marginal(m, x).exp(), "you returned p(x)"),
    (lambda m, x: toy_log_marginal(m, x, size=41), "fine enough"),
    (lambda m, x: toy_log_marginal(m, x, limit=1.0), "wide enough"),
    (lambda m, x: toy_log_marginal(m, x)[None], "expected shape (N,)"),
])
def test_toy_wrong_answers_get_the_right_hint(wrong, hint, capsys):
    passed, text = verdict(check_toy_log_marginal, wrong, capsys)
    assert not passed and "❌" in text
    assert hint in text, text


@pytest.mark.parametrize("answer", [stub, None, ...])
def test_toy_stub_is_not_attempted(answer, capsys):
    passed, text = verdict(check_toy_log_marginal, answer, capsys)
    assert not passed and "not attempted yet" in text


# --- the maximum-likelihood noise -------------------------------------------------------------


def ml_noise_std(x, *, correction=0, which=0, root=True):
    eigenvalues = torch.linalg.eigvalsh(torch.cov(x.T, correction=correction))
    value = eigenvalues[which]
    return value.sqrt().item() if root else value.item()


def test_ml_right_answers_pass(capsys):
    assert verdict(check_ml_noise_std, ml_noise_std, capsys)[0]
    assert verdict(check_ml_noise_std, lambda x: torch.tensor(ml_noise_std(x)), capsys)[0]


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (lambda x: ml_noise_std(x, root=False), "you returned s²"),
        (lambda x: ml_noise_std(x, correction=1), "divides by N, not N - 1"),
        (lambda x: ml_noise_std(x, which=1), "largest eigenvalue"),
        (
            lambda x: math.sqrt(ml_noise_std(x, which=1, root=False) - ml_noise_std(x, root=False)),
            "‖w_ML‖",
        ),
        (lambda x: -ml_noise_std(x), "wrong sign"),
        (lambda x: [ml_noise_std(x)] * 2, "return one number"),
        (lambda x: x.std().item(), "largest difference"),
    ],
)
def test_ml_wrong_answers_get_the_right_hint(wrong, hint, capsys):
    passed, text = verdict(check_ml_noise_std, wrong, capsys)
    assert not passed and "❌" in text
    assert hint in text, text


@pytest.mark.parametrize("answer", [stub, None, ...])
def test_ml_stub_is_not_attempted(answer, capsys):
    passed, text = verdict(check_ml_noise_std, answer, capsys)
    assert not passed and "not attempted yet" in text


def test_checks_are_exported_from_the_package():
    import vaelib.exercises as exercises

    for name in ("check_linear_log_marginal", "check_toy_log_marginal", "check_ml_noise_std"):
        assert getattr(exercises, name) is globals()[name]


# --- answers the exercises forbid --------------------------------------------------------------


@pytest.mark.parametrize(
    "forbidden, hint",
    [
        # exercise 1: "from the formula, without vaelib or SciPy"
        (
            lambda x, W, b, s: (
                __import__("vaelib.toy", fromlist=["LinearGaussian"])
                .LinearGaussian(W, b, s)
                .log_marginal(x)
            ),
            "LinearGaussian.log_marginal",
        ),
        (
            lambda x, W, b, s: torch.as_tensor(
                __import__("scipy.stats", fromlist=["multivariate_normal"])
                .multivariate_normal(
                    b.numpy(), (W @ W.T + s**2 * torch.eye(W.shape[0], dtype=W.dtype)).numpy()
                )
                .logpdf(x.numpy())
            ).reshape(-1),
            "logpdf",
        ),
        (
            lambda x, W, b, s: torch.as_tensor(
                __import__(
                    "scipy.stats", fromlist=["multivariate_normal"]
                ).multivariate_normal.logpdf(
                    x.numpy(),
                    b.numpy(),
                    (W @ W.T + s**2 * torch.eye(W.shape[0], dtype=W.dtype)).numpy(),
                )
            ).reshape(-1),
            "logpdf",
        ),
    ],
)
def test_linear_library_answers_are_refused(forbidden, hint, capsys):
    passed, text = verdict(check_linear_log_marginal, forbidden, capsys)
    assert not passed and "❌" in text and hint in text and "without vaelib or SciPy" in text, text


def test_toy_answer_that_calls_the_reference_is_refused(capsys):
    passed, text = verdict(check_toy_log_marginal, lambda model, x: model.log_marginal(x), capsys)
    assert not passed and "model.log_marginal" in text, text


def test_the_library_is_restored_after_a_check(capsys):
    from scipy.stats import _multivariate

    from vaelib.toy import LinearGaussian

    before = (LinearGaussian.log_marginal, _multivariate.multivariate_normal_gen.logpdf)
    verdict(
        check_linear_log_marginal,
        lambda x, W, b, s: LinearGaussian(W, b, s).log_marginal(x),
        capsys,
    )
    assert (LinearGaussian.log_marginal, _multivariate.multivariate_normal_gen.logpdf) == before


def test_the_sign_of_the_log_determinant_is_named(capsys):
    """Issue 24: +½ log det C once got only "the largest difference from the right value"."""
    def flipped(x, W, b, s):
        D = W.shape[0]
        C = W @ W.T + s**2 * torch.eye(D, dtype=W.dtype)
        u = x - b
        return (-0.5 * D * math.log(2 * math.pi) + 0.5 * torch.logdet(C)
                - 0.5 * (u * torch.linalg.solve(C, u.T).T).sum(-1))

    passed, text = verdict(check_linear_log_marginal, flipped, capsys)
    assert not passed and "log-determinant term has the wrong sign" in text, text
