"""Test-set numbers of a trained VAE: ELBO, IWAE bound, log-likelihood, to a memory budget (ch. 8).

For each test image x, draw K samples z_k ~ q(z|x) and form the log importance weights
(:func:`vaelib.estimators.log_importance_weights`, ch. 3)

    log w_k = log p(x, z_k) - log q(z_k|x),   k = 1..K.

From the same K weights:

    log p(x)  ≈ log (1/K) Σ_k w_k           importance sampling (ch. 3); K = 5000 in Burda et al.
    IWAE_k    ≈ mean over K/k groups of log (1/k) Σ_{j in group} w_j      (ch. 4)
    ELBO      ≈ (1/K) Σ_k log w_k                                         (ch. 4)

so ELBO <= IWAE_k <= log p(x) up to Monte Carlo error. The test set is binarized once with a fixed
seed (:func:`vaelib.data.fixed_binarization`), so numbers are comparable between runs and with the
literature.

K × N decoder outputs of D pixels do not fit in memory (5000 × 10,000 × 784 floats = 157 GB), so the
work is chunked: a chunk of data points at a time, and within it a chunk of samples at a time
(:func:`chunk_sizes`). The noise of data point i is drawn from its own generator, seeded with
(seed, i), so the numbers do not depend on the chunk sizes, i.e. on the memory budget.

Because the noise is drawn here, log q(z_k|x) is computed from it directly, in log space:
``log q(z_k|x) = -½ Σ_j (log 2π + logvar_j + eps_kj²)``, exact for ``z_k = μ + σ ⊙ eps_k`` and
finite however small σ² is (``(z - μ)² / σ²`` would be 0 · ∞ = NaN for log σ² ≈ -150 in float32).
A flow posterior (ch. 11) is the proposal as it is: z_k is the base sample pushed through its
maps, and log q(z_k|x) is the base's, from the noise, minus the maps' log-determinants, computed
in the same pass (no map is inverted).
An encoder whose log-variance is so large that z itself overflows is reported, not averaged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from . import estimators
from .checks import check_num_samples
from .data import fixed_binarization
from .device import derive_seed
from .gaussian import DiagonalGaussian
from .protocols import LatentVariableModel
from .vae import flow_floats_per_sample

if TYPE_CHECKING:
    from .flows import FlowPosterior

__all__ = ["Evaluation", "evaluate", "importance_log_likelihood", "chunk_sizes",
           "default_memory_budget", "check_memory_budget"]


@dataclass
class Evaluation:
    """Per-data-point estimates, ``(N,)`` CPU tensors in nats, and how they were made."""

    elbo: torch.Tensor  # (1/K) Σ_k log w_k
    iwae: torch.Tensor  # IWAE bound with iwae_samples samples
    log_likelihood: torch.Tensor  # log (1/K) Σ_k w_k
    ess: torch.Tensor  # effective sample size of the K weights (near K: q is a good proposal)
    num_samples: int  # K
    iwae_samples: int  # k

    def summary(self) -> dict:
        """Means over the data points (and the standard error of the log-likelihood's mean)."""
        n = len(self.log_likelihood)
        sem = self.log_likelihood.std().item() / math.sqrt(n) if n > 1 else float("nan")
        log_likelihood = self.log_likelihood.mean().item()
        return {"num_points": n, "num_samples": self.num_samples, "iwae_samples": self.iwae_samples,
                "elbo": self.elbo.mean().item(),
                f"iwae_{self.iwae_samples}": self.iwae.mean().item(),
                "log_likelihood": log_likelihood, "nll": -log_likelihood,
                "log_likelihood_sem": sem, "ess_mean": self.ess.mean().item()}


def default_memory_budget(device: torch.device) -> int:
    """Bytes the evaluation may use: half the free GPU memory on CUDA, 256 MiB elsewhere."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    return 256 * 2**20


def chunk_sizes(model, num_points: int, num_samples: int, memory_budget: int) -> tuple[int, int]:
    """``(n, k)``: data points per chunk and samples per decoder call, to fit ``memory_budget``.

    Half the budget (bytes) holds a chunk's noise and log-weights (n × K × (d + 1) floats), the
    other half one decoder call over k × n latents (about 3D + 2 Σ hidden + 4d floats each).
    """
    c = model.config
    per_point = 4 * num_samples * (c.latent_dim + 1)
    per_pair = 4 * (3 * c.data_dim + 2 * sum(c.hidden_dims) + 4 * c.latent_dim
                    + flow_floats_per_sample(c))  # a flow posterior's maps (0 for a Gaussian)
    n = min(num_points, max(1, memory_budget // 2 // per_point))
    k = min(num_samples, max(1, memory_budget // 2 // (n * per_pair)))
    return n, k


def check_memory_budget(config, num_samples: int, memory_budget: object) -> int:
    """``memory_budget`` as an int, checked: a number of bytes > 0 that holds at least one data
    point's K samples (noise and log-weights, K × (d + 1) floats, in half the budget: see
    :func:`chunk_sizes`). Chunking cannot go below one data point, so a K too large for the
    budget is refused here, with the figure and the largest K that fits, before any work.
    """
    if (isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, float))
            or not math.isfinite(memory_budget) or memory_budget < 1):
        raise ValueError(f"memory_budget must be a number of bytes > 0 (e.g. 2**28 for 256 MiB; "
                         f"None: default_memory_budget), got {memory_budget!r}.")
    budget = int(memory_budget)
    per_point = 4 * num_samples * (config.latent_dim + 1)
    if per_point > budget // 2:
        fits = budget // 2 // (4 * (config.latent_dim + 1))
        raise ValueError(
            f"evaluate: K = num_samples = {num_samples:,} importance samples need about "
            f"{per_point / 1e6:,.0f} MB for each data point (its noise and log-weights, "
            f"K × (d + 1) = {num_samples:,} × {config.latent_dim + 1} floats), more than half the "
            f"memory budget of {budget / 1e6:,.0f} MB. At most K = {fits:,} fits (Burda et al. "
            "use K = 5000), or pass a larger memory_budget if the machine has it.")
    return budget


def _log_weights(model: LatentVariableModel, x: torch.Tensor, q: DiagonalGaussian | FlowPosterior,
                 eps: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """``log w_k = log p(x, z_k) - log q(z_k|x)`` at ``z_k = μ + σ ⊙ eps_k`` (pushed through the
    maps of a flow posterior) for noise drawn in advance, ``eps (K, n, d) -> (K, n)``,
    ``chunk_size`` samples at a time.

    z and ``log q`` come from the noise itself (``q.transform``): for a Gaussian,
    :meth:`DiagonalGaussian.log_prob_of_noise` (``(z - μ) / σ = eps`` exactly, no round-off); for
    a flow, one pass (:meth:`vaelib.flows.FlowPosterior.transform`: the base's log q from the
    noise, minus the maps' log-determinants).
    """
    chunks = []
    for eps_chunk in eps.split(chunk_size):  # (k, n, d)
        z, log_q = q.transform(eps_chunk)  # (k, n, d), (k, n)
        chunks.append(model.log_joint(x, z) - log_q)  # (k, n)
    return torch.cat(chunks)


def _check_weights(log_w: torch.Tensor, q: DiagonalGaussian | FlowPosterior, first: int) -> None:
    """Refuse non-finite log-weights ``(K, n)``, naming the encoder's log-variance if it is why."""
    if bool(torch.isfinite(log_w).all()):
        return
    base = getattr(q, "base", q)  # a FlowPosterior's base Gaussian
    lo, hi = torch.stack(torch.aminmax(base.logvar)).tolist()
    points = f"data points {first}..{first + log_w.shape[1] - 1}"
    if hi > 80:  # σ = e^40 and beyond: z = μ + σ ε, z² and the decoder's output overflow float32
        raise ValueError(
            f"evaluate: the encoder's log-variance reaches {hi:.4g} (range [{lo:.4g}, {hi:.4g}]) "
            f"for {points}, so σ = exp(logvar / 2) ≈ e^{hi / 2:.0f} and z = μ + σ ε overflow "
            "float32: log p(x, z) is not a number there. An encoder this far from the prior "
            "(a healthy one gives log-variances within about ±20) means the model diverged or was "
            "damaged: load an earlier checkpoint, or retrain with a smaller learning rate.")
    raise ValueError(
        f"evaluate: the log importance weights of {points} are NaN or infinite, though the "
        f"encoder's log-variance stays within [{lo:.4g}, {hi:.4g}], where z does not overflow: "
        "the decoder's output is not finite. Check the model's weights for NaN or infinite "
        "values (a diverged run?).")


def _noise(first: int, n: int, num_samples: int, latent_dim: int, seed: int,
           device) -> torch.Tensor:
    """eps (K, n, d) for the data points first, ..., first + n - 1; point i's from a generator
    seeded with (seed, i)."""
    generator = torch.Generator(device=device)
    eps = []
    for i in range(first, first + n):
        generator.manual_seed(derive_seed(seed, i))
        eps.append(torch.randn(num_samples, latent_dim, generator=generator, device=device))
    return torch.stack(eps, dim=1)


@torch.no_grad()
def evaluate(model, x: torch.Tensor, num_samples: int = 5000, iwae_samples: int = 50, *,
             seed: int = 0, binarize: bool | None = None, memory_budget: int | None = None,
             progress: bool = True) -> Evaluation:
    """ELBO, IWAE_k and log p(x) of every data point, from K importance samples each.

    Args:
        model: a :class:`vaelib.vae.VAE` (x is moved to its device).
        x: ``(N, D)`` data; grey levels in [0, 1] for a Bernoulli likelihood.
        num_samples: K, importance samples per data point (Burda et al. use 5000).
        iwae_samples: k <= K, the IWAE bound's sample size.
        seed: for the binarization and the samples.
        binarize: binarize x once with :func:`vaelib.data.fixed_binarization`; None: iff the
            likelihood needs binary data (Bernoulli; binary data are left unchanged by it).
        memory_budget: bytes to use (default :func:`default_memory_budget`).
        progress: show a progress bar.

    Returns:
        An :class:`Evaluation`; ``.summary()`` gives the means.
    """
    num_samples = check_num_samples(num_samples, "num_samples")
    iwae_samples = check_num_samples(iwae_samples, "iwae_samples")
    x = model.check_data(x)  # (N, D)
    if len(x) == 0:
        raise ValueError(f"evaluate needs at least one data point, got x of shape "
                         f"{tuple(x.shape)}.")
    if binarize is None:
        binarize = model.likelihood.binary_data
    if binarize:
        x = fixed_binarization(x, seed=seed)
    if not 1 <= iwae_samples <= num_samples:
        raise ValueError(f"need 1 <= iwae_samples <= num_samples, got {iwae_samples} and "
                         f"{num_samples}.")
    budget = check_memory_budget(model.config, num_samples, memory_budget if memory_budget
                                 is not None else default_memory_budget(x.device))
    n_chunk, k_chunk = chunk_sizes(model, len(x), num_samples, budget)
    groups = num_samples // iwae_samples  # IWAE_k is averaged over this many disjoint groups of k
    results = {"elbo": [], "iwae": [], "log_likelihood": [], "ess": []}
    bar = tqdm(total=len(x), unit="point", desc=f"log p(x), K={num_samples}", disable=not progress)
    with bar:
        for first in range(0, len(x), n_chunk):
            x_chunk = x[first:first + n_chunk]  # (n, D)
            eps = _noise(first, len(x_chunk), num_samples, model.latent_dim, seed, x.device)
            q = model.posterior(x_chunk)  # q(z|x) over (n, d); eps: (K, n, d)
            log_w = _log_weights(model, x_chunk, q, eps, k_chunk)  # (K, n)
            _check_weights(log_w, q, first)
            results["log_likelihood"].append(estimators.log_mean_exp(log_w, dim=0).cpu())
            results["elbo"].append(log_w.mean(dim=0).cpu())
            grouped = log_w[:groups * iwae_samples].reshape(groups, iwae_samples, -1)  # (K/k, k, n)
            results["iwae"].append(estimators.log_mean_exp(grouped, dim=1).mean(dim=0).cpu())
            results["ess"].append(estimators.effective_sample_size(log_w, dim=0).cpu())
            bar.update(len(x_chunk))
    return Evaluation(**{name: torch.cat(parts) for name, parts in results.items()},
                      num_samples=num_samples, iwae_samples=iwae_samples)


def importance_log_likelihood(model, x: torch.Tensor, num_samples: int = 5000,
                              **kwargs) -> torch.Tensor:
    """``log p(x) ≈ log (1/K) Σ_k p(x, z_k) / q(z_k|x)`` per data point, ``(N,)``.

    Keyword arguments as in :func:`evaluate`.
    """
    return evaluate(model, x, num_samples, iwae_samples=1, **kwargs).log_likelihood
