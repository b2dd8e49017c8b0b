"""vaelib.latent against independent references: NumPy for the activity, a Gram-Schmidt rotation
for slerp, SciPy's normal quantile function for the grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from vaelib.latent import (
    encode_dataset,
    inverse_cdf_grid,
    latent_activity,
    latent_grid,
    lerp,
    most_active_dims,
    slerp,
)
from vaelib.vae import VAE

DT = torch.float64


def tiny_vae(latent_dim=3, seed=0):
    torch.manual_seed(seed)
    return VAE(hidden_dims=(8,), latent_dim=latent_dim, data_dim=16)


def test_encode_dataset_matches_one_encoder_call_and_chunks_do_not_matter():
    model = tiny_vae()
    x = torch.bernoulli(torch.full((23, 16), 0.3), generator=torch.Generator().manual_seed(1))
    mu, logvar = encode_dataset(model, x, batch_size=5)
    with torch.no_grad():
        want_mu, want_logvar = model.encode(x)
    torch.testing.assert_close(mu, want_mu)
    torch.testing.assert_close(logvar, want_logvar)
    assert not mu.requires_grad and mu.shape == (23, 3)
    with pytest.raises(ValueError, match="batch_size"):
        encode_dataset(model, x, batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        encode_dataset(model, x[:0])
    with pytest.raises(ValueError, match="shape"):
        encode_dataset(model, x[:, :5])


def test_activity_is_the_population_variance_and_ranks_units():
    g = torch.Generator().manual_seed(2)
    mu = torch.randn(500, 6, generator=g, dtype=DT) * torch.tensor([0.1, 2.0, 0.01, 1.0, 3.0, 0.5])
    activity = latent_activity(mu)
    np.testing.assert_allclose(activity.numpy(), np.var(mu.numpy(), axis=0), rtol=1e-12)
    assert most_active_dims(mu, 3).tolist() == [4, 1, 3]
    assert most_active_dims(mu, 10).tolist() == [4, 1, 3, 5, 0, 2]  # at most d
    tied = torch.zeros(4, 3, dtype=DT)
    assert most_active_dims(tied, 3).tolist() == [0, 1, 2]  # ties: lower index first
    with pytest.raises(ValueError, match="k must"):
        most_active_dims(mu, 0)
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        latent_activity(mu[0])


def test_lerp_is_the_straight_line():
    z0, z1 = torch.tensor([1.0, 2.0], dtype=DT), torch.tensor([3.0, -2.0], dtype=DT)
    t = torch.tensor([0.0, 0.25, 1.0], dtype=DT)
    path = lerp(z0, z1, t)
    assert path.shape == (3, 2)
    torch.testing.assert_close(path, torch.tensor([[1.0, 2.0], [1.5, 1.0], [3.0, -2.0]], dtype=DT))
    assert lerp(z0, z1, 0.5).shape == (1, 2)


def rotation_reference(z0, z1, t):
    """Equal norms: rotate z0 towards z1 by the angle tΩ in their plane (Gram-Schmidt)."""
    r = np.linalg.norm(z0)
    e0 = z0 / r
    perp = z1 - (z1 @ e0) * e0
    e1 = perp / np.linalg.norm(perp)
    omega = np.arccos(np.clip(z0 @ z1 / (r * np.linalg.norm(z1)), -1, 1))
    return np.stack([r * (np.cos(s * omega) * e0 + np.sin(s * omega) * e1) for s in t])


def test_slerp_rotates_at_constant_speed_and_keeps_equal_norms():
    g = torch.Generator().manual_seed(3)
    z0, z1 = torch.randn(2, 20, generator=g, dtype=DT)
    z1 = z1 * z0.norm() / z1.norm()  # equal norms
    t = torch.linspace(0, 1, 11, dtype=DT)
    path = slerp(z0, z1, t)  # (T, d)
    np.testing.assert_allclose(path.numpy(), rotation_reference(z0.numpy(), z1.numpy(), t.numpy()),
                               atol=1e-12)
    torch.testing.assert_close(path.norm(dim=-1), z0.norm().expand(11))  # the norm is kept
    torch.testing.assert_close(path[0], z0)
    torch.testing.assert_close(path[-1], z1)
    # lerp's midpoint is shorter by cos(Ω/2): it cuts through the sphere
    omega = torch.arccos(z0 @ z1 / z0.norm() ** 2)
    torch.testing.assert_close(lerp(z0, z1, 0.5)[0].norm(), z0.norm() * torch.cos(omega / 2))


def test_slerp_with_unequal_norms_matches_the_formula_and_stays_in_the_plane():
    g = torch.Generator().manual_seed(4)
    z0, z1 = torch.randn(2, 5, generator=g, dtype=DT)
    z1 = 3 * z1
    t = np.array([0.0, 0.3, 0.7, 1.0])
    a, b = z0.numpy(), z1.numpy()
    omega = np.arccos(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    want = np.stack([(np.sin((1 - s) * omega) * a + np.sin(s * omega) * b) / np.sin(omega)
                     for s in t])
    np.testing.assert_allclose(slerp(z0, z1, torch.from_numpy(t)).numpy(), want, atol=1e-12)


def test_slerp_batches_and_degenerate_endpoints():
    g = torch.Generator().manual_seed(5)
    z0, z1 = torch.randn(2, 4, 3, generator=g, dtype=DT)  # 4 pairs at once
    t = torch.tensor([0.2, 0.9], dtype=DT)
    path = slerp(z0, z1, t)
    assert path.shape == (2, 4, 3)
    for n in range(4):
        torch.testing.assert_close(path[:, n], slerp(z0[n], z1[n], t))
    z = torch.tensor([1.0, 2.0, 2.0], dtype=DT)
    for other in (2 * z, -z, torch.zeros(3, dtype=DT)):  # parallel, antipodal, zero: the line
        got = slerp(z, other, t)
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, lerp(z, other, t))
    with pytest.raises(ValueError, match="same shape"):
        slerp(z, z[:2], 0.5)
    with pytest.raises(TypeError, match="floating-point"):
        slerp(torch.ones(3, dtype=torch.long), torch.ones(3, dtype=torch.long), 0.5)


def test_inverse_cdf_grid_matches_scipy_and_gives_equal_prior_mass():
    for n in (1, 2, 15, 30):
        grid = inverse_cdf_grid(n, dtype=DT)
        u = (np.arange(n) + 0.5) / n
        np.testing.assert_allclose(grid.numpy(), stats.norm.ppf(u), rtol=1e-12, atol=1e-12)
    grid = inverse_cdf_grid(15, dtype=DT).numpy()
    edges = stats.norm.ppf(np.arange(16) / 15)  # the slices the points are the medians of
    mass_below = stats.norm.cdf(grid) - stats.norm.cdf(edges[:-1])
    np.testing.assert_allclose(mass_below, 0.5 / 15, rtol=1e-9)  # each point halves its slice
    with pytest.raises(ValueError, match="n must"):
        inverse_cdf_grid(0)


def test_latent_grid_reads_like_a_plot():
    grid = latent_grid(5, dtype=DT)
    axis = inverse_cdf_grid(5, dtype=DT)
    assert grid.shape == (5, 5, 2)
    torch.testing.assert_close(grid[0, -1], torch.stack([axis[-1], axis[-1]]))  # top right
    torch.testing.assert_close(grid[-1, 0], torch.stack([axis[0], axis[0]]))  # bottom left
    torch.testing.assert_close(grid[2, :, 0], axis)  # z1 grows to the right along a row
    torch.testing.assert_close(grid[:, 1, 1], axis.flip(0))  # z2 grows upwards
