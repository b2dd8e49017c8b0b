"""The gap ``log p(x) - ELBO(q)`` and where it comes from (ch. 11).

For any q, ``log p(x) - ELBO(q) = KL(q(z|x) ‖ p(z|x))`` (ch. 5). Two ways to look at it:

1. **What a richer family buys**, for one x of a toy model whose log p(x) is exact
   (:class:`vaelib.toy.NonlinearToy`, :class:`vaelib.toy.NonlinearToy2D`,
   :class:`vaelib.toy.LinearGaussian`): :func:`fit_posterior` fits a non-amortized q -- a
   diagonal Gaussian base ``q_0 = N(m, diag exp(logvar))`` pushed through L planar maps
   (:class:`vaelib.flows.PlanarFlow`; L = 0 is the Gaussian) -- by Adam on the Monte Carlo ELBO,
   and reports ELBO(q) and the exact gap KL(q ‖ p(z|x)) = log p(x) - ELBO(q).

2. **The two gaps of a trained VAE** (Cremer, Li & Duvenaud, 2018, "Inference suboptimality in
   variational autoencoders"). With ``q_φ(z|x)`` the encoder's q and ``q⋆_x`` the best member of
   the same family for that x alone,

       log p(x) - ELBO(q_φ) = [log p(x) - ELBO(q⋆_x)] + [ELBO(q⋆_x) - ELBO(q_φ)]
                               approximation gap Δ_approx   amortization gap Δ_amort

   Δ_approx is what the family costs, Δ_amort what sharing one encoder over every x costs.
   :func:`optimize_local_posterior` finds ``q⋆_x``: it starts from the encoder's outputs
   ``model.encode(x)`` and optimizes them, one set per data point (all points at once), by Adam on
   the ELBO with the model's weights frozen; :func:`inference_gaps` estimates the three numbers
   per data point with standard errors over the points.

   For a flow VAE the "local" parameters are the encoder's outputs ``(μ, logvar, context)``: the
   coupling maps' weights are shared by every x and stay fixed, so ``q⋆_x`` is the best q that the
   trained maps can make for that x (the family the encoder actually uses), not the best of all
   coupling flows of that size.

Shapes: x ``(N, D)``, z ``(K, N, d)``, log-weights ``(K, N)``; symbols as in ``docs/notation.md``.
Every function draws its random numbers from its own generator seeded with ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .checks import check_num_samples, check_positive_int, check_tensor
from .estimators import effective_sample_size
from .flows import FlowPosterior, PlanarFlow
from .gaussian import DiagonalGaussian, standard_normal

__all__ = ["PosteriorFit", "fit_posterior", "optimize_local_posterior", "InferenceGaps",
           "inference_gaps"]


# ---------------------------------------------------------------------------------------------
# Shared: log-weights from noise, and Adam on the Monte Carlo ELBO.
# ---------------------------------------------------------------------------------------------


def _joint(model):
    """``(x, z) -> log p(x, z)``; for a VAE without re-checking x on every call (no host sync)."""
    if hasattr(model, "check_data"):  # a vaelib.vae.VAE: x is checked once, up front
        return lambda x, z: model.log_prior(z) + model.log_likelihood(x, z, validate=False)
    return model.log_joint


def _log_weights(log_joint, x: torch.Tensor, q, eps: torch.Tensor) -> torch.Tensor:
    """``log w_k = log p(x, z_k) - log q(z_k|x)`` at ``z_k = T(μ + σ ⊙ eps_k)``: ``(K, N)``.

    z and log q come from the noise in one pass, ``q.transform(eps)``: a
    :class:`FlowPosterior`'s, or a :class:`DiagonalGaussian`'s (exact, no round-off from
    ``(z - μ) / σ``).
    """
    log_p, log_q = _log_joint_and_q(log_joint, x, q, eps)
    return log_p - log_q


def _log_joint_and_q(log_joint, x, q, eps) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p(x, z_k), log q(z_k|x))``, each ``(K, N)``, for z_k from the noise ``eps``."""
    z, log_q = q.transform(eps)  # (K, N, d), (K, N)
    return log_joint(x, z), log_q


def _noise(num_samples: int, batch: int, d: int, like: torch.Tensor, generator) -> torch.Tensor:
    return standard_normal((num_samples, batch, d), dtype=like.dtype, device=like.device,
                           generator=generator)


