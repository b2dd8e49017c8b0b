"""The chapter 11 checks: right answers pass, typical slips get their hint, shortcuts (autograd, a
determinant, vaelib.flows) are refused, stubs are "not attempted yet", nothing raises; and the
checks' own references agree with autograd's Jacobian."""

from __future__ import annotations

import importlib
import math

import numpy as np
import pytest
import torch

from tests.exercise_helpers import not_implemented, stub_body, verdict
from vaelib.exercises import check_planar_log_det, check_push_forward
from vaelib.exercises import ch11

LOG_2PI = math.log(2 * math.pi)


# --- right answers -----------------------------------------------------------------------------

def planar_log_det(z, u_hat, w, b):
    h_prime = 1 - torch.tanh(z @ w + b).square()
    return torch.log(torch.abs(1 + h_prime * (u_hat @ w)))


def push_forward(eps, mean, logvar, maps):
    z = mean + torch.exp(0.5 * logvar) * eps
    log_q = -0.5 * (eps.square() + LOG_2PI + logvar).sum(-1)
    for u_hat, w, b in maps:
        log_q = log_q - planar_log_det(z, u_hat, w, b)
        z = z + u_hat * torch.tanh(z @ w + b)[:, None]
    return z, log_q


def push_forward_with_distributions(eps, mean, logvar, maps):
    std = torch.exp(0.5 * logvar)
    z = mean + std * eps
    log_q = torch.distributions.Normal(mean, std).log_prob(z).sum(-1)
    for u_hat, w, b in maps:
        a = z @ w + b
        log_q -= torch.log1p((1 / torch.cosh(a)).square() * torch.dot(u_hat, w))
        z = z + torch.outer(torch.tanh(a), u_hat)
    return z, log_q


def test_right_answers_pass(capsys):
    for answer in (
        planar_log_det,
        lambda z, u, w, b: torch.log1p((1 / torch.cosh(z @ w + b)) ** 2 * torch.dot(u, w)),
        lambda z, u, w, b: np.log(np.abs(1 + (1 - np.tanh(z.numpy() @ w.numpy() + b.item())**2)
                                         * float(u @ w))),
        lambda z, u, w, b: planar_log_det(z, u, w, b).float(),  # float32 is compared as float32
    ):
        ok, out = verdict(check_planar_log_det, answer, capsys)
        assert ok and out.startswith("✅"), out
    for answer in (push_forward, push_forward_with_distributions):
        ok, out = verdict(check_push_forward, answer, capsys)
        assert ok and out.startswith("✅"), out


def test_right_answers_pass_on_many_random_draws(capsys):
    for _ in range(20):  # each call draws a new random case
        assert verdict(check_planar_log_det, planar_log_det, capsys)[0]
        assert verdict(check_push_forward, push_forward, capsys)[0]


# --- the references are right: autograd's Jacobian --------------------------------------------

def _planar(z, u_hat, w, b):
    return z + u_hat * torch.tanh(z @ w + b)


@pytest.mark.parametrize("seed", range(5))
def test_the_planar_reference_is_log_abs_det_of_the_autograd_jacobian(seed):
    g = torch.Generator().manual_seed(seed)
    d = 1 + seed
    u_hat, w, b = ch11._planar_params(g, d, scale=1.5)
    z = torch.randn(4, d, generator=g, dtype=torch.float64)
    for k in range(4):
        jac = torch.autograd.functional.jacobian(lambda v: _planar(v, u_hat, w, b), z[k])
        want = torch.linalg.slogdet(jac).logabsdet
        got = ch11._planar_reference(z[k:k + 1], u_hat, w, b)[0]
        assert torch.isclose(got, want, rtol=1e-10, atol=1e-12)
    assert (w @ u_hat) >= -1 - 1e-12  # the constraint holds for the raw draws


def test_the_push_forward_reference_is_the_change_of_variables_of_the_whole_chain():
    """log q_L(z_L) = log N(ε) − log |det ∂z_L/∂ε| with the Jacobian of the whole chain."""
    for eps, mean, logvar, maps in ch11._push_cases():
        z_ref, log_q_ref = ch11._push_forward_reference(eps, mean, logvar, maps)

        def chain(e):
            z = mean + torch.exp(0.5 * logvar) * e
            for u_hat, w, b in maps:
                z = _planar(z[None], u_hat, w, b)[0]
            return z

        for k in range(len(eps)):
            jac = torch.autograd.functional.jacobian(chain, eps[k])
            want = (-0.5 * (eps[k].square() + LOG_2PI).sum()
                    - torch.linalg.slogdet(jac).logabsdet)
            assert torch.isclose(log_q_ref[k], want, rtol=1e-10, atol=1e-10)
            assert torch.allclose(z_ref[k], chain(eps[k]), rtol=1e-12)


