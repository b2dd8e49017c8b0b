"""The class benchmark's arguments and its memory bookkeeping (its figures are printed, never
asserted; it runs with `make bench-class`)."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_class  # noqa: E402


@pytest.mark.parametrize("argv, message", [(["--students", "0"], "1 or more"),
                                           (["--students"], "1 or more"),
                                           (["--chapter", "99"], "no chapter 99")])
def test_bad_arguments_are_refused_clearly(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench_class.main(argv)
    assert message in capsys.readouterr().err


def test_resident_memory_is_read_from_proc():
    status = Path(f"/proc/{os.getpid()}/status").read_text()
    expected = int(next(line for line in status.splitlines()
                        if line.startswith("VmRSS:")).split()[1]) / 1024
    assert bench_class.rss_mb(os.getpid()) == pytest.approx(expected, rel=0.2)
    assert bench_class.rss_mb(2**22 + 1) == 0.0  # no such process
