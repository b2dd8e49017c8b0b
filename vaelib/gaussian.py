"""Gaussian distributions for latent variables: the encoder's q(z|x) and the exact posteriors.

Both classes are ``torch.distributions.Distribution`` subclasses with its names
(``rsample(sample_shape)``, ``sample``, ``log_prob``, ``entropy``, ``mean``, ``variance``,
``stddev``, ``batch_shape``, ``event_shape``, ``validate_args``): the
:class:`vaelib.protocols.Proposal` protocol, so every estimator in :mod:`vaelib.estimators`
accepts either as a proposal q(z|x), and
``torch.distributions.kl_divergence`` knows their KL (registered in :mod:`vaelib.kl`):

- :class:`DiagonalGaussian` ``N(mean, diag(exp(logvar)))`` -- what a VAE encoder outputs (ch. 7);
- :class:`FullGaussian` ``N(mean, cov)`` with a Cholesky factor ``L`` (``cov = L Lᵀ``) -- the exact
  posterior of the linear-Gaussian model (ch. 3, 5).

Both sample by the reparameterization trick (ch. 7): ``z = mean + scale · eps`` with
``eps ~ N(0, I)``, so gradients flow from ``z`` back to the parameters.

Shapes: ``d`` is the latent dimension, ``...`` any batch shape (usually ``N`` data points) and ``K``
the number of samples. Samples have shape ``(K, ..., d)``; ``log_prob`` sums over the last dim.
"""

from __future__ import annotations

import math

from collections.abc import Sequence

import torch
from torch.distributions import Distribution, constraints

from .checks import check_finite, check_last_dim, check_num_samples, check_tensor

__all__ = ["DiagonalGaussian", "FullGaussian", "standard_normal", "standard_normal_log_prob"]

LOG_2PI = math.log(2 * math.pi)