def test_the_push_forward_reference_integrates_to_one_in_1d():
    """The density of z_L, on a grid of ε (z_L increases with ε in 1-D), integrates to 1."""
    g = torch.Generator().manual_seed(3)
    _, mean, logvar, maps = ch11._push_case(g, 1, 1, 4)
    eps = torch.linspace(-12, 12, 40001, dtype=torch.float64)[:, None]
    z, log_q = ch11._push_forward_reference(eps, mean, logvar, maps)
    z = z[:, 0]
    assert (z.diff() > 0).all()
    assert torch.isclose(torch.trapezoid(log_q.exp(), z), torch.tensor(1.0, dtype=torch.float64),
                         atol=1e-8)


# --- wrong answers get their hint --------------------------------------------------------------

@pytest.mark.parametrize("answer, hint", [
    (lambda z, u, w, b: torch.log(1 + torch.tanh(z @ w + b) * (u @ w)), "derivative of tanh"),
    (lambda z, u, w, b: torch.log(1 + (1 - torch.tanh(z @ w + b)) * (u @ w)), "not 1 − tanh"),
    (lambda z, u, w, b: torch.log(torch.abs((1 - torch.tanh(z @ w + b) ** 2) * (u @ w))),
     "dropped the identity"),
    (lambda z, u, w, b: torch.log((1 - torch.tanh(z @ w + b) ** 2) * (u @ w)), "the identity"),
    (lambda z, u, w, b: 1 + (1 - torch.tanh(z @ w + b) ** 2) * (u @ w), "return its log"),
    (lambda z, u, w, b: torch.log(1 + (1 - torch.tanh(z @ w) ** 2) * (u @ w)), "left b out"),
    (lambda z, u, w, b: torch.log(1 + (1 - torch.tanh(z @ w + b) ** 2) * (w @ w)), "wᵀw"),
    (lambda z, u, w, b: torch.log(1 + (1 - torch.tanh(z @ w + b) ** 2) * (u @ u)), "ûᵀû"),
    (lambda z, u, w, b: torch.log(1 + (1 - torch.tanh(z @ w + b) ** 2)[:, None] * u * w),
     "one log-determinant per point"),
    (lambda z, u, w, b: -planar_log_det(z, u, w, b), "wrong sign"),
])
def test_planar_slips_get_their_hint(answer, hint, capsys):
    ok, out = verdict(check_planar_log_det, answer, capsys)
    assert not ok and out.startswith("❌") and hint in out, out


def _slip(**switches):
    return lambda eps, mean, logvar, maps: ch11._push_forward_reference(
        eps, mean, logvar, maps, **switches)


@pytest.mark.parametrize("answer, hint", [
    (_slip(det_sign=1.0), "subtract them"),
    (_slip(base_at_output=True), "density of z_0"),
    (_slip(base_scale=False), "Σ_j log σ_j"),
    (_slip(det_at_output=True), "at its own input"),
    (_slip(last_only=True), "only the last map"),
    (_slip(reverse=True), "reverse order"),
    (lambda eps, mean, logvar, maps: push_forward(eps, mean, logvar, maps)[1], "two things"),
    (lambda eps, mean, logvar, maps: (mean + torch.exp(0.5 * logvar) * eps,
                                      push_forward(eps, mean, logvar, maps)[1]), "returned z_0"),
])
def test_push_forward_slips_get_their_hint(answer, hint, capsys):
    ok, out = verdict(check_push_forward, answer, capsys)
    assert not ok and out.startswith("❌") and hint in out, out


def test_a_hard_coded_shape_fails():
    """An answer written for d = 2 only (the first case's) meets other dimensions."""
    def two_d_only(z, u, w, b):
        assert z.shape[1] == 2
        return planar_log_det(z, u, w, b)
    assert not check_planar_log_det(two_d_only)


