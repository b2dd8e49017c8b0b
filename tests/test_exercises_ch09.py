"""The chapter 9 checks: right answers pass, typical slips get the right hint, stubs are "not
attempted yet", and nothing ever raises or prints a traceback."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from vaelib.exercises import check_inverse_cdf_grid, check_prior_mass_within, check_slerp
from tests.exercise_helpers import (
    verdict,
    not_implemented as _not_implemented,
    stub_body as _stub_body,
)


def _crash(*args):
    raise RuntimeError("boom")


# --- slerp -------------------------------------------------------------------------------------

def _angle(z0, z1):
    return torch.arccos(torch.dot(z0, z1) / (z0.norm() * z1.norm()))


def slerp_right(z0, z1, t):
    omega = _angle(z0, z1)
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


def slerp_numpy(z0, z1, t):
    a, b = z0.numpy(), z1.numpy()
    omega = np.arccos(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def test_slerp_right_answers(capsys):
    for answer in (slerp_right, slerp_numpy):
        ok, out = verdict(check_slerp, answer, capsys)
        assert ok and out.startswith("✅"), out


@pytest.mark.parametrize("answer, hint", [
    (lambda z0, z1, t: (1 - t) * z0 + t * z1, "straight line"),
    (lambda z0, z1, t: slerp_right(z1, z0, t), "backwards"),
    (lambda z0, z1, t: torch.sin((1 - t) * _angle(z0, z1)) * z0
     + torch.sin(t * _angle(z0, z1)) * z1, "divide both weights by sin Ω"),
    (lambda z0, z1, t: slerp_right(z0 / z0.norm(), z1 / z1.norm(), t), "unit vectors"),
    (lambda z0, z1, t: (torch.sin((1 - t) * torch.cos(_angle(z0, z1))) * z0
                        + torch.sin(t * torch.cos(_angle(z0, z1))) * z1)
     / torch.sin(torch.cos(_angle(z0, z1))), "cos Ω where"),
    (lambda z0, z1, t: (torch.sin((1 - t) * torch.arccos(z0 @ z1)) * z0
                        + torch.sin(t * torch.arccos(z0 @ z1)) * z1)
     / torch.sin(torch.arccos(z0 @ z1)), "NaN"),
    (lambda z0, z1, t: slerp_right(z0, z1, t)[:3], "shape"),
    (lambda z0, z1, t: -slerp_right(z0, z1, t), "wrong sign"),
])
def test_slerp_wrong_answers_get_the_right_hint(answer, hint, capsys):
    ok, out = verdict(check_slerp, answer, capsys)
    assert not ok and out.startswith("❌") and hint in out, out


def test_slerp_stubs_and_crashes(capsys):
    for stub in (..., None, _not_implemented, _stub_body):
        ok, out = verdict(check_slerp, stub, capsys)
        assert not ok and "not attempted yet" in out
    ok, out = verdict(check_slerp, _crash, capsys)
    assert not ok and "RuntimeError: boom" in out
    ok, out = verdict(check_slerp, slerp_right(torch.ones(2), torch.tensor([1.0, -1.0]), 0.5),
                      capsys)
    assert not ok and "function itself" in out


# --- inverse_cdf_grid --------------------------------------------------------------------------

def grid_right(n):
    return stats.norm.ppf((np.arange(n) + 0.5) / n)


def grid_torch(n):
    return torch.special.ndtri((torch.arange(n, dtype=torch.float64) + 0.5) / n)


def test_inverse_cdf_grid_right_answers(capsys):
    for answer in (grid_right, grid_torch, lambda n: list(grid_right(n))):
        ok, out = verdict(check_inverse_cdf_grid, answer, capsys)
        assert ok and out.startswith("✅"), out


@pytest.mark.parametrize("answer, hint", [
    (lambda n: np.linspace(-2, 2, n), "evenly spaced in z"),
    (lambda n: np.linspace(grid_right(n)[0], grid_right(n)[-1], n), "evenly spaced in z"),
    (lambda n: (np.arange(n) + 0.5) / n, "these are the probabilities"),
    (lambda n: stats.norm.cdf((np.arange(n) + 0.5) / n), "you applied Φ"),
    (lambda n: stats.norm.ppf(np.linspace(0, 1, n)), "infinite"),
    (lambda n: stats.norm.ppf((np.arange(n) + 1) / (n + 1)), "(i + 1)/(n + 1)"),
    (lambda n: grid_right(n)[::-1].copy(), "decrease"),
    (lambda n: grid_right(n)[:-1], "shape"),
    (lambda n: 2 * grid_right(n), "twice"),
])
def test_inverse_cdf_grid_wrong_answers_get_the_right_hint(answer, hint, capsys):
    ok, out = verdict(check_inverse_cdf_grid, answer, capsys)
    assert not ok and out.startswith("❌") and hint in out, out


def test_inverse_cdf_grid_stubs(capsys):
    for stub in (..., _not_implemented, _stub_body):
        ok, out = verdict(check_inverse_cdf_grid, stub, capsys)
        assert not ok and "not attempted yet" in out


# --- prior_mass_within -------------------------------------------------------------------------

def test_prior_mass_within_right_answers(capsys):
    for answer in (lambda r, d: stats.chi2.cdf(r**2, d), lambda r, d: stats.chi.cdf(r, d),
                   lambda r, d: torch.special.gammainc(torch.tensor(d / 2),
                                                       torch.tensor(r**2 / 2))):
        ok, out = verdict(check_prior_mass_within, answer, capsys)
        assert ok and out.startswith("✅"), out


@pytest.mark.parametrize("answer, hint", [
    (lambda r, d: stats.chi2.cdf(r, d), "at radius², not at radius"),
    (lambda r, d: 1 - math.exp(-r**2 / 2), "in d = 2 only"),
    (lambda r, d: (2 * stats.norm.cdf(r) - 1) ** d, "cube"),
    (lambda r, d: stats.chi2.sf(r**2, d), "outside"),
    (lambda r, d: np.full(3, stats.chi2.cdf(r**2, d)), "one probability"),
    (lambda r, d: 0.5 * stats.chi2.cdf(r**2, d), "half"),
])
def test_prior_mass_within_wrong_answers_get_the_right_hint(answer, hint, capsys):
    ok, out = verdict(check_prior_mass_within, answer, capsys)
    assert not ok and out.startswith("❌") and hint in out, out


def test_prior_mass_within_stubs(capsys):
    for stub in (..., _not_implemented, _stub_body):
        ok, out = verdict(check_prior_mass_within, stub, capsys)
        assert not ok and "not attempted yet" in out


# --- issue 24: vaelib's own functions, a table of the fixed cases, named slips
# ---------------------

def test_vaelibs_own_slerp_is_refused_even_imported_before_the_check(capsys):
    from vaelib.latent import slerp  # as the chapter imports it

    ok, out = verdict(check_slerp, lambda z0, z1, t: slerp(z0, z1, t)[0], capsys)
    assert not ok and "vaelib's own vaelib.latent.slerp" in out, out


def test_vaelibs_own_grid_is_refused(capsys):
    from vaelib.latent import inverse_cdf_grid as grid

    ok, out = verdict(check_inverse_cdf_grid, lambda n: grid(n, dtype=torch.float64), capsys)
    assert not ok and "vaelib's own" in out, out


def test_slerp_with_the_angle_in_degrees_is_named(capsys):
    def degrees(z0, z1, t):
        omega = torch.rad2deg(_angle(z0, z1))
        return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)

    ok, out = verdict(check_slerp, degrees, capsys)
    assert not ok and "in degrees" in out, out


def test_prior_mass_with_d_minus_one_degrees_of_freedom_is_named(capsys):
    ok, out = verdict(check_prior_mass_within, lambda r, d: stats.chi2.cdf(r**2, d - 1), capsys)
    assert not ok and "d - 1 degrees of freedom" in out, out


def test_prior_mass_table_of_the_fixed_cases_is_refused(capsys):
    fixed = ((1.0, 2), (2.0, 2), (1.5, 1), (math.sqrt(25.0), 50), (3.0, 5))
    table = {case: stats.chi2.cdf(case[0] ** 2, case[1]) for case in fixed}
    for _ in range(5):
        ok, out = verdict(check_prior_mass_within, lambda r, d: table.get((r, d), 0.5), capsys)
        assert not ok, out
