"""Training a VAE: stochastic gradient ascent on the ELBO (ch. 8).

Each step takes a minibatch x (B, D), binarizes it afresh (x ~ Bernoulli(pixel), for a Bernoulli
likelihood), and takes one Adam step on the loss

    loss = -(1/B) Σ_n ELBO(x_n),   ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) ‖ p(z))

estimated with one reparameterized z per data point (the "doubly stochastic" estimator: random
minibatch, random z; ch. 7). ``TrainConfig(objective="iwae", num_samples=K)`` maximizes the
importance-weighted bound IWAE_K instead, with the encoder's gradient ``"plain"`` or ``"dreg"``
(:mod:`vaelib.objectives`, ch. 10). What makes it fast without making it hard to read:

- the data live on the model's device, and batches are slices of an on-device random permutation
  (no DataLoader, no host-to-device copy per batch);
- nothing is read back to the host during an epoch: each step's loss, reconstruction and KL are
  written to a buffer on the device and read once per epoch (a ``.item()`` per step would make
  the CPU wait for the GPU at every step);
- Adam is ``fused`` (one kernel for all parameters) where the device supports it;
- on CUDA, one whole training step is captured as a CUDA graph and replayed, with TF32 matmuls
  (bfloat16 autocast is optional): a small MLP is otherwise limited by kernel-launch overhead. The
  graph is trusted only after one replay computed what one eager step computes from the same
  state (:func:`_graph_or_eager`); otherwise the eager step trains, after one warning.

:func:`train` is the algorithm itself, one screen: for each epoch, for each minibatch, one step
(:func:`_training_step`: binarize, the loss, its gradient, Adam, the log). Everything beside it
(checks, resuming, the progress bar, validation, checkpoints, divergence, Ctrl-C) is in
:class:`_TrainingRun`.

The trainer knows nothing of files beyond its checkpoints: the command line
(``python -m vaelib.train --help``) and its run folder live in :mod:`vaelib.cli`.
"""

from __future__ import annotations

if __name__ == "__main__":  # python -m vaelib.train: hand over to vaelib.cli before defining
    # anything, so this file runs once, as vaelib.train (imported by the command line), not twice.
    from vaelib.cli import main

    main()  # returns the History; the exit status is 0, as after any finished run
    raise SystemExit

import contextlib
import copy
import dataclasses
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .data import fixed_binarization
from .device import derive_seed
from .kl import gaussian_kl
from .objectives import ENCODER_GRADIENTS, iwae_surrogate_at
from .vae import VAE, flow_floats_per_sample

#: The training objectives (ch. 8: the ELBO; ch. 10: the importance-weighted bound IWAE_K).
OBJECTIVES = ("elbo", "iwae")

__all__ = ["TrainConfig", "ConfigError", "History", "TrainingDivergedError", "NonFiniteLossError",
           "train",
           "validation_data", "objective_settings", "OBJECTIVES", "CudaGraphWarning",
           "step_memory_bytes", "check_step_memory", "memory_budget"]


