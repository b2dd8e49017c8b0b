"""The machinery every exercise check shares: run the student's answer safely and print a verdict.

A check never raises: it prints one of

- ``✅ <name>: correct. <detail>``
- ``❌ <name>: not yet. <hint>``  (a hint naming what looks wrong: a sign, a factor of 2, σ for σ²)
- ``⏳ <name>: not attempted yet. <what to do>``  (the answer is ``...``/``None`` or raises
  ``NotImplementedError``)

and returns ``True`` only when the answer passed, so a notebook cell can ``assert`` on a reference
solution while a student's unfinished stub still runs to the end of the chapter.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch

__all__ = ["ExerciseFailed", "NotAttempted", "run_check", "close", "as_float64", "diagnose",
           "first_ratio", "require_callable", "returned_value"]


class NotAttempted(Exception):
    """Raised inside a check when the student has not written an answer yet."""


class ExerciseFailed(Exception):
    """Raised inside a check with the hint to show the student."""


def _is_stub(answer: Any) -> bool:
    return answer is None or answer is Ellipsis


def run_check(name: str, answer: Any, body: Callable[[Any], str | None]) -> bool:
    """Run ``body(answer)`` and print a verdict; never raise.

    ``body`` returns an optional detail string on success and raises :class:`ExerciseFailed` (with
    a hint) when the answer is wrong. A ``NotImplementedError`` or a stub answer (``...``/``None``)
    means "not attempted yet"; any other exception is reported as a hint, without a traceback.
    """
    try:
        if _is_stub(answer):
            raise NotAttempted
        detail = body(answer)
    except (NotAttempted, NotImplementedError):
        print(f"⏳ {name}: not attempted yet. Replace the `...` / `raise NotImplementedError` "
              "with your answer and run this cell again.")
        return False
    except ExerciseFailed as failure:
        print(f"❌ {name}: not yet. {failure}")
        return False
    except Exception as err:  # the student's code crashed: say how, without a traceback
        print(f"❌ {name}: not yet. Your code raised {type(err).__name__}: {err}")
        return False
    print(f"✅ {name}: correct." + (f" {detail}" if detail else ""))
    return True


def as_float64(value: Any) -> torch.Tensor:
    """The student's answer as a float64 tensor (numbers, NumPy arrays and tensors accepted)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float64)
    try:
        return torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ExerciseFailed(
            f"expected a number or an array of numbers, got {type(value).__name__}."
        ) from err


def close(got: Any, want: torch.Tensor, rtol: float = 1e-6, atol: float = 1e-8) -> bool:
    """Whether ``got`` matches ``want`` in shape and value (after conversion to float64)."""
    got = as_float64(got)
    want = as_float64(want)
    if got.shape != want.shape:
        raise ExerciseFailed(f"expected shape {tuple(want.shape)}, got {tuple(got.shape)}.")
    if not torch.isfinite(got).all():
        raise ExerciseFailed("your answer contains NaN or infinity; look for log(0) or exp overflow "
                             "(the log-sum-exp trick helps).")
    return bool(torch.allclose(got, want, rtol=rtol, atol=atol))


def first_ratio(got: Any, want: Any) -> float:
    """got / want for scalar-like answers, used to spot factor-of-2 and sign mistakes."""
    got_f = float(as_float64(got).flatten()[0])
    want_f = float(as_float64(want).flatten()[0])
    return got_f / want_f if want_f != 0 else math.inf


def diagnose(got: Any, want: Any, extra: Iterable[tuple[Any, str]] = ()) -> str:
    """A hint for a wrong answer: checks common slips (sign, factor 2 or 1/2) and ``extra`` pairs of
    (wrong_reference_value, hint) supplied by the check, then falls back to the size of the error."""
    got_t, want_t = as_float64(got), as_float64(want)
    for wrong, hint in extra:
        wrong_t = as_float64(wrong)
        if wrong_t.shape == got_t.shape and torch.allclose(got_t, wrong_t, rtol=1e-5, atol=1e-8):
            return hint
    if got_t.shape == want_t.shape:
        if torch.allclose(got_t, -want_t, rtol=1e-5, atol=1e-8):
            return "your answer has the wrong sign."
        if torch.allclose(got_t, 2 * want_t, rtol=1e-5, atol=1e-8):
            return "your answer is twice the right value: look for a missing factor ½."
        if torch.allclose(got_t, 0.5 * want_t, rtol=1e-5, atol=1e-8):
            return "your answer is half the right value: look for an extra factor ½."
        err = (got_t - want_t).abs().max().item()
        return f"the largest difference from the right value is {err:.3g}."
    return f"expected shape {tuple(want_t.shape)}, got {tuple(got_t.shape)}."


# --------------------------------------------------------------- answers that are functions

def require_callable(answer: Any, signature: str) -> None:
    """The answer must be the function itself (``signature`` says how it is called)."""
    if not callable(answer):
        raise ExerciseFailed(
            f"pass the function itself, {signature}, not its result (no parentheses after "
            "its name)."
        )


def returned_value(value: Any) -> Any:
    """What the student's function returned; a body still ``...``/``pass`` returns None: not
    attempted yet."""
    if value is None or value is Ellipsis:
        raise NotAttempted
    return value
