"""vaelib.estimators against the exact marginal likelihood of the toy models and closed forms."""

import math

import pytest
import torch
from scipy.special import logsumexp
from torch.distributions import MultivariateNormal, kl_divergence

from vaelib.estimators import (
    effective_sample_size,
    elbo,
    importance_log_marginal,
    iwae_bound,
    log_importance_weights,
    log_mean_exp,
    naive_mc_log_marginal,
)
from vaelib.gaussian import DiagonalGaussian
from vaelib.toy import LinearGaussian, NonlinearToy

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def model():
    return LinearGaussian.random(data_dim=3, latent_dim=2, noise_std=0.7, generator=_gen(0))


@pytest.fixture(scope="module")
def x(model):
    return model.sample(3, generator=_gen(1))[0]  # (N, D) = (3, 3)


def _mean_field(model, x, shift=0.0, inflate=1.0):
    """A deliberately imperfect proposal: diagonal of the posterior, shifted and inflated."""
    mean, cov = model.posterior_parameters(x)
    return DiagonalGaussian(mean + shift, (inflate * cov.diagonal()).log().expand_as(mean))


def _tile(x, replicates):
    """(N, D) -> (R·N, D): R independent copies of each data point (one estimate each)."""
    return x.repeat(replicates, 1)


# --- log_mean_exp and effective sample size -----------------------------------------------------


def test_log_mean_exp_matches_scipy():
    a = torch.randn(5, 4, generator=_gen(2), dtype=F64) * 10
    for dim, K in [(0, 5), (1, 4)]:
        want = torch.from_numpy(logsumexp(a.numpy(), axis=dim) - math.log(K))
        torch.testing.assert_close(log_mean_exp(a, dim=dim), want)
    assert log_mean_exp(a, dim=1, keepdim=True).shape == (5, 1)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_log_mean_exp_is_stable(dtype):
    t = lambda *v: torch.tensor(v, dtype=dtype)  # noqa: E731
    assert log_mean_exp(t(1e4, 1e4)).item() == 1e4
    assert log_mean_exp(t(-1e4, -1e4)).item() == -1e4
    assert log_mean_exp(t(1e4, -1e4)).item() == pytest.approx(1e4 - math.log(2), rel=1e-7)
    assert log_mean_exp(t(0.0, -math.inf)).item() == pytest.approx(-math.log(2), rel=1e-7)
    assert log_mean_exp(t(-math.inf, -math.inf)).item() == -math.inf


def test_log_mean_exp_names_a_dim_the_tensor_does_not_have():
    a = torch.zeros(5, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"dim=5 is not a dimension of a, which has 2 .* -2 to 1"):
        log_mean_exp(a, dim=5)
    with pytest.raises(ValueError, match="dim=-3"):
        log_mean_exp(a, dim=-3)
    with pytest.raises(TypeError, match="dim must be an int"):
        log_mean_exp(a, dim=1.0)
    assert log_mean_exp(a, dim=-1).shape == (5,)  # negative dims still count from the end


def test_effective_sample_size():
    K = 50
    equal = effective_sample_size(torch.full((K, 3), -7.0, dtype=F64))
    torch.testing.assert_close(equal, torch.full((3,), float(K), dtype=F64))
    dominant = torch.full((K,), -1e4, dtype=F64)
    dominant[17] = 0.0
    assert effective_sample_size(dominant).item() == pytest.approx(1.0, abs=1e-12)
    log_w = torch.randn(K, 4, generator=_gen(3), dtype=F64) * 2
    w = log_w.exp()
    want = w.sum(0) ** 2 / (w**2).sum(0)
    torch.testing.assert_close(effective_sample_size(log_w), want)
    torch.testing.assert_close(effective_sample_size(log_w + 1e4), want)  # scale-free, no overflow
    torch.testing.assert_close(effective_sample_size(log_w.T, dim=1), want)
    assert ((want >= 1) & (want <= K)).all()


