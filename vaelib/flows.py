"""Normalizing flows: a richer q(z|x), a Gaussian pushed through invertible maps (ch. 11).

A flow is an invertible, differentiable map ``f`` of ``z`` ``(..., d)``. If ``z₀ ~ q₀`` and
``z_L = f_L ∘ ... ∘ f_1(z₀)``, the change of variables (ch. 7) gives the density of ``z_L``::

    log q_L(z_L) = log q₀(z₀) − Σ_l log |det ∂f_l/∂z (z_{l−1})|

so each map returns its output together with ``log |det ∂f/∂z|``. Two kinds of map:

- :class:`PlanarFlow` ``f(z) = z + û tanh(wᵀz + b)`` (Rezende & Mohamed, 2015): one bend along
  the direction ``w``, with ``u`` reparameterized to ``û`` so that ``wᵀû ≥ −1`` (invertible). Its
  parameters are plain ``nn.Parameter``s (one map per data point with ``batch_shape=(N,)``): what
  chapter 11 fits to a single x's exact posterior. Its inverse is numerical (a 1-D monotone solve).
- :class:`AffineCoupling` (RealNVP, Dinh, Sohl-Dickstein & Bengio, 2017): keep part ``z_a`` of
  ``z``, scale and shift the rest, ``z_b' = z_b ⊙ exp(s) + t``, where ``(s, t)`` come from a small
  network of ``z_a`` and a context ``c_φ(x)`` from the encoder: amortized, exact inverse, and
  ``log |det| = Σ s``. What the VAE's flow posterior uses (:mod:`vaelib.vae`).

:class:`FlowPosterior` is the push-forward of a :class:`vaelib.gaussian.DiagonalGaussian` through
a sequence of maps, a ``torch.distributions.Distribution`` with ``rsample_with_log_prob``: z and
log q(z|x) from one pass (no inverse needed), the way the ELBO and IWAE use it.

Shapes: ``d`` the latent dimension, ``N`` data points, ``K`` samples; samples are ``(K, N, d)``,
log-determinants and log-densities ``(K, N)``.
"""

from __future__ import annotations

import math

from collections.abc import Sequence

import torch
from torch import nn
from torch.distributions import Distribution, constraints
from torch.nn import functional as F

from .checks import check_last_dim, check_positive_int, check_tensor
from .gaussian import DiagonalGaussian

__all__ = ["Flow", "PlanarFlow", "AffineCoupling", "coupling_masks", "FlowPosterior"]


