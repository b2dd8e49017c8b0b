"""vaelib.evaluate against the exact log p(x) of a linear-Gaussian VAE (SciPy); chunking."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from vaelib.data import fixed_binarization
from vaelib.evaluate import chunk_sizes, evaluate, importance_log_likelihood
from vaelib.vae import VAE, VAEConfig

D, d, SIGMA = 6, 2, 0.5


pytestmark = pytest.mark.usefixtures("one_thread")


def linear_gaussian_vae():
    """A VAE with no hidden layers: x|z ~ N(Wz + b, σ² I), W with orthogonal columns, and an encoder
    equal to the exact posterior p(z|x) = N(Σ Wᵀ(x - b)/σ², Σ), Σ = (I + WᵀW/σ²)⁻¹ (diagonal here).

    Returns the model, data x (N, D) and the exact log p(x) = log N(x; b, W Wᵀ + σ² I) from SciPy.
    """
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(D, d, generator=g))
    W = q * torch.tensor([2.0, 0.7])  # (D, d), WᵀW = diag(4, 0.49)
    b = torch.randn(D, generator=g)
    model = VAE(VAEConfig(data_dim=D, hidden_dims=(), latent_dim=d, likelihood="gaussian",
                          gaussian_std=SIGMA))
    cov_post = 1 / (1 + (W * W).sum(0) / SIGMA**2)  # diag Σ, (d,)
    A = cov_post[:, None] * W.T / SIGMA**2  # (d, D): mean = A (x - b)
    with torch.no_grad():
        model.decoder[0].weight.copy_(W)
        model.decoder[0].bias.copy_(b)
        model.encoder[0].weight.copy_(torch.cat([A, torch.zeros(d, D)]))
        model.encoder[0].bias.copy_(torch.cat([-A @ b, cov_post.log()]))
    x = (torch.randn(40, d, generator=g) @ W.T + b + SIGMA * torch.randn(40, D, generator=g))
    cov = (W @ W.T + SIGMA**2 * torch.eye(D)).double().numpy()
    exact = multivariate_normal(mean=b.double().numpy(), cov=cov).logpdf(x.double().numpy())
    return model, x, torch.from_numpy(np.asarray(exact)).float()


def test_exact_posterior_gives_the_exact_log_likelihood():
    model, x, exact = linear_gaussian_vae()
    result = evaluate(model, x, num_samples=32, iwae_samples=4, progress=False)
    # q = p(z|x): every weight equals p(x), so all three estimates are exact (up to rounding).
    for estimate in (result.log_likelihood, result.elbo, result.iwae):
        torch.testing.assert_close(estimate, exact, rtol=0, atol=2e-4)
    torch.testing.assert_close(result.ess, torch.full_like(result.ess, 32.0), rtol=1e-4, atol=0)


def test_bounds_with_an_imperfect_encoder():
    model, x, exact = linear_gaussian_vae()
    with torch.no_grad():
        model.encoder[0].bias[d:] += 1.0  # q's variance e times too large
        model.encoder[0].weight[:d] *= 0.8  # and its mean shrunk
    result = evaluate(model, x, num_samples=4000, iwae_samples=10, progress=False)
    means = (t.mean().item() for t in (result.elbo, result.iwae, result.log_likelihood, exact))
    elbo, iwae, ll, truth = means
    # Measured: ELBO -7.16 < IWAE_10 -6.06 < log p̂(x) -6.002 ≈ exact -6.006; per point the K = 4000
    # estimate is within 0.07 of the truth (worst effective sample size 880 of 4000).
    assert elbo < iwae - 0.3 and iwae < ll - 0.03
    assert abs(ll - truth) < 0.02
    torch.testing.assert_close(result.log_likelihood, exact, rtol=0, atol=0.15)
    # The vaelib.vae bounds estimate the same quantities (standard errors of the differences
    # < 0.007).
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        draws = [model.iwae_bound(x, 10, generator=g) for _ in range(200)]
        model_iwae = torch.stack(draws).mean().item()
        model_elbo = model.elbo_analytic_kl(x, num_samples=2000, generator=g).mean().item()
    assert abs(model_iwae - iwae) < 0.04 and abs(model_elbo - elbo) < 0.04


def test_chunking_does_not_change_the_numbers():
    torch.manual_seed(0)
    model = VAE(VAEConfig(data_dim=12, hidden_dims=(16,), latent_dim=3))
    x = torch.rand(30, 12)
    big = evaluate(model, x, num_samples=300, iwae_samples=30, progress=False, memory_budget=2**30)
    budget = 200_000
    n, k = chunk_sizes(model, 30, 300, budget)
    assert n < 30 and k < 300  # really chunked, over both data points and samples
    small = evaluate(model, x, num_samples=300, iwae_samples=30, progress=False,
                     memory_budget=budget)
    for name in ("elbo", "iwae", "log_likelihood", "ess"):
        torch.testing.assert_close(getattr(small, name), getattr(big, name), rtol=1e-5, atol=1e-4)
    assert chunk_sizes(model, 30, 300, 2**30) == (30, 300)


def test_fixed_binarization_and_summary():
    torch.manual_seed(0)
    model = VAE(VAEConfig(data_dim=12, hidden_dims=(16,), latent_dim=3))
    grey = torch.rand(10, 12)
    a = evaluate(model, grey, num_samples=20, iwae_samples=5, seed=3, progress=False)
    b = evaluate(model, fixed_binarization(grey, seed=3), num_samples=20, iwae_samples=5, seed=3,
                 binarize=False, progress=False)
    torch.testing.assert_close(a.log_likelihood, b.log_likelihood)
    summary = a.summary()
    assert summary["nll"] == -summary["log_likelihood"] and "iwae_5" in summary
    assert summary["elbo"] <= summary["iwae_5"] <= summary["log_likelihood"]
    assert importance_log_likelihood(model, grey, 20, seed=3, progress=False).shape == (10,)
    with pytest.raises(ValueError, match="iwae_samples"):
        evaluate(model, grey, num_samples=5, iwae_samples=10)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate(model, 2 * grey, num_samples=5, iwae_samples=1)
    assert math.isfinite(summary["log_likelihood_sem"])


@pytest.mark.gpu
def test_cuda_evaluation_is_exact_and_chunk_invariant():
    model, x, exact = linear_gaussian_vae()
    model, x = model.cuda(), x.cuda()
    result = evaluate(model, x, num_samples=64, iwae_samples=8, progress=False)
    torch.testing.assert_close(result.log_likelihood, exact, rtol=0, atol=2e-4)
    with torch.no_grad():
        model.encoder[0].bias[d:] += 1.0
    a = evaluate(model, x, num_samples=500, iwae_samples=10, progress=False)
    b = evaluate(model, x, num_samples=500, iwae_samples=10, progress=False, memory_budget=100_000)
    torch.testing.assert_close(a.log_likelihood, b.log_likelihood, rtol=1e-5, atol=1e-4)


def test_no_data_points_is_a_clear_error():
    model, x, _ = linear_gaussian_vae()
    with pytest.raises(ValueError, match=r"at least one data point.*\(0, 6\)"):
        evaluate(model, x[:0], num_samples=8, iwae_samples=2, progress=False)
    with pytest.raises(ValueError, match="at least one data point"):
        importance_log_likelihood(model, x[:0], 8, progress=False)


def set_encoder_logvar(model, logvar: float):
    """Make the encoder output the log-variance ``logvar`` for every x (its mean is unchanged)."""
    with torch.no_grad():
        model.encoder[0].weight[d:] = 0.0
        model.encoder[0].bias[d:] = logvar


@pytest.mark.parametrize("logvar", [-100.0, -150.0, -200.0])
def test_a_tiny_encoder_variance_is_evaluated_in_log_space(logvar):
    # σ² = e^-150 overflows 1/σ² in float32 (once NaN for every number); the weights are computed
    # from the noise ε directly: log q(z|x) = -½ Σ_j (log 2π + logvar_j + ε_j²), which is exact.
    model, x, _ = linear_gaussian_vae()
    set_encoder_logvar(model, logvar)
    result = evaluate(model, x, num_samples=2000, iwae_samples=10, progress=False)
    for name in ("elbo", "iwae", "log_likelihood", "ess"):
        assert torch.isfinite(getattr(result, name)).all(), name
    # With σ ≈ 0, z = μ(x): ELBO = log p(x, μ) + H[q], H[q] = ½ Σ_j (1 + log 2π + logvar_j).
    with torch.no_grad():
        mu, _ = model.encode(x)
        log_joint = model.log_joint(x, mu)  # (N,)
    entropy = 0.5 * d * (1 + math.log(2 * math.pi) + logvar)
    # ½ Σ_j ε_j² averages to d/2 over K = 2000 draws: standard error sqrt(d/2/2000) = 0.022.
    torch.testing.assert_close(result.elbo, log_joint + entropy, rtol=0, atol=0.15)
    assert (result.elbo <= result.iwae + 1e-3).all()
    assert (result.iwae <= result.log_likelihood + 1e-3).all()
    assert ((result.ess >= 1) & (result.ess <= 2000)).all()


@pytest.mark.parametrize("logvar", [100.0, 150.0, 200.0])
def test_a_huge_encoder_variance_is_a_clear_error(logvar):
    # σ = e^75: z = μ + σ ε overflows float32 in log p(z) and in the decoder. That is no number to
    # report as log p(x): say that the encoder's log-variance is the cause.
    model, x, _ = linear_gaussian_vae()
    set_encoder_logvar(model, logvar)
    with pytest.raises(ValueError, match=rf"encoder's log-variance.*{logvar:g}"):
        evaluate(model, x, num_samples=16, iwae_samples=4, progress=False)


@pytest.mark.parametrize("options, error, message", [
    (dict(num_samples=10.5), TypeError, r"num_samples must be an int, got float \(10.5\)"),
    (dict(num_samples=0), ValueError, "num_samples must be at least 1"),
    (dict(iwae_samples=2.0), TypeError, "iwae_samples must be an int"),
    (dict(memory_budget=0), ValueError, r"memory_budget must be a number of bytes > 0.*got 0"),
    (dict(memory_budget=-1), ValueError, r"memory_budget must be a number of bytes > 0.*got -1"),
    (dict(memory_budget=float("nan")), ValueError, "memory_budget must be a number of bytes"),
    (dict(memory_budget="1GB"), ValueError, "memory_budget must be a number of bytes"),
])
def test_bad_arguments_are_clear_errors(options, error, message):
    model, x, _ = linear_gaussian_vae()
    with pytest.raises(error, match=message):
        evaluate(model, x, **{"num_samples": 8, "iwae_samples": 2, "progress": False, **options})


def test_a_k_too_large_for_the_memory_budget_is_refused_up_front():
    model, x, _ = linear_gaussian_vae()  # d = 2: K samples take K × 3 floats a data point
    with pytest.raises(ValueError, match=r"K = num_samples = 1,000,000,000 .* about 12,000 MB for "
                       r"each data point.*At most K = 11,184,810 fits"):
        evaluate(model, x, num_samples=10**9, progress=False, memory_budget=2**28)
    # What fits is evaluated (and chunked) as before.
    evaluate(model, x[:2], num_samples=5000, iwae_samples=50, progress=False, memory_budget=2**20)