def standard_normal(
    shape: tuple[int, ...],
    *,
    dtype: torch.dtype,
    device: torch.device | str,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw ``eps ~ N(0, I)`` of the given shape, dtype and device.

    A ``generator`` living on another device (e.g. the CPU generator returned by
    ``seed_everything`` while the model is on CUDA) is honoured: the noise is drawn where the
    generator lives and then moved, so a seed gives the same numbers on every device.
    """
    device = torch.device(device)
    if generator is None or generator.device == device:
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)
    eps = torch.randn(shape, generator=generator, dtype=dtype, device=generator.device)
    return eps.to(device)


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I) = -½ Σ_j (z_j² + log 2π)``: ``(..., d) -> (...)`` (ch. 1).

    The prior ``log p(z)`` of every model in the course (the toy models and the VAE).
    """
    return -0.5 * (z.square() + LOG_2PI).sum(dim=-1)


def _sample_shape(sample_shape: int | Sequence[int]) -> torch.Size:
    """``sample_shape`` as a ``torch.Size``: an int K means ``(K,)``; every entry must be >= 1."""
    name = "num_samples (sample_shape)"
    if not isinstance(sample_shape, (tuple, list, torch.Size)):
        return torch.Size((check_num_samples(sample_shape, name),))  # an int K: (K,)
    return torch.Size(check_num_samples(k, name) for k in sample_shape)


class _Gaussian(Distribution):
    """What both Gaussians share: ``torch.distributions``' names and reparameterized sampling.

    Subclasses set ``_mean`` ``(..., d)`` and define :meth:`_scale_noise` (``eps -> scale · eps``).
    """

    arg_constraints: dict = {}  # the constructors check their arguments themselves
    support = constraints.real_vector
    has_rsample = True

    @property
    def mean(self) -> torch.Tensor:
        """The mean μ, shape ``(..., d)``."""
        return self._mean

    @property
    def latent_dim(self) -> int:
        """d, the size of the last dimension (``event_shape == (d,)``)."""
        return self._mean.shape[-1]

    @property
    def stddev(self) -> torch.Tensor:
        """The marginal standard deviations σ, shape ``(..., d)``."""
        return self.variance.sqrt()

    @property
    def validate_args(self) -> bool:
        """Whether the constructor checked its arguments (finite values, symmetry)."""
        return bool(self._validate_args)

    def _scale_noise(self, eps: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def rsample(
        self,
        sample_shape: int | Sequence[int] = torch.Size(),
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Reparameterized samples ``z = μ + scale · eps``, ``eps ~ N(0, I)`` (ch. 7).

        Returns ``(*sample_shape, ..., d)``: ``(K, ..., d)`` for ``sample_shape=(K,)`` (an int K
        means ``(K,)``), ``(..., d)`` for the default ``()``; differentiable with respect to the
        parameters.
        """
        return self.reparameterize(self.standard_noise(sample_shape, generator))

    def standard_noise(
        self, sample_shape: int | Sequence[int] = torch.Size(), generator=None
    ) -> torch.Tensor:
        """``eps ~ N(0, I)`` of shape ``(*sample_shape, ..., d)``: what :meth:`rsample` draws."""
        shape = self._extended_shape(_sample_shape(sample_shape))
        return standard_normal(
            shape, dtype=self._mean.dtype, device=self._mean.device, generator=generator
        )

    def reparameterize(self, eps: torch.Tensor) -> torch.Tensor:
        """``z = μ + scale · eps`` for standard-normal noise ``eps`` ``(K, ..., d)`` (ch. 7)."""
        return self._mean + self._scale_noise(eps)  # (K, ..., d), broadcasting over K

    def sample(
        self,
        sample_shape: int | Sequence[int] = torch.Size(),
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Like :meth:`rsample`, without gradients."""
        with torch.no_grad():
            return self.rsample(sample_shape, generator)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_shape={tuple(self.batch_shape)}, d={self.latent_dim})"


# ---------------------------------------------------------------------------------------------
# Diagonal Gaussian: the encoder's q(z|x).
# ---------------------------------------------------------------------------------------------


class DiagonalGaussian(_Gaussian):
    """``N(mean, diag(σ²))`` with ``σ² = exp(logvar)``: the VAE's encoder distribution (ch. 6-7).

    Args:
        mean: ``(..., d)`` means μ.
        logvar: ``(..., d)`` log-variances log σ², same shape as ``mean``.
        validate_args: check that the values are finite (the shapes are always checked; reading
            the values is a host sync on a GPU: a training loop may pass ``validate_args=False``).
    """

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor, *, validate_args: bool = True):
        check_tensor("mean", mean, min_dim=1)
        check_tensor("logvar", logvar, min_dim=1)
        if mean.shape != logvar.shape:
            raise ValueError(
                f"mean and logvar must have the same shape (..., d), got {tuple(mean.shape)} and "
                f"{tuple(logvar.shape)}; an encoder usually returns both from one layer of size 2d."
            )
        if mean.dtype != logvar.dtype or mean.device != logvar.device:
            raise ValueError(
                f"mean and logvar must share dtype and device, got {mean.dtype}/{mean.device} and "
                f"{logvar.dtype}/{logvar.device}."
            )
        if validate_args:
            check_finite("mean", mean)
            check_finite("logvar", logvar)
        self._mean = mean
        self.logvar = logvar
        super().__init__(mean.shape[:-1], mean.shape[-1:], validate_args=validate_args)

    @property
    def variance(self) -> torch.Tensor:
        """σ² = exp(logvar), shape ``(..., d)``."""
        return self.logvar.exp()

    @property
    def stddev(self) -> torch.Tensor:
        """σ = exp(logvar / 2), shape ``(..., d)``."""
        return (0.5 * self.logvar).exp()

    def _scale_noise(self, eps: torch.Tensor) -> torch.Tensor:
        """``σ ⊙ eps`` (ch. 7)."""
        return self.stddev * eps

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``log q(z) = -½ Σ_j [log 2π + log σ_j² + (z_j - μ_j)² / σ_j²]`` (ch. 6).

        Args:
            z: ``(K, ..., d)`` or anything that broadcasts against ``(..., d)``.

        Returns:
            the log density summed over the last dim, shape ``(K, ...)``.
        """
        check_tensor("z", z)
        check_last_dim("z", z, self.latent_dim)
        # (z - μ)² / σ² written as (z - μ)² · exp(-logvar): no division by a tiny σ².
        sq = (z - self.mean).square() * torch.exp(-self.logvar)
        return -0.5 * (LOG_2PI + self.logvar + sq).sum(dim=-1)

    def log_prob_of_noise(self, eps: torch.Tensor) -> torch.Tensor:
        """``log q(z)`` at ``z = reparameterize(eps)``: ``-½ Σ_j (log 2π + log σ_j² + eps_j²)``.

        The same number as ``log_prob(z)`` computed from the noise itself: ``(z - μ) / σ = eps``
        exactly, with no round-off from forming z first. ``(K, ..., d) -> (K, ...)``.
        """
        return -0.5 * (LOG_2PI + self.logvar + eps.square()).sum(dim=-1)

    def transform(self, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``eps (K, ..., d) -> (z, log q(z))``: :meth:`reparameterize` and
        :meth:`log_prob_of_noise` together, as :meth:`vaelib.flows.FlowPosterior.transform` gives
        them for a flow, so that code drawing its own noise treats both posteriors alike."""
        return self.reparameterize(eps), self.log_prob_of_noise(eps)

    def entropy(self) -> torch.Tensor:
        """``H[q] = ½ Σ_j (1 + log 2π + log σ_j²)``, shape ``(...)`` (ch. 6)."""
        return 0.5 * (1.0 + LOG_2PI + self.logvar).sum(dim=-1)


# ---------------------------------------------------------------------------------------------
# Full-covariance Gaussian: exact posteriors of the linear-Gaussian model.
# ---------------------------------------------------------------------------------------------


class FullGaussian(_Gaussian):
    """``N(mean, cov)`` with ``cov = L Lᵀ`` (Cholesky factor ``L``, lower triangular) (ch. 3, 5).

    Args:
        mean: ``(..., d)`` means.
        cov: ``(d, d)`` covariance shared by every batch entry, or ``(..., d, d)`` one per entry;
            must be symmetric positive definite.
        validate_args: check finiteness and symmetry (a host sync on a GPU).

    Used as a proposal q(z|x) = p(z|x) for :class:`vaelib.toy.LinearGaussian` (whose posterior
    covariance is the same for every x), and to write log p(x) = log N(x; b, W Wᵀ + s² I).
    """

    def __init__(self, mean: torch.Tensor, cov: torch.Tensor, *, validate_args: bool = True):
        check_tensor("mean", mean, min_dim=1)
        check_tensor("cov", cov, min_dim=2)
        d = mean.shape[-1]
        if cov.shape[-2:] != (d, d):
            raise ValueError(
                f"cov must have shape (d, d) or (..., d, d) with d={d} (the last dim of mean), "
                f"got {tuple(cov.shape)}."
            )
        if validate_args:
            check_finite("mean", mean)
            check_finite("cov", cov)
            if not torch.allclose(cov, cov.mT, rtol=1e-6, atol=1e-10):
                raise ValueError("cov must be symmetric; symmetrize it with (cov + cov.mT) / 2.")
        scale_tril, info = torch.linalg.cholesky_ex(cov)  # cov = L Lᵀ
        if bool((info != 0).any()):
            raise ValueError(
                "cov is not positive definite (its Cholesky factorization failed); "
                "a covariance needs strictly positive eigenvalues."
            )
        self._mean = mean
        self.cov = cov
        self.scale_tril = scale_tril
        batch_shape = torch.broadcast_shapes(mean.shape[:-1], cov.shape[:-2])
        super().__init__(batch_shape, mean.shape[-1:], validate_args=validate_args)

    @property
    def variance(self) -> torch.Tensor:
        """The marginal variances, the diagonal of ``cov``: ``(..., d)``."""
        return torch.diagonal(self.cov, dim1=-2, dim2=-1).expand_as(self.mean)

    def _scale_noise(self, eps: torch.Tensor) -> torch.Tensor:
        """``L eps``: ``(L eps)_i = Σ_j L_ij eps_j`` per batch entry, ``(d, d) @ (..., d, 1)``."""
        return (self.scale_tril @ eps.unsqueeze(-1)).squeeze(-1)

    def _whiten(self, z: torch.Tensor) -> torch.Tensor:
        """``y = L⁻¹ (z - mean)``, so that ``(z - m)ᵀ cov⁻¹ (z - m) = |y|²``."""
        diff = z - self.mean  # (K, ..., d)
        L = self.scale_tril
        if L.dim() == 2:  # one shared (d, d) factor: a single triangular solve for all rows
            rows = diff.reshape(-1, self.latent_dim).mT  # (d, M)
            return torch.linalg.solve_triangular(L, rows, upper=False).mT.reshape(diff.shape)
        return torch.linalg.solve_triangular(L, diff.unsqueeze(-1), upper=False).squeeze(-1)

    def _half_log_det(self) -> torch.Tensor:
        """``½ log det cov = Σ_i log L_ii``: shape ``(...)`` of the covariance batch."""
        return torch.diagonal(self.scale_tril, dim1=-2, dim2=-1).log().sum(dim=-1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``log N(z; m, Σ) = -½ [d log 2π + log det Σ + (z - m)ᵀ Σ⁻¹ (z - m)]``.

        Args:
            z: ``(K, ..., d)`` (broadcasting against ``(..., d)``).

        Returns:
            ``(K, ...)``.
        """
        check_tensor("z", z)
        check_last_dim("z", z, self.latent_dim)
        y = self._whiten(z)
        return -0.5 * (self.latent_dim * LOG_2PI + y.square().sum(dim=-1)) - self._half_log_det()

    def entropy(self) -> torch.Tensor:
        """``H = ½ d (1 + log 2π) + ½ log det Σ``, shape ``(...)``."""
        # + zeros of shape (...): a shared (d, d) covariance gives one entropy per batch entry
        half_log_det = self._half_log_det() + torch.zeros_like(self.mean[..., 0])
        return 0.5 * self.latent_dim * (1.0 + LOG_2PI) + half_log_det
