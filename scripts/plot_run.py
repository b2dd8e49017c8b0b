"""Plot a run of ``python -m vaelib.train``: the test NLL against training time, and the ELBO.

    python -m scripts.plot_run runs/burda --out runs/burda/curve.png

Reads the run folder with :func:`vaelib.cli.load_run`: its newest history and, where present, the
NLL curve (written with ``--eval-every``) and the final evaluation (the ``--eval-samples``
estimate on every test image), and draws two panels: the test NLL (nats, lower is better)
against minutes of training, beside Burda et al. (2015)'s 86.76 for the same
one-stochastic-layer model, and the training ELBO per epoch.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a file, no window
import matplotlib.pyplot as plt  # noqa: E402

from scripts.atomic import write_atomic  # noqa: E402
from vaelib.cli import load_run  # noqa: E402
from vaelib.figures import COLORS, use_course_style  # noqa: E402

BURDA_NLL = 86.76  # Burda, Grosse & Salakhutdinov (2015), table 1: VAE, one stochastic layer, k = 1


def plot_run(run: Path):
    """The figure for the run folder ``run`` (a checkpoint written by vaelib.train)."""
    loaded = load_run(run)  # clear errors for a missing or damaged run folder
    history, curve, final = loaded.history, loaded.nll_curve, loaded.evaluation
    if not history.epoch:
        raise ValueError(f"{run} holds no training history to plot (is it a vaelib.train run?).")

    use_course_style()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    if curve:
        points = {point.get("test_points") for point in curve}
        label = "test NLL" + (f" (first {points.pop():,} test images)" if len(points) == 1
                              and None not in points else "")
        left.plot([p["train_seconds"] / 60 for p in curve], [p["nll"] for p in curve], "o-",
                  color=COLORS["importance"], label=label)
    curve_points = {point.get("test_points") for point in curve}
    if final is not None and curve and curve_points != {final["num_points"]}:
        left.text(0.02, 0.03, "the curve and the final point use different test images:\n"
                  "compare the curve's shape, and the final point with Burda et al.",
                  transform=left.transAxes, fontsize=7.5, color=COLORS["prior"])
    if final is not None:
        minutes = history.seconds[-1] / 60 - sum(p["eval_seconds"] for p in curve) / 60
        left.plot([minutes], [final["nll"]], "s", color=COLORS["exact"], markersize=8,
                  label=f"final: {final['nll']:.2f} ({final['num_points']:,} images, "
                        f"K = {final['num_samples']})")
    left.axhline(BURDA_NLL, color=COLORS["prior"], linestyle="--",
                 label=f"Burda et al. (2015): {BURDA_NLL}")
    left.set(xlabel="minutes of training (evaluation time not counted)",
             ylabel="test NLL = −log p(x), nats (lower is better)",
             title="Importance-sampled test NLL")
    if not curve and final is None:
        left.text(0.5, 0.5, "no NLL estimates in this run\n(train with --eval-samples K)",
                  transform=left.transAxes, ha="center", va="center")
    left.legend(fontsize=8)

    right.plot(history.epoch, history.train_elbo, color=COLORS["elbo"],
               label="training ELBO (mean over the epoch's batches)")
    settled = history.train_elbo[len(history.train_elbo) // 20:]  # after the first 5 %
    low, high = min(settled), max(history.train_elbo)
    right.set_ylim(low - 0.5 * (high - low) - 0.5, high + 0.1 * (high - low) + 0.5)  # not the start
    right.set(xlabel="epoch", ylabel="nats per image", title="Training ELBO")
    right.legend(fontsize=8)
    c = loaded.checkpoint.config
    widths = "-".join(str(w) for w in (c.data_dim, *c.hidden_dims, c.latent_dim))
    fig.suptitle(f"{run.name}: the {widths} VAE, {len(history)} epochs")
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="the run folder (vaelib.train's --out)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the PNG to write (default: RUN/curve.png)")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else args.run / "curve.png"
    fig = plot_run(args.run)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_atomic(out, buffer.getvalue())
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
