"""Self-checks for chapter 01 (the marginal likelihood). See :mod:`vaelib.exercises._core`.

- :func:`check_linear_log_marginal`: ``log N(x; b, W Wᵀ + s² I)`` written from the formula;
- :func:`check_toy_log_marginal`: the nonlinear toy's ``log ∫ p(z) p(x|z) dz`` by quadrature;
- :func:`check_ml_noise_std`: the maximum-likelihood noise of probabilistic PCA (D = 2, d = 1).

The reference values come from independent code (``torch.distributions.MultivariateNormal``, the
library's quadrature, an eigendecomposition), on several random cases with fixed seeds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..toy import LinearGaussian, NonlinearToy
from ._core import ExerciseFailed, as_float64, close, diagnose, forbidden_calls, run_check

__all__ = ["check_linear_log_marginal", "check_toy_log_marginal", "check_ml_noise_std"]

F64 = torch.float64
LOG_2PI = math.log(2 * math.pi)


def _call(fn: Callable[..., Any], *args: Any, shape_hint: str = "") -> torch.Tensor:
    """Call the student's function; turn a crash into a hint (NotImplementedError passes through).
    """
    try:
        return as_float64(fn(*args))
    except NotImplementedError:
        raise
    except ExerciseFailed:
        raise
    except Exception as err:  # noqa: BLE001 - any crash of the student's code becomes a hint
        raise ExerciseFailed(
            f"your function raised {type(err).__name__}: {err}. {shape_hint}".strip()
        ) from err


def _gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    return torch.distributions.MultivariateNormal(mean, covariance_matrix=cov).log_prob(x)


def _linear_cases() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]]:
    """(x, W, b, s): a square W first (so that Wᵀ W runs and can be recognised), then tall ones."""
    generator = torch.Generator().manual_seed(101)
    cases = []
    for D, d, s, N in [(3, 3, 0.7, 6), (5, 2, 0.5, 8), (4, 1, 1.3, 5), (2, 1, 0.3, 7)]:
        W = torch.randn(D, d, generator=generator, dtype=F64)
        b = torch.randn(D, generator=generator, dtype=F64)
        x = b + 1.5 * torch.randn(N, D, generator=generator, dtype=F64)
        cases.append((x, W, b, s))
    return cases


def _LIBRARY_MARGINALS() -> list[tuple[Any, str]]:
    """The library functions that compute the linear-Gaussian log p(x), which exercise 1 forbids."""
    from scipy.stats import _multivariate

    return [(LinearGaussian, "log_marginal"), (_multivariate.multivariate_normal_gen, "logpdf"),
            (_multivariate.multivariate_normal_frozen, "logpdf")]


class _WithoutLogMarginal:
    """The toy model with its own ``log_marginal`` (the exercise's answer) out of reach."""

    def __init__(self, model: NonlinearToy) -> None:
        object.__setattr__(self, "_model", model)

    def __getattr__(self, name: str) -> Any:
        if name == "log_marginal":
            raise ExerciseFailed(
                "your code calls model.log_marginal, which is the answer: compute "
                "log ∫ p(z) p(x|z) dz yourself from model.log_joint on a grid of "
                "z."
            )
        return getattr(self._model, name)

    def __repr__(self) -> str:
        return repr(self._model)


def check_linear_log_marginal(fn: Callable[..., Any]) -> bool:
    """Check ``fn(x, W, b, noise_std) -> (N,)`` = ``log N(x; b, W Wᵀ + s² I)`` on random models."""

    def body(fn: Callable[..., Any]) -> str:
        for x, W, b, s in _linear_cases():
            D, d = W.shape
            eye = torch.eye(D, dtype=F64)
            C = W @ W.T + s**2 * eye
            want = _gaussian_log_prob(x, b, C)
            with forbidden_calls(others=_LIBRARY_MARGINALS()) as used:
                got = _call(
                    fn,
                    x.clone(),
                    W.clone(),
                    b.clone(),
                    s,
                    shape_hint=f"(x is (N, D) = {tuple(x.shape)}, W is (D, d) = "
                    f"{tuple(W.shape)}: the covariance W Wᵀ + s² I is D × D.)",
                )
            if used:
                raise ExerciseFailed(f"your function calls {used[0]}: the exercise asks for the "
                                     "formula written out, without vaelib or SciPy (log det and a "
                                     "solve with C = W Wᵀ + s² I).")
            if got.shape != want.shape:
                raise ExerciseFailed(f"expected shape (N,) = {tuple(want.shape)} (one log p(x) per "
                                     f"row of x), got {tuple(got.shape)}.")
            if close(got, want, rtol=1e-8, atol=1e-8):
                continue
            u = x - b
            maha = (u * torch.linalg.solve(C, u.T).T).sum(-1)
            extra = [
                (
                    _gaussian_log_prob(x, b, W @ W.T + s * eye),
                    "you used s where the covariance needs s² (C = W Wᵀ + s² I, s is the standard "
                    "deviation).",
                ),
                (
                    _gaussian_log_prob(x, b, W @ W.T + s**4 * eye),
                    "your noise variance is s⁴: is noise_std squared twice?",
                ),
                (want + 0.5 * D * LOG_2PI, "the constant -D/2 · log 2π is missing."),
                (want + 0.5 * torch.logdet(C), "the term -½ log det C is missing."),
                (
                    want - 0.5 * torch.logdet(C),
                    "log det C needs the factor ½ (it is -½ log det C).",
                ),
                (
                    want + torch.logdet(C),
                    "the log-determinant term has the wrong sign: a wider "
                    "Gaussian (larger det C) has a lower density.",
                ),
                (want - 0.5 * maha, "the quadratic term needs the factor ½: -½ (x-b)ᵀ C⁻¹ (x-b)."),
                (want + maha, "the quadratic term has the wrong sign: it is -½ (x-b)ᵀ C⁻¹ (x-b)."),
                (want.exp(), "you returned p(x); the function should return log p(x)."),
                (_gaussian_log_prob(x, torch.zeros_like(b), C), "subtract the mean b: use x - b."),
            ]
            if D == d:  # a square W: Wᵀ W runs, and W Wᵀ alone is invertible
                extra += [(_gaussian_log_prob(x, b, W.T @ W + s**2 * eye),
                           "you used Wᵀ W (d × d); the covariance of x is W Wᵀ (D × D)."),
                          (_gaussian_log_prob(x, b, W @ W.T),
                           "the noise is missing: the covariance is W Wᵀ + s² I.")]
            raise ExerciseFailed(f"(D = {D}, d = {d}, s = {s}) " + diagnose(got, want, extra))
        return "It matches torch.distributions.MultivariateNormal on 4 random models."

    return run_check("linear-Gaussian log p(x)", fn, body)


def _toy_cases() -> list[tuple[NonlinearToy, torch.Tensor]]:
    generator = torch.Generator().manual_seed(102)
    models = [NonlinearToy(noise_std=0.3, curve="parabola", a=1.0),
              NonlinearToy(noise_std=0.5, curve="parabola", a=0.5),
              NonlinearToy(noise_std=0.25, curve="circle", a=2.0)]
    return [(model, model.sample(5, generator=generator)[0]) for model in models]


def check_toy_log_marginal(fn: Callable[..., Any]) -> bool:
    """Check ``fn(model, x) -> (N,)`` = ``log ∫ p(z) p(x|z) dz`` for three NonlinearToy models."""

    def body(fn: Callable[..., Any]) -> str:
        for model, x in _toy_cases():
            want = model.log_marginal(x)
            got = _call(fn, _WithoutLogMarginal(model), x.clone())
            if got.shape != want.shape:
                raise ExerciseFailed(f"expected shape (N,) = {tuple(want.shape)} (one log p(x) per "
                                     f"row of x), got {tuple(got.shape)}.")
            if close(got, want, rtol=0, atol=1e-6):
                continue
            where = f"(on {model!r}) "
            # p(x|z) integrated without the prior, on the library's own grid.
            no_prior = (torch.logsumexp(model.log_likelihood(x, model.z_grid[:, None, None]), dim=0)
                        + math.log(model.grid_step))
            extra = [(no_prior, "the prior is missing: integrate p(z) p(x|z) (model.log_joint), "
                                "not p(x|z) alone."),
                     (want.exp(), "you returned p(x); the function should return log p(x).")]
            hint = diagnose(got, want, extra)
            offset = got - want
            if hint.startswith("the largest difference") and offset.std() < 1e-6 * (
                1 + offset.abs().max()
            ):
                c = offset.mean().item()
                hint = (
                    f"your log p(x) is off by the same constant {c:+.4f} for every x, a factor "
                    f"{math.exp(c):.4g} in p(x): is the grid step Δz missing (a sum needs Σ_g "
                    "Δz · ...), or did you average over the grid instead of multiplying by Δz?"
                )
            elif hint.startswith("the largest difference"):
                hint += (" Is your grid wide enough (|z| up to about 6) and fine enough (steps "
                         "well below the noise s)? Work in log space with torch.logsumexp.")
            raise ExerciseFailed(where + hint)
        return "It matches the library's quadrature on three toys (parabolas and a circle)."

    return run_check("toy log p(x) by quadrature", fn, body)


def _ml_cases() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(103)
    cases = []
    for W, b, s, N in [
        ([[1.5], [0.8]], [0.5, -0.3], 0.4, 50),
        ([[0.3], [-2.0]], [1.0, 2.0], 0.7, 120),
        ([[1.0], [1.0]], [0.0, 0.0], 0.2, 30),
    ]:
        model = LinearGaussian(torch.tensor(W, dtype=F64), torch.tensor(b, dtype=F64), s)
        cases.append(model.sample(N, generator=generator)[0])
    return cases


def check_ml_noise_std(fn: Callable[..., Any]) -> bool:
    """Check ``fn(x) -> s_ML`` for probabilistic PCA with D = 2, d = 1 on three data sets."""

    def body(fn: Callable[..., Any]) -> str:
        for x in _ml_cases():
            N = x.shape[0]
            S = torch.cov(x.T, correction=0)
            eigenvalues = torch.linalg.eigvalsh(S)  # ascending
            want = eigenvalues[0].sqrt()
            got = _call(fn, x.clone()).reshape(-1)
            if got.numel() != 1:
                raise ExerciseFailed(f"return one number s_ML, got {got.numel()} numbers.")
            got = got[0]
            if close(got, want, rtol=1e-6, atol=1e-10):
                continue
            unbiased = torch.linalg.eigvalsh(torch.cov(x.T, correction=1))
            extra = [
                (eigenvalues[0], "you returned s², the variance; s_ML is its square root."),
                (
                    unbiased[0].sqrt(),
                    "the maximum-likelihood covariance divides by N, not N - 1 "
                    "(torch.cov(x.T, correction=0)).",
                ),
                (
                    eigenvalues[1].sqrt(),
                    "that is the largest eigenvalue's root; the noise explains "
                    "the direction the latent cannot, the smallest eigenvalue.",
                ),
                (
                    (eigenvalues[1] - eigenvalues[0]).sqrt(),
                    "that is ‖w_ML‖ = √(λ₁ - s²), the length of W; the noise is √λ₂.",
                ),
            ]
            raise ExerciseFailed(f"(N = {N}) " + diagnose(got, want, extra))
        return "s_ML = √(smallest eigenvalue of the 1/N sample covariance), on three data sets."

    return run_check("maximum-likelihood noise s_ML", fn, body)
