"""Self-checks for chapter 09 (exploring the latent space). See :mod:`vaelib.exercises._core`.

- :func:`check_slerp`: spherical interpolation
  ``z_t = sin((1-t)Ω)/sin Ω · z0 + sin(tΩ)/sin Ω · z1``, ``cos Ω = z0·z1 / (‖z0‖ ‖z1‖)``.
- :func:`check_inverse_cdf_grid`: the manifold's coordinates ``z_i = Φ⁻¹((i + ½)/n)``.
- :func:`check_prior_mass_within`: ``P(‖z‖ <= r)`` for ``z ~ N(0, I_d)``, i.e. ``F_{χ²_d}(r²)``.
"""

from __future__ import annotations

import math
import os
import random
from typing import Any

import torch
from scipy import stats

from ..latent import inverse_cdf_grid, lerp, slerp
from .. import latent
from ._core import ExerciseFailed, as_float64, close, diagnose, forbidden_calls, run_check
from ._core import require_callable as _callable
from ._core import returned_value as _result

__all__ = ["check_slerp", "check_inverse_cdf_grid", "check_prior_mass_within"]

DT = torch.float64


def _library(name: str) -> str:
    return (f"your function calls vaelib's own {name}, the answer the exercise asks you to write "
            "from the formula.")


def _finite(got: Any, hint: str) -> torch.Tensor:
    got = as_float64(got)
    if not torch.isfinite(got).all():
        raise ExerciseFailed(hint)
    return got


# ---------------------------------------------------------------------------------------- slerp

def _slerp_cases() -> list[tuple[torch.Tensor, torch.Tensor, float]]:
    g = torch.Generator().manual_seed(9)
    z0, noise = torch.randn(2, 6, generator=g, dtype=DT)
    z1 = 0.6 * z0 + 0.8 * noise  # unequal norms, an angle of about 50°: z0·z1 is well above 1
    u0, u1 = torch.randn(2, 6, generator=g, dtype=DT)
    u1 = u1 * (u0.norm() / u1.norm())  # equal norms: the path keeps the norm
    return [(z0, z1, t) for t in (0.3, 0.5, 0.0, 1.0, 0.85)] + [(u0, u1, t) for t in (0.25, 0.6)]


def check_slerp(slerp_answer: Any) -> bool:
    """Check ``slerp(z0, z1, t) -> (d,)`` for ``(d,)`` tensors z0, z1 and a number t in [0, 1].

    ``z_t = sin((1 - t) Ω) / sin Ω · z0 + sin(t Ω) / sin Ω · z1`` with ``cos Ω = z0·z1 /
    (‖z0‖ ‖z1‖)`` (ch. 9), compared with :func:`vaelib.latent.slerp` on endpoints of equal and of
    unequal norms.
    """

    def body(fn: Any) -> str:
        _callable(fn, "slerp(z0, z1, t)")
        for z0, z1, t in _slerp_cases():
            with forbidden_calls(others=[(latent, "slerp")]) as used:
                raw = _result(fn(z0.clone(), z1.clone(), t))
            if used:
                raise ExerciseFailed(_library("vaelib.latent.slerp"))
            want = slerp(z0, z1, t)[0]  # (d,)
            got = _finite(raw, "your answer contains NaN: the arccos of a number outside [-1, 1]? "
                               "Take the angle between the unit vectors, cos Ω = z0·z1 / "
                               "(‖z0‖ ‖z1‖).")
            if close(got, want, rtol=1e-6, atol=1e-9):
                continue
            cos = (z0 @ z1) / (z0.norm() * z1.norm())
            omega = torch.arccos(cos)
            w0, w1 = torch.sin((1 - t) * omega), torch.sin(t * omega)
            unit0, unit1 = z0 / z0.norm(), z1 / z1.norm()
            raise ExerciseFailed(
                diagnose(
                    got,
                    want,
                    extra=[
                        (
                            lerp(z0, z1, t)[0],
                            f"at t = {t} you returned the straight line "
                            "(1 - t) z0 + t z1; slerp follows the great circle: weights "
                            "sin((1 - t)Ω)/sin Ω and sin(tΩ)/sin Ω.",
                        ),
                        (
                            slerp(z1, z0, t)[0],
                            f"at t = {t} your path runs backwards (from z1 to z0): z0 "
                            "gets the weight sin((1 - t)Ω)/sin Ω, so that t = 0 gives z0.",
                        ),
                        (
                            w0 * z0 + w1 * z1,
                            "you forgot to divide both weights by sin Ω (without it the "
                            "endpoints come out as sin Ω · z0 and sin Ω · z1).",
                        ),
                        (
                            slerp(unit0, unit1, t)[0],
                            "you interpolated the unit vectors z0/‖z0‖ and "
                            "z1/‖z1‖: apply the weights to z0 and z1 themselves (normalize only to "
                            "find Ω).",
                        ),
                        (
                            (torch.sin((1 - t) * cos) * z0 + torch.sin(t * cos) * z1)
                            / torch.sin(cos),
                            "you used cos Ω where the formula needs the angle Ω = arccos(cos Ω).",
                        ),
                        (
                            (
                                torch.sin((1 - t) * omega.rad2deg()) * z0
                                + torch.sin(t * omega.rad2deg()) * z1
                            )
                            / torch.sin(omega.rad2deg()),
                            "your angle Ω is in degrees: torch.sin takes radians, and torch.arccos "
                            "already returns radians (no conversion needed).",
                        ),
                    ],
                )
                + f" (checked at t = {t}.)"
            )
        return "your path starts at z0, ends at z1, and keeps ‖z‖ when ‖z0‖ = ‖z1‖."

    return run_check("slerp", slerp_answer, body)


