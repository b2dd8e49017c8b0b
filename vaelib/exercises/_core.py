"""The machinery every exercise check shares: run the student's answer safely and print a verdict.

A check never raises: it prints one of

- ``✅ <name>: correct. <detail>``
- ``❌ <name>: not yet. <hint>``  (a hint naming what looks wrong: a sign, a factor of 2, σ for σ²)
- ``⏳ <name>: not attempted yet. <what to do>``  (the answer is ``...``/``None`` or raises
  ``NotImplementedError``)

and returns ``True`` only when the answer passed, so a notebook cell can ``assert`` on a reference
solution while a student's unfinished stub still runs to the end of the chapter.

Three guards hold for every check: an answer that does not return within :data:`TIME_LIMIT_S`
seconds (an endless loop) gets a hint instead of hanging the notebook; a complex answer is refused
(an imaginary part is never right here); and an answer computed in a lower precision (float32) is
compared at that precision's tolerance, with a note saying so when it still differs. When the
student's code raises, the hint shows the line of their code that failed.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import sys
import sysconfig
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

__all__ = [
    "ExerciseFailed",
    "NotAttempted",
    "run_check",
    "refuse_as_answer",
    "close",
    "as_float64",
    "diagnose",
    "first_ratio",
    "require_callable",
    "returned_value",
    "TIME_LIMIT_S",
    "NONFINITE_HINT",
    "forbidden_calls",
    "low_precision",
]

#: Seconds the student's function may run, over all its calls in one check, before the check stops
#: it and prints a hint.
TIME_LIMIT_S = 10.0

#: The non-finite hint when an exercise supplies none of its own.
NONFINITE_HINT = ("your answer contains NaN or infinity: look for a log or square root of a "
                  "negative number or of 0, a division by 0, or an exp that overflows.")

#: Relative tolerance at which an answer computed in float32 (or lower) is compared.
LOW_PRECISION_RTOL = 1e-5

_LOW_PRECISION = (torch.float32, torch.float16, torch.bfloat16)
_state = threading.local()


class NotAttempted(Exception):
    """Raised inside a check when the student has not written an answer yet."""


class ExerciseFailed(Exception):
    """Raised inside a check with the hint to show the student.

    A hint names the slip without giving the whole answer away; ``formula``, when given, is shown
    only once the same check has failed :data:`REVEAL_AFTER` times in this session.
    """

    def __init__(self, hint: str, *, formula: str | None = None) -> None:
        super().__init__(hint)
        self.formula = formula


#: Failed tries of one check after which a hint may show the whole formula.
REVEAL_AFTER = 3
_failures: dict[str, int] = {}


def _is_stub(answer: Any) -> bool:
    return answer is None or answer is Ellipsis


class _TimedOut(BaseException):
    """Raised in the check's thread when the answer runs past the time limit (a BaseException, so
    the student's own ``except Exception`` cannot swallow it)."""


#: Once the time limit is reached, the stop is raised again every this many seconds until the answer
#: returns: a student's bare ``except:`` (a "retry until it works" loop) cannot swallow it for good.
_REPEAT_S = 0.05


