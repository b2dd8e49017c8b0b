"""Self-checks for chapter 11 (a richer q(z|x): normalizing flows). See :mod:`._core`.

- :func:`check_planar_log_det`: the planar map's
  ``log |det ∂f/∂z| = log |1 + tanh'(wᵀz + b) ûᵀw|``, by the matrix determinant lemma (no
  autograd, no determinant of the d × d Jacobian, no :mod:`vaelib.flows`);
- :func:`check_push_forward`: a chain of planar maps applied to ``z_0 = μ + σ ⊙ ε``, and the
  density of its output, ``log q_L(z_L) = log q_0(z_0) − Σ_l log |det ∂f_l/∂z_{l-1}|``.

The references are written here from the formulas and checked, in ``tests/test_exercises_ch11.py``,
against the log |det| of ``torch.autograd.functional.jacobian``. Each check runs fixed cases and one
drawn at random on every call (its dimension, its number of maps, its parameters), so no table of
answers passes.
"""

from __future__ import annotations

import importlib
import math
import os
import random
from typing import Any

import torch
import torch.nn.functional as F

from ._core import (
    ExerciseFailed,
    NotAttempted,
    as_float64,
    close,
    diagnose,
    forbidden_calls,
    run_check,
)

__all__ = ["check_planar_log_det", "check_push_forward"]

DT = torch.float64
LOG_2PI = math.log(2 * math.pi)

#: torch operators that compute a determinant (the exercise asks for the O(d) lemma instead).
_DETERMINANTS = ("det", "logdet", "slogdet", "linalg_det", "linalg_slogdet")


def _explain(got: Any, want: torch.Tensor, slips: list[tuple[torch.Tensor, str]],
             nonfinite: str) -> str:
    """A hint for a wrong answer; where it is NaN or infinite (a log of a negative number, say),
    its finite entries are compared with the slips first."""
    got_t = as_float64(got)
    if got_t.shape == want.shape and not torch.isfinite(got_t).all():
        finite = torch.isfinite(got_t)
        for wrong, hint in slips:
            if finite.any() and torch.allclose(got_t[finite], wrong[finite], rtol=1e-5, atol=1e-8):
                return f"{hint} (Your answer is also NaN or infinite where that goes negative.)"
        return nonfinite
    return diagnose(got_t, want, extra=slips)


def _nonfinite(got: Any, want: torch.Tensor) -> bool:
    """Whether ``got`` has ``want``'s shape and a NaN or infinite entry (see :func:`_explain`)."""
    got_t = as_float64(got)
    return got_t.shape == want.shape and not bool(torch.isfinite(got_t).all())


def _callable(answer: Any, signature: str) -> None:
    if not callable(answer):
        raise ExerciseFailed(f"pass the function itself, {signature}, not its result (no "
                             "parentheses after its name).")


def _result(value: Any) -> Any:
    """A function whose body is still ``...``/``pass`` returns None: not attempted yet."""
    if value is None or value is Ellipsis:
        raise NotAttempted
    return value


def _flow_shortcuts() -> list[tuple[Any, str]]:
    """Every function and method of :mod:`vaelib.flows` (the library's answers), if it exists."""
    try:
        flows = importlib.import_module("vaelib.flows")
    except ImportError:  # the module is optional here: nothing to forbid without it
        return []
    found: list[tuple[Any, str]] = []
    for name, value in vars(flows).items():
        if getattr(value, "__module__", None) != flows.__name__:
            continue  # imported from elsewhere (torch, vaelib.gaussian): not the flows' code
        if isinstance(value, type):
            found += [(value, attr) for attr, member in vars(value).items()
                      if callable(member) or isinstance(member, property)]
        elif callable(value):
            found.append((flows, name))
    return found


def _autograd() -> list[tuple[Any, str]]:
    return [(torch.autograd, "grad"), (torch.autograd, "backward"), (torch.Tensor, "backward"),
            (torch.autograd.functional, "jacobian")]


def _shortcut_message(used: list[str]) -> str:
    name = used[0]
    if name.split(".")[-1] in _DETERMINANTS or name in _DETERMINANTS:
        return (f"your function calls {name}: a determinant of the d × d Jacobian costs O(d³); the "
                "exercise asks for the matrix determinant lemma, which gives it in O(d).")
    if "autograd" in name or name in ("run_backward", "Tensor.backward"):
        return (f"your function calls autograd ({name}): the exercise asks you to differentiate "
                "the map by hand and write its determinant.")
    return (f"your function calls {name}, the library's flow (vaelib.flows): the exercise asks you "
            "to write it yourself.")


