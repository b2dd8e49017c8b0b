"""Chapter 6's exercise checks: right answers pass, typical wrong ones get the right hint, stubs are
"not attempted", and nothing raises or prints a traceback."""

import pytest
import torch

from vaelib.exercises import (check_gaussian_kl, check_kl_from_std, check_kl_full_covariance,
                              check_kl_mean_only)
from vaelib.exercises.ch06 import __all__ as ch06_all


def run(check, answer, capsys):
    ok = check(answer)
    out = capsys.readouterr().out
    assert "Traceback" not in out
    assert out.count("\n") == 1, f"a check prints exactly one line, got {out!r}"
    return ok, out


def stub(*args):
    raise NotImplementedError


def crash(*args):
    raise RuntimeError("boom")


def test_all_lists_the_checks():
    assert set(ch06_all) == {"check_gaussian_kl", "check_kl_full_covariance", "check_kl_mean_only",
                             "check_kl_from_std"}


# ---------------------------------------------------------------------------------------------
# Exercise 1: gaussian_kl(mu, logvar)
# ---------------------------------------------------------------------------------------------

def kl_right(mu, logvar):
    return 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum(-1)


def kl_right_appendix_form(mu, logvar):  # Kingma & Welling's −KL, with the minus in front: right
    return -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=-1)


def kl_right_numpy(mu, logvar):  # a NumPy answer is fine too
    mu, logvar = mu.numpy(), logvar.numpy()
    import numpy as np
    return 0.5 * (np.exp(logvar) + mu**2 - 1 - logvar).sum(-1)


@pytest.mark.parametrize("answer", [kl_right, kl_right_appendix_form, kl_right_numpy])
def test_gaussian_kl_accepts_right_answers(answer, capsys):
    ok, out = run(check_gaussian_kl, answer, capsys)
    assert ok and out.startswith("✅")


def _std(logvar):
    return (0.5 * logvar).exp()


WRONG_GAUSSIAN_KL = {
    "sigma_for_variance": (lambda mu, lv: 0.5 * (_std(lv) + mu**2 - 1 - _std(lv).log()).sum(-1),
                           "σ where the formula has the variance σ²"),
    "sigma_first_term_only": (lambda mu, lv: 0.5 * (_std(lv) + mu**2 - 1 - lv).sum(-1),
                              "not σ = exp(logvar / 2)"),
    "log_sigma": (lambda mu, lv: 0.5 * (lv.exp() + mu**2 - 1 - 0.5 * lv).sum(-1), "not log σ"),
    "missing_half": (lambda mu, lv: (lv.exp() + mu**2 - 1 - lv).sum(-1), "missing factor ½"),
    "wrong_sign": (lambda mu, lv: 0.5 * (1 + lv - mu**2 - lv.exp()).sum(-1), "wrong sign"),
    "no_sum": (lambda mu, lv: 0.5 * (lv.exp() + mu**2 - 1 - lv), "sum over the last dim"),
    "mean_over_dims": (lambda mu, lv: 0.5 * (lv.exp() + mu**2 - 1 - lv).mean(-1), "averaged"),
    "sum_over_everything": (lambda mu, lv: 0.5 * (lv.exp() + mu**2 - 1 - lv).sum(),
                            "single number"),
    "missing_minus_one": (lambda mu, lv: 0.5 * (lv.exp() + mu**2 - lv).sum(-1), "forgot the −1"),
    "plus_log": (lambda mu, lv: 0.5 * (lv.exp() + mu**2 - 1 + lv).sum(-1), "minus sign"),
    "missing_mean": (lambda mu, lv: 0.5 * (lv.exp() - 1 - lv).sum(-1), "½ μ² is missing"),
    "reverse_direction": (lambda mu, lv: 0.5 * ((-lv).exp() * (1 + mu**2) - 1 + lv).sum(-1),
                          "reverse direction"),
    "log_of_logvar": (lambda mu, lv: 0.5 * (lv + mu**2 - 1 - lv.log()).sum(-1), "NaN or infinity"),
    "no_return": (lambda mu, lv: None, "forget `return`"),
}


@pytest.mark.parametrize("name", list(WRONG_GAUSSIAN_KL))
def test_gaussian_kl_hints(name, capsys):
    answer, hint = WRONG_GAUSSIAN_KL[name]
    ok, out = run(check_gaussian_kl, answer, capsys)
    assert not ok and out.startswith("❌")
    assert hint in out, out