def _call_with_time_limit(fn: Callable[..., Any], args: tuple, kwargs: dict, limit: float) -> Any:
    """``fn(*args, **kwargs)``, interrupted after ``limit`` seconds.

    On the main thread of a platform with ``SIGALRM`` (Linux, macOS: where notebooks run their
    cells) a repeating timer signal raises :class:`_TimedOut` in the call, again and again until it
    escapes; elsewhere the call runs in a daemon thread that is stopped the same way (an
    asynchronous exception, repeated until the thread ends) while the check reports at once.
    The forbidden-call watchers of the calling thread (:func:`forbidden_calls`) follow the call.
    """
    if limit <= 0:
        raise _TimedOut
    watchers = list(getattr(_state, "watchers", ()))
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        running = [True]

        def on_alarm(signum: int, frame: Any) -> None:
            if running[0]:
                _trace_to_stop(frame, running)
                raise _TimedOut

        start = time.monotonic()
        previous_trace = sys.gettrace()
        previous_handler = signal.signal(signal.SIGALRM, on_alarm)
        previous_delay, previous_interval = signal.setitimer(signal.ITIMER_REAL, limit, _REPEAT_S)
        try:
            return fn(*args, **kwargs)
        finally:
            running[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            if sys.gettrace() is not previous_trace:
                sys.settrace(previous_trace)
            signal.signal(signal.SIGALRM, previous_handler)
            if previous_delay > 0:  # someone else's timer was running: give back what is left of it
                left = max(previous_delay - (time.monotonic() - start), 1e-3)
                signal.setitimer(signal.ITIMER_REAL, left, previous_interval)
    outcome: dict[str, Any] = {}

    def target() -> None:
        sys.settrace(_no_trace)  # lets _stop_thread trace this thread's frames when it must stop it
        try:
            with _watching(watchers):
                outcome["value"] = fn(*args, **kwargs)
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = err

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(limit)
    if worker.is_alive():
        threading.Thread(target=_stop_thread, args=(worker,), daemon=True).start()
        raise _TimedOut
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


_CALLERS = ("_call_with_time_limit", "target")  # where the student's call starts


def _no_trace(frame: Any, event: str, arg: Any) -> None:
    """A global trace function that traces nothing (it only switches tracing on for a thread)."""
    return None


def _trace_to_stop(frame: Any, running: list[bool]) -> None:
    """Make every line the stopped code runs next raise :class:`_TimedOut` (while ``running``).

    A student's ``except:`` catches the first stop; the next line it runs, in the except clause
    itself, raises again from there, where that ``try`` no longer catches it.
    """
    def stop(frame: Any, event: str, arg: Any) -> Any:
        if running[0] and event in ("line", "call", "return"):
            raise _TimedOut
        return stop

    if frame is None:
        return
    if threading.current_thread() is threading.main_thread() and sys.gettrace() is None:
        sys.settrace(_no_trace)
    while frame is not None:  # the frames of the student's call only, not its callers'
        if frame.f_code.co_filename == __file__ and frame.f_code.co_name in _CALLERS:
            break
        frame.f_trace = stop
        frame.f_trace_lines = True
        frame = frame.f_back


def _stop_thread(worker: threading.Thread, give_up_after: float = 600.0) -> None:
    """Raise _TimedOut inside ``worker`` (CPython's asynchronous exception), again every
    :data:`_REPEAT_S` seconds until it ends, so that a student's endless loop, even one inside a
    bare ``except:``, does not keep spinning, and slowing the kernel, after the check has given
    up."""
    import ctypes

    deadline = time.monotonic() + give_up_after
    running = [True]
    while worker.is_alive() and time.monotonic() < deadline:
        _trace_to_stop(sys._current_frames().get(worker.ident), running)
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(worker.ident),
                                                   ctypes.py_object(_TimedOut))
        worker.join(_REPEAT_S)


#: The chapter's own functions that answer an exercise (see :func:`refuse_as_answer`): code -> name.
_REFUSED: dict[Any, str] = {}


def refuse_as_answer(*functions: Callable[..., Any]) -> None:
    """Make every check refuse an answer that is, or calls, one of ``functions``.

    The student edition calls it after the chapter's own derivations that an exercise asks the
    student to write again (``make student`` adds the call to cells tagged ``answer``), so that
    passing the chapter's function, or wrapping it, is refused with a hint. A copy of its source
    is a new function and cannot be recognised: the exercise says so.
    """
    for function in functions:
        code = _code_of(function)
        if code is not None:
            _REFUSED[code] = getattr(function, "__name__", repr(function))


def _refusing(answer: Callable[..., Any]) -> Callable[..., Any]:
    """``answer``, refused when it calls one of the chapter's functions registered with
    :func:`refuse_as_answer`."""
    if not _REFUSED:
        return answer

    @functools.wraps(answer)
    def refusing(*args: Any, **kwargs: Any) -> Any:
        watch = _Watch({}, dict(_REFUSED), {}, {})
        watchers = getattr(_state, "watchers", [])
        _state.watchers = watchers + [watch]
        try:
            with _watching([watch]):
                value = answer(*args, **kwargs)
        finally:
            _state.watchers = watchers
        if watch.used:
            raise ExerciseFailed(f"your function uses {watch.used[0]}, the chapter's own version "
                                 "from the text: the exercise asks you to write yours (close that "
                                 "section and derive it again).")
        return value

    return refusing


