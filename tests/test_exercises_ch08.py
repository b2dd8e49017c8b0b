"""The chapter 8 checks: right answers pass, typical slips get the right hint, stubs are "not
attempted yet", and nothing ever raises or prints a traceback."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import integrate

from vaelib.exercises import check_bce_integral, check_count_active_units, check_negative_elbo
from tests.exercise_helpers import (
    verdict,
    not_implemented as _not_implemented,
    stub_body as _stub_body,
)


# --- negative_elbo ---------------------------------------------------------------------------

def _kl(mu, logvar):
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(-1)


def _rec(logits, x):
    return (x * logits - F.softplus(logits)).sum(-1)


def test_negative_elbo_right_answers(capsys):
    for answer in (
        lambda logits, x, mu, logvar: -(_rec(logits, x) - _kl(mu, logvar)).mean(),
        lambda logits, x, mu, logvar: (
            (F.binary_cross_entropy_with_logits(logits, x, reduction="sum") + _kl(mu, logvar).sum())
            / x.shape[0]
        ),
        lambda logits, x, mu, logvar: (
            F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
            - 0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1)
        ).mean(),
        lambda logits, x, mu, logvar: (
            -torch.distributions.Bernoulli(logits=logits).log_prob(x).sum(-1).mean()
            + torch.distributions.kl_divergence(
                torch.distributions.Normal(mu, torch.exp(0.5 * logvar)),
                torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu)),
            )
            .sum(-1)
            .mean()
        ),
    ):
        ok, out = verdict(check_negative_elbo, answer, capsys)
        assert ok and out.startswith("✅"), out


@pytest.mark.parametrize(
    "answer, hint",
    [
        (
            lambda logits, x, mu, lv: (_rec(logits, x) - _kl(mu, lv)).mean(),
            "returned the ELBO itself",
        ),
        (lambda logits, x, mu, lv: -_rec(logits, x).mean(), "KL term is missing"),
        (lambda logits, x, mu, lv: -(_rec(logits, x) + _kl(mu, lv)).mean(), "wrong sign of the KL"),
        (
            lambda logits, x, mu, lv: (
                F.binary_cross_entropy_with_logits(logits, x) + _kl(mu, lv).mean()
            ),
            "averaged the reconstruction term over the pixels",
        ),
        (
            lambda logits, x, mu, lv: (
                F.binary_cross_entropy_with_logits(logits, x) + _kl(mu, lv).mean() / mu.shape[1]
            ),
            "averaged over the pixels and the latent",
        ),
        (
            lambda logits, x, mu, lv: -_rec(logits, x).mean() + _kl(mu, lv).mean() / mu.shape[1],
            "averaged the KL",
        ),
        (
            lambda logits, x, mu, lv: -(_rec(logits, x) - _kl(mu, lv)).sum(),
            "summed over the images",
        ),
        (lambda logits, x, mu, lv: -(_rec(logits, x) - _kl(mu, 0.5 * lv)).mean(), "variance σ²"),
        (
            lambda logits, x, mu, lv: -(_rec(logits, x) - 2 * _kl(mu, lv)).mean(),
            "twice the right value",
        ),
        (
            lambda logits, x, mu, lv: -(_rec(logits, x) - 0.5 * _kl(mu, lv)).mean(),
            "half the right value",
        ),
        (
            lambda logits, x, mu, lv: (
                -(_rec(logits, x) - 0.5 * (mu**2 + lv.exp() - lv).sum(-1)).mean()
            ),
            "-1",
        ),
        (
            lambda logits, x, mu, lv: -((x * torch.sigmoid(logits)).sum(-1) - _kl(mu, lv)).mean(),
            "log sigmoid",
        ),
        (lambda logits, x, mu, lv: -(_rec(logits, x) - _kl(mu, lv)), "one value per image"),
        (
            lambda logits, x, mu, lv: torch.stack([-(_rec(logits, x) - _kl(mu, lv)).mean()] * 2),
            "scalar",
        ),
        (lambda logits, x, mu, lv: -(_rec(logits, x) - _kl(mu, lv)).mean().detach(), "no gradient"),
        (
            lambda logits, x, mu, lv: -(_rec(logits, x) - _kl(mu, lv)).mean().item() + 1.0,
            "largest difference",
        ),
        (
            lambda logits, x, mu, lv: F.binary_cross_entropy(logits, x) + _kl(mu, lv).mean(),
            "_with_logits",
        ),
        (lambda logits, x, mu, lv: -(_rec(logits, x) - _kl(mu, lv.sqrt())).mean(), "NaN"),
    ],
)
def test_negative_elbo_wrong_answers_get_the_right_hint(answer, hint, capsys):
    ok, out = verdict(check_negative_elbo, answer, capsys)
    assert not ok and out.startswith("❌") and hint in out, out


def test_negative_elbo_plain_float_is_refused(capsys):
    # A float (e.g. via .item()) has the right value but no gradient: training cannot use it (issue
    # 24).
    ok, out = verdict(
        check_negative_elbo,
        lambda logits, x, mu, lv: -(_rec(logits, x) - _kl(mu, lv)).mean().item(),
        capsys,
    )
    assert not ok and "Python number" in out, out


@pytest.mark.parametrize(
    "answer, part",
    [
        (
            lambda logits, x, mu, lv: (
                -(
                    (x * logits.detach() - torch.nn.functional.softplus(logits)).sum(-1)
                    - _kl(mu, lv)
                ).mean()
            ),
            "logits",
        ),
        (
            lambda logits, x, mu, lv: (
                -(_rec(logits, x) - _kl(mu.detach(), lv)).mean() + 0 * mu.sum()
            ),
            "mu",
        ),
        (
            lambda logits, x, mu, lv: (
                -(_rec(logits, x) - _kl(mu, lv.detach())).mean() + 0 * lv.sum()
            ),
            "logvar",
        ),
    ],
)
def test_negative_elbo_right_value_wrong_gradient_is_refused(answer, part, capsys):
    ok, out = verdict(check_negative_elbo, answer, capsys)
    assert not ok and f"gradient with respect to {part} is not" in out, out


@pytest.mark.parametrize("stub", [..., None, _not_implemented, _stub_body])
def test_negative_elbo_stubs_are_not_attempted(stub, capsys):
    ok, out = verdict(check_negative_elbo, stub, capsys)
    assert not ok and out.startswith("⏳")


def test_negative_elbo_crash_and_non_function(capsys):
    ok, out = verdict(check_negative_elbo, lambda logits, x, mu, lv: logits @ x, capsys)
    assert not ok and "raised RuntimeError" in out
    ok, out = verdict(check_negative_elbo, torch.zeros(()), capsys)
    assert not ok and "the function itself" in out


# --- count_active_units ----------------------------------------------------------------------

def test_count_active_units_right_answers(capsys):
    for answer in (
        lambda mu: int((mu.var(dim=0) > 0.01).sum()),
        lambda mu: (mu.var(dim=0) > 0.01).sum(),  # a 0-dim tensor
        lambda mu: int(np.sum(np.var(mu.numpy(), axis=0, ddof=1) > 0.01)),
        # biased variance: same count here
        lambda mu: int(np.sum(np.var(mu.numpy(), axis=0) > 0.01)),
        lambda mu: float((mu.var(dim=0) > 0.01).sum()),
    ):
        ok, out = verdict(check_count_active_units, answer, capsys)
        assert ok and out.startswith("✅"), out


@pytest.mark.parametrize("answer, hint", [
    (lambda mu: int((mu.std(dim=0) > 0.01).sum()), "standard deviation"),
    (lambda mu: int((mu.var(dim=0) <= 0.01).sum()), "inactive"),
    (lambda mu: int((mu.var(dim=1) > 0.01).sum()), "dim=0"),
    (lambda mu: int((mu.abs().mean(dim=0) > 0.01).sum()), "mean |μ_j|"),
    (lambda mu: int((mu.square().mean(dim=0) > 0.01).sum()), "subtract"),
    (lambda mu: mu.shape[1], "every unit"),
    (lambda mu: mu.var(dim=0) > 0.01, "mask"),
    (lambda mu: True, "not True/False"),
    (lambda mu: 2.5, "whole number"),
    (lambda mu: 1, "fewer than all"),
    # issue 24: these once passed (both cases had 5 active units) or got another slip's hint
    (lambda mu: 5, "for every test case"),
    (lambda mu: int((mu.mean(dim=0).abs() > 0.01).sum()), "mean of μ_j"),
    (lambda mu: int((mu.var(dim=0) > 0.001).sum()), "threshold is 0.001"),
    (lambda mu: int((mu.var(dim=0) > 0.1).sum()), "threshold is 0.1"),
])
def test_count_active_units_wrong_answers_get_the_right_hint(answer, hint, capsys):
    ok, out = verdict(check_count_active_units, answer, capsys)
    assert not ok and out.startswith("❌") and hint in out, out


@pytest.mark.parametrize("stub", [..., None, _not_implemented, _stub_body])
def test_count_active_units_stubs_are_not_attempted(stub, capsys):
    ok, out = verdict(check_count_active_units, stub, capsys)
    assert not ok and out.startswith("⏳")


def test_count_active_units_crash_and_non_function(capsys):
    ok, out = verdict(check_count_active_units, lambda mu: mu.variance(), capsys)
    assert not ok and "raised AttributeError" in out
    ok, out = verdict(check_count_active_units, 4, capsys)
    assert not ok and "the function itself" in out


# --- bce_integral ----------------------------------------------------------------------------

def _closed(lam):
    return 0.5 if lam == 0.5 else (2 * lam - 1) / math.log(lam / (1 - lam))


def test_bce_integral_right_answers(capsys):
    for answer in (
        _closed,
        lambda lam: integrate.quad(lambda x: lam**x * (1 - lam) ** (1 - x), 0, 1)[0],
        lambda lam: torch.tensor(_closed(lam)),
        lambda lam: np.float64(_closed(lam)),
    ):
        ok, out = verdict(check_bce_integral, answer, capsys)
        assert ok and out.startswith("✅"), out
        assert "nats" in out


@pytest.mark.parametrize("answer, hint", [
    (lambda lam: 1.0, "sum over x in {0, 1}"),
    (lambda lam: -_closed(lam), "wrong sign"),
    (lambda lam: (2 * lam - 1) / math.log((1 - lam) / lam), "wrong sign"),
    (lambda lam: 1 / _closed(lam), "reciprocal"),
    (lambda lam: math.log(_closed(lam)), "not its log"),
    (lambda lam: (lam - 1) / math.log(lam / (1 - lam)), "(1 - λ) r^x"),
    (lambda lam: (2 * lam - 1) / math.log(lam / (1 - lam)), "λ = ½"),  # 0/0 at λ = ½
    (lambda lam: _closed(lam) if lam != 0.5 else float("nan"), "λ = ½"),
    (lambda lam: [_closed(lam)] * 2, "one number"),
    (lambda lam: 0.25, "largest difference"),
])
def test_bce_integral_wrong_answers_get_the_right_hint(answer, hint, capsys):
    ok, out = verdict(check_bce_integral, answer, capsys)
    assert not ok and out.startswith("❌") and hint in out, out


@pytest.mark.parametrize("stub", [..., None, _not_implemented, _stub_body])
def test_bce_integral_stubs_are_not_attempted(stub, capsys):
    ok, out = verdict(check_bce_integral, stub, capsys)
    assert not ok and out.startswith("⏳")


def test_bce_integral_crash_and_non_function(capsys):
    ok, out = verdict(check_bce_integral, lambda lam: math.log(-lam), capsys)
    assert not ok and "raised ValueError" in out
    ok, out = verdict(check_bce_integral, 0.5, capsys)
    assert not ok and "the function itself" in out


def test_count_active_units_cases_give_each_slip_its_own_count():
    from vaelib.exercises.ch08 import _active_case

    mu = _active_case(0)
    d = mu.shape[1]
    want = int((mu.var(0) > 0.01).sum())
    counts = [want, int((mu.std(0) > 0.01).sum()), d - want, int((mu.abs().mean(0) > 0.01).sum()),
              int((mu.mean(0).abs() > 0.01).sum()), int((mu.square().mean(0) > 0.01).sum()), d,
              int((mu.var(0) > 0.001).sum()), int((mu.var(0) > 0.1).sum())]
    assert len(set(counts)) == len(counts), counts
    assert want != int((_active_case(1).var(0) > 0.01).sum())