def test_gaussian_kl_rejects_a_nonzero_kl_at_the_prior(capsys):
    # right on the random inputs' values is impossible without being 0 at the prior, so test the
    # zero case's message directly with an answer that is right except at exactly logvar = mu = 0
    def shifted(mu, logvar):
        value = kl_right(mu, logvar)
        return value + 1.0 * ((mu == 0) & (logvar == 0)).all(-1)

    ok, out = run(check_gaussian_kl, shifted, capsys)
    assert not ok and "exactly 0" in out


# ---------------------------------------------------------------------------------------------
# Exercise 2: KL of a full-covariance Gaussian to N(0, I)
# ---------------------------------------------------------------------------------------------

def _diag(L):
    return L.diagonal(dim1=-2, dim2=-1)


def full_right(mu, L):
    d = mu.shape[-1]
    return 0.5 * (L.square().sum((-2, -1)) + mu.square().sum(-1) - d - 2 * _diag(L).log().sum(-1))


def full_right_torch(mu, L):  # an independent implementation: torch.distributions
    from torch.distributions import MultivariateNormal, kl_divergence
    d = mu.shape[-1]
    prior = MultivariateNormal(torch.zeros(d, dtype=mu.dtype),
                               covariance_matrix=torch.eye(d, dtype=mu.dtype))
    return kl_divergence(MultivariateNormal(mu, scale_tril=L), prior)


def full_right_slogdet(mu, L):  # forms Σ explicitly: also right
    cov = L @ L.mT
    return 0.5 * (cov.diagonal(dim1=-2, dim2=-1).sum(-1) + (mu**2).sum(-1) - mu.shape[-1]
                  - torch.linalg.slogdet(cov).logabsdet)


@pytest.mark.parametrize("answer", [full_right, full_right_slogdet])
def test_kl_full_covariance_accepts_right_answers(answer, capsys):
    ok, out = run(check_kl_full_covariance, answer, capsys)
    assert ok and out.startswith("✅")


def _full(mu, trace, log_det):
    return 0.5 * (trace + mu.square().sum(-1) - mu.shape[-1] - log_det)


def _trace(L):
    return L.square().sum((-2, -1))


def _log_det(L):
    return 2 * _diag(L).log().sum(-1)


WRONG_FULL = {
    "trace_of_L": (lambda mu, L: _full(mu, _diag(L).sum(-1), _log_det(L)), "not the trace of L"),
    "diagonal_only": (lambda mu, L: _full(mu, _diag(L).square().sum(-1), _log_det(L)),
                      "off-diagonal"),
    "log_det_of_L": (lambda mu, L: _full(mu, _trace(L), 0.5 * _log_det(L)), "factor 2 is missing"),
    "L_as_covariance": (lambda mu, L: _full(mu, _diag(L).sum(-1), 0.5 * _log_det(L)),
                        "not the covariance"),
    "missing_minus_d": (lambda mu, L: _full(mu, _trace(L), _log_det(L)) + 0.5 * mu.shape[-1],
                        "the −d is missing"),
    "plus_log_det": (lambda mu, L: _full(mu, _trace(L), -_log_det(L)), "minus sign"),
    "missing_mean": (lambda mu, L: _full(torch.zeros_like(mu), _trace(L), _log_det(L)),
                     "½ μᵀμ is missing"),
    "reverse": (lambda mu, L: full_right_reverse(mu, L), "reverse direction"),
    "missing_half": (lambda mu, L: 2 * full_right(mu, L), "missing factor ½"),
    "wrong_sign": (lambda mu, L: -full_right(mu, L), "wrong sign"),
    "summed_over_batch": (lambda mu, L: full_right(mu, L).sum(), "single number"),
    "log_of_all_entries": (lambda mu, L: _full(mu, _trace(L), 2 * L.log().sum((-2, -1))),
                           "L's diagonal only"),
}


def full_right_reverse(mu, L):
    cov_inv = torch.linalg.inv(L @ L.mT)
    quad = (mu.unsqueeze(-2) @ cov_inv @ mu.unsqueeze(-1)).squeeze((-2, -1))
    return 0.5 * (cov_inv.diagonal(dim1=-2, dim2=-1).sum(-1) + quad - mu.shape[-1] + _log_det(L))


@pytest.mark.parametrize("name", list(WRONG_FULL))
def test_kl_full_covariance_hints(name, capsys):
    answer, hint = WRONG_FULL[name]
    ok, out = run(check_kl_full_covariance, answer, capsys)
    assert not ok and out.startswith("❌")
    assert hint in out, out


# ---------------------------------------------------------------------------------------------
# Exercise 3: only the mean moves
# ---------------------------------------------------------------------------------------------

def mean_only_right(mu, logvar):
    return 0.5 * (mu**2 * (-logvar).exp()).sum(-1)


