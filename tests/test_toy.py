"""vaelib.toy against scipy.stats, scipy.integrate and Gaussian conditioning formulas."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from vaelib.gaussian import FullGaussian
from vaelib.toy import LinearGaussian, NonlinearToy

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def model():
    return LinearGaussian.random(data_dim=4, latent_dim=2, noise_std=0.5, generator=_gen(0))


@pytest.fixture
def x(model):
    return model.sample(6, generator=_gen(1))[0]


# --- LinearGaussian -----------------------------------------------------------------------------


def test_attributes_and_shapes(model, x):
    assert (model.data_dim, model.latent_dim, model.noise_std) == (4, 2, 0.5)
    assert model.W.dtype == F64 and x.shape == (6, 4)
    x2, z2 = model.sample(5, generator=_gen(2))
    assert x2.shape == (5, 4) and z2.shape == (5, 2)
    assert model.sample_prior(7).shape == (7, 2)
    z = model.sample_prior(7, num_points=6, generator=_gen(3))
    assert z.shape == (7, 6, 2)
    assert model.log_prior(z).shape == (7, 6)
    assert model.log_likelihood(x, z).shape == (7, 6)
    assert model.log_likelihood(x, z[0]).shape == (6,)
    assert model.log_joint(x, z).shape == (7, 6)
    assert model.log_marginal(x).shape == (6,)


def test_sampling_is_reproducible(model):
    a, b = model.sample(3, generator=_gen(4)), model.sample(3, generator=_gen(4))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    other = LinearGaussian.random(4, 2, 0.5, generator=_gen(0))
    torch.testing.assert_close(other.W, model.W, rtol=0, atol=0)


def test_log_prior_and_likelihood_match_scipy(model, x):
    z = model.sample_prior(3, num_points=6, generator=_gen(5))  # (K, N, d)
    np.testing.assert_allclose(
        model.log_prior(z).numpy(), stats.norm.logpdf(z.numpy()).sum(-1), rtol=1e-12
    )
    W, b, s = model.W.numpy(), model.b.numpy(), model.noise_std
    want = np.array([
        [
            stats.multivariate_normal(W @ z[k, n].numpy() + b, s**2 * np.eye(4)).logpdf(x[n])
            for n in range(6)
        ]
        for k in range(3)
    ])
    np.testing.assert_allclose(model.log_likelihood(x, z).numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(
        model.log_joint(x, z).numpy(), want + stats.norm.logpdf(z.numpy()).sum(-1), rtol=1e-12
    )


def test_log_marginal_matches_scipy(model, x):
    cov = (model.W @ model.W.T).numpy() + 0.25 * np.eye(4)  # W Wᵀ + s² I, s = 0.5
    want = stats.multivariate_normal(model.b.numpy(), cov)
    np.testing.assert_allclose(model.log_marginal(x).numpy(), want.logpdf(x.numpy()), rtol=1e-12)


def test_log_marginal_matches_quadrature_in_1d():
    """p(x) = ∫ p(z) p(x|z) dz with scipy.integrate.quad, D = 2, d = 1."""
    model = LinearGaussian(torch.tensor([[1.5], [-0.7]]), torch.tensor([0.3, 1.0]), noise_std=0.4)
    x = torch.tensor([[1.0, 0.5]], dtype=F64)

    def integrand(z):
        return math.exp(model.log_joint(x, torch.tensor([[z]], dtype=F64)).item())

    want, _ = integrate.quad(integrand, -np.inf, np.inf, epsabs=0, epsrel=1e-12)
    assert model.log_marginal(x).item() == pytest.approx(math.log(want), abs=1e-9)


def test_posterior_is_bayes_rule(model, x):
    """log p(z|x) = log p(x, z) - log p(x) at arbitrary z (and FullGaussian agrees with SciPy)."""
    mean, cov = model.posterior_parameters(x)
    assert mean.shape == (6, 2) and cov.shape == (2, 2)
    z = model.sample_prior(5, num_points=6, generator=_gen(6))
    bayes = model.log_joint(x, z) - model.log_marginal(x)
    torch.testing.assert_close(model.log_posterior_density(x, z), bayes, rtol=1e-10, atol=1e-10)
    for n in range(6):
        ref = stats.multivariate_normal(mean[n].numpy(), cov.numpy()).logpdf(z[:, n].numpy())
        np.testing.assert_allclose(bayes[:, n].numpy(), ref, rtol=1e-10)


def test_posterior_matches_gaussian_conditioning(model, x):
    """Independent route: condition the joint Gaussian of (z, x) on x (Schur complement)."""
    C = model.marginal_covariance  # Cov[x]
    cross = model.W.T  # Cov[z, x] = Wᵀ
    want_cov = torch.eye(2, dtype=F64) - cross @ torch.linalg.solve(C, cross.T)
    want_mean = torch.linalg.solve(C, (x - model.b).T).T @ cross.T
    mean, cov = model.posterior_parameters(x)
    torch.testing.assert_close(cov, want_cov, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mean, want_mean, rtol=1e-12, atol=1e-12)
    q = model.posterior(x)
    assert isinstance(q, FullGaussian)
    torch.testing.assert_close(q.cov, want_cov, rtol=1e-12, atol=1e-12)


def test_samples_have_the_marginal_moments(model):
    x, z = model.sample(40_000, generator=_gen(7))
    C = model.marginal_covariance
    se_mean = (C.diagonal() / 40_000).sqrt()
    assert ((x.mean(0) - model.b).abs() < 5 * se_mean).all()
    # entries of a sample covariance have sd <= max var · sqrt(2 / K)
    assert (torch.cov(x.T) - C).abs().max() < 5 * C.diagonal().max() * math.sqrt(2 / 40_000)
    assert (z.mean(0).abs() < 5 / 200).all()


def test_inputs_are_converted_to_the_model_dtype(model, x):
    z32 = torch.zeros(6, 2)  # float32, e.g. torch.randn's default
    out = model.log_joint(x.float(), z32)
    assert out.dtype == F64
    model32 = LinearGaussian(model.W, model.b, 0.5, dtype=torch.float32)
    assert model32.log_marginal(x).dtype == torch.float32


@pytest.mark.parametrize("noise_std", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_noise_std(noise_std):
    with pytest.raises(ValueError, match="noise_std"):
        LinearGaussian(torch.ones(3, 2), None, noise_std)
    with pytest.raises(ValueError, match="noise_std"):
        NonlinearToy(noise_std=noise_std)


def test_bad_model_parameters():
    with pytest.raises(ValueError, match=r"\(D, d\)"):
        LinearGaussian(torch.ones(3), None, 1.0)
    with pytest.raises(ValueError, match="b must have shape"):
        LinearGaussian(torch.ones(3, 2), torch.zeros(2), 1.0)
    with pytest.raises(ValueError, match="W contains NaN"):
        LinearGaussian(torch.tensor([[float("nan")]]), None, 1.0)
    with pytest.raises(TypeError, match="noise_std"):
        LinearGaussian(torch.ones(3, 2), None, "0.5")
    with pytest.raises(ValueError, match="curve"):
        NonlinearToy(curve="spiral")


def test_bad_data_and_latents(model, x):
    with pytest.raises(ValueError, match="data dimension D"):
        model.log_marginal(torch.zeros(3, 5, dtype=F64))
    with pytest.raises(ValueError, match="latent dimension d"):
        model.log_likelihood(x, torch.zeros(6, 3, dtype=F64))
    with pytest.raises(ValueError, match="does not match x"):
        model.log_likelihood(x, torch.zeros(4, 5, 2, dtype=F64))  # N = 5 latents for N = 6 points
    with pytest.raises(ValueError, match="NaN"):
        model.log_marginal(torch.full((1, 4), float("inf"), dtype=F64))
    with pytest.raises(ValueError, match="NaN"):
        model.log_prior(torch.tensor([[float("nan"), 0.0]], dtype=F64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model.log_marginal(x.numpy())


@pytest.mark.parametrize(
    "num_samples, error", [(0, ValueError), (-2, ValueError), (3.0, TypeError)]
)
def test_bad_num_samples(model, num_samples, error):
    with pytest.raises(error, match="num_samples"):
        model.sample(num_samples)
    with pytest.raises(error, match="num_samples"):
        model.sample_prior(num_samples)
    with pytest.raises(error, match="num_points"):
        model.sample_prior(2, num_points=num_samples)


# --- NonlinearToy -------------------------------------------------------------------------------


def _quad_log_marginal(toy, x_row):
    """log ∫ p(z) p(x|z) dz by adaptive quadrature, scaled by the grid maximum for stability."""
    log_max = toy.log_joint(x_row, toy.z_grid[:, None, None]).max().item()

    def integrand(z):
        return math.exp(toy.log_joint(x_row, torch.tensor([[z]], dtype=F64)).item() - log_max)

    value, abserr = integrate.quad(integrand, -12, 12, epsabs=0, epsrel=1e-12, limit=500)
    return math.log(value) + log_max, abserr / value


TOYS = [
    NonlinearToy(),
    NonlinearToy(noise_std=0.2, curve="parabola", a=2.0),
    NonlinearToy(noise_std=0.3, curve="circle", a=2.0),
]


@pytest.mark.parametrize("toy", TOYS, ids=repr)
def test_nonlinear_log_marginal_matches_scipy_quad(toy):
    x_model, _ = toy.sample(4, generator=_gen(8))
    x_odd = torch.tensor([[0.0, 1.0], [2.0, -1.0], [-1.5, 3.0]], dtype=F64)  # bimodal / far
    x = torch.cat([x_model, x_odd])
    got = toy.log_marginal(x)
    assert got.shape == (7,)
    for n in range(7):
        want, rel_err = _quad_log_marginal(toy, x[n : n + 1])
        assert rel_err < 1e-9
        assert got[n].item() == pytest.approx(want, abs=1e-8)


def test_nonlinear_without_curvature_is_linear_gaussian():
    """a = 0: f(z) = (z, 0) is the linear model with W = [[1], [0]], b = 0."""
    toy = NonlinearToy(noise_std=0.4, curve="parabola", a=0.0)
    linear = LinearGaussian(torch.tensor([[1.0], [0.0]]), None, 0.4)
    x = linear.sample(10, generator=_gen(9))[0]
    torch.testing.assert_close(toy.log_marginal(x), linear.log_marginal(x), rtol=1e-11, atol=1e-11)
    z = torch.linspace(-3, 3, 11, dtype=F64)
    want = linear.log_posterior_density(x, z[:, None, None])  # (G, N)
    torch.testing.assert_close(toy.log_posterior_density(x, z), want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("toy", TOYS, ids=repr)
def test_nonlinear_posterior_is_normalized_and_moments_match_quad(toy):
    x = torch.tensor([[0.0, 1.0], [0.8, 0.4]], dtype=F64)
    mean, var = toy.posterior_moments(x)
    assert mean.shape == var.shape == (2, 1)
    log_marginal = toy.log_marginal(x)
    for n in range(2):
        log_px = log_marginal[n].item()

        def density(z, n=n, log_px=log_px):  # p(z|x) = p(x, z) / p(x)
            zt = torch.tensor([[z]], dtype=F64)
            return math.exp(toy.log_joint(x[n : n + 1], zt).item() - log_px)

        total = integrate.quad(density, -12, 12, epsabs=0, epsrel=1e-11, limit=500)[0]
        m1 = integrate.quad(lambda z: z * density(z), -12, 12, epsabs=1e-13, limit=500)[0]
        m2 = integrate.quad(lambda z: z * z * density(z), -12, 12, epsabs=1e-13, limit=500)[0]
        assert total == pytest.approx(1.0, abs=1e-8)
        assert mean[n].item() == pytest.approx(m1, abs=1e-8)
        assert var[n].item() == pytest.approx(m2 - m1**2, abs=1e-8)
    # and log_posterior_density is exactly log p(x, z) - log p(x) on a grid (G,) -> (G, N)
    z = torch.linspace(-2, 2, 5, dtype=F64)
    torch.testing.assert_close(
        toy.log_posterior_density(x, z), toy.log_joint(x, z[:, None, None]) - log_marginal
    )


def test_nonlinear_posterior_of_symmetric_point_is_bimodal():
    """x on the parabola's axis: z and -z explain it equally well, the posterior has two modes."""
    toy = NonlinearToy(noise_std=0.3, curve="parabola", a=1.0)
    x = torch.tensor([[0.0, 2.0]], dtype=F64)
    z = torch.linspace(-3, 3, 601, dtype=F64)
    log_post = toy.log_posterior_density(x, z)[:, 0]  # (G,)
    torch.testing.assert_close(log_post, log_post.flip(0), rtol=1e-12, atol=1e-12)
    assert log_post[300] < log_post.max() - 1.0  # z = 0 is a valley, not the mode
    assert toy.posterior_moments(x)[0].abs().item() < 1e-10


