"""``python -m vaelib.selftest``: check, in about a minute, that vaelib trains on this machine.

An instructor runs it before class on the machine that will train the full VAE (``make
selftest``). On the device vaelib picks (:func:`vaelib.device.default_device`, or ``--device``) it
runs, each as one item:

- a few training steps with the eager step, and, on CUDA, with the step captured as a CUDA graph
  (which must pass its own check against the eager step: :func:`vaelib.train.train`);
- saving a checkpoint, loading it, and resuming it: the resumed run must end where a run that
  never stopped ends;
- Ctrl-C in the middle of an epoch: the completed epochs are saved from their snapshot;
- :func:`vaelib.evaluate.evaluate` with K = 5000 importance samples on a few test images.

It prints the device's name and one line per item (``ok`` or ``FAILED`` with the error), says
which CUDA items were not run on a machine without CUDA, and exits with status 1 if any item
failed. The data are the bundled MNIST subset: nothing is downloaded, nothing is written outside a
temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import load_checkpoint
from .data import load_mnist_subset, to_unit_interval
from .device import check_device, default_device
from .evaluate import evaluate
from .train import CudaGraphWarning, TrainConfig, train
from .vae import VAE, VAEConfig

__all__ = ["Item", "Result", "items_for", "run_selftest", "main", "device_name"]

IMAGES = 512  # training images: 4 steps of 128 an epoch
TEST_IMAGES = 5  # images for evaluate(K = 5000)
EVAL_SAMPLES = 5000  # K, as in Burda et al. (2015) and the README's full run
SEED = 0


@dataclass
class Item:
    """One check: ``run(context)`` raises if it fails; ``cuda_only`` items need CUDA."""

    name: str
    run: Callable[[Context], None]
    cuda_only: bool = False


@dataclass
class Result:
    name: str
    ok: bool | None  # None: not run
    seconds: float
    message: str = ""


@dataclass
class Context:
    """What every item uses: the device, the data on it, a temporary folder."""

    device: torch.device
    train_x: torch.Tensor  # (IMAGES, 784) on the device, in [0, 1]
    test_x: torch.Tensor  # (TEST_IMAGES, 784)
    folder: Path

    def new_model(self) -> VAE:
        torch.manual_seed(SEED)
        return VAE(VAEConfig.preset("pytorch-example")).to(self.device)

    def options(self, **overrides) -> TrainConfig:
        return TrainConfig(**{"epochs": 2, "batch_size": 128, "seed": SEED, "progress": False,
                              **overrides})


def device_name(device: torch.device) -> str:
    """What the device is, in words: the GPU's name, or the CPU's and its threads."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        total = torch.cuda.get_device_properties(index).total_memory
        return (f"cuda:{index} {torch.cuda.get_device_name(index)} ({total / 2**30:.0f} GiB, "
                f"CUDA {torch.version.cuda}, torch {torch.__version__})")
    if device.type == "cpu":
        cpu = platform.processor() or platform.machine()
        return f"cpu {cpu} ({torch.get_num_threads()} torch threads, torch {torch.__version__})"
    return f"{device} (torch {torch.__version__})"


# ---------------------------------------------------------------------------------------- items

def _trains(context: Context, **options) -> None:
    """A few steps: finite, and the ELBO of epoch 2 above epoch 1's; no CUDA graph warning."""
    model = context.new_model()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CudaGraphWarning)
        history = train(model, context.train_x, context.options(**options))
    fallback = [w for w in caught if issubclass(w.category, CudaGraphWarning)]
    for w in caught:
        if w not in fallback:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if fallback:
        raise RuntimeError(str(fallback[0].message))
    elbo = history.train_elbo
    if not all(map(torch.isfinite, torch.tensor(elbo))) or not elbo[1] > elbo[0]:
        raise RuntimeError(f"the ELBO did not rise over two epochs: {elbo}")


def eager_training(context: Context) -> None:
    _trains(context, cuda_graph=False)


def graphed_training(context: Context) -> None:
    _trains(context, cuda_graph=True)