def _eval_log_weights(log_joint, x, q, num_samples: int, chunk_size: int, generator,
                      like: torch.Tensor) -> torch.Tensor:
    """``(K, N)`` log-weights from K fresh samples, ``chunk_size`` at a time, no gradients; in
    float64 so that means over thousands of samples lose no digits."""
    batch, d = like.shape
    chunks = []
    with torch.no_grad():
        for first in range(0, num_samples, chunk_size):
            eps = _noise(min(chunk_size, num_samples - first), batch, d, like, generator)
            chunks.append(_log_weights(log_joint, x, q, eps).double())
    return torch.cat(chunks)


def _adam_on_elbo(log_joint, x, q, params: list[torch.Tensor], steps: int, lr: float,
                  num_samples: int, generator, like: torch.Tensor,
                  anneal_steps: int = 0) -> torch.Tensor:
    """Maximize ``Σ_n ELBO_n`` over ``params`` (q's parameters only) by Adam, ``steps`` steps.

    Each step: K = ``num_samples`` reparameterized samples per data point, the Monte Carlo ELBO
    ``(1/K) Σ_k log w_k`` (ch. 7), its gradient with respect to ``params`` alone
    (``torch.autograd.grad``: the model's weights get no gradient and are never changed), and an
    Adam step whose learning rate decays from ``lr`` to 0 along a half cosine, so that the last
    steps average the noise instead of jumping around the optimum. Each data point's ELBO
    depends on its own parameters only, so summing fits all N at once, each as if alone (Adam
    scales each number's step by its own gradient history).

    With ``anneal_steps > 0`` the objective is ``(1/K) Σ_k [β log p(x, z_k) - log q(z_k)]``
    with β rising linearly from ``BETA_START`` to 1 over the first ``anneal_steps`` steps (see
    :func:`fit_posterior`).

    Returns:
        ``(steps, N)``: the Monte Carlo ELBO (β = 1) at every step, before the step.
    """
    optimizer = torch.optim.Adam(params, lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: 0.5 * (1 + math.cos(math.pi * t / steps)))
    batch, d = like.shape
    history = []
    for t in range(steps):
        eps = _noise(num_samples, batch, d, like, generator)  # (K, N, d)
        log_p, log_q = _log_joint_and_q(log_joint, x, q, eps)  # (K, N) each
        beta = min(1.0, BETA_START + (1 - BETA_START) * t / anneal_steps) if anneal_steps else 1.0
        objective = (beta * log_p - log_q).mean(dim=0)  # (N,): the ELBO once beta = 1
        grads = torch.autograd.grad(-objective.sum(), params)
        elbo = (log_p - log_q).mean(dim=0)
        for p, g in zip(params, grads):
            p.grad = g
        optimizer.step()
        schedule.step()
        history.append(elbo.detach())
    return torch.stack(history)


BETA_START = 0.05  # the annealed objective's first inverse temperature


def _check_fit_arguments(steps, lr, num_samples) -> tuple[int, float, int]:
    steps = check_positive_int("steps", steps)
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
        raise ValueError(f"lr must be a finite number > 0 (Adam's learning rate), got {lr!r}.")
    return steps, float(lr), check_num_samples(num_samples)


# ---------------------------------------------------------------------------------------------
# 1. A non-amortized flow posterior for a toy model's x.
# ---------------------------------------------------------------------------------------------


@dataclass
class PosteriorFit:
    """What :func:`fit_posterior` found, for N data points fitted separately.

    Attributes:
        q: the fitted :class:`vaelib.flows.FlowPosterior` over ``(N, d)``: a
            :class:`DiagonalGaussian` base and ``flow_length`` :class:`PlanarFlow` maps (none for
            L = 0), each with its own parameters for every data point.
        elbo: ``(N,)`` ELBO(q), estimated from ``eval_samples`` fresh samples (not those that
            chose the restart, so it is unbiased).
        elbo_se: ``(N,)`` its Monte Carlo standard error, ``std(log w) / √K``.
        log_marginal: ``(N,)`` the model's exact log p(x) (``model.log_marginal``), or None for a
            model without one.
        history: ``(steps, N)`` the training objective (the Monte Carlo ELBO with
            ``num_samples`` samples) at every step, for the chosen restart.
        restart_elbos: ``(restarts, N)`` every restart's ELBO (on the samples that chose).
    """

    q: FlowPosterior
    elbo: torch.Tensor
    elbo_se: torch.Tensor
    log_marginal: torch.Tensor | None
    history: torch.Tensor
    restart_elbos: torch.Tensor

    @property
    def flow_length(self) -> int:
        """L, the number of planar maps."""
        return len(self.q.flows)

    @property
    def gap(self) -> torch.Tensor | None:
        """``(N,)`` the exact gap ``log p(x) - ELBO(q) = KL(q ‖ p(z|x)) >= 0`` (None without
        log p(x)); its standard error is :attr:`elbo_se`."""
        return None if self.log_marginal is None else self.log_marginal - self.elbo


