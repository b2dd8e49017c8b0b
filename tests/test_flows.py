"""vaelib.flows against independent references: autograd Jacobians, quadrature, finite differences.

Every log-determinant is compared with ``log |det|`` of ``torch.autograd.functional.jacobian``;
densities are integrated on grids (trapezoid rule) and must give 1; Monte Carlo expectations are
compared with quadrature of the push-forward density. All in float64 with fixed seeds.
"""

import math

import pytest
import torch
from torch.autograd.functional import jacobian
from torch.func import functional_call

from vaelib.flows import AffineCoupling, Flow, FlowPosterior, PlanarFlow, coupling_masks
from vaelib.gaussian import DiagonalGaussian
from vaelib.protocols import Proposal

F64 = torch.float64


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed=0, scale=1.0):
    return scale * torch.randn(shape, generator=_gen(seed), dtype=F64)


def _planar(d, batch_shape=(), seed=0, scale=1.0):
    """A planar map in float64 with sizeable random raw parameters (not the near-identity start)."""
    flow = PlanarFlow(d, batch_shape=batch_shape).to(F64)
    with torch.no_grad():
        flow.u.copy_(_randn(*batch_shape, d, seed=seed, scale=scale))
        flow.w.copy_(_randn(*batch_shape, d, seed=seed + 100, scale=scale))
        flow.b.copy_(_randn(*batch_shape, seed=seed + 200, scale=scale) if batch_shape
                     else _randn(1, seed=seed + 200, scale=scale)[0])
    return flow.requires_grad_(False)  # gradients are tested with copies of the numbers


def _coupling(d, context_dim=0, hidden=8, parity=0, seed=0, scale=0.7):
    """An affine coupling map in float64 with every weight random (not the identity start)."""
    torch.manual_seed(seed)
    flow = AffineCoupling(d, context_dim, hidden, coupling_masks(d, 2)[parity]).to(F64)
    with torch.no_grad():
        for i, p in enumerate(flow.parameters()):
            p.copy_(_randn(*p.shape, seed=seed + 10 * i, scale=scale))
    return flow.requires_grad_(False)


def _jacobian_log_det(fn, z):
    """``log |det J|`` per point of ``fn: (..., d) -> (..., d)`` from autograd's full Jacobian.

    Also asserts that the points do not interact (the off-diagonal blocks are 0)."""
    d = z.shape[-1]
    jac = jacobian(fn, z)  # (*batch, d, *batch, d)
    points = z.numel() // d
    jac = jac.reshape(points, d, points, d)
    idx = torch.arange(points)
    blocks = jac[idx, :, idx, :]  # (P, d, d)
    off = jac.clone()
    off[idx, :, idx, :] = 0
    assert float(off.abs().max()) == 0.0
    sign, log_abs = torch.linalg.slogdet(blocks)
    return log_abs.reshape(z.shape[:-1])


def _trapezoid_2d(density, step):
    """The trapezoid rule on a square grid: ``density`` ``(G, G, ...)``."""
    return torch.trapezoid(torch.trapezoid(density, dx=step, dim=0), dx=step, dim=0)


# --- log-determinants against autograd -----------------------------------------------------------


