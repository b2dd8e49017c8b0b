"""Self-checks for chapter 10 (training with the importance-weighted bound). See :mod:`._core`.

- :func:`check_normalized_weights`: ``w̃ = softmax(log w)`` over the K samples, stably.
- :func:`check_iwae_gradient`: ``Σ_k w̃_k ∇ log w_k`` from per-sample gradients.
- :func:`check_dreg_encoder_gradient`: DReG's ``Σ_k w̃_k² ∂_z log w_k ∂z_k/∂φ``.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import objectives
from ._core import (
    ExerciseFailed,
    NotAttempted,
    as_float64,
    close,
    diagnose,
    forbidden_calls,
    run_check,
)

__all__ = ["check_normalized_weights", "check_iwae_gradient", "check_dreg_encoder_gradient"]

DT = torch.float64


def _callable(answer: Any, signature: str) -> None:
    if not callable(answer):
        raise ExerciseFailed(f"pass the function itself, {signature}, not its result (no "
                             "parentheses after its name).")


def _result(value: Any) -> Any:
    """A function whose body is still ``...``/``pass`` returns None: not attempted yet."""
    if value is None or value is Ellipsis:
        raise NotAttempted
    return value


def check_normalized_weights(normalized_weights: Any) -> bool:
    """Check ``normalized_weights(log_w) -> w̃ = exp(log w) / Σ_k exp(log w)`` over dim 0 of (K, N).

    Also on log-weights near -1000, where ``exp`` underflows to 0 and the naive ratio is 0/0.
    """

    def body(fn: Any) -> str:
        _callable(fn, "normalized_weights(log_w)")
        g = torch.Generator().manual_seed(0)
        log_w = 2.0 * torch.randn(6, 4, generator=g, dtype=DT)  # (K, N)
        with forbidden_calls(others=[(objectives, "self_normalized_weights")]) as used:
            got = _result(fn(log_w.clone()))
        if used:
            raise ExerciseFailed("your function calls vaelib.objectives.self_normalized_weights, "
                                 "the library's answer: the exercise asks you to write it.")
        want = torch.softmax(log_w, dim=0)
        if not close(got, want, rtol=1e-8, atol=1e-12):
            raise ExerciseFailed(
                diagnose(
                    got,
                    want,
                    extra=[
                        (
                            log_w.exp(),
                            "you returned the weights w_k themselves: divide by their sum over "
                            "the K samples.",
                        ),
                        (
                            torch.softmax(log_w, dim=1),
                            "you normalized over dim 1 (the data points); the "
                            "K samples are dim 0, and each column should sum to 1.",
                        ),
                        (
                            log_w.exp() / log_w.shape[0],
                            "you divided by K: that is the uniform 1/K of the "
                            "ELBO; divide by the sum of the weights instead.",
                        ),
                        (
                            torch.softmax(log_w, 0).square(),
                            "you squared the weights (that is DReG's w̃²).",
                        ),
                        (log_w - torch.logsumexp(log_w, 0), "that is log w̃; exponentiate it."),
                        (
                            torch.softmax(-log_w, 0),
                            "you normalized exp(-log w) = 1/w: the sign of log w is "
                            "flipped, so the smallest weights came out largest.",
                        ),
                    ],
                )
            )
        far = log_w - 1000.0  # the same w̃: the softmax ignores a common shift
        got_far = as_float64(_result(fn(far.clone())))
        if not torch.isfinite(got_far).all() or not close(got_far, want, rtol=1e-8, atol=1e-12):
            raise ExerciseFailed("right for moderate log-weights, but not around -1000, where "
                                 "exp underflows to 0: subtract the maximum first (or use "
                                 "torch.softmax), the log-sum-exp trick of chapter 2.")
        # Data points (columns) thousands of nats apart: the same w̃ per column.
        apart = log_w + torch.tensor([0.0, -3000.0, 2000.0, -1500.0], dtype=DT)
        got_apart = as_float64(_result(fn(apart.clone())))
        if not torch.isfinite(got_apart).all() or not close(got_apart, want, rtol=1e-8, atol=1e-12):
            raise ExerciseFailed("right when every data point's log-weights are alike, but not "
                                 "when the columns lie thousands apart: one maximum over the whole "
                                 "tensor leaves the lower columns' exp at 0 (0/0 = NaN). Take the "
                                 "maximum over the K samples of each column, dim 0.")
        return "w̃ = softmax(log w) over the K samples, stable for any scale."

    return run_check("normalized_weights", normalized_weights, body)


def _weighted_case(seed: int, K: int = 5, P: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    grads = torch.randn(K, P, generator=g, dtype=DT)
    log_w = -50.0 + 1.5 * torch.randn(K, generator=g, dtype=DT)
    return grads, log_w


def _mnist_scale_case(seed: int, K: int = 5, P: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 log-weights between -200 and -110, the scale of MNIST's (log p(x) ≈ -90 to -200
    nats): exp underflows to 0 in float32 below about -104."""
    g = torch.Generator().manual_seed(seed)
    grads = torch.randn(K, P, generator=g, dtype=DT).float()
    log_w = (-200.0 + 90.0 * torch.rand(K, generator=g, dtype=DT)).float()
    return grads, log_w


_UNDERFLOW = ("right for small log-weights, but NaN or wrong at MNIST's scale (float32 log-weights "
              "between -200 and -110, as in training): exp(log w) underflows to 0 there, and 0/0 = "
              "NaN. Normalize in log space: subtract the largest log w first (or torch.softmax).")


