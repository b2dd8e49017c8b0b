"""The guards every exercise check shares (vaelib.exercises._core): a time limit on the answer, no
complex answers, float32 answers compared at float32 precision, the failing line of the student's
code shown, and forbidden functions detected."""

from __future__ import annotations

import math
import sys
import threading
import time

import pytest
import torch

from vaelib.exercises import (
    _core,
    check_gaussian_kl,
    check_iwae_from_log_weights,
    check_log_mean_exp,
    check_negative_elbo,
    check_pathwise_sample,
    check_samples_needed,
)
from tests.exercise_helpers import verdict


@pytest.fixture
def short_limit(monkeypatch):
    monkeypatch.setattr(_core, "TIME_LIMIT_S", 0.5)


def _forever(*args):
    while True:
        pass


def _slow(*args):
    time.sleep(5)
    return 0.0


@pytest.mark.parametrize("check", [check_gaussian_kl, check_pathwise_sample, check_samples_needed,
                                   check_negative_elbo, check_log_mean_exp])
@pytest.mark.parametrize("answer", [_forever, _slow])
def test_an_answer_that_never_returns_gets_a_hint_within_the_time_limit(check, answer, short_limit,
                                                                         capsys):
    start = time.monotonic()
    ok, out = verdict(check, answer, capsys)
    assert time.monotonic() - start < 3
    assert not ok and out.startswith("❌") and "did not return within 0.5 s" in out, out


def test_the_time_limit_also_holds_off_the_main_thread(short_limit, capsys):
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("ok", check_gaussian_kl(_forever)))
    start = time.monotonic()
    worker.start()
    worker.join(10)
    assert not worker.is_alive() and time.monotonic() - start < 3
    assert result["ok"] is False
    assert "did not return within" in capsys.readouterr().out
    # ... and the student's endless loop is stopped too, not left spinning (and slowing every
    # later cell, or test) in a thread of its own.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_spinning(t) for t in threading.enumerate()):
        time.sleep(0.05)
    assert not any(_spinning(t) for t in threading.enumerate())


def _spinning(thread: threading.Thread) -> bool:
    """Whether ``thread`` is running :func:`_forever`."""
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code is _forever.__code__:
            return True
        frame = frame.f_back
    return False


def test_the_time_limit_leaves_no_alarm_behind(short_limit, capsys):
    import signal
    previous = signal.getsignal(signal.SIGALRM)
    verdict(
        check_gaussian_kl,
        lambda mu, logvar: 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum(-1),
        capsys,
    )
    assert signal.getsignal(signal.SIGALRM) == previous
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def _kl(mu, logvar):
    return 0.5 * (logvar.exp() + mu**2 - 1 - logvar).sum(-1)


@pytest.mark.parametrize("answer", [
    lambda mu, logvar: _kl(mu, logvar) + 5j,
    lambda mu, logvar: _kl(mu, logvar).to(torch.complex128),
    lambda mu, logvar: _kl(mu, logvar).numpy() + 0j,
    lambda mu, logvar: [complex(v) for v in _kl(mu, logvar)],
])
def test_complex_answers_are_refused(answer, capsys):
    ok, out = verdict(check_gaussian_kl, answer, capsys)
    assert not ok and "complex" in out, out


def test_complex_scalar_answers_are_refused(capsys):
    right = lambda mu, logvar, eps: mu + torch.exp(0.5 * logvar) * eps  # noqa: E731
    ok, out = verdict(
        check_pathwise_sample, lambda mu, logvar, eps: right(mu, logvar, eps) + 0j, capsys
    )
    assert not ok and "complex" in out, out


@pytest.mark.parametrize(
    "check, answer",
    [
        (check_gaussian_kl, lambda mu, logvar: _kl(mu.float(), logvar.float())),
        (check_gaussian_kl, lambda mu, logvar: _kl(mu.float(), logvar.float()).numpy()),
        (
            check_pathwise_sample,
            lambda mu, logvar, eps: mu.float() + torch.exp(0.5 * logvar.float()) * eps.float(),
        ),
        (
            check_iwae_from_log_weights,
            lambda lw: (
                lambda f: f.max(0).values + torch.log(torch.exp(f - f.max(0).values).mean(0))
            )(lw.float()),
        ),
    ],
)
def test_a_right_formula_in_float32_is_accepted(check, answer, capsys):
    ok, out = verdict(check, answer, capsys)
    assert ok and out.startswith("✅"), out


def test_a_wrong_float32_answer_says_it_was_compared_at_float32_precision(capsys):
    ok, out = verdict(
        check_gaussian_kl, lambda mu, logvar: (_kl(mu, logvar) * (1 + 1e-3)).float(), capsys
    )
    assert not ok and "float32" in out and "not rounding" in out, out


def test_a_crash_shows_the_failing_line_of_the_students_code(capsys):
    def my_kl(mu, logvar):
        var = logvar.exp()
        return 0.5 * (var + mu**2 - 1 - logvar).sum(-1) / undefined_name  # noqa: F821

    ok, out = verdict(check_gaussian_kl, my_kl, capsys)
    assert not ok and "NameError" in out
    assert "return 0.5 * (var + mu**2 - 1 - logvar).sum(-1) / undefined_name" in out, out


