"""vaelib.kl against torch.distributions, 1-D quadrature and Monte Carlo, plus properties."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats
from torch.distributions import Normal, kl_divergence

from vaelib.kl import MonteCarloEstimate, gaussian_kl, gaussian_kl_between, mc_kl

F64 = torch.float64
# hypothesis runs a fixed sequence of examples (derandomize): these tests cannot flake
PROPERTY = settings(derandomize=True, database=None, max_examples=60, deadline=None)
finite = st.floats(min_value=-5.0, max_value=5.0, allow_nan=False)


def _params(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64), torch.randn(*shape, generator=g, dtype=F64)


def _normal(mu, logvar):
    return Normal(mu, (0.5 * logvar).exp())


def test_gaussian_kl_matches_torch_distributions():
    mu, logvar = _params(6, 4)
    want = kl_divergence(_normal(mu, logvar), Normal(0.0, 1.0)).sum(-1)
    got = gaussian_kl(mu, logvar)
    assert got.shape == (6,)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_gaussian_kl_between_matches_torch_distributions():
    mu_q, logvar_q = _params(6, 4, seed=1)
    mu_p, logvar_p = _params(6, 4, seed=2)
    want = kl_divergence(_normal(mu_q, logvar_q), _normal(mu_p, logvar_p)).sum(-1)
    torch.testing.assert_close(
        gaussian_kl_between(mu_q, logvar_q, mu_p, logvar_p), want, rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize(
    "mu_q, logvar_q, mu_p, logvar_p",
    [(0.7, -1.3, -0.4, 0.8), (2.0, 1.0, 0.0, 0.0), (-1.0, -3.0, 1.0, -2.0)],
)
def test_kl_matches_quadrature_in_1d(mu_q, logvar_q, mu_p, logvar_p):
    """KL(q ‖ p) = ∫ q(z) log(q(z) / p(z)) dz by scipy.integrate.quad."""
    q = stats.norm(mu_q, math.exp(0.5 * logvar_q))
    p = stats.norm(mu_p, math.exp(0.5 * logvar_p))
    want, abserr = integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z)), -np.inf, np.inf)
    t = lambda v: torch.tensor([v], dtype=F64)  # noqa: E731
    got = gaussian_kl_between(t(mu_q), t(logvar_q), t(mu_p), t(logvar_p)).item()
    assert abs(got - want) < 1e-8 + 10 * abserr
    if mu_p == 0.0 and logvar_p == 0.0:
        assert abs(gaussian_kl(t(mu_q), t(logvar_q)).item() - want) < 1e-8 + 10 * abserr


@pytest.mark.parametrize("prior", [True, False])
def test_mc_kl_within_its_confidence_interval(prior):
    mu_q, logvar_q = _params(5, 3, seed=3)
    mu_p, logvar_p = (None, None) if prior else _params(5, 3, seed=4)
    if prior:
        exact = gaussian_kl(mu_q, logvar_q)
    else:
        exact = gaussian_kl_between(mu_q, logvar_q, mu_p, logvar_p)
    g = torch.Generator().manual_seed(5)
    result = mc_kl(mu_q, logvar_q, mu_p, logvar_p, num_samples=20_000, generator=g)
    assert isinstance(result, MonteCarloEstimate)
    estimate, std_error = result
    assert estimate.shape == std_error.shape == (5,)
    assert ((estimate - exact).abs() < 4 * std_error).all()
    # the standard error is the real spread: sd of log q - log p, over sqrt(K)
    assert (std_error > 0).all() and (std_error < 0.1 * exact.abs().clamp(min=1)).all()


def test_mc_kl_std_error_matches_spread_of_replicates():
    """Independent replicates of the estimate scatter with the reported standard error."""
    mu, logvar = torch.tensor([[1.0, -0.5]], dtype=F64), torch.tensor([[0.5, -1.0]], dtype=F64)
    g = torch.Generator().manual_seed(6)
    reps = [mc_kl(mu, logvar, num_samples=200, generator=g) for _ in range(300)]
    estimates = torch.cat([r.estimate for r in reps])
    mean_se = torch.cat([r.std_error for r in reps]).mean()
    # the sd of 300 replicates is known to about ±4% (1/sqrt(2·300)); allow 20%
    assert abs(estimates.std() / mean_se - 1) < 0.2


@PROPERTY
@given(st.lists(st.tuples(finite, finite, finite, finite), min_size=1, max_size=4))
def test_kl_is_nonnegative_and_zero_only_at_equality(rows):
    mu_q, logvar_q, mu_p, logvar_p = torch.tensor(rows, dtype=F64).T.unsqueeze(1)  # (1, d) each
    assert gaussian_kl(mu_q, logvar_q).item() >= 0
    assert gaussian_kl_between(mu_q, logvar_q, mu_p, logvar_p).item() >= 0
    assert gaussian_kl_between(mu_q, logvar_q, mu_q, logvar_q).item() == 0.0  # exactly
    torch.testing.assert_close(
        gaussian_kl(mu_q, logvar_q),
        gaussian_kl_between(mu_q, logvar_q, torch.zeros_like(mu_q), torch.zeros_like(logvar_q)),
        rtol=1e-12, atol=1e-12,
    )


def test_kl_is_exactly_zero_at_the_prior():
    zeros = torch.zeros(3, 5, dtype=F64)
    assert (gaussian_kl(zeros, zeros) == 0).all()
    assert (gaussian_kl(zeros.float(), zeros.float()) == 0).all()


def test_kl_near_the_prior_has_no_cancellation():
    """σ² - 1 - log σ² ≈ logvar²/2 for small logvar: the expm1 form keeps full relative accuracy."""
    logvar = torch.tensor([[1e-6]], dtype=torch.float32)
    got = gaussian_kl(torch.zeros_like(logvar), logvar).item()
    assert got == pytest.approx(0.25 * 1e-12, rel=1e-3)


@settings(derandomize=True, database=None, max_examples=15, deadline=None)
@given(finite, st.floats(-2.0, 2.0), finite, st.floats(-2.0, 2.0))
def test_gradient_of_closed_form_matches_mean_gradient_of_mc_estimate(mu1, logvar1, mu2, logvar2):
    """∇ gaussian_kl = E[∇ MC estimate] (reparameterization, ch. 7): R independent replicates."""
    R, K = 400, 16
    mu = torch.tensor([mu1, mu2], dtype=F64)
    logvar = torch.tensor([logvar1, logvar2], dtype=F64)
    # exact gradient by autograd of the closed form
    mu_e, logvar_e = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
    gaussian_kl(mu_e, logvar_e).backward()
    # R replicates of the MC estimate: row r's gradient is replicate r's gradient
    mu_r = mu.expand(R, 2).clone().requires_grad_(True)
    logvar_r = logvar.expand(R, 2).clone().requires_grad_(True)
    estimate, _ = mc_kl(mu_r, logvar_r, num_samples=K, generator=torch.Generator().manual_seed(0))
    estimate.sum().backward()
    for exact, grads in [(mu_e.grad, mu_r.grad), (logvar_e.grad, logvar_r.grad)]:
        std_error = grads.std(0) / math.sqrt(R)
        assert ((grads.mean(0) - exact).abs() <= 5 * std_error + 1e-9).all()
    # and the closed form's gradient is the textbook one: ∂/∂μ = μ, ∂/∂logvar = ½ (σ² - 1)
    torch.testing.assert_close(mu_e.grad, mu)
    torch.testing.assert_close(logvar_e.grad, 0.5 * torch.expm1(logvar))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_extreme_values_stay_finite(dtype):
    mu = torch.tensor([[0.0, 1e3, -1e6], [0.0, 0.0, 0.0]], dtype=dtype)
    logvar = torch.tensor([[20.0, -20.0, 0.0], [-20.0, 20.0, 0.0]], dtype=dtype)
    kl = gaussian_kl(mu, logvar)
    assert torch.isfinite(kl).all() and (kl > 0).all()
    want = 0.5 * (np.exp(20.0) - 21 + 1e6 + 1e-20 - 1 + 20 + 1e12)
    assert kl[0].item() == pytest.approx(want, rel=1e-6)
    between = gaussian_kl_between(mu, logvar, mu.flip(0), logvar.flip(0))  # variance ratios e^±40
    assert torch.isfinite(between).all() and (between > 0).all()
    mu.requires_grad_(True)
    logvar.requires_grad_(True)
    gaussian_kl(mu, logvar).sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(logvar.grad).all()


def test_bad_input():
    z = torch.zeros(2, 3, dtype=F64)
    with pytest.raises(ValueError, match="same shape"):
        gaussian_kl(z, torch.zeros(2, 4, dtype=F64))
    with pytest.raises(ValueError, match="same shape"):
        gaussian_kl_between(z, z, z, torch.zeros(3, dtype=F64))
    with pytest.raises(TypeError):
        gaussian_kl([0.0], [0.0])
    with pytest.raises(ValueError, match="both mean_p and logvar_p"):
        mc_kl(z, z, mean_p=z)
    with pytest.raises(ValueError, match="at least 2"):
        mc_kl(z, z, num_samples=1)
    with pytest.raises(ValueError, match="NaN"):
        mc_kl(torch.full((1, 2), float("nan")), torch.zeros(1, 2))


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_infinite_log_variances_give_an_infinite_kl_not_nan(dtype):
    inf = math.inf
    mu = torch.zeros(3, 2, dtype=dtype)
    # σ² = ∞ (q infinitely broad) and σ² = 0 (q a point mass): either way q is infinitely far from
    # N(0, I), as the limits of ½(σ² - 1 - log σ²) say; no ∞ - ∞ = NaN.
    logvar = torch.tensor([[inf, 0.0], [-inf, 0.0], [0.0, 0.0]], dtype=dtype)
    assert gaussian_kl(mu, logvar).tolist() == [inf, inf, 0.0]
    # KL(q ‖ p) with p a point mass (logvar_p = -∞) and q not: +∞, whether the means agree or not.
    mu_p = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]], dtype=dtype)
    logvar_p = torch.tensor([[-inf, 0.0], [-inf, 0.0], [inf, 0.0]], dtype=dtype)
    between = gaussian_kl_between(mu, torch.zeros_like(mu), mu_p, logvar_p)
    assert between.tolist() == [inf, inf, inf]  # p infinitely broad (logvar_p = +∞): +∞ as well
    # Finite log-variances are untouched, and keep finite gradients.
    logvar = torch.tensor([[3.0, -2.0]], dtype=dtype, requires_grad=True)
    kl = gaussian_kl(torch.zeros(1, 2, dtype=dtype), logvar)
    assert kl.item() == pytest.approx(0.5 * (math.exp(3) - 4 + math.exp(-2) + 1), rel=1e-6)
    kl.backward()
    torch.testing.assert_close(logvar.grad, 0.5 * torch.expm1(logvar.detach()))
