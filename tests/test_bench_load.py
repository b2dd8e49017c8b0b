"""The load benchmark's bookkeeping and its errors (its figures are printed, never asserted)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_load  # noqa: E402


def test_ratios_are_to_the_quiet_run():
    assert bench_load.ratios({0: 10.0, 1: 12.0, 2: 25.0}) == {1: 1.2, 2: 2.5}
    assert bench_load.ratios({1: 12.0}) == {}  # no quiet run: nothing to compare with


def test_busy_processes_start_and_stop():
    busy = bench_load.start_load(2)
    assert len(busy) == 2 and all(p.poll() is None for p in busy)
    bench_load.stop_load(busy)
    assert all(p.poll() is not None for p in busy)


@pytest.mark.parametrize("argv, message", [(["--chapters", "99"], "no chapter 99"),
                                           (["--loads", "-1"], "0 or more")])
def test_bad_arguments_are_refused_clearly(argv, message, capsys):
    with pytest.raises(SystemExit):
        bench_load.main(argv)
    assert message in capsys.readouterr().err