@pytest.mark.parametrize("d", [1, 2, 3, 5])
@pytest.mark.parametrize("batch_shape", [(), (4,)])
def test_planar_log_det_matches_autograd_jacobian(d, batch_shape):
    flow = _planar(d, batch_shape, seed=d)
    z = _randn(3, 4, d, seed=7, scale=1.5)  # (K, N, d); batched maps broadcast over K
    z_new, log_det = flow(z)
    assert z_new.shape == z.shape and log_det.shape == (3, 4)
    want = _jacobian_log_det(lambda v: flow(v)[0], z)
    torch.testing.assert_close(log_det, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d", [2, 3, 5])
@pytest.mark.parametrize("context_dim", [0, 3])
@pytest.mark.parametrize("parity", [0, 1])
def test_coupling_log_det_matches_autograd_jacobian(d, context_dim, parity):
    flow = _coupling(d, context_dim, parity=parity, seed=d + context_dim)
    z = _randn(3, 4, d, seed=8, scale=1.5)  # (K, N, d)
    context = _randn(4, context_dim, seed=9) if context_dim else None  # (N, c)
    z_new, log_det = flow(z, context)
    assert z_new.shape == z.shape and log_det.shape == (3, 4)
    want = _jacobian_log_det(lambda v: flow(v, context)[0], z)
    torch.testing.assert_close(log_det, want, rtol=1e-12, atol=1e-12)
    assert float(log_det.abs().min()) > 1e-3  # a real (non-identity) map was tested
    kept = flow.mask.bool()
    torch.testing.assert_close(z_new[..., kept], z[..., kept], rtol=0, atol=0)  # z_a unchanged


def test_batched_planar_maps_equal_separate_maps():
    """batch_shape=(N,) is N separate maps: row n of the batch equals a map with row n's numbers."""
    flow = _planar(3, (4,), seed=1)
    z = _randn(5, 4, 3, seed=2)
    z_new, log_det = flow(z)
    for n in range(4):
        one = PlanarFlow(3).to(F64)
        with torch.no_grad():
            for name in ("u", "w", "b"):
                getattr(one, name).copy_(getattr(flow, name)[n])
        z_n, log_det_n = one(z[:, n])
        torch.testing.assert_close(z_new[:, n], z_n, rtol=0, atol=0)
        torch.testing.assert_close(log_det[:, n], log_det_n, rtol=0, atol=0)


def test_coupling_context_broadcasts_like_concatenation():
    """The split first layer equals the network applied to [z ⊙ mask, h] with h copied K times."""
    flow = _coupling(4, 3, seed=3)
    z, context = _randn(5, 2, 4, seed=4), _randn(2, 3, seed=5)
    s, t = flow.scale_shift(z * flow.mask, context)
    inputs = torch.cat([z * flow.mask, context.expand(5, 2, 3)], dim=-1)  # (K, N, d + c)
    raw_s, raw_t = flow.output_layer(torch.tanh(flow.hidden_layer(inputs))).chunk(2, dim=-1)
    changed = 1 - flow.mask
    c = flow.scale_bound
    torch.testing.assert_close(s, c * torch.tanh(raw_s / c) * changed, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(t, raw_t * changed, rtol=1e-13, atol=1e-13)
    assert float(s.abs().max()) < c


# --- inverses ------------------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 2, 4])
@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0])
def test_planar_inverse_round_trip(d, scale):
    """f⁻¹(f(z)) = z and f(f⁻¹(y)) = y to 1e-9, with log-determinants of opposite sign."""
    flow = _planar(d, (6,), seed=int(10 * scale) + d, scale=scale)
    z = _randn(50, 6, d, seed=11, scale=3.0)
    y, log_det = flow(z)
    z_back, log_det_inverse = flow.inverse(y)
    torch.testing.assert_close(z_back, z, rtol=0, atol=1e-9)
    torch.testing.assert_close(log_det_inverse, -log_det, rtol=0, atol=1e-9)
    y_any = _randn(50, 6, d, seed=12, scale=3.0)  # any point has a preimage
    z_any, _ = flow.inverse(y_any)
    torch.testing.assert_close(flow(z_any)[0], y_any, rtol=0, atol=1e-9)


def test_planar_inverse_near_the_constraint_boundary():
    """wᵀû close to −1 (a nearly flat spot): the bracketed Newton solve still converges."""
    flow = PlanarFlow(2).to(F64)
    with torch.no_grad():
        flow.w.copy_(torch.tensor([2.0, 0.0], dtype=F64))
        flow.u.copy_(-8.0 * flow.w / 4)  # wᵀu = -8: wᵀû = -1 + softplus(-8) ≈ -1 + 3.4e-4
        flow.b.fill_(0.2)
    z = torch.stack([torch.linspace(-3, 3, 201, dtype=F64), torch.zeros(201, dtype=F64)], -1)
    y, log_det = flow(z)
    z_back, log_det_inverse = flow.inverse(y)
    torch.testing.assert_close(z_back, z, rtol=0, atol=1e-8)
    torch.testing.assert_close(log_det_inverse, -log_det, rtol=0, atol=1e-8)


