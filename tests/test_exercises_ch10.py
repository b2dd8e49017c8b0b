"""The chapter 10 checks: right answers pass, typical slips get the right hint, stubs are "not
attempted yet", and nothing ever raises or prints a traceback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vaelib.exercises import (
    check_dreg_encoder_gradient,
    check_iwae_gradient,
    check_normalized_weights,
)
from tests.exercise_helpers import (
    verdict,
    not_implemented as _not_implemented,
    stub_body as _stub_body,
)


# --- normalized_weights ------------------------------------------------------------------------

def test_normalized_weights_right_answers(capsys):
    for answer in (
        lambda log_w: torch.softmax(log_w, dim=0),
        lambda log_w: torch.exp(log_w - torch.logsumexp(log_w, dim=0)),
        lambda log_w: (lambda e: e / e.sum(0))((log_w - log_w.max(0).values).exp()),
        lambda log_w: torch.softmax(log_w, 0).numpy(),  # NumPy is accepted
    ):
        ok, out = verdict(check_normalized_weights, answer, capsys)
        assert ok and out.startswith("✅"), out


@pytest.mark.parametrize("answer, hint", [
    (lambda log_w: log_w.exp(), "divide by their sum"),
    (lambda log_w: torch.softmax(log_w, dim=1), "over dim 1"),
    (lambda log_w: log_w.exp() / log_w.shape[0], "divided by K"),
    (lambda log_w: torch.softmax(log_w, 0).square(), "squared"),
    (lambda log_w: log_w - torch.logsumexp(log_w, 0), "exponentiate"),
    (lambda log_w: log_w.exp() / log_w.exp().sum(0), "underflows"),  # the naive ratio: 0/0 at -1000
    (lambda log_w: torch.softmax(log_w, 0)[0], "shape"),
])
def test_normalized_weights_wrong_answers_get_the_right_hint(answer, hint, capsys):
    ok, out = verdict(check_normalized_weights, answer, capsys)
    assert not ok and out.startswith("❌") and hint in out, out


# --- iwae_gradient -----------------------------------------------------------------------------

def test_iwae_gradient_right_answers(capsys):
    for answer in (
        lambda grads, log_w: (torch.softmax(log_w, 0)[:, None] * grads).sum(0),
        lambda grads, log_w: torch.softmax(log_w, 0) @ grads,
        lambda grads, log_w: np.asarray(torch.softmax(log_w, 0) @ grads),
    ):
        ok, out = verdict(check_iwae_gradient, answer, capsys)
        assert ok and out.startswith("✅"), out


@pytest.mark.parametrize("answer, hint", [
    (lambda grads, log_w: grads.mean(0), "ELBO's gradient"),
    (lambda grads, log_w: torch.softmax(log_w, 0).square() @ grads, "DReG's weights"),
    (lambda grads, log_w: (torch.softmax(log_w, 0)[:, None] * grads).mean(0), "sum them"),
    (lambda grads, log_w: log_w.exp() @ grads, "normalize"),
    (lambda grads, log_w: -(torch.softmax(log_w, 0) @ grads), "wrong sign"),
    (lambda grads, log_w: torch.softmax(log_w, 0)[:, None] * grads, "shape"),
])
def test_iwae_gradient_wrong_answers_get_the_right_hint(answer, hint, capsys):
    ok, out = verdict(check_iwae_gradient, answer, capsys)
    assert not ok and out.startswith("❌") and hint in out, out


def test_iwae_gradient_hard_coded_k_fails_on_k1(capsys):
    def five_only(grads, log_w):  # right for K = 5, breaks for K = 1
        return torch.softmax(log_w[:5], 0) @ grads[:5] if len(log_w) == 5 else grads.sum(0) * 0
    ok, out = verdict(check_iwae_gradient, five_only, capsys)
    assert not ok and "K = 1" in out, out


# --- dreg_encoder_gradient ---------------------------------------------------------------------

def test_dreg_encoder_gradient_right_answers(capsys):
    for answer in (
        lambda g, log_w: (torch.softmax(log_w, 0).square()[:, None] * g).sum(0),
        lambda g, log_w: torch.softmax(log_w, 0).pow(2) @ g,
        lambda g, log_w: torch.exp(2 * (log_w - torch.logsumexp(log_w, 0))) @ g,
    ):
        ok, out = verdict(check_dreg_encoder_gradient, answer, capsys)
        assert ok and out.startswith("✅"), out


@pytest.mark.parametrize("answer, hint", [
    (lambda g, log_w: torch.softmax(log_w, 0) @ g, "biased for K > 1"),
    (lambda g, log_w: torch.softmax(2 * log_w, 0) @ g, "normalized the squared"),
    (lambda g, log_w: g.mean(0), "equal weights"),
    (lambda g, log_w: log_w.exp().square() @ g, "unnormalized"),
    (lambda g, log_w: torch.softmax(log_w, 0).square().sum() * g.sum(0), "its own"),
    (lambda g, log_w: 2 * (torch.softmax(log_w, 0).square() @ g), "twice"),
])
def test_dreg_encoder_gradient_wrong_answers_get_the_right_hint(answer, hint, capsys):
    ok, out = verdict(check_dreg_encoder_gradient, answer, capsys)
    assert not ok and out.startswith("❌") and hint in out, out


# --- all three ---------------------------------------------------------------------------------

@pytest.mark.parametrize("check", [check_normalized_weights, check_iwae_gradient,
                                   check_dreg_encoder_gradient])
@pytest.mark.parametrize("stub", [..., None, _not_implemented, _stub_body])
def test_stubs_are_not_attempted(check, stub, capsys):
    ok, out = verdict(check, stub, capsys)
    assert not ok and out.startswith("⏳")


@pytest.mark.parametrize("check", [check_normalized_weights, check_iwae_gradient,
                                   check_dreg_encoder_gradient])
def test_crash_and_non_function(check, capsys):
    ok, out = verdict(check, lambda *args: args[0] @ torch.zeros(7, 7, dtype=torch.float64), capsys)
    assert not ok and "raised RuntimeError" in out
    ok, out = verdict(check, torch.zeros(3), capsys)
    assert not ok and "the function itself" in out


def test_checks_are_exported():
    import vaelib.exercises.ch10 as ch10

    assert set(ch10.__all__) == {"check_normalized_weights", "check_iwae_gradient",
                                 "check_dreg_encoder_gradient"}