# ---------------------------------------------------------------------------------------- the grid

def check_inverse_cdf_grid(inverse_cdf_grid_answer: Any) -> bool:
    """Check ``inverse_cdf_grid(n) -> (n,)``, ``z_i = Φ⁻¹((i + ½) / n)`` for i = 0..n-1 (ch. 9)."""

    def body(fn: Any) -> str:
        _callable(fn, "inverse_cdf_grid(n)")
        for n in (15, 4, 1):
            want = inverse_cdf_grid(n, dtype=DT)
            u_mid = (torch.arange(n, dtype=DT) + 0.5) / n
            with forbidden_calls(
                others=[(latent, "inverse_cdf_grid"), (latent, "latent_grid")]
            ) as used:
                raw = _result(fn(n))
            if used:
                raise ExerciseFailed(_library(f"vaelib.{used[0]}"))
            got = as_float64(raw).reshape(-1) if as_float64(raw).dim() > 1 else as_float64(raw)
            if got.shape != want.shape:
                raise ExerciseFailed(f"for n = {n} expected {n} coordinates (shape ({n},)), got "
                                     f"shape {tuple(as_float64(raw).shape)}.")
            if not torch.isfinite(got).all():
                raise ExerciseFailed(
                    "some coordinates are infinite: Φ⁻¹(0) = -∞ and Φ⁻¹(1) = +∞. Use the middle "
                    "of each of the n slices of equal probability, u_i = (i + ½)/n, never 0 or 1."
                )
            if close(got, want, rtol=1e-6, atol=1e-8):
                continue
            extra = [
                (u_mid, "these are the probabilities u_i = (i + ½)/n; map them through Φ⁻¹ "
                 "(scipy.stats.norm.ppf or torch.special.ndtri) to get z."),
                (torch.special.ndtr(u_mid), "you applied Φ, the CDF; the grid needs its inverse "
                 "Φ⁻¹ (scipy.stats.norm.ppf or torch.special.ndtri)."),
                (torch.special.ndtri((torch.arange(n, dtype=DT) + 1) / (n + 1)),
                 "u_i = (i + 1)/(n + 1) spaces the points evenly in probability too, but the "
                 "convention here is the middle of each of the n equal-mass slices: "
                 "u_i = (i + ½)/n."),
                (torch.special.ndtri(u_mid).flip(0), "your coordinates decrease; return them in "
                 "increasing order (i = 0 is the most negative)."),
            ]
            for wrong, hint in extra:
                if torch.allclose(got, wrong, rtol=1e-5, atol=1e-8):
                    raise ExerciseFailed(hint + f" (checked with n = {n}.)")
            steps = got[1:] - got[:-1]
            if n > 2 and torch.allclose(steps, steps[0].expand(n - 1), rtol=1e-6, atol=1e-9):
                raise ExerciseFailed(
                    "your points are evenly spaced in z; space them evenly in probability "
                    "u = (i + ½)/n and map them through Φ⁻¹: denser near 0, where the prior has "
                    "more mass."
                )
            raise ExerciseFailed(diagnose(got, want) + f" (checked with n = {n}.)")
        return "each image of a 15 × 15 manifold then stands for 1/225 of the prior's mass."

    return run_check("inverse_cdf_grid", inverse_cdf_grid_answer, body)