def _init_planar(flow: PlanarFlow, mean: torch.Tensor, generator) -> None:
    """Start a planar map as the identity with a useful gradient: ``w ~ N(0, I)``, the hyperplane
    ``wᵀz + b = 0`` through the base mean, and ``u = log(e - 1) w / ‖w‖²`` so that
    ``û = m(wᵀu) w / ‖w‖² = 0`` (``m(a) = -1 + softplus(a)`` is 0 at ``a = log(e - 1)``).

    (Small random u and w instead start near a saddle, where both gradients are small.)
    """
    with torch.no_grad():
        w = standard_normal(tuple(flow.w.shape), dtype=flow.w.dtype, device=flow.w.device,
                            generator=generator)  # (B, d)
        flow.w.copy_(w)
        flow.b.copy_(-(w * mean).sum(dim=-1))
        flow.u.copy_(math.log(math.e - 1) * w / w.square().sum(dim=-1, keepdim=True))


def _planar_flows(length: int, d: int, mean: torch.Tensor, generator) -> list[PlanarFlow]:
    flows = []
    for _ in range(length):
        flow = PlanarFlow(d, batch_shape=(len(mean),)).to(dtype=mean.dtype, device=mean.device)
        _init_planar(flow, mean, generator)
        flows.append(flow)
    return flows


