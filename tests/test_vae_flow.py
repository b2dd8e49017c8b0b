"""The VAE with a flow posterior (ch. 11): config, q(z|x), bounds, evaluate, training, checkpoints.

Every number is checked against an independent computation: log q(z|x) as the base Gaussian's
density (torch.distributions) minus the log |det| of the chain's Jacobian from
``torch.autograd.functional.jacobian``, log p(x|z) and log p(z) from torch.distributions, and
the bounds as explicit means and log-mean-exps of those log-weights, from the same noise.
"""

import copy
import dataclasses
import json
import math
import warnings

import pytest
import torch
from torch.distributions import Bernoulli, Normal

from vaelib import estimators
from vaelib.checkpoint import load_checkpoint, load_model, save_checkpoint
from vaelib.device import derive_seed
from vaelib.evaluate import evaluate
from vaelib.flows import FlowPosterior
from vaelib.gaussian import DiagonalGaussian
from vaelib.objectives import iwae_surrogate, iwae_surrogate_at
from vaelib.train import CudaGraphWarning, train
from vaelib.vae import VAE, VAEConfig

D, d, L = 12, 3, 2
GAUSSIAN = VAEConfig(data_dim=D, hidden_dims=(16,), latent_dim=d)
FLOW = dataclasses.replace(GAUSSIAN, posterior="flow", flow_length=L, flow_hidden=8,
                           flow_context=4)

pytestmark = pytest.mark.usefixtures("one_thread")


def model(config=FLOW, seed=0, scramble=0.0) -> VAE:
    """A VAE from ``seed``; ``scramble`` > 0 moves every coupling map's parameters off the identity
    by that many standard deviations of noise (so the flow does something)."""
    torch.manual_seed(seed)
    vae = VAE(config)
    if scramble:
        g = torch.Generator().manual_seed(seed + 100)
        with torch.no_grad():
            for p in vae.flows.parameters():
                p.add_(scramble * torch.randn(p.shape, generator=g))
    return vae


def binary_data(n=5, seed=1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, D), 0.3), generator=g)


def reference_log_weights(vae: VAE, x: torch.Tensor, eps: torch.Tensor):
    """``(z (K, N, d), log p(x, z) - log q(z|x) (K, N))`` from the noise eps (K, N, d), computed
    without the flows' log-determinants: autograd's Jacobian of the chain of maps."""
    with torch.no_grad():
        out = vae.encoder(x)
    mu, logvar, h = out[:, :d], out[:, d:2 * d], out[:, 2 * d:]
    std = torch.exp(0.5 * logvar)
    z0 = mu + std * eps  # (K, N, d)

    def chain(z, context):  # (d,) -> (d,): f_L o ... o f_1 at one point
        z = z[None]
        for f in vae.flows:
            z, _ = f(z, context[None])
        return z[0]

    K, N = eps.shape[:2]
    z = torch.empty(K, N, d)
    log_det = torch.empty(K, N)
    with torch.no_grad():
        for k in range(K):
            for n in range(N):
                z[k, n] = chain(z0[k, n], h[n])
                jac = torch.autograd.functional.jacobian(lambda v: chain(v, h[n]), z0[k, n])
                log_det[k, n] = torch.linalg.slogdet(jac.double())[1].float()
        log_q = Normal(mu, std).log_prob(z0).sum(-1) - log_det
        log_prior = Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_lik = Bernoulli(logits=vae.decoder(z)).log_prob(x).sum(-1)
    return z, log_prior + log_lik - log_q


# ---------------------------------------------------------------------------------------- config

@pytest.mark.parametrize("overrides, message", [
    (dict(posterior="realnvp"), r"unknown posterior 'realnvp'; choose 'gaussian'"),
    (dict(flow_length=2), r"flow_length=2 needs posterior='flow'"),
    (dict(flow_hidden=8), r"flow_hidden=8 is a size of the flow posterior"),
    (dict(flow_context=4), r"flow_context=4 is a size of the flow posterior"),
    (dict(posterior="flow"), r"posterior='flow' needs flow_length >= 1"),
    (dict(posterior="flow", flow_length=-1), r"flow_length must be an integer >= 0"),
    (dict(posterior="flow", flow_length=True), r"flow_length must be an integer >= 0"),
    (dict(posterior="flow", flow_length=2, latent_dim=1), r"needs latent_dim >= 2"),
    (dict(posterior="flow", flow_length=2, flow_hidden=0), r"flow_hidden must be an integer >= 1"),
    (dict(posterior="flow", flow_length=2, flow_context=2.5),
     r"flow_context must be an integer >= 1"),
    (dict(posterior="flow", flow_length=10, flow_hidden=10**8),
     r"flow_length=10, flow_hidden=100000000.* parameters.* at most 100,000,000"),
])
def test_bad_flow_configs_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        VAEConfig(**overrides)