def _watched():
    return forbidden_calls(*_DETERMINANTS, others=_flow_shortcuts() + _autograd(),
                           c_names=["run_backward"])


def _fresh_random() -> random.Random:
    """A generator seeded from the operating system on every call: a case no table can list."""
    return random.Random(os.urandom(16))


def _u_hat_of(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """û for raw u, w ``(d,)``: wᵀû ≥ −1 (Rezende & Mohamed, 2015, appendix A)."""
    wu = (w * u).sum()
    return u + ((-1 + F.softplus(wu)) - wu) * w / w.square().sum()


def _planar_params(g: torch.Generator, d: int, scale: float = 1.0):
    """(û, w, b) of one planar map: raw u, w ~ N(0, scale²), b ~ N(0, 1), û from the constraint."""
    u = scale * torch.randn(d, generator=g, dtype=DT)
    w = scale * torch.randn(d, generator=g, dtype=DT)
    b = torch.randn((), generator=g, dtype=DT)
    return _u_hat_of(u, w), w, b


# ------------------------------------------------------------------------- the planar log-det

def _planar_reference(z, u_hat, w, b, *, derivative=True, identity=True, bias=True,
                      inner=None, sign=1.0, take_log=True):
    """log |1 + tanh'(wᵀz + b) ûᵀw|, and the slips a student makes (keyword switches): (K,)."""
    a = z @ w + (b if bias else 0.0)  # (K,)
    h = 1 - torch.tanh(a).square() if derivative is True else derivative(a)
    dot = (u_hat * w).sum() if inner is None else inner
    det = (1.0 if identity else 0.0) + sign * h * dot
    return det.abs().log() if take_log else det


def _planar_cases() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(z (K, d), û, w, b): fixed seeds, one with wᵀû close to −1, one drawn at random."""
    cases = []
    for seed, (K, d) in enumerate([(7, 2), (5, 1), (6, 5)]):
        g = torch.Generator().manual_seed(1100 + seed)
        u_hat, w, b = _planar_params(g, d)
        cases.append((torch.randn(K, d, generator=g, dtype=DT), u_hat, w, b))
    g = torch.Generator().manual_seed(1110)  # a contracting map: wᵀû = -0.9, det near 0.1
    w = torch.tensor([0.8, -0.6], dtype=DT)
    u_hat = -0.9 * w + 0.7 * torch.tensor([0.6, 0.8], dtype=DT)
    cases.append((0.3 * torch.randn(8, 2, generator=g, dtype=DT), u_hat, w,
                  torch.tensor(0.1, dtype=DT)))
    rng = _fresh_random()
    g = torch.Generator().manual_seed(rng.randrange(2**62))
    d, K = rng.randint(1, 6), rng.randint(3, 9)
    u_hat, w, b = _planar_params(g, d, scale=rng.uniform(0.5, 2.0))
    cases.append((torch.randn(K, d, generator=g, dtype=DT), u_hat, w, b))
    return cases


def _planar_slips(z, u_hat, w, b) -> list[tuple[torch.Tensor, str]]:
    ref = _planar_reference
    return [
        (ref(z, u_hat, w, b, derivative=torch.tanh), "you used tanh(wᵀz + b) itself: the Jacobian "
         "of f needs the derivative of tanh at wᵀz + b."),
        (ref(z, u_hat, w, b, derivative=lambda a: 1 - torch.tanh(a)), "the derivative of tanh is "
         "1 − tanh², not 1 − tanh."),
        (ref(z, u_hat, w, b, identity=False), "you dropped the identity: f(z) = z + û h(·), so its "
         "Jacobian is I + tanh' û wᵀ, and the lemma gives 1 + (...), not (...) alone."),
        (ref(z, u_hat, w, b, take_log=False), "that is the determinant itself: return its log "
         "(of its absolute value)."),
        (ref(z, u_hat, w, b, bias=False), "you left b out of tanh'(wᵀz + b)."),
        (ref(z, u_hat, w, b, sign=-1.0), "a sign slip: det(I + tanh' û wᵀ) = 1 + tanh' wᵀû, with a "
         "plus."),
        (ref(z, u_hat, w, b, inner=w.square().sum()), "you used wᵀw: the determinant lemma gives "
         "det(I + a bᵀ) = 1 + bᵀa, here the inner product of û and w."),
        (ref(z, u_hat, w, b, inner=u_hat.square().sum()), "you used ûᵀû: the determinant lemma "
         "gives det(I + a bᵀ) = 1 + bᵀa, here the inner product of û and w."),
    ]


_PLANAR_NONFINITE = (
    "your answer is NaN or infinite: a log of a negative number or of 0? With wᵀû ≥ −1 the "
    "determinant 1 + tanh' ûᵀw is positive as long as 0 < tanh' ≤ 1 (the derivative of tanh "
    "is) and the 1 that the identity contributes is there.")


def check_planar_log_det(planar_log_det: Any) -> bool:
    """Check ``planar_log_det(z (K, d), u_hat (d,), w (d,), b ()) -> (K,)``: the log |det| of the
    Jacobian of ``f(z) = z + û tanh(wᵀz + b)`` at each of the K points."""

    def body(fn: Any) -> str:
        _callable(fn, "planar_log_det(z, u_hat, w, b)")
        for z, u_hat, w, b in _planar_cases():
            with _watched() as used:
                got = _result(fn(z.clone(), u_hat.clone(), w.clone(), b.clone()))
            if used:
                raise ExerciseFailed(_shortcut_message(used))
            want = _planar_reference(z, u_hat, w, b)
            if got is not None and as_float64(got).shape == z.shape:
                raise ExerciseFailed(f"expected shape {tuple(want.shape)}, one log-determinant per "
                                     f"point, got {tuple(z.shape)}: the determinant is one number "
                                     "for each z_k, not one per coordinate.")
            case = f"(d = {z.shape[-1]}, K = {z.shape[0]}) "
            if _nonfinite(got, want) or not close(got, want, rtol=1e-8, atol=1e-10):
                raise ExerciseFailed(
                    case + _explain(got, want, _planar_slips(z, u_hat, w, b), _PLANAR_NONFINITE),
                    formula="log |1 + (1 − tanh²(wᵀz + b)) ûᵀw|, for each row z_k.")
        return ("log |det(I + tanh' û wᵀ)| = log |1 + tanh'(wᵀz + b) ûᵀw| (the matrix "
                "determinant lemma: O(d), not O(d³)).")

    return run_check("planar_log_det", planar_log_det, body)


# ---------------------------------------------------------------- the push-forward of a chain

def _push_forward_reference(eps, mean, logvar, maps, *, det_sign=-1.0, base_at_output=False,
                            det_at_output=False, last_only=False, reverse=False,
                            base_scale=True):
    """(z_L, log q_L(z_L)) for z_0 = μ + σ ⊙ ε through planar maps, and the slips (switches)."""
    std = torch.exp(0.5 * logvar)
    z = mean + std * eps  # z_0, (K, d)
    # log q_0(z_0) = log N(ε; 0, I) − Σ_j log σ_j
    log_q = -0.5 * (eps.square() + LOG_2PI).sum(-1) - (0.5 * logvar.sum() if base_scale else 0.0)
    log_dets = []
    for u_hat, w, b in (list(reversed(maps)) if reverse else maps):
        new = z + u_hat * torch.tanh(z @ w + b)[:, None]  # f_l(z_{l-1})
        log_dets.append(_planar_reference(new if det_at_output else z, u_hat, w, b))
        z = new
    if last_only:
        log_dets = log_dets[-1:]
    total = sum(log_dets) if log_dets else torch.zeros(len(z), dtype=DT)
    if base_at_output:
        log_q = (-0.5 * ((z - mean) / std).square() - 0.5 * LOG_2PI - 0.5 * logvar).sum(-1)
    return z, log_q + det_sign * total


def _push_cases():
    """(ε (K, d), μ, log σ², maps): fixed seeds, L = 0, and one drawn at random on every call."""
    shapes = [(6, 2, 3), (5, 1, 2), (4, 3, 0), (5, 4, 5)]  # (K, d, L)
    cases = []
    for seed, (K, d, L) in enumerate(shapes):
        g = torch.Generator().manual_seed(1120 + seed)
        cases.append(_push_case(g, K, d, L))
    rng = _fresh_random()
    g = torch.Generator().manual_seed(rng.randrange(2**62))
    cases.append(_push_case(g, rng.randint(3, 8), rng.randint(1, 5), rng.randint(2, 6)))
    return cases


def _push_case(g, K, d, L):
    eps = torch.randn(K, d, generator=g, dtype=DT)
    mean = torch.randn(d, generator=g, dtype=DT)
    logvar = torch.empty(d, dtype=DT).uniform_(-1.5, 1.0, generator=g)
    maps = [_planar_params(g, d, scale=1.2) for _ in range(L)]
    return eps, mean, logvar, maps


def _push_slips(eps, mean, logvar, maps) -> list[tuple[torch.Tensor, str]]:
    def ref(*args, **switches):
        return _push_forward_reference(*args, **switches)[1]  # log q_L only

    L = len(maps)
    slips = [
        (ref(eps, mean, logvar, maps, det_sign=1.0), "you added the log-determinants: a map that "
         "stretches space spreads the same mass thinner, so subtract them."),
        (ref(eps, mean, logvar, maps, base_at_output=True), "you evaluated the base density q_0 at "
         "z_L: q_0 is the density of z_0 (the point before the maps)."),
        (ref(eps, mean, logvar, maps, base_scale=False), "log q_0(z_0) is log N(ε; 0, I) minus "
         "Σ_j log σ_j: z_0 = μ + σ ⊙ ε is itself a map of ε, with its own log-determinant."),
    ]
    if L >= 1:
        slips.append((ref(eps, mean, logvar, maps, det_at_output=True), "each map's log |det| "
                      "belongs at its own input z_{l-1}, not at its output z_l."))
    if L >= 2:
        slips += [
            (ref(eps, mean, logvar, maps, last_only=True), "you kept only the last map's "
             "log-determinant: every map of the chain contributes one."),
            (ref(eps, mean, logvar, maps, reverse=True), "you applied the maps in reverse order: "
             "maps[0] acts first, on z_0."),
        ]
    return slips


_PUSH_NONFINITE = (
    "your log q_L is NaN or infinite: a log of a negative number or of 0? Each map's determinant "
    "1 + tanh' ûᵀw is positive (wᵀû ≥ −1, 0 < tanh' ≤ 1), and log q_0 needs no log of logvar.")


def check_push_forward(push_forward: Any) -> bool:
    """Check ``push_forward(eps (K, d), mean (d,), logvar (d,), maps) -> (z_L (K, d), log_q (K,))``
    for ``maps`` a list of planar maps' ``(u_hat, w, b)``, applied in order to ``z_0``."""

    def body(fn: Any) -> str:
        _callable(fn, "push_forward(eps, mean, logvar, maps)")
        for eps, mean, logvar, maps in _push_cases():
            args = (eps.clone(), mean.clone(), logvar.clone(),
                    [tuple(t.clone() for t in m) for m in maps])
            with _watched() as used:
                got = _result(fn(*args))
            if used:
                raise ExerciseFailed(_shortcut_message(used))
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise ExerciseFailed("return two things, (z_L, log_q): the points after the last "
                                     "map, (K, d), and their log-density, (K,).")
            z_got, log_q_got = got
            z_want, log_q_want = _push_forward_reference(eps, mean, logvar, maps)
            case = f"(d = {eps.shape[-1]}, L = {len(maps)} maps) "
            if not close(_result(z_got), z_want, rtol=1e-8, atol=1e-10):
                z0 = mean + torch.exp(0.5 * logvar) * eps
                raise ExerciseFailed(case + "z_L: " + diagnose(z_got, z_want, extra=[
                    (z0, "you returned z_0: apply every map, z_l = f_l(z_{l-1})."),
                    (_push_forward_reference(eps, mean, logvar, maps, reverse=True)[0],
                     "you applied the maps in reverse order: maps[0] acts first, on z_0."),
                    (mean + logvar * eps, "logvar is log σ²: z_0 = μ + exp(½ logvar) ⊙ ε.")]))
            log_q_got = _result(log_q_got)
            if _nonfinite(log_q_got, log_q_want) or not close(log_q_got, log_q_want, rtol=1e-8,
                                                              atol=1e-9):
                raise ExerciseFailed(
                    case + "log q_L: " + _explain(log_q_got, log_q_want,
                                                  _push_slips(eps, mean, logvar, maps),
                                                  _PUSH_NONFINITE),
                    formula="log q_L(z_L) = log N(ε; 0, I) − ½ Σ_j log σ_j² − Σ_l log |1 + "
                            "tanh'(w_lᵀz_{l-1} + b_l) û_lᵀw_l|.")
        return "log q_L(z_L) = log q_0(z_0) − Σ_l log |det ∂f_l/∂z_{l-1}|, each at its own input."

    return run_check("push_forward", push_forward, body)
