"""vaelib.gaps against closed forms (the best mean-field Gaussian of a linear-Gaussian posterior),
quadrature (KL(q ‖ p(z|x)) and the ELBO on a grid), and the decomposition's own identities."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from vaelib.gaps import (
    InferenceGaps,
    PosteriorFit,
    fit_posterior,
    inference_gaps,
    optimize_local_posterior,
)
from vaelib.gaussian import DiagonalGaussian
from vaelib.toy import LinearGaussian, NonlinearToy, NonlinearToy2D
from vaelib.vae import VAE

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _correlated_linear_model():
    """A linear-Gaussian model whose two latent columns nearly agree, so that the posterior is
    strongly correlated (correlation about -0.8): the best diagonal q keeps a clear gap."""
    W = torch.tensor([[1.0, 0.8], [0.6, 0.9], [0.3, 0.2], [-0.2, -0.3]], dtype=F64)
    return LinearGaussian(W, torch.tensor([0.1, -0.2, 0.3, 0.0], dtype=F64), noise_std=0.5)


def _best_mean_field(model, x):
    """The best diagonal Gaussian for a Gaussian posterior N(μ⋆, Λ⁻¹) (ch. 5): mean μ⋆,
    variances 1/Λ_jj, and its gap KL = ½ (Σ_j log Λ_jj - log det Λ)."""
    mean, cov = model.posterior_parameters(x)
    precision = torch.linalg.inv(cov)  # Λ
    diag = precision.diagonal()
    kl = 0.5 * (diag.log().sum() - torch.logdet(precision))
    return mean, -diag.log().expand_as(mean), kl


def _kl_diag_to_full(q_mean, q_logvar, p_mean, p_cov):
    """KL(N(m, diag v) ‖ N(μ, Σ))
    = ½ [tr(Σ⁻¹V) + (μ - m)ᵀ Σ⁻¹ (μ - m) - d + log det Σ - log det V]."""
    precision = torch.linalg.inv(p_cov)
    diff = p_mean - q_mean  # (N, d)
    trace = (precision.diagonal() * q_logvar.exp()).sum(-1)
    maha = torch.einsum("ni,ij,nj->n", diff, precision, diff)
    d = q_mean.shape[-1]
    return 0.5 * (trace + maha - d + torch.logdet(p_cov) - q_logvar.sum(-1))


def _elbo_by_quadrature(model, x, q, limit=7.0, size=1401):
    """ELBO(q) = ∫ φ(ε) [log p(x, T(ε)) - log q(T(ε))] dε on a grid of the base noise ε (1-D or
    2-D trapezoid rule): no sampling, so it checks the Monte Carlo estimate."""
    d = q.event_shape[0]
    axis = torch.linspace(-limit, limit, size, dtype=F64)
    step = (axis[1] - axis[0]).item()
    eps = axis[:, None] if d == 1 else torch.cartesian_prod(axis, axis)  # (G, d)
    eps = eps[:, None, :]  # (G, 1, d): one data point
    with torch.no_grad():
        z, log_q = q.transform(eps)
        integrand = model.log_joint(x, z) - log_q  # (G, 1)
    phi = torch.exp(-0.5 * eps.square().sum(-1)) / (2 * math.pi) ** (d / 2)  # (G, 1)
    return (phi * integrand).sum().item() * step**d


# --- fit_posterior --------------------------------------------------------------------------


def test_gaussian_fit_reaches_the_best_mean_field_elbo_of_a_linear_gaussian():
    """L = 0 on the linear-Gaussian model: the fitted q must be the closed-form best diagonal
    Gaussian, and its gap KL(q ‖ p(z|x)) = ½ (Σ log Λ_jj - log det Λ), for three x at once."""
    model = _correlated_linear_model()
    x = model.sample(3, generator=_gen(1))[0]
    fit = fit_posterior(model, x, 0, steps=400, anneal=0.0, restarts=1, seed=0)
    assert isinstance(fit, PosteriorFit) and fit.flow_length == 0
    best_mean, best_logvar, best_kl = _best_mean_field(model, x)
    assert best_kl > 0.3  # the posterior is correlated: a diagonal q cannot match it
    # near its optimum the ELBO is flat (quadratic), so the parameters carry the step noise of
    # the last steps (0.05 is a fifth of a posterior standard deviation) while the ELBO is
    # within 2e-3 nats of the best (below)
    torch.testing.assert_close(fit.q.base.mean, best_mean, rtol=0, atol=0.05)
    torch.testing.assert_close(fit.q.base.logvar, best_logvar, rtol=0, atol=0.05)
    # the reported gap is the fitted q's exact KL, to within its Monte Carlo error ...
    exact_kl = _kl_diag_to_full(fit.q.base.mean, fit.q.base.logvar,
                                *model.posterior_parameters(x))
    assert ((fit.gap - exact_kl).abs() <= 4 * fit.elbo_se).all()
    # ... and that KL is the best mean-field one to 2e-3 nats (optimization error)
    assert (exact_kl - best_kl).max() < 2e-3 and (exact_kl - best_kl).min() > -1e-12
    assert (fit.elbo_se < 0.01).all()


@pytest.mark.parametrize("x", [[0.8, 0.4], [0.0, 2.0]])
def test_gaussian_gap_on_the_1d_toy_is_the_quadrature_kl(x):
    """KL(q ‖ p(z|x)) = ∫ q(z) [log q(z) - log p(z|x)] dz by quadrature, q from scipy.stats."""
    toy = NonlinearToy()
    x = torch.tensor([x], dtype=F64)
    fit = fit_posterior(toy, x, 0, steps=300, seed=1)
    m, s = fit.q.base.mean.item(), fit.q.base.stddev.item()
    z = toy.z_grid
    q = stats.norm(m, s)
    log_q = torch.as_tensor(q.logpdf(z.numpy()))
    integrand = q.pdf(z.numpy()) * (log_q - toy.log_posterior_density(x, z)[:, 0]).numpy()
    kl = np.trapezoid(integrand, z.numpy())
    assert abs(fit.gap.item() - kl) < 4 * fit.elbo_se.item()
    assert fit.gap.item() > 0.01  # not Gaussian: a gap remains


def test_flow_gap_matches_the_elbo_by_quadrature_in_1d():
    toy = NonlinearToy()
    x = torch.tensor([[0.0, 2.0]], dtype=F64)  # two modes, z and -z
    fit = fit_posterior(toy, x, 4, seed=0)
    assert fit.flow_length == 4 and fit.history.shape == (600, 1)
    exact = toy.log_marginal(x).item() - _elbo_by_quadrature(toy, x, fit.q, size=4001)
    assert abs(fit.gap.item() - exact) < 4 * fit.elbo_se.item() + 1e-6


def test_longer_flows_close_the_gap_on_the_two_mode_toy():
    """NonlinearToy2D at x = 1: two curved modes. L = 0, 1, 2, 4, 8: each gap is no larger than
    any shorter flow's beyond Monte Carlo noise (4 s.e.) and a small optimization slack; the
    Gaussian covers one mode (gap > 1 nat), eight maps nearly both (gap < 0.3 nat); every gap is
    the ELBO by quadrature of the same q to within its Monte Carlo error."""
    toy = NonlinearToy2D()
    x = torch.tensor([[1.0]], dtype=F64)
    fits = {L: fit_posterior(toy, x, L, seed=0) for L in (0, 1, 2, 4, 8)}
    gaps = {L: fit.gap.item() for L, fit in fits.items()}
    ses = {L: fit.elbo_se.item() for L, fit in fits.items()}
    for long in gaps:
        for short in gaps:
            if short < long:
                noise = 4 * math.hypot(ses[long], ses[short]) + 0.01
                assert gaps[long] <= gaps[short] + noise, (long, short, gaps)
    assert gaps[0] > 1.0 and gaps[8] < 0.3, gaps
    log_px = toy.log_marginal(x).item()
    for L in (0, 8):
        exact = log_px - _elbo_by_quadrature(toy, x, fits[L].q, limit=7.0, size=401)
        assert abs(gaps[L] - exact) < 4 * ses[L] + 1e-4, (L, gaps[L], exact)
    assert all((fit.gap > 0).all() for fit in fits.values())


def test_fit_is_reproducible_and_keeps_the_best_restart():
    toy = NonlinearToy2D(curve="parabola", noise_std=0.2)
    x = torch.tensor([[0.5], [2.0]], dtype=F64)  # two points, fitted separately at once
    a = fit_posterior(toy, x, 2, steps=100, restarts=3, eval_samples=2000, seed=3)
    b = fit_posterior(toy, x, 2, steps=100, restarts=3, eval_samples=2000, seed=3)
    torch.testing.assert_close(a.elbo, b.elbo, rtol=0, atol=0)
    assert a.restart_elbos.shape == (3, 2) and a.history.shape == (100, 2)
    assert a.q.batch_shape == (2,) and a.q.event_shape == (2,)
    assert len(a.q.flows) == 2
    # the kept restart is the best on the choosing samples; its fresh ELBO agrees with that
    best = a.restart_elbos.max(dim=0).values
    assert ((a.elbo - best).abs() < 5 * a.elbo_se * math.sqrt(2)).all()
    torch.testing.assert_close(a.gap, toy.log_marginal(x) - a.elbo)


def test_fit_posterior_refuses_bad_arguments():
    toy = NonlinearToy()
    x = torch.tensor([[0.0, 1.0]], dtype=F64)
    with pytest.raises(ValueError, match="flow_length"):
        fit_posterior(toy, x, -1)
    with pytest.raises(ValueError, match="flow_length"):
        fit_posterior(toy, x, 1.5)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        fit_posterior(toy, x, 0, steps=0)
    with pytest.raises(ValueError, match="lr"):
        fit_posterior(toy, x, 0, lr=0.0)
    with pytest.raises(ValueError, match="anneal"):
        fit_posterior(toy, x, 0, anneal=1.5)
    with pytest.raises(ValueError, match="restarts"):
        fit_posterior(toy, x, 0, restarts=0)
    with pytest.raises(ValueError, match="at least 2 dimension"):
        fit_posterior(toy, torch.tensor([0.0, 1.0], dtype=F64), 0)
    with pytest.raises(ValueError, match="empty"):
        fit_posterior(toy, torch.zeros(0, 2, dtype=F64), 0)


# --- optimize_local_posterior and inference_gaps --------------------------------------------


def _linear_vae(seed=0):
    """A VAE whose decoder is linear (no hidden layer) with a Gaussian likelihood: exactly the
    linear-Gaussian model, whose best local Gaussian and log p(x) are known in closed form."""
    torch.manual_seed(seed)
    vae = VAE(data_dim=4, hidden_dims=(), latent_dim=2, likelihood="gaussian", gaussian_std=0.5)
    # posterior precision correlation r = 0.28 < ½: the best diagonal q is a proposal whose
    # weights have finite variance (chi² = 0.11), so log p̂(x) converges (see inference_gaps)
    W = torch.tensor([[1.0, 0.1], [0.3, 0.9], [0.3, 0.2], [-0.2, 0.3]], dtype=F64)
    reference = LinearGaussian(W, torch.tensor([0.1, -0.2, 0.3, 0.0], dtype=F64), noise_std=0.5)
    with torch.no_grad():
        vae.decoder[0].weight.copy_(reference.W)
        vae.decoder[0].bias.copy_(reference.b)
    return vae, reference


def test_local_optimum_is_the_best_mean_field_gaussian_and_the_gaps_are_exact():
    vae, linear = _linear_vae()
    x = linear.sample(5, generator=_gen(2))[0].float()
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    mean, logvar = optimize_local_posterior(vae, x, steps=1500, lr=0.05, num_samples=16)
    best_mean, best_logvar, best_kl = _best_mean_field(linear, x.double())
    # the ELBO is flattest along logvar (curvature ½ at the optimum): the parameters carry more
    # step noise than the ELBO does (checked to 3e-3 nats below)
    torch.testing.assert_close(mean.double(), best_mean, rtol=0, atol=0.05)
    torch.testing.assert_close(logvar.double(), best_logvar, rtol=0, atol=0.1)
    exact_kl = _kl_diag_to_full(mean.double(), logvar.double(),
                                *linear.posterior_parameters(x.double()))
    assert (exact_kl - best_kl).max() < 3e-3  # the best mean-field ELBO to 3e-3 nats
    # the model is untouched: same weights, no gradients left behind
    for k, v in vae.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert all(p.grad is None for p in vae.parameters())

    gaps = inference_gaps(vae, x, steps=1500, lr=0.05, eval_samples=4000)
    assert isinstance(gaps, InferenceGaps) and gaps.log_likelihood.shape == (5,)
    log_px = linear.log_marginal(x.double())
    # ELBO(q⋆) = log p(x) - the best mean-field KL (closed form), to Monte Carlo and
    # optimization error; the encoder's ELBO is far below (an untrained encoder)
    assert best_kl > 0.03
    assert ((gaps.elbo_local - (log_px - best_kl)).abs() < 4 * gaps.elbo_local_se + 3e-3).all()
    assert (gaps.amortization_gap > 10 * gaps.elbo_encoder_se).all()
    # log p̂(x) with q⋆ as the proposal against the exact log p(x): relative sd of p̂ is
    # sqrt(chi² / K) = 0.005, so 0.02 is 4 of them
    torch.testing.assert_close(gaps.log_likelihood, log_px, rtol=0, atol=0.02)
    assert ((gaps.approximation_gap - best_kl).abs() < 0.025).all()
    assert (gaps.ess > 0.8 * 4000).all()  # 1 / (1 + chi²) = 0.9 of K


def test_decomposition_identities_on_a_tiny_vae():
    torch.manual_seed(0)
    vae = VAE(data_dim=6, hidden_dims=(8,), latent_dim=2, likelihood="gaussian", gaussian_std=0.3)
    x = torch.randn(12, 6, generator=_gen(4))
    gaps = inference_gaps(vae, x, steps=200, lr=0.02, eval_samples=500, seed=1)
    # Jensen on the same samples: Δ_approx >= 0 for every point, exactly
    assert (gaps.approximation_gap >= 0).all()
    # locally optimized beats the encoder, beyond noise, except by a few standard errors
    se = torch.hypot(gaps.elbo_encoder_se, gaps.elbo_local_se)
    assert (gaps.amortization_gap >= -4 * se).all()
    torch.testing.assert_close(gaps.approximation_gap + gaps.amortization_gap, gaps.total_gap,
                               rtol=0, atol=1e-12)
    summary = gaps.summary()
    assert summary["num_points"] == 12 and summary["num_samples"] == 500
    total = gaps.total_gap.numpy()
    assert summary["total_gap"] == pytest.approx(total.mean(), rel=1e-12)
    assert summary["total_gap_se"] == pytest.approx(total.std(ddof=1) / math.sqrt(12), rel=1e-9)
    assert summary["approximation_gap"] + summary["amortization_gap"] == pytest.approx(
        summary["total_gap"], abs=1e-9)
    # reproducible from the seed
    again = inference_gaps(vae, x, steps=200, lr=0.02, eval_samples=500, seed=1)
    torch.testing.assert_close(again.log_likelihood, gaps.log_likelihood, rtol=0, atol=0)
    # ELBO(q_φ) agrees with the model's own Monte Carlo ELBO on fresh samples
    model_elbo = vae.elbo_analytic_kl(x, num_samples=2000, generator=_gen(9)).double()
    assert ((gaps.elbo_encoder - model_elbo).abs() < 5 * gaps.elbo_encoder_se + 0.02).all()


def test_flow_vae_local_parameters_include_the_context():
    """For a flow VAE the local parameters are (μ, logvar, context): the context moves, the
    coupling maps' shared weights do not."""
    torch.manual_seed(1)
    vae = VAE(data_dim=6, hidden_dims=(8,), latent_dim=2, likelihood="gaussian",
              gaussian_std=0.3, posterior="flow", flow_length=2, flow_hidden=8, flow_context=3)
    with torch.no_grad():  # maps that use their context (they start as the identity)
        for p in vae.flows.parameters():
            p.normal_(0.0, 0.3, generator=_gen(5))
    x = torch.randn(6, 6, generator=_gen(6))
    flow_weights = [p.clone() for p in vae.flows.parameters()]
    mean0, logvar0, context0 = vae.encode(x)
    params = optimize_local_posterior(vae, x, steps=100, lr=0.02)
    assert len(params) == 3 and params[2].shape == (6, 3)
    assert (params[2] - context0).abs().max() > 1e-3
    for p, p0 in zip(vae.flows.parameters(), flow_weights):
        torch.testing.assert_close(p, p0, rtol=0, atol=0)
    gaps = inference_gaps(vae, x, steps=100, lr=0.02, eval_samples=300)
    assert (gaps.approximation_gap >= 0).all()
    assert gaps.summary()["amortization_gap"] > 0
    torch.testing.assert_close(gaps.approximation_gap + gaps.amortization_gap, gaps.total_gap,
                               rtol=0, atol=1e-12)


def test_gaps_refuse_bad_arguments():
    vae, linear = _linear_vae()
    x = linear.sample(2, generator=_gen(2))[0].float()
    with pytest.raises(ValueError, match="steps"):
        optimize_local_posterior(vae, x, steps=0)
    with pytest.raises(ValueError, match="lr"):
        optimize_local_posterior(vae, x, lr=float("nan"))
    with pytest.raises(ValueError, match="num_samples"):
        inference_gaps(vae, x, num_samples=0)
    with pytest.raises(ValueError, match="eval_samples"):
        inference_gaps(vae, x, eval_samples=0)
    with pytest.raises(ValueError, match="empty"):
        optimize_local_posterior(vae, torch.zeros(0, 4))
    with pytest.raises(ValueError, match="NaN"):
        inference_gaps(vae, torch.full((2, 4), float("nan")))


def test_a_diagonal_gaussian_is_built_for_the_gaussian_vae():
    vae, linear = _linear_vae()
    x = linear.sample(3, generator=_gen(2))[0].float()
    params = optimize_local_posterior(vae, x, steps=5)
    assert isinstance(vae.posterior_from(*params), DiagonalGaussian)
