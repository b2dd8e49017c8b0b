"""Chapter 10's three training runs, repeated over seeds: how much of the gap is the objective's.

Trains chapter 10's VAE (Burda et al.'s 784-200-200-50 preset, chapter 10's hyper-parameters) on the
bundled subset three times per seed, from the same initialization and the same minibatches: on the
ELBO, on IWAE_K with the plain encoder gradient, and on IWAE_K with DReG. Each model's test
log p(x) is estimated with K = --num-samples importance samples on the first --num-points fixed
binarized test images (paired: the same images for the three models), and with K = --check-samples
on the first --check-points of them, to show how far the smaller K moves each estimate.

    python benchmarks/bench_iwae_objectives.py   # 5 seeds: 26 min on 2 busy cores (est. ~6 idle)
    python benchmarks/bench_iwae_objectives.py --seeds 0 1 --epochs 2

Prints one JSON object: per seed, each model's means and the paired gaps with their standard errors;
then, over the seeds, each gap's mean, standard deviation and smallest value. No assertions (the
chapter asserts its own run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch

from vaelib.data import fixed_binarization, load_mnist_subset, to_unit_interval
from vaelib.evaluate import evaluate
from vaelib.train import train
from vaelib.vae import VAE, VAEConfig

OBJECTIVES = {  # name -> vaelib.train options (chapter 10, section 5)
    "elbo": {},
    "iwae_plain": {"objective": "iwae", "encoder_gradient": "plain"},
    "iwae_dreg": {"objective": "iwae", "encoder_gradient": "dreg"},
}


def train_run(train_x, seed, epochs, k, options):
    """Chapter 10's model and hyper-parameters; initialization and minibatches from `seed`."""
    torch.manual_seed(seed)  # the same initial weights for the three objectives
    model = VAE(VAEConfig.preset("burda"))
    if options:
        options = {**options, "num_samples": k}
    history = train(model, train_x, epochs=epochs, batch_size=100, lr=2e-3, seed=seed,
                    progress=False, **options)
    return model, history.seconds[-1]


def summarize(model, test_x, args):
    """Means over the test images, and the per-image log p(x) for the paired gaps."""
    ev = evaluate(model, test_x[:args.num_points], num_samples=args.num_samples, iwae_samples=5,
                  seed=0, progress=False)
    check = evaluate(model, test_x[:args.check_points], num_samples=args.check_samples,
                     iwae_samples=5, seed=1, progress=False)  # independent draws
    shift = check.log_likelihood - ev.log_likelihood[:args.check_points]
    with torch.no_grad():
        mu, logvar = model.encode(test_x)  # (N, d) each
    active = mu.var(dim=0) > 0.01  # (d,)
    return ev.log_likelihood, {
        "log_likelihood": ev.log_likelihood.mean().item(),
        "iwae_5": ev.iwae.mean().item(),
        "elbo": ev.elbo.mean().item(),
        "ess_mean": ev.ess.mean().item(),
        f"log_likelihood_k{args.check_samples}_minus_k{args.num_samples}": shift.mean().item(),
        "shift_standard_error": (shift.std() / len(shift) ** 0.5).item(),
        # log p(x) − ELBO ≈ KL(q ‖ p(z|x)): how far the encoder is from the ELBO's own target
        "log_likelihood_minus_elbo": (ev.log_likelihood - ev.elbo).mean().item(),
        "mean_log_sigma_active_units": 0.5 * logvar[:, active].mean().item(),
        "active_units": int(active.sum()),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--k", type=int, default=5, help="K of the IWAE training objective")
    p.add_argument("--num-points", type=int, default=1000)
    p.add_argument("--num-samples", type=int, default=500)
    p.add_argument("--check-points", type=int, default=200)
    p.add_argument("--check-samples", type=int, default=5000)
    args = p.parse_args(argv)
    torch.set_default_dtype(torch.float32)
    mnist = load_mnist_subset()
    train_x = to_unit_interval(mnist.train_images)
    test_x = fixed_binarization(to_unit_interval(mnist.test_images), seed=0)
    start = time.perf_counter()
    runs = []
    for seed in args.seeds:
        per_image, models = {}, {}
        for name, options in OBJECTIVES.items():
            model, seconds = train_run(train_x, seed, args.epochs, args.k, options)
            per_image[name], models[name] = summarize(model, test_x, args)
            models[name]["train_seconds"] = seconds
        gaps = {}
        for a, b in (("iwae_plain", "elbo"), ("iwae_dreg", "elbo"), ("iwae_dreg", "iwae_plain")):
            d = per_image[a] - per_image[b]  # paired: the same test images
            gaps[f"{a}_minus_{b}"] = {"mean": d.mean().item(),
                                      "standard_error": (d.std() / len(d) ** 0.5).item()}
        runs.append({"seed": seed, "models": models, "gaps": gaps})
        print(json.dumps(runs[-1]), flush=True)  # progress, one line per seed
    over_seeds = {}
    for gap in runs[0]["gaps"]:
        values = [r["gaps"][gap]["mean"] for r in runs]
        over_seeds[gap] = {"mean": statistics.mean(values), "min": min(values), "max": max(values),
                           "sd": statistics.stdev(values) if len(values) > 1 else None}
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
                         f"{torch.get_num_threads()} threads",
              "args": vars(args), "seconds": time.perf_counter() - start,
              "over_seeds": over_seeds, "runs": runs}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
