"""vaelib.objectives against independent references: the IWAE gradient against per-sample
autograd of log w_k weighted by hand, K = 1 against the ELBO path, DReG's encoder gradient against
its formula and its expectation against the exact IWAE_K gradient (quadrature), and the quadrature
against closed forms (the ELBO at K = 1, the χ² asymptote for large K) and Monte Carlo."""

from __future__ import annotations

import math

import pytest
import torch

from vaelib.estimators import elbo, iwae_bound
from vaelib.gaussian import LOG_2PI, DiagonalGaussian
from vaelib.objectives import (
    iwae_bound_1d,
    iwae_surrogate,
    iwae_surrogate_at,
    self_normalized_weights,
)
from vaelib.toy import LinearGaussian
from vaelib.vae import VAE

F64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


class Toy:
    """p(z) = N(0, I_d), p(x|z) = N(W z + b, s² I): W (D, d) and b (D,) may require grad."""

    def __init__(self, W, b, s):
        self.W, self.b, self.s = W, b, s

    def log_joint(self, x, z):  # x (N, D), z (K, N, d) -> (K, N)
        sq = (x - z @ self.W.T - self.b).square().sum(-1)
        D = x.shape[-1]
        return (-0.5 * (z.square() + LOG_2PI).sum(-1)
                - 0.5 * (sq / self.s**2 + D * (LOG_2PI + 2 * math.log(self.s))))


def toy_case(d=2, N=3, seed=0):
    g = gen(seed)
    W = torch.randn(4, d, generator=g, dtype=F64).requires_grad_(True)
    b = torch.randn(4, generator=g, dtype=F64).requires_grad_(True)
    x = torch.randn(N, 4, generator=g, dtype=F64)
    mu = (0.3 * torch.randn(N, d, generator=g, dtype=F64)).requires_grad_(True)
    logvar = (-0.5 + 0.2 * torch.randn(N, d, generator=g, dtype=F64)).requires_grad_(True)
    return Toy(W, b, 0.7), x, mu, logvar


def test_toy_log_joint_is_vaelibs():
    model, x, mu, _ = toy_case()
    z = torch.randn(5, 3, 2, generator=gen(1), dtype=F64)
    ref = LinearGaussian(model.W.detach(), model.b.detach(), 0.7).log_joint(x, z)
    assert torch.allclose(model.log_joint(x, z), ref, rtol=1e-12)


# --- self-normalized weights -----------------------------------------------------------------

def test_self_normalized_weights_by_hand_and_stable():
    log_w = torch.tensor([[0.1, -2.0], [1.3, 0.0], [-0.4, 5.0]], dtype=F64)
    w = log_w.exp()
    assert torch.allclose(self_normalized_weights(log_w), w / w.sum(0), rtol=1e-14)
    far = log_w - 2000.0  # exp underflows to 0 here; the softmax does not care about the shift
    assert torch.allclose(self_normalized_weights(far), w / w.sum(0), rtol=1e-12)
    assert torch.allclose(self_normalized_weights(log_w, dim=1).sum(1), torch.ones(3, dtype=F64))
    with pytest.raises(ValueError):
        self_normalized_weights(torch.tensor(1.0))
    with pytest.raises(TypeError):
        self_normalized_weights([0.0, 1.0])


def test_self_normalized_weights_refuse_what_has_no_weights():
    """All -inf along dim (every weight 0: 0/0), any +inf (inf/inf) or NaN would give NaN."""
    ok = torch.tensor([[0.0, -math.inf], [1.0, -math.inf]], dtype=F64)
    assert torch.equal(self_normalized_weights(ok, dim=1)[:, 1], torch.zeros(2, dtype=F64))
    with pytest.raises(ValueError, match="-inf for every sample along dim 0") as error:
        self_normalized_weights(ok, dim=0)  # column 1 is all -inf
    assert "1 of 2" in str(error.value)
    with pytest.raises(ValueError, match=r"\+inf"):
        self_normalized_weights(torch.tensor([0.0, math.inf, 1.0], dtype=F64))
    with pytest.raises(ValueError, match="NaN"):
        self_normalized_weights(torch.tensor([0.0, math.nan], dtype=F64))
    with pytest.raises(ValueError, match="dim=2 .* 2 dimension"):
        self_normalized_weights(ok, dim=2)
    # validate=False (the training step: no host sync) skips the reading checks
    assert torch.isnan(self_normalized_weights(ok, dim=0, validate=False)[:, 1]).all()


