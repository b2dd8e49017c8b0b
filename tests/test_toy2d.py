"""vaelib.toy.NonlinearToy2D against scipy.integrate.dblquad, scipy.stats, a linear-Gaussian limit
and importance sampling."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from vaelib.estimators import log_importance_weights
from vaelib.gaussian import DiagonalGaussian
from vaelib.montecarlo import assert_unbiased
from vaelib.protocols import LatentVariableModel, SamplesPrior
from vaelib.toy import LinearGaussian, NonlinearToy2D

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


TOYS = [
    NonlinearToy2D(),  # hyperbola a z₁z₂, s = 0.3: two curved modes
    NonlinearToy2D(noise_std=0.2, curve="parabola", a=1.0),  # banana, two modes for x > 1/2
    NonlinearToy2D(noise_std=0.5, curve="hyperbola", a=2.0),
]
X = torch.tensor([[1.0], [0.0], [2.0], [-1.5]], dtype=F64)


def _f(toy, z1, z2):
    """The decoder written again in plain Python: a z₁ z₂ or z₂ + a z₁²."""
    return toy.a * z1 * z2 if toy.curve == "hyperbola" else z2 + toy.a * z1 * z1


def _log_joint_py(toy, x, z1, z2):
    """log N(z; 0, I) + log N(x; f(z), s²) in plain Python (independent of the model's torch)."""
    s = toy.noise_std
    return (-0.5 * (z1 * z1 + z2 * z2) - math.log(2 * math.pi)
            - 0.5 * ((x - _f(toy, z1, z2)) / s) ** 2 - 0.5 * math.log(2 * math.pi * s * s))


def _dblquad_log_marginal(toy, x, limit=8.0):
    """log ∬ p(x, z) dz by adaptive quadrature, scaled by the grid maximum for stability."""
    log_max = toy.log_joint(torch.tensor([[x]], dtype=F64),
                            toy.grid_points(toy.z_grid, toy.z_grid)[:, :, None]).max().item()

    def integrand(z2, z1):
        return math.exp(_log_joint_py(toy, x, z1, z2) - log_max)

    value, abserr = integrate.dblquad(integrand, -limit, limit, -limit, limit,
                                      epsabs=0, epsrel=1e-11)
    return math.log(value) + log_max, abserr / value


def test_shapes_and_protocol():
    toy = NonlinearToy2D()
    assert isinstance(toy, LatentVariableModel) and isinstance(toy, SamplesPrior)
    assert (toy.latent_dim, toy.data_dim) == (2, 1)
    x, z = toy.sample(5, generator=_gen(0))
    assert x.shape == (5, 1) and z.shape == (5, 2) and x.dtype == F64
    zk = toy.sample_prior(7, num_points=5, generator=_gen(1))
    assert zk.shape == (7, 5, 2)
    assert toy.log_joint(x, zk).shape == (7, 5) and toy.log_likelihood(x, z).shape == (5,)
    assert toy.log_marginal(x).shape == (5,)
    assert toy.log_posterior_density(x, zk).shape == (7, 5)
    mean, cov = toy.posterior_moments(x)
    assert mean.shape == (5, 2) and cov.shape == (5, 2, 2)
    assert repr(toy) == "NonlinearToy2D(noise_std=0.3, curve='hyperbola', a=1.0)"


@pytest.mark.parametrize("toy", TOYS, ids=repr)
def test_densities_match_scipy(toy):
    x, _ = toy.sample(4, generator=_gen(2))
    z = toy.sample_prior(3, num_points=4, generator=_gen(3))  # (K, N, 2)
    zn = z.numpy()
    np.testing.assert_allclose(toy.log_prior(z).numpy(), stats.norm.logpdf(zn).sum(-1),
                               rtol=1e-12)
    mean = _f(toy, zn[..., 0], zn[..., 1])  # (K, N)
    want = stats.norm.logpdf(x.numpy()[:, 0], loc=mean, scale=toy.noise_std)
    np.testing.assert_allclose(toy.log_likelihood(x, z).numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("toy", TOYS, ids=repr)
def test_log_marginal_matches_scipy_dblquad(toy):
    got = toy.log_marginal(X)
    for n in range(len(X)):
        want, rel_err = _dblquad_log_marginal(toy, X[n, 0].item())
        assert rel_err < 1e-9
        assert got[n].item() == pytest.approx(want, abs=1e-8)


def test_parabola_without_curvature_is_linear_gaussian():
    """a = 0: x = z₂ + noise is the linear model with W = [[0, 1]], b = 0 (closed forms)."""
    toy = NonlinearToy2D(noise_std=0.4, curve="parabola", a=0.0)
    linear = LinearGaussian(torch.tensor([[0.0, 1.0]]), None, 0.4)
    x = linear.sample(6, generator=_gen(4))[0]
    torch.testing.assert_close(toy.log_marginal(x), linear.log_marginal(x), rtol=0, atol=1e-11)
    z = toy.sample_prior(5, num_points=6, generator=_gen(5))
    torch.testing.assert_close(toy.log_posterior_density(x, z),
                               linear.log_posterior_density(x, z), rtol=0, atol=1e-10)
    mean, cov = toy.posterior_moments(x)
    want_mean, want_cov = linear.posterior_parameters(x)
    torch.testing.assert_close(mean, want_mean, rtol=0, atol=1e-10)
    torch.testing.assert_close(cov, want_cov.expand(6, 2, 2), rtol=0, atol=1e-10)


@pytest.mark.parametrize("toy", TOYS, ids=repr)
def test_posterior_integrates_to_one_on_another_grid(toy):
    """∬ p(z|x) dz = 1 on a grid unlike the quadrature grid (other step, other limits)."""
    z1, z2, density = toy.posterior_grid(X, limit=7.3, size=367)  # step 0.04: not the model's
    assert z1.shape == z2.shape == (367,) and density.shape == (4, 367, 367)
    step = (z1[1] - z1[0]).item()
    torch.testing.assert_close(density.sum(dim=(1, 2)) * step**2, torch.ones(4, dtype=F64),
                               rtol=0, atol=1e-8)


def test_posterior_grid_layout_is_rows_z2_columns_z1():
    """density[n, i, j] = p(z₁ = z1[j], z₂ = z2[i] | x): the parabola's posterior is not symmetric
    in swapping z₁ and z₂, so a transposed grid would fail."""
    toy = NonlinearToy2D(curve="parabola")
    x = torch.tensor([[1.0]], dtype=F64)
    z1, z2, density = toy.posterior_grid(x, limit=3.0, size=31)
    for i, j in [(3, 17), (20, 5), (25, 29)]:
        z = torch.stack([z1[j], z2[i]])[None]  # (1, 2)
        want = math.exp(_log_joint_py(toy, 1.0, z1[j].item(), z2[i].item())
                        - toy.log_marginal(x).item())
        assert density[0, i, j].item() == pytest.approx(want, rel=1e-12)
        assert density[0, i, j].item() == pytest.approx(
            toy.log_posterior_density(x, z).exp().item(), rel=1e-12)


@pytest.mark.parametrize("toy", TOYS[:2], ids=repr)
def test_posterior_moments_match_dblquad(toy):
    x = 1.0
    log_px = toy.log_marginal(torch.tensor([[x]], dtype=F64)).item()

    def moment(g):
        def integrand(z2, z1):
            return g(z1, z2) * math.exp(_log_joint_py(toy, x, z1, z2) - log_px)
        return integrate.dblquad(integrand, -8, 8, -8, 8, epsabs=1e-12, epsrel=1e-10)[0]

    mean, cov = toy.posterior_moments(torch.tensor([[x]], dtype=F64))
    m1, m2 = moment(lambda a, b: a), moment(lambda a, b: b)
    torch.testing.assert_close(mean[0], torch.tensor([m1, m2], dtype=F64), rtol=0, atol=1e-8)
    c11 = moment(lambda a, b: (a - m1) ** 2)
    c12 = moment(lambda a, b: (a - m1) * (b - m2))
    c22 = moment(lambda a, b: (b - m2) ** 2)
    torch.testing.assert_close(cov[0], torch.tensor([[c11, c12], [c12, c22]], dtype=F64),
                               rtol=0, atol=1e-8)


def test_hyperbola_posterior_has_two_symmetric_modes():
    """x = 1: p(z|x) = p(-z|x); its maxima lie on z₁ = z₂ near ±(1, 1), the origin is a valley."""
    toy = NonlinearToy2D(noise_std=0.3)
    x = torch.tensor([[1.0]], dtype=F64)
    z1, z2, density = toy.posterior_grid(x, limit=3.0, size=121)
    torch.testing.assert_close(density, density.flip(1, 2), rtol=1e-12, atol=0)
    peak = density[0].max()
    i, j = divmod(int(density[0].argmax()), 121)
    assert abs(z1[j].item()) == pytest.approx(abs(z2[i].item())) and z1[j] * z2[i] > 0
    assert 0.7 < abs(z1[j].item()) < 1.1
    assert density[0, 60, 60] < peak / 50  # z = 0: f(0) = 0 lies 3.3 s from x (ratio e^-4.6)
    mean, _ = toy.posterior_moments(x)
    assert mean.abs().max() < 1e-12  # the two modes cancel: the mean sits in the valley


@pytest.mark.parametrize("toy", TOYS, ids=repr)
def test_importance_sampling_agrees(toy):
    """p̂(x) = (1/K) Σ_k p(x, z_k) / q(z_k), z_k ~ q = N(0, 1.5² I), is unbiased for p(x)."""
    K = 200_000
    proposal = DiagonalGaussian(torch.zeros(4, 2, dtype=F64),
                                torch.full((4, 2), 2 * math.log(1.5), dtype=F64))
    log_w = log_importance_weights(toy, X, proposal, K, generator=_gen(6))  # (K, N)
    ratio = (log_w - toy.log_marginal(X)).exp()  # w / p(x): mean 1
    assert_unbiased(ratio.mean(0), ratio.std(0) / math.sqrt(K), torch.ones(4, dtype=F64),
                    "importance sampling against the quadrature log p(x)")


def test_quadrature_refuses_to_be_inaccurate():
    with pytest.raises(ValueError, match="grid_limit"):
        NonlinearToy2D(curve="parabola").log_marginal(torch.tensor([[-60.0]], dtype=F64))
    with pytest.raises(ValueError, match="grid_limit"):
        NonlinearToy2D(grid_limit=4.0).log_marginal(torch.tensor([[1.0]], dtype=F64))
    with pytest.raises(ValueError, match="grid_size"):
        NonlinearToy2D(noise_std=0.02).log_marginal(torch.tensor([[1.0]], dtype=F64))
    with pytest.raises(ValueError, match="grid_size"):
        NonlinearToy2D(noise_std=0.05, grid_size=101).log_marginal(X)
    with pytest.raises(ValueError, match="grid_limit"):  # x = 0: a cross along both axes
        NonlinearToy2D(noise_std=0.05, grid_limit=6.0, grid_size=601).log_marginal(X)
    fine = NonlinearToy2D(noise_std=0.05, grid_size=801)  # step 0.02
    assert torch.isfinite(fine.log_marginal(X)).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="curve"):
        NonlinearToy2D(curve="circle")
    with pytest.raises(ValueError, match="a must be"):
        NonlinearToy2D(a=float("nan"))
    with pytest.raises(ValueError, match="noise_std"):
        NonlinearToy2D(noise_std=0.0)
    with pytest.raises(ValueError, match="grid_limit"):
        NonlinearToy2D(grid_limit=-1.0)
    with pytest.raises(ValueError, match="grid_size must be at least 101"):
        NonlinearToy2D(grid_size=50)
    toy = NonlinearToy2D()
    with pytest.raises(ValueError, match="data dimension D"):
        toy.log_marginal(torch.zeros(2, 2, dtype=F64))
    with pytest.raises(ValueError, match="latent dimension d"):
        toy.log_joint(X, torch.zeros(4, 1, dtype=F64))
    with pytest.raises(ValueError, match="NaN"):
        toy.log_marginal(torch.tensor([[float("nan")]], dtype=F64))
    with pytest.raises(ValueError, match="does not match x"):
        toy.log_posterior_density(X, torch.zeros(3, 2, dtype=F64))
    with pytest.raises(ValueError, match="limit"):
        toy.posterior_grid(X, limit=0.0)
