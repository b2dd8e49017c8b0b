"""scripts.plot_run: the figure of a vaelib.train run (test NLL against training time, ELBO)."""

import json

import matplotlib.pyplot as plt
import pytest

from scripts.plot_run import BURDA_NLL, main, plot_run
from vaelib.checkpoint import CheckpointError
from vaelib.cli import main as train_main

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("plot") / "run"
    train_main(["--max-images", "256", "--batch-size", "64", "--device", "cpu", "--out", str(out),
                "--no-progress", "--latent-dim", "4", "--epochs", "4", "--eval-samples", "3",
                "--eval-every", "2", "--curve-points", "20"])
    return out


def test_the_figure_shows_the_run(run):
    curve = json.loads((run / "nll_curve.json").read_text())
    final = json.loads((run / "evaluation.json").read_text())
    fig = plot_run(run)
    left, right = fig.axes
    nll_line, final_marker, burda = left.lines
    assert list(nll_line.get_ydata()) == [point["nll"] for point in curve]
    assert list(nll_line.get_xdata()) == [point["train_seconds"] / 60 for point in curve]
    assert "first 20 test images" in nll_line.get_label()
    assert list(final_marker.get_ydata()) == [final["nll"]]
    assert list(burda.get_ydata()) == [BURDA_NLL, BURDA_NLL]
    assert list(right.lines[0].get_xdata()) == [1, 2, 3, 4]
    assert "784-400-4 VAE, 4 epochs" in fig.texts[0].get_text()
    assert "different test images" in left.texts[0].get_text()  # 20 curve points, 256 at the end
    plt.close(fig)


def test_the_command_writes_a_png(run, tmp_path, capsys):
    out = main([str(run), "--out", str(tmp_path / "figures" / "curve.png")])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {out}" in capsys.readouterr().out
    assert not list(out.parent.glob(".*.tmp"))  # the atomic write left nothing behind


def test_a_run_without_curves_still_plots(run, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for path in run.iterdir():  # the checkpoint alone, without nll_curve.json or evaluation.json
        if path.name not in ("nll_curve.json", "evaluation.json"):
            (bare / path.name).write_bytes(path.read_bytes())
    fig = plot_run(bare)
    assert "no NLL estimates" in fig.axes[0].texts[0].get_text()
    plt.close(fig)


def test_a_folder_that_is_not_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json|checkpoint"):
        plot_run(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "config.json").write_text("not json")
    with pytest.raises(CheckpointError, match="corrupt"):
        plot_run(tmp_path / "junk")
