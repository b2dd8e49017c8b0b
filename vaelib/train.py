"""Training a VAE: stochastic gradient ascent on the ELBO (ch. 8).

Each step takes a minibatch x (B, D), binarizes it afresh (x ~ Bernoulli(pixel), for a Bernoulli
likelihood), and takes one Adam step on the loss

    loss = -(1/B) Σ_n ELBO(x_n),   ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) ‖ p(z))

estimated with one reparameterized z per data point (the "doubly stochastic" estimator: random
minibatch, random z; ch. 7). What makes it fast without making it hard to read:

- the data live on the model's device, and batches are slices of an on-device random permutation
  (no DataLoader, no host-to-device copy per batch);
- nothing is read back to the host during an epoch: each step's loss, reconstruction and KL are
  written to a buffer on the device and read once per epoch (a ``.item()`` per step would make
  the CPU wait for the GPU at every step);
- Adam is ``fused`` (one kernel for all parameters) where the device supports it;
- on CUDA, one whole training step is captured as a CUDA graph and replayed, with TF32 matmuls
  (bfloat16 autocast is optional): a small MLP is otherwise limited by kernel-launch overhead.

The same loop is a command-line tool too: ``python -m vaelib.train --help``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from .data import fixed_binarization, load_mnist, load_mnist_subset, to_unit_interval
from .device import default_device
from .evaluate import evaluate
from .vae import PRESETS, VAE, VAEConfig

__all__ = ["TrainConfig", "History", "NonFiniteLossError", "train"]


@dataclass
class TrainConfig:
    """How to train (the architecture is the model's :class:`vaelib.vae.VAEConfig`)."""

    epochs: int = 10  # passes over the training set in total (a resumed run continues up to it)
    batch_size: int = 128  # data points per gradient step (as in pytorch/examples)
    lr: float = 1e-3  # Adam's learning rate
    lr_final: float | None = None  # decay lr geometrically to this by the last epoch; None: don't
    adam_eps: float = 1e-8  # Adam's ε (Burda et al. 2015 used 1e-4)
    num_samples: int = 1  # K: z samples per data point in the ELBO estimate
    binarize: bool | None = None  # x ~ Bernoulli(pixel) afresh every batch; None: iff Bernoulli
    seed: int = 0  # epoch e shuffles and samples with a generator seeded from (seed, e)
    val_every: int = 1  # compute the validation ELBO every this many epochs (if val_x is given)
    checkpoint_every: int = 1  # save to checkpoint_dir every this many epochs (and after the last)
    progress: bool = True  # a progress bar (tqdm.auto: a widget in Jupyter, text elsewhere)
    cuda_graph: bool = True  # CUDA only: capture one training step as a CUDA graph, replay it
    tf32: bool = True  # CUDA only: TensorFloat-32 matmuls (float32 range, 10-bit mantissa)
    bf16: bool = False  # CUDA only: bfloat16 autocast for the network (the loss stays float32)

    def __post_init__(self):
        for name in ("epochs", "batch_size", "num_samples", "val_every", "checkpoint_every"):
            value = getattr(self, name)
            minimum = 0 if name == "epochs" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
        for name in ("lr", "adam_eps") + (("lr_final",) if self.lr_final is not None else ()):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}.")

    def lr_at(self, epoch: int) -> float:
        """The learning rate of an epoch (1-based): lr · (lr_final/lr)^((epoch-1) / (epochs-1))."""
        if self.lr_final is None or self.epochs <= 1:
            return self.lr
        return self.lr * (self.lr_final / self.lr) ** ((epoch - 1) / (self.epochs - 1))