# --- the IWAE gradient -------------------------------------------------------------------------

def per_sample_reference(model, x, mu, logvar, K, seed):
    """Σ_n Σ_k w̃_nk ∇ log w_nk from one autograd call per (point, sample): no log-sum-exp."""
    eps = torch.randn(K, *mu.shape, generator=gen(seed), dtype=F64)  # as rsample draws them
    params = [model.W, model.b, mu, logvar]
    total = [torch.zeros_like(p) for p in params]
    for n in range(x.shape[0]):
        log_w, grads = [], []
        for k in range(K):
            z = mu[n] + torch.exp(0.5 * logvar[n]) * eps[k, n]  # (d,)
            lw = (model.log_joint(x[n:n + 1], z[None, None])[0, 0]
                  - DiagonalGaussian(mu[n], logvar[n]).log_prob(z))
            log_w.append(lw.item())
            grads.append(torch.autograd.grad(lw, params))
        w = torch.tensor(log_w, dtype=F64).exp()
        w = w / w.sum()  # w̃_k = w_k / Σ_j w_j (moderate values here: no overflow)
        for k in range(K):
            for i, g in enumerate(grads[k]):
                total[i] = total[i] + w[k] * g
    return total


@pytest.mark.parametrize("K", [1, 3, 8])
def test_plain_gradient_is_the_self_normalized_sum(K):
    model, x, mu, logvar = toy_case()
    surrogate = iwae_surrogate(model, x, DiagonalGaussian(mu, logvar), K, generator=gen(5))
    got = torch.autograd.grad(surrogate.sum(), [model.W, model.b, mu, logvar])
    want = per_sample_reference(model, x, mu, logvar, K, seed=5)
    for a, b in zip(got, want):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("encoder_gradient", ["plain", "dreg"])
def test_value_is_the_iwae_estimate(encoder_gradient):
    model, x, mu, logvar = toy_case()
    q = DiagonalGaussian(mu, logvar)
    value = iwae_surrogate(model, x, q, 6, encoder_gradient, generator=gen(7))
    assert value.shape == (3,)
    assert torch.allclose(value, iwae_bound(model, x, q, 6, generator=gen(7)), rtol=1e-13)


def test_k1_is_the_elbo_gradient_exactly():
    model, x, mu, logvar = toy_case()
    params = [model.W, model.b, mu, logvar]
    q = DiagonalGaussian(mu, logvar)
    ours = torch.autograd.grad(iwae_surrogate(model, x, q, 1, generator=gen(9)).sum(), params)
    theirs = torch.autograd.grad(elbo(model, x, q, 1, generator=gen(9)).sum(), params)
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


def test_k1_on_the_vae_is_the_elbo_gradient():
    torch.manual_seed(0)
    vae = VAE(data_dim=12, hidden_dims=(8,), latent_dim=3)
    x = torch.bernoulli(torch.full((5, 12), 0.4), generator=gen(1))
    q = vae.posterior(x)
    ours = torch.autograd.grad(iwae_surrogate(vae, x, q, 1, generator=gen(2)).sum(),
                               list(vae.parameters()), retain_graph=True)
    theirs = torch.autograd.grad(elbo(vae, x, q, 1, generator=gen(2)).sum(),
                                 list(vae.parameters()))
    for a, b in zip(ours, theirs):
        assert torch.equal(a, b)


# --- DReG ---------------------------------------------------------------------------------------

