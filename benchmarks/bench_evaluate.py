"""Time the importance-sampled test log-likelihood: K samples for each of N test images.

The target configuration is Burda et al.'s: K = 5000 over the 10,000 MNIST test images (a GPU job);
on a CPU pass a smaller --num-samples and --num-points.

    python benchmarks/bench_evaluate.py --num-samples 5000 --data-dir DIR --device cuda
    python benchmarks/bench_evaluate.py --num-samples 100 --num-points 500 --device cpu

Without --checkpoint the model is an untrained Burda-preset VAE (timing only: the log-likelihood is
then meaningless). Prints one JSON object; no assertions.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from vaelib.checkpoint import load_model
from vaelib.data import load_mnist, load_mnist_subset, to_unit_interval
from vaelib.device import default_device
from vaelib.evaluate import chunk_sizes, default_memory_budget, evaluate
from vaelib.vae import VAE


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: the best one present)")
    p.add_argument("--num-samples", type=int, default=5000, help="K (default: %(default)s)")
    p.add_argument("--iwae-samples", type=int, default=50,
                   help="k of the IWAE bound (default: %(default)s)")
    p.add_argument("--num-points", type=int, default=None,
                   help="the first N test images (default: all)")
    p.add_argument("--data-dir", default=None,
                   help="full MNIST from this folder (default: the bundled subset)")
    p.add_argument("--checkpoint", default=None, help="a trained model's checkpoint folder")
    p.add_argument("--memory-budget", type=float, default=None,
                   help="bytes (default: half the free GPU memory on CUDA, 256 MiB on CPU)")
    args = p.parse_args(argv)
    device = torch.device(args.device) if args.device else default_device()
    mnist = load_mnist(args.data_dir, download=False) if args.data_dir else load_mnist_subset()
    x = to_unit_interval(mnist.test_images[:args.num_points]).to(device)  # (N, 784)
    if args.checkpoint:
        model = load_model(args.checkpoint, device=device)
    else:
        torch.manual_seed(0)
        model = VAE.from_preset("burda").to(device)
        model.init_output_bias(to_unit_interval(mnist.train_images).mean(0))
    budget = int(args.memory_budget) if args.memory_budget else default_memory_budget(device)

    evaluate(model, x[:8], num_samples=16, iwae_samples=4, progress=False)  # warm-up (CUDA init)
    _sync(device)
    start = time.perf_counter()
    result = evaluate(model, x, num_samples=args.num_samples, iwae_samples=args.iwae_samples,
                      memory_budget=budget, progress=False)
    _sync(device)
    seconds = time.perf_counter() - start
    n, k = chunk_sizes(model, len(x), args.num_samples, budget)
    out = {
        "benchmark": "evaluate",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "model": args.checkpoint or "burda preset, untrained",
        "num_points": len(x),
        "num_samples": args.num_samples,
        "memory_budget_bytes": budget,
        "chunk": {"points": n, "samples": k},
        "seconds": seconds,
        "points_per_s": len(x) / seconds,
        "samples_per_s": len(x) * args.num_samples / seconds,
        "seconds_for_10k_points": seconds * 10_000 / len(x),
        **{f"test_{key}": value for key, value in result.summary().items()},
    }
    if device.type == "cuda":
        out["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