def test_kl_mean_only_accepts_the_right_answer(capsys):
    ok, out = run(check_kl_mean_only, mean_only_right, capsys)
    assert ok and "symmetric" in out


WRONG_MEAN_ONLY = {
    "ignores_variance": (lambda mu, lv: 0.5 * (mu**2).sum(-1), "σ = 1 only"),
    "divides_by_std": (lambda mu, lv: 0.5 * (mu**2 / (0.5 * lv).exp()).sum(-1), "not by σ"),
    "multiplies": (lambda mu, lv: 0.5 * (mu**2 * lv.exp()).sum(-1), "don't multiply"),
    "mean_over_dims": (lambda mu, lv: 0.5 * (mu**2 / lv.exp()).mean(-1), "averaged"),
    "prior_kl": (lambda mu, lv: 0.5 * (lv.exp() + mu**2 - 1 - lv).sum(-1), "shares q's variances"),
    "no_sum": (lambda mu, lv: 0.5 * mu**2 / lv.exp(), "sum over the last dim"),
    "missing_half": (lambda mu, lv: (mu**2 / lv.exp()).sum(-1), "missing factor ½"),
    "wrong_sign": (lambda mu, lv: -0.5 * (mu**2 / lv.exp()).sum(-1), "wrong sign"),
}


@pytest.mark.parametrize("name", list(WRONG_MEAN_ONLY))
def test_kl_mean_only_hints(name, capsys):
    answer, hint = WRONG_MEAN_ONLY[name]
    ok, out = run(check_kl_mean_only, answer, capsys)
    assert not ok and out.startswith("❌")
    assert hint in out, out


# ---------------------------------------------------------------------------------------------
# Exercise 4: KL from the standard deviation
# ---------------------------------------------------------------------------------------------

def from_std_right(mu, std):
    return 0.5 * (std**2 + mu**2 - 1 - 2 * std.log()).sum(-1)


def test_kl_from_std_accepts_the_right_answer(capsys):
    ok, out = run(check_kl_from_std, from_std_right, capsys)
    assert ok and out.startswith("✅")


WRONG_FROM_STD = {
    "sigma_for_variance": (lambda mu, s: 0.5 * (s + mu**2 - 1 - s.log()).sum(-1),
                           "σ where the formula has σ²"),
    "log_sigma": (lambda mu, s: 0.5 * (s**2 + mu**2 - 1 - s.log()).sum(-1), "factor 2"),
    "first_term_sigma": (lambda mu, s: 0.5 * (s + mu**2 - 1 - 2 * s.log()).sum(-1), "not std"),
    "std_as_logvar": (lambda mu, s: 0.5 * (s.exp() + mu**2 - 1 - s).sum(-1), "log-variance"),
    "mean_over_dims": (lambda mu, s: 0.5 * (s**2 + mu**2 - 1 - 2 * s.log()).mean(-1), "averaged"),
    "plus_log": (lambda mu, s: 0.5 * (s**2 + mu**2 - 1 + 2 * s.log()).sum(-1), "minus sign"),
    "no_sum": (lambda mu, s: 0.5 * (s**2 + mu**2 - 1 - 2 * s.log()), "sum over the last dim"),
    "missing_half": (lambda mu, s: (s**2 + mu**2 - 1 - 2 * s.log()).sum(-1), "missing factor ½"),
    "log_of_log": (lambda mu, s: 0.5 * (s**2 + mu**2 - 1 - s.log().log()).sum(-1),
                   "std is σ itself"),
}


@pytest.mark.parametrize("name", list(WRONG_FROM_STD))
def test_kl_from_std_hints(name, capsys):
    answer, hint = WRONG_FROM_STD[name]
    ok, out = run(check_kl_from_std, answer, capsys)
    assert not ok and out.startswith("❌")
    assert hint in out, out


# ---------------------------------------------------------------------------------------------
# Every check: stubs, crashes, non-functions
# ---------------------------------------------------------------------------------------------

CHECKS = [check_gaussian_kl, check_kl_full_covariance, check_kl_mean_only, check_kl_from_std]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("answer", [stub, ..., None],
                         ids=["raises_NotImplementedError", "ellipsis", "None"])