# --- log-weights --------------------------------------------------------------------------------


def test_log_importance_weights_definition(model, x):
    q = _mean_field(model, x)
    log_w = log_importance_weights(model, x, q, 6, generator=_gen(4))
    assert log_w.shape == (6, 3)
    z = q.rsample(6, generator=_gen(4))  # the same samples
    torch.testing.assert_close(log_w, model.log_joint(x, z) - q.log_prob(z), rtol=0, atol=0)


def test_chunking_gives_the_same_distribution_and_shape(model, x):
    q = model.posterior(x)
    log_w = log_importance_weights(model, x, q, 10, generator=_gen(5), chunk_size=3)
    assert log_w.shape == (10, 3)
    torch.testing.assert_close(log_w, model.log_marginal(x).expand(10, 3), rtol=1e-12, atol=1e-12)
    same = log_importance_weights(model, x, q, 10, generator=_gen(5), chunk_size=10)
    unchunked = log_importance_weights(model, x, q, 10, generator=_gen(5))
    torch.testing.assert_close(same, unchunked, rtol=0, atol=0)


def test_exact_posterior_gives_zero_variance(model, x):
    """q = p(z|x): every weight p(x, z)/p(z|x) equals p(x), so each estimate is exact (ch. 3)."""
    q = model.posterior(x)
    exact = model.log_marginal(x)
    for K in (1, 7):
        for estimator in (importance_log_marginal, elbo, iwae_bound):
            got = estimator(model, x, q, K, generator=_gen(K))
            torch.testing.assert_close(got, exact, rtol=1e-12, atol=1e-12)
    log_w = log_importance_weights(model, x, q, 100, generator=_gen(6))
    assert log_w.std(0).max() < 1e-12
    assert effective_sample_size(log_w).min().item() == pytest.approx(100, rel=1e-10)


# --- unbiasedness of p(x) estimates ---------------------------------------------------------


def _check_unbiased_for_px(log_estimates, log_px):
    """mean over replicates of p̂(x)/p(x) must be 1 within 5 standard errors (per data point)."""
    ratio = (log_estimates - log_px).exp()  # (R, N)
    std_error = ratio.std(0) / math.sqrt(ratio.shape[0])
    assert ((ratio.mean(0) - 1).abs() < 5 * std_error).all(), (ratio.mean(0), std_error)
    assert (std_error < 0.05).all()  # and the test is sharp enough to see a 25% bias


def test_naive_mc_is_unbiased_for_px(model, x):
    R = 2000
    estimates = naive_mc_log_marginal(model, _tile(x, R), 10, generator=_gen(7)).reshape(R, 3)
    _check_unbiased_for_px(estimates, model.log_marginal(x))


def test_importance_sampling_is_unbiased_for_px(model, x):
    R = 2000
    q = _mean_field(model, _tile(x, R), shift=0.3, inflate=2.0)  # wider than the posterior
    estimates = importance_log_marginal(model, _tile(x, R), q, 5, generator=_gen(8)).reshape(R, 3)
    _check_unbiased_for_px(estimates, model.log_marginal(x))
    # ... while log p̂(x) itself is biased low (Jensen): its mean sits below log p(x)
    assert (estimates.mean(0) < model.log_marginal(x)).all()


def test_naive_mc_converges_on_the_nonlinear_toy():
    toy = NonlinearToy(noise_std=0.5)
    x = toy.sample(4, generator=_gen(9))[0]
    got = naive_mc_log_marginal(toy, x, 40_000, generator=_gen(10), chunk_size=10_000)
    torch.testing.assert_close(got, toy.log_marginal(x), rtol=0, atol=0.03)


# --- bounds ---------------------------------------------------------------------------------