@dataclass
class History:
    """Per-epoch curves in nats per data point, to plot: ``plt.plot(h.epoch, h.train_elbo)``."""

    epoch: list[int] = field(default_factory=list)  # 1, 2, ...: the completed epochs
    train_elbo: list[float] = field(default_factory=list)  # mean ELBO over the epoch's batches
    train_reconstruction: list[float] = field(default_factory=list)  # mean E_q[log p(x|z)]
    train_kl: list[float] = field(default_factory=list)  # mean KL(q(z|x) ‖ p(z))
    seconds: list[float] = field(default_factory=list)  # wall time since training began
    val_epoch: list[int] = field(default_factory=list)  # the epochs with a validation ELBO
    val_elbo: list[float] = field(default_factory=list)
    val_reconstruction: list[float] = field(default_factory=list)
    val_kl: list[float] = field(default_factory=list)
    interrupted: bool = False  # True if training was stopped by KeyboardInterrupt

    def __len__(self) -> int:
        return len(self.epoch)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> History:
        return cls(**values)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite: ``epoch``, ``iteration`` (1-based), ``checkpoint``."""

    def __init__(self, message: str, epoch: int, iteration: int, checkpoint: Path | None):
        super().__init__(message)
        self.epoch, self.iteration, self.checkpoint = epoch, iteration, checkpoint


# ---------------------------------------------------------------------------------------- one step

class _StepLog:
    """Each step's (loss, reconstruction, KL) written to a buffer on the device.

    Writing costs a few tiny kernels and no host sync; :meth:`read` copies the epoch's rows to the
    host once, where NaNs are looked for and means taken.
    """

    def __init__(self, steps: int, device: torch.device):
        self.values = torch.zeros(steps, 3, device=device)  # (steps, 3): one row per step
        self.step = torch.zeros(1, dtype=torch.long, device=device)  # the row to write next

    def add(self, loss: torch.Tensor, reconstruction: torch.Tensor, kl: torch.Tensor) -> None:
        row = torch.stack([loss, reconstruction.mean(), kl.mean()]).detach()  # (3,)
        self.values.index_copy_(0, self.step, row.view(1, 3))
        self.step += 1

    def reset(self) -> None:
        self.step.zero_()

    def read(self) -> torch.Tensor:
        """The epoch's (steps, 3) rows, on the CPU: the one host sync of the epoch."""
        return self.values.cpu()


def _training_step(model, optimizer, x, cfg: TrainConfig, binarize: bool, generator, log):
    """One Adam step on -ELBO for the minibatch x (B, D). Device work only: no host sync."""
    if binarize:  # x ~ Bernoulli(pixel): 1 where a uniform draw falls below the grey level
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = (u < x).to(x.dtype)
    amp = contextlib.nullcontext()
    if cfg.bf16 and x.is_cuda:
        amp = torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    with amp:
        reconstruction, kl = model.elbo_terms(x, cfg.num_samples, generator, validate=False)
    loss = (kl - reconstruction).mean()  # -ELBO per data point; reconstruction, kl: (B,)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    log.add(loss, reconstruction, kl)


class _CudaGraphStep:
    """Run the training step eagerly a few times (warm-up), then capture it once and replay it.

    A replay launches the whole step's kernels (forward, backward, Adam) at once, from a fixed
    input buffer. Random numbers come from the default CUDA generator, which graphs support.
    """

    def __init__(self, step, batch_shape, device, warmup: int = 3):
        self.step, self.warmup, self.graph = step, warmup, None
        self.x = torch.zeros(batch_shape, device=device)  # the static input buffer

    def __call__(self, x: torch.Tensor) -> None:
        self.x.copy_(x)
        if self.graph is None and self.warmup > 0:  # CUDA graphs want warm-up on a side stream
            self.warmup -= 1
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                self.step(self.x)
            torch.cuda.current_stream().wait_stream(stream)
            return
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):  # records the kernels; runs nothing
                self.step(self.x)
        self.graph.replay()


# ---------------------------------------------------------------------------------------- helpers

@contextlib.contextmanager
def _tf32(enabled: bool):
    """Allow TF32 matmuls inside the block, and restore the previous setting after it."""
    previous = torch.get_float32_matmul_precision()
    if enabled:
        torch.set_float32_matmul_precision("high")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)


def _adam(model, cfg: TrainConfig, use_graph: bool) -> torch.optim.Optimizer:
    """Adam, fused into one kernel per step where the device supports it (CUDA, CPU).

    In a CUDA graph the optimizer must be ``capturable`` and its lr a tensor (a Python number
    would be frozen into the graph; a tensor can be changed in place between replays).
    """
    lr = torch.tensor(cfg.lr, device=model.device) if use_graph else cfg.lr
    options = dict(lr=lr, eps=cfg.adam_eps, capturable=use_graph)
    try:
        return torch.optim.Adam(model.parameters(), fused=True, **options)
    except RuntimeError:  # no fused kernel for this device
        return torch.optim.Adam(model.parameters(), **options)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