def test_the_formula_is_shown_only_after_three_tries(capsys, monkeypatch):
    from vaelib.exercises import _core

    monkeypatch.setattr(_core, "_failures", {})
    wrong = lambda z, u, w, b: torch.log(1 + torch.tanh(z @ w + b) * (u @ w))  # noqa: E731
    outs = [verdict(check_planar_log_det, wrong, capsys)[1] for _ in range(3)]
    assert "tanh²(wᵀz + b)) ûᵀw" not in outs[0] + outs[1]
    assert "After 3 tries, the formula" in outs[2], outs[2]


# --- shortcuts are refused ---------------------------------------------------------------------

def _jacobian_answer(z, u_hat, w, b):
    return torch.stack([
        torch.linalg.slogdet(torch.autograd.functional.jacobian(
            lambda v: _planar(v, u_hat, w, b), zk)).logabsdet for zk in z])


def _det_answer(z, u_hat, w, b):
    h = 1 - torch.tanh(z @ w + b).square()  # (K,)
    eye = torch.eye(len(w), dtype=z.dtype)
    return torch.stack([torch.linalg.det(eye + hk * torch.outer(u_hat, w)).abs().log()
                        for hk in h])


def _grad_answer(z, u_hat, w, b):
    """The Jacobian row by row with torch.autograd.grad, then the lemma's scalar anyway."""
    z = z.clone().requires_grad_(True)
    a = z @ w + b
    (h_prime,) = torch.autograd.grad(torch.tanh(a).sum(), z)  # h'(a) w
    return torch.log(1 + h_prime.detach() @ u_hat)


@pytest.mark.parametrize("answer, hint", [
    (_jacobian_answer, "autograd"),
    (_det_answer, "O(d³)"),
    (_grad_answer, "autograd"),
])
def test_planar_shortcuts_are_refused(answer, hint, capsys):
    ok, out = verdict(check_planar_log_det, answer, capsys)
    assert not ok and hint in out, out


def test_push_forward_with_autograd_is_refused(capsys):
    def with_jacobian(eps, mean, logvar, maps):
        z, _ = push_forward(eps, mean, logvar, maps)
        log_q = -0.5 * (eps.square() + LOG_2PI).sum(-1)
        for k in range(len(eps)):
            def chain(e):
                return push_forward(e[None], mean, logvar, maps)[0][0]
            log_q[k] -= torch.linalg.slogdet(
                torch.autograd.functional.jacobian(chain, eps[k])).logabsdet
        return z, log_q
    ok, out = verdict(check_push_forward, with_jacobian, capsys)
    assert not ok and ("autograd" in out or "O(d³)" in out), out


def test_the_library_flow_is_refused(capsys):
    flows = pytest.importorskip("vaelib.flows")
    assert ch11._flow_shortcuts(), "vaelib.flows exists: its functions must be forbidden"

    def with_library(z, u_hat, w, b):
        flow = flows.PlanarFlow(z.shape[-1])
        with torch.no_grad():
            flow.u.copy_(u_hat)  # û of a raw u with wᵀu ≥ -1 ... the check refuses it anyway
            flow.w.copy_(w)
            flow.b.copy_(b)
        return flow(z)[1].detach()
    ok, out = verdict(check_planar_log_det, with_library, capsys)
    assert not ok and "vaelib.flows" in out, out


def test_the_checks_work_without_vaelib_flows(monkeypatch, capsys):
    real = importlib.import_module

    def no_flows(name, *args, **kwargs):
        if name == "vaelib.flows":
            raise ImportError(name)
        return real(name, *args, **kwargs)
    monkeypatch.setattr(ch11.importlib, "import_module", no_flows)
    assert ch11._flow_shortcuts() == []
    assert verdict(check_planar_log_det, planar_log_det, capsys)[0]


# --- stubs, crashes, non-functions -------------------------------------------------------------

@pytest.mark.parametrize("check", [check_planar_log_det, check_push_forward])
@pytest.mark.parametrize("stub", [..., None, not_implemented, stub_body])
def test_stubs_are_not_attempted(check, stub, capsys):
    ok, out = verdict(check, stub, capsys)
    assert not ok and out.startswith("⏳"), out


@pytest.mark.parametrize("check", [check_planar_log_det, check_push_forward])
def test_crash_and_non_function(check, capsys):
    ok, out = verdict(check, lambda *args: args[0] @ torch.zeros(7, 7, dtype=torch.float64), capsys)
    assert not ok and "raised RuntimeError" in out, out
    ok, out = verdict(check, torch.zeros(3), capsys)
    assert not ok and "the function itself" in out, out


def test_checks_are_exported():
    assert set(ch11.__all__) == {"check_planar_log_det", "check_push_forward"}
