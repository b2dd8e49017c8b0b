"""vaelib.gaussian against torch.distributions and scipy.stats."""

import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Independent, MultivariateNormal, Normal

from vaelib.gaussian import DiagonalGaussian, FullGaussian, standard_normal
from vaelib.protocols import Proposal

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _diag(n=4, d=3, seed=0):
    g = _gen(seed)
    return torch.randn(n, d, generator=g, dtype=F64), torch.randn(n, d, generator=g, dtype=F64)


def _spd(d=3, seed=0):
    a = torch.randn(d, d, generator=_gen(seed), dtype=F64)
    return a @ a.T + 0.5 * torch.eye(d, dtype=F64)


# --- DiagonalGaussian ---------------------------------------------------------------------------


def test_diagonal_log_prob_and_entropy_match_torch_distributions():
    mean, logvar = _diag()
    q = DiagonalGaussian(mean, logvar)
    ref = Independent(Normal(mean, (0.5 * logvar).exp()), 1)
    z = q.rsample(5, generator=_gen(1))  # (K, N, d)
    assert z.shape == (5, 4, 3)
    torch.testing.assert_close(q.log_prob(z), ref.log_prob(z), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(q.entropy(), ref.entropy(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(q.stddev, ref.base_dist.scale, rtol=1e-14, atol=0)
    torch.testing.assert_close(q.variance, ref.base_dist.scale**2, rtol=1e-14, atol=0)
    assert q.mean is mean and q.logvar is logvar and q.latent_dim == 3


def test_diagonal_log_prob_matches_scipy_and_broadcasts():
    mean, logvar = _diag(n=2, d=2)
    q = DiagonalGaussian(mean, logvar)
    z = torch.tensor([0.3, -1.2], dtype=F64)  # (d,) broadcasts over the N = 2 entries
    want = [
        stats.norm(mean[i].numpy(), np.exp(0.5 * logvar[i].numpy())).logpdf(z.numpy()).sum()
        for i in range(2)
    ]
    np.testing.assert_allclose(q.log_prob(z).numpy(), want, rtol=1e-12)


def test_rsample_shapes_grad_and_reproducibility():
    mean, logvar = _diag()
    mean.requires_grad_(True)
    logvar.requires_grad_(True)
    q = DiagonalGaussian(mean, logvar)
    assert q.rsample().shape == (4, 3)
    z = q.rsample(7, generator=_gen(3))
    torch.testing.assert_close(z, q.rsample(7, generator=_gen(3)), rtol=0, atol=0)
    # dz/dmean = 1 and dz/dlogvar = ½ σ eps = ½ (z - mean): the reparameterization trick
    z.sum().backward()
    torch.testing.assert_close(mean.grad, torch.full_like(mean, 7.0))
    torch.testing.assert_close(logvar.grad, 0.5 * (z - mean).detach().sum(0))
    s = q.sample(7, generator=_gen(3))
    assert not s.requires_grad
    torch.testing.assert_close(s, z.detach(), rtol=0, atol=0)


def test_rsample_moments():
    mean = torch.tensor([1.0, -2.0], dtype=F64)
    logvar = torch.tensor([0.0, 2.0], dtype=F64)
    z = DiagonalGaussian(mean, logvar).sample(40_000, generator=_gen(4))
    std = (0.5 * logvar).exp()
    # mean within 5 standard errors, std within 5 standard errors (≈ σ / sqrt(2K))
    assert ((z.mean(0) - mean).abs() < 5 * std / 200).all()
    assert ((z.std(0) - std).abs() < 5 * std / np.sqrt(80_000)).all()


def test_float32_follows_inputs():
    q = DiagonalGaussian(torch.zeros(2, 3), torch.zeros(2, 3))
    z = q.rsample(4, generator=_gen())
    assert z.dtype == torch.float32 and q.log_prob(z).dtype == torch.float32


@pytest.mark.parametrize(
    "mean, logvar, error",
    [
        (torch.zeros(2, 3), torch.zeros(2, 4), ValueError),  # shapes differ
        (torch.zeros(3), torch.full((3,), float("nan")), ValueError),
        (torch.tensor([0.0, float("inf")]), torch.zeros(2), ValueError),
        (torch.zeros(2, 3, dtype=F64), torch.zeros(2, 3), ValueError),  # dtypes differ
        ([0.0, 1.0], torch.zeros(2), TypeError),
        (torch.zeros(3, dtype=torch.int64), torch.zeros(3), TypeError),
        (torch.tensor(0.0), torch.tensor(0.0), ValueError),  # no latent dimension
    ],
)
def test_diagonal_bad_input(mean, logvar, error):
    with pytest.raises(error):
        DiagonalGaussian(mean, logvar)


def test_validate_false_skips_value_checks_only():
    DiagonalGaussian(torch.zeros(3), torch.full((3,), float("nan")), validate_args=False)
    with pytest.raises(ValueError, match="same shape"):
        DiagonalGaussian(torch.zeros(3), torch.zeros(2), validate_args=False)


@pytest.mark.parametrize(
    "num_samples, error", [(0, ValueError), (-3, ValueError), (2.0, TypeError), (True, TypeError)]
)
def test_bad_num_samples(num_samples, error):
    q = DiagonalGaussian(torch.zeros(3), torch.zeros(3))
    with pytest.raises(error, match="num_samples"):
        q.rsample(num_samples)


def test_log_prob_wrong_latent_dim():
    q = DiagonalGaussian(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="last dimension 3"):
        q.log_prob(torch.zeros(2, 4))


# --- FullGaussian -------------------------------------------------------------------------------


def test_full_log_prob_and_entropy_match_scipy():
    cov = _spd()
    mean = torch.randn(5, 3, generator=_gen(1), dtype=F64)
    p = FullGaussian(mean, cov)
    z = p.rsample(6, generator=_gen(2))  # (K, N, d)
    assert z.shape == (6, 5, 3)
    for i in range(5):
        ref = stats.multivariate_normal(mean[i].numpy(), cov.numpy())
        want = ref.logpdf(z[:, i].numpy())
        np.testing.assert_allclose(p.log_prob(z)[:, i].numpy(), want, rtol=1e-12)
        np.testing.assert_allclose(p.entropy()[i].item(), ref.entropy(), rtol=1e-12)
    torch.testing.assert_close(p.variance, torch.diagonal(cov).expand(5, 3))
    torch.testing.assert_close(p.stddev, torch.diagonal(cov).sqrt().expand(5, 3))


def test_full_batched_covariance_matches_torch():
    covs = torch.stack([_spd(seed=s) for s in range(4)])  # (N, d, d)
    mean = torch.randn(4, 3, generator=_gen(1), dtype=F64)
    p = FullGaussian(mean, covs)
    ref = MultivariateNormal(mean, covs)
    z = p.rsample(5, generator=_gen(2))
    torch.testing.assert_close(p.log_prob(z), ref.log_prob(z), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(p.entropy(), ref.entropy(), rtol=1e-12, atol=1e-12)


def test_full_rsample_covariance_and_grad():
    cov = _spd(d=2)
    mean = torch.tensor([1.0, -1.0], dtype=F64, requires_grad=True)
    z = FullGaussian(mean, cov).rsample(50_000, generator=_gen(5))
    emp = torch.cov(z.detach().T)
    # entry (i, j) of a sample covariance has sd sqrt((Σ_ii Σ_jj + Σ_ij²) / K) <= max Σ_ii sqrt(2/K)
    assert (emp - cov).abs().max() < 5 * cov.diagonal().max() * np.sqrt(2 / 50_000)
    z.sum().backward()
    torch.testing.assert_close(mean.grad, torch.full((2,), 50_000.0, dtype=F64))


@pytest.mark.parametrize(
    "cov, match",
    [
        (torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=F64), "positive definite"),
        (torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=F64), "symmetric"),
        (torch.eye(3, dtype=F64), "shape"),
        (torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]], dtype=F64), "NaN"),
    ],
)
def test_full_bad_covariance(cov, match):
    with pytest.raises(ValueError, match=match):
        FullGaussian(torch.zeros(2, dtype=F64), cov)


