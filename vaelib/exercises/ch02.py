"""Self-checks for chapter 02 (naive Monte Carlo). See :mod:`vaelib.exercises._core`.

- :func:`check_log_mean_exp`: ``log (1/K) Σ exp(a_k)`` without overflow or underflow;
- :func:`check_naive_log_marginal`: ``log (1/K) Σ p(x|z_k)``, ``z_k ~ p(z)``, in log space;
- :func:`check_samples_needed`: ``K = ρ(x) / ε²`` for a relative error ε.

The last two exercises ask for Monte Carlo estimates, so their checks hand the student's function
the model through a view that offers only ``sample_prior``, ``log_likelihood`` and ``log_joint``
(and the sizes): the closed forms (``model.log_marginal``, ``model.W``, ``model.b``) are out of
reach, and the naive estimate must change when the random draws do.

References: ``torch.logsumexp`` and the linear-Gaussian closed forms (exact ``log p(x)``, and
``E_p(z)[p(x|z)²] = (4πs²)^{-D/2} N(x; b, W Wᵀ + s²/2 I)`` for the relative variance ρ(x)).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .. import estimators
from ..toy import LinearGaussian, _GaussianDecoderModel
from ._core import ExerciseFailed, as_float64, close, diagnose, forbidden_calls, run_check

__all__ = ["check_log_mean_exp", "check_naive_log_marginal", "check_samples_needed"]

F64 = torch.float64
LOG_2PI = math.log(2 * math.pi)


def _call(fn: Callable[..., Any], *args: Any) -> torch.Tensor:
    """Call the student's function; turn a crash into a hint (NotImplementedError passes through).
    """
    try:
        return as_float64(fn(*args))
    except (NotImplementedError, ExerciseFailed):
        raise
    except Exception as err:  # noqa: BLE001 - any crash of the student's code becomes a hint
        raise ExerciseFailed(f"your function raised {type(err).__name__}: {err}") from err


class _DecoderOnly(_GaussianDecoderModel):
    """The linear-Gaussian model as a sampler: ``z ~ N(0, I)``, ``x | z ~ N(W z + b, s² I)``, and
    nothing else. It has no ``log_marginal`` (nor ``posterior``), so the exact answer cannot be
    reached through it; prior draws without a generator come from its own seeded generator, so
    an answer gives the same result each time it is checked."""

    def __init__(self, model: LinearGaussian, seed: int) -> None:
        self.W, self.b = model.W.clone(), model.b.clone()
        self.latent_dim, self.data_dim = model.latent_dim, model.data_dim
        self.noise_std, self.dtype, self.device = model.noise_std, model.dtype, model.device
        self.default_generator = torch.Generator().manual_seed(seed)
        self.draws = 0  # prior draws per data point, over all calls

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.W.T + self.b

    def sample_prior(self, num_samples: int, num_points: int | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        z = super().sample_prior(num_samples, num_points,
                                 generator if generator is not None else self.default_generator)
        self.draws += int(num_samples)
        return z


class _SamplingOnly:
    """The model as a Monte Carlo exercise may use it: prior samples and log-likelihoods only."""

    _ALLOWED = (
        "sample_prior",
        "log_likelihood",
        "log_joint",
        "data_dim",
        "latent_dim",
        "noise_std",
        "dtype",
        "device",
    )

    def __init__(self, model: LinearGaussian, seed: int = 0) -> None:
        object.__setattr__(self, "_model", _DecoderOnly(model, seed))

    def __getattr__(self, name: str) -> Any:
        if name in self._ALLOWED:
            return getattr(self._model, name)
        if name == "log_marginal":
            raise ExerciseFailed("your code calls model.log_marginal, the exact answer: the "
                                 "exercise asks for a Monte Carlo estimate from prior samples "
                                 "(model.sample_prior and model.log_likelihood only).")
        raise ExerciseFailed(f"your code reads model.{name}: the exercise asks for a Monte Carlo "
                             "estimate, not the closed form, so use only model.sample_prior and "
                             "model.log_likelihood (the check's model offers nothing else).")


def _reference_log_mean_exp(a: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.logsumexp(a, dim=dim) - math.log(a.shape[dim])


def _lme_cases() -> list[tuple[str, torch.Tensor, int]]:
    generator = torch.Generator().manual_seed(201)
    inf = math.inf
    return [
        ("moderate values", 3 * torch.randn(7, 4, generator=generator, dtype=F64), 0),
        ("values near +1e4, dim=1", 1e4 + torch.randn(3, 5, generator=generator, dtype=F64), 1),
        ("values near -1e4", -1e4 + 5 * torch.randn(6, 2, generator=generator, dtype=F64), 0),
        ("-inf entries", torch.tensor([[0.0, -inf], [1.0, 2.0], [-inf, 3.0]], dtype=F64), 0),
        ("a 1-D tensor", torch.tensor([-800.0, -801.0, -802.5, -799.0], dtype=F64), 0),
        (_ROWS_APART, torch.tensor([[-3000.0, -3001.0, -2999.5], [2.0, 0.5, 1.0],
                                    [-1500.0, -1502.0, -1499.0]], dtype=F64), 1),
    ]


_ROWS_APART = "rows thousands apart, dim=1"


def _LIBRARY_LOGSUMEXP() -> list[tuple[Any, str]]:
    """Library log-sum-exps outside torch (torch's own are caught at the operator level)."""
    import scipy.special

    return [
        (scipy.special, "logsumexp"),
        (scipy.special, "log_softmax"),
        (scipy.special, "softmax"),
    ]


def _library_name(used: str) -> str:
    return {"logsumexp": "torch.logsumexp", "log_softmax": "a log_softmax",
            "softmax": "a softmax"}.get(used, used)


def check_log_mean_exp(fn: Callable[..., Any]) -> bool:
    """Check ``fn(a, dim) = log (1/K) Σ_k exp(a_k)`` along ``dim``, on finite, huge and -inf
    entries.
    """

    def body(fn: Callable[..., Any]) -> str:
        for name, a, dim in _lme_cases():
            want = _reference_log_mean_exp(a, dim)
            with forbidden_calls("logsumexp", "log_softmax", "softmax",
                                 others=_LIBRARY_LOGSUMEXP()) as used:
                got = _call(fn, a.clone(), dim)
            if used:
                raise ExerciseFailed(f"your function calls {_library_name(used[0])}, which "
                                     "computes the log-sum-exp for you: this exercise asks you to "
                                     "write it yourself (take out a maximum, then exp, sum and "
                                     "log).")
            if got.shape != want.shape:
                raise ExerciseFailed(
                    f"({name}) for a of shape {tuple(a.shape)} and dim={dim} the result should "
                    f"have shape {tuple(want.shape)} (dim removed), got {tuple(got.shape)}.")
            if not torch.isfinite(got).all():
                if name == _ROWS_APART:
                    raise ExerciseFailed(
                        f"({name}) your answer contains -inf: one maximum over the whole tensor is "
                        "thousands above the other rows, whose exp(a - m) then underflows to 0. "
                        "Take the maximum along dim (one per row here), keeping that dimension.")
                raise ExerciseFailed(
                    f"({name}) your answer contains inf or NaN: exp overflows above ~709 and "
                    "underflows below ~-745 in float64. Take out the maximum m first.",
                    formula="m + log Σ_k exp(a_k - m) - log K, with m the maximum along dim.")
            if close(got, want, rtol=1e-10, atol=1e-10):
                continue
            K = a.shape[dim]
            extra = [
                (want + math.log(K), "that is log-SUM-exp: subtract log K to get the mean."),
                (a.mean(dim=dim), "you averaged the logs; the log goes outside the average."),
                (a.max(dim=dim).values, "that is only the largest term m: the other terms count "
                                        "too "
                 "(add the log of the mean of exp(a - m))."),
                (want - a.max(dim=dim).values, "add the maximum m back after taking it out."),
            ]
            raise ExerciseFailed(f"({name}) " + diagnose(got, want, extra))
        return "Stable for entries like ±1e4 and -inf, along either dimension."

    return run_check("stable log-mean-exp", fn, body)


# --- the naive estimator ---------------------------------------------------------------------


def _gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    return torch.distributions.MultivariateNormal(mean, covariance_matrix=cov).log_prob(x)


def _relative_variance(model: LinearGaussian, x: torch.Tensor) -> torch.Tensor:
    """ρ(x) = E_p(z)[p(x|z)²] / p(x)² - 1, exactly, for a LinearGaussian: (N, D) -> (N,)."""
    s2, D = model.noise_std**2, model.data_dim
    cov_half = model.W @ model.W.T + 0.5 * s2 * torch.eye(D, dtype=F64)
    log_second_moment = -0.5 * D * math.log(4 * math.pi * s2) + _gaussian_log_prob(
        x, model.b, cov_half
    )
    return (log_second_moment - 2 * model.log_marginal(x)).exp() - 1


def check_naive_log_marginal(fn: Callable[..., Any]) -> bool:
    """Check ``fn(model, x, num_samples, generator) -> (N,)`` against the exact log p(x), K = 20
    000.
    """

    def body(fn: Callable[..., Any]) -> str:
        model = LinearGaussian(
            torch.tensor([[1.0], [0.5]], dtype=F64),
            torch.tensor([0.2, -0.1], dtype=F64),
            noise_std=0.8,
        )
        x, _ = model.sample(4, generator=torch.Generator().manual_seed(202))
        K = 20_000
        view = _SamplingOnly(model, seed=204)  # one view: its own generator moves on between calls
        with forbidden_calls(others=[(estimators, "naive_mc_log_marginal"),
                                     (estimators, "importance_log_marginal")]) as used:
            got = _call(fn, view, x.clone(), K, torch.Generator().manual_seed(203))
        if used:
            raise ExerciseFailed(f"your function calls vaelib's {used[0].split('.')[-1]}, the "
                                 "library's estimator: the exercise asks you to write it (prior "
                                 "samples, log-likelihoods, a log-mean-exp).")
        want = model.log_marginal(x)
        if got.shape != want.shape:
            raise ExerciseFailed(f"expected shape (N,) = {tuple(want.shape)}, one log p̂(x) per "
                                 f"row of x, got {tuple(got.shape)}.")
        if not torch.isfinite(got).all():
            raise ExerciseFailed("your answer contains inf or NaN: work in log space, with "
                                 "log_mean_exp over the K log-likelihoods.")
        # 6 standard errors (in log p)
        tolerance = 6 * (_relative_variance(model, x) / K).sqrt() + 1e-3
        if ((got - want).abs() <= tolerance).all():
            # An estimate changes with the draws: two generators, K = 10, must give two answers.
            one = _call(fn, view, x.clone(), 10, torch.Generator().manual_seed(1))
            two = _call(fn, view, x.clone(), 10, torch.Generator().manual_seed(2))
            if one.shape == two.shape and torch.equal(one, two):
                raise ExerciseFailed("your answer is the same for two different generators (K = "
                                     "10): draw the z_k with model.sample_prior(K, num_points=N, "
                                     "generator=generator), so the estimate follows the random "
                                     "draws.")
            return (f"Within 6 standard errors of the exact log p(x) (largest error "
                    f"{(got - want).abs().max():.4f}).")
        s2, D = model.noise_std**2, model.data_dim
        u = x - model.b
        average_log_lik = (-0.5 * D * math.log(2 * math.pi * s2)
                           # E_p(z)[log p(x|z)]
                           - (u.square().sum(-1) + model.W.square().sum()) / (2 * s2))
        # E_p(z)[p(x, z)] = (4π)^{-d/2} N(x; b, ½ W Wᵀ + s² I): the prior was multiplied in again.
        joint = -0.5 * model.latent_dim * math.log(4 * math.pi) + _gaussian_log_prob(
            x, model.b, 0.5 * model.W @ model.W.T + s2 * torch.eye(D, dtype=F64)
        )
        wrong = [
            (average_log_lik, 0.1, "you averaged log p(x|z_k); that estimates E[log p(x|z)], which "
                                   "is below log p(x) (Jensen). Average p(x|z_k) in log space: "
                                   "log-mean-exp."),
            (want + math.log(K), 0.1, "your estimate is log K too high: log-sum-exp needs - log K "
                                      "for a mean."),
            (joint, 0.1, "you averaged p(x, z_k) = p(z_k) p(x|z_k); the prior is already in the "
                         "sampling (z_k ~ p(z)): average p(x|z_k) only."),
            (want.exp(), 0.1, "you returned p̂(x); the function should return log p̂(x)."),
            (-want, 0.1, "your answer has the wrong sign."),
        ]
        for value, tol, hint in wrong:
            if ((got - value).abs() <= tol * (1 + value.abs())).all():
                raise ExerciseFailed(hint)
        worst = ((got - want).abs() / tolerance).max().item()
        raise ExerciseFailed(f"your estimates are {worst * 6:.1f} standard errors from the exact "
                             f"log p(x) (largest difference {(got - want).abs().max():.4f}). Are "
                             "the z_k drawn from the prior (model.sample_prior(K, num_points=N)), "
                             "one set per data point?")

    return run_check("naive Monte Carlo log p(x)", fn, body)


# --- samples needed ----------------------------------------------------------------------------


def _samples_cases() -> list[tuple[LinearGaussian, torch.Tensor, float]]:
    cases = []
    for d, eps in [(1, 0.1), (2, 0.05)]:
        model = LinearGaussian(torch.eye(d, dtype=F64), None, 0.5)
        cases.append((model, torch.full((1, d), math.sqrt(1.25), dtype=F64), eps))
    model = LinearGaussian(torch.tensor([[1.0], [0.5], [-0.3]], dtype=F64),
                           torch.tensor([0.0, 0.5, 0.0], dtype=F64), noise_std=0.6)
    cases.append((model, torch.tensor([[0.8, 0.9, -0.2]], dtype=F64), 0.2))
    return cases


#: The fewest prior draws an answer to check_samples_needed may use. With 10⁴ draws the estimate of
#: ρ on these cases has a relative standard deviation of at most about 2 % (measured: 0.65 % at 10⁵,
#: over 100 repetitions), so the 15 % acceptance band is over 7 standard deviations wide: a right
#: formula passes, and a wrong one that happens to land in the band by luck (too few draws) is
#: refused by the count, not by chance.
MIN_DRAWS = 10_000


def check_samples_needed(fn: Callable[..., Any]) -> bool:
    """Check ``fn(model, x, rel_error) ≈ ρ(x) / ε²`` (within 15 %) on three linear-Gaussian cases,
    estimated from at least :data:`MIN_DRAWS` prior draws."""

    def body(fn: Callable[..., Any]) -> str:
        ratios = []
        for model, x, eps in _samples_cases():
            rho = _relative_variance(model, x).item()
            want = rho / eps**2
            view = _SamplingOnly(model, seed=211)
            got = _call(fn, view, x.clone(), eps).reshape(-1)
            if got.numel() != 1:
                raise ExerciseFailed(f"return one number K, got {got.numel()} numbers.")
            got = got.item()
            if not math.isfinite(got) or got <= 0:
                raise ExerciseFailed(f"K must be a positive number, got {got}.")
            draws = view._model.draws
            if draws < MIN_DRAWS:
                raise ExerciseFailed(
                    f"your function drew {draws} prior samples: ρ estimated from so few is too "
                    "noisy to tell a right formula from a wrong one (its relative error is about "
                    f"{math.sqrt(rho / max(draws, 1)):.0%} or worse). Draw at least {MIN_DRAWS:,} "
                    "(10⁵ is quick), in one call of model.sample_prior.")
            ratio = got / want
            if 0.85 <= ratio <= 1.15:
                ratios.append(ratio)
                continue
            where = f"(d = {model.latent_dim}, ε = {eps}, exact ρ = {rho:.3f}, K = {want:.0f}) "
            for value, hint in [
                (
                    (rho + 1) / eps**2,
                    "you used E[w²]; the variance of w is E[w²] - E[w]² = E[w²] - 1.",
                ),
                (rho / eps, "the relative variance of p̂_K is ρ/K = ε², so K = ρ/ε² (ε squared)."),
                (math.sqrt(rho) / eps, "ρ is a variance already: K = ρ/ε², not √ρ/ε."),
                (rho * eps**2, "K = ρ/ε²: divide by ε², don't multiply."),
            ]:
                if 0.85 <= got / value <= 1.15:
                    raise ExerciseFailed(where + hint)
            raise ExerciseFailed(
                where + f"your K = {got:.4g} is {ratio:.3g} times the exact "
                "value. "
                "Estimate ρ, the relative variance of w = p(x|z_k), from many "
                "prior samples (≥ 10⁵, in log space), then solve ρ/K = ε² for K.",
                formula="K = ρ/ε² with ρ = mean(w²)/mean(w)² - 1.",
            )
        worst = 100 * max(abs(r - 1) for r in ratios)
        return f"Within {worst:.1f} % of the exact ρ/ε² on three cases."

    return run_check("samples needed for a relative error", fn, body)