def test_flow_config_defaults_json_and_old_configs():
    config = VAEConfig(posterior="flow", flow_length=4)
    assert (config.flow_hidden, config.flow_context) == (64, 16)  # the defaults, made explicit
    assert config == VAEConfig(posterior="flow", flow_length=4, flow_hidden=64, flow_context=16)
    assert VAEConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert VAEConfig.preset("burda", posterior="flow", flow_length=2).flow_length == 2
    # a config saved before these fields existed loads as the Gaussian VAE it was
    old = {k: v for k, v in VAEConfig().to_dict().items()
           if k not in ("posterior", "flow_length", "flow_hidden", "flow_context")}
    assert VAEConfig.from_dict(old) == VAEConfig() and VAEConfig().posterior == "gaussian"


@pytest.mark.parametrize("config", [
    FLOW, VAEConfig(posterior="flow", flow_length=3),
    VAEConfig(hidden_dims=(), latent_dim=5, posterior="flow", flow_length=1, flow_context=1),
    VAEConfig(hidden_dims=(20, 10), latent_dim=2, likelihood="gaussian",
              gaussian_std_mode="shared", posterior="flow", flow_length=5, flow_hidden=3),
])
def test_num_parameters_counts_the_flow(config):
    vae = VAE(config)
    assert config.num_parameters() == sum(p.numel() for p in vae.parameters())
    assert len(vae.flows) == config.flow_length
    assert vae.encoder[-1].out_features == 2 * config.latent_dim + config.flow_context


# --------------------------------------------------------------------------------- q(z|x)

def test_encode_posterior_from_and_posterior():
    vae, x = model(scramble=0.5), binary_data()
    mean, logvar, context = vae.encode(x)
    assert mean.shape == logvar.shape == (5, d) and context.shape == (5, 4)
    q = vae.posterior(x)
    assert isinstance(q, FlowPosterior)
    assert q.batch_shape == (5,) and q.event_shape == (d,)
    torch.testing.assert_close(q.base.mean, mean, rtol=0, atol=0)
    torch.testing.assert_close(q.context, context, rtol=0, atol=0)
    same = vae.posterior_from(mean, logvar, context)
    g = [torch.Generator().manual_seed(3) for _ in range(2)]
    a, b = q.rsample_with_log_prob((4,), g[0]), same.rsample_with_log_prob((4,), g[1])
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(ValueError, match=r"3 tensors \(mean, logvar, context\), got 2"):
        vae.posterior_from(mean, logvar)
    gaussian = model(GAUSSIAN)
    assert len(gaussian.encode(x)) == 2 and len(gaussian.flows) == 0
    assert isinstance(gaussian.posterior_from(*gaussian.encode(x)), DiagonalGaussian)
    with pytest.raises(ValueError, match=r"2 tensors \(mean, logvar\), got 3"):
        gaussian.posterior_from(mean, logvar, context)


def test_at_initialization_the_flow_vae_is_the_gaussian_vae():
    # From the same seed the flow VAE's encoder rows for μ, logvar and its decoder start as the
    # Gaussian VAE's, and every coupling map starts as the identity: the same q, the same ELBO.
    flow, gauss, x = model(FLOW), model(GAUSSIAN), binary_data()
    for name, tensor in gauss.state_dict().items():
        flow_tensor = flow.state_dict()[name]
        assert torch.equal(flow_tensor[:len(tensor)], tensor), name
    q_flow, q_gauss = flow.posterior(x), gauss.posterior(x)
    g = [torch.Generator().manual_seed(5) for _ in range(2)]
    z, log_q = q_flow.rsample_with_log_prob((6,), g[0])
    z_gauss = q_gauss.rsample((6,), generator=g[1])
    torch.testing.assert_close(z, z_gauss, rtol=0, atol=0)
    torch.testing.assert_close(log_q, q_gauss.log_prob(z_gauss), rtol=1e-6, atol=1e-5)
    g = [torch.Generator().manual_seed(6) for _ in range(2)]
    rec_flow, kl_flow = flow.elbo_terms(x, 4000, g[0])
    rec_gauss, kl_gauss = gauss.elbo_terms(x, 4000, g[1])
    torch.testing.assert_close(rec_flow, rec_gauss, rtol=0, atol=0)  # the same z samples
    # Monte Carlo KL against the closed form: its standard error at K = 4000 is below 0.02 nats
    # here (KL per sample has sd < 1); 0.1 is five standard errors.
    torch.testing.assert_close(kl_flow, kl_gauss, rtol=0, atol=0.1)