def fit_posterior(model, x: torch.Tensor, flow_length: int = 0, *, steps: int = 600,
                  lr: float = 0.05, num_samples: int = 32, restarts: int = 4, anneal: float = 0.5,
                  eval_samples: int = 20_000, seed: int = 0) -> PosteriorFit:
    """Fit q(z|x), a diagonal Gaussian pushed through L planar maps, to each x by the ELBO (ch. 11).

    q is non-amortized: each data point gets its own base ``N(m, diag exp(logvar))`` and its own
    L maps ``f_l(z) = z + û_l tanh(w_lᵀz + b_l)``, and
    ``log q(z_L) = log q_0(z_0) - Σ_l log|det ∂f_l/∂z|`` (ch. 7's change of variables).

    Two things make the fit reliable on multimodal posteriors, whose ELBO has local optima (a q
    on one mode; a q that straddles both):

    - annealing (Rezende & Mohamed, 2015, sec. 6): for the first ``anneal × steps`` steps the
      objective is ``E_q[β log p(x, z) - log q(z)]`` with β rising linearly from 0.05 to 1, the
      ELBO of a flattened posterior ``∝ p(x, z)^β``, so q first spreads over every mode and then
      follows them as they sharpen, instead of locking onto the first one it finds;
    - ``restarts`` independent starts, fitted at once (the base mean drawn from the prior,
      log-variance 0; each map starting as the identity, see :func:`_init_planar`): for each x
      the one with the largest ELBO on ``eval_samples`` samples is kept, and its ELBO is then
      estimated again from fresh samples.

    On the toys (``NonlinearToy``, ``NonlinearToy2D``) the defaults give a gap that shrinks with
    L, from about 1.2 nats (L = 0) to under 0.1 (L = 8) for the two-mode ``NonlinearToy2D()`` at
    x = 1, in about 1.5 s for L = 8 on one CPU thread.

    Args:
        model: a model with ``latent_dim``, ``dtype`` and ``log_joint`` (any
            :class:`vaelib.protocols.LatentVariableModel`; the toy models have ``log_marginal``,
            which gives :attr:`PosteriorFit.gap`).
        x: ``(N, D)`` data points, each fitted on its own (``(1, D)`` for one x).
        flow_length: L >= 0, the number of planar maps (0: the diagonal Gaussian).
        steps: Adam steps (the learning rate decays from ``lr`` to 0 along a half cosine).
        lr: Adam's initial learning rate.
        num_samples: K, samples per step in the Monte Carlo ELBO.
        restarts: independent starts per data point; the best is kept.
        anneal: the fraction of the steps over which β rises from 0.05 to 1 (0: the plain ELBO
            from the first step).
        eval_samples: samples for the ELBO of each restart and of the result.
        seed: seeds the one generator every random number comes from (starts and samples).

    Returns:
        A :class:`PosteriorFit`.
    """
    check_tensor("x", x, min_dim=2)
    if isinstance(flow_length, bool) or not isinstance(flow_length, int) or flow_length < 0:
        raise ValueError(f"flow_length must be an integer >= 0 (the number of planar maps; 0 is "
                         f"the Gaussian), got {flow_length!r}.")
    steps, lr, num_samples = _check_fit_arguments(steps, lr, num_samples)
    restarts = check_positive_int("restarts", restarts)
    eval_samples = check_num_samples(eval_samples, "eval_samples")
    if isinstance(anneal, bool) or not isinstance(anneal, (int, float)) or not 0 <= anneal <= 1:
        raise ValueError(f"anneal must be a fraction of the steps in [0, 1], got {anneal!r}.")
    if len(x) == 0:
        raise ValueError("x is empty: pass at least one data point, shape (N, D) with N >= 1.")
    n, d = len(x), model.latent_dim
    dtype = getattr(model, "dtype", x.dtype)
    x = x.to(dtype=dtype)
    generator = torch.Generator().manual_seed(seed)
    log_joint = _joint(model)
    batch = restarts * n  # restart r of point i is row r * n + i
    x_all = x.repeat(restarts, 1)  # (R N, D)
    mean = standard_normal((batch, d), dtype=dtype, device=x.device, generator=generator)
    logvar = torch.zeros_like(mean)
    mean.requires_grad_(True)
    logvar.requires_grad_(True)
    flows = _planar_flows(flow_length, d, mean.detach(), generator)
    q = FlowPosterior(DiagonalGaussian(mean, logvar, validate_args=False), flows)
    params = [mean, logvar, *(p for flow in flows for p in flow.parameters())]
    history = _adam_on_elbo(log_joint, x_all, q, params, steps, lr, num_samples, generator,
                            like=mean.detach(), anneal_steps=int(anneal * steps))
    # Choose each point's best restart, then estimate its ELBO on fresh samples.
    chunk = max(1, 2**16 // batch)
    log_w = _eval_log_weights(log_joint, x_all, q, eval_samples, chunk, generator, mean.detach())
    restart_elbos = log_w.mean(dim=0).reshape(restarts, n)  # (R, N)
    best = restart_elbos.argmax(dim=0) * n + torch.arange(n)  # (N,) rows of the winners
    q_best = _select(q, best)
    log_w = _eval_log_weights(log_joint, x, q_best, eval_samples, max(1, 2**16 // n), generator,
                              q_best.base.mean)  # (K, N)
    log_marginal = model.log_marginal(x) if hasattr(model, "log_marginal") else None
    return PosteriorFit(
        q=q_best, elbo=log_w.mean(dim=0), elbo_se=log_w.std(dim=0) / math.sqrt(eval_samples),
        log_marginal=None if log_marginal is None else log_marginal.detach().double(),
        history=history.reshape(steps, restarts, n)[:, best // n, torch.arange(n)].double(),
        restart_elbos=restart_elbos)


def _select(q: FlowPosterior, rows: torch.Tensor) -> FlowPosterior:
    """A new FlowPosterior over ``(len(rows), d)``: the given rows of q's base and of each map."""
    base = q.base
    mean, logvar = base.mean.detach()[rows].clone(), base.logvar.detach()[rows].clone()
    flows = []
    for flow in q.flows:
        new = PlanarFlow(mean.shape[-1], batch_shape=(len(rows),)).to(dtype=mean.dtype,
                                                                     device=mean.device)
        with torch.no_grad():
            for name in ("u", "w", "b"):
                getattr(new, name).copy_(getattr(flow, name)[rows])
        flows.append(new)
    return FlowPosterior(DiagonalGaussian(mean, logvar), flows)


# ---------------------------------------------------------------------------------------------
# 2. The approximation and amortization gaps of a trained VAE.
# ---------------------------------------------------------------------------------------------


def optimize_local_posterior(model, x: torch.Tensor, *, steps: int = 300, lr: float = 0.01,
                             num_samples: int = 16, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """The best q of the encoder's family for each x alone, ``q⋆_x`` (Cremer et al., 2018).

    Starts from the encoder's outputs ``model.encode(x)`` -- ``(μ, logvar)`` for a Gaussian VAE,
    ``(μ, logvar, context)`` for a flow VAE -- and optimizes these numbers, a separate set for
    every data point (all N at once), by Adam on the Monte Carlo ELBO of
    ``q = model.posterior_from(*params)`` (see :func:`_adam_on_elbo`). The model's weights,
    including a flow VAE's coupling maps, are frozen: they get no gradient and are not changed.

    Args:
        model: a :class:`vaelib.vae.VAE` (Gaussian or flow posterior).
        x: ``(N, D)`` data as the model sees it (binarized for a Bernoulli likelihood, e.g. by
            :func:`vaelib.data.fixed_binarization`).
        steps, lr, num_samples: Adam's steps, initial learning rate (decayed to 0 along a half
            cosine), and samples per step.
        seed: seeds the generator of the samples.

    Returns:
        The optimized local parameters, detached, in ``encode``'s order and shapes (``(N, d)``
        each, the context ``(N, c)``): ``model.posterior_from(*params)`` is ``q⋆_x``.
    """
    steps, lr, num_samples = _check_fit_arguments(steps, lr, num_samples)
    x = model.check_data(x)
    if len(x) == 0:
        raise ValueError("x is empty: pass at least one data point, shape (N, D) with N >= 1.")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        params = [p.detach().clone().requires_grad_(True) for p in model.encode(x)]
    q = model.posterior_from(*params, validate_args=False)  # reads the leaves Adam updates
    _adam_on_elbo(_joint(model), x, q, params, steps, lr, num_samples, generator,
                  like=params[0].detach())
    return tuple(p.detach() for p in params)


@dataclass
class InferenceGaps:
    """Per-data-point estimates from :func:`inference_gaps`, ``(N,)`` float64 tensors in nats.

    Attributes:
        log_likelihood: log p̂(x), importance sampling with ``q⋆_x`` as the proposal
            (``log (1/K) Σ_k w_k``, the IWAE_K bound: <= log p(x) on average, tight as K grows).
        elbo_encoder: ELBO(q_φ), the encoder's q, from K samples of it.
        elbo_local: ELBO(q⋆_x), the locally optimized q, from the same K samples as
            ``log_likelihood`` (``(1/K) Σ_k log w_k``).
        elbo_encoder_se, elbo_local_se: their Monte Carlo standard errors per point,
            ``std(log w) / √K`` (the noise of one point's estimate, not the spread over points).
        ess: the effective sample size of ``q⋆_x``'s K weights (near K: a good proposal; a few:
            log p̂(x) is not to be trusted for that point).
        num_samples: K.
        local_params: the optimized local parameters (:func:`optimize_local_posterior`).
    """

    log_likelihood: torch.Tensor
    elbo_encoder: torch.Tensor
    elbo_local: torch.Tensor
    elbo_encoder_se: torch.Tensor
    elbo_local_se: torch.Tensor
    ess: torch.Tensor
    num_samples: int
    local_params: tuple[torch.Tensor, ...]

    @property
    def approximation_gap(self) -> torch.Tensor:
        """``Δ_approx = log p̂(x) - ELBO(q⋆_x)``: ``>= 0`` for every x, since both come from the
        same samples and ``log mean w >= mean log w`` (Jensen)."""
        return self.log_likelihood - self.elbo_local

    @property
    def amortization_gap(self) -> torch.Tensor:
        """``Δ_amort = ELBO(q⋆_x) - ELBO(q_φ)``: what the shared encoder costs."""
        return self.elbo_local - self.elbo_encoder

    @property
    def total_gap(self) -> torch.Tensor:
        """``log p̂(x) - ELBO(q_φ) = Δ_approx + Δ_amort`` (exactly, by construction)."""
        return self.log_likelihood - self.elbo_encoder

    def summary(self) -> dict[str, float]:
        """Means over the N points and their standard errors ``std / √N`` (``<name>_se``): the
        gaps' standard errors are those of the per-point differences (paired)."""
        out = {"num_points": len(self.log_likelihood), "num_samples": self.num_samples}
        for name in ("log_likelihood", "elbo_encoder", "elbo_local", "approximation_gap",
                     "amortization_gap", "total_gap"):
            values = getattr(self, name)
            out[name] = values.mean().item()
            out[f"{name}_se"] = (values.std().item() / math.sqrt(len(values))
                                 if len(values) > 1 else math.nan)
        return out


def inference_gaps(model, x: torch.Tensor, *, steps: int = 300, lr: float = 0.01,
                   num_samples: int = 16, eval_samples: int = 1000, chunk_size: int = 100,
                   seed: int = 0) -> InferenceGaps:
    """The approximation and amortization gaps of a VAE on each data point (Cremer et al., 2018).

    1. ``q⋆_x`` by :func:`optimize_local_posterior` (``steps``, ``lr``, ``num_samples``).
    2. K = ``eval_samples`` samples from q_φ give ELBO(q_φ) = (1/K) Σ_k log w_k.
    3. K samples from ``q⋆_x`` give both ELBO(q⋆_x) = (1/K) Σ_k log w_k and
       log p̂(x) = log (1/K) Σ_k w_k.

    Why ``q⋆_x`` as the importance-sampling proposal (:func:`vaelib.evaluate.evaluate` uses
    q_φ): it has the larger ELBO, i.e. the smaller KL(q ‖ p(z|x)), so its weights usually vary
    less and log p̂(x) is tighter for the same K (both are lower bounds on average). log p̂(x)
    is still a lower bound, so Δ_approx is, if anything, underestimated, by
    ``log p(x) - IWAE_K(q⋆_x)``; and because it comes from the same samples as ELBO(q⋆_x),
    Δ_approx >= 0 holds for every x. Δ_amort can come out slightly negative for a point where
    the encoder is already (nearly) optimal: Monte Carlo noise.

    Pitfall: the ELBO's optimum is mode-seeking, so ``q⋆_x`` tends to be narrower than p(z|x),
    and the weights ``p(z|x)/q(z)`` then have heavy tails. For a Gaussian posterior whose
    precision matrix has correlation r, the best diagonal q gives weights of infinite variance
    once |r| >= ½ (``2Λ - diag Λ`` must be positive definite): log p̂(x) then converges slowly
    and erratically in K. :attr:`InferenceGaps.ess` shows it: an ESS of a few out of K means
    log p̂ (and so Δ_approx) of that point is unreliable.

    Args:
        model: a :class:`vaelib.vae.VAE` (Gaussian or flow posterior).
        x: ``(N, D)`` data as the model sees it (binarize it first for a Bernoulli likelihood,
            e.g. :func:`vaelib.data.fixed_binarization`, as :func:`vaelib.evaluate.evaluate` does).
        steps, lr, num_samples: as in :func:`optimize_local_posterior`.
        eval_samples: K, samples per data point for each estimate.
        chunk_size: samples per decoder call in the estimates (bounds the memory:
            ``chunk_size × N × D`` outputs at a time).
        seed: seeds the optimization's and the estimates' generators.

    Returns:
        An :class:`InferenceGaps`; ``.summary()`` gives the means and standard errors.
    """
    eval_samples = check_num_samples(eval_samples, "eval_samples")
    chunk_size = check_positive_int("chunk_size", chunk_size)
    x = model.check_data(x)
    params = optimize_local_posterior(model, x, steps=steps, lr=lr, num_samples=num_samples,
                                      seed=seed)
    log_joint = _joint(model)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        encoder_q = model.posterior(x)
        local_q = model.posterior_from(*params)
    log_w_encoder = _eval_log_weights(log_joint, x, encoder_q, eval_samples, chunk_size,
                                      generator, params[0])
    log_w_local = _eval_log_weights(log_joint, x, local_q, eval_samples, chunk_size, generator,
                                    params[0])
    return InferenceGaps(
        log_likelihood=(torch.logsumexp(log_w_local, dim=0) - math.log(eval_samples)).cpu(),
        elbo_encoder=log_w_encoder.mean(dim=0).cpu(), elbo_local=log_w_local.mean(dim=0).cpu(),
        elbo_encoder_se=(log_w_encoder.std(dim=0) / math.sqrt(eval_samples)).cpu(),
        elbo_local_se=(log_w_local.std(dim=0) / math.sqrt(eval_samples)).cpu(),
        ess=effective_sample_size(log_w_local, dim=0).cpu(),
        num_samples=eval_samples, local_params=params)
