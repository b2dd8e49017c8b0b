"""The command line ``python -m vaelib.train`` and the run folder it writes (ch. 8, the README).

A run folder (``--out``) holds

- the checkpoint of :mod:`vaelib.checkpoint` (``config.json``, weights, optimizer state, history),
  saved by :func:`vaelib.train.train` as it goes;
- ``nll_curve.json`` (with ``--eval-every E``): the test NLL every E epochs, a list of
  ``{"epoch", "train_seconds", "nll", "test_points", "train_elbo", "eval_seconds"}``;
- ``evaluation.json`` (with ``--eval-samples K``): the final
  :meth:`vaelib.evaluate.Evaluation.summary` on every test image.

This module alone knows those names: read a run with :func:`load_run`. To add a flag, add it to
:func:`parser` and use it in :func:`main` (``TrainConfig`` fields go through :func:`train_config`).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import Checkpoint, atomic_write_bytes, checkpoint_files, load_checkpoint
from .data import load_mnist, load_mnist_subset, to_unit_interval
from .device import default_device
from .evaluate import evaluate
from .train import History, TrainConfig, train
from .vae import PRESETS, VAE, VAEConfig

__all__ = ["Run", "load_run", "main", "parser", "NLL_CURVE", "EVALUATION"]

NLL_CURVE = "nll_curve.json"  # --eval-every: the test NLL during training
EVALUATION = "evaluation.json"  # --eval-samples: the final test numbers


# ---------------------------------------------------------------------------------------- the run

@dataclass
class Run:
    """What :func:`load_run` returns: a run folder's checkpoint, curves and final evaluation."""

    directory: Path
    checkpoint: Checkpoint  # the model, its config, the epoch, the training options
    history: History  # the per-epoch training (and validation) curves
    nll_curve: list[dict]  # the NLL_CURVE points ([] without --eval-every)
    evaluation: dict | None  # the EVALUATION summary (None without --eval-samples)

    @property
    def model(self) -> VAE:
        return self.checkpoint.model


def _read_json(path: Path, default):
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else default


def load_run(path: str | Path, device: str | torch.device | None = None) -> Run:
    """Read the run folder ``path`` written by ``python -m vaelib.train --out path``.

    Raises:
        FileNotFoundError, vaelib.checkpoint.CheckpointError: no run there, or a damaged one.
    """
    directory = Path(path)
    checkpoint = load_checkpoint(directory, device)  # clear errors for a missing or damaged run
    history = History.from_dict(checkpoint.history) if checkpoint.history else History()
    return Run(directory=directory, checkpoint=checkpoint, history=history,
               nll_curve=_read_json(directory / NLL_CURVE, []),
               evaluation=_read_json(directory / EVALUATION, None))


# ---------------------------------------------------------------------------------------- the CLI

