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

Every checkpoint records the flags the run was started with (``run_config["flags"]``: all of them
but those in :data:`NOT_RECORDED`), and ``--resume`` continues with them: a new flag is restored
without more code. A flag given again with another value is applied and recorded
(``run_config["resumes"]``) if it is in :data:`MAY_CHANGE_ON_RESUME`, and refused otherwise.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .atomic import atomic_write_bytes
from .checkpoint import (Checkpoint, CheckpointError, checkpoint_files,
                         load_checkpoint, saved_epoch)
from .data import load_mnist, load_mnist_subset, to_unit_interval
from .device import check_device, default_device
from .evaluate import check_memory_budget, default_memory_budget, evaluate
from .train import (ConfigError, History, TrainConfig, TrainingDivergedError, check_step_memory,
                    objective_settings, train)
from .vae import POSTERIORS, PRESETS, VAE, VAEConfig

__all__ = ["Run", "load_run", "main", "parser", "NLL_CURVE", "EVALUATION", "NOT_RECORDED",
           "MAY_CHANGE_ON_RESUME"]

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
    """The JSON in ``path``, ``default`` if there is no such file, or an error naming the file."""
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is damaged: it is not valid JSON ({err}); was its writing cut "
                         "short, or the file edited? The checkpoint beside it is not affected: "
                         "move the file away (or restore it from a copy).") from err


def _read_curve(path: Path) -> list[dict]:
    """The NLL_CURVE points in ``path`` ([] if none), checked."""
    curve = _read_json(path, [])
    if not isinstance(curve, list) or not all(
            isinstance(p, dict) and isinstance(p.get("epoch"), int)
            and isinstance(p.get("eval_seconds"), (int, float)) for p in curve):
        raise ValueError(f"{path} is damaged: it should be a list of points "
                         '{"epoch": ..., "eval_seconds": ..., ...}. The checkpoint beside it is '
                         "not affected: move the file away (or restore it from a copy).")
    return curve