def test_dreg_decoder_gradient_is_plain_and_encoder_gradient_is_the_formula():
    model, x, mu, logvar = toy_case(N=4)
    K = 5
    plain = torch.autograd.grad(
        iwae_surrogate(model, x, DiagonalGaussian(mu, logvar), K, generator=gen(11)).sum(),
        [model.W, model.b, mu, logvar])
    dreg = torch.autograd.grad(
        iwae_surrogate(model, x, DiagonalGaussian(mu, logvar), K, "dreg", generator=gen(11)).sum(),
        [model.W, model.b, mu, logvar])
    assert torch.allclose(dreg[0], plain[0], rtol=1e-12) and torch.allclose(dreg[1], plain[1],
                                                                             rtol=1e-12)
    # Σ_k w̃_k² ∂_z log w_k · ∂z_k/∂φ by hand: ∂z/∂μ = 1, ∂z/∂log σ² = ½ σ ε
    eps = torch.randn(K, *mu.shape, generator=gen(11), dtype=F64)
    mu0, lv0 = mu.detach(), logvar.detach()
    std = torch.exp(0.5 * lv0)
    z = (mu0 + std * eps).requires_grad_(True)  # (K, N, d)
    log_w = model.log_joint(x, z) - DiagonalGaussian(mu0, lv0).log_prob(z)  # (K, N)
    (dlogw_dz,) = torch.autograd.grad(log_w.sum(), z)  # ∂_z log w_k, (K, N, d)
    w2 = torch.softmax(log_w.detach(), 0).square().unsqueeze(-1)  # w̃², (K, N, 1)
    assert torch.allclose(dreg[2], (w2 * dlogw_dz).sum(0), rtol=1e-10, atol=1e-13)
    assert torch.allclose(dreg[3], (w2 * dlogw_dz * 0.5 * std * eps).sum(0), rtol=1e-10,
                          atol=1e-13)
    assert not torch.allclose(dreg[2], plain[2], rtol=1e-3)  # a different estimator


def test_dreg_on_the_vae_runs_and_keeps_the_decoder_gradient():
    torch.manual_seed(0)
    vae = VAE(data_dim=12, hidden_dims=(8,), latent_dim=3)
    x = torch.bernoulli(torch.full((5, 12), 0.4), generator=gen(1))
    grads = {}
    for kind in ("plain", "dreg"):
        vae.zero_grad()
        q = vae.posterior(x)
        (-iwae_surrogate(vae, x, q, 4, kind, generator=gen(3)).mean()).backward()
        grads[kind] = {n: p.grad.clone() for n, p in vae.named_parameters()}
    for name in grads["plain"]:
        same = torch.allclose(grads["plain"][name], grads["dreg"][name], rtol=1e-5, atol=1e-7)
        assert same == name.startswith("decoder"), name


# --- the exact reference and unbiasedness ------------------------------------------------------

W1 = torch.tensor([[1.5], [-0.7]], dtype=F64)
B1 = torch.tensor([0.3, -0.2], dtype=F64)
X1 = torch.tensor([[2.0, -1.0]], dtype=F64)


def one_d_case():
    W = W1.clone().requires_grad_(True)
    b = B1.clone().requires_grad_(True)
    mu = torch.tensor(0.2, dtype=F64, requires_grad=True)
    logvar = torch.tensor(-1.0, dtype=F64, requires_grad=True)
    return Toy(W, b, 0.8), mu, logvar


def test_quadrature_k1_is_the_closed_form_elbo_and_its_gradient():
    model, mu, logvar = one_d_case()
    exact = iwae_bound_1d(lambda z: model.log_joint(X1, z[:, None, None])[:, 0], mu, logvar, 1)
    # closed form: E_q log p(x, z) + H[q], with E_q|x - wz - b|² = |x - wμ - b|² + σ²|w|²
    var = logvar.exp()
    sq = (X1[0] - model.W[:, 0] * mu - model.b).square().sum() + var * model.W.square().sum()
    log_lik = -0.5 * (sq / 0.64 + 2 * (LOG_2PI + 2 * math.log(0.8)))  # E_q log p(x|z), D = 2
    closed = -0.5 * (mu.square() + var + LOG_2PI) + log_lik + 0.5 * (1 + LOG_2PI + logvar)
    assert torch.isclose(exact, closed, rtol=1e-10)
    params = [model.W, model.b, mu, logvar]
    for a, b in zip(torch.autograd.grad(exact, params), torch.autograd.grad(closed, params)):
        assert torch.allclose(a, b, rtol=1e-8, atol=1e-10)