def parser() -> argparse.ArgumentParser:
    """The command line's flags (``python -m vaelib.train --help``)."""
    p = argparse.ArgumentParser(
        prog="python -m vaelib.train",
        description="Train a VAE on MNIST and write a checkpoint folder (config.json, weights, "
                    "optimizer state, history JSON) to --out.")
    arg = p.add_argument
    arg("--dataset", choices=["mnist-subset", "mnist"], default="mnist-subset",
        help="the bundled 10,000-image subset (offline) or full MNIST (default: %(default)s)")
    arg("--preset", choices=sorted(PRESETS), default="pytorch-example",
        help="the architecture (default: %(default)s)")
    arg("--latent-dim", type=int, default=None, help="override the preset's latent dimension")
    arg("--epochs", type=int, default=10, help="epochs in total (default: %(default)s)")
    arg("--batch-size", type=int, default=128, help="(default: %(default)s)")
    arg("--lr", type=float, default=1e-3, help="Adam's learning rate (default: %(default)s)")
    arg("--lr-final", type=float, default=None,
        help="decay the learning rate geometrically to this by the last epoch")
    arg("--adam-eps", type=float, default=1e-8, help="Adam's epsilon (default: %(default)s)")
    arg("--seed", type=int, default=0, help="(default: %(default)s)")
    arg("--device", default=None, help="cpu, cuda, mps, ... (default: the best one present)")
    arg("--data-dir", default=None,
        help="the folder of the MNIST IDX files, for --dataset mnist (default: $VAELIB_DATA, or "
             "the cache folder, downloading into it if needed)")
    arg("--out", default="run", help="the checkpoint folder to write (default: %(default)s)")
    arg("--resume", action="store_true", help="continue the run saved in --out")
    arg("--checkpoint-every", type=int, default=1, metavar="E",
        help="save the checkpoint every E epochs and after the last (default: %(default)s; on a "
             "GPU an epoch can take a tenth of a second, so save less often there, e.g. 50)")
    arg("--validate", action="store_true", help="compute the test-set ELBO after every epoch")
    arg("--eval-samples", type=int, default=0, metavar="K",
        help="after training, estimate the test log-likelihood with K importance samples per "
             "image (Burda et al. use 5000; default: %(default)s, skip)")
    arg("--eval-every", type=int, default=0, metavar="E",
        help=f"also estimate the test NLL (with --eval-samples) every E epochs, into "
             f"{NLL_CURVE}: the curve of NLL against training time")
    arg("--curve-points", type=int, default=None, metavar="N",
        help="estimate the curve's NLL on the first N test images only (cheaper on a CPU; "
             "default: all of them). The final evaluation always uses every test image")
    arg("--max-images", type=int, default=None, metavar="N",
        help="use only the first N training and test images (a quick try)")
    arg("--no-progress", action="store_true", help="no progress bar")
    arg("--no-cuda-graph", action="store_true", help="CUDA: run every step eagerly")
    arg("--bf16", action="store_true", help="CUDA: bfloat16 autocast")
    return p


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` the flags ask for."""
    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       lr_final=args.lr_final, adam_eps=args.adam_eps, seed=args.seed,
                       checkpoint_every=args.checkpoint_every, progress=not args.no_progress,
                       cuda_graph=not args.no_cuda_graph, bf16=args.bf16)


def _check_args(args: argparse.Namespace) -> None:
    """Flags that parse but do not make sense together: a clear exit before any work."""
    if args.eval_every and args.eval_samples < 1:
        raise SystemExit("--eval-every needs --eval-samples K (e.g. 5000)")
    if args.curve_points is not None and args.curve_points < 1:
        raise SystemExit(f"--curve-points must be >= 1, got {args.curve_points}")


def _nll_curve(args, test_x: torch.Tensor, out: Path):
    """A train() callback: every ``args.eval_every`` epochs, the test NLL into NLL_CURVE."""
    path = out / NLL_CURVE
    curve = _read_json(path, []) if args.resume else []
    eval_seconds = sum(point["eval_seconds"] for point in curve)  # not training time

    points = test_x[:args.curve_points]  # (n, D): the test images the curve is estimated on

    def callback(history: History, model) -> None:
        nonlocal eval_seconds
        if history.epoch[-1] % args.eval_every:
            return
        start = time.perf_counter()
        result = evaluate(model, points, num_samples=args.eval_samples, iwae_samples=1,
                          seed=args.seed, progress=False).summary()
        took = time.perf_counter() - start
        curve.append({"epoch": history.epoch[-1],
                      "train_seconds": history.seconds[-1] - eval_seconds,
                      "nll": result["nll"], "test_points": len(points),
                      "train_elbo": history.train_elbo[-1], "eval_seconds": took})
        eval_seconds += took
        out.mkdir(parents=True, exist_ok=True)  # the first checkpoint may not be saved yet
        atomic_write_bytes(path, json.dumps(curve, indent=1).encode())

    return callback


def main(argv: list[str] | None = None) -> History:
    """The command line, e.g. ``python -m vaelib.train --epochs 10 --out run/``."""
    args = parser().parse_args(argv)
    device = torch.device(args.device) if args.device else default_device()
    out = Path(args.out)
    resume: bool | Checkpoint = False
    if args.resume:
        resume = load_checkpoint(out, device=device)  # read once; train() continues from it
        model = resume.model
        print(f"Resuming the run in {out}: {model.config}")
    else:
        overrides = {} if args.latent_dim is None else {"latent_dim": args.latent_dim}
        model = VAE(VAEConfig.preset(args.preset, **overrides)).to(device)
    mnist = load_mnist_subset() if args.dataset == "mnist-subset" else load_mnist(args.data_dir)
    train_x = to_unit_interval(mnist.train_images[:args.max_images]).to(device)  # (N, 784)
    test_x = to_unit_interval(mnist.test_images[:args.max_images]).to(device)
    cfg = train_config(args)
    _check_args(args)
    history = train(model, train_x, cfg, val_x=test_x if args.validate else None,
                    checkpoint_dir=out, resume=resume,
                    callback=_nll_curve(args, test_x, out) if args.eval_every else None)

    summary = {"dataset": args.dataset, "device": str(device), "epochs": len(history),
               "train_elbo": history.train_elbo[-1] if history else None,
               "seconds": history.seconds[-1] if history else None}
    if args.eval_samples > 0 and not history.interrupted:
        result = evaluate(model, test_x, num_samples=args.eval_samples,
                          iwae_samples=min(50, args.eval_samples), seed=args.seed,
                          progress=not args.no_progress).summary()
        atomic_write_bytes(out / EVALUATION, json.dumps(result, indent=1).encode())
        summary["test"] = result
    files = checkpoint_files(out, missing_ok=True)
    summary["files"] = {kind: str(path) for kind, path in files.items()}
    print(json.dumps(summary, indent=1))
    print(f"Checkpoint written to {out}/ (vaelib.checkpoint.load_model({str(out)!r}) loads it); "
          f"history: {summary['files'].get('history', 'none')}")
    return history


if __name__ == "__main__":
    main()