def _max_difference(a: VAE, b: VAE) -> float:
    sa, sb = a.state_dict(), b.state_dict()
    return max((sa[k].float() - sb[k].float()).abs().max().item() for k in sa)


def _tolerance(device: torch.device) -> float:
    """Weights after the same training on one device agree exactly on the CPU; on a GPU, kernels
    may sum in another order from run to run (atomics), so up to float rounding, grown by Adam."""
    return 0.0 if device.type == "cpu" else 1e-3


def checkpoint_resume(context: Context) -> None:
    """Train 1 epoch into a checkpoint, load it, resume it to 3: the same as 3 epochs straight."""
    folder = context.folder / "resume"
    options = context.options(epochs=3)
    straight = context.new_model()
    train(straight, context.train_x, options)
    first = context.new_model()
    train(first, context.train_x, options, epochs=1, checkpoint_dir=folder)
    ckpt = load_checkpoint(folder, device=context.device)
    if ckpt.epoch != 1 or _max_difference(ckpt.model, first) != 0:
        raise RuntimeError(f"the loaded checkpoint (epoch {ckpt.epoch}) is not the saved model")
    history = train(ckpt.model, context.train_x, options, checkpoint_dir=folder, resume=ckpt)
    differs = _max_difference(ckpt.model, straight)
    if history.epoch != [1, 2, 3] or load_checkpoint(folder).epoch != 3:
        raise RuntimeError(f"the resumed run has epochs {history.epoch}, not [1, 2, 3]")
    if differs > _tolerance(context.device):
        raise RuntimeError(f"the resumed run's weights differ from the straight run's by "
                           f"{differs:.3g} (tolerance {_tolerance(context.device):g})")


