"""The chapter 7 checks: right answers pass, typical slips get the right hint, stubs are "not
attempted yet", and nothing ever raises or prints a traceback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaelib.exercises import (
    check_minibatch_elbo_estimate,
    check_pathwise_sample,
    check_score_mu,
)
from tests.exercise_helpers import (
    verdict,
    not_implemented as _not_implemented,
    stub_body as _stub_body,
)


# --- pathwise_sample -------------------------------------------------------------------------

def test_pathwise_sample_right_answers(capsys):
    for answer in (
        lambda mu, logvar, eps: mu + torch.exp(0.5 * logvar) * eps,
        lambda mu, logvar, eps: mu + logvar.mul(0.5).exp() * eps,
        lambda mu, logvar, eps: torch.addcmul(mu, torch.exp(logvar).sqrt(), eps),
    ):
        ok, out = verdict(check_pathwise_sample, answer, capsys)
        assert ok and out.startswith("✅")


@pytest.mark.parametrize(
    "answer, hint",
    [
        (lambda mu, logvar, eps: mu + torch.exp(logvar) * eps, "variance σ²"),
        (lambda mu, logvar, eps: mu + logvar * eps, "logvar is log σ²"),
        (lambda mu, logvar, eps: mu + eps / torch.exp(0.5 * logvar), "divided eps by σ"),
        (lambda mu, logvar, eps: torch.exp(0.5 * logvar) * eps, "forgot to add the mean"),
        (lambda mu, logvar, eps: mu - torch.exp(0.5 * logvar) * eps, "-eps"),
        (lambda mu, logvar, eps: mu + eps, "forgot to scale"),
        (lambda mu, logvar, eps: (mu + torch.exp(0.5 * logvar) * eps).detach(), "differentiabl"),
        (
            lambda mu, logvar, eps: (mu + torch.exp(0.5 * logvar) * eps).detach().numpy(),
            "differentiabl",
        ),
        (lambda mu, logvar, eps: (mu + torch.exp(0.5 * logvar) * eps)[:, 0], "shape"),
        (lambda mu, logvar, eps: mu + torch.exp(0.5 * logvar.detach()) * eps, "∂z/∂logvar"),
        (lambda mu, logvar, eps: mu + torch.sqrt(logvar) * eps, "no square root or log of it"),
        (
            lambda mu, logvar, eps: mu + torch.exp(0.5 * logvar) * torch.randn_like(mu),
            "drew new noise",
        ),
        (
            lambda mu, logvar, eps: (
                mu
                + torch.exp(0.5 * logvar)
                * torch.randn(mu.shape, dtype=mu.dtype, generator=torch.Generator().manual_seed(0))
            ),
            "does not change when eps does",
        ),
    ],
)
def test_pathwise_sample_wrong_answers_get_the_right_hint(answer, hint, capsys):
    ok, out = verdict(check_pathwise_sample, answer, capsys)
    assert not ok and out.startswith("❌") and hint in out, out


@pytest.mark.parametrize("stub", [..., None, _not_implemented, _stub_body])
def test_pathwise_sample_stubs_are_not_attempted(stub, capsys):
    ok, out = verdict(check_pathwise_sample, stub, capsys)
    assert not ok and out.startswith("⏳")


def test_pathwise_sample_crash_and_non_function(capsys):
    ok, out = verdict(check_pathwise_sample, lambda mu, logvar, eps: mu @ eps, capsys)
    assert not ok and "raised RuntimeError" in out
    ok, out = verdict(check_pathwise_sample, torch.zeros(3), capsys)
    assert not ok and "the function itself" in out


# --- score_mu --------------------------------------------------------------------------------

def test_score_mu_right_answers(capsys):
    for answer in (
        lambda z, mu, logvar: (z - mu) / torch.exp(logvar),
        lambda z, mu, logvar: (z - mu) * torch.exp(-logvar),
        lambda z, mu, logvar: ((z - mu) / torch.exp(0.5 * logvar)) / torch.exp(0.5 * logvar),
        lambda z, mu, logvar: ((z - mu) / torch.exp(logvar)).numpy(),  # NumPy is accepted
    ):
        ok, out = verdict(check_score_mu, answer, capsys)
        assert ok and out.startswith("✅")


@pytest.mark.parametrize("answer, hint", [
    (lambda z, mu, logvar: (mu - z) / torch.exp(logvar), "wrong sign"),
    (lambda z, mu, logvar: (z - mu) / torch.exp(0.5 * logvar), "divided by σ"),
    (lambda z, mu, logvar: (z - mu) * torch.exp(logvar), "multiplied by σ²"),
    (lambda z, mu, logvar: z - mu, "forgot to divide"),
    (lambda z, mu, logvar: (z - mu) / logvar, "logvar is log σ²"),
    (lambda z, mu, logvar: 0.5 * (z - mu) / torch.exp(logvar), "factor ½ too many"),
    (lambda z, mu, logvar: 2 * (z - mu) / torch.exp(logvar), "twice"),
    (lambda z, mu, logvar: ((z - mu) / torch.exp(logvar)).sum(-1), "don't sum over the last dim"),
])
def test_score_mu_wrong_answers_get_the_right_hint(answer, hint, capsys):
    ok, out = verdict(check_score_mu, answer, capsys)
    assert not ok and out.startswith("❌") and hint in out, out


@pytest.mark.parametrize("stub", [..., None, _not_implemented, _stub_body])
def test_score_mu_stubs_are_not_attempted(stub, capsys):
    ok, out = verdict(check_score_mu, stub, capsys)
    assert not ok and out.startswith("⏳")


# --- minibatch_elbo_estimate -----------------------------------------------------------------

def test_minibatch_elbo_estimate_right_answers(capsys):
    for answer in (
        lambda log_w, n: n / log_w.shape[1] * log_w.mean(dim=0).sum(),
        lambda log_w, n: n * log_w.mean(),  # the same number: n × the mean over V and m
        lambda log_w, n: (n / log_w.shape[1] * log_w.mean(dim=0).sum()).reshape(1),
        lambda log_w, n: log_w.mean(dim=0).sum() * n / log_w.shape[1],
    ):
        ok, out = verdict(check_minibatch_elbo_estimate, answer, capsys)
        assert ok and out.startswith("✅"), out


@pytest.mark.parametrize("answer, hint", [
    (lambda log_w, n: log_w.mean(dim=0).sum(), "forgot to scale by n/m"),
    (lambda log_w, n: log_w.mean(), "average ELBO per data point"),
    (lambda log_w, n: log_w.shape[1] / n * log_w.mean(dim=0).sum(), "not m/n"),
    (lambda log_w, n: n / log_w.shape[1] * log_w.sum(), "average them (1/V)"),
    (lambda log_w, n: log_w.sum(), "you summed everything"),
    (lambda log_w, n: -n / log_w.shape[1] * log_w.mean(dim=0).sum(), "wrong sign"),
    (lambda log_w, n: n / log_w.shape[1] * log_w.mean(dim=0), "return one number"),
    (lambda log_w, n: 25.0 * log_w.mean(dim=0).sum(), "another"),  # hard-coded n/m = 200/8
    # integer division: right only when m divides n
    (lambda log_w, n: n // log_w.shape[1] * log_w.mean(dim=0).sum(), "integer division"),
    # log_w.shape[0] (the V samples, where x.shape[0] would be the batch) taken as m
    (lambda log_w, n: n / log_w.shape[0] * log_w.mean(dim=0).sum(), "log_w.shape[1]"),
    # a Python number (or NumPy) has no gradient
    (lambda log_w, n: float(n / log_w.shape[1] * log_w.mean(0).sum()), "Python number"),
    (lambda log_w, n: np.float64(n * log_w.detach().numpy().mean()), "Python number"),
    (lambda log_w, n: (n * log_w.mean()).item(), "Python number"),
    (lambda log_w, n: (n * log_w.mean()).detach(), "no gradient"),
])
def test_minibatch_elbo_estimate_wrong_answers_get_the_right_hint(answer, hint, capsys):
    ok, out = verdict(check_minibatch_elbo_estimate, answer, capsys)
    assert not ok and out.startswith("❌") and hint in out, out


@pytest.mark.parametrize("stub", [..., None, _not_implemented, _stub_body])
def test_minibatch_elbo_estimate_stubs_are_not_attempted(stub, capsys):
    ok, out = verdict(check_minibatch_elbo_estimate, stub, capsys)
    assert not ok and out.startswith("⏳")


def test_checks_are_exported():
    import vaelib.exercises.ch07 as ch07

    assert set(ch07.__all__) == {"check_pathwise_sample", "check_score_mu",
                                 "check_minibatch_elbo_estimate"}


def test_non_finite_hints_are_specific_to_the_exercise(capsys):
    ok, out = verdict(
        check_pathwise_sample, lambda mu, logvar, eps: mu + torch.sqrt(logvar) * eps, capsys
    )
    assert not ok and "log-sum-exp" not in out and "σ = exp(½ logvar)" in out, out
    ok, out = verdict(check_score_mu, lambda z, mu, logvar: (z - mu) / logvar.log().exp(), capsys)
    assert not ok and "log-sum-exp" not in out and "σ² = exp(logvar)" in out, out
    ok, out = verdict(
        check_minibatch_elbo_estimate, lambda log_w, n: n * log_w.exp().log().mean() / 0, capsys
    )
    assert not ok and "log-sum-exp" not in out and "factor n/m" in out, out


def test_pathwise_sample_detached_mu(capsys):
    ok, out = verdict(check_pathwise_sample,
                      lambda mu, logvar, eps: mu.detach() + torch.exp(0.5 * logvar) * eps, capsys)
    assert not ok and "∂z/∂μ" in out


def test_the_exercise_docstrings_do_not_give_the_answer():
    """The student edition keeps a solution's signature and docstring: they state the shapes and
    what to compute, never the formula the exercise asks for."""
    import ast
    from pathlib import Path

    import jupytext

    chapter = Path(__file__).resolve().parents[1] / "chapters" / "07_reparameterization.py"
    docstrings = {}
    for cell in jupytext.read(chapter).cells:
        if cell.cell_type == "code" and "solution" in cell.metadata.get("tags", []):
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.FunctionDef):
                    docstrings[node.name] = ast.get_docstring(node) or ""
    assert set(docstrings) == {"pathwise_sample", "score_mu", "minibatch_elbo_estimate"}
    for answer in ("exp(½", "σ ⊙ ε", "(z - μ) / σ²", "/ σ²", "n/m", "(1/V)", "Σ_v"):
        for name, doc in docstrings.items():
            assert answer not in doc, (name, doc)


def _score_by_autograd(z, mu, logvar):
    mu = mu.clone().requires_grad_(True)
    log_q = -0.5 * ((z - mu) ** 2 / logvar.exp() + logvar).sum()
    (grad,) = torch.autograd.grad(log_q, mu)
    return grad


def _score_by_backward(z, mu, logvar):
    mu = mu.clone().requires_grad_(True)
    (-0.5 * ((z - mu) ** 2 / logvar.exp()).sum()).backward()
    return mu.grad


@pytest.mark.parametrize("answer", [_score_by_autograd, _score_by_backward])
def test_score_mu_by_autograd_is_refused(answer, capsys):
    ok, out = verdict(check_score_mu, answer, capsys)
    assert not ok and "by hand" in out and "autograd" in out, out


# --- issue 24: every autograd entry point refused; slips named without the formula
# -------------------

def _score_by_backward(z, mu, logvar):
    mu = mu.clone().requires_grad_(True)
    log_q = -0.5 * ((z - mu) ** 2 / logvar.exp()).sum()
    torch.autograd.backward(log_q, inputs=[mu])
    return mu.grad


def _score_by_func_grad(z, mu, logvar):
    return torch.func.grad(lambda m: (-0.5 * (z - m) ** 2 / logvar.exp()).sum())(mu)


@pytest.mark.parametrize("answer", [_score_by_backward, _score_by_func_grad])
def test_score_by_any_autograd_entry_point_is_refused(answer, capsys):
    torch.func.grad(lambda m: m.sum())(torch.zeros(1))  # torch.func's first use imports for seconds
    ok, out = verdict(check_score_mu, answer, capsys)
    assert not ok and "autograd" in out, out


def test_pathwise_two_sigma_is_named(capsys):
    ok, out = verdict(check_pathwise_sample,
                      lambda mu, logvar, eps: mu + 2 * torch.exp(0.5 * logvar) * eps, capsys)
    assert not ok and "2σ" in out, out


def test_score_sign_hint_does_not_state_the_answer(capsys, monkeypatch):
    from vaelib.exercises import _core

    monkeypatch.setattr(_core, "_failures", {})
    ok, out = verdict(check_score_mu, lambda z, mu, logvar: (mu - z) / logvar.exp(), capsys)
    assert (
        not ok and "wrong sign" in out and "(z - μ)/σ²" not in out and "(z - μ) / σ²" not in out
    ), out


def test_pathwise_hints_name_the_slip_without_the_formula_at_first(capsys, monkeypatch):
    from vaelib.exercises import _core

    monkeypatch.setattr(_core, "_failures", {})
    wrong = lambda mu, logvar, eps: mu + logvar.exp() * eps  # noqa: E731
    ok, out = verdict(check_pathwise_sample, wrong, capsys)
    assert not ok and "variance" in out and "exp(½ logvar)" not in out, out
    verdict(check_pathwise_sample, wrong, capsys)
    ok, out = verdict(check_pathwise_sample, wrong, capsys)
    assert "After 3 tries" in out and "exp(½ logvar)" in out, out