@torch.no_grad()
def _validate(model, x: torch.Tensor, seed: int, batch_size: int = 1000) -> tuple[float, float]:
    """Mean reconstruction term and KL on x (already binarized): one z per point, fixed seed."""
    generator = torch.Generator(device=x.device).manual_seed(seed)
    sums = torch.zeros(2, device=x.device)
    for chunk in x.split(batch_size):
        reconstruction, kl = model.elbo_terms(chunk, 1, generator, validate=False)
        sums += torch.stack([reconstruction.sum(), kl.sum()])
    rec, kl = (sums / len(x)).tolist()
    return rec, kl


def _check_finite(values: torch.Tensor, epoch: int, lr: float, checkpoint: Path | None,
                  checkpoint_epoch: int) -> None:
    """Raise :class:`NonFiniteLossError` if a step's loss (``values[:, 0]``) is NaN or infinite."""
    bad = (~torch.isfinite(values[:, 0])).nonzero().flatten()
    if len(bad) == 0:
        return
    iteration = int(bad[0]) + 1
    where = (f"the last good checkpoint is {checkpoint} (epoch {checkpoint_epoch})" if checkpoint
             else "no checkpoint was saved (pass checkpoint_dir= to keep one)")
    raise NonFiniteLossError(
        f"the loss became NaN or infinite at epoch {epoch}, iteration {iteration} of "
        f"{len(values)} (lr={lr:.3g}); {where}. The weights are no longer usable: resume from the "
        "checkpoint with a smaller lr, or check the data.", epoch, iteration, checkpoint)


