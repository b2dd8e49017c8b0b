"""The chapter 5 checks: right answers pass, typical slips get the right hint, stubs are "not
attempted yet", and nothing ever raises or prints a traceback."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vaelib.exercises import check_kl_normal_1d, check_mean_field_gap, check_optimal_q_variance
from tests.exercise_helpers import not_implemented as _not_implemented, stub_body as _stub_body


def verdict(check, answer, capsys):
    ok = check(answer)
    out = capsys.readouterr().out
    assert "Traceback" not in out
    assert out.count("\n") == 1, out  # one verdict line
    return ok, out


STUBS = [..., None, _not_implemented, _stub_body]


# --- KL between two 1-D Gaussians -------------------------------------------------------------


def kl_right(mq, vq, mp, vp):
    return 0.5 * (vq / vp + (mq - mp) ** 2 / vp - 1 - torch.log(vq / vp))


@pytest.mark.parametrize("answer", [
    kl_right,
    lambda mq, vq, mp, vp: 0.5 * (torch.log(vp) - torch.log(vq) + (vq + (mq - mp) ** 2) / vp - 1),
    # (torch's kl_divergence is refused since issue 24: the exercise asks for the formula)
    lambda mq, vq, mp, vp: kl_right(mq, vq, mp, vp).numpy(),  # NumPy answers are accepted
])
def test_kl_normal_1d_right_answers(answer, capsys):
    ok, out = verdict(check_kl_normal_1d, answer, capsys)
    assert ok and out.startswith("✅") and "closes to" in out, out


@pytest.mark.parametrize(
    "answer, hint",
    [
        (lambda mq, vq, mp, vp: kl_right(mp, vp, mq, vq), "KL(p ‖ q)"),
        (lambda mq, vq, mp, vp: kl_right(mq, vq**2, mp, vp**2), "squared the variances"),
        (
            lambda mq, vq, mp, vp: kl_right(mq, vq.sqrt(), mp, vp.sqrt()),
            "σ where the formula needs σ²",
        ),
        (lambda mq, vq, mp, vp: 2 * kl_right(mq, vq, mp, vp), "factor ½"),
        (lambda mq, vq, mp, vp: -kl_right(mq, vq, mp, vp), "wrong sign"),
        (
            lambda mq, vq, mp, vp: 0.5 * (vq / vp + (mq - mp) ** 2 / vp - 1 + torch.log(vq / vp)),
            "log term",
        ),
        (
            lambda mq, vq, mp, vp: 0.5 * (vq / vp + (mq - mp) ** 2 / vp - torch.log(vq / vp)),
            "-1 is missing",
        ),
        (
            lambda mq, vq, mp, vp: 0.5 * (vq / vp + (mq - mp) ** 2 / vq - 1 - torch.log(vq / vp)),
            "not σ_q²",
        ),
        (
            lambda mq, vq, mp, vp: 0.5 * (vq / vp + (mq - mp) ** 2 - 1 - torch.log(vq / vp)),
            "divided by σ_p²",
        ),
        (lambda mq, vq, mp, vp: kl_right(mq, vq, mp, vp).sum(), "shape"),
        (lambda mq, vq, mp, vp: kl_right(mq, vq, mp, vp) + 0.1, "largest difference"),
        (lambda mq, vq, mp, vp: mq @ "oops", "raised TypeError"),
        (lambda mq, vq, mp, vp: kl_right(mq, vq, mp, vp) * float("nan"), "NaN"),
    ],
)
def test_kl_normal_1d_wrong_answers_get_the_right_hint(answer, hint, capsys):
    ok, out = verdict(check_kl_normal_1d, answer, capsys)
    assert not ok and out.startswith("❌") and hint in out, out


@pytest.mark.parametrize("stub", STUBS)
def test_kl_normal_1d_stubs_are_not_attempted(stub, capsys):
    ok, out = verdict(check_kl_normal_1d, stub, capsys)
    assert not ok and out.startswith("⏳") and "not attempted yet" in out


# --- optimal variance of q --------------------------------------------------------------------


@pytest.mark.parametrize("answer", [
    lambda w, s: 1 / (1 + (w**2).sum() / s**2),
    lambda w, s: s**2 / (s**2 + w @ w),
    lambda w, s: float(s**2 / (s**2 + np.dot(w.numpy(), w.numpy()))),
    # (1, 1)
    lambda w, s: torch.linalg.inv(torch.eye(1, dtype=w.dtype) + w[None] @ w[:, None] / s**2),
])
def test_optimal_q_variance_right_answers(answer, capsys):
    ok, out = verdict(check_optimal_q_variance, answer, capsys)
    assert ok and out.startswith("✅"), out


@pytest.mark.parametrize("answer, hint", [
    (lambda w, s: (1 / (1 + (w**2).sum() / s**2)) ** 0.5, "standard deviation"),
    (lambda w, s: 1 + (w**2).sum() / s**2, "precision"),
    (lambda w, s: 1 / (1 + (w**2).sum() / s), "s where the formula needs s²"),
    (lambda w, s: s**2 / (w**2).sum(), "prior"),
    (lambda w, s: 1 / (1 + w.sum() ** 2 / s**2), "(Σ_i w_i)²"),
    (lambda w, s: 1 / (1 + (w**2).sum() * s**2), "not ‖w‖² s²"),
    (lambda w, s: 2 / (1 + (w**2).sum() / s**2), "twice"),
    (lambda w, s: 1 / (1 + w**2 / s**2), "one number"),
    (lambda w, s: 1 / (2 + (w**2).sum() / s**2), "largest difference"),
])
def test_optimal_q_variance_wrong_answers_get_the_right_hint(answer, hint, capsys):
    ok, out = verdict(check_optimal_q_variance, answer, capsys)
    assert not ok and out.startswith("❌") and hint in out, out


@pytest.mark.parametrize("stub", STUBS)
def test_optimal_q_variance_stubs_are_not_attempted(stub, capsys):
    ok, out = verdict(check_optimal_q_variance, stub, capsys)
    assert not ok and out.startswith("⏳")


# --- mean-field gap ---------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [
    lambda rho: -0.5 * math.log(1 - rho**2),
    lambda rho: -0.5 * np.log1p(-rho * rho),
    lambda rho: 0.5 * torch.log(1 / torch.tensor(1 - rho**2)),
])
def test_mean_field_gap_right_answers(answer, capsys):
    ok, out = verdict(check_mean_field_gap, answer, capsys)
    assert ok and out.startswith("✅"), out


@pytest.mark.parametrize("answer, hint", [
    (lambda rho: 0.5 * math.log(1 - rho**2), "wrong sign"),
    (lambda rho: -math.log(1 - rho**2), "twice"),
    (lambda rho: math.log(1 - rho**2), "two slips"),
    (lambda rho: -0.5 * math.log(1 - rho), "ρ², not ρ"),
    (lambda rho: -0.5 * math.log(1 - abs(rho)), "not |ρ|"),
    (lambda rho: 0.5 * rho**2, "small-ρ approximation"),
    (lambda rho: -0.5 * math.log(1 + rho**2), "1 - ρ², not 1 + ρ²"),
    (lambda rho: [rho, rho], "one number"),
    (lambda rho: -0.5 * math.log(rho), "raised ValueError"),
])
def test_mean_field_gap_wrong_answers_get_the_right_hint(answer, hint, capsys):
    ok, out = verdict(check_mean_field_gap, answer, capsys)
    assert not ok and out.startswith("❌") and hint in out, out


@pytest.mark.parametrize("stub", STUBS)
def test_mean_field_gap_stubs_are_not_attempted(stub, capsys):
    ok, out = verdict(check_mean_field_gap, stub, capsys)
    assert not ok and out.startswith("⏳")


# --- issue 24: library answers refused, float32 blamed on precision, slips told apart
# ---------------

def _kl_torch(mq, vq, mp, vp):
    from torch.distributions import Normal, kl_divergence
    return kl_divergence(Normal(mq, vq.sqrt()), Normal(mp, vp.sqrt()))


def _kl_vaelib(mq, vq, mp, vp):
    from vaelib.kl import gaussian_kl_between
    return gaussian_kl_between(mq[:, None], vq.log()[:, None], mp[:, None], vp.log()[:, None])


@pytest.mark.parametrize("answer", [_kl_torch, _kl_vaelib])
def test_kl_normal_1d_refuses_library_kls(answer, capsys):
    ok, out = verdict(check_kl_normal_1d, answer, capsys)
    assert not ok and "library KL" in out, out


def test_kl_normal_1d_in_float32_passes_or_blames_precision(capsys):
    def kl32(mq, vq, mp, vp):
        mq, vq, mp, vp = (t.float() for t in (mq, vq, mp, vp))
        return 0.5 * (vq / vp + (mq - mp) ** 2 / vp - 1 - torch.log(vq / vp))

    ok, out = verdict(check_kl_normal_1d, kl32, capsys)
    assert ok, out
    assert "broadcast" not in out


def test_optimal_q_variance_two_s_squared_is_not_called_s_for_s_squared(capsys):
    ok, out = verdict(
        check_optimal_q_variance, lambda w, s: 1 / (1 + (w**2).sum() / (2 * s**2)), capsys
    )
    assert not ok and "2s²" in out and "s where the formula needs s²" not in out, out


def test_optimal_q_variance_refuses_the_library_posterior(capsys):
    from vaelib.toy import LinearGaussian

    def library(w, s):
        return LinearGaussian(w[:, None], None, s).posterior_parameters(
            torch.zeros(1, w.shape[0], dtype=w.dtype)
        )[1]

    ok, out = verdict(check_optimal_q_variance, library, capsys)
    assert not ok and "LinearGaussian.posterior" in out, out
