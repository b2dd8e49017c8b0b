"""The likelihoods p(x|z) a VAE's decoder can parameterize: one object each, chosen by name.

A likelihood says, for the decoder's output ``out = f(z)`` ``(..., D)``:

- ``log_prob(x, out, log_std)``: log p(x|z) summed over the D pixels, ``(...)``;
- ``mean(out)``: E[x|z], the image the decoder "draws";
- ``output_bias(x_mean)``: the decoder's output bias that makes p(x|z) start at the data mean;
- ``binary_data``: whether the data must be 0/1 (then training and evaluation binarize
  grey levels, and :meth:`vaelib.vae.VAE.check_data` wants values in [0, 1]);
- ``has_std``: whether p(x|z) has a standard deviation s (``log_std``; the VAE keeps it fixed
  or learns it: see ``VAEConfig.gaussian_std_mode``).

To add one: write a subclass of :class:`Likelihood` here and add it to :data:`LIKELIHOODS`;
``VAEConfig(likelihood=name)`` then selects it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .gaussian import LOG_2PI

__all__ = ["Likelihood", "Bernoulli", "Gaussian", "LIKELIHOODS", "get_likelihood"]


class Likelihood:
    """The interface: see the module docstring."""

    name: str = ""
    binary_data: bool = False
    has_std: bool = False
    hint: str = ""  # what data it is for, shown when a name is unknown

    def log_prob(self, x: torch.Tensor, out: torch.Tensor,
                 log_std: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def mean(self, out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def output_bias(self, x_mean: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Bernoulli(Likelihood):
    """x_i | z ~ Bernoulli(sigmoid(l_i)): the decoder outputs logits l = f(z); x in {0, 1}.

    log p(x|z) = Σ_i [x_i l_i - softplus(l_i)]  (as log sigmoid(l) = l - softplus(l) and
    log(1 - sigmoid(l)) = -softplus(l)); each term is minus torch's
    ``binary_cross_entropy_with_logits``, one fused kernel, stable for any l.
    """

    name = "bernoulli"
    binary_data = True
    hint = "binary data in {0, 1}"

    def log_prob(self, x, out, log_std=None):
        bce = F.binary_cross_entropy_with_logits(out, x.expand_as(out), reduction="none")
        return -bce.sum(dim=-1)

    def mean(self, out):
        return torch.sigmoid(out)  # pixel probabilities

    def output_bias(self, x_mean):
        p = x_mean.clamp(1e-4, 1 - 1e-4)  # a pixel that is always 0 gets ≈ -9.2, not -inf
        return torch.log(p) - torch.log1p(-p)  # logit(p) = log p / (1 - p)


class Gaussian(Likelihood):
    """x_i | z ~ N(f_i(z), s_i²): the decoder outputs the mean f(z); x real-valued (s: its noise).

    log p(x|z) = -½ Σ_i [((x_i - f_i(z))/s_i)² + log 2π + 2 log s_i].
    """

    name = "gaussian"
    has_std = True
    hint = "real-valued data"

    def log_prob(self, x, out, log_std=None):
        """``log_std`` (a scalar or ``(D,)``) is log s; None means s = 1 (``log_std = 0``)."""
        if log_std is None:
            log_std = torch.zeros((), device=out.device)
        log_std = log_std.float().expand(out.shape[-1])  # log s_i, (D,)
        sq = ((x - out) * torch.exp(-log_std)).square()  # ((x_i - f_i(z)) / s_i)², (..., D)
        return -0.5 * (sq + LOG_2PI + 2 * log_std).sum(dim=-1)

    def mean(self, out):
        return out

    def output_bias(self, x_mean):
        return x_mean


#: The likelihoods by name (``VAEConfig.likelihood``).
LIKELIHOODS: dict[str, Likelihood] = {lik.name: lik for lik in (Bernoulli(), Gaussian())}


def get_likelihood(name: str) -> Likelihood:
    """The likelihood called ``name``, or a clear error listing the others."""
    if name not in LIKELIHOODS:
        choices = " or ".join(f"{n!r} ({lik.hint})" for n, lik in LIKELIHOODS.items())
        raise ValueError(f"unknown likelihood {name!r}; choose {choices}.")
    return LIKELIHOODS[name]
