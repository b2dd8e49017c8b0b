"""Self-checks for chapter 04 (Jensen's inequality, the ELBO and the IWAE bound).

See :mod:`vaelib.exercises._core` for the verdicts (✅ / ❌ with a hint / ⏳ not attempted).
The log-weight checks run the student's function on several log-weight matrices ``log_w`` of
shape ``(K, N)`` (K samples on dim 0, N data points on dim 1), including values far from 0
(around -1000 and +800) where a naive ``log(mean(exp(log_w)))`` underflows or overflows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ._core import ExerciseFailed, as_float64, close, diagnose, forbidden_calls, run_check
from .ch02 import _LIBRARY_LOGSUMEXP, _library_name

__all__ = ["check_elbo_from_log_weights", "check_iwae_from_log_weights", "check_which_is_larger"]

F64 = torch.float64


def _log_weight_cases() -> list[tuple[str, torch.Tensor]]:
    """(description, log_w (K, N)) pairs; K != N everywhere so a wrong axis changes the shape."""
    g = torch.Generator().manual_seed(404)
    return [
        ("K = 7 samples, N = 3 data points", 2.0 * torch.randn(7, 3, generator=g, dtype=F64) - 5.0),
        ("K = 1 sample, N = 4 data points", torch.randn(1, 4, generator=g, dtype=F64) - 3.0),
        ("K = 50, N = 2, log-weights around -1000 (exp underflows to 0)",
         3.0 * torch.randn(50, 2, generator=g, dtype=F64) - 1000.0),
        ("K = 20, N = 3, log-weights around +800 (exp overflows to inf)",
         3.0 * torch.randn(20, 3, generator=g, dtype=F64) + 800.0),
        (_MIXED, 3.0 * torch.randn(30, 2, generator=g, dtype=F64)
         + torch.tensor([-1000.0, 800.0], dtype=F64)),
    ]


_MIXED = "K = 30, N = 2, one data point's log-weights around -1000 and the other's around +800"


def _call(fn: Any, log_w: torch.Tensor) -> torch.Tensor:
    if not callable(fn):
        raise ExerciseFailed(f"pass your function itself (e.g. check(my_function)), got a "
                             f"{type(fn).__name__}.")
    return as_float64(fn(log_w.clone()))  # a copy: an in-place edit cannot change our reference


def _check_shape(got: torch.Tensor, log_w: torch.Tensor, case: str) -> None:
    K, N = log_w.shape
    if got.shape == (N,):
        return
    if got.shape == (K,) or (K == 1 and got.shape == (1,)):
        raise ExerciseFailed(f"on the case '{case}': your answer has shape {tuple(got.shape)}: you "
                             "reduced over dim 1, the data points. The K samples are on dim 0; "
                             "return one value per data point, shape (N,).")
    if got.dim() == 0:
        raise ExerciseFailed(f"on the case '{case}': your answer is a single number: reduce over "
                             "the K samples only (dim 0) and keep one value per data point, "
                             "shape (N,).")
    raise ExerciseFailed(f"on the case '{case}': expected shape ({N},) (one value per data point), "
                         f"got {tuple(got.shape)}.")


def _reference_iwae(log_w: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


def check_elbo_from_log_weights(fn: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    """Check ``fn(log_w) -> (N,)``: the Monte Carlo ELBO ``(1/K) Σ_k log w_k`` for each data point.

    ``log_w`` has shape ``(K, N)``: ``log w_k = log p(x, z_k) - log q(z_k|x)`` with ``z_k ~ q``.
    """

    def body(fn: Any) -> str:
        for case, log_w in _log_weight_cases():
            got = _call(fn, log_w)
            _check_shape(got, log_w, case)
            want = log_w.mean(dim=0)
            if close(got, want, rtol=1e-9, atol=1e-9):
                continue
            K = log_w.shape[0]
            hint = diagnose(
                got,
                want,
                extra=[
                    (
                        _reference_iwae(log_w),
                        "that is the log of the mean weight, log (1/K) Σ w_k: the "
                        "IWAE bound. The ELBO is the mean of the logs, (1/K) Σ log w_k.",
                    ),
                    (
                        log_w.sum(dim=0),
                        f"you summed the K = {K} log-weights: the ELBO estimate is "
                        "their average (divide by K).",
                    ),
                    (
                        torch.logsumexp(log_w, dim=0),
                        "that is log Σ_k w_k (a log-sum-exp), not an average of log-weights.",
                    ),
                    (
                        log_w.exp().mean(dim=0),
                        "that is the mean weight (1/K) Σ w_k, an estimate of "
                        "p(x): the ELBO averages the logs log w_k.",
                    ),
                ],
            )
            raise ExerciseFailed(f"on the case '{case}': {hint}")
        return "The ELBO estimate averages the log-weights over the K samples, one per data point."

    return run_check("elbo_from_log_weights", fn, body)


def check_iwae_from_log_weights(fn: Callable[[torch.Tensor], torch.Tensor]) -> bool:
    """Check ``fn(log_w) -> (N,)``: ``log (1/K) Σ_k exp(log w_k)``, computed stably.

    ``log_w`` has shape ``(K, N)``; the cases include log-weights near -1000 and +800, where
    ``exp`` underflows to 0 or overflows to inf unless the maximum is subtracted first.
    """

    def body(fn: Any) -> str:
        for case, log_w in _log_weight_cases():
            with forbidden_calls("logsumexp", "log_softmax", "softmax",
                                 others=_LIBRARY_LOGSUMEXP()) as used:
                got = _call(fn, log_w)
            _check_shape(got, log_w, case)
            want = _reference_iwae(log_w)
            if not torch.isfinite(got).all():
                where = ("one maximum over the whole tensor is not enough: it is ~1800 above the "
                         "first data point's log-weights, whose exp then underflows to 0. Take the "
                         "maximum over dim 0, one per data point. " if case == _MIXED else "")
                raise ExerciseFailed(
                    f"on the case '{case}': your answer contains inf or NaN: exp(log_w) "
                    f"underflowed or overflowed. {where}Use the log-sum-exp trick: subtract the "
                    "maximum m over the K samples of each data point before exp, and add it back "
                    "after the log.",
                    formula="log (1/K) Σ_k exp(log w_k) = m + log (1/K) Σ_k exp(log w_k - m).")
            if close(got, want, rtol=1e-9, atol=1e-9):
                if used:
                    raise ExerciseFailed(f"the values are right, but your function calls "
                                         f"{_library_name(used[0])}, which computes the "
                                         "log-sum-exp for you: this exercise asks you to write it "
                                         "yourself (subtract the maximum over dim 0 first).")
                continue
            K = log_w.shape[0]
            hint = diagnose(got, want, extra=[
                (log_w.mean(dim=0), "that is the mean of the logs, the ELBO. The IWAE bound takes "
                 "the log of the mean weight: log (1/K) Σ_k exp(log w_k)."),
                (torch.logsumexp(log_w, dim=0), f"that is log Σ_k w_k: subtract log K (= log {K}) "
                 "to get the log of the mean weight."),
                (torch.logsumexp(log_w, dim=0) + math.log(K), "you added log K: the mean is the "
                 "sum divided by K, so subtract log K."),
                (log_w.max(dim=0).values, "that is only the largest log-weight m: the other "
                 "weights count too (add the log of the mean of exp(log w_k - m))."),
                (log_w.max(dim=0).values - math.log(K), "you kept only the largest weight: the "
                 "other weights contribute too."),
            ])
            raise ExerciseFailed(f"on the case '{case}': {hint}")
        return ("log (1/K) Σ w_k computed stably; with K = 1 it is the single log-weight, so "
                "IWAE_1 = ELBO.")

    return run_check("iwae_from_log_weights", fn, body)


# (the right answer, the explanation shown when a student gets it wrong)
_LARGER = {
    1: ("B", "Jensen's inequality: log is concave, so the log of an average is at least the "
             "average of the logs, log E_q[w] >= E_q[log w], with equality only when w is "
             "constant."),
    2: ("B", "IWAE_K never decreases with K (Burda et al., 2015): the average of K + 1 weights is "
             "an average of K-sample averages over subsets, and Jensen applies to that average. "
             "IWAE_1 is the ELBO."),
    3: ("A", "every IWAE_K is a lower bound: IWAE_K = E[log p̂_K] <= log E[p̂_K] = log p(x), "
             "because p̂_K = (1/K) Σ w_k is unbiased for p(x)."),
    4: ("either", "the bound holds for the expectation, not for one draw. E_q[w] = p(x), so unless "
                  "w is constant some weights lie above p(x) and some below: a single log-weight "
                  "can be on either side of log p(x)."),
    5: ("A", "ELBO = E_q[log p(x|z)] - KL(q(z|x) ‖ p(z)) and a KL divergence is >= 0, so the "
             "reconstruction term is at least the ELBO."),
    6: ("either", "E_q[log p(x|z)] - log p(x) = KL(q(z|x) ‖ p(z)) - KL(q(z|x) ‖ p(z|x)), and "
                  "either KL can be the larger: with q the exact posterior the reconstruction term "
                  "exceeds log p(x) (by KL(p(z|x) ‖ p(z))); with q = p(z), the prior, it falls "
                  "below."),
}
_CHOICES = ("A", "B", "either")


def _normalize_answers(answers: Any) -> dict[int, str]:
    if isinstance(answers, (list, tuple)):
        answers = dict(enumerate(answers, start=1))
    if not isinstance(answers, dict):
        raise ExerciseFailed(f"answers should be a dict {{question number: 'A', 'B' or 'either'}}, "
                             f"got a {type(answers).__name__}.")
    normalized: dict[int, str] = {}
    for key, value in answers.items():
        try:
            number = int(key)
        except (TypeError, ValueError):
            raise ExerciseFailed(f"the keys are the question numbers 1 to {len(_LARGER)}, got "
                                 f"{key!r}.") from None
        if number not in _LARGER:
            raise ExerciseFailed(f"there is no question {number}: the questions are numbered 1 to "
                                 f"{len(_LARGER)}.")
        choice = {c.lower(): c for c in _CHOICES}.get(str(value).strip().lower())
        if choice is None:
            raise ExerciseFailed(f"answer question {number} with 'A', 'B' or 'either', "
                                 f"got {value!r}.")
        normalized[number] = choice
    missing = sorted(set(_LARGER) - set(normalized))
    if missing:
        raise ExerciseFailed(f"answer every question: missing {', '.join(map(str, missing))}.")
    return normalized


def check_which_is_larger(answers: dict[int, str] | list[str]) -> bool:
    """Check the answers to "which of A and B can never be the smaller one?".

    ``answers`` is a dict mapping each question number (1-6) to ``'A'``, ``'B'`` or ``'either'``
    (when either can be larger, depending on the model, x, q or the random draw), or a list of
    the six answers in question order.
    """

    def body(answers: Any) -> str:
        given = _normalize_answers(answers)
        wrong = [n for n in sorted(_LARGER) if given[n] != _LARGER[n][0]]
        if wrong:
            first = wrong[0]
            right = len(_LARGER) - len(wrong)
            raise ExerciseFailed(f"{right} of {len(_LARGER)} right. Think again about question "
                                 f"{first}: {_LARGER[first][1]}")
        return ("All six: log E[w] >= E[log w] (Jensen), ELBO = IWAE_1 <= IWAE_K <= log p(x) in "
                "expectation, and single draws can land on either side.")

    return run_check("which_is_larger", answers, body)