# --- devices ------------------------------------------------------------------------------------


def test_standard_normal_is_reproducible():
    a = standard_normal((3, 2), dtype=F64, device="cpu", generator=_gen(7))
    b = standard_normal((3, 2), dtype=F64, device="cpu", generator=_gen(7))
    assert a.shape == (3, 2) and a.dtype == F64
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.gpu
def test_cpu_generator_with_cuda_tensors():
    mean, logvar = _diag()
    q_cpu = DiagonalGaussian(mean.float(), logvar.float())
    q_gpu = DiagonalGaussian(mean.float().cuda(), logvar.float().cuda())
    z_gpu = q_gpu.rsample(3, generator=_gen(8))  # CPU generator, CUDA tensors
    assert z_gpu.device.type == "cuda"
    torch.testing.assert_close(z_gpu.cpu(), q_cpu.rsample(3, generator=_gen(8)))
    torch.testing.assert_close(q_gpu.log_prob(z_gpu).cpu(), q_cpu.log_prob(z_gpu.cpu()))


# --------------------------------------------------------------- torch.distributions' names


def test_torch_distribution_names_and_shapes():
    g = torch.Generator().manual_seed(5)
    mean = torch.randn(4, 3, generator=g, dtype=F64)
    logvar = torch.randn(4, 3, generator=g, dtype=F64)
    q = DiagonalGaussian(mean, logvar)
    ref = Independent(Normal(mean, (0.5 * logvar).exp()), 1)
    assert isinstance(q, torch.distributions.Distribution) and isinstance(q, Proposal)
    assert q.batch_shape == ref.batch_shape == (4,) and q.event_shape == ref.event_shape == (3,)
    torch.testing.assert_close(q.mean, ref.mean, rtol=0, atol=0)
    torch.testing.assert_close(q.variance, ref.variance, rtol=1e-14, atol=0)
    torch.testing.assert_close(q.stddev, ref.stddev, rtol=1e-14, atol=0)
    assert q.validate_args and not DiagonalGaussian(mean, logvar, validate_args=False).validate_args
    # sample_shape as in torch: () one draw, (K,) K draws, (K, M) a grid; an int K means (K,)
    assert q.rsample().shape == (4, 3) and q.rsample((7, 2)).shape == (7, 2, 4, 3)
    same = [q.rsample(s, generator=torch.Generator().manual_seed(1)) for s in (5, (5,))]
    torch.testing.assert_close(same[0], same[1], rtol=0, atol=0)
    p = FullGaussian(torch.zeros(4, 3, dtype=F64), torch.eye(3, dtype=F64))
    assert p.batch_shape == (4,) and p.event_shape == (3,) and isinstance(p, Proposal)
    torch.testing.assert_close(p.stddev, torch.ones(4, 3, dtype=F64))