def test_elbo_matches_closed_form(model, x):
    """ELBO = log p(x) - KL(q ‖ p(z|x)) (ch. 5), KL by torch.distributions."""
    q = _mean_field(model, x, shift=0.2)
    mean, cov = model.posterior_parameters(x)
    q_full = MultivariateNormal(q.mean, torch.diag_embed(q.variance))
    kl = kl_divergence(q_full, MultivariateNormal(mean, cov))
    want = model.log_marginal(x) - kl
    K = 20_000
    log_w = log_importance_weights(model, x, q, K, generator=_gen(11))
    std_error = log_w.std(0) / math.sqrt(K)
    got = elbo(model, x, q, K, generator=_gen(11))
    torch.testing.assert_close(got, log_w.mean(0))
    assert ((got - want).abs() < 5 * std_error).all()


def test_bounds_are_ordered_in_expectation(model, x):
    """E[ELBO] = E[IWAE_1] <= E[IWAE_2] <= E[IWAE_8] <= E[IWAE_32] <= log p(x) (Burda et al.)."""
    R = 3000
    x_rep = _tile(x, R)
    q = _mean_field(model, x_rep, shift=0.4)
    log_px = model.log_marginal(x)
    means, errors = [], []
    for K in (1, 2, 8, 32):
        bound = iwae_bound(model, x_rep, q, K, generator=_gen(K)).reshape(R, 3)
        means.append(bound.mean(0))
        errors.append(bound.std(0) / math.sqrt(R))
    elbo_mean = elbo(model, x_rep, q, 1, generator=_gen(99)).reshape(R, 3).mean(0)
    assert ((elbo_mean - means[0]).abs() < 5 * (errors[0] * math.sqrt(2))).all()  # IWAE_1 = ELBO
    for (lo, lo_err), (hi, hi_err) in zip(zip(means, errors), zip(means[1:], errors[1:])):
        # each step up in K gains far more than the Monte Carlo noise in the comparison
        assert (hi - lo > 5 * (lo_err**2 + hi_err**2).sqrt()).all(), (lo, hi)
    assert (means[-1] < log_px).all()
    assert (log_px - means[-1] < log_px - means[0]).all()


def test_importance_equals_iwae(model, x):
    q = _mean_field(model, x)
    a = importance_log_marginal(model, x, q, 9, generator=_gen(12))
    torch.testing.assert_close(a, iwae_bound(model, x, q, 9, generator=_gen(12)), rtol=0, atol=0)


# --- gradients, dtypes and devices --------------------------------------------------------------


def _exact_elbo(model, x, mu, logvar):
    """ELBO = log p(x) - KL(N(mu, diag e^logvar) ‖ p(z|x)), by torch.distributions."""
    mean, cov = model.posterior_parameters(x)
    q = MultivariateNormal(mu, torch.diag_embed(logvar.exp()))
    return model.log_marginal(x) - kl_divergence(q, MultivariateNormal(mean, cov))


def test_elbo_gradient_is_unbiased(model, x):
    """E[∇ ELBO estimate] = ∇ exact ELBO (reparameterization, ch. 7); R independent replicates."""
    R = 2000
    mean, cov = model.posterior_parameters(x)
    mu0, logvar0 = mean + 0.5, cov.diagonal().log().expand_as(mean) - 0.3
    mu_e, logvar_e = mu0.clone().requires_grad_(True), logvar0.clone().requires_grad_(True)
    _exact_elbo(model, x, mu_e, logvar_e).sum().backward()
    # row r·N + n of the tiled leaves holds replicate r's gradient for data point n
    mu = mu0.repeat(R, 1).requires_grad_(True)
    logvar = logvar0.repeat(R, 1).requires_grad_(True)
    q = DiagonalGaussian(mu, logvar)
    elbo(model, _tile(x, R), q, 4, generator=_gen(13), chunk_size=3).sum().backward()
    for exact, grads in [(mu_e.grad, mu.grad), (logvar_e.grad, logvar.grad)]:
        grads = grads.reshape(R, 3, 2)
        std_error = grads.std(0) / math.sqrt(R)
        assert ((grads.mean(0) - exact).abs() < 5 * std_error).all()
        assert (std_error < 0.1 * exact.abs().max()).all()  # sharp enough to see a wrong gradient