def load_run(path: str | Path, device: str | torch.device | None = None) -> Run:
    """Read the run folder ``path`` written by ``python -m vaelib.train --out path``.

    Raises:
        FileNotFoundError, vaelib.checkpoint.CheckpointError: no run there, or a damaged one.
        ValueError: a damaged NLL_CURVE or EVALUATION file (the message names it).
    """
    directory = Path(path)
    checkpoint = load_checkpoint(directory, device)  # clear errors for a missing or damaged run
    history = History.from_dict(checkpoint.history) if checkpoint.history else History()
    return Run(directory=directory, checkpoint=checkpoint, history=history,
               nll_curve=_read_curve(directory / NLL_CURVE),
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
    arg("--posterior", choices=list(POSTERIORS), default="gaussian",
        help="the family of q(z|x): a diagonal Gaussian, or that Gaussian pushed through "
             "--flow-length affine coupling maps conditioned on the image (chapter 11; "
             "default: %(default)s)")
    arg("--flow-length", type=int, default=0, metavar="L",
        help="the number of coupling maps of --posterior flow (e.g. 4; default: %(default)s, "
             "for the Gaussian)")
    arg("--device", default=None, help="cpu, cuda, mps, ... (default: the best one present)")
    arg("--data-dir", default=None,
        help="the folder of the MNIST IDX files, for --dataset mnist (default: $VAELIB_DATA, or "
             "the cache folder, downloading into it if needed)")
    arg("--out", default="run", help="the checkpoint folder to write (default: %(default)s)")
    arg("--resume", action="store_true", help="continue the run saved in --out")
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
    for option in _config_options():  # TrainConfig's fields: defaults and help written there
        arg(option.flag, dest=option.dest, **option.argparse())
    return p


@dataclass(frozen=True)
class _ConfigOption:
    """A :class:`TrainConfig` field the command line sets (its ``_option`` metadata)."""

    field: dataclasses.Field

    @property
    def flag(self) -> str:
        return self.field.metadata["flag"] or _flag(self.field.name)

    @property
    def dest(self) -> str:  # the argparse name, as recorded in checkpoints: --k -> k
        return self.flag[2:].replace("-", "_")

    @property
    def negated(self) -> bool:  # --no-progress sets progress=False
        return self.flag.startswith("--no-")

    def argparse(self) -> dict:
        """The ``add_argument`` keywords: type, default and help from the field."""
        f, meta = self.field, self.field.metadata
        if isinstance(f.default, bool):
            return {"action": "store_true", "help": meta["help"]}
        options = {"type": type(f.default), **meta["argparse"]}
        if meta["resumed"]:  # None: the run's own value with --resume, else the default
            return {**options, "default": None,
                    "help": f"{meta['help']} (default: {f.default}, or the run's own with "
                            "--resume)"}
        help = meta["help"] + (" (default: %(default)s)" if f.default is not None else "")
        return {**options, "default": f.default, "help": help}

    def value(self, args: argparse.Namespace):
        value = getattr(args, self.dest)
        return not value if self.negated else value


def _config_options() -> list[_ConfigOption]:
    """The fields of :class:`TrainConfig` that are flags, in the dataclass's order."""
    return [_ConfigOption(f) for f in dataclasses.fields(TrainConfig) if "flag" in f.metadata]


def train_config(args: argparse.Namespace, saved: dict | None = None) -> TrainConfig:
    """The :class:`TrainConfig` the flags ask for. The objective flags left out (``--objective``,
    ``--k``, ``--encoder-gradient``) take the values in ``saved`` (a resumed run's training
    options), or the defaults."""
    resumed = objective_settings(saved)
    values = {option.field.name: option.value(args) for option in _config_options()}
    for name, value in values.items():
        if value is None and name in resumed:
            values[name] = resumed[name]
    return TrainConfig(**values)


def _flag(name: str) -> str:
    """The command-line spelling of an argparse name: ``lr_final`` -> ``--lr-final``."""
    return "--" + name.replace("_", "-")


def _check_args(args: argparse.Namespace) -> None:
    """Flags that parse but do not make sense (alone or together): a clear exit before any work."""
    if args.eval_every and args.eval_samples < 1:
        raise SystemExit("--eval-every needs --eval-samples K (e.g. 5000)")
    if args.curve_points is not None and args.curve_points < 1:
        raise SystemExit(f"--curve-points must be >= 1, got {args.curve_points}")
    if args.max_images is not None and args.max_images < 1:
        raise SystemExit(f"--max-images must be >= 1 (the number of training and test images to "
                         f"use; leave it out for all of them), got {args.max_images}")
    if args.eval_samples < 0:
        raise SystemExit(f"--eval-samples must be >= 0 (K importance samples per test image, "
                         f"e.g. 5000; 0 skips the evaluation), got {args.eval_samples}")
    if args.k is not None and args.k < 1:
        raise SystemExit(f"--k must be >= 1 (K = num_samples, the samples per data point of "
                         f"--objective iwae, e.g. --k 5), got {args.k}")
    if args.eval_every < 0:
        raise SystemExit(f"--eval-every must be >= 0 (0: no NLL curve), got {args.eval_every}")
    if args.epochs < 1 and not args.resume:
        raise SystemExit(f"--epochs must be >= 1 (the epochs to train in total), got "
                         f"{args.epochs}")
    if not args.out.strip():
        raise SystemExit("--out is empty: name the folder for the run, e.g. --out runs/first (an "
                         "empty name would write the run into the current folder)")


def _check_posterior_flags(args: argparse.Namespace) -> None:
    """``--posterior flow`` needs ``--flow-length L >= 1``, and only it takes one. (Checked once
    the flags are complete: on ``--resume``, after the run's saved ones are restored.)"""
    if args.posterior == "flow" and args.flow_length < 1:
        raise SystemExit(f"--posterior flow needs --flow-length L >= 1, the number of coupling "
                         f"maps (e.g. 4), got {args.flow_length}")
    if args.posterior == "gaussian" and args.flow_length != 0:
        raise SystemExit(f"--flow-length {args.flow_length} belongs to the flow posterior: add "
                         "--posterior flow, or leave --flow-length out for the Gaussian one")


def _train_config(args: argparse.Namespace, saved: dict | None = None) -> TrainConfig:
    """:func:`train_config`, with an error that names the flag (e.g. --k 0, or
    --encoder-gradient dreg with the ELBO)."""
    try:
        return train_config(args, saved)
    except ConfigError as err:
        flags = {option.field.name: option.flag for option in _config_options()}
        raise SystemExit(f"{flags.get(err.field, 'error')}: {err}") from None


def _check_objective_flags(args: argparse.Namespace, given: set[str], cfg: TrainConfig) -> None:
    """``--k`` belongs to ``--objective iwae``: typed with the ELBO it is refused rather than
    silently used (it would average K samples in the ELBO's estimate, at K times the cost, which
    is not what anyone typing it wants). (``--encoder-gradient dreg`` with the ELBO is refused by
    :class:`TrainConfig`.)"""
    if cfg.objective == "elbo" and "k" in given and args.k != 1:
        raise SystemExit(f"--k {args.k} belongs to the importance-weighted bound: add --objective "
                         "iwae (IWAE_K with K = --k), or leave --k out to train on the ELBO")


def _check_memory(args: argparse.Namespace, model: VAE, cfg: TrainConfig,
                  device: torch.device) -> None:
    """A training step (--k, --batch-size) and the evaluation (--eval-samples) must fit in
    memory: checked before the data are loaded, so a run that cannot fit stops at once."""
    batch = min(cfg.batch_size, args.max_images or cfg.batch_size)
    try:
        check_step_memory(model.config, batch, cfg.num_samples, device)
    except ValueError as err:
        raise SystemExit(f"--k {cfg.num_samples} with --batch-size {cfg.batch_size}: {err}") \
            from None
    if args.eval_samples > 0:
        try:
            check_memory_budget(model.config, args.eval_samples, default_memory_budget(device))
        except ValueError as err:
            raise SystemExit(f"--eval-samples {args.eval_samples}: {err}") from None


def _check_device(args: argparse.Namespace) -> torch.device:
    if not args.device:
        return default_device()
    try:
        return check_device(args.device)
    except ValueError as err:
        raise SystemExit(f"--device: {err}") from None


def _check_out(args: argparse.Namespace) -> Path:
    """``--out`` can hold the run (an existing folder, or one that can be created), checked
    before training, which would otherwise fail only at the first save."""
    out = Path(args.out)
    if out.is_symlink() and not out.exists():
        raise SystemExit(f"--out {out} is a broken symbolic link: it points to "
                         f"{os.readlink(out)}, which does not exist. Point it at the run's folder, "
                         "remove it, or choose another --out")
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--out {out} is an existing file, not a folder; choose a folder for the "
                         "run (it is created if missing)")
    existing = out
    while not existing.exists():  # the nearest folder that exists: the run folder goes there
        existing = existing.parent
    if not existing.is_dir():
        raise SystemExit(f"--out {out} cannot be created: {existing} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):  # can a file be written there?
            pass
    except OSError as err:
        raise SystemExit(f"--out {out} cannot be written: {err.strerror} in {existing}. Choose a "
                         "folder you can write to") from None
    if not args.resume:
        try:
            epoch = saved_epoch(out)
        except CheckpointError as err:
            raise SystemExit(f"--out {out} holds a damaged checkpoint ({err}); choose another "
                             "--out, or move the folder away first") from None
        if epoch is not None:
            raise SystemExit(f"--out {out} already holds a run (epoch {epoch}): continue it with "
                             "--resume, or choose another --out. To start over, delete the "
                             "folder first; nothing in it is overwritten otherwise")
    return out


# ---------------------------------------------------------------------------------------- resuming

#: Flags about this process, not the run (where it writes, on which device, with a progress bar):
#: never saved with the run, never compared when it resumes.
NOT_RECORDED = frozenset({"out", "resume", "device", "data_dir", "no_progress"})
#: Saved flags that a resumed run may change: the new value is applied, and recorded in the run's
#: checkpoint. More epochs, another learning-rate schedule (e.g. a smaller lr after a divergence),
#: how often to save, validate and estimate the NLL, CUDA execution details. Every other saved flag
#: (the dataset, the architecture, the batch size, the seed, Adam's ε, and any flag added later)
#: defines the run, and a different value is refused: that would be another run.
MAY_CHANGE_ON_RESUME = frozenset({"epochs", "lr", "lr_final", "checkpoint_every", "validate",
                                  "eval_samples", "eval_every", "curve_points", "no_cuda_graph",
                                  "bf16"})


def _given_flags(argv: list[str] | None) -> set[str]:
    """The names of the flags the command line gives (rather than leaves at their default)."""
    p = parser()
    for action in p._actions:  # parse again with every default suppressed: only what was given
        action.default = argparse.SUPPRESS
    return set(vars(p.parse_args(argv)))


def _recorded(args: argparse.Namespace) -> dict:
    """The flags that define the run, saved with every checkpoint (``run_config["flags"]``)."""
    return {name: value for name, value in vars(args).items() if name not in NOT_RECORDED}


def _resume_flags(args: argparse.Namespace, given: set[str], ckpt: Checkpoint) -> dict:
    """Set ``args`` to the run's saved flags, apply the changes that may change, refuse others.

    Returns the run_config to save from now on (the flags, and every resume that changed some).
    """
    run = ckpt.run_config or {}
    saved, legacy = run.get("flags"), False
    if not isinstance(saved, dict):  # saved by an earlier vaelib: only its TrainConfig is known
        saved = {k: v for k, v in (ckpt.train_config or {}).items() if k in vars(args)}
        legacy = True
        print(f"The run in {args.out} was saved by an earlier vaelib, which recorded its training "
              f"options but not its dataset or image count: using --dataset {args.dataset}"
              f"{f' --max-images {args.max_images}' if args.max_images else ''}.")
    defaults = parser().parse_args([])
    changed, refused = {}, []
    for name in _recorded(args):
        if name not in saved and legacy:
            continue  # nothing to compare with
        before = saved.get(name, getattr(defaults, name))  # a flag newer than the run: its default
        now = getattr(args, name)
        if name not in given or now == before:
            setattr(args, name, before)
        elif name in MAY_CHANGE_ON_RESUME:
            changed[_flag(name)] = [before, now]
        else:
            refused.append((_flag(name), f"{_flag(name)} {now} differs from the run's saved "
                                         f"{name} = {before!r}"))
    if refused:  # every flag that cannot change, not only the first one met
        raise SystemExit(
            f"{'; '.join(text for _, text in refused)}: --resume continues the run in {args.out} "
            f"with its saved settings, and {', '.join(flag for flag, _ in refused)} cannot change "
            "within a run. Leave the flag out to continue the run, or start a new run with another "
            "--out. (A resumed run may change "
            f"{', '.join(sorted(map(_flag, MAY_CHANGE_ON_RESUME)))}.)")
    if args.epochs < ckpt.epoch:
        raise SystemExit(f"--epochs {args.epochs} is fewer than the {ckpt.epoch} epochs the run in "
                         f"{args.out} has completed; to train further, ask for more (--epochs N, "
                         f"N > {ckpt.epoch})")
    resumes = list(run.get("resumes", [])) if isinstance(run.get("resumes"), list) else []
    if changed:
        resumes.append({"after_epoch": ckpt.epoch, "changed": changed})
    settings = ", ".join(_flag(k) if v is True else f"{_flag(k)} {v}"
                         for k, v in _recorded(args).items() if v is not None and v is not False)
    changes = ", ".join(f"{flag} {a} -> {b}" for flag, (a, b) in changed.items())
    changes = f"; changed: {changes}" if changes else ""
    print(f"Resuming the run in {args.out} after epoch {ckpt.epoch} of {args.epochs} with its "
          f"saved settings ({settings}){changes}.")
    if args.epochs == ckpt.epoch:
        print(f"The run has completed its {ckpt.epoch} epochs: nothing to train (ask for more "
              f"with --epochs N, N > {ckpt.epoch}).")
    return {"flags": _recorded(args), "resumes": resumes}


# ---------------------------------------------------------------------------------------- the NLL

def _nll_curve(args, test_x: torch.Tensor, out: Path, checkpoint_epoch: int):
    """A train() callback: every ``args.eval_every`` epochs, the test NLL into NLL_CURVE.

    On resume, the curve continues from the checkpoint: points of epochs after it (written before
    a crash, for epochs that are now trained again) are dropped at once.
    """
    path = out / NLL_CURVE
    curve = []
    if args.resume:
        try:
            read = _read_curve(path)
        except ValueError as err:
            raise SystemExit(f"{err} Then resume again.") from None
        curve = [point for point in read if point["epoch"] <= checkpoint_epoch]
        if len(curve) < len(read):
            atomic_write_bytes(path, json.dumps(curve, indent=1).encode())
    # Training time excludes estimating the NLL; the checkpoint's clock includes the estimates of
    # the epochs before its own (the one of its own epoch ran after it was saved).
    eval_seconds = sum(point["eval_seconds"] for point in curve
                       if point["epoch"] < checkpoint_epoch)

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
    """The command line, e.g. ``python -m vaelib.train --epochs 10 --out run/``.

    Every flag and ``--out`` are checked before any training. Ctrl-C saves the completed epochs
    (see :func:`vaelib.train.train`), says what the checkpoint on disk holds, and exits with
    status 130; a diverging run exits with status 1 and the advice of
    :class:`vaelib.train.TrainingDivergedError`.
    """
    args = parser().parse_args(argv)
    _check_args(args)
    device = _check_device(args)
    out = _check_out(args)
    try:
        return _run(args, _given_flags(argv), device, out)
    except KeyboardInterrupt:  # outside training (which saves and returns): loading, evaluating
        _report_interrupted(out)
        raise SystemExit(130) from None


def _run(args: argparse.Namespace, given: set[str], device: torch.device, out: Path) -> History:
    resume: bool | Checkpoint = False
    if args.resume:
        try:
            resume = load_checkpoint(out, device=device)  # read once; train() continues from it
        except (FileNotFoundError, CheckpointError) as err:
            raise SystemExit(f"--resume: {err}") from None
        run_config = _resume_flags(args, given, resume)
        _check_args(args)
        _check_posterior_flags(args)
        model = resume.model
    else:
        _check_posterior_flags(args)
        run_config = {"flags": _recorded(args), "resumes": []}
        overrides = {} if args.latent_dim is None else {"latent_dim": args.latent_dim}
        if args.posterior != "gaussian":
            overrides.update(posterior=args.posterior, flow_length=args.flow_length)
        try:
            config = VAEConfig.preset(args.preset, **overrides)
        except ValueError as err:
            flags = ("--posterior flow" if "posterior='flow'" in str(err) else "--latent-dim")
            raise SystemExit(f"{flags}: {err}") from None
        torch.manual_seed(args.seed)  # the initial weights, too, follow --seed
        model = VAE(config).to(device)
    cfg = _train_config(args, resume.train_config if resume else None)
    _check_objective_flags(args, given, cfg)
    _check_memory(args, model, cfg, device)
    mnist = load_mnist_subset() if args.dataset == "mnist-subset" else load_mnist(args.data_dir)
    train_x = to_unit_interval(mnist.train_images[:args.max_images]).to(device)  # (N, 784)
    test_x = to_unit_interval(mnist.test_images[:args.max_images]).to(device)
    callback = (_nll_curve(args, test_x, out, resume.epoch if resume else 0) if args.eval_every
                else None)
    try:
        history = train(model, train_x, cfg, val_x=test_x if args.validate else None,
                        checkpoint_dir=out, resume=resume, callback=callback,
                        run_config=run_config)
    except TrainingDivergedError as err:  # NaN or a diverging ELBO: the message says what to do
        raise SystemExit(f"Training stopped: {err}") from None

    summary = {"dataset": args.dataset, "device": str(device), "epochs": len(history),
               "train_elbo": history.train_elbo[-1] if history else None,
               "seconds": history.seconds[-1] if history else None}
    if history.interrupted:
        summary["interrupted"] = True
        summary["checkpoint_epoch"] = saved_epoch(out)
        print(json.dumps(summary, indent=1))
        _report_interrupted(out)
        raise SystemExit(130)
    if args.eval_samples > 0:
        result = evaluate(model, test_x, num_samples=args.eval_samples,
                          iwae_samples=min(50, args.eval_samples), seed=args.seed,
                          progress=not args.no_progress).summary()
        atomic_write_bytes(out / EVALUATION, json.dumps(result, indent=1).encode())
        summary["test"] = result
    files = checkpoint_files(out, missing_ok=True)
    summary["files"] = {kind: str(path) for kind, path in files.items()}
    print(json.dumps(summary, indent=1))
    trained = len(history) - (resume.epoch if resume else 0)
    print(f"{'Checkpoint written to' if trained else 'The checkpoint in'} {out}/ (epoch "
          f"{saved_epoch(out)}; vaelib.checkpoint.load_model({str(out)!r}) loads it); "
          f"history: {summary['files'].get('history', 'none')}")
    return history


def _report_interrupted(out: Path) -> None:
    """Say exactly what the run folder holds after Ctrl-C."""
    try:
        epoch = saved_epoch(out)
    except (CheckpointError, OSError) as err:
        print(f"Interrupted; the checkpoint in {out}/ cannot be read: {err}")
        return
    if epoch is None:
        print(f"Interrupted before the first epoch was completed: no checkpoint was written "
              f"({out}/ holds none).")
    else:
        print(f"Interrupted: the checkpoint in {out}/ holds epoch {epoch}; continue the run with "
              f"python -m vaelib.train --resume --out {out}")


if __name__ == "__main__":
    main()