def test_nonlinear_samples_lie_near_the_curve():
    toy = NonlinearToy(noise_std=0.3, curve="circle", a=2.0)
    x, z = toy.sample(20_000, generator=_gen(10))
    assert x.shape == (20_000, 2) and z.shape == (20_000, 1)
    residual = x - toy.decode(z)
    # the residual variance estimates s² = 0.09 with relative sd sqrt(2 / (2 · 20000)) = 0.7%
    assert residual.var().item() == pytest.approx(0.09, rel=0.035)


def test_nonlinear_quadrature_refuses_to_be_inaccurate():
    with pytest.raises(ValueError, match="grid_limit"):
        NonlinearToy().log_marginal(torch.tensor([[30.0, 900.0]], dtype=F64))  # posterior at z ≈ 30
    with pytest.raises(ValueError, match="grid_size"):
        NonlinearToy(noise_std=1e-3).log_marginal(torch.tensor([[1.0, 1.0]], dtype=F64))
    x = torch.tensor([[0.0, 0.0]], dtype=F64)  # posterior sd ≈ 1e-3
    fine = NonlinearToy(noise_std=1e-3, grid_limit=3.0, grid_size=30_001)  # step 2e-4
    assert math.isfinite(fine.log_marginal(x).item())


def test_nonlinear_bad_input():
    toy = NonlinearToy()
    with pytest.raises(ValueError, match="data dimension D"):
        toy.log_marginal(torch.zeros(2, 3, dtype=F64))
    with pytest.raises(ValueError, match="latent dimension d"):
        toy.log_likelihood(torch.zeros(2, 2, dtype=F64), torch.zeros(2, 2, dtype=F64))
    with pytest.raises(ValueError, match="NaN"):
        toy.log_marginal(torch.tensor([[float("nan"), 0.0]], dtype=F64))
    with pytest.raises(ValueError, match="num_samples"):
        toy.sample(0)
    with pytest.raises(ValueError, match="a must be"):
        NonlinearToy(a=float("inf"))