def test_quadrature_large_k_follows_the_chi_square_asymptote():
    model, mu, logvar = one_d_case()
    lg = LinearGaussian(W1, B1, 0.8)
    log_px = lg.log_marginal(X1).item()
    m, v = (t.item() for t in lg.posterior_parameters(X1))  # exact posterior N(m, v)
    s2, muq = math.exp(-1.0), 0.2
    a = 1 / v - 1 / (2 * s2)  # E_q[(p(z|x)/q(z))²] = ∫ p²/q, a Gaussian integral
    chi2 = (math.sqrt(s2) / (v * math.sqrt(2 * a))
            * math.exp((m / v - muq / (2 * s2))**2 / a - m**2 / v + muq**2 / (2 * s2)) - 1)
    K = 10_000
    exact = iwae_bound_1d(lambda z: model.log_joint(X1, z[:, None, None])[:, 0], mu, logvar, K)
    gap_times_k = (log_px - exact.item()) * K  # log p(x) - IWAE_K ≈ Var(w / p(x)) / (2K)
    assert gap_times_k == pytest.approx(chi2 / 2, rel=1e-3)


def test_quadrature_matches_monte_carlo():
    model, mu, logvar = one_d_case()
    n = 200_000
    q = DiagonalGaussian(mu.detach().expand(n, 1), logvar.detach().expand(n, 1))
    draws = iwae_bound(model, X1.expand(n, 2), q, 3, generator=gen(4))  # (n,) draws of log p̂_3
    exact = iwae_bound_1d(lambda z: model.log_joint(X1, z[:, None, None])[:, 0], mu, logvar, 3)
    z = (draws.mean() - exact).abs() / (draws.std() / n**0.5)
    assert z < 5


def test_quadrature_errors():
    model, mu, logvar = one_d_case()
    lj = lambda z: model.log_joint(X1, z[:, None, None])[:, 0]  # noqa: E731
    with pytest.raises(ValueError, match="scalars"):
        iwae_bound_1d(lj, torch.zeros(2, dtype=F64), torch.zeros(2, dtype=F64), 2)
    with pytest.raises(ValueError, match="num_samples"):
        iwae_bound_1d(lj, mu, logvar, 0)
    with pytest.raises(ValueError, match="widen"):  # q far too wide for a t-grid this short
        iwae_bound_1d(lj, mu, torch.tensor(3.0, dtype=F64), 1, log_t_range=(-40.0, 10.0))
    with pytest.raises(ValueError, match="same shape"):
        iwae_bound_1d(lambda z: z.sum(), mu, logvar, 2)


def standard_normal_log_joint(z):
    """log p(x, z) = log N(z; 0, 1): p(x) = 1 and q = N(0, 1) is the posterior, so every weight is
    w = 1 and IWAE_K = log p(x) = 0 exactly, for every K."""
    return -0.5 * (z.square() + LOG_2PI)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("K", [1, 10**4, 10**6, 10**9])
def test_quadrature_is_exact_at_large_k_in_float32_too(dtype, K):
    """float32 used to give -0.0018 at K = 10⁴, -0.17 at 10⁶ and -6.0 at 10⁹ (L(t/K)^K raises a
    rounding error to the K-th power); computed in float64 inside, both are within 1e-6 of 0."""
    zero = torch.tensor(0.0, dtype=dtype)
    exact = iwae_bound_1d(standard_normal_log_joint, zero, zero, K)
    assert exact.dtype == dtype  # returned in the caller's dtype
    assert abs(exact.item()) < 1e-6


def test_quadrature_in_float32_agrees_with_float64_and_keeps_the_gradient():
    """A float32 model (log_joint computes in float32) against the float64 one: the value at
    K = 10⁶ to 1e-6 relative, and the gradient in mean (at K = 4, where it is not ~0) to 1e-4."""
    model, mu, logvar = one_d_case()
    model32 = Toy(W1.float(), B1.float(), 0.8)
    mu32 = mu.detach().float().requires_grad_(True)

    def both(K):
        want = iwae_bound_1d(lambda z: model.log_joint(X1, z[:, None, None])[:, 0], mu, logvar, K)
        got = iwae_bound_1d(lambda z: model32.log_joint(X1.float(), z[:, None, None])[:, 0], mu32,
                            logvar.detach().float(), K)
        return want, got

    want, got = both(10**6)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    want, got = both(4)
    (g64,) = torch.autograd.grad(want, mu)
    (g32,) = torch.autograd.grad(got, mu32)
    assert abs(g64.item()) > 0.01 and g32.item() == pytest.approx(g64.item(), rel=1e-4)


