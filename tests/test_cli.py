"""vaelib.cli: the command line ``python -m vaelib.train`` and its run folder (load_run)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vaelib import checkpoint as checkpoint_module
from vaelib.checkpoint import load_checkpoint, load_model
from vaelib.cli import EVALUATION, NLL_CURVE, load_run, main, parser
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


# ------------------------------------------------------------------ --resume keeps the run's flags

def issue_run(out) -> list[str]:
    return ["--max-images", "256", "--latent-dim", "4", "--device", "cpu", "--no-progress",
            "--out", str(out), "--lr", "1e-4", "--lr-final", "1e-5", "--batch-size", "32",
            "--adam-eps", "1e-4", "--seed", "7"]


def test_resume_continues_with_the_saved_settings_and_records_what_changed(tmp_path, capsys):
    out = tmp_path / "rs"
    main(issue_run(out) + ["--epochs", "2"])
    history = main(["--resume", "--epochs", "4", "--out", str(out), "--no-progress"])
    assert history.epoch == [1, 2, 3, 4]
    ckpt = load_checkpoint(out)
    options = ckpt.train_config
    assert (options["lr"], options["lr_final"], options["batch_size"], options["adam_eps"],
            options["seed"], options["epochs"]) == (1e-4, 1e-5, 32, 1e-4, 7, 4)
    # the schedule ran to its end: lr_final at the last epoch
    assert ckpt.optimizer_state["param_groups"][0]["lr"] == pytest.approx(1e-5)
    flags = ckpt.run_config["flags"]
    assert flags["dataset"] == "mnist-subset" and flags["max_images"] == 256
    assert flags["latent_dim"] == 4 and flags["epochs"] == 4
    assert ckpt.run_config["resumes"] == [{"after_epoch": 2, "changed": {"--epochs": [2, 4]}}]
    assert "changed: --epochs 2 -> 4" in capsys.readouterr().out
    # The README's bare command on a finished run trains nothing (it used to go on to 10 epochs).
    history = main(["--resume", "--out", str(out), "--no-progress"])
    assert len(history) == 4 and load_checkpoint(out).epoch == 4
    printed = capsys.readouterr().out
    assert "nothing to train" in printed and "Checkpoint written" not in printed


@pytest.mark.parametrize("flag", [["--latent-dim", "8"], ["--preset", "burda"],
                                  ["--dataset", "mnist"], ["--max-images", "128"],
                                  ["--batch-size", "64"], ["--seed", "1"]])
def test_resume_refuses_a_flag_that_would_make_another_run(tmp_path, capsys, flag, monkeypatch):
    out = tmp_path / "rs"
    main(issue_run(out) + ["--epochs", "1"])
    monkeypatch.setattr("vaelib.cli.train", lambda *a, **k: pytest.fail("trained anyway"))
    with pytest.raises(SystemExit, match=rf"{flag[0]} {flag[1]} differs from the run's saved "
                                         r".*cannot change within a run"):
        main(["--resume", "--epochs", "2", "--out", str(out), "--no-progress"] + flag)
    assert load_checkpoint(out).epoch == 1


def test_resume_refuses_fewer_epochs_than_completed(tmp_path, capsys):
    out = tmp_path / "rs"
    main(issue_run(out) + ["--epochs", "2"])
    with pytest.raises(SystemExit, match="--epochs 1 is fewer than the 2 epochs"):
        main(["--resume", "--epochs", "1", "--out", str(out)])


def test_a_new_flag_is_saved_and_restored_without_more_code(tmp_path, capsys, monkeypatch):
    # Another option only needs to be added to parser(): resume restores it (--objective was
    # added this way; a made-up --example-option stands for the next one).
    real = parser

    def with_option():
        p = real()
        p.add_argument("--example-option", default="a")
        return p

    monkeypatch.setattr("vaelib.cli.parser", with_option)
    out = tmp_path / "rs"
    main(issue_run(out) + ["--epochs", "1", "--example-option", "b"])
    main(["--resume", "--epochs", "2", "--out", str(out), "--no-progress"])
    assert load_checkpoint(out).run_config["flags"]["example_option"] == "b"
    with pytest.raises(SystemExit, match="--example-option a differs from the run's saved"):
        main(["--resume", "--epochs", "3", "--out", str(out), "--example-option", "a"])


def test_resume_keeps_the_objective_and_refuses_another(tmp_path, capsys):
    out = tmp_path / "iw"
    main(issue_run(out) + ["--epochs", "1", "--objective", "iwae", "--k", "2",
                           "--encoder-gradient", "dreg"])
    main(["--resume", "--epochs", "2", "--out", str(out), "--no-progress"])
    ckpt = load_checkpoint(out)
    assert ckpt.epoch == 2
    assert (ckpt.train_config["objective"], ckpt.train_config["num_samples"],
            ckpt.train_config["encoder_gradient"]) == ("iwae", 2, "dreg")
    with pytest.raises(SystemExit, match="--objective elbo differs from the run's saved"):
        main(["--resume", "--epochs", "3", "--out", str(out), "--objective", "elbo"])


def test_resume_of_a_run_saved_without_its_flags_keeps_its_training_options(tmp_path, capsys):
    # A checkpoint of an earlier vaelib (or of train() itself) records only its TrainConfig.
    from vaelib.data import load_mnist_subset, to_unit_interval
    from vaelib.train import train
    from vaelib.vae import VAE

    out = tmp_path / "old"
    x = to_unit_interval(load_mnist_subset().train_images[:256])
    train(VAE(VAEConfig.preset("pytorch-example", latent_dim=4)), x, epochs=1, lr=3e-4,
          batch_size=64, progress=False, checkpoint_dir=out)
    main(["--resume", "--epochs", "2", "--max-images", "256", "--out", str(out), "--no-progress"])
    ckpt = load_checkpoint(out)
    assert ckpt.train_config["lr"] == 3e-4 and ckpt.train_config["batch_size"] == 64
    assert ckpt.epoch == 2 and "earlier vaelib" in capsys.readouterr().out


def test_the_flow_posterior_flags_are_saved_and_restored_by_resume(tmp_path, capsys):
    out = tmp_path / "flow"
    main(issue_run(out) + ["--epochs", "1", "--posterior", "flow", "--flow-length", "2"])
    flow = VAEConfig.preset("pytorch-example", latent_dim=4, posterior="flow", flow_length=2)
    assert load_model(out).config == flow
    flags = load_checkpoint(out).run_config["flags"]
    assert (flags["posterior"], flags["flow_length"]) == ("flow", 2)
    main(["--resume", "--epochs", "2", "--out", str(out), "--no-progress"])  # flags restored
    ckpt = load_checkpoint(out)
    assert ckpt.epoch == 2 and ckpt.config == flow
    assert "--posterior flow, --flow-length 2" in capsys.readouterr().out
    for flags, refused in ((["--flow-length", "3"], "--flow-length 3"),
                           (["--posterior", "gaussian", "--flow-length", "0"],
                            "--posterior gaussian")):
        with pytest.raises(SystemExit, match=f"{refused} differs from the run's saved .*cannot "
                                             "change within a run"):
            main(["--resume", "--epochs", "3", "--out", str(out)] + flags)
    assert load_checkpoint(out).epoch == 2
    # a Gaussian run stays Gaussian: resumed without the flags, refused with them
    gauss = tmp_path / "gauss"
    main(issue_run(gauss) + ["--epochs", "1"])
    main(["--resume", "--epochs", "2", "--out", str(gauss), "--no-progress"])
    assert load_model(gauss).config.posterior == "gaussian"
    with pytest.raises(SystemExit, match="--posterior flow differs from the run's saved"):
        main(["--resume", "--epochs", "3", "--out", str(gauss), "--posterior", "flow",
              "--flow-length", "2"])


def test_a_flow_vae_trains_on_iwae_with_dreg(tmp_path):
    out = tmp_path / "flow-dreg"
    main(issue_run(out) + ["--epochs", "1", "--posterior", "flow", "--flow-length", "2",
                           "--objective", "iwae", "--k", "2", "--encoder-gradient", "dreg"])
    ckpt = load_checkpoint(out)
    assert ckpt.config.posterior == "flow" and ckpt.epoch == 1
    assert (ckpt.train_config["objective"], ckpt.train_config["num_samples"],
            ckpt.train_config["encoder_gradient"]) == ("iwae", 2, "dreg")
    assert all(math.isfinite(v) for v in ckpt.history["train_elbo"])


@pytest.mark.parametrize("flags, message", [
    (["--posterior", "flow"], r"^--posterior flow needs --flow-length L >= 1"),
    (["--flow-length", "2"], r"^--flow-length 2 belongs to the flow posterior: add --posterior "
                             "flow"),
    (["--posterior", "flow", "--flow-length", "2", "--latent-dim", "1"],
     r"^--posterior flow: .*latent_dim >= 2"),
])
def test_flow_flags_that_do_not_fit_are_refused_before_training(tmp_path, no_training, flags,
                                                                 message):
    with pytest.raises(SystemExit, match=message):
        main(TINY + ["--out", str(tmp_path / "run"), "--epochs", "1"] + flags)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------- flags checked up front

@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if training starts: the checks must come before it."""
    monkeypatch.setattr("vaelib.cli.train", lambda *a, **k: pytest.fail("training started"))