def test_a_crash_inside_torch_points_at_the_students_line(capsys):
    def my_sample(mu, logvar, eps):
        return mu + torch.exp(0.5 * logvar) @ eps  # (5, 3) @ (5, 3): a shape error inside torch

    ok, out = verdict(check_pathwise_sample, my_sample, capsys)
    assert not ok and "RuntimeError" in out and "line" in out
    assert "return mu + torch.exp(0.5 * logvar) @ eps" in out, out


def test_a_crash_wrapped_by_a_check_still_shows_the_line(capsys):
    def my_lme(a, dim=0):
        m = a.max(dim=dim).values
        return m + (a - m).exp().sum(dim).log() - math.log(a.shape[dim]) + {}["oops"]

    ok, out = verdict(check_log_mean_exp, my_lme, capsys)
    assert not ok and "KeyError" in out and "{}[\"oops\"]" in out, out


def test_forbidden_calls_records_and_restores():
    original = torch.logsumexp
    with _core.forbidden_calls("logsumexp") as used:
        a = torch.randn(3, 2)
        torch.logsumexp(a, 0), a.logsumexp(0), torch.special.logsumexp(a, 0)
    assert used == ["logsumexp"] * 3
    assert torch.logsumexp is original and "logsumexp" not in vars(torch.Tensor)
    a.logsumexp(0)


def test_check_cells_end_with_a_semicolon_so_they_print_only_the_verdict():
    """A check returns True/False for asserts; a cell ending in the bare call would echo it."""
    from pathlib import Path
    import re

    calls = []
    for chapter in sorted(
        Path(__file__).resolve().parents[1].joinpath("chapters").glob("[0-9]*.py")
    ):
        for number, line in enumerate(chapter.read_text().splitlines(), 1):
            if re.match(r"check_\w+\(.*\)\s*;?\s*$", line):
                calls.append((chapter.name, number, line))
    assert len(calls) >= 27
    bare = [c for c in calls if not c[2].rstrip().endswith(";")]
    assert not bare, bare


def test_non_finite_hints_name_this_exercises_cause_not_log_sum_exp(capsys):
    from vaelib.exercises import check_bce_integral, check_kl_normal_1d, check_optimal_q_variance

    nan = lambda *args: torch.full((), math.nan, dtype=torch.float64)  # noqa: E731
    cases = [
        (check_negative_elbo, lambda logits, x, mu, logvar: nan(), "softplus"),
        (check_bce_integral, lambda lam: math.inf, "log(λ / (1 - λ))"),
        (check_kl_normal_1d, lambda mq, vq, mp, vp: torch.full_like(mq, math.nan), "variances"),
        (check_optimal_q_variance, lambda w, s: math.nan, "finite positive"),
    ]
    for check, answer, hint in cases:
        ok, out = verdict(check, answer, capsys)
        assert not ok and hint in out and "log-sum-exp" not in out, out


def _retry_until_finite(log_w):
    """A realistic answer that hangs: "retry until the weights are finite" around a bare except."""
    while True:
        try:
            w = log_w.exp()
            w = w / w.sum(0)
            if torch.isfinite(w).all() and (w.sum(0) > 2).all():  # never true
                return w
        except:  # noqa: E722 - the student's bare except, which swallows the time limit's stop
            continue


def _retry_sleeping(*args):
    """The same, spending its time in C (a sleep), where the stop almost always lands in the try."""
    while True:
        try:
            time.sleep(0.01)
        except:  # noqa: E722
            pass


@pytest.mark.parametrize("answer", [_retry_until_finite, _retry_sleeping])
def test_a_bare_except_retry_loop_cannot_swallow_the_time_limit(answer, short_limit, capsys):
    from vaelib.exercises import check_normalized_weights

    start = time.monotonic()
    ok, out = verdict(check_normalized_weights, answer, capsys)
    assert (
        time.monotonic() - start < 20
    )  # it returns (before: never); generous for a loaded machine
    assert not ok and "did not return within 0.5 s" in out, out
    assert sys.gettrace() is None or sys.gettrace() is not _core._no_trace  # no tracer left behind


@pytest.mark.parametrize("answer", [_retry_until_finite, _retry_sleeping])
def test_a_bare_except_retry_loop_is_stopped_off_the_main_thread_too(answer, short_limit, capsys):
    from vaelib.exercises import check_normalized_weights

    result = {}
    worker = threading.Thread(
        target=lambda: result.setdefault("ok", check_normalized_weights(answer))
    )
    start = time.monotonic()
    worker.start()
    worker.join(30)
    assert not worker.is_alive() and time.monotonic() - start < 20 and result["ok"] is False
    assert "did not return within" in capsys.readouterr().out
    codes = {_retry_until_finite.__code__, _retry_sleeping.__code__}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_runs(t, codes) for t in threading.enumerate()):
        time.sleep(0.05)
    assert not any(_runs(t, codes) for t in threading.enumerate())


def _runs(thread: threading.Thread, codes) -> bool:
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False