class ConfigError(ValueError):
    """A :class:`TrainConfig` field with a value it cannot take; ``field`` names the field (the
    command line turns it into its flag, e.g. ``num_samples`` -> ``--k``)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _option(default, help: str, flag: str | None = None, resumed: bool = False,
            **argparse_options):
    """A :class:`TrainConfig` field that the command line (:mod:`vaelib.cli`) sets with ``flag``
    (default ``--field-name``; ``--no-...`` for a bool that is True by default): its default, help
    and flag are written here, once. ``resumed``: left out on ``--resume``, the run's own value
    is kept."""
    return field(default=default, metadata={"help": help, "flag": flag, "resumed": resumed,
                                            "argparse": argparse_options})


@dataclass
class TrainConfig:
    """How to train (the architecture is the model's :class:`vaelib.vae.VAEConfig`).

    The fields made with ``_option`` are the command line's flags too (``python -m vaelib.train
    --help``): their defaults and help come from here.
    """

    # passes over the training set in total (a resumed run continues up to it)
    epochs: int = _option(10, "epochs in total")
    # data points per gradient step (as in pytorch/examples)
    batch_size: int = _option(128, "data points per gradient step")
    lr: float = _option(1e-3, "Adam's learning rate")
    # decay lr geometrically to this by the last epoch; None: don't
    lr_final: float | None = _option(
        None, "decay the learning rate geometrically to this by the last epoch", type=float)
    adam_eps: float = _option(1e-8, "Adam's epsilon (Burda et al. 2015 used 1e-4)")
    # K: z samples per data point (ELBO: averaged; IWAE: inside the log)
    num_samples: int = _option(
        1, "samples per data point: inside IWAE_K's log, or averaged in the ELBO estimate",
        flag="--k", metavar="K", resumed=True)
    # "elbo" | "iwae": maximize IWAE_K, K = num_samples (ch. 10)
    objective: str = _option(
        "elbo", "the training objective: the ELBO, or the importance-weighted bound IWAE_K "
        "(Burda et al. 2015; chapter 10)", choices=list(OBJECTIVES), resumed=True)
    # the IWAE encoder's gradient: "plain" (autograd) | "dreg"
    encoder_gradient: str = _option(
        "plain", "the encoder's gradient estimator for --objective iwae: plain (autograd of the "
        "bound) or dreg (doubly reparameterized, Tucker et al. 2019; its signal does not fade as "
        "K grows)", choices=list(ENCODER_GRADIENTS), resumed=True)
    binarize: bool | None = None  # x ~ Bernoulli(pixel) afresh every batch; None: iff the
    #                               likelihood needs binary data (Bernoulli)
    # epoch e shuffles and samples with a generator seeded from (seed, e)
    seed: int = _option(0, "the seed of the shuffling, the samples and the initial weights")
    val_every: int = 1  # compute the validation ELBO every this many epochs (if val_x is given)
    # save to checkpoint_dir every this many epochs (and after the last)
    checkpoint_every: int = _option(
        1, "save the checkpoint every E epochs and after the last (on a GPU an epoch can take a "
        "tenth of a second, so save less often there, e.g. 50)", metavar="E")
    # a progress bar (tqdm.auto: a widget in Jupyter, text elsewhere)
    progress: bool = _option(True, "no progress bar", flag="--no-progress")
    # CUDA only: capture one training step as a CUDA graph, replay it
    cuda_graph: bool = _option(True, "CUDA: run every step eagerly", flag="--no-cuda-graph")
    tf32: bool = True  # CUDA only: TensorFloat-32 matmuls (float32 range, 10-bit mantissa)
    # CUDA only: bfloat16 autocast for the network (the loss stays float32)
    bf16: bool = _option(False, "CUDA: bfloat16 autocast")

    def __post_init__(self):
        for name in ("epochs", "batch_size", "num_samples", "val_every", "checkpoint_every",
                     "seed"):
            value = getattr(self, name)
            minimum = 0 if name in ("epochs", "seed") else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(name, f"{name} must be an integer >= {minimum}, got {value!r}.")
        for name in ("lr", "adam_eps") + (("lr_final",) if self.lr_final is not None else ()):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value <= 0):
                raise ConfigError(name, f"{name} must be a finite number > 0 (e.g. lr=1e-3, "
                                 f"adam_eps=1e-8), got {value!r}.")
        if self.binarize is not None and not isinstance(self.binarize, bool):
            raise ConfigError("binarize", f"binarize must be True, False or None (binarize iff the "
                              f"likelihood needs binary data), got {self.binarize!r}.")
        for name in ("progress", "cuda_graph", "tf32", "bf16"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, f"{name} must be True or False, got "
                                        f"{getattr(self, name)!r}.")
        if self.objective not in OBJECTIVES:
            raise ConfigError("objective", f"unknown objective {self.objective!r}; choose 'elbo' "
                              "or 'iwae' (the importance-weighted bound with K = num_samples).")
        if self.encoder_gradient not in ENCODER_GRADIENTS:
            raise ConfigError("encoder_gradient", f"unknown encoder_gradient "
                              f"{self.encoder_gradient!r}; choose one of {ENCODER_GRADIENTS}.")
        if self.encoder_gradient != "plain" and self.objective != "iwae":
            raise ConfigError("encoder_gradient", f"encoder_gradient={self.encoder_gradient!r} is "
                              "an estimator of the IWAE gradient: use it with objective='iwae' "
                              "(any num_samples).")

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


class TrainingDivergedError(RuntimeError):
    """Training diverged: an epoch's ELBO fell far below where training started (or, as the
    subclass :class:`NonFiniteLossError`, the loss became NaN or infinite). Attributes ``epoch``,
    ``iteration`` (1-based, or None for a whole epoch), ``checkpoint`` (the last good one, or None).
    """

    def __init__(self, message: str, epoch: int, iteration: int | None,
                 checkpoint: Path | None):
        super().__init__(message)
        self.epoch, self.iteration, self.checkpoint = epoch, iteration, checkpoint


class NonFiniteLossError(TrainingDivergedError):
    """The loss became NaN or infinite: ``epoch``, ``iteration`` (1-based), ``checkpoint``."""


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


def _iwae_terms(model, x, cfg: TrainConfig, generator):
    """(-IWAE_K estimate with the chosen gradient (B,), reconstruction (B,), KL (B,)) (ch. 10).

    The reconstruction term and the KL are the ELBO's, from the same K samples (its sampled
    reconstruction; its KL in closed form for a Gaussian q, for a flow posterior the Monte Carlo
    mean of log q(z_k|x) - log p(z_k), as in :meth:`vaelib.vae.VAE.elbo_terms`), so the history's
    ELBO means the same for both objectives; the loss is minus the bound.
    """
    q = model.posterior(x, validate_args=False)
    if model.config.posterior == "flow":  # z and log q(z|x) from one pass through the maps
        z, log_q = q.rsample_with_log_prob((cfg.num_samples,), generator=generator)  # (K, B, d)
    else:
        z, log_q = q.rsample((cfg.num_samples,), generator=generator), None  # (K, B, d)
    log_likelihood = model.log_likelihood(x, z, validate=False)  # (K, B), no data check: no sync
    log_prior = model.log_prior(z)  # (K, B)
    log_joint = log_prior + log_likelihood  # log p(x, z_k), (K, B)
    bound = iwae_surrogate_at(z, log_joint, q, cfg.encoder_gradient, log_q=log_q)
    reconstruction = log_likelihood.detach().mean(dim=0)  # (B,)
    if log_q is None:
        kl = gaussian_kl(q.mean.detach().float(), q.logvar.detach().float())  # (B,)
    else:
        kl = (log_q.detach().float() - log_prior.detach().float()).mean(dim=0)  # (B,)
    return -bound, reconstruction, kl


def _training_step(model, optimizer, x, cfg: TrainConfig, binarize: bool, generator, log):
    """One Adam step on -ELBO (or -IWAE_K) for the minibatch x (B, D). Device work only."""
    # x ~ Bernoulli(pixel): 1 where a uniform draw falls below the grey level. Not data.binarize
    # (torch.bernoulli): that draws other random numbers (every run's numbers would change) and
    # checks x's range, a host sync that a captured CUDA-graph step cannot make.
    if binarize:
        u = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        x = (u < x).to(x.dtype)
    amp = contextlib.nullcontext()
    if cfg.bf16 and x.is_cuda:
        amp = torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False)
    with amp:
        if cfg.objective == "iwae":
            negative_bound, reconstruction, kl = _iwae_terms(model, x, cfg, generator)
            loss = negative_bound.mean()  # -IWAE_K per data point
        else:
            reconstruction, kl = model.elbo_terms(x, cfg.num_samples, generator, validate=False)
            loss = (kl - reconstruction).mean()  # -ELBO per data point; reconstruction, kl: (B,)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    log.add(loss, reconstruction, kl)


# ------------------------------------------------------------------------------------- CUDA graph

class CudaGraphWarning(RuntimeWarning):
    """The training step could not be captured as a CUDA graph, or its replay did not compute what
    the eager step computes: training runs the eager CUDA step instead."""


#: The captured step is trusted when, from the same state, batch and random numbers as one eager
#: step, its loss is within GRAPH_LOSS_RTOL · max(1, |loss|) of the eager loss and its parameter
#: update Δθ within GRAPH_UPDATE_RTOL of the eager one: ‖Δθ_graph - Δθ_eager‖ <= 1e-2 ‖Δθ_eager‖
#: (relative to the size of the update).
#: Float rounding differs by far less (1e-6 or below); a wrong update (a stale input, lr or
#: optimizer state) by far more.
GRAPH_LOSS_RTOL = 1e-3
GRAPH_UPDATE_RTOL = 1e-2


def _capture_cuda_graph(step, x: torch.Tensor, reset, warmup: int = 3):
    """Capture ``step`` (one training step on a ``(B, D)`` batch) as a CUDA graph.

    Runs ``warmup`` eager steps on x first (CUDA graphs want them, on a side stream; they change
    the weights: the caller restores them), calling ``reset()`` before each. Returns ``run(x)``,
    which copies x into the graph's input buffer and replays the whole step (forward, backward,
    Adam) in one launch. Random numbers come from the default CUDA generator, which graphs support.
    """
    static_x = x.clone()  # (B, D): the graph reads its input from this buffer
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            reset()
            step(static_x)
    torch.cuda.current_stream().wait_stream(stream)
    reset()
    graph = torch.cuda.CUDAGraph()
    # Capture on the warm-up's stream: cuBLAS(Lt) handles are per (device, stream), and creating
    # one during a capture fails (pytorch/pytorch#179961).
    with torch.cuda.graph(graph, stream=stream):  # records the kernels; runs nothing
        step(static_x)

    def run(x: torch.Tensor) -> None:
        static_x.copy_(x)
        graph.replay()

    return run


class _TrainingState:
    """A copy of what a training step changes (weights, buffers, optimizer state), restored *in
    place*: a CUDA graph keeps the addresses of the tensors it was captured with. Optimizer state
    created after the copy (a fresh Adam's first step) is restored to zeros, Adam's initial state.
    """

    def __init__(self, model, optimizer: torch.optim.Optimizer):
        self.tensors = [(t, t.detach().clone()) for t in (*model.parameters(), *model.buffers())]
        self.parameters = list(model.parameters())
        self.optimizer = optimizer
        self.optimizer_state = {
            (p, key): value.clone() if isinstance(value, torch.Tensor) else value
            for p, state in optimizer.state.items() for key, value in state.items()}

    @torch.no_grad()
    def restore(self) -> None:
        for tensor, saved in self.tensors:
            tensor.copy_(saved)
        for p, state in self.optimizer.state.items():
            for key, value in state.items():
                saved = self.optimizer_state.get((p, key))
                if isinstance(value, torch.Tensor):
                    value.copy_(saved) if saved is not None else value.zero_()
                elif (p, key) in self.optimizer_state:
                    state[key] = saved

    @torch.no_grad()
    def change(self) -> torch.Tensor:
        """Δθ: the parameters now minus the copied ones, flattened, ``(P,)`` float32."""
        saved = {id(t): s for t, s in self.tensors}
        return torch.cat([(p - saved[id(p)]).flatten().float() for p in self.parameters])


def _graphs_supported(device: torch.device) -> bool:
    return device.type == "cuda"


def _seed_default_generator(device: torch.device, seed: int) -> None:
    """Seed the generator a step with ``generator=None`` draws from (a graph's: the CUDA one)."""
    if device.type == "cuda":
        torch.cuda.manual_seed(seed)
    else:
        torch.manual_seed(seed)


def _graph_or_eager(step, x: torch.Tensor, x_check: torch.Tensor, model, optimizer, log, *,
                    capture=_capture_cuda_graph, reseed=torch.cuda.manual_seed):
    """The step to train with on CUDA: the captured graph if it computes what the eager step does.

    Captures ``step`` on the batch x (``capture(step, x, log.reset)``), then, from the state after
    the warm-up steps (so Adam's moments are set) and with the same random numbers
    (``reseed(0)``), runs one eager step and one replay on another batch, x_check ``(B, D)`` (a
    graph that kept reading its capture's input fails), and compares their loss and parameter
    update (:data:`GRAPH_LOSS_RTOL`, :data:`GRAPH_UPDATE_RTOL`). The weights, optimizer state and
    log are restored afterwards, whatever happens: the check trains nothing.

    Returns:
        ``(the graphed step, None)``, or ``(step, what failed)`` when the capture raised, the
        replay raised, or the two steps disagree.
    """
    start = _TrainingState(model, optimizer)
    try:
        try:
            graphed = capture(step, x, log.reset)
        except Exception as err:  # no graphs with this GPU, driver or model
            return step, f"capturing the training step as a CUDA graph failed ({err!r})"
        warmed = _TrainingState(model, optimizer)
        results = []  # (loss, Δθ) of the eager step, then of the replay
        for name, run in (("eager", step), ("replayed", graphed)):
            warmed.restore()
            log.reset()
            reseed(0)
            try:
                run(x_check)
            except Exception as err:
                return step, f"the {name} step failed during the check ({err!r})"
            results.append((log.values[0, 0].item(), warmed.change()))
        (loss, update), (graph_loss, graph_update) = results
        if not math.isfinite(loss):
            return step, f"the check cannot compare: the eager step's loss is {loss}"
        if not abs(graph_loss - loss) <= GRAPH_LOSS_RTOL * max(1.0, abs(loss)):
            return step, (f"the captured step's loss ({graph_loss:.7g}) differs from the eager "
                          f"step's ({loss:.7g}) on the same batch and state")
        differs = ((graph_update - update).norm() / update.norm().clamp_min(1e-30)).item()
        if not differs <= GRAPH_UPDATE_RTOL:
            return step, (f"the captured step's parameter update differs from the eager step's "
                          f"by {differs:.3g} of its size (tolerance {GRAPH_UPDATE_RTOL:g}) on the "
                          "same batch and state")
        return graphed, None
    finally:
        start.restore()
        log.reset()


def _warn_eager_fallback(reason: str) -> None:
    warnings.warn(f"{reason}. Training with the eager CUDA step instead (same algorithm, slower); "
                  "pass cuda_graph=False (python -m vaelib.train --no-cuda-graph) to skip the "
                  "graph and this check.", CudaGraphWarning, stacklevel=4)


# ---------------------------------------------------------------------------------------- memory

def step_memory_bytes(config, batch_size: int, num_samples: int) -> int:
    """About the memory one training step needs (bytes): K × B decoder passes kept for backward.

    Each (sample, data point) pair holds about 4 D + 2 Σ hidden + 4 d float32 numbers (the
    decoder's activations, the likelihood's terms and their gradients), plus the weights, their
    gradients and Adam's two moments (4 × parameters). Measured on the CPU (784-400-20, B = 128,
    K = 100 to 400, ELBO and IWAE plain or DReG): about 10.7 kB a pair, 1.5 times less than this.
    """
    per_pair = 4 * (4 * config.data_dim + 2 * sum(config.hidden_dims) + 4 * config.latent_dim)
    per_pair += 4 * flow_floats_per_sample(config)  # a flow posterior's maps (0 for a Gaussian)
    return batch_size * num_samples * per_pair + 16 * config.num_parameters()


def memory_budget(device: torch.device) -> int | None:
    """Bytes a training step may use: 90% of the free memory on CUDA; elsewhere half the memory
    the machine has available (others share it: a hub's kernels, the browser). None: unknown."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(0.9 * free)
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024 // 2
    except (OSError, KeyError, ValueError):
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
        except (ValueError, OSError, AttributeError):
            return None


def _gb(n: float) -> str:
    """Bytes as people read them: 2,061 GB, 1.5 GB, 230 MB."""
    if n >= 1e10:
        return f"{n / 1e9:,.0f} GB"
    return f"{n / 1e9:.3g} GB" if n >= 1e8 else f"{n / 1e6:.3g} MB"


def check_step_memory(config, batch_size: int, num_samples: int, device,
                      budget: int | None = None) -> None:
    """Refuse a training step that would not fit in memory, before anything is allocated.

    Raises:
        ValueError: naming the estimate (:func:`step_memory_bytes`), the budget
            (:func:`memory_budget`, or ``budget``) and the largest K that fits at this batch size.
    """
    device = torch.device(device)
    where = ("the budget given" if budget is not None else "90% of the GPU's free memory"
             if device.type == "cuda" else "half the memory this machine has available")
    budget = memory_budget(device) if budget is None else budget
    need = step_memory_bytes(config, batch_size, num_samples)
    if budget is None or need <= budget:
        return
    per_sample = step_memory_bytes(config, batch_size, 1) - step_memory_bytes(config, 0, 1)
    fits = max(0, (budget - step_memory_bytes(config, 0, 1)) // per_sample)
    raise ValueError(
        f"a training step with K = num_samples = {num_samples:,} samples for each of "
        f"batch_size = {batch_size} data points would need about {_gb(need)} of memory "
        f"({num_samples * batch_size:,} decoder passes held for the gradient), more than the "
        f"{_gb(budget)} allowed here ({where}). "
        + (f"At most K = {fits:,} fits with this batch size (fewer data points per batch allow a "
           "larger K; IWAE papers use K <= 50 for training)." if fits >= 1 else
           "Even K = 1 does not fit: use a smaller batch_size."))


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
                              checkpoint: Path | None, last_good: str) -> None:
    """Raise :class:`NonFiniteLossError` if a step's loss (``values[:, 0]``) is NaN or infinite.
    ``last_good``: where to go back to and what to do (the end of the message)."""
    bad = (~torch.isfinite(values[:, 0])).nonzero().flatten()
    if len(bad) == 0:
        return
    iteration = int(bad[0]) + 1
    raise NonFiniteLossError(
        f"the loss became NaN or infinite at epoch {epoch}, iteration {iteration} of "
        f"{len(values)} (lr={lr:.3g}); {last_good}", epoch, iteration, checkpoint)


#: An epoch whose mean ELBO is below where training started by more than this many times
#: max(|starting ELBO|, D) nats has diverged: 10 nats a pixel worse than an untrained model.
DIVERGENCE_FACTOR = 10


def _raise_if_diverging(values: torch.Tensor, history: History, data_dim: int, epoch: int,
                        lr: float, checkpoint: Path | None, last_good: str) -> None:
    """Raise :class:`TrainingDivergedError` if the epoch's mean ELBO is far below the start.

    The start is the first epoch's mean ELBO, or, in the first epoch, the ELBO of the first step
    (the untrained model). A learning rate far too large (e.g. 100) sends the ELBO to -1e13 or
    beyond while every number stays finite, so the NaN check alone would save ruined weights.
    """
    elbo = -values[:, 0].double().mean().item()  # values[:, 0] is the loss, -ELBO
    start = history.train_elbo[0] if history.train_elbo else -values[0, 0].item()
    if elbo >= start - DIVERGENCE_FACTOR * max(abs(start), data_dim):
        return
    what = "the first epoch's" if history.train_elbo else "the untrained model's"
    raise TrainingDivergedError(
        f"training is diverging at epoch {epoch} (lr={lr:.3g}): its mean ELBO per data point is "
        f"{elbo:.4g} nats, far below {what} {start:.4g}, the sign of a learning rate too large "
        f"for this model; {last_good}", epoch, None, checkpoint)


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


def _check_same_objective(cfg: TrainConfig, ckpt: Checkpoint) -> None:
    """A resumed run keeps its objective: the one saved in the checkpoint's training options."""
    saved = objective_settings(ckpt.train_config)
    ours = objective_settings(dataclasses.asdict(cfg))
    if saved != ours:
        raise ValueError(f"the run in {ckpt.directory} was trained with {saved}, not {ours}: "
                         "resume it with the same objective (TrainConfig(**objective_settings("
                         "ckpt.train_config)) restores them), or start a new run.")


def objective_settings(train_config: dict | None) -> dict:
    """The objective, K and encoder gradient of saved training options (``TrainConfig`` as a dict;
    runs saved before these options existed trained on the ELBO with the plain gradient)."""
    saved = train_config or {}
    return {name: saved.get(name, default) for name, default in
            (("objective", "elbo"), ("num_samples", 1), ("encoder_gradient", "plain"))}


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
          resume: bool | Checkpoint = False, callback=None, run_config: dict | None = None,
          **overrides) -> History:
    """Train ``model`` in place by maximizing the ELBO (or, with ``objective="iwae"``, IWAE_K) on
    ``train_x``; return the :class:`History`.

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
            it is, not read again. The run's objective (``objective``, ``num_samples``,
            ``encoder_gradient``) must be the one it was saved with.
        callback: ``callback(history, model)`` after every epoch (e.g. to draw the curves); it may
            raise KeyboardInterrupt to stop.
        run_config: a JSON-ready dict saved with every checkpoint (e.g. the command line's
            settings, which ``python -m vaelib.train --resume`` restores).

    Returns:
        The history. On KeyboardInterrupt (e.g. the stop button in Jupyter, Ctrl-C) training
        stops, the model keeps what it has learned so far, and the history of the completed
        epochs is returned, with ``interrupted`` set. With ``checkpoint_dir``, every completed
        epoch is saved first (atomically, as every save): the checkpoint then holds the weights at
        the end of the last completed epoch, whatever ``checkpoint_every`` is. A message says
        exactly what the checkpoint holds.

    Raises:
        ValueError: data the model cannot score (or 8-bit pixels for a Gaussian likelihood),
            settings that do not fit together, or a step too large for the memory
            (:func:`check_step_memory`); all before any training.
        TrainingDivergedError: an epoch's mean ELBO fell far below where training started
            (e.g. a learning rate of 100); nothing of that epoch is saved.
        NonFiniteLossError: the loss became NaN or infinite (checked once per epoch).

    On CUDA the step is captured as a CUDA graph, checked against the eager step first; if the
    capture fails or they disagree, a :class:`CudaGraphWarning` says so and the eager step trains.
    """
    cfg = dataclasses.replace(config if config is not None else TrainConfig(), **overrides)
    run = _TrainingRun(model, train_x, cfg, val_x, checkpoint_dir, resume, run_config)
    data, B = run.train_x, run.batch_size  # (N, D) on the model's device; B points per step
    with run.saving_on_ctrl_c(), _tf32(run.tf32):  # Ctrl-C: save the completed epochs, return
        for epoch in range(run.completed + 1, cfg.epochs + 1):  # 1-based, as printed
            order = run.begin_epoch(epoch)  # this epoch's lr and seed; a random order of 0..N-1
            for i in range(run.steps):
                x = data[order[i * B:(i + 1) * B]]  # sample a minibatch: (B, D)
                run.step(x)  # binarize x; one Adam step on -ELBO (or -IWAE_K); log its terms
            run.end_epoch(epoch)  # stop if diverged; history, validation ELBO, checkpoint
            if callback is not None:
                callback(run.history, model)
    return run.history


# ------------------------------------------------------------------------- beside the loop

class _TrainingRun:
    """Everything :func:`train` does beside the algorithm: the input checks, Adam, resuming, the
    step (eager, or a CUDA graph checked against it), the progress bar, the epoch's log and
    history, validation, checkpoints, the divergence checks and Ctrl-C."""

    def __init__(self, model: VAE, train_x: torch.Tensor, cfg: TrainConfig, val_x, checkpoint_dir,
                 resume: bool | Checkpoint, run_config: dict | None):
        self.model, self.cfg, device = model, cfg, model.device
        self.train_x, self.val_x = _check_inputs(model, train_x, cfg, val_x, checkpoint_dir,
                                                 resume)
        self.binarize = cfg.binarizes(model)
        N = len(self.train_x)
        self.batch_size = B = min(cfg.batch_size, N)
        self.steps = N // B  # the N mod B points left over sit out this epoch (others each epoch)
        check_step_memory(model.config, B, cfg.num_samples, device)

        self.graph = cfg.cuda_graph and _graphs_supported(device)
        self.tf32 = cfg.tf32 and device.type == "cuda"
        self.optimizer = _adam(model, cfg, self.graph)
        self.checkpoint_dir = checkpoint_dir
        if resume:
            ckpt = resume if isinstance(resume, Checkpoint) else load_checkpoint(checkpoint_dir,
                                                                                  device=device)
            _check_same_objective(cfg, ckpt)
            self.history, self.completed = _resume(model, self.optimizer, ckpt)
            self.last_checkpoint = Path(checkpoint_dir)
        else:
            self.history, self.completed, self.last_checkpoint = History(), 0, None
            if model.config.init_output_bias and not model.output_bias_from_data:
                model.init_output_bias(self.train_x.mean(dim=0))  # once, on a fresh model
        self.last_epoch = self.epoch = self.completed  # last_epoch: the epoch of last_checkpoint
        self.snapshot = None  # the last completed epoch, while it is not on disk
        self.saved = dict(train_config=dataclasses.asdict(cfg), run_config=run_config)

        # Graphs draw from the default CUDA generator (reseeded every epoch); eager: our own.
        self.generator = None if self.graph else torch.Generator(device=device)
        self.log = _StepLog(self.steps, device)
        self.run_step = None  # chosen at the first epoch: eager, or a checked CUDA graph
        # Redraw at most twice a second: each redraw in Jupyter is a widget message, and
        # thousands of them slow a loaded machine and outrun nbval's wait for output.
        self.bar = tqdm(total=(cfg.epochs - self.completed) * self.steps, unit="batch",
                        desc="training", disable=not cfg.progress, dynamic_ncols=True,
                        mininterval=0.5)
        self.start_time = time.perf_counter() - (self.history.seconds[-1]
                                                 if self.history.seconds else 0.0)

    def eager_step(self, x: torch.Tensor) -> None:
        _training_step(self.model, self.optimizer, x, self.cfg, self.binarize, self.generator,
                       self.log)

    def begin_epoch(self, epoch: int) -> torch.Tensor:
        """Set the epoch's lr and seed; return a random order of the N data points, ``(N,)``."""
        self.epoch = epoch
        if self.run_step is None:
            self.run_step = self.eager_step
            if self.graph:  # capture on the first B points, check on the last B
                data, B, device = self.train_x, self.batch_size, self.train_x.device
                self.run_step, failed = _graph_or_eager(
                    self.eager_step, data[:B], data[-B:], self.model, self.optimizer, self.log,
                    capture=_capture_cuda_graph,
                    reseed=lambda seed: _seed_default_generator(device, seed))
                if failed:
                    _warn_eager_fallback(failed)
        _set_lr(self.optimizer, self.cfg.lr_at(epoch))
        seed = derive_seed(self.cfg.seed, epoch)  # every epoch its own random numbers
        if self.graph:
            _seed_default_generator(self.train_x.device, seed)
        else:
            self.generator.manual_seed(seed)
        self.log.reset()
        N = len(self.train_x)
        return torch.randperm(N, device=self.train_x.device, generator=self.generator)

    def step(self, x: torch.Tensor) -> None:
        self.run_step(x)
        self.bar.update()

    def end_epoch(self, epoch: int) -> None:
        """Read the epoch's log (its one host sync), stop if it diverged, record it, validate,
        save."""
        values = self.log.read()  # (steps, 3): loss, reconstruction, KL
        lr = self.cfg.lr_at(epoch)
        _raise_if_loss_not_finite(values, epoch, lr, self.last_checkpoint, self._last_good())
        _raise_if_diverging(values, self.history, self.model.data_dim, epoch, lr,
                            self.last_checkpoint, self._last_good())
        history = self.history
        history.epoch.append(epoch)
        rec, kl = values[:, 1].double().mean().item(), values[:, 2].double().mean().item()
        history.train_reconstruction.append(rec)
        history.train_kl.append(kl)
        history.train_elbo.append(rec - kl)
        postfix = {"elbo": f"{rec - kl:.2f}", "kl": f"{kl:.2f}"}
        if self.val_x is not None and epoch % self.cfg.val_every == 0:
            val_rec, val_kl = _validation_terms(self.model, self.val_x, self.cfg.seed)
            history.val_epoch.append(epoch)
            history.val_reconstruction.append(val_rec)
            history.val_kl.append(val_kl)
            history.val_elbo.append(val_rec - val_kl)
            postfix["val_elbo"] = f"{val_rec - val_kl:.2f}"
        history.seconds.append(time.perf_counter() - self.start_time)
        self.bar.set_description(f"epoch {epoch}/{self.cfg.epochs}")
        self.bar.set_postfix(postfix, refresh=False)
        self._save(epoch)

    def _save(self, epoch: int) -> None:
        """Save every ``checkpoint_every`` epochs and after the last; else keep a snapshot."""
        if self.checkpoint_dir is None:
            return
        if epoch % self.cfg.checkpoint_every == 0 or epoch == self.cfg.epochs:
            self.last_checkpoint = save_checkpoint(
                self.checkpoint_dir, self.model, optimizer=self.optimizer, epoch=epoch,
                history=self.history.to_dict(), **self.saved)
            self.last_epoch, self.snapshot = epoch, None
        else:
            self.snapshot = _Snapshot(self.model, self.optimizer, self.history)

    def _last_good(self) -> str:
        """Where a diverged run can go back to, and what to do (the end of its error message)."""
        if self.last_checkpoint:
            where = f"the last good checkpoint is {self.last_checkpoint} (epoch {self.last_epoch})"
        elif self.checkpoint_dir is not None:
            where = (f"no checkpoint was saved yet in {self.checkpoint_dir} (none had been due "
                     "before this epoch)")
        else:
            where = "no checkpoint was saved (pass checkpoint_dir= to keep one)"
        return (f"{where}. The weights are no longer usable: resume from the checkpoint with a "
                "smaller lr, or check the data.")

    @contextlib.contextmanager
    def saving_on_ctrl_c(self):
        """On KeyboardInterrupt: save every completed epoch (with checkpoint_dir), say exactly
        what the checkpoint holds, mark the history ``interrupted`` and return normally."""
        try:
            yield
        except KeyboardInterrupt:
            self._interrupted()
        finally:
            self.bar.close()

    def _interrupted(self) -> None:
        history, epoch = self.history, self.epoch
        when = "after" if history.epoch and history.epoch[-1] == epoch else "during"
        completed = history.epoch[-1] if history.epoch else 0
        note = ""
        if self.checkpoint_dir is not None and completed > self.last_epoch:
            try:
                if _save_on_interrupt(self.checkpoint_dir, self.model, self.optimizer, history,
                                      when == "after", self.snapshot, **self.saved):
                    self.last_checkpoint, self.last_epoch = Path(self.checkpoint_dir), completed
                    note = (f" Saved the {completed} completed epochs to {self.last_checkpoint} "
                            f"(epoch {completed}).")
            except KeyboardInterrupt:  # a second Ctrl-C: the save is atomic, the old one stands
                note = f" A second Ctrl-C stopped saving epoch {completed}."
        history.interrupted = True
        if self.last_checkpoint:
            note += (f" The checkpoint {self.last_checkpoint} (epoch {self.last_epoch}) holds "
                     f"{'every' if self.last_epoch == completed else 'not every'} completed "
                     "epoch; resume from it.")
        elif self.checkpoint_dir is not None:
            note += " No epoch was completed, so no checkpoint was saved."
        self.bar.write(f"Interrupted {when} epoch {epoch}: the model keeps the weights trained so "
                       f"far; returning the history of the {len(history)} completed epoch(s)."
                       f"{note}")


def _check_inputs(model: VAE, train_x, cfg: TrainConfig, val_x, checkpoint_dir, resume):
    """``(train_x, val_x)`` on the model's device, checked (each once, here), or a clear error."""
    train_x = model.check_data(train_x)  # (N, D)
    if len(train_x) == 0:
        raise ValueError(f"train_x has no data points (shape {tuple(train_x.shape)}); train needs "
                         "at least one.")
    if cfg.binarize and not model.likelihood.binary_data:
        raise ValueError(
            f"binarize=True turns the data into 0/1 pixels, but this model's "
            f"{type(model.likelihood).__name__} likelihood is for real values (it would score "
            "binary images as if they were grey levels with Gaussian noise): use "
            "likelihood='bernoulli' for binarized pixels, or leave binarize=None.")
    if not model.likelihood.binary_data:
        _check_scaled(train_x, model)
    if val_x is not None:
        val_x = validation_data(model, val_x, cfg)
        if len(val_x) == 0:
            raise ValueError(f"val_x has no data points (shape {tuple(val_x.shape)}); pass at "
                             "least one, or val_x=None.")
    if resume and checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir, the folder of the run to continue.")
    if checkpoint_dir is not None:
        path = Path(checkpoint_dir)
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(
                f"checkpoint_dir={str(path)!r} is an existing file, not a folder: pass a folder "
                "for the checkpoint (it is created if missing).")
    return train_x, val_x


def _check_scaled(x: torch.Tensor, model: VAE) -> None:
    """Refuse 8-bit pixels (whole numbers up to 255) for a real-valued likelihood: with a noise
    s = 0.1 their squared errors reach (255 / s)² and the ELBO runs to -1e27 and beyond."""
    hi = x.abs().max().item()
    if hi > 1 and hi <= 255 and bool((x == x.round()).all()) and x.min().item() >= 0:
        raise ValueError(
            f"the data look unscaled: whole numbers in [0, {hi:.0f}], like 8-bit pixels, for a "
            f"{type(model.likelihood).__name__} likelihood with noise s = "
            f"{model.config.gaussian_std:g}. Divide by 255 first (vaelib.data.to_unit_interval "
            "gives values in [0, 1]).")


class _Snapshot:
    """The weights, optimizer state and history at the end of an epoch that was not saved, so
    that Ctrl-C during the next one can still save every completed epoch."""

    def __init__(self, model: VAE, optimizer: torch.optim.Optimizer, history: History):
        self.epoch = history.epoch[-1]
        self.model_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.optimizer_state = copy.deepcopy(optimizer.state_dict())  # the tensors copied too
        self.history = copy.deepcopy(history.to_dict())


def _save_on_interrupt(checkpoint_dir, model, optimizer, history: History, weights_current: bool,
                       snapshot: _Snapshot | None, **saved) -> bool:
    """Save the completed epochs after Ctrl-C; True if saved. ``weights_current``: the model's
    weights are those at the end of the last completed epoch (it stopped between epochs)."""
    if weights_current:
        save_checkpoint(checkpoint_dir, model, optimizer=optimizer, epoch=history.epoch[-1],
                        history=history.to_dict(), **saved)
        return True
    if snapshot is not None and snapshot.epoch == history.epoch[-1]:
        save_checkpoint(checkpoint_dir, model, epoch=snapshot.epoch, history=snapshot.history,
                        model_state=snapshot.model_state,
                        optimizer_state=snapshot.optimizer_state, **saved)
        return True
    return False