def test_planar_inverse_in_float32():
    flow = _planar(3, (4,), seed=5).to(torch.float32)
    z = _randn(20, 4, 3, seed=6).float()
    y, _ = flow(z)
    z_back, _ = flow.inverse(y)
    torch.testing.assert_close(z_back, z, rtol=0, atol=1e-4)


@pytest.mark.parametrize("context_dim", [0, 2])
def test_coupling_inverse_is_exact(context_dim):
    flow = _coupling(3, context_dim, seed=4)
    z = _randn(10, 5, 3, seed=13, scale=3.0)
    context = _randn(5, context_dim, seed=14) if context_dim else None
    y, log_det = flow(z, context)
    z_back, log_det_inverse = flow.inverse(y, context)
    torch.testing.assert_close(z_back, z, rtol=0, atol=1e-13)
    torch.testing.assert_close(log_det_inverse, -log_det, rtol=0, atol=1e-13)


# --- the planar constraint -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_planar_constraint_holds_for_any_raw_parameters(seed):
    """wᵀû = m(wᵀu) ≥ −1 for raw u, w of any size and sign, wᵀu very negative included; then
    wᵀf(z) is nondecreasing along w (the map is invertible) and the log-determinant is finite."""
    g = _gen(seed)
    n, d = 64, 3
    size = 10.0 ** torch.randint(-3, 4, (n, 1), generator=g).to(F64)  # 1e-3 ... 1e3
    w = torch.randn(n, d, generator=g, dtype=F64) * size
    u = torch.randn(n, d, generator=g, dtype=F64) * 10.0 ** torch.randint(-3, 4, (n, 1),
                                                                          generator=g)
    u[: n // 2] = -torch.rand(n // 2, 1, generator=g, dtype=F64) * 50 * w[: n // 2]  # wᵀu ≪ 0
    flow = PlanarFlow(d, (n,)).to(F64)
    with torch.no_grad():
        flow.u.copy_(u)
        flow.w.copy_(w)
        flow.b.copy_(torch.randn(n, generator=g, dtype=F64))
    wu = (w * u).sum(-1)
    assert float(wu.min()) < -100  # the case the reparameterization is for
    # wᵀû formed from û carries the round-off of a dot product of size ‖w‖‖u‖
    round_off = 1e-14 * (1 + w.norm(dim=-1) * u.norm(dim=-1))
    w_u_hat = (w * flow.u_hat).sum(-1)
    assert bool(((w_u_hat - (-1 + torch.nn.functional.softplus(wu))).abs() <= round_off).all())
    assert bool((w_u_hat >= -1 - round_off).all())
    # along the line z = t w / ‖w‖ through the bend, wᵀf(z) + b = g(a) never decreases
    t = torch.linspace(-20, 20, 4001, dtype=F64)[:, None, None]  # (T, 1, 1)
    line = t * w / w.norm(dim=-1, keepdim=True)  # (T, n, d)
    y, log_det = flow(line)
    along = (y * w).sum(-1)  # (T, n)
    assert bool((along.diff(dim=0) >= -1e-9 * along.abs()[1:]).all())
    assert bool(torch.isfinite(log_det).all())
    # the inverse solves f(z) = y to round-off; z itself is found to 1e-6: where wᵀû is within
    # round-off of −1, g(a) = a − tanh(a) ≈ a³/3 near 0 turns round-off δ into δ^(1/3) in a
    z_back, _ = flow.inverse(y)
    scale = 1 + flow.u_hat.norm(dim=-1, keepdim=True)  # (n, 1): the size of the bend
    assert bool(((flow(z_back)[0] - y).abs() <= 1e-10 * scale).all())
    torch.testing.assert_close(z_back, line, rtol=0, atol=1e-6)


def test_planar_with_zero_w_is_a_translation():
    flow = PlanarFlow(2).to(F64)
    with torch.no_grad():
        flow.u.copy_(torch.tensor([0.5, -1.0], dtype=F64))
        flow.w.zero_()
        flow.b.fill_(0.3)
    torch.testing.assert_close(flow.u_hat, flow.u, rtol=0, atol=0)
    z = _randn(7, 2, seed=1)
    flow.requires_grad_(False)
    y, log_det = flow(z)
    torch.testing.assert_close(y, z + flow.u * math.tanh(0.3), rtol=1e-15, atol=1e-15)
    assert float(log_det.abs().max()) == 0.0
    torch.testing.assert_close(flow.inverse(y)[0], z, rtol=1e-15, atol=1e-15)


# --- densities integrate to 1 --------------------------------------------------------------------


def _base(n, d, seed=0, scale=0.5):
    return DiagonalGaussian(_randn(n, d, seed=seed, scale=scale),
                            _randn(n, d, seed=seed + 1, scale=scale))


def test_planar_density_integrates_to_one_in_1d():
    """Three planar maps of 1-D z (three data points at once): ∫ q(z) dz = 1 to 1e-8 by the
    trapezoid rule on [-25, 25] (20001 points; the tails beyond hold < 1e-20)."""
    base = _base(3, 1, seed=2)
    flows = [_planar(1, (3,), seed=s, scale=1.5) for s in range(3)]
    q = FlowPosterior(base, flows)
    grid = torch.linspace(-25, 25, 20001, dtype=F64)
    density = q.log_prob(grid[:, None, None].expand(-1, 3, 1)).exp()  # (G, N)
    total = torch.trapezoid(density, grid, dim=0)
    torch.testing.assert_close(total, torch.ones(3, dtype=F64), rtol=0, atol=1e-8)
    # the maps did change the density: it is not the base Gaussian's
    assert float((density.log() - base.log_prob(grid[:, None, None])).abs().max()) > 0.5


@pytest.mark.parametrize("kind", ["planar", "coupling", "both"])
def test_density_integrates_to_one_in_2d(kind):
    """A chain of four maps of 2-D z, two data points (two contexts): ∫∫ q(z) dz = 1 to 2e-6 by
    the trapezoid rule on a square grid that holds all but < 1e-8 of the mass (the observed errors
    are 2e-7, 1e-8 and 1e-13; a wrong log-determinant is off by far more)."""
    n = 2
    context = _randn(n, 2, seed=21)
    flows, half_width, points = {
        "planar": ([_planar(2, (n,), seed=s, scale=1.2) for s in range(4)], 12, 801),
        "coupling": ([_coupling(2, 2, parity=s % 2, seed=30 + s, scale=0.15) for s in range(4)],
                     15, 601),
        "both": ([_planar(2, (n,), seed=40), _coupling(2, 2, parity=0, seed=41, scale=0.2),
                  _planar(2, (n,), seed=42), _coupling(2, 2, parity=1, seed=43, scale=0.2)],
                 15, 601),
    }[kind]
    q = FlowPosterior(_base(n, 2, seed=3), flows, context)
    axis = torch.linspace(-half_width, half_width, points, dtype=F64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1)  # (G, G, 2)
    z = grid.reshape(-1, 1, 2).expand(-1, n, 2)  # (G², N, 2)
    density = q.log_prob(z).exp().reshape(points, points, n)
    total = _trapezoid_2d(density, float(axis[1] - axis[0]))
    torch.testing.assert_close(total, torch.ones(n, dtype=F64), rtol=0, atol=2e-6)
    # the maps changed the density: it is not the base Gaussian's
    assert float((density.log() - q.base.log_prob(z).reshape(density.shape)).abs().max()) > 0.5


# --- gradients against finite differences --------------------------------------------------------


class _Inverse(torch.nn.Module):
    """``forward`` is the wrapped map's inverse (so that functional_call can swap its numbers)."""

    def __init__(self, flow):
        super().__init__()
        self.flow = flow

    def forward(self, y, context=None):
        return self.flow.inverse(y, context)


def _gradcheck(module, inputs, context=None, prefix=""):
    """gradcheck of ``module(inputs, context)`` in every input and every parameter of module."""
    names = [name for name, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in module.named_parameters()]
    extra = [] if context is None else [context.detach().clone().requires_grad_()]

    def fn(z, *rest):
        ctx = rest[len(params)] if extra else None
        return functional_call(module, dict(zip(names, rest[: len(params)])), (z, ctx))

    assert torch.autograd.gradcheck(fn, (inputs.detach().clone().requires_grad_(), *params, *extra))


def test_planar_gradients_match_finite_differences():
    flow = _planar(3, (2,), seed=6)
    z = _randn(4, 2, 3, seed=7)
    _gradcheck(flow, z)  # z, u, w, b
    _gradcheck(_Inverse(flow), flow(z)[0].detach())  # the implicit-function step of the inverse


def test_coupling_gradients_match_finite_differences():
    flow = _coupling(3, 2, hidden=4, seed=8)
    z, context = _randn(3, 2, 3, seed=9), _randn(2, 2, seed=10)
    _gradcheck(flow, z, context)  # z, the network's weights, the context
    _gradcheck(_Inverse(flow), flow(z, context)[0].detach(), context)


def test_flow_posterior_gradients_match_finite_differences():
    """z and log q from fixed noise, differentiated in μ, logvar and the maps' numbers."""
    context = _randn(2, 2, seed=11)
    flows = [_planar(2, (2,), seed=12), _coupling(2, 2, hidden=4, seed=13)]
    mean, logvar = _randn(2, 2, seed=14), _randn(2, 2, seed=15, scale=0.3)
    eps = _randn(3, 2, 2, seed=16)
    names = [(i, n) for i, f in enumerate(flows) for n, _ in f.named_parameters()]
    params = [p.detach().clone().requires_grad_() for f in flows for p in f.parameters()]

    def fn(mean, logvar, context, *values):
        swapped = {}
        for (i, n), v in zip(names, values):
            swapped.setdefault(i, {})[n] = v
        calls = [_Swapped(f, swapped[i]) for i, f in enumerate(flows)]
        q = FlowPosterior(DiagonalGaussian(mean, logvar), calls, context)
        return q.transform(eps)

    inputs = [t.clone().requires_grad_() for t in (mean, logvar, context)]
    assert torch.autograd.gradcheck(fn, (*inputs, *params))


class _Swapped(Flow):
    """A map evaluated with other parameter values (torch.func.functional_call), for gradcheck."""

    def __init__(self, flow, values):
        super().__init__(flow.dim)
        self.__dict__["inner"] = flow  # not a submodule: its own parameters are not swapped
        self.values = values

    def forward(self, z, context=None):
        return functional_call(self.inner, self.values, (z, context))


# --- FlowPosterior -------------------------------------------------------------------------------


def _posterior(n=3, d=2, seed=0):
    """A base Gaussian (N, d) through planar, coupling, planar maps, with a context (N, 2)."""
    flows = [_planar(d, (n,), seed=seed + 1), _coupling(d, 2, parity=0, seed=seed + 2, scale=0.4),
             _planar(d, (n,), seed=seed + 3)]
    return FlowPosterior(_base(n, d, seed=seed), flows, _randn(n, 2, seed=seed + 4))


def test_flow_posterior_log_q_matches_autograd_change_of_variables():
    """log q from one pass = log q₀(z₀) − log |det| of autograd's Jacobian of the whole chain."""
    q = _posterior()
    eps = _randn(4, 3, 2, seed=5)
    z, log_q = q.transform(eps)
    assert z.shape == (4, 3, 2) and log_q.shape == (4, 3)
    z0 = q.base.reparameterize(eps)

    def chain(v):
        for flow in q.flows:
            v, _ = flow(v, q.context)
        return v

    torch.testing.assert_close(z, chain(z0), rtol=0, atol=0)
    want = q.base.log_prob(z0) - _jacobian_log_det(chain, z0)
    torch.testing.assert_close(log_q, want, rtol=1e-12, atol=1e-12)


def test_flow_posterior_transform_rsample_and_log_prob_agree():
    q = _posterior()
    z, log_q = q.rsample_with_log_prob((6,), generator=_gen(3))
    eps = q.base.standard_noise((6,), generator=_gen(3))  # the same noise
    z_t, log_q_t = q.transform(eps)
    torch.testing.assert_close(z, z_t, rtol=0, atol=0)
    torch.testing.assert_close(log_q, log_q_t, rtol=0, atol=0)
    torch.testing.assert_close(q.reparameterize(eps), z, rtol=0, atol=0)
    torch.testing.assert_close(q.log_prob_of_noise(eps), log_q, rtol=0, atol=0)
    torch.testing.assert_close(q.rsample(6, generator=_gen(3)), z, rtol=0, atol=0)
    sample = q.sample((6,), generator=_gen(3))
    torch.testing.assert_close(sample, z, rtol=0, atol=0)
    assert not sample.requires_grad
    # log_prob inverts the maps (planar numerically): the same number to 1e-9
    torch.testing.assert_close(q.log_prob(z), log_q, rtol=0, atol=1e-9)
    assert q.rsample().shape == (3, 2) and q.rsample_with_log_prob()[1].shape == (3,)


def test_flow_posterior_with_no_maps_is_the_base_gaussian():
    base = _base(4, 3, seed=6)
    q = FlowPosterior(base, [])
    z, log_q = q.rsample_with_log_prob((5,), generator=_gen(7))
    torch.testing.assert_close(z, base.rsample((5,), generator=_gen(7)), rtol=0, atol=0)
    torch.testing.assert_close(log_q, base.log_prob(z), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(q.log_prob(z), base.log_prob(z), rtol=0, atol=0)
    assert q.batch_shape == (4,) and q.event_shape == (3,) and q.latent_dim == 3
    assert q.has_rsample and q.flows == () and q.context is None and q.base is base


def test_flow_posterior_gradients_reach_every_parameter():
    flows = [PlanarFlow(2, (3,), init_scale=0.5, generator=_gen(1)).to(F64),
             _coupling(2, 2, hidden=4, seed=2).requires_grad_()]
    mean = _randn(3, 2, seed=2).requires_grad_()
    logvar = _randn(3, 2, seed=3).requires_grad_()
    context = _randn(3, 2, seed=4).requires_grad_()
    q = FlowPosterior(DiagonalGaussian(mean, logvar), flows, context)
    z, log_q = q.rsample_with_log_prob((4,), generator=_gen(5))
    (z.square().sum() + log_q.sum()).backward()
    tensors = [mean, logvar, context, *flows[0].parameters(), *flows[1].parameters()]
    assert all(t.grad is not None and float(t.grad.abs().sum()) > 0 for t in tensors)


def test_monte_carlo_expectations_match_quadrature_of_the_density():
    """E_q[f] from 400,000 samples against ∫ f(z) q(z) dz on a grid, for f = z, z², sin(3z), in
    1-D (three planar maps, two data points); the tolerance is 5 Monte Carlo standard errors,
    with the seed fixed (deterministic; the largest of the six deviations is 3.6 standard errors,
    and the grid's ∫ sin(3z) q(z) dz agrees with ∫ sin(3 f(z₀)) q₀(z₀) dz₀ to 1e-6)."""
    flows = [_planar(1, (2,), seed=s, scale=1.5) for s in (9, 10, 11)]
    q = FlowPosterior(_base(2, 1, seed=8), flows)
    z = q.sample((400_000,), generator=_gen(12))[..., 0]  # (K, N)
    grid = torch.linspace(-25, 25, 20001, dtype=F64)
    density = q.log_prob(grid[:, None, None].expand(-1, 2, 1)).exp()  # (G, N)
    for f in (lambda v: v, torch.square, lambda v: torch.sin(3 * v)):
        values = f(z)
        se = values.std(dim=0) / math.sqrt(len(values))
        exact = torch.trapezoid(f(grid)[:, None] * density, grid, dim=0)
        assert bool(((values.mean(dim=0) - exact).abs() < 5 * se).all())


def test_monte_carlo_expectation_in_2d_with_coupling_maps():
    """E_q[z₁ z₂] and E_q[z₁²] under two coupling maps (with a context) against 2-D quadrature."""
    flows = [_coupling(2, 2, parity=p, seed=20 + p, scale=0.2) for p in (0, 1)]
    q = FlowPosterior(_base(1, 2, seed=13), flows, _randn(1, 2, seed=14))
    z = q.sample((200_000,), generator=_gen(15))[:, 0]  # (K, 2)
    axis = torch.linspace(-12, 12, 481, dtype=F64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1)  # (G, G, 2)
    density = q.log_prob(grid.reshape(-1, 1, 2)).exp().reshape(481, 481)
    step = float(axis[1] - axis[0])
    assert abs(float(_trapezoid_2d(density, step)) - 1) < 1e-6
    for f in (lambda v: v[..., 0] * v[..., 1], lambda v: v[..., 0].square()):
        values = f(z)
        se = float(values.std()) / math.sqrt(len(values))
        exact = float(_trapezoid_2d(f(grid) * density, step))
        assert abs(float(values.mean()) - exact) < 5 * se


def test_no_closed_form_moments_raise_and_name_the_monte_carlo_route():
    q = _posterior()
    for name in ("mean", "variance", "stddev"):
        with pytest.raises(NotImplementedError, match="rsample_with_log_prob"):
            getattr(q, name)
    with pytest.raises(NotImplementedError, match="rsample_with_log_prob"):
        q.entropy()
    assert not isinstance(q, Proposal)  # it lacks a mean: answered False, not an exception
    assert isinstance(q, torch.distributions.Distribution)
    assert "FlowPosterior" in repr(q) and "PlanarFlow" in repr(q)


# --- construction --------------------------------------------------------------------------------


def test_coupling_masks_alternate_and_coupling_starts_as_identity():
    masks = coupling_masks(5, 3)
    assert [m.tolist() for m in masks] == [[1, 0, 1, 0, 1], [0, 1, 0, 1, 0], [1, 0, 1, 0, 1]]
    assert coupling_masks(2, 0) == []
    flow = AffineCoupling(5, 3, 16, masks[1]).to(F64)
    z, context = _randn(4, 2, 5, seed=1), _randn(2, 3, seed=2)
    z_new, log_det = flow(z, context)
    torch.testing.assert_close(z_new, z, rtol=0, atol=0)
    assert float(log_det.detach().abs().max()) == 0.0
    n_params = sum(p.numel() for p in flow.parameters())
    assert n_params == (5 + 3 + 1) * 16 + (16 + 1) * 2 * 5  # [z, h] -> hidden -> (s, t)
    assert "mask" not in flow.state_dict()  # the mask is rebuilt from the arguments


def test_planar_starts_near_the_identity_reproducibly():
    """|f(z) − z| ≤ |û| and |û| ≤ init_scale |δ| (1 + O(init_scale)): within a few init_scale."""
    a = PlanarFlow(3, batch_shape=(50,), generator=_gen(4))
    b = PlanarFlow(3, batch_shape=(50,), generator=_gen(4))
    assert a.u.shape == a.w.shape == (50, 3) and a.b.shape == (50,)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with torch.no_grad():
        assert float(a.u_hat.norm(dim=-1).max()) < 0.05  # init_scale 0.01 times |δ| < 5
        z = torch.randn(5, 50, 3, generator=_gen(5))
        z_new, log_det = a(z)
        assert float((z_new - z).abs().max()) < 0.05 and float(log_det.abs().max()) < 0.05
    for init_scale in (0.0, 0.3):  # û = 0 exactly for init_scale 0, of order 0.3 for 0.3
        flow = PlanarFlow(2, (200,), init_scale=init_scale, generator=_gen(6)).to(F64)
        size = flow.u_hat.detach().norm(dim=-1)
        assert float(size.max()) < 1e-6 if init_scale == 0 else 0.05 < float(size.mean()) < 1


# --- clear errors --------------------------------------------------------------------------------


def test_errors_for_bad_input():
    planar, coupling = _planar(3), _coupling(3, 2)
    z, context = _randn(4, 3, seed=1), _randn(4, 2, seed=2)
    with pytest.raises(ValueError, match="last dimension 3"):
        planar(_randn(4, 2))
    with pytest.raises(ValueError, match="last dimension 3"):
        planar.inverse(_randn(4, 2))
    with pytest.raises(ValueError, match="last dimension 3"):
        coupling(_randn(4, 2), context)
    with pytest.raises(TypeError, match="torch.Tensor"):
        planar([[0.0, 1.0, 2.0]])
    with pytest.raises(TypeError, match="floating-point"):
        planar(torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="takes a context"):
        coupling(z)
    with pytest.raises(ValueError, match="takes a context"):
        coupling.inverse(z)
    with pytest.raises(ValueError, match="last dimension 2"):
        coupling(z, _randn(4, 5))
    with pytest.raises(ValueError, match="does not broadcast"):
        coupling(z, _randn(7, 2))
    with pytest.raises(ValueError, match="last dimension 0"):
        _coupling(3, 0)(z, context)  # a map without a context is given one
    with pytest.raises(ValueError, match="dim >= 2"):
        AffineCoupling(1, 0, 4, torch.tensor([1.0]))
    with pytest.raises(ValueError, match="at least 2"):
        coupling_masks(1, 2)
    with pytest.raises(ValueError, match="at least one"):
        AffineCoupling(3, 0, 4, torch.ones(3))
    with pytest.raises(ValueError, match="0s and 1s"):
        AffineCoupling(3, 0, 4, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="0s and 1s"):
        AffineCoupling(3, 0, 4, torch.tensor([2.0, 0.0, 1.0]))
    with pytest.raises(TypeError, match="int"):
        PlanarFlow(2.5)
    with pytest.raises(ValueError, match="at least 1"):
        PlanarFlow(2, batch_shape=(0,))


def test_flow_posterior_errors_for_bad_input():
    base = _base(4, 3)
    with pytest.raises(TypeError, match="DiagonalGaussian"):
        FlowPosterior(torch.distributions.Normal(0.0, 1.0), [])
    with pytest.raises(TypeError, match="sequence of Flow"):
        FlowPosterior(base, _planar(3))
    with pytest.raises(TypeError, match=r"flows\[0\]"):
        FlowPosterior(base, [torch.nn.Linear(3, 3)])
    with pytest.raises(ValueError, match="d = 3"):
        FlowPosterior(base, [_planar(2)])
    with pytest.raises(TypeError, match="context must be a torch.Tensor"):
        FlowPosterior(base, [], context=[1.0])
    q = FlowPosterior(base, [_coupling(3, 2)])  # the coupling map needs a context: none given
    with pytest.raises(ValueError, match="takes a context"):
        q.rsample_with_log_prob((2,))
    q = FlowPosterior(base, [_planar(3)])
    with pytest.raises(ValueError, match="last dimension 3"):
        q.log_prob(_randn(4, 2))
    with pytest.raises(ValueError, match="last dimension 3"):
        q.transform(_randn(5, 4, 2))
    with pytest.raises(ValueError, match="at least 1"):
        q.rsample((0,))


def test_vaelib_reexports_the_flows():
    import vaelib

    assert vaelib.FlowPosterior is FlowPosterior and vaelib.PlanarFlow is PlanarFlow
    assert vaelib.AffineCoupling is AffineCoupling and vaelib.coupling_masks is coupling_masks