class Flow(nn.Module):
    """An invertible map of ``z`` ``(..., d)`` that also returns its log-determinant.

    Subclasses define :meth:`forward` and :meth:`inverse`. ``context`` (``(..., c)``, e.g. the
    encoder's ``c_φ(x)``) is passed to every map; maps that need none ignore it.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = check_positive_int("dim", dim)

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None):
        """``z (..., d) -> (f(z) (..., d), log |det ∂f/∂z| (...))``."""
        raise NotImplementedError  # pragma: no cover - abstract

    def inverse(self, z_new: torch.Tensor, context: torch.Tensor | None = None):
        """``z' (..., d) -> (f⁻¹(z') (..., d), log |det ∂f⁻¹/∂z'| (...))``; the second is
        ``−log |det ∂f/∂z|`` at ``z = f⁻¹(z')``."""
        raise NotImplementedError  # pragma: no cover - abstract

    def _check_z(self, name: str, z: object) -> torch.Tensor:
        check_tensor(name, z, min_dim=1)
        check_last_dim(name, z, self.dim)
        return z


# ---------------------------------------------------------------------------------------------
# Planar flow (Rezende & Mohamed, 2015).
# ---------------------------------------------------------------------------------------------


class PlanarFlow(Flow):
    """``f(z) = z + û tanh(wᵀz + b)`` (Rezende & Mohamed, 2015, eq. 10), invertible for any raw
    parameters.

    The Jacobian is ``I + û ψᵀ`` with ``ψ = (1 − tanh²(wᵀz + b)) w``, so (matrix determinant lemma)
    ``det = 1 + (1 − tanh²) wᵀû``. The map is invertible when ``wᵀû ≥ −1`` (then it is strictly
    increasing along ``w``); the paper's reparameterization guarantees it for any ``u, w``::

        û = u + (m(wᵀu) − wᵀu) w / ‖w‖²,   m(a) = −1 + softplus(a),   so wᵀû = m(wᵀu) > −1.

    Args:
        dim: d, the size of z.
        batch_shape: the shape of a batch of separate maps (e.g. ``(N,)``: one map per data
            point, all fitted at once); parameters ``u, w`` ``(*batch_shape, d)`` and ``b``
            ``(*batch_shape,)`` broadcast against ``z`` ``(K, *batch_shape, d)``.
        init_scale: the size of ``û`` at the start: the map starts within ``init_scale`` of the
            identity (see below).
        generator: the random numbers of that start (None: torch's global generator).

    The start: ``w ~ N(0, I)`` (a bend on the scale of a standard-normal z), ``b = 0``, and
    ``u = log(e − 1) w / ‖w‖² + init_scale · δ``, ``δ ~ N(0, I)``. Since ``m(log(e − 1)) = 0``,
    this gives ``û = init_scale · (δ − e⁻¹ (wᵀδ) w / ‖w‖²)`` to first order: small, so f starts
    near the identity, with a gradient in every parameter. (Small random u and w instead would
    start with ``wᵀû ≈ m(0) = −0.31``: not the identity.)
    """

    def __init__(
        self,
        dim: int,
        batch_shape: Sequence[int] = (),
        init_scale: float = 0.01,
        generator: torch.Generator | None = None,
    ):
        super().__init__(dim)
        batch_shape = tuple(check_positive_int("batch_shape entry", n) for n in batch_shape)
        self.batch_shape = torch.Size(batch_shape)
        shape = (*batch_shape, dim)
        w = torch.randn(shape, generator=generator)  # (..., d)
        delta = torch.randn(shape, generator=generator)
        u = math.log(math.e - 1) * w / w.square().sum(dim=-1, keepdim=True) + init_scale * delta
        self.u = nn.Parameter(u)  # (..., d)
        self.w = nn.Parameter(w)  # (..., d)
        self.b = nn.Parameter(torch.zeros(batch_shape))  # (...)

    def _constrained(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(û (..., d), 1 + wᵀû (...))``; ``1 + wᵀû = softplus(wᵀu) > 0`` exactly (no round-off
        can push it below 0). A zero ``w`` (a translation by ``u tanh(b)``) gives ``û = u``."""
        w_sq = self.w.square().sum(dim=-1)  # ‖w‖² (...)
        wu = (self.w * self.u).sum(dim=-1)  # wᵀu (...)
        safe_w_sq = w_sq.clamp_min(torch.finfo(w_sq.dtype).tiny)
        m = -1 + F.softplus(wu)  # m(wᵀu) > −1
        u_hat = self.u + ((m - wu) / safe_w_sq).unsqueeze(-1) * self.w  # (..., d)
        one_plus_wu_hat = torch.where(w_sq > 0, F.softplus(wu), torch.ones_like(wu))
        return u_hat, one_plus_wu_hat

    @property
    def u_hat(self) -> torch.Tensor:
        """``û = u + (m(wᵀu) − wᵀu) w / ‖w‖²`` ``(*batch_shape, d)``, with ``wᵀû = m(wᵀu) ≥ −1``."""
        return self._constrained()[0]

    def _log_abs_det(self, a: torch.Tensor, one_plus_wu_hat: torch.Tensor) -> torch.Tensor:
        """``log |1 + (1 − h²) wᵀû|`` at ``a = wᵀz + b``, ``h = tanh(a)``, written as
        ``log[(1 − h²)(1 + wᵀû) + h²]``: a sum of two terms ≥ 0, so no cancellation."""
        h = torch.tanh(a)
        return torch.log((1 - h) * (1 + h) * one_plus_wu_hat + h.square())

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None):
        """``z (..., d) -> (z + û tanh(wᵀz + b) (..., d), log |det ∂f/∂z| (...))``.

        ``context`` is ignored (a planar map's parameters are its own).
        """
        self._check_z("z", z)
        u_hat, one_plus_wu_hat = self._constrained()
        a = (z * self.w).sum(dim=-1) + self.b  # wᵀz + b (...)
        z_new = z + u_hat * torch.tanh(a).unsqueeze(-1)
        return z_new, self._log_abs_det(a, one_plus_wu_hat)

    def inverse(
        self,
        z_new: torch.Tensor,
        context: torch.Tensor | None = None,
        *,
        max_iter: int = 100,
        tol: float | None = None,
    ):
        """``f⁻¹(z')``, numerically: solve one scalar equation per point, then subtract.

        With ``a = wᵀz + b`` and ``r = wᵀz' + b``, applying ``wᵀ(·) + b`` to ``z' = z + û tanh(a)``
        gives ``g(a) = a + (wᵀû) tanh(a) = r``, with ``g`` strictly increasing (``wᵀû > −1``) and
        the root in ``[r − |wᵀû|, r + |wᵀû|]`` (``|tanh| ≤ 1``). Safeguarded Newton steps find
        ``a`` (bisection of that bracket where a step would leave it or converge too slowly:
        plain Newton can cycle around the bend of tanh); then ``z = z' − û tanh(a)``.

        Converged to ``|g(a) − r| ≤ tol`` (default: 1e-10 in float64, 1e-5 in float32, times
        ``1 + |r|``), or ``max_iter`` steps. Differentiable: one last Newton step with gradients
        gives the implicit-function derivative of ``a``.

        Returns:
            ``(z (..., d), log |det ∂f⁻¹/∂z'| = −log |det ∂f/∂z| (...))``.
        """
        self._check_z("z_new", z_new)
        u_hat, one_plus_wu_hat = self._constrained()
        c = one_plus_wu_hat - 1  # wᵀû ≥ −1 (...)
        r = (z_new * self.w).sum(dim=-1) + self.b  # (...)
        if tol is None:
            tol = 1e-10 if z_new.dtype == torch.float64 else 1e-5
        with torch.no_grad():
            r0, c0 = r.detach(), c.detach().expand_as(r)
            lo, hi = r0 - c0.abs(), r0 + c0.abs()
            a = r0.clone()
            step = step_before = hi - lo
            for _ in range(max_iter):
                h = torch.tanh(a)
                residual = a + c0 * h - r0  # g(a) − r, increasing in a
                if bool((residual.abs() <= tol * (1 + r0.abs())).all()):
                    break
                lo = torch.where(residual < 0, a, lo)  # the root lies above a
                hi = torch.where(residual > 0, a, hi)
                newton = residual / (1 + c0 * (1 - h) * (1 + h))  # (g(a) − r) / g'(a), g' ≥ 0
                # bisect where Newton would leave the bracket or does not halve the step before
                # last (Numerical Recipes' rtsafe)
                inside = (a - newton > lo) & (a - newton < hi)
                good = inside & (2 * newton.abs() <= step_before.abs())
                step_before, step = step, torch.where(good, newton, a - (lo + hi) / 2)
                a = a - step
        # one Newton step with gradients: a = a* − (g(a*) − r) / g'(a*) is a* in value and has the
        # derivative of the exact root (implicit function theorem)
        h = torch.tanh(a)
        slope = (1 + c * (1 - h) * (1 + h)).clamp_min(torch.finfo(a.dtype).tiny)
        a = a - (a + c * h - r) / slope
        z = z_new - u_hat * torch.tanh(a).unsqueeze(-1)
        return z, -self._log_abs_det(a, one_plus_wu_hat)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, batch_shape={tuple(self.batch_shape)}"


# ---------------------------------------------------------------------------------------------
# Affine coupling (RealNVP; Dinh, Sohl-Dickstein & Bengio, 2017).
# ---------------------------------------------------------------------------------------------


def coupling_masks(dim: int, length: int) -> list[torch.Tensor]:
    """``length`` alternating binary masks ``(d,)`` for a chain of :class:`AffineCoupling` maps.

    Mask ``l`` keeps the coordinates ``j`` with ``j + l`` even (``1`` = kept, ``0`` = changed), so
    consecutive maps change complementary halves and every coordinate is changed by every second
    map: ``[1, 0, 1, ...]``, ``[0, 1, 0, ...]``, ... . Needs ``d ≥ 2``.
    """
    check_positive_int("dim", dim, minimum=2)
    check_positive_int("length", length, minimum=0)
    j = torch.arange(dim)
    return [((j + l) % 2 == 0).to(torch.get_default_dtype()) for l in range(length)]  # noqa: E741


class AffineCoupling(Flow):
    """``z' = z_a ⊕ (z_b ⊙ exp(s) + t)``, ``(s, t) = NN([z_a, h])`` (RealNVP, Dinh et al., 2017).

    A binary ``mask`` splits ``z`` into the kept part ``z_a`` (mask 1) and the changed part ``z_b``
    (mask 0). The Jacobian is triangular (``z_a`` is kept, ``z_b'`` depends on ``z_b`` only through
    ``exp(s) ⊙ z_b``), so ``log |det ∂f/∂z| = Σ_{j ∈ b} s_j``, and the inverse is exact:
    ``z_b = (z_b' − t) ⊙ exp(−s)`` with ``(s, t)`` recomputed from ``z_a' = z_a``.

    The network is ``[z ⊙ mask, c_φ(x)] -> hidden (tanh) -> (s_raw, t)``; ``s = B tanh(s_raw / B)``
    (``B = scale_bound``) keeps every log-scale in ``(−B, B)`` for stability. The last layer
    starts at zero, so the map starts as the identity.

    Args:
        dim: d ≥ 2, the size of z.
        context_dim: c ≥ 0, the size of the context ``h`` (0: no context).
        hidden: the width of the hidden layer.
        mask: ``(d,)`` of 0 and 1 (at least one of each), e.g. from :func:`coupling_masks`.
        scale_bound: the bound c on each log-scale ``s_j``.
    """

    def __init__(
        self,
        dim: int,
        context_dim: int,
        hidden: int,
        mask: torch.Tensor | Sequence[float],
        *,
        scale_bound: float = 2.0,
    ):
        check_positive_int("dim", dim)
        if dim < 2:
            raise ValueError(
                "AffineCoupling needs dim >= 2: it keeps part of z and changes the rest, so a 1-D "
                "z has nothing to condition on; use PlanarFlow for d = 1."
            )
        super().__init__(dim)
        self.context_dim = check_positive_int("context_dim", context_dim, minimum=0)
        self.hidden = check_positive_int("hidden", hidden)
        mask = torch.as_tensor(mask, dtype=torch.get_default_dtype())
        if mask.shape != (dim,) or not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"mask must be a (d,) = ({dim},) tensor of 0s and 1s, got {mask}.")
        if not 0 < int(mask.sum()) < dim:
            raise ValueError(
                f"mask must keep at least one coordinate (1) and change at least one (0), got "
                f"{mask.tolist()}; coupling_masks(dim, length) gives alternating ones."
            )
        if not scale_bound > 0:
            raise ValueError(f"scale_bound must be > 0, got {scale_bound}.")
        self.scale_bound = float(scale_bound)
        self.register_buffer("mask", mask, persistent=False)  # (d,), 1 = kept
        self.hidden_layer = nn.Linear(dim + context_dim, hidden)  # [z ⊙ mask, h] -> hidden
        self.output_layer = nn.Linear(hidden, 2 * dim)  # hidden -> (s_raw, t)
        nn.init.zeros_(self.output_layer.weight)  # s = t = 0: the identity map at the start
        nn.init.zeros_(self.output_layer.bias)

    def _check_context(self, z: torch.Tensor, context: torch.Tensor | None) -> None:
        if self.context_dim == 0:
            if context is not None:
                check_tensor("context", context, min_dim=1)
                check_last_dim("context", context, 0, "context size c = 0 of this map")
            return
        if context is None:
            raise ValueError(
                f"this AffineCoupling map takes a context (..., {self.context_dim}) (the encoder's "
                "c_φ(x)); pass context=..., or build the map with context_dim=0."
            )
        check_tensor("context", context, min_dim=1)
        check_last_dim("context", context, self.context_dim, "context size c")
        try:
            torch.broadcast_shapes(z.shape[:-1], context.shape[:-1])
        except RuntimeError:
            raise ValueError(
                f"context {tuple(context.shape)} does not broadcast against z {tuple(z.shape)}: "
                "its leading dims must match z's trailing batch dims, e.g. z (K, N, d) and "
                "context (N, c)."
            ) from None

    def scale_shift(
        self, z_kept: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s, t)`` ``(..., d)`` from ``z ⊙ mask`` and the context, both 0 on the kept part.

        The first layer acts on ``[z ⊙ mask, h]`` as ``W_z (z ⊙ mask) + W_h h + bias``: the same
        numbers as concatenating, without copying ``c_φ(x)`` ``(N, c)`` once per sample.
        """
        weight_z, weight_h = self.hidden_layer.weight.split([self.dim, self.context_dim], dim=1)
        pre = F.linear(z_kept, weight_z, self.hidden_layer.bias)  # (..., hidden)
        if self.context_dim > 0:
            pre = pre + F.linear(context, weight_h)  # (N, hidden), broadcast over K
        s_raw, t = self.output_layer(torch.tanh(pre)).chunk(2, dim=-1)  # (..., d) each
        changed = 1 - self.mask
        s = self.scale_bound * torch.tanh(s_raw / self.scale_bound) * changed  # in (−B, B)
        return s, t * changed

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None):
        """``z (..., d) -> (z ⊙ exp(s) + t (..., d), Σ_j s_j (...))`` (``s = t = 0`` on the kept
        part, so ``z_a`` passes unchanged)."""
        self._check_z("z", z)
        self._check_context(z, context)
        s, t = self.scale_shift(z * self.mask, context)
        return z * torch.exp(s) + t, s.sum(dim=-1)

    def inverse(self, z_new: torch.Tensor, context: torch.Tensor | None = None):
        """``z' -> ((z' − t) ⊙ exp(−s), −Σ_j s_j)``, exact: ``(s, t)`` depend on ``z_a' = z_a``."""
        self._check_z("z_new", z_new)
        self._check_context(z_new, context)
        s, t = self.scale_shift(z_new * self.mask, context)
        return (z_new - t) * torch.exp(-s), -s.sum(dim=-1)

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, context_dim={self.context_dim}, hidden={self.hidden}, "
                f"mask={[int(m) for m in self.mask.tolist()]}, scale_bound={self.scale_bound}")


# ---------------------------------------------------------------------------------------------
# The flow posterior q(z|x).
# ---------------------------------------------------------------------------------------------


class _Inverse(nn.Module):
    """A map's :meth:`Flow.inverse` as a module's forward, so ``torch.func.functional_call`` can
    run it with other parameters."""

    def __init__(self, flow: Flow):
        super().__init__()
        self.flow = flow

    def forward(self, z_new: torch.Tensor, context: torch.Tensor | None):
        return self.flow.inverse(z_new, context)


def _inverse_with_parameters_held(flow: Flow, z_new: torch.Tensor,
                                  context: torch.Tensor | None):
    """``flow.inverse(z_new, context)`` with the map's parameters detached: the same numbers,
    gradients through ``z_new`` only."""
    held = {f"flow.{name}": p.detach() for name, p in flow.named_parameters()}
    return torch.func.functional_call(_Inverse(flow), held, (z_new, context))


class _NoClosedForm(NotImplementedError, AttributeError):
    """A NotImplementedError that is also an AttributeError, so ``hasattr(q, "mean")`` is False
    (and ``isinstance(q, vaelib.protocols.Proposal)`` answers False instead of raising)."""


class FlowPosterior(Distribution):
    """``q(z|x)``: a diagonal Gaussian pushed through a chain of flows (ch. 11).

    ``z₀ = μ + σ ⊙ eps`` (``eps ~ N(0, I)``), ``z_l = f_l(z_{l−1}, h)``, and::

        log q(z_L|x) = log q₀(z₀|x) − Σ_l log |det ∂f_l/∂z (z_{l−1})|

    (Rezende & Mohamed, 2015, eq. 7). With no maps it is the base Gaussian.

    Args:
        base: the :class:`vaelib.gaussian.DiagonalGaussian` q₀ ``(N, d)`` (the encoder's μ, logvar).
        flows: the maps ``f_1, ..., f_L`` (:class:`Flow`), applied in that order.
        context: ``(N, c)`` passed to every map (the encoder's ``c_φ(x)``), or None.

    ``rsample_with_log_prob`` (or :meth:`transform` from given noise) gives z and log q together
    without inverting anything; :meth:`log_prob` of a given z inverts every map (planar maps
    numerically, coupling maps exactly).
    """

    arg_constraints: dict = {}  # the constructor checks its arguments itself
    support = constraints.real_vector
    has_rsample = True

    def __init__(
        self,
        base: DiagonalGaussian,
        flows: Sequence[Flow],
        context: torch.Tensor | None = None,
    ):
        if not isinstance(base, DiagonalGaussian):
            raise TypeError(
                f"base must be a vaelib.gaussian.DiagonalGaussian (the encoder's q0), got "
                f"{type(base).__name__}."
            )
        if isinstance(flows, Flow) or not isinstance(flows, (Sequence, nn.ModuleList)):
            raise TypeError(
                f"flows must be a sequence of Flow maps (a list or nn.ModuleList; [] for none), "
                f"got {type(flows).__name__}."
            )
        flows = tuple(flows)
        for i, flow in enumerate(flows):
            if not isinstance(flow, Flow):
                raise TypeError(
                    f"flows[{i}] must be a vaelib.flows.Flow, got {type(flow).__name__}.")
            if flow.dim != base.latent_dim:
                raise ValueError(
                    f"flows[{i}] maps z of size {flow.dim}, but the base Gaussian has d = "
                    f"{base.latent_dim}."
                )
        if context is not None:
            check_tensor("context", context, min_dim=1)
        self._base = base
        self._flows = flows
        self._context = context
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def base(self) -> DiagonalGaussian:
        """The base Gaussian q₀ ``(N, d)``."""
        return self._base

    @property
    def flows(self) -> tuple[Flow, ...]:
        """The maps ``f_1, ..., f_L``, in the order they are applied."""
        return self._flows

    @property
    def context(self) -> torch.Tensor | None:
        """The context ``(N, c)`` passed to every map, or None."""
        return self._context

    @property
    def latent_dim(self) -> int:
        """d, the size of z."""
        return self._base.latent_dim

    def standard_noise(
        self, sample_shape: int | Sequence[int] = torch.Size(), generator=None
    ) -> torch.Tensor:
        """``eps ~ N(0, I)`` ``(*sample_shape, N, d)``: the base's noise (what rsample draws)."""
        return self._base.standard_noise(sample_shape, generator)

    def transform(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``eps (*S, N, d) -> (z_L (*S, N, d), log q(z_L|x) (*S, N))``.

        ``z₀ = μ + σ ⊙ eps`` with ``log q₀(z₀)`` from the noise itself
        (:meth:`DiagonalGaussian.log_prob_of_noise`), then each map subtracts its log-determinant.
        """
        check_tensor("eps", eps, min_dim=1)
        check_last_dim("eps", eps, self.latent_dim)
        z = self._base.reparameterize(eps)
        log_q = self._base.log_prob_of_noise(eps)
        for flow in self._flows:
            z, log_det = flow(z, self._context)
            log_q = log_q - log_det
        return z, log_q

    def reparameterize(self, eps: torch.Tensor) -> torch.Tensor:
        """``z_L`` from base noise ``eps (*S, N, d)``: the first output of :meth:`transform`."""
        return self.transform(eps)[0]

    def log_prob_of_noise(self, eps: torch.Tensor) -> torch.Tensor:
        """``log q(z_L|x)`` at ``z_L = reparameterize(eps)``: ``(*S, N, d) -> (*S, N)``."""
        return self.transform(eps)[1]

    def rsample_with_log_prob(
        self,
        sample_shape: int | Sequence[int] = torch.Size(),
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reparameterized ``z`` ``(*sample_shape, N, d)`` and ``log q(z|x)`` ``(*sample_shape, N)``
        from one pass (an int K means ``(K,)``); differentiable in every parameter."""
        return self.transform(self.standard_noise(sample_shape, generator))

    def rsample(
        self,
        sample_shape: int | Sequence[int] = torch.Size(),
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Reparameterized samples ``z`` ``(*sample_shape, N, d)``."""
        return self.rsample_with_log_prob(sample_shape, generator)[0]

    def sample(
        self,
        sample_shape: int | Sequence[int] = torch.Size(),
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Like :meth:`rsample`, without gradients."""
        with torch.no_grad():
            return self.rsample(sample_shape, generator)

    def log_prob(self, z: torch.Tensor, *, hold_parameters: bool = False) -> torch.Tensor:
        """``log q(z|x) = log q₀(z₀) + Σ_l log |det ∂f_l⁻¹/∂z|``, ``z₀ = f_1⁻¹ ∘ ... ∘ f_L⁻¹(z)``.

        Args:
            z: ``(K, N, d)`` (or anything broadcasting against ``(N, d)``).
            hold_parameters: True: q's parameters are held fixed (μ, logvar, the context and
                every map's weights enter detached), so gradients reach log q only through z:
                ``∂_z log q(z|x)`` at fixed φ, what DReG needs (ch. 10). The value is the same.

        Returns:
            ``(K, N)``. Planar maps are inverted numerically (to about 1e-10 in float64); for
            samples drawn from q, :meth:`rsample_with_log_prob` gives the same number without it.
        """
        check_tensor("z", z, min_dim=1)
        check_last_dim("z", z, self.latent_dim)
        base, context = self._base, self._context
        if hold_parameters:
            base = DiagonalGaussian(base.mean.detach(), base.logvar.detach(), validate_args=False)
            context = None if context is None else context.detach()
        log_det_inverse = 0.0
        for flow in reversed(self._flows):
            if hold_parameters:
                z, log_det = _inverse_with_parameters_held(flow, z, context)
            else:
                z, log_det = flow.inverse(z, context)
            log_det_inverse = log_det_inverse + log_det
        return base.log_prob(z) + log_det_inverse

    def _no_closed_form(self, what: str):
        raise _NoClosedForm(
            f"a FlowPosterior's {what} has no closed form; estimate it by Monte Carlo from "
            "z, log_q = q.rsample_with_log_prob((K,)) (e.g. the entropy is -log_q.mean(0))."
        )

    @property
    def mean(self) -> torch.Tensor:
        """No closed form: raises NotImplementedError (Monte Carlo: ``rsample((K,)).mean(0)``)."""
        self._no_closed_form("mean")

    @property
    def variance(self) -> torch.Tensor:
        """No closed form: raises NotImplementedError (use Monte Carlo)."""
        self._no_closed_form("variance")

    @property
    def stddev(self) -> torch.Tensor:
        """No closed form: raises NotImplementedError (use Monte Carlo)."""
        self._no_closed_form("stddev")

    def entropy(self) -> torch.Tensor:
        """No closed form: raises NotImplementedError; ``H ≈ −mean of log_q`` from
        ``rsample_with_log_prob``."""
        self._no_closed_form("entropy")

    def __repr__(self) -> str:
        return (f"FlowPosterior(batch_shape={tuple(self.batch_shape)}, d={self.latent_dim}, "
                f"flows={[type(f).__name__ for f in self._flows]}, "
                f"context={None if self._context is None else tuple(self._context.shape)})")