def test_kl_divergence_is_registered_for_diagonal_gaussians():
    g = torch.Generator().manual_seed(6)
    q, p = (DiagonalGaussian(*torch.randn(2, 5, 2, generator=g, dtype=F64)) for _ in range(2))
    want = torch.distributions.kl_divergence(Independent(Normal(q.mean, q.stddev), 1),
                                             Independent(Normal(p.mean, p.stddev), 1))
    got = torch.distributions.kl_divergence(q, p)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_log_prob_of_noise_equals_log_prob():
    g = torch.Generator().manual_seed(7)
    q = DiagonalGaussian(*torch.randn(2, 3, 2, generator=g, dtype=F64))
    eps = q.standard_noise((4,), generator=g)
    torch.testing.assert_close(q.log_prob_of_noise(eps), q.log_prob(q.reparameterize(eps)),
                               rtol=1e-12, atol=1e-12)


def test_transform_gives_z_and_its_log_density_from_the_noise():
    g = torch.Generator().manual_seed(8)
    q = DiagonalGaussian(*torch.randn(2, 3, 2, generator=g, dtype=F64))
    eps = q.standard_noise((4,), generator=g)
    z, log_q = q.transform(eps)
    assert torch.equal(z, q.reparameterize(eps)) and torch.equal(log_q, q.log_prob_of_noise(eps))
    torch.testing.assert_close(log_q, torch.distributions.Normal(q.mean, q.stddev).log_prob(z)
                               .sum(-1), rtol=1e-12, atol=1e-12)
