"""Self-checks for chapter 06 (the Gaussian KL). See :mod:`vaelib.exercises._core` for the verdicts.

Each check calls the student's function on fixed random float64 inputs, compares with the closed
forms (those of :mod:`vaelib.kl` where they exist), and names the usual slip when the answer is
wrong: σ for σ², log σ for log σ², a missing ½ or sum, the sign, the direction of the KL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from .. import kl as library_kl
from ..kl import gaussian_kl, gaussian_kl_between
from ._core import ExerciseFailed, as_float64, close, diagnose, forbidden_calls, run_check

__all__ = ["check_gaussian_kl", "check_kl_full_covariance", "check_kl_mean_only",
           "check_kl_from_std"]

_F64 = torch.float64
_SUM_HINT = ("you returned one value per latent dimension, shape (N, d): the KL of independent "
             "coordinates is their sum, so sum over the last dim (.sum(dim=-1)) to get shape (N,).")
_SCALAR_HINT = ("you returned a single number: sum over the latent dimension only (.sum(dim=-1)), "
                "one KL per data point, shape (N,).")
_NAN_HINT = ("your answer contains NaN or infinity: `logvar` is already log σ², so "
             "σ² = exp(logvar); never take the log of logvar (it can be negative).")
_MEAN_HINT = ("you averaged over the latent dimensions (.mean): the KL sums them (.sum(dim=-1)); a "
              "mean divides it by d.")


def _inputs(seed: int, *shape: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed random means (N(0, 1.5²)) and log-variances (uniform on [-2.5, 2])."""
    g = torch.Generator().manual_seed(seed)
    mu = 1.5 * torch.randn(*shape, generator=g, dtype=_F64)
    logvar = 4.5 * torch.rand(*shape, generator=g, dtype=_F64) - 2.5
    return mu, logvar


#: The library KLs these exercises ask the student to write instead of calling.
_LIBRARY_KLS = [(library_kl, "gaussian_kl"), (library_kl, "gaussian_kl_between"),
                (library_kl, "mc_kl"), (torch.distributions, "kl_divergence")]


def _call(fn: Callable[..., Any], *args: torch.Tensor) -> torch.Tensor:
    """Call the student's function on copies of the inputs; its answer as float64. A library KL
    (vaelib's, or torch.distributions') is refused: each exercise asks for the formula."""
    if not callable(fn):
        raise ExerciseFailed(f"pass your function itself (e.g. check(my_function)), not a "
                             f"{type(fn).__name__}.")
    with forbidden_calls(others=_LIBRARY_KLS) as used:
        got = fn(*(a.clone() for a in args))
    if used:
        raise ExerciseFailed(f"your function calls {used[0]}, a library KL: the exercise asks you "
                             "to write the closed form from the formula.")
    if got is None:
        raise ExerciseFailed("your function returned None: did you forget `return`?")
    return as_float64(got)


def _compare(got: torch.Tensor, want: torch.Tensor, extra: Iterable[tuple[Any, str]],
             per_dim_shape: tuple[int, ...] | None = None, nan_hint: str = _NAN_HINT) -> None:
    """Raise ExerciseFailed with the most specific hint unless ``got`` matches ``want``."""
    extra = list(extra)
    if per_dim_shape is not None and tuple(got.shape) == per_dim_shape:
        raise ExerciseFailed(_SUM_HINT)
    if got.dim() == 0 and want.dim() > 0 and want.numel() > 1:
        raise ExerciseFailed(_SCALAR_HINT)
    if got.shape != want.shape:
        raise ExerciseFailed(f"expected shape {tuple(want.shape)} (one KL per entry), got "
                             f"{tuple(got.shape)}.")
    if not torch.isfinite(got).all():
        raise ExerciseFailed(nan_hint)
    if not close(got, want, rtol=1e-6, atol=1e-9):
        raise ExerciseFailed(diagnose(got, want, extra))