@pytest.mark.parametrize("flags, message", [
    (["--max-images", "-5"], "--max-images must be >= 1"),
    (["--max-images", "0"], "--max-images must be >= 1"),
    (["--eval-samples", "-5"], "--eval-samples must be >= 0"),
    (["--epochs", "0"], "--epochs must be >= 1"),
    (["--lr", "inf"], "--lr: lr must be a finite number > 0"),
    (["--batch-size", "0"], "--batch-size: batch_size must be an integer >= 1"),
    (["--latent-dim", "1000000000"], "--latent-dim: .* parameters"),
    (["--device", "nonsense"], "--device: 'nonsense' is not a device name.*cpu"),
])
def test_bad_flags_are_refused_before_training(tmp_path, no_training, flags, message):
    with pytest.raises(SystemExit, match=message):
        main(["--out", str(tmp_path / "run"), "--no-progress"] + flags)
    assert not (tmp_path / "run").exists()


def test_a_device_that_is_not_there_is_named(tmp_path, no_training, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr("torch.backends.mps.is_available", lambda: False)
    with pytest.raises(SystemExit, match="--device: device 'cuda' was asked for.*available here: "
                                         "cpu"):
        main(["--out", str(tmp_path / "run"), "--device", "cuda"])


def test_out_is_checked_before_training(tmp_path, no_training):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    with pytest.raises(SystemExit, match="--out is empty"):
        main(["--out", ""])
    with pytest.raises(SystemExit, match="notes.txt is an existing file, not a folder"):
        main(["--out", str(a_file)])
    with pytest.raises(SystemExit, match="cannot be created: .*notes.txt is a file"):
        main(["--out", str(a_file / "run")])
    assert a_file.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder")
def test_an_unwritable_out_is_refused_before_training(tmp_path, no_training):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(SystemExit, match="cannot be written"):
        main(["--out", str(locked / "run")])


def test_a_new_run_does_not_overwrite_an_existing_one(tmp_path, capsys):
    out = tmp_path / "run"
    main(TINY + ["--out", str(out), "--epochs", "1"])
    before = sorted(p.read_bytes() for p in out.iterdir())
    with pytest.raises(SystemExit, match="already holds a run .*--resume"):
        main(TINY + ["--out", str(out), "--epochs", "1"])
    assert sorted(p.read_bytes() for p in out.iterdir()) == before
    (out / "config.json").write_text("{")  # a damaged run is not overwritten either
    with pytest.raises(SystemExit, match="holds a damaged checkpoint"):
        main(TINY + ["--out", str(out), "--epochs", "1"])


def test_a_diverging_run_exits_with_the_advice(tmp_path, capsys):
    with pytest.raises(SystemExit, match="Training stopped: .*(diverging|NaN).*smaller lr"):
        main(["--max-images", "256", "--device", "cpu", "--no-progress", "--lr", "100",
              "--epochs", "3", "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------- Ctrl-C, crashes

def interrupt_at_step(monkeypatch, step: int):
    """Raise KeyboardInterrupt (what Ctrl-C raises) at a training step (1-based, over epochs)."""
    import vaelib.train as trainer

    real, calls = trainer._training_step, []

    def step_or_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "_training_step", step_or_stop)


def test_ctrl_c_in_the_first_epoch_writes_nothing_and_says_so(tmp_path, capsys, monkeypatch):
    interrupt_at_step(monkeypatch, 2)
    with pytest.raises(SystemExit) as info:
        main(TINY + ["--out", str(tmp_path / "c0"), "--epochs", "3"])
    assert info.value.code == 130
    printed = capsys.readouterr().out
    assert "no checkpoint was written" in printed and "Checkpoint written" not in printed
    assert not (tmp_path / "c0").exists()


def test_ctrl_c_then_a_bare_resume_finishes_the_run(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    interrupt_at_step(monkeypatch, 4 * 2 + 1)  # 4 steps an epoch: the first step of epoch 3
    with pytest.raises(SystemExit) as info:
        main(TINY + ["--out", str(out), "--epochs", "4", "--checkpoint-every", "4"])
    assert info.value.code == 130
    printed = capsys.readouterr().out
    summary = json.loads(printed[printed.index("{\n"):printed.index("\n}\n") + 3])
    assert summary["interrupted"] and summary["epochs"] == 2 and summary["checkpoint_epoch"] == 2
    assert f"the checkpoint in {out}/ holds epoch 2" in printed
    assert "Checkpoint written" not in printed and load_checkpoint(out).epoch == 2
    monkeypatch.undo()
    history = main(["--resume", "--out", str(out), "--no-progress"])  # to the saved 4 epochs
    assert history.epoch == [1, 2, 3, 4] and load_checkpoint(out).epoch == 4


def test_a_real_sigint_saves_the_completed_epochs_and_exits_130(tmp_path):
    """Ctrl-C after epoch 13 with --checkpoint-every 5: the disk held epoch 10 and the summary
    said 13 epochs, "Checkpoint written", exit 0. A real SIGINT, sent by the process to itself at
    the first step of epoch 14 (a fixed point, no timing)."""
    out = tmp_path / "run"
    code = ("import os, signal, sys\n"
            "import vaelib.train as trainer\n"
            "real, calls = trainer._training_step, []\n"
            "def step(*args, **kwargs):\n"
            "    calls.append(1)\n"
            "    if len(calls) == 4 * 13 + 1:\n"
            "        os.kill(os.getpid(), signal.SIGINT)\n"
            "    return real(*args, **kwargs)\n"
            "trainer._training_step = step\n"
            "from vaelib.cli import main\n"
            "main(sys.argv[1:])\n")
    root = str(Path(__file__).resolve().parents[1])  # this checkout's vaelib, whatever is installed
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get(
        "PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", code, *TINY, "--out", str(out), "--epochs",
                             "20", "--checkpoint-every", "5"], capture_output=True, text=True,
                            timeout=300, env=env)
    assert result.returncode == 130, result.stderr
    assert "Saved the 13 completed epochs" in result.stdout
    assert f"the checkpoint in {out}/ holds epoch 13" in result.stdout
    assert "Checkpoint written" not in result.stdout
    assert load_checkpoint(out).epoch == 13


class Crash(BaseException):
    """A hard stop (kill -9, a power cut) in the middle of a save: nothing runs after it."""


def test_nll_curve_stays_consistent_with_its_checkpoint_after_a_crash(tmp_path, capsys,
                                                                      monkeypatch):
    import vaelib.train as trainer

    out = tmp_path / "run"
    real = trainer.save_checkpoint

    def crash_at_six(directory, model, **kwargs):
        if kwargs["epoch"] == 6:
            raise Crash
        return real(directory, model, **kwargs)

    monkeypatch.setattr(trainer, "save_checkpoint", crash_at_six)
    with pytest.raises(Crash):
        main(TINY + ["--out", str(out), "--epochs", "6", "--checkpoint-every", "3",
                     "--eval-samples", "2", "--eval-every", "1", "--curve-points", "8"])
    monkeypatch.undo()
    curve = json.loads((out / NLL_CURVE).read_text())
    assert [p["epoch"] for p in curve] == [1, 2, 3, 4, 5] and load_checkpoint(out).epoch == 3
    main(["--resume", "--out", str(out), "--no-progress"])  # epochs 4, 5, 6 again
    curve = json.loads((out / NLL_CURVE).read_text())
    assert [p["epoch"] for p in curve] == [1, 2, 3, 4, 5, 6]  # not [1, 2, 3, 4, 5, 4, 5, 6]
    seconds = [p["train_seconds"] for p in curve]
    assert seconds == sorted(seconds) and len(set(seconds)) == 6  # never backwards


def test_a_damaged_nll_curve_is_named(tmp_path, capsys):
    out = tmp_path / "run"
    main(TINY + ["--out", str(out), "--epochs", "1", "--eval-samples", "2", "--eval-every", "1"])
    path = out / NLL_CURVE
    path.write_text(path.read_text()[:20])  # cut short
    with pytest.raises(SystemExit, match=rf"{path} is damaged: it is not valid JSON.*move the "
                                         r"file away"):
        main(["--resume", "--epochs", "2", "--out", str(out), "--no-progress"])
    assert load_checkpoint(out).epoch == 1 and path.read_text().startswith("[")
    with pytest.raises(ValueError, match=rf"{path} is damaged"):
        load_run(out)


# ------------------------------------------------------------------------ refused up front

@pytest.mark.parametrize("flags", [
    ["--objective", "iwae", "--k", "1000000"],  # the issue's case: 3 minutes to 16.5 GB
    ["--objective", "iwae", "--k", "100000"],
])
def test_a_step_too_large_for_memory_is_refused_before_any_work(tmp_path, flags, monkeypatch):
    import vaelib.cli as cli

    def no_data(*args, **kwargs):
        raise AssertionError("the data were loaded before the memory check")

    monkeypatch.setattr(cli, "load_mnist_subset", no_data)
    out = tmp_path / "x"
    with pytest.raises(SystemExit, match=rf"--k {flags[-1]} with --batch-size 128: a training step "
                       r"with K = num_samples = [0-9,]+ .* would need about [0-9.,]+ [GT]B.*At "
                       "most K ="):
        main(["--max-images", "256", "--epochs", "1", "--out", str(out), "--no-progress",
              "--device", "cpu"] + flags)
    assert not out.exists()


def test_k_or_the_encoder_gradient_with_the_elbo_are_refused(tmp_path):
    out = str(tmp_path / "x")
    for flags in (["--k", "100000"], ["--objective", "elbo", "--k", "5"]):
        with pytest.raises(SystemExit, match=r"--k [0-9]+ belongs to the importance-weighted "
                           "bound: add --objective iwae"):
            main(TINY + ["--out", out, "--epochs", "1"] + flags)
    with pytest.raises(SystemExit, match=r"^--encoder-gradient: encoder_gradient='dreg' is an "
                       "estimator of the IWAE gradient: use it with objective='iwae'"):
        main(TINY + ["--out", out, "--epochs", "1", "--encoder-gradient", "dreg"])
    assert not (tmp_path / "x").exists()


def test_k_0_names_the_flag(tmp_path):
    with pytest.raises(SystemExit, match=r"^--k must be >= 1 .*got 0"):
        main(TINY + ["--out", str(tmp_path / "x"), "--epochs", "1", "--objective", "iwae",
                     "--k", "0"])


def test_eval_samples_too_large_for_memory_is_refused_before_training(tmp_path):
    with pytest.raises(SystemExit, match=r"--eval-samples 10000000000: evaluate: K = num_samples "
                       r"= 10,000,000,000 .*At most K = [0-9,]+ fits"):
        main(TINY + ["--out", str(tmp_path / "x"), "--epochs", "1", "--eval-samples",
                     "10000000000"])
    assert not (tmp_path / "x").exists()


def test_load_run_on_a_file_says_it_is_a_file(tmp_path):
    path = tmp_path / "evaluation.json"
    path.write_text("{}")
    with pytest.raises(FileNotFoundError, match="it is a file, not a folder"):
        load_run(path)


def test_out_that_is_a_broken_symbolic_link_is_named(tmp_path):
    out = tmp_path / "latest"
    out.symlink_to(tmp_path / "runs" / "deleted")
    with pytest.raises(SystemExit, match=r"--out .*latest is a broken symbolic link: it points to "
                       ".*deleted, which does not exist"):
        main(TINY + ["--out", str(out), "--epochs", "1"])


def test_flags_come_from_train_config_fields():
    import dataclasses

    from vaelib.train import TrainConfig

    options = {action.dest: action for action in parser()._actions}
    defaults = TrainConfig()
    for name, dest in (("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"),
                       ("adam_eps", "adam_eps"), ("seed", "seed"),
                       ("checkpoint_every", "checkpoint_every")):
        assert options[dest].default == getattr(defaults, name)
        help_text = dataclasses.fields(TrainConfig)[[f.name for f in dataclasses.fields(
            TrainConfig)].index(name)].metadata["help"]
        assert options[dest].help.startswith(help_text)
    assert options["k"].default is None and "default: 1, or the run's own" in options["k"].help
    assert options["objective"].choices == ["elbo", "iwae"]


def test_the_flag_in_an_error_comes_from_the_field(tmp_path):
    from vaelib.train import ConfigError, TrainConfig

    with pytest.raises(ConfigError) as info:
        TrainConfig(adam_eps=-1.0)
    assert info.value.field == "adam_eps"
    with pytest.raises(SystemExit, match=r"^--adam-eps: adam_eps must be a finite number > 0"):
        main(TINY + ["--out", str(tmp_path / "r"), "--adam-eps", "-1"])


@pytest.mark.filterwarnings("ignore:'vaelib.train' found in sys.modules:RuntimeWarning")
def test_python_m_vaelib_train_loads_the_module_once(monkeypatch):
    # python -m vaelib.train hands over to vaelib.cli before train.py defines anything, so the
    # trainer is defined once (as vaelib.train, imported by cli), not a second time as __main__.
    import runpy

    seen = {}

    def fake_main():
        seen["defined_in_main"] = "TrainConfig" in sys._getframe(1).f_globals

    monkeypatch.setattr("vaelib.cli.main", fake_main)
    with pytest.raises(SystemExit) as info:
        runpy.run_module("vaelib.train", run_name="__main__")
    assert info.value.code is None and seen == {"defined_in_main": False}