def test_models_follow_the_protocol():
    from vaelib.protocols import LatentVariableModel, Proposal, SamplesPrior
    from vaelib.vae import VAE

    linear = LinearGaussian.random(3, 2, generator=torch.Generator().manual_seed(0))
    for model in (linear, NonlinearToy(), VAE(data_dim=6, hidden_dims=(4,), latent_dim=2)):
        assert isinstance(model, LatentVariableModel) and isinstance(model, SamplesPrior)
    x = linear.sample(4, generator=torch.Generator().manual_seed(1))[0]
    q = linear.posterior(x)  # a distribution, as the VAE's posterior(x)
    mean, cov = linear.posterior_parameters(x)
    assert isinstance(q, Proposal) and q.batch_shape == (4,) and q.event_shape == (2,)
    torch.testing.assert_close(q.mean, mean, rtol=0, atol=0)
    torch.testing.assert_close(q.cov, cov, rtol=0, atol=0)


def test_sizes_are_checked_under_their_own_name():
    with pytest.raises(TypeError, match="data_dim must be an int"):
        LinearGaussian.random(3.0, 2)
    with pytest.raises(ValueError, match="latent_dim must be at least 1"):
        LinearGaussian.random(3, 0)
    with pytest.raises(ValueError, match="grid_size must be at least 101"):
        NonlinearToy(grid_size=11)