def _confident_float32() -> tuple[torch.Tensor, torch.Tensor]:
    """float32 means and log-variances with coordinates at logvar = -120 and -110 (σ ≈ 1e-26)."""
    mu = torch.tensor([[0.5, -1.0, 0.2], [0.0, 0.3, -0.4]], dtype=torch.float32)
    logvar = torch.tensor([[-120.0, 0.5, -1.0], [-2.0, -110.0, 1.0]], dtype=torch.float32)
    return mu, logvar


def check_gaussian_kl(fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> bool:
    """Check ``fn(mu, logvar)`` = KL(N(mu, diag e^logvar) ‖ N(0, I)) summed over the last dim.

    ``mu``, ``logvar``: ``(N, d)``; the answer must have shape ``(N,)``.
    """

    def body(fn):
        for seed, (n, d) in [(0, (5, 3)), (1, (4, 7))]:
            mu, logvar = _inputs(seed, n, d)
            got = _call(fn, mu, logvar)
            var, std = logvar.exp(), (0.5 * logvar).exp()
            want = gaussian_kl(mu, logvar)
            _compare(
                got,
                want,
                per_dim_shape=(n, d),
                extra=[
                    (
                        0.5 * (std + mu**2 - 1 - std.log()).sum(-1),
                        "you used σ where the formula has the variance σ²: σ² = exp(logvar), while "
                        "σ = exp(logvar / 2); and log σ² is logvar itself.",
                    ),
                    (
                        0.5 * (std + mu**2 - 1 - logvar).sum(-1),
                        "the first term is the variance σ² = exp(logvar), not σ = exp(logvar / 2).",
                    ),
                    (
                        0.5 * (var + mu**2 - 1 - 0.5 * logvar).sum(-1),
                        "the log term is log σ² = logvar itself, not log σ = logvar / 2.",
                    ),
                    (0.5 * (var + mu**2 - 1 - logvar).mean(-1), _MEAN_HINT),
                    (
                        0.5 * (var + mu**2 - logvar).sum(-1),
                        "you forgot the −1 in each coordinate: the KL must be exactly 0 at mu = 0, "
                        "logvar = 0 (q is the prior).",
                    ),
                    (
                        0.5 * (var + mu**2 - 1 + logvar).sum(-1),
                        "the log term enters with a minus sign: ½ Σ (σ² + μ² − 1 − log σ²).",
                    ),
                    (0.5 * (var - 1 - logvar).sum(-1), "the mean's cost ½ μ² is missing."),
                    (
                        gaussian_kl_between(torch.zeros_like(mu), torch.zeros_like(mu), mu, logvar),
                        "you computed KL(N(0, I) ‖ q), the reverse direction; the ELBO needs KL(q "
                        "‖ p).",
                    ),
                ],
            )
        zero = _call(fn, torch.zeros(2, 4, dtype=_F64), torch.zeros(2, 4, dtype=_F64))
        if zero.shape == (2,) and not torch.allclose(zero, torch.zeros(2, dtype=_F64), atol=1e-12):
            raise ExerciseFailed("at mu = 0, logvar = 0 (q is the prior) the KL must be exactly 0.")
        # Section 8's failure: float32, a very confident coordinate (σ² = e^-120 underflows to 0).
        mu32, logvar32 = _confident_float32()
        got = _call(fn, mu32, logvar32)
        _compare(got, gaussian_kl(mu32.double(), logvar32.double()), extra=[], nan_hint=(
            "your answer is inf or NaN in float32 at logvar = -120 (section 8): exp(logvar) "
            "underflows to 0 there, so exp(logvar).log() or log(σ²) is -inf. The log term is "
            "logvar itself: use it directly."))
        return "It matches vaelib.kl.gaussian_kl, and is 0 exactly when q is the prior."

    return run_check("gaussian_kl", fn, body)


def _cholesky_factors(seed: int, n: int, d: int) -> torch.Tensor:
    """Fixed random lower-triangular ``(n, d, d)`` factors L with positive diagonal."""
    g = torch.Generator().manual_seed(seed)
    off_diagonal = 0.6 * torch.randn(n, d, d, generator=g, dtype=_F64).tril(diagonal=-1)
    diagonal = (2.0 * torch.rand(n, d, generator=g, dtype=_F64) - 1.0).exp()  # in [1/e, e]
    return off_diagonal + torch.diag_embed(diagonal)


def _kl_full(mu: torch.Tensor, trace: torch.Tensor, log_det: torch.Tensor) -> torch.Tensor:
    """½ [tr Σ + μᵀμ − d − log det Σ] from its pieces."""
    return 0.5 * (trace + mu.square().sum(-1) - mu.shape[-1] - log_det)


def check_kl_full_covariance(fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> bool:
    """Check ``fn(mu, scale_tril)`` = KL(N(mu, L Lᵀ) ‖ N(0, I)) = ½[tr Σ + μᵀμ − d − log det Σ].

    ``mu``: ``(N, d)``; ``scale_tril``: ``(N, d, d)`` lower-triangular Cholesky factors L of the
    covariances Σ = L Lᵀ; the answer has shape ``(N,)``.
    """

    def body(fn):
        n, d = 4, 3
        mu, _ = _inputs(6, n, d)
        L = _cholesky_factors(7, n, d)
        got = _call(fn, mu, L)
        cov = L @ L.mT
        trace = cov.diagonal(dim1=-2, dim2=-1).sum(-1)             # tr Σ = Σ_ik L_ik²
        diag_L = L.diagonal(dim1=-2, dim2=-1)
        log_det = 2 * diag_L.log().sum(-1)                          # log det Σ = 2 Σ_i log L_ii
        want = _kl_full(mu, trace, log_det)
        nan_hint = ("your answer contains NaN or infinity: take the log of L's diagonal only "
                    "(L_ii > 0); its off-diagonal entries can be negative or 0.")
        cov_inv = torch.linalg.inv(cov)
        reverse = 0.5 * (cov_inv.diagonal(dim1=-2, dim2=-1).sum(-1)
                         + (mu.unsqueeze(-2) @ cov_inv @ mu.unsqueeze(-1)).squeeze((-2, -1))
                         - d + log_det)
        _compare(
            got,
            want,
            nan_hint=nan_hint,
            extra=[
                (
                    _kl_full(mu, diag_L.sum(-1), log_det),
                    "σ vs σ² in matrix form: the trace is that of the covariance Σ = L Lᵀ (the sum "
                    "of the squares of all entries of L), not the trace of L.",
                ),
                (
                    _kl_full(mu, diag_L.square().sum(-1), log_det),
                    "tr(L Lᵀ) also includes L's off-diagonal entries: it is the sum of the squares "
                    "of all entries of L, not only of its diagonal.",
                ),
                (
                    _kl_full(mu, trace, 0.5 * log_det),
                    "log det Σ = log det(L Lᵀ) = 2 Σ_i log L_ii: the factor 2 is missing "
                    "(det(L Lᵀ) = det(L)²).",
                ),
                (
                    _kl_full(mu, diag_L.sum(-1), 0.5 * log_det),
                    "scale_tril is the Cholesky factor L, not the covariance: Σ = L Lᵀ, so use "
                    "tr(L Lᵀ) and log det(L Lᵀ) = 2 Σ_i log L_ii.",
                ),
                (
                    _kl_full(mu, trace, log_det) + 0.5 * d,
                    "the −d is missing: the KL must be exactly 0 when mu = 0 and L = I.",
                ),
                (
                    _kl_full(mu, trace, -log_det),
                    "the log-determinant enters with a minus sign: − log det Σ.",
                ),
                (
                    _kl_full(torch.zeros_like(mu), trace, log_det),
                    "the mean's cost ½ μᵀμ is missing.",
                ),
                (
                    reverse,
                    "you computed KL(N(0, I) ‖ q), the reverse direction; "
                    "the ELBO needs KL(q ‖ p).",
                ),
            ],
        )
        return "Steps 2–4 in matrix form: E[(z − μ)ᵀ Σ⁻¹ (z − μ)] = d and E[zᵀz] = tr Σ + μᵀμ."

    return run_check("kl_full_covariance", fn, body)


def check_kl_mean_only(fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> bool:
    """Check ``fn(mu, logvar)`` = KL(N(μ, diag σ²) ‖ N(0, diag σ²)) = ½ Σ μ²/σ².

    ``mu``, ``logvar`` (the log-variances shared by q and p): ``(N, d)``; the answer is ``(N,)``.
    """

    def body(fn):
        n, d = 5, 3
        mu, logvar = _inputs(4, n, d)
        got = _call(fn, mu, logvar)
        var, std = logvar.exp(), (0.5 * logvar).exp()
        want = 0.5 * (mu.square() / var).sum(-1)
        _compare(
            got,
            want,
            per_dim_shape=(n, d),
            extra=[
                (
                    0.5 * mu.square().sum(-1),
                    "that is the answer for σ = 1 only: the mean shift is measured in units of the "
                    "shared variance, μ²/σ².",
                ),
                (
                    0.5 * (mu.square() / std).sum(-1),
                    "σ vs σ²: divide μ² by the variance σ² = exp(logvar), not by σ.",
                ),
                (0.5 * (mu.square() * var).sum(-1), "divide by σ², don't multiply."),
                (0.5 * (mu.square() / var).mean(-1), _MEAN_HINT),
                (
                    gaussian_kl(mu, logvar),
                    "that is the KL to N(0, I); here p = N(0, diag σ²) shares q's variances.",
                ),
            ],
        )
        return "½ Σ μ²/σ²: symmetric in q and p, since swapping them only flips the sign of μ."

    return run_check("kl_mean_only", fn, body)


def check_kl_from_std(fn: Callable[[torch.Tensor, torch.Tensor], Any]) -> bool:
    """Check ``fn(mu, std)`` = KL(N(mu, diag std²) ‖ N(0, I)), shapes (N, d) -> (N,)."""

    def body(fn):
        n, d = 5, 3
        mu, logvar = _inputs(5, n, d)
        std = (0.5 * logvar).exp()
        got = _call(fn, mu, std)
        var = std.square()
        want = gaussian_kl(mu, logvar)
        nan_hint = ("your answer contains NaN or infinity: std is σ itself (positive), so "
                    "σ² = std ** 2 and log σ² = 2 log(std).")
        _compare(got, want, per_dim_shape=(n, d), nan_hint=nan_hint, extra=[
            (0.5 * (std + mu**2 - 1 - std.log()).sum(-1),
             "you used σ where the formula has σ²: the variance is std ** 2, and "
             "log σ² = 2 log(std)."),
            (0.5 * (var + mu**2 - 1 - std.log()).sum(-1),
             "log σ² = 2 log σ: the log term needs a factor 2, 2 * log(std) (not log(std ** 2), "
             "which is -inf in float32 once std ** 2 underflows)."),
            (0.5 * (std + mu**2 - 1 - 2 * std.log()).sum(-1),
             "the first term is the variance σ² = std ** 2, not std."),
            (0.5 * (std.exp() + mu**2 - 1 - std).sum(-1),
             "you treated std as a log-variance: here the input is σ itself (σ² = std ** 2)."),
            (0.5 * (var + mu**2 - 1 - 2 * std.log()).mean(-1), _MEAN_HINT),
            (0.5 * (var + mu**2 - 1 + 2 * std.log()).sum(-1),
             "the log term enters with a minus sign: − log σ² = − 2 log σ."),
        ])
        # Section 8's failure: float32 and σ = 1e-25, whose square underflows to 0.
        mu32 = torch.tensor([[0.5, -1.0, 0.2], [0.0, 0.3, -0.4]], dtype=torch.float32)
        std32 = torch.tensor([[1e-25, 1.3, 0.6], [0.2, 3e-24, 2.0]], dtype=torch.float32)
        got = _call(fn, mu32, std32)
        _compare(got, gaussian_kl(mu32.double(), 2 * std32.double().log()), extra=[], nan_hint=(
            "your answer is inf or NaN in float32 at std = 1e-25 (section 8): std ** 2 underflows "
            "to 0 there, so log(std ** 2) is -inf. Write log σ² as 2 * log(std)."))
        return "It matches vaelib.kl.gaussian_kl(mu, 2 * log(std))."

    return run_check("kl_from_std", fn, body)