def _check_at_mnist_scale(fn: Any, square: bool) -> None:
    grads, log_w = _mnist_scale_case(7)
    got = as_float64(_result(fn(grads.clone(), log_w.clone())))
    w = torch.softmax(log_w.double(), dim=0)
    want = ((w.square() if square else w)[:, None] * grads.double()).sum(0)
    if not torch.isfinite(got).all() or not close(got, want, rtol=1e-5, atol=1e-6):
        raise ExerciseFailed(_UNDERFLOW)


def check_iwae_gradient(iwae_gradient: Any) -> bool:
    """Check ``iwae_gradient(grads (K, P), log_w (K,)) -> Σ_k w̃_k grads[k]`` (P,)."""

    def body(fn: Any) -> str:
        _callable(fn, "iwae_gradient(grads, log_w)")
        grads, log_w = _weighted_case(1)
        got = _result(fn(grads.clone(), log_w.clone()))
        w = torch.softmax(log_w, dim=0)
        want = (w[:, None] * grads).sum(0)
        if not close(got, want, rtol=1e-8, atol=1e-12):
            raise ExerciseFailed(
                diagnose(
                    got,
                    want,
                    extra=[
                        (
                            grads.mean(0),
                            "you averaged the per-sample gradients with equal weights 1/K: "
                            "that is the ELBO's gradient. IWAE weighs sample k by w̃_k.",
                        ),
                        (
                            (w.square()[:, None] * grads).sum(0),
                            "you weighted by w̃_k², DReG's weights for "
                            "the encoder's path term; the gradient of log (1/K) Σ w_k weighs by "
                            "w̃_k.",
                        ),
                        (
                            (w[:, None] * grads).mean(0),
                            "you averaged the weighted gradients (divided by "
                            "K); the self-normalized weights already sum to 1: sum them.",
                        ),
                        (
                            (log_w.exp()[:, None] * grads).sum(0),
                            "you weighted by w_k = exp(log w_k); "
                            "normalize: w̃_k = w_k / Σ_j w_j (a softmax).",
                        ),
                        (
                            (torch.softmax(-log_w, 0)[:, None] * grads).sum(0),
                            "your weights are "
                            "softmax(-log w), largest for the smallest w_k: the sign of log w is "
                            "flipped.",
                        ),
                    ],
                )
            )
        grads2, log_w2 = _weighted_case(2, K=1, P=4)  # K = 1: the ELBO gradient itself
        got2 = _result(fn(grads2.clone(), log_w2.clone()))
        if not close(got2, grads2[0], rtol=1e-8, atol=1e-12):
            raise ExerciseFailed("wrong for K = 1, where w̃_1 = 1 and the gradient is grads[0].")
        _check_at_mnist_scale(fn, square=False)
        return "∇ log (1/K) Σ w_k = Σ_k w̃_k ∇ log w_k; with K = 1 it is the ELBO's gradient."

    return run_check("iwae_gradient", iwae_gradient, body)


def check_dreg_encoder_gradient(dreg_encoder_gradient: Any) -> bool:
    """Check ``dreg_encoder_gradient(path_grads (K, P), log_w (K,)) -> Σ_k w̃_k² path_grads[k]``."""

    def body(fn: Any) -> str:
        _callable(fn, "dreg_encoder_gradient(path_grads, log_w)")
        grads, log_w = _weighted_case(3)
        got = _result(fn(grads.clone(), log_w.clone()))
        w = torch.softmax(log_w, dim=0)
        want = (w.square()[:, None] * grads).sum(0)
        if not close(got, want, rtol=1e-8, atol=1e-12):
            raise ExerciseFailed(diagnose(got, want, extra=[
                ((w[:, None] * grads).sum(0), "you weighted by w̃_k: that keeps only the path "
                 "part of the plain IWAE gradient (the STL estimator), which is biased for K > 1. "
                 "Reparameterize the score term once more and see what weight it leaves on each "
                 "path gradient."),
                ((w.pow(3)[:, None] * grads).sum(0), "you weighted by w̃_k³: one power of w̃_k "
                 "too many. Count the factors w̃_k that the doubly reparameterized score term "
                 "leaves."),
                ((w.square()[:, None] * grads).mean(0), "you averaged over the K samples (divided "
                 "by K): the weights already set each sample's share, so sum over k."),
                ((torch.softmax(-log_w, 0).square()[:, None] * grads).sum(0), "your weights come "
                 "from softmax(-log w), largest for the smallest w_k: the sign of log w is "
                 "flipped."),
                ((torch.softmax(2 * log_w, 0)[:, None] * grads).sum(0), "you normalized the "
                 "squared weights (softmax of 2 log w); square the normalized weights instead: "
                 "w̃_k² does not sum to 1."),
                (grads.mean(0), "you averaged with equal weights 1/K: DReG weighs each sample by "
                 "its self-normalized weight w̃_k, in some power."),
                ((log_w.exp().square()[:, None] * grads).sum(0), "you squared the unnormalized "
                 "weights; normalize first: w̃_k = w_k / Σ_j w_j."),
                (w.square().sum() * grads.sum(0), "each sample's gradient gets its own weight: "
                 "multiply row k by sample k's weight, then sum over k."),
            ]), formula="Σ_k w̃_k² path_grads[k], w̃ = softmax(log w) over the K samples.")
        _check_at_mnist_scale(fn, square=True)
        return "DReG: Σ_k w̃_k² ∂_z log w_k ∂z_k/∂φ (unbiased, and its SNR grows with K)."

    return run_check("dreg_encoder_gradient", dreg_encoder_gradient, body)
