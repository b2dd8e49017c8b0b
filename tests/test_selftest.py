"""vaelib.selftest on the CPU: every item runs and passes, a failing one is reported with its error
and makes the exit status 1, and an item detects what it is there to detect."""

import pytest
import torch

import vaelib.selftest as selftest
import vaelib.train as train_module
from vaelib.selftest import Item, main, run_selftest

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]  # trains, about 10 s


def test_the_selftest_passes_on_the_cpu_and_says_the_cuda_items_were_not_run(capsys):
    assert main(["--device", "cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("vaelib self-test on cpu ") and "torch" in out[0]
    lines = {line.split("  ")[0]: line for line in out[1:6]}
    for item in selftest.items_for():
        line = lines[item.name]
        if item.cuda_only:
            assert " -- " in line and "not run: needs CUDA (cpu here)" in line
        else:
            assert " ok " in line, line
    assert any(line.startswith("Not run on this machine (no CUDA device): training, CUDA graph")
               for line in out)
    assert out[-1] == "All 4 items run passed."


def test_a_failing_item_is_reported_with_its_error_and_the_exit_status_is_1(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    items = [item for item in selftest.items_for()
             if item.run in (selftest.eager_training, selftest.evaluation)]
    monkeypatch.setattr(selftest, "items_for", lambda: items)
    monkeypatch.setattr(selftest, "evaluate", broken)
    assert main(["--device", "cpu"]) == 1
    out = capsys.readouterr().out
    eager, evaluate = out.splitlines()[1:3]
    assert " ok " in eager  # the other items still run
    assert " FAILED " in evaluate
    assert "RuntimeError: CUDA error: an illegal memory access was encountered" in evaluate
    assert "1 of 2 items FAILED" in out and "--no-cuda-graph" in out


def test_the_graph_item_fails_when_the_graph_fails_its_check(monkeypatch):
    """On the CPU, train() made to take the CUDA-graph path with a capture that fails: the
    self-test's graph item must report it (not pass on the eager fallback)."""
    def failing_capture(step, x, reset):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(train_module, "_graphs_supported", lambda device: True)
    monkeypatch.setattr(train_module, "_capture_cuda_graph", failing_capture)
    lines = []
    item = Item("graph", selftest.graphed_training)  # cuda_only left out: run it on the CPU
    [result] = run_selftest(torch.device("cpu"), [item], out=lines.append)
    assert result.ok is False
    assert "capturing the training step as a CUDA graph failed" in result.message
    assert "FAILED" in lines[0]


def test_the_resume_item_catches_a_resume_that_does_not_continue(monkeypatch):
    real_train = selftest.train

    def train_forgetting_the_optimizer(model, x, config=None, resume=False, **kwargs):
        if resume:
            resume.optimizer_state = None  # Adam restarts: the run is not the straight one
        return real_train(model, x, config, resume=resume, **kwargs)

    monkeypatch.setattr(selftest, "train", train_forgetting_the_optimizer)
    [result] = run_selftest(torch.device("cpu"),
                            [Item("resume", selftest.checkpoint_resume)], out=lambda line: None)
    assert result.ok is False and "differ from the straight run's" in result.message