@pytest.mark.parametrize("mean, logvar", [(math.nan, 0.0), (0.0, math.inf), (-math.inf, 0.0)])
def test_quadrature_names_nan_and_inf_inputs(mean, logvar):
    with pytest.raises(ValueError, match="must be finite") as error:
        iwae_bound_1d(standard_normal_log_joint, torch.tensor(mean, dtype=F64),
                      torch.tensor(logvar, dtype=F64), 4)
    assert "widen" not in str(error.value)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_quadrature_names_a_log_joint_that_returns_nan_or_inf(bad):
    def log_joint(z):
        out = standard_normal_log_joint(z).clone()
        out[len(z) // 2] = bad  # at z = mean
        return out
    zero = torch.tensor(0.0, dtype=F64)
    with pytest.raises(ValueError, match="log_joint returned NaN or ±inf at 1 of 801") as error:
        iwae_bound_1d(log_joint, zero, zero, 4)
    assert "widen" not in str(error.value)


def test_quadrature_names_a_density_of_zero_where_q_has_mass():
    """p(x, z) = 2 N(z; 0, 1) on z > 0 only: half of q's draws get w = 0, so IWAE_K = -inf."""
    zero = torch.tensor(0.0, dtype=F64)

    def half_line(z):
        return torch.where(z > 0, standard_normal_log_joint(z) + math.log(2), -math.inf)
    with pytest.raises(ValueError, match="NaN or ±inf at 40[01] of 801 .* -inf for every K"):
        iwae_bound_1d(half_line, zero, zero, 4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(eps_points=0), "eps_points must be at least 2"),
    (dict(eps_points=1), "eps_points must be at least 2"),
    (dict(log_t_points=0), "log_t_points must be at least 2"),
    (dict(eps_max=0.0), "eps_max must be a finite number > 0"),
    (dict(eps_max=math.nan), "eps_max must be a finite number > 0"),
    (dict(log_t_range=(10.0, -10.0)), "low < high"),
    (dict(log_t_range=(-40.0, math.inf)), "low < high"),
    (dict(log_t_range=5.0), "two numbers"),
])
def test_quadrature_grid_errors_are_named(kwargs, match):
    zero = torch.tensor(0.0, dtype=F64)
    with pytest.raises(ValueError, match=match):
        iwae_bound_1d(standard_normal_log_joint, zero, zero, 4, **kwargs)


def replicated_gradients(K, kind, R, seed):
    """R independent K-sample gradient estimates at the 1-D case's parameters: (R, 6)."""
    W = W1.T.expand(R, 2).clone().requires_grad_(True)  # one copy of θ and φ per replicate
    b = B1.expand(R, 2).clone().requires_grad_(True)
    mu = torch.full((R, 1), 0.2, dtype=F64, requires_grad=True)
    logvar = torch.full((R, 1), -1.0, dtype=F64, requires_grad=True)

    class Replicated:
        def log_joint(self, x, z):  # x (R, 2), z (K, R, 1)
            sq = (x - z * W - b).square().sum(-1)
            return (-0.5 * (z.square() + LOG_2PI).sum(-1)
                    - 0.5 * (sq / 0.64 + 2 * (LOG_2PI + 2 * math.log(0.8))))

    surrogate = iwae_surrogate(Replicated(), X1.expand(R, 2), DiagonalGaussian(mu, logvar), K,
                               kind, generator=gen(seed))
    grads = torch.autograd.grad(surrogate.sum(), [W, b, mu, logvar])
    return torch.cat([g.reshape(R, -1) for g in grads], dim=1)  # (R, 2 + 2 + 1 + 1)