class _StopsInEpoch(VAE):
    """Raises KeyboardInterrupt (as Ctrl-C does) at its ``stop_at``-th training step."""

    stop_at = 0
    calls = 0

    def elbo_terms(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.stop_at:
            raise KeyboardInterrupt
        return super().elbo_terms(*args, **kwargs)


def ctrl_c_snapshot(context: Context) -> None:
    """Ctrl-C in epoch 3 with checkpoint_every=5: epoch 2 is saved from its snapshot."""
    folder = context.folder / "ctrl-c"
    options = context.options(epochs=4, checkpoint_every=5, cuda_graph=False)
    steps = len(context.train_x) // options.batch_size
    straight = context.new_model()
    train(straight, context.train_x, options, epochs=2)
    torch.manual_seed(SEED)
    model = _StopsInEpoch(VAEConfig.preset("pytorch-example")).to(context.device)
    model.stop_at = 2 * steps + 2  # the second step of epoch 3
    with contextlib.redirect_stdout(io.StringIO()) as said:  # train() says what it saved
        history = train(model, context.train_x, options, checkpoint_dir=folder)
    if "Saved the 2 completed epochs" not in said.getvalue():
        raise RuntimeError(f"train() did not say it saved epoch 2: {said.getvalue()!r}")
    if not history.interrupted or history.epoch != [1, 2]:
        raise RuntimeError(f"Ctrl-C in epoch 3 returned epochs {history.epoch}")
    saved = load_checkpoint(folder, device=context.device)
    differs = _max_difference(saved.model, straight)
    if saved.epoch != 2 or differs > _tolerance(context.device):
        raise RuntimeError(f"the checkpoint holds epoch {saved.epoch} with weights {differs:.3g} "
                           "from those at the end of epoch 2")


def evaluation(context: Context) -> None:
    """evaluate(K = 5000) on a few test images: finite numbers, effective sample sizes in [1, K],
    and the same log p(x) when the memory budget forces another chunking (each image's noise has
    its own seed, so the chunks must not change the numbers: rtol 1e-5)."""
    model = context.new_model()
    train(model, context.train_x, context.options(epochs=1))
    result = evaluate(model, context.test_x, num_samples=EVAL_SAMPLES, iwae_samples=50,
                      seed=SEED, progress=False)
    numbers = torch.stack([result.elbo, result.iwae, result.log_likelihood])  # (3, n)
    if not bool(torch.isfinite(numbers).all()):
        raise RuntimeError(f"non-finite estimates: {numbers.tolist()}")
    if not bool(((result.ess >= 1 - 1e-3) & (result.ess <= EVAL_SAMPLES + 1e-3)).all()):
        raise RuntimeError(f"an effective sample size outside [1, K]: {result.ess.tolist()}")
    chunked = evaluate(model, context.test_x, num_samples=EVAL_SAMPLES, iwae_samples=50,
                       seed=SEED, progress=False, memory_budget=2**20)  # 1 image, 40 samples a pass
    if not torch.allclose(chunked.log_likelihood, result.log_likelihood, rtol=1e-5, atol=1e-4):
        raise RuntimeError(f"log p(x) depends on the chunking: {result.log_likelihood.tolist()} "
                           f"and, in smaller chunks, {chunked.log_likelihood.tolist()}")


def items_for() -> list[Item]:
    """The self-test's items, in the order they run."""
    return [
        Item("training, eager step", eager_training),
        Item("training, CUDA graph (checked against the eager step)", graphed_training,
             cuda_only=True),
        Item("checkpoint save, load and resume", checkpoint_resume),
        Item("Ctrl-C in an epoch saves the completed ones", ctrl_c_snapshot),
        Item(f"evaluate, K = {EVAL_SAMPLES} on {TEST_IMAGES} test images", evaluation),
    ]


# ---------------------------------------------------------------------------------------- running

def run_selftest(device: torch.device, items: list[Item] | None = None,
                 out: Callable[[str], None] = print) -> list[Result]:
    """Run ``items`` (default :func:`items_for`) on ``device``; print one line per item."""
    items = items_for() if items is None else items
    mnist = load_mnist_subset()
    results = []
    with tempfile.TemporaryDirectory(prefix="vaelib-selftest-") as folder:
        context = Context(device=device,
                          train_x=to_unit_interval(mnist.train_images[:IMAGES]).to(device),
                          test_x=to_unit_interval(mnist.test_images[:TEST_IMAGES]).to(device),
                          folder=Path(folder))
        width = max(len(item.name) for item in items)
        for item in items:
            if item.cuda_only and device.type != "cuda":
                result = Result(item.name, None, 0.0, f"not run: needs CUDA ({device.type} here)")
            else:
                start = time.perf_counter()
                try:
                    item.run(context)
                    result = Result(item.name, True, time.perf_counter() - start)
                except Exception as err:  # every failure is reported, and the next item runs
                    where = traceback.extract_tb(err.__traceback__)[-1]
                    result = Result(item.name, False, time.perf_counter() - start,
                                    f"{type(err).__name__}: {err} ({Path(where.filename).name}:"
                                    f"{where.lineno})")
            status = {True: "ok", False: "FAILED", None: "--"}[result.ok]
            detail = f"  {result.message}" if result.message else ""
            out(f"{item.name:<{width}}  {status:<6} {result.seconds:5.1f} s{detail}")
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (1 if any item failed)."""
    p = argparse.ArgumentParser(prog="python -m vaelib.selftest",
                                description=__doc__.split("\n")[0])
    p.add_argument("--device", default=None,
                   help="cpu, cuda, cuda:1, mps (default: the one vaelib picks, as training does)")
    args = p.parse_args(argv)
    try:
        device = check_device(args.device) if args.device else default_device()
    except ValueError as err:
        p.error(f"--device: {err}")
    print(f"vaelib self-test on {device_name(device)}")
    results = run_selftest(device)
    failed = [r.name for r in results if r.ok is False]
    not_run = [r.name for r in results if r.ok is None]
    if not_run:
        print(f"Not run on this machine (no CUDA device): {'; '.join(not_run)}. Run the self-test "
              "on the GPU machine that will train.")
    if failed:
        print(f"{len(failed)} of {len(results)} items FAILED. See the README (GPU): train with "
              "--no-cuda-graph if only the CUDA graph failed, --device cpu if the GPU fails "
              "every training item; report the lines above.")
        return 1
    print(f"All {len(results) - len(not_run)} items run passed.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
