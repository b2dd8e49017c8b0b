"""Self-checks for chapter 08 (training a VAE on MNIST). See :mod:`vaelib.exercises._core`.

- :func:`check_negative_elbo`: the training loss of a Bernoulli VAE from the decoder's logits,
  ``-(1/N) Σ_n [Σ_i (x_ni ℓ_ni - softplus(ℓ_ni)) - KL(q(z|x_n) ‖ N(0, I))]``.
- :func:`check_count_active_units`: the number of latent units with ``Var_x[μ_j(x)] > 0.01``.
- :func:`check_bce_integral`: ``∫_0^1 λ^x (1 - λ)^(1 - x) dx``, the mass exp(-BCE) gives to grey
levels.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ._core import ExerciseFailed, as_float64, close, diagnose, run_check
from ._core import require_callable as _callable
from ._core import returned_value as _result

__all__ = ["check_negative_elbo", "check_count_active_units", "check_bce_integral"]

DT = torch.float64


# ----------------------------------------------------------------------------- negative_elbo

def _loss_case(seed: int, n: int = 6, data_dim: int = 20, latent_dim: int = 3):
    g = torch.Generator().manual_seed(seed)
    logits = 2.0 * torch.randn(n, data_dim, generator=g, dtype=DT)
    x = torch.bernoulli(torch.full((n, data_dim), 0.4, dtype=DT), generator=g)
    mu = torch.randn(n, latent_dim, generator=g, dtype=DT)
    logvar = torch.empty(n, latent_dim, dtype=DT).uniform_(-2.0, 1.0, generator=g)
    return logits, x, mu, logvar


def _kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(-1)  # (N,)


def check_negative_elbo(negative_elbo: Any) -> bool:
    """Check ``negative_elbo(logits, x, mu, logvar)`` -> ``-(1/N) Σ_n [log p(x_n|z_n) - KL_n]`` (ch.
    8).

    ``log p(x|z) = Σ_i [x_i ℓ_i - softplus(ℓ_i)]`` summed over the D pixels, the KL to N(0, I) in
    closed form, summed over the d latent dims; one number, the mean over the N images.
    """

    def body(fn: Any) -> str:
        _callable(fn, "negative_elbo(logits, x, mu, logvar)")
        for seed in (0, 1):
            logits, x, mu, logvar = _loss_case(seed)
            args = [t.clone().requires_grad_(True) for t in (logits, mu, logvar)]
            try:
                got = _result(fn(args[0], x.clone(), args[1], args[2]))
            except RuntimeError as err:
                if "between 0 and 1" in str(err):
                    raise ExerciseFailed("F.binary_cross_entropy expects probabilities, but you "
                                         "have logits: use F.binary_cross_entropy_with_logits, or "
                                         "Σ (x ℓ - softplus(ℓ)) directly.") from err
                raise
            got_t = as_float64(got)
            n, data_dim = x.shape
            rec = (x * logits - F.softplus(logits)).sum(-1)  # log p(x|z), (N,)
            kl = _kl(mu, logvar)
            want = -(rec - kl).mean()
            if got_t.numel() == n and got_t.dim() >= 1:
                hint = ("return one number, the mean over the N images (your answer has one value "
                        "per image: add .mean()).")
                if close(got_t.reshape(n), -(rec - kl)):
                    raise ExerciseFailed(hint)
                raise ExerciseFailed("return one number (the mean over the N images), not one per "
                                     "image.")
            if got_t.numel() != 1:
                raise ExerciseFailed("return one number (a scalar), got shape "
                                     f"{tuple(got_t.shape)}.")
            got_t = got_t.reshape(())
            if not close(got_t, want, rtol=1e-6, atol=1e-8, nonfinite_hint=(
                    "your loss is NaN or infinite: log(sigmoid(ℓ)) underflows for very negative "
                    "logits; write log p(x|z) = Σ (x ℓ - softplus(ℓ)) or use "
                    "F.binary_cross_entropy_with_logits.")):
                # F.binary_cross_entropy_with_logits(reduction="mean")
                bce_mean = -(rec / data_dim).mean()
                raise ExerciseFailed(
                    diagnose(
                        got_t,
                        want,
                        extra=[
                            (
                                (rec - kl).mean(),
                                "you returned the ELBO itself; the loss to minimize is its "
                                "negative, -ELBO = reconstruction loss + KL.",
                            ),
                            (
                                -rec.mean(),
                                "the KL term is missing: the loss is -log p(x|z) + KL(q(z|x) ‖ "
                                "p(z)).",
                            ),
                            (
                                -(rec + kl).mean(),
                                "wrong sign of the KL: the ELBO subtracts it, so the loss "
                                "-ELBO adds it.",
                            ),
                            (
                                bce_mean + kl.mean(),
                                "you averaged the reconstruction term over the pixels "
                                "(reduction='mean'?): the ELBO sums log p(x_i|z) over the D "
                                "pixels; average only over the images.",
                            ),
                            (
                                bce_mean + kl.mean() / mu.shape[1],
                                "you averaged over the pixels and the "
                                "latent "
                                "dims: sum both, average only over the images.",
                            ),
                            (
                                -rec.mean() + kl.mean() / mu.shape[1],
                                "you averaged the KL over the latent dims: sum it over them.",
                            ),
                            (
                                -(rec - kl).sum(),
                                "you summed over the images; average over them (the loss "
                                "per "
                                "image, as in chapter 7's n/m-scaled estimate divided by n).",
                            ),
                            (
                                -(rec - _kl(mu, 0.5 * logvar)).mean(),
                                "the KL takes the variance σ² = "
                                "exp(logvar); you used σ = exp(½ logvar).",
                            ),
                            (
                                -(rec - 2 * kl).mean(),
                                "your KL is twice the right value: it has a factor ½.",
                            ),
                            (
                                -(rec - kl / 2).mean(),
                                "your KL is half the right value: ½ Σ_j (μ² + σ² - 1 "
                                "- "
                                "log σ²), one factor ½.",
                            ),
                            (
                                -(rec - kl - 0.5 * mu.shape[1]).mean(),
                                "your KL is off by d/2: don't forget "
                                "the "
                                "-1 in ½ Σ_j (μ² + σ² - 1 - log σ²) (the KL is 0 when q = p).",
                            ),
                            (
                                -((x * torch.sigmoid(logits)).sum(-1) - kl).mean(),
                                "log p(x|z) uses log sigmoid(ℓ) = ℓ - softplus(ℓ), not sigmoid(ℓ).",
                            ),
                            (
                                -(-F.softplus(logits).sum(-1) - kl).mean(),
                                "the x ℓ term of log p(x|z) = Σ (x ℓ - softplus(ℓ)) is missing.",
                            ),
                        ],
                    )
                )
            if not isinstance(got, torch.Tensor):
                raise ExerciseFailed("the value is right, but you returned a Python number "
                                     "(.item(), float() or math inside?): training differentiates "
                                     "the loss, so return the tensor computed with torch "
                                     "operations.")
            if not got.requires_grad:
                raise ExerciseFailed("the value is right, but the loss has no gradient (a "
                                     ".detach(), torch.no_grad() or .item() inside?): return a "
                                     "tensor computed with torch operations.")
            grads = torch.autograd.grad(got.sum(), args, allow_unused=True)
            if any(g is None for g in grads):
                raise ExerciseFailed("the value is right, but the loss does not depend "
                                     "differentiably on logits, mu and logvar (a .detach() or "
                                     ".item() inside?): training needs the gradient.")
            reference = [t.clone().requires_grad_(True) for t in (logits, mu, logvar)]
            ref_rec = (x * reference[0] - F.softplus(reference[0])).sum(-1)
            ref_loss = -(ref_rec - _kl(reference[1], reference[2])).mean()
            want_grads = torch.autograd.grad(ref_loss, reference)
            for name, g, w in zip(("logits", "mu", "logvar"), grads, want_grads):
                if not close(g, w, rtol=1e-6, atol=1e-9):
                    raise ExerciseFailed(
                        f"the value is right, but its gradient with respect to {name} is not: part "
                        "of the loss is computed from a detached tensor (.detach(), .data, or a "
                        "value copied in with torch.tensor(...)), so training would follow a wrong "
                        "direction. Compute every term from the inputs with torch operations.")
        return (
            "loss = -(1/N) Σ_n [Σ_pixels (x ℓ - softplus ℓ) - KL_n]: summed over the pixels "
            "and the latent dims, averaged over the images."
        )

    return run_check("negative_elbo", negative_elbo, body)


# ----------------------------------------------------------------------- count_active_units

#: Per-unit variances and means of the posterior means in the test cases: active iff variance >
#: 0.01.
#: The first case is built so that each typical slip gives its own count (the standard deviation
#: 10, the inactive units 12, the mean |μ_j| 11, the mean 3, E[μ_j²] 5, every unit 16, the threshold
#: 0.001 7, 0.1 2) and the right count, 4, differs from the second case's, 5.
_CASES = (
    ((1.0, 0.3, 0.05, 0.02, 0.008, 0.004, 0.002, 0.0005, 0.0004, 0.0003, 0.00005, 0.0, 0.00002, 0.0,
      0.00001, 0.0),
     (0.5, 0.0, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.0, 0.0, 0.005, 0.0, 0.0)),
    ((1.0, 0.5, 0.05, 0.02, 0.005, 0.0005, 0.00005, 0.0, 0.3),
     (0.0, 0.5, 0.0, -0.2, 0.3, 0.05, -0.02, 0.001, 0.0)),
)


def _active_case(seed: int, n: int = 200) -> torch.Tensor:
    """mu (N, d) whose column j has sample variance exactly variances[j] (unbiased) and mean
    means[j].
    """
    variances, means = _CASES[seed]
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, len(variances), generator=g, dtype=DT)
    noise = (noise - noise.mean(0)) / noise.std(0)  # exactly mean 0, unbiased variance 1
    perm = torch.randperm(len(variances), generator=g)  # so "the first k" is not the answer
    var = torch.tensor(variances, dtype=DT)[perm]
    mean = torch.tensor(means, dtype=DT)[perm]
    return (mean + var.sqrt() * noise).to(torch.float32)


def _as_count(value: Any) -> int:
    """An integer answer from an int, a float that is an integer, or a one-element tensor/array."""
    if isinstance(value, bool):
        raise ExerciseFailed("return the number of active units (an int), not True/False.")
    t = as_float64(value)
    if t.numel() != 1:
        raise ExerciseFailed("return one integer, the number of active units; got shape "
                             f"{tuple(t.shape)} (a mask? add .sum() and int(...)).")
    v = float(t.reshape(()))
    if not math.isfinite(v) or v != round(v):
        raise ExerciseFailed(f"return a whole number of units, got {v}.")
    return int(round(v))


def check_count_active_units(count_active_units: Any) -> bool:
    """Check ``count_active_units(mu)`` -> the number of j with ``Var_n[mu[n, j]] > 0.01`` (ch. 8).
    """

    def body(fn: Any) -> str:
        _callable(fn, "count_active_units(mu)")
        cases = [_active_case(seed) for seed in range(len(_CASES))]
        answers = [_as_count(_result(fn(mu.clone()))) for mu in cases]
        wants = [int((mu.var(dim=0) > 0.01).sum()) for mu in cases]
        if answers != wants and len(set(answers)) == 1:
            raise ExerciseFailed(f"your function returned {answers[0]} for every test case, but "
                                 f"the cases have {' and '.join(map(str, wants))} active units: "
                                 "count, from mu, the units j whose variance over the data points "
                                 "is above 0.01 (there are fewer than all of them).")
        for mu, got, want in zip(cases, answers, wants):
            if got == want:
                continue
            d = mu.shape[1]
            hints = [
                (int((mu.std(dim=0) > 0.01).sum()), "you thresholded the standard deviation; the "
                 "activity is the variance Var_x[μ_j(x)] > 0.01."),
                (d - want, "you counted the inactive units (variance <= 0.01)."),
                (int((mu.var(dim=1) > 0.01).sum()), "you took the variance over the latent dims "
                 "(dim=1); take it over the data points, dim=0, one variance per unit."),
                (int((mu.abs().mean(dim=0) > 0.01).sum()), "you thresholded the mean |μ_j|; the "
                                                           "activity "
                 "is how much μ_j(x) *varies* across data points: its variance over dim=0."),
                (int((mu.mean(dim=0).abs() > 0.01).sum()), "you thresholded the mean of μ_j; the "
                 "activity is its variance over the data points."),
                (int((mu.var(dim=0) > 0.001).sum()), "your threshold is 0.001: the course (after "
                 "Burda et al., 2015) calls a unit active when its variance is above 0.01."),
                (int((mu.var(dim=0) > 0.1).sum()), "your threshold is 0.1: a unit is active when "
                                                   "its "
                 "variance is above 0.01."),
                (int((mu.square().mean(dim=0) > 0.01).sum()), "E[μ_j²] is not the variance: "
                                                              "subtract "
                 "the mean first (use mu.var(dim=0))."),
                (d, "every unit came out active: is the threshold 0.01 applied to Var over dim=0?"),
            ]
            for wrong, hint in hints:
                if got == wrong:
                    raise ExerciseFailed(hint)
            raise ExerciseFailed(f"got {got} active units; count the units j with Var over the "
                                 "data points of mu[:, j] > 0.01 (there are fewer than all of "
                                 "them).")
        return "activity A_j = Var_x[μ_j(x)]; a unit is active when A_j > 0.01."

    return run_check("count_active_units", count_active_units, body)


# ------------------------------------------------------------------------------ bce_integral

def _bce_integral(lam: float) -> float:
    return 0.5 if abs(lam - 0.5) < 1e-12 else (2 * lam - 1) / math.log(lam / (1 - lam))


def check_bce_integral(bce_integral: Any) -> bool:
    """Check ``bce_integral(lam)`` -> ``∫_0^1 λ^x (1 - λ)^(1 - x) dx = (2λ - 1) / logit(λ)`` (ch.
    8).
    """

    def body(fn: Any) -> str:
        _callable(fn, "bce_integral(lam)")
        lams = (0.9, 0.2, 0.999, 0.6, 0.05)
        got = torch.stack([_one_number(fn(lam)) for lam in lams])
        want = torch.tensor([_bce_integral(lam) for lam in lams], dtype=DT)
        if not close(got, want, rtol=1e-5, atol=1e-9, nonfinite_hint=(
                "your integral is NaN or infinite at one of λ = 0.9, 0.2, 0.999, 0.6, 0.05: the "
                "closed form divides by log(λ / (1 - λ)), which is 0 only at λ = ½.")):
            lam_t = torch.tensor(lams, dtype=DT)
            raise ExerciseFailed(
                diagnose(
                    got,
                    want,
                    extra=[
                        (
                            torch.ones_like(want),
                            "1 is the sum over x in {0, 1} (the Bernoulli is "
                            "normalized "
                            "there); integrate λ^x (1 - λ)^(1 - x) over the interval [0, 1] "
                            "instead.",
                        ),
                        (
                            -want,
                            "wrong sign: (2λ - 1) / log(λ / (1 - λ)) is positive (both factors "
                            "change sign at λ = ½).",
                        ),
                        (
                            (2 * lam_t - 1) / torch.log((1 - lam_t) / lam_t),
                            "wrong sign: the log is of λ / (1 - λ), not (1 - λ) / λ.",
                        ),
                        (
                            1 / want,
                            "you returned the normalizer's reciprocal; the integral itself is at "
                            "most ½.",
                        ),
                        (torch.log(want), "return the integral itself, not its log."),
                        (
                            (lam_t - 1) / torch.log(lam_t / (1 - lam_t)),
                            "λ^x (1 - λ)^(1 - x) = (1 - λ) r^x "
                            "with "
                            "r = λ / (1 - λ), whose integral over [0, 1] is (1 - λ)(r - 1) / log r "
                            "= (2λ - 1) / log r.",
                        ),
                    ],
                )
            )
        try:
            at_half = _one_number(fn(0.5)).item()
        except ZeroDivisionError:
            at_half = math.nan
        if not math.isfinite(at_half) or abs(at_half - 0.5) > 1e-6:
            raise ExerciseFailed(
                "right except at λ = ½, where (2λ - 1) / log(λ / (1 - λ)) is 0/0: "
                "there λ^x (1 - λ)^(1 - x) = ½ for every x, so the integral is ½."
            )
        missing = -784 * math.log(_bce_integral(0.9))
        return (
            "∫ = (2λ - 1) / log(λ / (1 - λ)) <= ½. At λ = 0.9 on all 784 pixels a grey-level "
            f"BCE misses {missing:.0f} nats of normalization per image."
        )

    return run_check("bce_integral", bce_integral, body)


def _one_number(value: Any) -> torch.Tensor:
    t = as_float64(_result(value))
    if t.numel() != 1:
        raise ExerciseFailed(f"return one number for one λ (a float), got shape {tuple(t.shape)}.")
    return t.reshape(())
