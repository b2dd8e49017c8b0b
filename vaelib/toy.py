"""Toy latent-variable models whose marginal likelihood log p(x) we know exactly (ch. 1-7, 11).

The models share the VAE's structure with a fixed decoder ``f``:

    z ~ N(0, I_d),        x | z ~ N(f(z), s² I_D).

- :class:`LinearGaussian` (probabilistic PCA): ``f(z) = W z + b``. Everything is Gaussian, so
  ``p(x) = N(x; b, W Wᵀ + s² I)`` and the posterior ``p(z|x)`` are known in closed form (ch. 1, 3).
- :class:`NonlinearToy`: 1-D latent, ``f`` a curve in the plane (a parabola or a circle). The
  posterior is not Gaussian (banana-shaped or bimodal), so a Gaussian q cannot close the ELBO gap
  (ch. 5); ``log p(x) = log ∫ p(z) p(x|z) dz`` is computed by quadrature on a fine grid.
- :class:`NonlinearToy2D`: 2-D latent, one observed number ``x = f(z) + noise`` with
  ``f(z) = a z₁ z₂`` or ``z₂ + a z₁²``, so the posterior lies along a curve in the z-plane (two
  curved modes, or a banana); log p(x) by quadrature on a 2-D grid (ch. 11: what a flow buys).

All follow :class:`vaelib.protocols.LatentVariableModel` (as the neural VAE does): attribute
``latent_dim``; ``log_prior(z)``, ``log_likelihood(x, z)``, ``log_joint(x, z)``,
``sample_prior(num_samples, num_points=None)``; ``LinearGaussian.posterior(x)`` is a distribution.
Shapes: N data points, D data dim, d latent dim, K samples. Models are float64 by default; inputs
are converted to the model's dtype.
"""

from __future__ import annotations

import math

import torch

from .checks import (
    check_finite,
    check_last_dim,
    check_num_samples,
    check_positive_int,
    check_tensor,
)
from .protocols import LatentVariableModel
from .gaussian import LOG_2PI, FullGaussian, standard_normal, standard_normal_log_prob

__all__ = ["LinearGaussian", "NonlinearToy", "NonlinearToy2D"]