def test_stubs_are_not_attempted(check, answer, capsys):
    ok, out = run(check, answer, capsys)
    assert not ok and out.startswith("⏳") and "not attempted yet" in out


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_a_crashing_answer_is_reported_without_a_traceback(check, capsys):
    ok, out = run(check, crash, capsys)
    assert not ok and "RuntimeError: boom" in out


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_a_number_instead_of_a_function_gets_a_hint(check, capsys):
    ok, out = run(check, 1.5, capsys)
    assert not ok and "pass your function itself" in out


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_the_checks_do_not_modify_inputs_seen_by_later_calls(check, capsys):
    """An answer that modifies its inputs in place still gets a fair verdict (inputs are copies)."""
    right = {check_gaussian_kl: kl_right, check_kl_full_covariance: full_right,
             check_kl_mean_only: mean_only_right, check_kl_from_std: from_std_right}[check]

    def in_place(*args):
        value = right(*args)
        for a in args:
            a.zero_()
        return value

    assert run(check, in_place, capsys)[0]
    assert run(check, right, capsys)[0]


def test_the_reference_formulas_are_the_true_kls():
    """The formulas the checks accept agree with torch.distributions (an independent reference)."""
    from torch.distributions import Normal, kl_divergence

    g = torch.Generator().manual_seed(0)
    mu = torch.randn(6, 4, generator=g, dtype=torch.float64)
    logvar = torch.randn(6, 4, generator=g, dtype=torch.float64)
    std = (0.5 * logvar).exp()
    torch.testing.assert_close(mean_only_right(mu, logvar),
                               kl_divergence(Normal(mu, std), Normal(0.0, std)).sum(-1))
    # symmetric
    torch.testing.assert_close(mean_only_right(mu, logvar), mean_only_right(-mu, logvar))
    torch.testing.assert_close(from_std_right(mu, std),
                               kl_divergence(Normal(mu, std), Normal(0.0, 1.0)).sum(-1))
    L = torch.randn(6, 4, 4, generator=g, dtype=torch.float64).tril(-1) + torch.diag_embed(std)
    torch.testing.assert_close(full_right(mu, L), full_right_torch(mu, L))
    torch.testing.assert_close(full_right(mu, torch.diag_embed(std)), kl_right(mu, logvar))


# ---------------------------------------------------------------------------------------------
# Section 8's failure: a log of an underflowed variance is refused, in float32 as in the chapter
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "check, answer, hint",
    [
        (
            check_gaussian_kl,
            lambda mu, logvar: 0.5 * (logvar.exp() + mu**2 - 1 - logvar.exp().log()).sum(-1),
            "logvar = -120",
        ),
        (
            check_gaussian_kl,
            lambda mu, logvar: (
                0.5 * (logvar.exp() + mu**2 - 1 - torch.log(torch.exp(0.5 * logvar) ** 2)).sum(-1)
            ),
            "logvar = -120",
        ),
        (
            check_kl_from_std,
            lambda mu, std: 0.5 * (std**2 + mu**2 - 1 - torch.log(std**2)).sum(-1),
            "std = 1e-25",
        ),
        (
            check_kl_from_std,
            lambda mu, std: 0.5 * (std**2 + mu**2 - 1 - std.square().log()).sum(-1),
            "std = 1e-25",
        ),
    ],
)
def test_a_log_of_an_underflowing_variance_is_refused(check, answer, hint, capsys):
    ok, out = run(check, answer, capsys)
    assert not ok and out.startswith("❌") and hint in out, out


# --- issue 24: library KLs refused; the log σ hint suggests what passes
# --------------------------------

def _vaelib_kl(mu, logvar):
    from vaelib.kl import gaussian_kl
    return gaussian_kl(mu, logvar)


def _vaelib_kl_from_std(mu, std):
    from vaelib.kl import gaussian_kl as kl  # imported under another name
    return kl(mu, 2 * std.log())


def _vaelib_mean_only(mu, logvar):
    from vaelib.kl import gaussian_kl_between
    return gaussian_kl_between(mu, logvar, torch.zeros_like(mu), logvar)


@pytest.mark.parametrize("check, answer", [
    (check_gaussian_kl, _vaelib_kl),
    (check_kl_full_covariance, full_right_torch),
    (check_kl_mean_only, _vaelib_mean_only),
    (check_kl_from_std, _vaelib_kl_from_std),
])
def test_library_kls_are_refused(check, answer, capsys):
    ok, out = run(check, answer, capsys)
    assert not ok and "library KL" in out, out


def test_the_log_sigma_hint_suggests_what_passes_in_float32(capsys):
    ok, out = run(check_kl_from_std,
                  lambda mu, std: 0.5 * (std**2 + mu**2 - 1 - std.log()).sum(-1), capsys)
    assert not ok and "2 * log(std)" in out, out
    # ... and what it suggests passes, also at std = 1e-25 in float32
    ok, out = run(check_kl_from_std,
                  lambda mu, std: 0.5 * (std**2 + mu**2 - 1 - 2 * std.log()).sum(-1), capsys)
    assert ok, out