@pytest.mark.parametrize("K", [1, 4, 32])
def test_both_estimators_are_unbiased_for_the_exact_gradient(K):
    model, mu, logvar = one_d_case()
    exact = iwae_bound_1d(lambda z: model.log_joint(X1, z[:, None, None])[:, 0], mu, logvar, K)
    want = torch.cat([g.reshape(-1) for g in
                      torch.autograd.grad(exact, [model.W, model.b, mu, logvar])])  # (6,)
    R = 40_000
    for kind in ("plain", "dreg"):
        g = replicated_gradients(K, kind, R, seed=K)
        z = ((g.mean(0) - want) / (g.std(0) / R**0.5)).abs().max()
        assert z < 5, (kind, z)


def test_a_biased_encoder_gradient_fails_the_same_check():
    """Σ_k w̃_k ∂_z log w_k ∂z_k/∂φ without the second w̃_k ("sticking the landing" at K > 1) is
    biased: the check above must be able to tell."""
    K, R = 8, 40_000
    model, mu, logvar = one_d_case()
    exact = iwae_bound_1d(lambda z: model.log_joint(X1, z[:, None, None])[:, 0], mu, logvar, K)
    want_mu = torch.autograd.grad(exact, mu)[0]
    eps = torch.randn(K, R, 1, generator=gen(3), dtype=F64)
    z = (0.2 + math.exp(-0.5) * eps).requires_grad_(True)
    log_w = (Toy(W1, B1, 0.8).log_joint(X1.expand(R, 2), z)
             - DiagonalGaussian(torch.full((R, 1), 0.2, dtype=F64),
                                torch.full((R, 1), -1.0, dtype=F64)).log_prob(z))
    (dz,) = torch.autograd.grad(log_w.sum(), z)
    stl = (torch.softmax(log_w.detach(), 0).unsqueeze(-1) * dz).sum(0)[:, 0]  # (R,)
    assert ((stl.mean() - want_mu) / (stl.std() / R**0.5)).abs() > 10


# --- bad input ----------------------------------------------------------------------------------

def test_errors():
    model, x, mu, logvar = toy_case()
    q = DiagonalGaussian(mu, logvar)
    with pytest.raises(ValueError, match="encoder_gradient"):
        iwae_surrogate(model, x, q, 3, "stl")
    with pytest.raises(ValueError, match="num_samples"):
        iwae_surrogate(model, x, q, 0)
    with pytest.raises(TypeError, match="DiagonalGaussian"):
        iwae_surrogate(model, x, (mu, logvar), 3)


@pytest.mark.parametrize("encoder_gradient", ["plain", "dreg"])
def test_a_proposal_for_other_points_than_x_is_named(encoder_gradient):
    model, x, mu, logvar = toy_case(N=4)
    q = DiagonalGaussian(mu[:2], logvar[:2])  # q(z|x) of 2 points, x of 4
    with pytest.raises(ValueError, match=r"proposal .* \(2, 2\) .* x .* \(4, 4\)"):
        iwae_surrogate(model, x, q, 3, encoder_gradient)
    # one q over (d,) for one point x of (1, D) broadcasts, as chapter 10's toy uses it
    one = iwae_surrogate(model, x[:1], DiagonalGaussian(mu[0], logvar[0]), 3, encoder_gradient)
    assert one.numel() == 1 and torch.isfinite(one).all()
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        iwae_surrogate(model, x.tolist(), DiagonalGaussian(mu, logvar), 3, encoder_gradient)


@pytest.mark.parametrize("encoder_gradient", ["plain", "dreg"])
def test_surrogate_at_given_samples_is_the_surrogate(encoder_gradient):
    # The trainer draws z itself (to log log p(x|z)) and calls iwae_surrogate_at: the same value
    # and the same gradient as iwae_surrogate from the same generator state.
    torch.manual_seed(0)
    vae = VAE(data_dim=6, hidden_dims=(5,), latent_dim=2, likelihood="gaussian")
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(1))
    grads = []
    for at in (False, True):
        vae.zero_grad()
        g = torch.Generator().manual_seed(2)
        q = vae.posterior(x)
        if at:
            z = q.rsample((3,), generator=g)
            value = iwae_surrogate_at(z, vae.log_joint(x, z), q, encoder_gradient)
        else:
            value = iwae_surrogate(vae, x, q, 3, encoder_gradient, generator=g)
        value.sum().backward()
        grads.append((value.detach(), [p.grad.clone() for p in vae.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=0, atol=0)
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