def test_iwae_gradients_flow_through_rsample(model, x):
    mean, cov = model.posterior_parameters(x)
    mu = (mean + 0.5).requires_grad_(True)
    logvar = cov.diagonal().log().expand_as(mean).clone().requires_grad_(True)
    q = DiagonalGaussian(mu, logvar)
    iwae_bound(model, x, q, 64, generator=_gen(13), chunk_size=16).sum().backward()
    assert torch.isfinite(mu.grad).all() and torch.isfinite(logvar.grad).all()
    assert mu.grad.abs().min() > 0 and logvar.grad.abs().min() > 0


def test_float32_model_and_proposal(model, x):
    model32 = LinearGaussian(model.W, model.b, model.noise_std, dtype=torch.float32)
    mean, cov = model.posterior_parameters(x)
    q32 = DiagonalGaussian(mean.float(), cov.diagonal().log().expand_as(mean).float())
    g = _gen(14)
    log_w = log_importance_weights(model32, x.float(), q32, 5000, generator=g, chunk_size=1000)
    assert log_w.dtype == torch.float32 and log_w.shape == (5000, 3)
    got = log_mean_exp(log_w).double()
    torch.testing.assert_close(got, model.log_marginal(x), rtol=0, atol=2e-2)


@pytest.mark.gpu
def test_cuda_model_with_cpu_generator(model, x):
    cuda = torch.device("cuda")
    model_gpu = LinearGaussian(model.W.to(cuda), model.b.to(cuda), model.noise_std)
    q_gpu = model_gpu.posterior(x.to(cuda))
    got = iwae_bound(model_gpu, x.to(cuda), q_gpu, 50, generator=_gen(15), chunk_size=20)
    assert got.device.type == "cuda"
    torch.testing.assert_close(got.cpu(), model.log_marginal(x), rtol=1e-10, atol=1e-10)
    naive = naive_mc_log_marginal(model_gpu, x.to(cuda), 50, generator=_gen(16))
    torch.testing.assert_close(naive.cpu(), naive_mc_log_marginal(model, x, 50, generator=_gen(16)))


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "num_samples, error", [(0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError)]
)
def test_bad_num_samples(model, x, num_samples, error):
    q = _mean_field(model, x)
    for estimator in (importance_log_marginal, elbo, iwae_bound, log_importance_weights):
        with pytest.raises(error, match="num_samples"):
            estimator(model, x, q, num_samples)
    with pytest.raises(error, match="num_samples"):
        naive_mc_log_marginal(model, x, num_samples)


def test_bad_data(model, x):
    q = _mean_field(model, x)
    with pytest.raises(ValueError, match="data dimension D"):
        importance_log_marginal(model, x[:, :2], q, 3)
    with pytest.raises(ValueError, match="does not match x"):
        importance_log_marginal(model, x[:2], q, 3)  # q is for N = 3 points, x has N = 2
    with pytest.raises(ValueError, match="NaN"):
        naive_mc_log_marginal(model, torch.full_like(x, math.nan), 3)
    with pytest.raises(ValueError, match="chunk_size"):
        elbo(model, x, q, 3, chunk_size=0)
    with pytest.raises(ValueError, match="at least 1 dimension"):
        log_mean_exp(torch.tensor(1.0))


def test_empty_inputs_are_clear_errors():
    empty = torch.zeros(0, 3, dtype=F64)
    with pytest.raises(ValueError, match=r"at least one value along dim 0.*\(0, 3\)"):
        log_mean_exp(empty)
    with pytest.raises(ValueError, match=r"at least one log-weight along dim 0.*\(0, 3\)"):
        effective_sample_size(empty)
    # No samples is an error; no data points (K samples of 0 points) is an empty answer.
    assert log_mean_exp(empty, dim=1).shape == (0,)
    assert effective_sample_size(empty.T, dim=0).shape == (0,)