def _timed(answer: Any, budget: float) -> Any:
    """The student's function, limited to ``budget`` seconds over all its calls in one check.

    Only the student's code is timed: the check's own references (and the imports they may
    trigger) are never interrupted. Anything that is not a function is returned unchanged.
    """
    if not callable(answer) or budget is None or budget <= 0:
        return answer
    spent = [0.0]

    @functools.wraps(answer)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        try:
            return _call_with_time_limit(answer, args, kwargs, budget - spent[0])
        finally:
            spent[0] += time.monotonic() - start

    return timed


_LIBRARY_DIRS = tuple(
    os.path.realpath(path) + os.sep
    for path in {os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                 sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"],
                 sysconfig.get_paths()["platlib"]}
)


def _student_line(err: BaseException) -> str:
    """Where in the student's code ``err`` was raised: `` (line 3: `return a / b`)`` or ``""``.

    The last frame of the traceback that lies outside ``vaelib``, the standard library and the
    installed packages is the student's (a notebook cell, a script, a test's lambda).
    """
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        path = os.path.realpath(frame.filename) if os.path.isabs(frame.filename) else frame.filename
        if path.startswith(_LIBRARY_DIRS) or "site-packages" in path or "dist-packages" in path:
            continue
        code = (frame.line or "").strip()
        where = f" (in your code, line {frame.lineno}"
        return f"{where}: `{code}`)" if code else f"{where})"
    return ""


def run_check(name: str, answer: Any, body: Callable[[Any], str | None]) -> bool:
    """Run ``body(answer)`` and print a verdict; never raise.

    ``body`` returns an optional detail string on success and raises :class:`ExerciseFailed` (with
    a hint) when the answer is wrong. A ``NotImplementedError`` or a stub answer (``...``/``None``)
    means "not attempted yet"; any other exception is reported as a hint, without a traceback.
    """
    _state.low_precision = None
    try:
        if _is_stub(answer):
            raise NotAttempted
        detail = body(_refusing(_timed(answer, TIME_LIMIT_S)) if callable(answer)
                      else _timed(answer, TIME_LIMIT_S))
    except _TimedOut:
        print(
            f"❌ {name}: not yet. Your function did not return within {TIME_LIMIT_S:g} s, so the "
            "check stopped it: look for a loop that never ends (a `while` whose condition never "
            "changes) or far more samples or iterations than the exercise needs."
        )
        return False
    except (NotAttempted, NotImplementedError):
        print(f"⏳ {name}: not attempted yet. Replace the `...` / `raise NotImplementedError` "
              "with your answer and run this cell again.")
        return False
    except ExerciseFailed as failure:
        cause = failure.__cause__
        where = _student_line(cause) if isinstance(cause, Exception) else ""
        tries = _failures[name] = _failures.get(name, 0) + 1
        reveal = ""
        if failure.formula and tries >= REVEAL_AFTER:
            reveal = f" (After {tries} tries, the formula: {failure.formula})"
        print(f"❌ {name}: not yet. {failure}{where}{reveal}")
        return False
    except Exception as err:  # the student's code crashed: say how and where, without a traceback
        print(
            f"❌ {name}: not yet. Your code raised {type(err).__name__}: {err}{_student_line(err)}"
        )
        return False
    finally:
        _state.low_precision = None
    print(f"✅ {name}: correct." + (f" {detail}" if detail else ""))
    return True


_COMPLEX_HINT = ("your answer is a complex number: nothing in this exercise has an imaginary part. "
                 "Look for a square root or log of a negative number computed in complex "
                 "arithmetic (e.g. cmath, numpy.emath, or a complex tensor), or a `j` typed by "
                 "mistake.")


def _is_complex(value: Any) -> bool:
    if isinstance(value, torch.Tensor):
        return value.is_complex()
    if isinstance(value, complex):
        return True
    try:
        return bool(np.iscomplexobj(value))
    except Exception:  # noqa: BLE001 - an odd object: as_tensor below will say what is wrong
        return False


