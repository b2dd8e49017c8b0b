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

The trainer knows nothing of files beyond its checkpoints: the command line
(``python -m vaelib.train --help``) and its run folder live in :mod:`vaelib.cli`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .data import fixed_binarization
from .device import derive_seed
from .vae import VAE

__all__ = ["TrainConfig", "History", "NonFiniteLossError", "train", "validation_data"]


@dataclass
class TrainConfig:
    """How to train (the architecture is the model's :class:`vaelib.vae.VAEConfig`)."""

    epochs: int = 10  # passes over the training set in total (a resumed run continues up to it)
    batch_size: int = 128  # data points per gradient step (as in pytorch/examples)
    lr: float = 1e-3  # Adam's learning rate
    lr_final: float | None = None  # decay lr geometrically to this by the last epoch; None: don't
    adam_eps: float = 1e-8  # Adam's ε (Burda et al. 2015 used 1e-4)
    num_samples: int = 1  # K: z samples per data point in the ELBO estimate
    binarize: bool | None = None  # x ~ Bernoulli(pixel) afresh every batch; None: iff the
    #                               likelihood needs binary data (Bernoulli)
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

    def binarizes(self, model: VAE) -> bool:
        """Whether training binarizes the data: ``binarize``, or by default iff the likelihood
        needs binary data."""
        return self.binarize if self.binarize is not None else model.likelihood.binary_data

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
def _validation_terms(model, x: torch.Tensor, seed: int,
                      batch_size: int = 1000) -> tuple[float, float]:
    """Mean reconstruction term and KL on x (already binarized): one z per point, fixed seed."""
    generator = torch.Generator(device=x.device).manual_seed(seed)
    sums = torch.zeros(2, device=x.device)
    for chunk in x.split(batch_size):
        reconstruction, kl = model.elbo_terms(chunk, 1, generator, validate=False)
        sums += torch.stack([reconstruction.sum(), kl.sum()])
    rec, kl = (sums / len(x)).tolist()
    return rec, kl


def _raise_if_loss_not_finite(values: torch.Tensor, epoch: int, lr: float,
                              checkpoint: Path | None, checkpoint_epoch: int) -> None:
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


def _resume(model, optimizer, ckpt: Checkpoint) -> tuple[History, int]:
    """Load the weights (unless ``model`` is the checkpoint's own), optimizer state and history.

    Returns:
        (history, the number of completed epochs).
    """
    if ckpt.config != model.config:
        raise ValueError(f"the checkpoint in {ckpt.directory} is for another model ({ckpt.config}) "
                         f"than this one ({model.config}); build it with VAE(ckpt.config).")
    if ckpt.model is not model:
        model.load_state_dict(ckpt.model.state_dict())
    if ckpt.optimizer_state is not None:
        _load_optimizer_state(optimizer, ckpt.optimizer_state)
    history = History.from_dict(ckpt.history) if ckpt.history else History()
    return history, ckpt.epoch


# ---------------------------------------------------------------------------------------- train

def validation_data(model: VAE, val_x: torch.Tensor, config: TrainConfig | None = None,
                    **overrides) -> torch.Tensor:
    """The validation set exactly as :func:`train` scores it: ``(M, D)`` on the model's device.

    Checked with ``model.check_data``, then, when the run binarizes (``config.binarizes(model)``),
    binarized once with ``config.seed`` (:func:`vaelib.data.fixed_binarization`), so every epoch's
    validation ELBO is about the same binary images. ``config`` and ``**overrides`` as in
    :func:`train`.
    """
    cfg = dataclasses.replace(config if config is not None else TrainConfig(), **overrides)
    val_x = model.check_data(val_x)
    return fixed_binarization(val_x, seed=cfg.seed) if cfg.binarizes(model) else val_x


def train(model: VAE, train_x: torch.Tensor, config: TrainConfig | None = None, *,
          val_x: torch.Tensor | None = None, checkpoint_dir: str | Path | None = None,
          resume: bool | Checkpoint = False, callback=None, **overrides) -> History:
    """Train ``model`` in place by maximizing the ELBO on ``train_x``; return the :class:`History`.

    Args:
        model: a :class:`vaelib.vae.VAE`, on the device to train on.
        train_x: ``(N, D)`` data, moved once to the model's device (grey levels in [0, 1] for a
            Bernoulli likelihood: every batch is binarized afresh).
        config: a :class:`TrainConfig`; ``**overrides`` change its fields, e.g. ``epochs=5``.
        val_x: optional ``(M, D)`` validation data (binarized once, with a fixed seed: see
            :func:`validation_data`).
        checkpoint_dir: save a checkpoint there every ``checkpoint_every`` epochs and at the end.
        resume: continue the run saved in ``checkpoint_dir`` (weights, Adam state, history) up to
            ``config.epochs`` epochs in total, as if it had never stopped (bit for bit on the
            CPU: every epoch's random numbers come from its own seed). A :class:`Checkpoint`
            already loaded from ``checkpoint_dir`` (e.g. ``model`` is its ``.model``) is used as
            it is, not read again.
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
    binarize = cfg.binarizes(model)
    if val_x is not None:
        val_x = validation_data(model, val_x, cfg)
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir, the folder of the run to continue.")

    use_graph = cfg.cuda_graph and device.type == "cuda"
    optimizer = _adam(model, cfg, use_graph)
    if resume:
        ckpt = resume if isinstance(resume, Checkpoint) else load_checkpoint(checkpoint_dir,
                                                                              device=device)
        history, start_epoch = _resume(model, optimizer, ckpt)
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
                seed = derive_seed(cfg.seed, epoch)  # every epoch its own random numbers
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
                _raise_if_loss_not_finite(values, epoch, cfg.lr_at(epoch), last_checkpoint, last_epoch)

                history.epoch.append(epoch)
                rec, kl = values[:, 1].double().mean().item(), values[:, 2].double().mean().item()
                history.train_reconstruction.append(rec)
                history.train_kl.append(kl)
                history.train_elbo.append(rec - kl)
                postfix = {"elbo": f"{rec - kl:.2f}", "kl": f"{kl:.2f}"}
                if val_x is not None and epoch % cfg.val_every == 0:
                    val_rec, val_kl = _validation_terms(model, val_x, cfg.seed)
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


if __name__ == "__main__":  # python -m vaelib.train: the command line lives in vaelib.cli
    from vaelib.cli import main

    main()
