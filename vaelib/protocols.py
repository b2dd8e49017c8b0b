"""The two interfaces every estimator is written against: a model and a proposal (ch. 1-7).

- :class:`LatentVariableModel`: a joint density ``p(x, z) = p(z) p(x|z)`` over data x ``(N, D)``
  and latents z ``(..., d)``. The toy models (:mod:`vaelib.toy`), the neural VAE
  (:class:`vaelib.vae.VAE`), chapter 7's linear VAE and chapter 11's flows all have it.
- :class:`Proposal`: a distribution q(z|x) over z with ``torch.distributions``' names, so a
  ``torch.distributions.Normal(...).to_event(1)``-like object, a
  :class:`vaelib.gaussian.DiagonalGaussian` or a :class:`vaelib.gaussian.FullGaussian` all fit.

Both are ``typing.Protocol``\\ s: nothing inherits from them; an object fits when it has the
methods (``isinstance(obj, LatentVariableModel)`` checks the names, not the shapes). Shapes: N data
points, D data dim, d latent dim, K samples; symbols as in ``docs/notation.md``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

__all__ = ["LatentVariableModel", "Proposal", "SamplesPrior"]


@runtime_checkable
class LatentVariableModel(Protocol):
    """A model ``z ~ p(z)``, ``x | z ~ p(x|z)`` whose densities can be evaluated (ch. 1).

    Shapes: x ``(N, D)``; z ``(K, N, d)`` or ``(N, d)`` (anything broadcasting against
    ``(N, d)``); the results ``(K, N)`` or ``(N,)``: one log density per (sample, data point).
    """

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """``log p(z)``: ``(..., d) -> (...)``."""
        ...

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x|z)``: ``(N, D)``, ``(K, N, d) -> (K, N)``."""
        ...

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x, z) = log p(z) + log p(x|z)``: shapes as in :meth:`log_likelihood` (ch. 1).

        Written once here: a model that names ``LatentVariableModel`` as a base class inherits it
        (the toy models and the VAE do).
        """
        return self.log_prior(z) + self.log_likelihood(x, z)


@runtime_checkable
class SamplesPrior(LatentVariableModel, Protocol):
    """A :class:`LatentVariableModel` that can also draw from its prior (naive Monte Carlo)."""

    latent_dim: int

    def sample_prior(
        self,
        num_samples: int,
        num_points: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``z_k ~ p(z)``: ``(K, d)``, or ``(K, N, d)`` with ``num_points=N``."""
        ...


@runtime_checkable
class Proposal(Protocol):
    """A distribution q(z|x) over ``(..., d)`` with ``torch.distributions``' names (ch. 3, 7).

    ``batch_shape`` is ``(N,)`` for one q per data point and ``event_shape`` is ``(d,)``;
    ``rsample(sample_shape)`` returns ``(*sample_shape, *batch_shape, *event_shape)``
    reparameterized samples (gradients flow to q's parameters) and ``log_prob(z)`` sums over the
    event dimension. vaelib's Gaussians also take a ``generator`` keyword in ``rsample`` and
    ``sample`` (for reproducible draws); the estimators pass one only when given one.
    """

    @property
    def mean(self) -> torch.Tensor: ...

    @property
    def variance(self) -> torch.Tensor: ...

    @property
    def stddev(self) -> torch.Tensor: ...

    @property
    def batch_shape(self) -> torch.Size: ...

    @property
    def event_shape(self) -> torch.Size: ...

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ...) -> torch.Tensor:
        """Reparameterized samples ``(*sample_shape, *batch_shape, *event_shape)``."""
        ...

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ...) -> torch.Tensor:
        """Samples without gradients."""
        ...

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """``log q(z)`` summed over the event dimension: ``(K, ..., d) -> (K, ...)``."""
        ...

    def entropy(self) -> torch.Tensor:
        """``H[q] = -E_q[log q(z)]``: ``batch_shape``."""
        ...