# ---------------------------------------------------------------------------------------- bounds

def test_elbo_is_the_monte_carlo_mean_of_log_weights():
    vae, x = model(scramble=0.5), binary_data()
    K = 4
    eps = torch.randn(K, len(x), d, generator=torch.Generator().manual_seed(11))
    _, log_w = reference_log_weights(vae, x, eps)
    elbo = vae.elbo_analytic_kl(x, K, generator=torch.Generator().manual_seed(11))
    torch.testing.assert_close(elbo, log_w.mean(0), rtol=1e-5, atol=1e-4)
    rec, kl = vae.elbo_terms(x, K, generator=torch.Generator().manual_seed(11))
    torch.testing.assert_close(rec - kl, elbo, rtol=0, atol=1e-5)
    same = estimators.elbo(vae, x, vae.posterior(x), K, torch.Generator().manual_seed(11))
    torch.testing.assert_close(same, elbo, rtol=1e-6, atol=1e-5)
    elbo.sum().backward()  # differentiable in the maps too
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in vae.flows.parameters())


def test_iwae_bound_is_the_log_mean_exp_of_log_weights():
    vae, x = model(scramble=0.5), binary_data()
    K = 6
    eps = torch.randn(K, len(x), d, generator=torch.Generator().manual_seed(12))
    _, log_w = reference_log_weights(vae, x, eps)
    reference = torch.logsumexp(log_w, 0) - math.log(K)
    bound = vae.iwae_bound(x, K, generator=torch.Generator().manual_seed(12))
    torch.testing.assert_close(bound, reference, rtol=1e-5, atol=1e-4)


def test_the_estimators_take_z_and_log_q_from_one_pass(monkeypatch):
    vae, x = model(scramble=0.5), binary_data()
    monkeypatch.setattr(FlowPosterior, "log_prob",
                        lambda *a: pytest.fail("inverted the maps"))
    q = vae.posterior(x)
    bound = estimators.iwae_bound(vae, x, q, 5, torch.Generator().manual_seed(1), chunk_size=2)
    assert bound.shape == (5,) and bool(torch.isfinite(bound).all())