# ---------------------------------------------------------------------------------------- χ² mass

def check_prior_mass_within(prior_mass_within: Any) -> bool:
    """Check ``prior_mass_within(radius, d) -> P(‖z‖ <= radius)`` for ``z ~ N(0, I_d)`` (ch. 9).

    ``‖z‖² = Σ_j z_j²`` is χ² with d degrees of freedom, so the answer is ``F_{χ²_d}(radius²)``;
    in two dimensions ``1 - exp(-radius²/2)``.
    """

    def body(fn: Any) -> str:
        _callable(fn, "prior_mass_within(radius, d)")
        rng = random.Random(os.urandom(16))  # a case no table of the fixed ones can list
        drawn = (round(rng.uniform(0.5, 8.0), 6), rng.randint(3, 60))
        for radius, d in ((3.0, 5), (1.0, 2), (2.0, 2), (1.5, 1), (math.sqrt(25.0), 50), drawn):
            raw = _result(fn(radius, d))
            got = as_float64(raw)
            if got.numel() != 1:
                raise ExerciseFailed(f"return one probability, got shape {tuple(got.shape)}.")
            got = _finite(got.reshape(()), "your answer is NaN or infinite.")
            want = torch.tensor(stats.chi2.cdf(radius**2, d), dtype=DT)
            if close(got, want, rtol=1e-5, atol=1e-9):
                continue
            extra = [
                (
                    torch.tensor(stats.chi2.cdf(radius, d), dtype=DT),
                    "‖z‖² (not ‖z‖) is χ²_d: evaluate the χ² CDF at radius², not at radius.",
                ),
                (
                    torch.tensor(1 - math.exp(-(radius**2) / 2), dtype=DT),
                    "1 - exp(-r²/2) is the "
                    "answer in d = 2 only; in d dimensions ‖z‖² ~ χ²_d: scipy.stats.chi2.cdf(r², "
                    "d).",
                ),
                (
                    torch.tensor(stats.norm.cdf(radius) - stats.norm.cdf(-radius), dtype=DT),
                    "2Φ(r) - 1 is the mass within r in one dimension; in d dimensions "
                    "‖z‖² = Σ_j z_j² ~ χ²_d.",
                ),
                (
                    torch.tensor((stats.norm.cdf(radius) - stats.norm.cdf(-radius)) ** d, dtype=DT),
                    "(2Φ(r) - 1)^d is the mass of the cube |z_j| <= r for every j; the ball ‖z‖ <= "
                    "r is smaller: ‖z‖² = Σ_j z_j² ~ χ²_d.",
                ),
                (
                    torch.tensor(stats.chi2.sf(radius**2, d), dtype=DT),
                    "you computed the mass *outside* the radius (1 - the answer).",
                ),
                (
                    torch.tensor(stats.chi2.cdf(radius**2, max(d - 1, 1e-9)), dtype=DT),
                    "you used d - 1 degrees of freedom: ‖z‖² sums d squared coordinates, so it has "
                    "d (no mean is estimated here, nothing to subtract).",
                ),
            ]
            raise ExerciseFailed(diagnose(got, want, extra=extra)
                                 + f" (checked with radius = {radius:g}, d = {d}.)")
        return ("in 50 dimensions a point with ‖z‖ = √(d/2) = 5 is nearer the origin than "
                f"all but {100 * stats.chi2.cdf(25.0, 50):.2f} % of the prior's draws.")

    return run_check("prior_mass_within", prior_mass_within, body)