def _dtype_of(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.dtype
    if isinstance(value, (np.ndarray, np.generic)):
        return {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16}.get(
            value.dtype
        )
    return None


def low_precision() -> Any:
    """The lower-precision dtype (e.g. ``torch.float32``) of an answer seen in the running check,
    or ``None`` when every answer was float64 (or a Python number)."""
    return getattr(_state, "low_precision", None)


def as_float64(value: Any, *, answer: bool = True) -> torch.Tensor:
    """The student's answer as a float64 tensor (numbers, NumPy arrays and tensors accepted).

    A complex answer is refused. An ``answer`` in float32 (or lower) is remembered, so that
    :func:`close` compares it at that precision's tolerance (pass ``answer=False`` for references).
    """
    if _is_complex(value):
        raise ExerciseFailed(_COMPLEX_HINT)
    if answer and _dtype_of(value) in _LOW_PRECISION:
        _state.low_precision = _dtype_of(value)
    if isinstance(value, torch.Tensor):
        return value.detach().to(torch.float64)
    try:
        return torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ExerciseFailed(
            f"expected a number or an array of numbers, got {type(value).__name__}."
        ) from err


def close(got: Any, want: torch.Tensor, rtol: float = 1e-6, atol: float = 1e-8,
          nonfinite_hint: str = NONFINITE_HINT) -> bool:
    """Whether ``got`` matches ``want`` in shape and value (after conversion to float64).

    A non-finite ``got`` fails with ``nonfinite_hint`` (say what, in this exercise, gives NaN or
    inf). An answer computed in float32 (see :func:`low_precision`) is compared at relative
    tolerance :data:`LOW_PRECISION_RTOL`, with an absolute tolerance scaled by the largest |want|
    (the rounding error of a float32 sum or difference scales with its terms).
    """
    got = as_float64(got)
    want = as_float64(want, answer=False)
    if got.shape != want.shape:
        raise ExerciseFailed(f"expected shape {tuple(want.shape)}, got {tuple(got.shape)}.")
    if not torch.isfinite(got).all():
        raise ExerciseFailed(nonfinite_hint)
    if low_precision() is not None:
        scale = float(want.abs().max()) if want.numel() else 0.0
        rtol = max(rtol, LOW_PRECISION_RTOL)
        atol = max(atol, LOW_PRECISION_RTOL * scale)
    return bool(torch.allclose(got, want, rtol=rtol, atol=atol))


class _Watch:
    """What one :func:`forbidden_calls` block looks for, and the list it records into.

    Two hooks, installed in the thread that runs the student's code: a profile function that sees
    every Python function called (matched by its code object, so a function imported under another
    name, or before the check ran, is still recognised) and every C function (matched by identity
    or name), and a torch function mode that sees every torch operator, however it was reached
    (``torch.logsumexp``, ``Tensor.logsumexp``, ``torch.special.logsumexp``,
    ``torch.ops.aten.logsumexp``).
    """

    def __init__(self, aten: dict[str, str], codes: dict[Any, str], c_functions: dict[Any, str],
                 c_names: dict[str, str]) -> None:
        self.aten, self.codes, self.c_functions, self.c_names = aten, codes, c_functions, c_names
        self.used: list[str] = []

    def profile(self, frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            label = self.codes.get(frame.f_code)
            if label is not None:
                self.used.append(label)
        elif event == "c_call":
            label = self.c_functions.get(id(arg)) or self.c_names.get(getattr(arg, "__name__", ""))
            if label is not None:
                self.used.append(label)


def _dispatch_recorder(watches: list[_Watch]) -> Any:
    """A torch function mode recording the torch operators the ``watches`` look for (it sees
    ``torch.name``, ``Tensor.name``, ``torch.special.name`` and ``torch.ops.aten.name`` alike)."""
    from torch.overrides import TorchFunctionMode

    class _Recorder(TorchFunctionMode):
        def __torch_function__(
            self, func: Any, types: Any, args: tuple = (), kwargs: Any = None
        ) -> Any:
            name = getattr(func, "__name__", str(func)).split(".")[0]
            name = name.removeprefix("special_").lstrip("_")
            for watch in watches:
                if name in watch.aten:
                    watch.used.append(watch.aten[name])
            return func(*args, **(kwargs or {}))

    return _Recorder()


@contextmanager
def _watching(watches: list[_Watch]) -> Iterator[None]:
    """Install the hooks of ``watches``, and of every watch already active in this thread (a block
    nested in another keeps the outer one's watch), for the duration of the block."""
    watches = list(watches) + [w for w in getattr(_state, "watchers", []) if w not in watches]
    if not watches:
        yield
        return
    previous_profile = sys.getprofile()
    # A profiler written in C (cProfile, %prun) cannot be handed back from Python: leave it in place
    # (calls by code are then not watched; torch operators still are).
    hook = previous_profile is None or callable(previous_profile)

    def profile(frame: Any, event: str, arg: Any) -> None:
        for watch in watches:
            watch.profile(frame, event, arg)

    aten = any(watch.aten for watch in watches)
    if hook:
        sys.setprofile(profile)
    try:
        if aten:
            with _dispatch_recorder(watches):
                yield
        else:
            yield
    finally:
        if hook:
            sys.setprofile(previous_profile)


def _code_of(function: Any) -> Any:
    """The code object a call of ``function`` runs (through decorators and bound methods)."""
    import inspect

    try:
        function = inspect.unwrap(function)
    except ValueError:
        pass
    function = getattr(function, "__func__", function)
    return getattr(function, "__code__", None)


@contextmanager
def forbidden_calls(*names: str, others: Iterable[tuple[Any, str]] = (),
                    c_names: Iterable[str] = ()) -> Iterator[list[str]]:
    """Record calls of the torch operators ``names`` (e.g. ``"logsumexp"``) made inside the block.

    Yields a list that collects the names called; the functions still work, so an exercise that
    forbids one can say so instead of failing with an unrelated error. A torch name is caught at the
    operator level, however the student reached it (``torch.name``, ``torch.special.name``,
    ``Tensor.name``, ``torch.ops.aten.name``, and ``_name``: ``"log_softmax"`` also catches
    ``F.log_softmax``). Each ``(owner, attribute)`` of ``others`` (a class's method, a module's
    function), recorded as ``"Owner.attribute"``, is caught by its code, so also when the student
    imported it under another name; ``c_names`` are C functions caught by name (e.g.
    ``"run_backward"``, which every autograd entry point reaches).

    The student's code is watched in the thread that runs it (see :func:`_call_with_time_limit`).
    In-process checks cannot stop a determined student (who can rebind these very helpers): they
    are for learning; grading should run them in a separate process.
    """
    codes: dict[Any, str] = {}
    c_functions: dict[Any, str] = {}
    for owner, attribute in others:
        function = vars(owner).get(attribute) if isinstance(owner, type) else None
        function = function if function is not None else getattr(owner, attribute, None)
        if function is None:
            continue
        label = f"{getattr(owner, '__name__', type(owner).__name__)}.{attribute}"
        code = _code_of(function)
        if code is not None:
            codes.setdefault(code, label)
        else:
            c_functions[id(function)] = label
    watch = _Watch({name.lstrip("_"): name for name in names}, codes, c_functions,
                   {name: name for name in c_names})
    watchers = getattr(_state, "watchers", [])
    _state.watchers = watchers + [watch]
    try:
        with _watching([watch]):
            yield watch.used
    finally:
        _state.watchers = watchers


def first_ratio(got: Any, want: Any) -> float:
    """got / want for scalar-like answers, used to spot factor-of-2 and sign mistakes."""
    got_f = float(as_float64(got).flatten()[0])
    want_f = float(as_float64(want).flatten()[0])
    return got_f / want_f if want_f != 0 else math.inf


def diagnose(got: Any, want: Any, extra: Iterable[tuple[Any, str]] = ()) -> str:
    """A hint for a wrong answer: checks common slips (sign, factor 2 or 1/2) and ``extra`` pairs of
    (wrong_reference_value, hint) supplied by the check, then falls back to the size of the
    error."""
    got_t, want_t = as_float64(got), as_float64(want, answer=False)
    for wrong, hint in extra:
        wrong_t = as_float64(wrong, answer=False)
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
        note = ""
        if low_precision() is not None:
            note = (f" (Your answer is {str(low_precision()).replace('torch.', '')}; it was "
                    f"compared at that precision, relative tolerance {LOW_PRECISION_RTOL:g}, so "
                    "this is not rounding.)")
        return f"the largest difference from the right value is {err:.3g}.{note}"
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