def test_evaluate_with_the_flow_as_proposal():
    vae, x = model(scramble=0.5), binary_data(n=3)
    K, k, seed = 8, 4, 5
    result = evaluate(vae, x, num_samples=K, iwae_samples=k, seed=seed, progress=False,
                      binarize=False)
    eps = torch.stack([torch.randn(K, d, generator=torch.Generator().manual_seed(
        derive_seed(seed, i))) for i in range(len(x))], dim=1)  # (K, N, d): point i's noise
    _, log_w = reference_log_weights(vae, x, eps)
    torch.testing.assert_close(result.log_likelihood, torch.logsumexp(log_w, 0) - math.log(K),
                               rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(result.elbo, log_w.mean(0), rtol=1e-5, atol=1e-4)
    groups = log_w.reshape(K // k, k, -1)
    iwae = (torch.logsumexp(groups, 1) - math.log(k)).mean(0)
    torch.testing.assert_close(result.iwae, iwae, rtol=1e-5, atol=1e-4)
    # the chunking does not change the numbers
    small = evaluate(vae, x, num_samples=K, iwae_samples=k, seed=seed, progress=False,
                     binarize=False, memory_budget=4 * K * (d + 1) * 2)
    torch.testing.assert_close(small.log_likelihood, result.log_likelihood, rtol=0, atol=1e-5)


def test_evaluate_is_exact_when_the_flow_is_the_exact_posterior():
    # A linear-Gaussian VAE (x|z ~ N(Wz + b, s² I)) whose encoder gives the exact posterior, with
    # coupling maps at the identity: every importance weight is p(x) (SciPy's log density).
    from scipy.stats import multivariate_normal

    D_, s = 6, 0.5
    g = torch.Generator().manual_seed(0)
    W = torch.linalg.qr(torch.randn(D_, 2, generator=g))[0] * torch.tensor([2.0, 0.7])
    b = torch.randn(D_, generator=g)
    torch.manual_seed(0)
    vae = VAE(VAEConfig(data_dim=D_, hidden_dims=(), latent_dim=2, likelihood="gaussian",
                        gaussian_std=s, posterior="flow", flow_length=3, flow_context=2))
    cov_post = 1 / (1 + (W * W).sum(0) / s**2)  # the posterior's covariance, diagonal here
    A = cov_post[:, None] * W.T / s**2  # its mean is A (x - b)
    with torch.no_grad():
        vae.decoder[0].weight.copy_(W)
        vae.decoder[0].bias.copy_(b)
        vae.encoder[0].weight[:4].copy_(torch.cat([A, torch.zeros(2, D_)]))
        vae.encoder[0].bias[:4].copy_(torch.cat([-A @ b, cov_post.log()]))
    x = torch.randn(20, 2, generator=g) @ W.T + b + s * torch.randn(20, D_, generator=g)
    cov = (W @ W.T + s**2 * torch.eye(D_)).double().numpy()
    exact = torch.from_numpy(multivariate_normal(b.double().numpy(), cov).logpdf(
        x.double().numpy())).float()
    result = evaluate(vae, x, num_samples=16, iwae_samples=4, progress=False)
    for estimate in (result.log_likelihood, result.elbo, result.iwae):
        torch.testing.assert_close(estimate, exact, rtol=0, atol=2e-4)


# ----------------------------------------------------------------------------- the IWAE objective

def test_iwae_surrogate_with_a_flow_is_the_bound_and_its_autograd_gradient():
    vae, x = model(scramble=0.5), binary_data()
    value = iwae_surrogate(vae, x, vae.posterior(x), 5, "plain",
                           generator=torch.Generator().manual_seed(2))
    value.sum().backward()
    grads = [p.grad.clone() for p in vae.parameters()]
    vae.zero_grad()
    bound = vae.iwae_bound(x, 5, generator=torch.Generator().manual_seed(2))
    bound.sum().backward()
    torch.testing.assert_close(value, bound, rtol=0, atol=1e-6)
    for a, p in zip(grads, vae.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-5, atol=1e-6)


def dreg_reference(vae: VAE, x: torch.Tensor, eps: torch.Tensor) -> list[torch.Tensor]:
    """The DReG gradient of every parameter, from its formula and without ``hold_parameters``:
    the decoder's plain ``Σ_k w̃_k ∇_θ log p(x, z_k)``; the encoder's and the maps'
    ``Σ_k w̃_k² ∂_z log w_k · ∂z_k/∂φ``, with ``∂_z log w_k`` taken at a leaf z through a deep copy
    of the maps whose weights do not require gradients, and a detached base and context."""
    q = vae.posterior(x)
    z, _ = q.transform(eps)  # (K, N, d), differentiable in φ
    z_leaf = z.detach().requires_grad_()
    frozen = copy.deepcopy(list(vae.flows))
    for flow in frozen:
        flow.requires_grad_(False)
    held = FlowPosterior(DiagonalGaussian(q.base.mean.detach(), q.base.logvar.detach()), frozen,
                         q.context.detach())
    log_w = vae.log_joint(x, z_leaf) - held.log_prob(z_leaf)  # (K, N)
    dlogw_dz, = torch.autograd.grad(log_w.sum(), z_leaf)  # (K, N, d)
    weights = torch.softmax(log_w.detach(), dim=0)  # w̃_k, (K, N)
    encoder = list(vae.encoder.parameters()) + list(vae.flows.parameters())
    by_encoder = torch.autograd.grad(z, encoder, grad_outputs=weights[..., None] ** 2 * dlogw_dz)
    decoder = list(vae.decoder.parameters())
    by_decoder = torch.autograd.grad((weights * vae.log_joint(x, z.detach())).sum(), decoder)
    grads = dict(zip(map(id, encoder), by_encoder)) | dict(zip(map(id, decoder), by_decoder))
    return [grads[id(p)] for p in vae.parameters()]


def test_dreg_with_a_flow_is_its_formula_with_the_value_of_the_bound():
    torch.set_default_dtype(torch.float64)
    try:
        vae, x = model(scramble=0.3).double(), binary_data().double()
        eps = torch.randn(6, len(x), d, generator=torch.Generator().manual_seed(3))
        expected = dreg_reference(vae, x, eps)
        q = vae.posterior(x)
        z, log_q = q.transform(eps)
        log_joint = vae.log_joint(x, z)
        plain = iwae_surrogate_at(z, log_joint, q, "plain", log_q)
        dreg = iwae_surrogate_at(z, log_joint, q, "dreg")  # log q(z_k|x) at fixed φ, by itself
        torch.testing.assert_close(dreg, plain, rtol=0, atol=1e-10)  # the same bound
        dreg.sum().backward()
        for (name, p), want in zip(vae.named_parameters(), expected):
            torch.testing.assert_close(p.grad, want, rtol=1e-6, atol=1e-8, msg=name)
    finally:
        torch.set_default_dtype(torch.float32)


def test_hold_parameters_keeps_the_value_and_stops_the_gradient_at_q():
    vae, x = model(scramble=0.3), binary_data()
    q = vae.posterior(x)
    z = q.rsample((4,), generator=torch.Generator().manual_seed(0)).detach().requires_grad_()
    held = q.log_prob(z, hold_parameters=True)
    torch.testing.assert_close(held, q.log_prob(z), rtol=0, atol=0)
    held.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0  # through z ...
    assert all(p.grad is None for p in vae.parameters())  # ... and nothing else


def test_dreg_and_plain_with_a_flow_agree_in_expectation():
    """Unbiased: over 300 fresh draws (K = 4), the mean of DReG's gradient minus plain's, on the
    same samples, is within 5 standard errors of 0 in every coordinate; and DReG's encoder
    gradient varies less."""
    vae, x = model(scramble=0.3), binary_data(n=2)
    g = torch.Generator().manual_seed(7)
    differences, spreads = [], {"plain": [], "dreg": []}
    for _ in range(300):
        eps = torch.randn(4, len(x), d, generator=g)
        grads = {}
        for how in ("plain", "dreg"):
            q = vae.posterior(x)
            z, log_q = q.transform(eps)
            bound = iwae_surrogate_at(z, vae.log_joint(x, z), q, how, log_q).sum()
            grads[how] = torch.cat([t.flatten() for t in torch.autograd.grad(
                bound, list(vae.encoder.parameters()) + list(vae.flows.parameters()))])
            spreads[how].append(grads[how])
        differences.append(grads["dreg"] - grads["plain"])
    differences = torch.stack(differences)  # (R, P)
    se = differences.std(dim=0) / math.sqrt(len(differences))
    assert (differences.mean(dim=0).abs() <= 5 * se + 1e-7).all()
    variance = {how: torch.stack(v).var(dim=0).sum() for how, v in spreads.items()}
    assert variance["dreg"] < variance["plain"], variance


def test_dreg_with_planar_maps_is_its_formula():
    """The held inverse of planar maps (numerical, with the implicit-function step): DReG's
    encoder gradient through a FlowPosterior of PlanarFlows equals Σ_k w̃_k² ∂_z log w_k ∂z_k/∂φ,
    on the 2-D linear-Gaussian toy, in float64."""
    from vaelib.flows import PlanarFlow
    from vaelib.toy import LinearGaussian

    torch.set_default_dtype(torch.float64)
    try:
        toy = LinearGaussian.random(3, 2, generator=torch.Generator().manual_seed(0))
        x = toy.sample(4, generator=torch.Generator().manual_seed(1))[0]
        mean = torch.zeros(4, 2, requires_grad=True)
        logvar = torch.zeros(4, 2, requires_grad=True)
        flows = [PlanarFlow(2, generator=torch.Generator().manual_seed(i), init_scale=0.5)
                 for i in range(3)]
        eps = torch.randn(5, 4, 2, generator=torch.Generator().manual_seed(2))
        params = [mean, logvar] + [p for f in flows for p in f.parameters()]

        q = FlowPosterior(DiagonalGaussian(mean, logvar), flows)
        z, _ = q.transform(eps)
        iwae_surrogate_at(z, toy.log_joint(x, z), q, "dreg").sum().backward()
        got = [p.grad.clone() for p in params]

        q = FlowPosterior(DiagonalGaussian(mean, logvar), flows)
        z, _ = q.transform(eps)
        z_leaf = z.detach().requires_grad_()
        frozen = copy.deepcopy(flows)
        for f in frozen:
            f.requires_grad_(False)
        held = FlowPosterior(DiagonalGaussian(mean.detach(), logvar.detach()), frozen)
        log_w = toy.log_joint(x, z_leaf) - held.log_prob(z_leaf)
        dlogw_dz, = torch.autograd.grad(log_w.sum(), z_leaf)
        weights = torch.softmax(log_w.detach(), dim=0)
        expected = torch.autograd.grad(z, params, grad_outputs=weights[..., None] ** 2 * dlogw_dz)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)
    finally:
        torch.set_default_dtype(torch.float32)


def test_the_plain_gradient_with_a_flow_needs_log_q_from_the_same_pass():
    vae, x = model(), binary_data()
    q = vae.posterior(x)
    z, _ = q.rsample_with_log_prob((3,))
    with pytest.raises(ValueError, match="needs log_q"):
        iwae_surrogate_at(z, vae.log_joint(x, z), q, "plain")


# ---------------------------------------------------------------------------------------- training

def prototypes(n=256, seed=0) -> torch.Tensor:
    """(n, D) grey-level images: 4 prototypes with pixels at 0.05 or 0.95."""
    g = torch.Generator().manual_seed(seed)
    centers = 0.05 + 0.9 * torch.rand(4, D, generator=g).round()
    return centers[torch.randint(0, 4, (n,), generator=g)]


FAST = dict(epochs=8, batch_size=32, lr=1e-2, progress=False)


@pytest.mark.parametrize("objective", [dict(), dict(objective="iwae", num_samples=4),
                                       dict(objective="iwae", num_samples=4,
                                            encoder_gradient="dreg")])
def test_training_a_flow_vae_raises_its_elbo(objective):
    x, vae = prototypes(), model()
    fixed = torch.bernoulli(prototypes(64), generator=torch.Generator().manual_seed(2))

    def elbo():
        with torch.no_grad():
            return vae.elbo_analytic_kl(fixed, 50, torch.Generator().manual_seed(0)).mean().item()

    before = elbo()
    history = train(vae, x, **FAST, **objective)
    after = elbo()
    # Measured (8 epochs): about -8.5 -> -7.0 nats on held-out draws of the 4 prototypes.
    assert after > before + 1, (before, after)
    assert history.train_elbo[-1] > history.train_elbo[0], history.train_elbo
    assert all(math.isfinite(v) for v in history.train_kl)
    moved = sum((p - q).abs().sum().item() for p, q in zip(
        vae.flows.parameters(), model().flows.parameters()))
    assert moved > 0  # the coupling maps trained too


def test_checkpoint_round_trip_and_resume_are_exact(tmp_path):
    x = prototypes()
    straight = model()
    train(straight, x, **FAST, checkpoint_dir=tmp_path / "a")
    first = model()
    train(first, x, **{**FAST, "epochs": 2}, checkpoint_dir=tmp_path / "b")
    ckpt = load_checkpoint(tmp_path / "b")
    assert ckpt.config == FLOW and ckpt.config.posterior == "flow"
    history = train(ckpt.model, x, **FAST, checkpoint_dir=tmp_path / "b", resume=ckpt)
    assert history.epoch == list(range(1, FAST["epochs"] + 1))
    a, b = straight.state_dict(), ckpt.model.state_dict()
    assert a.keys() == b.keys() and any(k.startswith("flows.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same computation, bit for bit
    loaded = load_model(tmp_path / "a")
    xb = binary_data()
    g = [torch.Generator().manual_seed(4) for _ in range(2)]
    torch.testing.assert_close(loaded.iwae_bound(xb, 5, g[0]), straight.iwae_bound(xb, 5, g[1]),
                               rtol=0, atol=0)
    save_checkpoint(tmp_path / "c", loaded, epoch=5)
    assert load_model(tmp_path / "c").config == FLOW
    # a Gaussian model's weights are refused for the flow config (and back)
    with pytest.raises(ValueError, match="another model"):
        train(model(GAUSSIAN), x, **FAST, checkpoint_dir=tmp_path / "a", resume=True)


@pytest.mark.gpu
@pytest.mark.parametrize("options", [dict(cuda_graph=False), dict(cuda_graph=True),
                                     dict(cuda_graph=True, objective="iwae", num_samples=4),
                                     dict(cuda_graph=True, objective="iwae", num_samples=4,
                                          encoder_gradient="dreg")])
def test_cuda_training_of_a_flow_vae(options):
    # The CUDA graph must capture the flow's step and pass its check (no fallback warning).
    x, vae = prototypes(512).cuda(), model().cuda()
    fixed = torch.bernoulli(prototypes(64), generator=torch.Generator().manual_seed(2)).cuda()
    with torch.no_grad():
        before = vae.elbo_analytic_kl(fixed, 50).mean().item()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CudaGraphWarning)
        history = train(vae, x, **FAST, **options)
    with torch.no_grad():
        after = vae.elbo_analytic_kl(fixed, 50).mean().item()
    assert after > before + 1 and all(math.isfinite(e) for e in history.train_elbo)
