"""Helpers shared by the tests of the exercise checks (tests/test_exercises_chNN.py)."""


def verdict(check, answer, capsys):
    """Run a check; return (passed, printed text); assert it never raises nor prints a traceback."""
    passed = check(answer)
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    return passed, out.out


def not_implemented(*args):
    """A student's function that is still the stub."""
    raise NotImplementedError


def stub_body(*args):
    """A student's function whose body is still `...` (returns None)."""
    ...