def _check_positive_float(name: str, value: object) -> float:
    """A finite, strictly positive real number (Python number or 0-dim tensor)."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a positive number, got {type(value).__name__}.")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0 (a standard deviation), got {value}.")
    return float(value)


class _GaussianDecoderModel(LatentVariableModel):
    """``z ~ N(0, I_d)``, ``x | z ~ N(decode(z), s² I_D)``: everything but the decoder.

    ``log_joint`` comes from :class:`vaelib.protocols.LatentVariableModel`. Subclasses set
    ``latent_dim``, ``data_dim``, ``noise_std``, ``dtype`` and define ``decode``.
    """

    latent_dim: int
    data_dim: int
    noise_std: float
    dtype: torch.dtype
    device: torch.device

    def _set_curve(self, curve: str, a: object, noise_std: object, dtype: torch.dtype) -> None:
        """The nonlinear toys' shared settings, checked: the curve (one of ``CURVES``), its
        coefficient a, the noise s, the dtype (on the CPU)."""
        if curve not in self.CURVES:
            raise ValueError(f"curve must be one of {self.CURVES}, got {curve!r}.")
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not math.isfinite(a):
            raise ValueError(f"a must be a finite number, got {a!r}.")
        self.noise_std = _check_positive_float("noise_std", noise_std)
        self.curve, self.a = curve, float(a)
        self.dtype, self.device = dtype, torch.device("cpu")

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The mean of p(x|z): ``(..., d) -> (..., D)``."""
        raise NotImplementedError

    # -- input checks ---------------------------------------------------------------------------

    def _as_z(self, z: torch.Tensor) -> torch.Tensor:
        check_tensor("z", z)
        check_last_dim("z", z, self.latent_dim)
        return check_finite("z", z.to(dtype=self.dtype, device=self.device))

    def _as_x(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x)
        check_last_dim("x", x, self.data_dim, what="data dimension D")
        return check_finite("x", x.to(dtype=self.dtype, device=self.device))

    # -- sampling -------------------------------------------------------------------------------

    def sample_prior(
        self,
        num_samples: int,
        num_points: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``z_k ~ p(z) = N(0, I_d)``: ``(K, d)``, or ``(K, N, d)`` with ``num_points=N`` (ch. 2).

        ``(K, N, d)`` gives every data point its own K samples (as :mod:`vaelib.estimators` needs).
        """
        shape = (check_num_samples(num_samples), self.latent_dim)
        if num_points is not None:
            shape = (shape[0], check_positive_int("num_points", num_points), self.latent_dim)
        return standard_normal(shape, dtype=self.dtype, device=self.device, generator=generator)

    def sample(
        self, num_samples: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Ancestral sampling: ``z ~ p(z)``, then ``x = f(z) + s · eps`` (ch. 1).

        Returns:
            ``(x, z)`` of shapes ``(N, D)`` and ``(N, d)`` with ``N = num_samples``.
        """
        z = self.sample_prior(num_samples, generator=generator)  # (N, d)
        eps = standard_normal(
            (num_samples, self.data_dim), dtype=self.dtype, device=self.device, generator=generator
        )
        return self.decode(z) + self.noise_std * eps, z

    # -- densities ------------------------------------------------------------------------------

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """``log p(z) = -½ Σ_j (z_j² + log 2π)``: ``(..., d) -> (...)`` (ch. 1)."""
        return standard_normal_log_prob(self._as_z(z))

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(x|z) = -½ Σ_i [(x_i - f_i(z))² / s² + log 2π s²]`` (ch. 1).

        Args:
            x: ``(N, D)`` data.
            z: ``(K, N, d)`` or ``(N, d)`` latents (any shape ``(..., d)`` broadcasting against
                ``(N, d)``, e.g. a grid ``(G, 1, d)``).

        Returns:
            ``(K, N)`` or ``(N,)``: one log-likelihood per (sample, data point).
        """
        x, z = self._as_x(x), self._as_z(z)
        try:
            torch.broadcast_shapes(x.shape[:-1], z.shape[:-1])
        except RuntimeError as err:
            raise ValueError(
                f"z of shape {tuple(z.shape)} does not match x of shape {tuple(x.shape)}: use z of "
                "shape (N, d) or (K, N, d) with the same N as x."
            ) from err
        sq_err = (x - self.decode(z)).square().sum(dim=-1)  # |x - f(z)|², (K, N)
        log_norm = self.data_dim * (LOG_2PI + 2 * math.log(self.noise_std))  # D log 2πs²
        return -0.5 * (sq_err / self.noise_std**2 + log_norm)


class LinearGaussian(_GaussianDecoderModel):
    """Probabilistic PCA: ``z ~ N(0, I_d)``, ``x | z ~ N(W z + b, s² I_D)`` (ch. 1).

    Args:
        W: ``(D, d)`` loading matrix.
        b: ``(D,)`` offset (None for zeros).
        noise_std: s > 0, the observation noise standard deviation.
        dtype: the model's floating-point type (float64 by default: this is exact math).

    Closed forms: ``p(x) = N(x; b, C)`` with ``C = W Wᵀ + s² I_D``; ``p(z|x) = N(μ⋆(x), Σ⋆)`` with
    ``Σ⋆ = (I_d + Wᵀ W / s²)⁻¹`` (the same for every x) and ``μ⋆(x) = Σ⋆ Wᵀ (x - b) / s²``
    (symbols as in ``docs/notation.md``).
    """

    def __init__(
        self,
        W: torch.Tensor,
        b: torch.Tensor | None,
        noise_std: float,
        *,
        dtype: torch.dtype = torch.float64,
    ):
        W = torch.as_tensor(W, dtype=dtype)
        if W.dim() != 2:
            raise ValueError(f"W must be a (D, d) matrix, got shape {tuple(W.shape)}.")
        b = torch.zeros(W.shape[0], dtype=dtype, device=W.device) if b is None else b
        b = torch.as_tensor(b, dtype=dtype, device=W.device)
        if b.shape != (W.shape[0],):
            raise ValueError(
                f"b must have shape (D,) = ({W.shape[0]},) to match W of shape {tuple(W.shape)}, "
                f"got {tuple(b.shape)}."
            )
        self.W = check_finite("W", W)
        self.b = check_finite("b", b)
        self.noise_std = _check_positive_float("noise_std", noise_std)
        self.data_dim, self.latent_dim = W.shape
        self.dtype, self.device = dtype, W.device

    @classmethod
    def random(
        cls,
        data_dim: int,
        latent_dim: int,
        noise_std: float = 0.5,
        generator: torch.Generator | None = None,
        *,
        dtype: torch.dtype = torch.float64,
    ) -> LinearGaussian:
        """A model with ``W_ij ~ N(0, 1)`` and ``b_i ~ N(0, 1)`` drawn from ``generator``."""
        D = check_positive_int("data_dim", data_dim)
        d = check_positive_int("latent_dim", latent_dim)
        W = standard_normal((D, d), dtype=dtype, device="cpu", generator=generator)
        b = standard_normal((D,), dtype=dtype, device="cpu", generator=generator)
        return cls(W, b, noise_std, dtype=dtype)

    def __repr__(self) -> str:
        return (
            f"LinearGaussian(data_dim={self.data_dim}, latent_dim={self.latent_dim}, "
            f"noise_std={self.noise_std})"
        )

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``f(z) = W z + b``: ``(..., d) -> (..., D)``."""
        return z @ self.W.T + self.b

    @property
    def marginal_covariance(self) -> torch.Tensor:
        """``C = W Wᵀ + s² I_D``, the covariance of x: ``(D, D)`` (ch. 1)."""
        eye = torch.eye(self.data_dim, dtype=self.dtype, device=self.device)
        return self.W @ self.W.T + self.noise_std**2 * eye

    def log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(x) = log N(x; b, W Wᵀ + s² I)``: ``(N, D) -> (N,)`` (ch. 1)."""
        x = self._as_x(x)
        return FullGaussian(self.b, self.marginal_covariance).log_prob(x)

    def posterior_parameters(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact posterior's ``(mean, cov)`` by Bayes' rule for Gaussians (ch. 3).

        ``cov = Σ⋆ = (I_d + Wᵀ W / s²)⁻¹`` and ``mean = μ⋆ = (x - b) W cov / s²`` (row-vector form
        of ``Σ⋆ Wᵀ (x - b) / s²``).

        Returns:
            ``(mean (N, d), cov (d, d))``; the covariance is shared by every x.
        """
        x = self._as_x(x)
        eye = torch.eye(self.latent_dim, dtype=self.dtype, device=self.device)
        precision = eye + self.W.T @ self.W / self.noise_std**2  # Σ⋆⁻¹, (d, d)
        cov = torch.cholesky_inverse(torch.linalg.cholesky(precision))  # Σ⋆, (d, d)
        cov = 0.5 * (cov + cov.T)  # exactly symmetric
        mean = (x - self.b) @ self.W @ cov / self.noise_std**2  # (N, d)
        return mean, cov

    def posterior(self, x: torch.Tensor) -> FullGaussian:
        """The exact posterior ``p(z|x) = N(μ⋆(x), Σ⋆)`` as a :class:`FullGaussian` (ch. 3).

        A distribution (a :class:`vaelib.protocols.Proposal`), ready to use as a proposal q(z|x);
        :meth:`posterior_parameters` gives its ``(mean, cov)``.
        """
        return FullGaussian(*self.posterior_parameters(x))

    def log_posterior_density(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Exact ``log p(z|x)`` (ch. 3).

        Args:
            x: ``(N, D)``.
            z: ``(K, N, d)`` or ``(N, d)``; a grid of G points as ``(G, 1, d)``.

        Returns:
            ``(K, N)``, ``(N,)`` or ``(G, N)``.
        """
        return self.posterior(x).log_prob(self._as_z(z))


class NonlinearToy(_GaussianDecoderModel):
    """A 1-D latent on a curve in the plane: ``z ~ N(0, 1)``, ``x | z ~ N(f(z), s² I_2)`` (ch. 5).

    Curves (``a`` sets how strongly they bend):

    - ``"parabola"``: ``f(z) = (z, a z²)`` -- banana-shaped posteriors, bimodal for x above the
      vertex (z and -z explain x_2 equally well);
    - ``"circle"``: ``f(z) = (cos(a z), sin(a z))`` -- z and z + 2π/a map to the same point, so
      posteriors are multimodal.

    ``log p(x) = log ∫ p(z) p(x|z) dz`` is computed on a uniform grid of ``grid_size`` points over
    ``[-grid_limit, grid_limit]`` with the trapezoid rule in log space (log-sum-exp). For a smooth
    integrand that vanishes at both ends this rule converges geometrically: once the posterior's
    narrowest peak spans >= 2 grid steps the relative error in p(x) is far below 1e-10 (the tests
    compare with ``scipy.integrate.quad`` to 1e-8). Both conditions are checked on every call; a
    ValueError says to enlarge ``grid_limit`` or ``grid_size`` when they fail.
    """

    CURVES = ("parabola", "circle")

    def __init__(
        self,
        noise_std: float = 0.3,
        curve: str = "parabola",
        a: float = 1.0,
        *,
        grid_limit: float = 10.0,
        grid_size: int = 4001,
        dtype: torch.dtype = torch.float64,
    ):
        self._set_curve(curve, a, noise_std, dtype)
        self.latent_dim, self.data_dim = 1, 2
        _check_positive_float("grid_limit", grid_limit)
        check_positive_int("grid_size", grid_size, minimum=101)
        self.z_grid = torch.linspace(-grid_limit, grid_limit, grid_size, dtype=dtype)  # (G,)
        self.grid_step = 2 * grid_limit / (grid_size - 1)

    def __repr__(self) -> str:
        return f"NonlinearToy(noise_std={self.noise_std}, curve={self.curve!r}, a={self.a})"

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The curve ``f(z)``: ``(..., 1) -> (..., 2)``."""
        if self.curve == "parabola":
            return torch.cat([z, self.a * z.square()], dim=-1)  # (z, a z²)
        return torch.cat([torch.cos(self.a * z), torch.sin(self.a * z)], dim=-1)

    def _grid_log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x, z_g)`` on the quadrature grid: ``(G, N)``, checked for accuracy."""
        log_joint = self.log_joint(x, self.z_grid[:, None, None])  # (G, N)
        log_total = torch.logsumexp(log_joint, dim=0)  # (N,)
        # Mass at the grid's ends (the integrand must have vanished there) ...
        edge = torch.maximum(log_joint[0], log_joint[-1]) - log_total
        if bool((edge > -30.0).any()):
            raise ValueError(
                "some x lie so far out that their posterior reaches the edge of the quadrature "
                f"grid z in [{self.z_grid[0]:.3g}, {self.z_grid[-1]:.3g}]; build the model with a "
                "larger grid_limit."
            )
        # ... and the largest share in one cell (<= 0.2 means peaks span >= 2 grid steps).
        if bool((log_joint.max(dim=0).values - log_total > math.log(0.2)).any()):
            raise ValueError(
                "the posterior of some x is narrower than the quadrature grid can resolve "
                f"(step {self.grid_step:.3g}); build the model with a larger grid_size."
            )
        return log_joint

    def log_marginal(self, x: torch.Tensor, chunk_size: int = 256) -> torch.Tensor:
        """``log p(x) ≈ log Σ_g h · p(z_g) p(x|z_g)``, trapezoid rule with step h (ch. 1).

        ``(N, D) -> (N,)``, computed ``chunk_size`` data points at a time to bound memory
        (about G · chunk_size · D floats).
        """
        x = self._as_x(x)
        chunks = [
            torch.logsumexp(self._grid_log_joint(x_chunk), dim=0) + math.log(self.grid_step)
            for x_chunk in x.split(chunk_size)
        ]
        return torch.cat(chunks)

    def log_posterior_density(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(z|x) = log p(x, z) - log p(x)`` (Bayes' rule, normalized by quadrature) (ch. 3).

        Args:
            x: ``(N, D)``.
            z: a grid ``(G,)`` (evaluated for every x), or ``(K, N, 1)`` / ``(N, 1)``.

        Returns:
            ``(G, N)``, ``(K, N)`` or ``(N,)``. ``exp`` of it integrates to 1 over z.
        """
        check_tensor("z", z)
        if z.dim() == 1:
            z = z[:, None, None]  # (G, 1, 1): broadcast the grid over the N data points
        return self.log_joint(x, z) - self.log_marginal(x)

    def posterior_moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and variance by quadrature: ``(N, D) -> (mean (N, 1), var (N, 1))``.

        ``E[z|x] = Σ_g w_g z_g`` with weights ``w_g ∝ p(x, z_g)`` (a moment-matched Gaussian
        N(mean, var) is the best Gaussian for KL(p ‖ q), not for the ELBO's KL(q ‖ p)).
        """
        x = self._as_x(x)
        weights = torch.softmax(self._grid_log_joint(x), dim=0)  # (G, N), columns sum to 1
        z = self.z_grid[:, None]  # (G, 1)
        mean = (weights * z).sum(dim=0)  # (N,)
        var = (weights * (z - mean).square()).sum(dim=0)
        return mean[:, None], var[:, None]


class NonlinearToy2D(_GaussianDecoderModel):
    """A 2-D latent seen through one number: ``z ~ N(0, I_2)``, ``x | z ~ N(f(z), s²)`` (ch. 11).

    The likelihood only says that ``f(z)`` is near x, so the posterior ``p(z|x)`` lies along the
    curve ``{z : f(z) = x}`` of the z-plane, where the prior weighs it (``a`` sets the bend):

    - ``"hyperbola"``: ``f(z) = a z₁ z₂``. For x ≠ 0 the curve has two branches, one in each of two
      opposite quadrants, and the posterior two curved modes (z and -z explain x equally well:
      ``p(z|x) = p(-z|x)``); for x = 0 it is a cross along the axes.
    - ``"parabola"``: ``f(z) = z₂ + a z₁²``. A banana along ``z₂ = x - a z₁²``: one curved mode for
      small x, two (at ``z₁ = ±√(x/a - 1/(2a²))``) once ``x > 1/(2a)`` (``p(z₁, z₂|x)`` is
      symmetric in z₁).

    Neither is Gaussian, so a Gaussian q leaves a gap KL(q ‖ p(z|x)) > 0 that a flow can shrink.

    ``log p(x) = log ∬ p(z) p(x|z) dz`` is computed on the uniform ``grid_size × grid_size`` grid
    over ``[-grid_limit, grid_limit]²`` (step h) with the trapezoid rule in log space,
    ``log p(x) ≈ log Σ_{g} h² p(x, z_g)``. For a smooth integrand that vanishes at the edges it
    converges geometrically: the relative error decays like ``exp(-2π² σ²/h²)`` for a peak of
    width σ. Three checks on every call raise a ValueError that says what to change:

    - the integrand must have vanished at the grid's edge (``p(x, z)`` on the border below
      ``e⁻³⁰`` times the total): else enlarge ``grid_limit``;
    - the rule on every other grid point (step 2h) must agree with the full one to 1e-3 in
      ``log p(x)``: for a peak that means ``σ > 1.3 h``, where the full grid's error is about
      ``(1e-3 / 2)⁴ ≈ 1e-13``; and no one cell may hold more than a fifth of the mass: else
      enlarge ``grid_size`` (the tests compare with ``scipy.integrate.dblquad`` to 1e-8).

    Args:
        noise_std: s > 0, the observation noise standard deviation.
        curve: ``"hyperbola"`` or ``"parabola"``, the curve ``f(z) = x`` (see above).
        a: how strongly the curve bends (any finite number; ``a = 0`` with ``"parabola"`` is the
            linear model ``x = z₂ + noise``).
        grid_limit: half-width of the quadrature square.
        grid_size: G, grid points per axis (G² in all), at least 101.
        dtype: the model's floating-point type (float64: exact math).
    """

    CURVES = ("hyperbola", "parabola")
    EDGE_LOG_SHARE = -30.0  # the border's largest log p(x, z_g) minus log Σ_g p(x, z_g)
    COARSE_TOLERANCE = 1e-3  # |log p(x) on step 2h - log p(x) on step h|
    MAX_CELL_SHARE = 0.2  # the largest share of the total mass in one grid cell

    def __init__(
        self,
        noise_std: float = 0.3,
        curve: str = "hyperbola",
        a: float = 1.0,
        *,
        grid_limit: float = 8.0,
        grid_size: int = 401,
        dtype: torch.dtype = torch.float64,
    ):
        self._set_curve(curve, a, noise_std, dtype)
        self.latent_dim, self.data_dim = 2, 1
        self.grid_limit = _check_positive_float("grid_limit", grid_limit)
        check_positive_int("grid_size", grid_size, minimum=101)
        self.z_grid = torch.linspace(-grid_limit, grid_limit, grid_size, dtype=dtype)  # (G,)
        self.grid_step = 2 * self.grid_limit / (grid_size - 1)

    def __repr__(self) -> str:
        return f"NonlinearToy2D(noise_std={self.noise_std}, curve={self.curve!r}, a={self.a})"

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``f(z)``: ``(..., 2) -> (..., 1)``, ``a z₁ z₂`` or ``z₂ + a z₁²``."""
        z1, z2 = z[..., :1], z[..., 1:]
        if self.curve == "hyperbola":
            return self.a * z1 * z2
        return z2 + self.a * z1.square()

    @staticmethod
    def grid_points(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        """The grid ``(G2, G1, 2)`` of the points ``(z1[j], z2[i])`` at ``[i, j]``.

        Rows follow z₂ and columns z₁, as ``matplotlib``'s ``contour(z1, z2, values)`` expects.
        """
        rows, cols = torch.meshgrid(z2, z1, indexing="ij")  # (G2, G1) each
        return torch.stack([cols, rows], dim=-1)  # (G2, G1, 2): (z₁, z₂)

    def _grid_log_joint(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x, z_g)`` on the quadrature grid: ``(G, G, N)``, checked for accuracy."""
        grid = self.grid_points(self.z_grid, self.z_grid)[:, :, None, :]  # (G, G, 1, 2)
        log_joint = self.log_joint(x, grid)  # (G, G, N)
        log_total = torch.logsumexp(log_joint.flatten(0, 1), dim=0)  # (N,)
        # The integrand must have vanished at the grid's border ...
        border = torch.cat([log_joint[0], log_joint[-1], log_joint[:, 0], log_joint[:, -1]])
        if bool((border.max(dim=0).values - log_total > self.EDGE_LOG_SHARE).any()):
            raise ValueError(
                "some x lie so far out that their posterior reaches the edge of the quadrature "
                f"grid [{-self.grid_limit:.3g}, {self.grid_limit:.3g}]²; build the model with a "
                "larger grid_limit."
            )
        # ... and be resolved: no cell holds much of the mass, and half the points agree.
        too_peaked = log_joint.flatten(0, 1).max(dim=0).values - log_total
        coarse = torch.logsumexp(log_joint[::2, ::2].flatten(0, 1), dim=0) + 2 * math.log(2)
        if bool((too_peaked > math.log(self.MAX_CELL_SHARE)).any()) or bool(
            ((coarse - log_total).abs() > self.COARSE_TOLERANCE).any()
        ):
            raise ValueError(
                "the posterior of some x is narrower than the quadrature grid can resolve "
                f"(step {self.grid_step:.3g}; the rule on every other point disagrees by more "
                f"than {self.COARSE_TOLERANCE:g}); build the model with a larger grid_size."
            )
        return log_joint

    def log_marginal(self, x: torch.Tensor, chunk_size: int = 8) -> torch.Tensor:
        """``log p(x) ≈ log Σ_g h² p(z_g) p(x|z_g)``, the 2-D trapezoid rule (ch. 1, 11).

        ``(N, 1) -> (N,)``, computed ``chunk_size`` data points at a time to bound memory (about
        ``G² · chunk_size`` floats a few times over).
        """
        x = self._as_x(x)
        check_positive_int("chunk_size", chunk_size)
        log_cell = 2 * math.log(self.grid_step)  # log h²
        chunks = [
            torch.logsumexp(self._grid_log_joint(x_chunk).flatten(0, 1), dim=0) + log_cell
            for x_chunk in x.split(chunk_size)
        ]
        return torch.cat(chunks)

    def log_posterior_density(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log p(z|x) = log p(x, z) - log p(x)`` (Bayes' rule, normalized by quadrature).

        Args:
            x: ``(N, 1)``.
            z: ``(K, N, 2)`` or ``(N, 2)``: anything ``(..., 2)`` that broadcasts against
                ``(N, 2)``, e.g. a grid ``(G2, G1, 1, 2)`` (:meth:`grid_points` with a new axis).

        Returns:
            ``(K, N)``, ``(N,)``, ``(G2, G1, N)``. ``exp`` of it integrates to 1 over the plane.
        """
        return self.log_joint(x, z) - self.log_marginal(x)

    def posterior_grid(
        self, x: torch.Tensor, limit: float = 4.0, size: int = 161
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The exact posterior density on a square grid, for pictures: ``(z1, z2, density)``.

        Args:
            x: ``(N, 1)``.
            limit: the grid covers ``[-limit, limit]²``.
            size: grid points per axis.

        Returns:
            ``z1 (size,)``, ``z2 (size,)`` and ``density (N, size, size)`` with
            ``density[n, i, j] = p(z₁ = z1[j], z₂ = z2[i] | x_n)`` (normalized by the quadrature
            :meth:`log_marginal`, so it is exact however coarse this grid):
            ``plt.contour(z1, z2, density[n])`` draws it.
        """
        _check_positive_float("limit", limit)
        check_positive_int("size", size, minimum=2)
        axis = torch.linspace(-limit, limit, size, dtype=self.dtype)  # (G,)
        grid = self.grid_points(axis, axis)[:, :, None, :]  # (G, G, 1, 2)
        density = self.log_posterior_density(x, grid).exp()  # (G, G, N)
        return axis, axis.clone(), density.permute(2, 0, 1)

    def posterior_moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and covariance by quadrature: ``(N, 1) -> (mean (N, 2), cov (N, 2, 2))``.

        ``E[z|x] = Σ_g w_g z_g`` with weights ``w_g ∝ p(x, z_g)`` on the grid (the moment-matched
        Gaussian, which minimizes KL(p ‖ q), not the ELBO's KL(q ‖ p)).
        """
        x = self._as_x(x)
        grid = self.grid_points(self.z_grid, self.z_grid).flatten(0, 1)  # (G², 2)
        means, covs = [], []
        for x_chunk in x.split(8):
            weights = torch.softmax(self._grid_log_joint(x_chunk).flatten(0, 1), dim=0)  # (G², n)
            mean = weights.T @ grid  # (n, 2)
            centred = grid[None] - mean[:, None]  # (n, G², 2)
            covs.append(torch.einsum("gn,ngi,ngj->nij", weights, centred, centred))
            means.append(mean)
        return torch.cat(means), torch.cat(covs)
