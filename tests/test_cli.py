"""vaelib.cli: the command line ``python -m vaelib.train`` and its run folder (load_run)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from vaelib import checkpoint as checkpoint_module
from vaelib.checkpoint import load_checkpoint, load_model
from vaelib.cli import EVALUATION, NLL_CURVE, load_run, main
from vaelib.train import History
from vaelib.vae import VAEConfig

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["--dataset", "mnist-subset", "--max-images", "256", "--batch-size", "64", "--device", "cpu",
        "--no-progress", "--latent-dim", "4"]


def test_importing_the_trainer_and_the_cli_loads_no_plotting_stack():
    """``import vaelib.train`` and ``--help`` load no ipywidgets, matplotlib or PIL."""
    code = ("import sys, vaelib.train, vaelib.cli\n"
            "import runpy\n"
            "sys.argv = ['vaelib.train', '--help']\n"
            "try:\n"
            "    runpy.run_module('vaelib.train', run_name='__main__')\n"
            "except SystemExit:\n"
            "    pass\n"
            "heavy = sorted(m for m in ('ipywidgets', 'matplotlib', 'PIL') if m in sys.modules)\n"
            "print('HEAVY', heavy)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--dataset" in result.stdout and "HEAVY []" in result.stdout


def test_cli_help():
    result = subprocess.run([sys.executable, "-m", "vaelib.train", "--help"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0
    for flag in ("--dataset", "--preset", "--epochs", "--batch-size", "--lr", "--device",
                 "--data-dir", "--out", "--resume"):
        assert flag in result.stdout


def test_cli_tiny_run_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--dataset", "mnist-subset", "--max-images", "256", "--batch-size", "64",
            "--device", "cpu", "--out", str(out), "--no-progress", "--latent-dim", "4"]
    history = main(args + ["--epochs", "1", "--eval-samples", "4"])
    printed = capsys.readouterr().out
    assert len(history) == 1 and "Checkpoint written to" in printed
    summary = json.loads(printed[:printed.index("Checkpoint written")])
    assert summary["epochs"] == 1 and summary["test"]["num_points"] == 256
    assert json.loads((out / "evaluation.json").read_text())["num_samples"] == 4
    history_file = summary["files"]["history"]
    assert json.loads(Path(history_file).read_text())["epoch"] == [1]
    assert load_model(out).config == VAEConfig.preset("pytorch-example", latent_dim=4)
    history = main(args + ["--epochs", "3", "--resume", "--eval-every", "1", "--eval-samples", "2"])
    assert history.epoch == [1, 2, 3]
    curve = json.loads((out / "nll_curve.json").read_text())
    assert [point["epoch"] for point in curve] == [2, 3]
    assert curve[0]["train_seconds"] < curve[1]["train_seconds"] and curve[0]["nll"] > 0


def test_cli_checkpoint_every_and_curve_points(tmp_path, capsys):
    """A curve point can come before the first checkpoint; it is estimated on the first N images."""
    out = tmp_path / "fresh" / "run"  # neither folder exists yet
    main(["--max-images", "256", "--batch-size", "64", "--device", "cpu", "--out", str(out),
          "--no-progress", "--latent-dim", "4", "--epochs", "3", "--checkpoint-every", "2",
          "--eval-samples", "3", "--eval-every", "1", "--curve-points", "10"])
    summary = json.loads(capsys.readouterr().out.split("Checkpoint written")[0])
    curve = json.loads((out / "nll_curve.json").read_text())
    assert [point["epoch"] for point in curve] == [1, 2, 3]
    assert {point["test_points"] for point in curve} == {10}
    assert summary["test"]["num_points"] == 256  # the final evaluation uses every test image
    assert sorted(p.name for p in out.glob("history-*.json")) == ["history-epoch0003.json"]
    assert load_checkpoint(out).epoch == 3
    with pytest.raises(SystemExit, match="--curve-points must be >= 1"):
        main(["--out", str(tmp_path / "x"), "--eval-samples", "2", "--curve-points", "0"])


def test_load_run_reads_what_the_cli_wrote(tmp_path, capsys):
    out = tmp_path / "run"
    main(TINY + ["--out", str(out), "--epochs", "2", "--eval-samples", "2", "--eval-every", "1",
                 "--curve-points", "8"])
    capsys.readouterr()
    run = load_run(out)
    assert isinstance(run.history, History) and run.history.epoch == [1, 2]
    assert run.nll_curve == json.loads((out / NLL_CURVE).read_text())
    assert run.evaluation == json.loads((out / EVALUATION).read_text())
    assert run.model.config == VAEConfig.preset("pytorch-example", latent_dim=4)
    assert run.checkpoint.epoch == 2


def test_load_run_without_curve_or_evaluation(tmp_path, capsys):
    out = tmp_path / "run"
    main(TINY + ["--out", str(out), "--epochs", "1"])
    run = load_run(out)
    assert run.nll_curve == [] and run.evaluation is None and len(run.history) == 1


def test_cli_resume_reads_the_checkpoint_once(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    main(TINY + ["--out", str(out), "--epochs", "1"])
    calls = []
    real = checkpoint_module.load_checkpoint

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr("vaelib.cli.load_checkpoint", counting)
    monkeypatch.setattr("vaelib.train.load_checkpoint", counting)
    history = main(TINY + ["--out", str(out), "--epochs", "2", "--resume"])
    assert history.epoch == [1, 2] and len(calls) == 1