def _load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load Adam's moments and step counts, keeping this run's settings (lr, fused, capturable)."""
    settings = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, ours in zip(optimizer.param_groups, settings):
        group.update(ours)
        for p in group["params"]:
            if ours["capturable"] and "step" in optimizer.state.get(p, {}):  # must live on the GPU
                optimizer.state[p]["step"] = optimizer.state[p]["step"].to(p.device, torch.float32)


def _resume(model, optimizer, checkpoint_dir) -> tuple[History, int]:
    """Load the weights, optimizer state and history saved in ``checkpoint_dir``.

    Returns:
        (history, the number of completed epochs).
    """
    ckpt = load_checkpoint(checkpoint_dir, device=model.device)
    if ckpt.config != model.config:
        raise ValueError(f"the checkpoint in {checkpoint_dir} is for another model ({ckpt.config}) "
                         f"than this one ({model.config}); build it with VAE(ckpt.config).")
    model.load_state_dict(ckpt.model.state_dict())
    if ckpt.optimizer_state is not None:
        _load_optimizer_state(optimizer, ckpt.optimizer_state)
    history = History.from_dict(ckpt.history) if ckpt.history else History()
    return history, ckpt.epoch


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch  # a different seed for every (seed, epoch) pair


# ---------------------------------------------------------------------------------------- train

def train(model: VAE, train_x: torch.Tensor, config: TrainConfig | None = None, *,
          val_x: torch.Tensor | None = None, checkpoint_dir: str | Path | None = None,
          resume: bool = False, callback=None, **overrides) -> History:
    """Train ``model`` in place by maximizing the ELBO on ``train_x``; return the :class:`History`.

    Args:
        model: a :class:`vaelib.vae.VAE`, on the device to train on.
        train_x: ``(N, D)`` data, moved once to the model's device (grey levels in [0, 1] for a
            Bernoulli likelihood: every batch is binarized afresh).
        config: a :class:`TrainConfig`; ``**overrides`` change its fields, e.g. ``epochs=5``.
        val_x: optional ``(M, D)`` validation data (binarized once, with a fixed seed).
        checkpoint_dir: save a checkpoint there every ``checkpoint_every`` epochs and at the end.
        resume: continue the run saved in ``checkpoint_dir`` (weights, Adam state, history) up to
            ``config.epochs`` epochs in total, as if it had never stopped (bit for bit on the
            CPU: every epoch's random numbers come from its own seed).
        callback: ``callback(history, model)`` after every epoch (e.g. to draw the curves); it may
            raise KeyboardInterrupt to stop.

    Returns:
        The history. On KeyboardInterrupt (e.g. the stop button in Jupyter) training stops, the
        model keeps what it has learned so far, and the history of the completed epochs is
        returned.

    Raises:
        NonFiniteLossError: the loss became NaN or infinite (checked once per epoch).
    """
    cfg = dataclasses.replace(config if config is not None else TrainConfig(), **overrides)
    device = model.device
    train_x = model.check_data(train_x)  # (N, D) on the device; values checked once, here
    binarize = cfg.binarize if cfg.binarize is not None else model.config.likelihood == "bernoulli"
    if val_x is not None:
        val_x = model.check_data(val_x)
        if binarize:
            val_x = fixed_binarization(val_x, seed=cfg.seed)
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir, the folder of the run to continue.")

    use_graph = cfg.cuda_graph and device.type == "cuda"
    optimizer = _adam(model, cfg, use_graph)
    if resume:
        history, start_epoch = _resume(model, optimizer, checkpoint_dir)
        last_checkpoint = Path(checkpoint_dir)
    else:
        history, start_epoch, last_checkpoint = History(), 0, None
        if model.config.init_output_bias and not model.output_bias_from_data:
            model.init_output_bias(train_x.mean(dim=0))  # once, on a fresh model
    last_epoch = start_epoch  # the epoch of last_checkpoint

    N = len(train_x)
    B = min(cfg.batch_size, N)
    steps = N // B  # the N mod B points left over sit out this epoch (different ones each epoch)
    generator = None if use_graph else torch.Generator(device=device)  # graphs: default generator
    log = _StepLog(steps, device)

    def step(x):
        _training_step(model, optimizer, x, cfg, binarize, generator, log)

    run_step = _CudaGraphStep(step, (B, train_x.shape[1]), device) if use_graph else step
    # Redraw at most twice a second: each redraw in Jupyter is a widget message, and thousands of
    # them slow a loaded machine and outrun nbval's wait for output.
    bar = tqdm(total=(cfg.epochs - start_epoch) * steps, unit="batch", desc="training",
               disable=not cfg.progress, dynamic_ncols=True, mininterval=0.5)
    start_time = time.perf_counter() - (history.seconds[-1] if history.seconds else 0.0)
    epoch = start_epoch
    try:
        with _tf32(cfg.tf32 and device.type == "cuda"):
            for epoch in range(start_epoch + 1, cfg.epochs + 1):  # 1-based, as printed
                _set_lr(optimizer, cfg.lr_at(epoch))
                seed = _epoch_seed(cfg.seed, epoch)
                if use_graph:
                    torch.cuda.manual_seed(seed)
                else:
                    generator.manual_seed(seed)
                perm = torch.randperm(N, device=device, generator=generator)  # (N,) on the device
                log.reset()
                for i in range(steps):
                    run_step(train_x[perm[i * B:(i + 1) * B]])  # (B, D)
                    bar.update()
                values = log.read()  # (steps, 3): loss, reconstruction, KL; the epoch's one sync
                _check_finite(values, epoch, cfg.lr_at(epoch), last_checkpoint, last_epoch)

                history.epoch.append(epoch)
                rec, kl = values[:, 1].double().mean().item(), values[:, 2].double().mean().item()
                history.train_reconstruction.append(rec)
                history.train_kl.append(kl)
                history.train_elbo.append(rec - kl)
                postfix = {"elbo": f"{rec - kl:.2f}", "kl": f"{kl:.2f}"}
                if val_x is not None and epoch % cfg.val_every == 0:
                    val_rec, val_kl = _validate(model, val_x, cfg.seed)
                    history.val_epoch.append(epoch)
                    history.val_reconstruction.append(val_rec)
                    history.val_kl.append(val_kl)
                    history.val_elbo.append(val_rec - val_kl)
                    postfix["val_elbo"] = f"{val_rec - val_kl:.2f}"
                history.seconds.append(time.perf_counter() - start_time)
                bar.set_description(f"epoch {epoch}/{cfg.epochs}")
                bar.set_postfix(postfix, refresh=False)

                if checkpoint_dir is not None and (epoch % cfg.checkpoint_every == 0
                                                   or epoch == cfg.epochs):
                    last_checkpoint = save_checkpoint(
                        checkpoint_dir, model, optimizer=optimizer, epoch=epoch,
                        history=history.to_dict(), train_config=dataclasses.asdict(cfg))
                    last_epoch = epoch
                if callback is not None:
                    callback(history, model)
    except KeyboardInterrupt:
        history.interrupted = True
        when = "after" if history.epoch and history.epoch[-1] == epoch else "during"
        saved = (f" Resume from the checkpoint {last_checkpoint} (epoch {last_epoch})."
                 if last_checkpoint else "")
        bar.write(f"Interrupted {when} epoch {epoch}: the model keeps the weights trained so far; "
                  f"returning the history of the {len(history)} completed epoch(s).{saved}")
    finally:
        bar.close()
    return history


# ---------------------------------------------------------------------------------------- the CLI

def _parser() -> argparse.ArgumentParser:
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
        help="also estimate the test NLL (with --eval-samples) every E epochs, into "
             "nll_curve.json: the curve of NLL against training time")
    arg("--curve-points", type=int, default=None, metavar="N",
        help="estimate the curve's NLL on the first N test images only (cheaper on a CPU; "
             "default: all of them). The final evaluation always uses every test image")
    arg("--max-images", type=int, default=None, metavar="N",
        help="use only the first N training and test images (a quick try)")
    arg("--no-progress", action="store_true", help="no progress bar")
    arg("--no-cuda-graph", action="store_true", help="CUDA: run every step eagerly")
    arg("--bf16", action="store_true", help="CUDA: bfloat16 autocast")
    return p


def _nll_curve(args, test_x: torch.Tensor, out: Path):
    """A train() callback: every ``args.eval_every`` epochs, the test NLL into nll_curve.json."""
    path = out / "nll_curve.json"
    curve = json.loads(path.read_text()) if args.resume and path.exists() else []
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
    args = _parser().parse_args(argv)
    device = torch.device(args.device) if args.device else default_device()
    out = Path(args.out)
    if args.resume:
        model = load_checkpoint(out, device=device).model
        print(f"Resuming the run in {out}: {model.config}")
    else:
        overrides = {} if args.latent_dim is None else {"latent_dim": args.latent_dim}
        model = VAE(VAEConfig.preset(args.preset, **overrides)).to(device)
    mnist = load_mnist_subset() if args.dataset == "mnist-subset" else load_mnist(args.data_dir)
    train_x = to_unit_interval(mnist.train_images[:args.max_images]).to(device)  # (N, 784)
    test_x = to_unit_interval(mnist.test_images[:args.max_images]).to(device)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      lr_final=args.lr_final, adam_eps=args.adam_eps, seed=args.seed,
                      checkpoint_every=args.checkpoint_every, progress=not args.no_progress,
                      cuda_graph=not args.no_cuda_graph, bf16=args.bf16)
    if args.eval_every and args.eval_samples < 1:
        raise SystemExit("--eval-every needs --eval-samples K (e.g. 5000)")
    if args.curve_points is not None and args.curve_points < 1:
        raise SystemExit(f"--curve-points must be >= 1, got {args.curve_points}")
    history = train(model, train_x, cfg, val_x=test_x if args.validate else None,
                    checkpoint_dir=out, resume=args.resume,
                    callback=_nll_curve(args, test_x, out) if args.eval_every else None)

    summary = {"dataset": args.dataset, "device": str(device), "epochs": len(history),
               "train_elbo": history.train_elbo[-1] if history else None,
               "seconds": history.seconds[-1] if history else None}
    if args.eval_samples > 0 and not history.interrupted:
        result = evaluate(model, test_x, num_samples=args.eval_samples,
                          iwae_samples=min(50, args.eval_samples), seed=args.seed,
                          progress=not args.no_progress).summary()
        atomic_write_bytes(out / "evaluation.json", json.dumps(result, indent=1).encode())
        summary["test"] = result
    manifest = out / "config.json"
    files = json.loads(manifest.read_text())["files"] if manifest.exists() else {}
    summary["files"] = {kind: str(out / entry["name"]) for kind, entry in files.items()}
    print(json.dumps(summary, indent=1))
    print(f"Checkpoint written to {out}/ (vaelib.checkpoint.load_model({str(out)!r}) loads it); "
          f"history: {summary['files'].get('history', 'none')}")
    return history


if __name__ == "__main__":
    main()
