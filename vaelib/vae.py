"""The neural Variational Autoencoder (ch. 7-8): an MLP encoder q(z|x) and an MLP decoder p(x|z).

The generative model and its approximate posterior:

    z ~ p(z) = N(0, I_d)
    x | z ~ Bernoulli(sigmoid(f(z)))   (binarized pixels; the decoder f outputs logits), or
    x | z ~ N(f(z), s² I_D)            (the decoder f outputs the mean; s the decoder noise)
    q(z|x) = N(μ(x), diag exp(logvar(x)))   (the encoder outputs μ and logvar = log σ²)

Training maximizes the ELBO (ch. 4), here in its "analytic KL" form (ch. 6):

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) ‖ p(z))  <=  log p(x)

with the expectation estimated by K reparameterized samples ``z_k = μ + σ ⊙ eps_k`` (ch. 7) and
the KL between two Gaussians in closed form (:meth:`VAE.elbo_analytic_kl`; the Monte Carlo ELBO of
every model is :func:`vaelib.estimators.elbo`). A richer q (ch. 11, ``VAEConfig(posterior="flow",
flow_length=L)``): the encoder also outputs a context c_φ(x), and q(z|x) is the diagonal Gaussian
pushed through L affine coupling maps conditioned on c_φ(x) (a :class:`vaelib.flows.FlowPosterior`),

    z_0 = μ + σ ⊙ eps,   z_L = f_L(... f_1(z_0; h) ...; h),
    log q(z_L|x) = log N(z_0; μ, σ²) - Σ_l log |det ∂f_l/∂z|,

whose KL to the prior has no closed form: it is estimated from the same samples. The model is a
:class:`vaelib.protocols.LatentVariableModel` like the toy models of :mod:`vaelib.toy`
(``latent_dim``, ``log_prior``, ``log_likelihood``, ``log_joint``, ``sample_prior``;
``posterior(x)`` is a distribution), so :mod:`vaelib.estimators` (importance sampling, IWAE) work
on it unchanged.

Shapes: N data points, D data dim (784 for MNIST), d latent dim, K samples. Symbols follow the
course's notation table, ``docs/notation.md``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from . import estimators
from .checks import check_last_dim, check_positive_int, check_tensor
from .gaussian import DiagonalGaussian, standard_normal, standard_normal_log_prob
from .kl import gaussian_kl
from .protocols import LatentVariableModel
from .likelihoods import LIKELIHOODS, Likelihood, get_likelihood

if TYPE_CHECKING:  # vaelib.flows is imported where a flow posterior is made (none: not at all)
    from .flows import FlowPosterior

__all__ = ["VAEConfig", "VAE", "PRESETS", "ACTIVATIONS", "LIKELIHOODS", "POSTERIORS",
           "flow_floats_per_sample"]

#: Nonlinearities by name (applied after every hidden layer).
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "softplus": nn.Softplus,
               "gelu": nn.GELU}
#: How the Gaussian decoder's noise standard deviation s is handled.
GAUSSIAN_STD_MODES = ("fixed", "shared", "per-pixel")

#: The most parameters a VAEConfig may have: 400 MB of float32 weights (the course's models have
#: under 1.3 M). Far larger sizes are typing errors (latent_dim=10**9) that would otherwise ask
#: the allocator for terabytes.
MAX_PARAMETERS = 100_000_000

#: The families of q(z|x): a diagonal Gaussian (ch. 7), or a flow posterior (ch. 11).
POSTERIORS = ("gaussian", "flow")
#: The flow posterior's default sizes: each coupling map's hidden width, and the context c_φ(x).
DEFAULT_FLOW_HIDDEN = 64
DEFAULT_FLOW_CONTEXT = 16

#: Named architectures: overrides of the :class:`VAEConfig` defaults.
PRESETS = {
    # pytorch/examples vae/main.py: 784-400-20, ReLU, Bernoulli decoder.
    "pytorch-example": dict(hidden_dims=(400,), latent_dim=20, activation="relu"),
    # Burda, Grosse & Salakhutdinov (2015), one stochastic layer: 784-200-200-50, tanh, Bernoulli
    # decoder whose output bias starts at the logit of the mean training image.
    "burda": dict(hidden_dims=(200, 200), latent_dim=50, activation="tanh", init_output_bias=True),
}


@dataclass
class VAEConfig:
    """Everything that defines a :class:`VAE`'s architecture (saved as JSON in checkpoints)."""

    data_dim: int = 784  # D: a flattened 28 × 28 MNIST image
    hidden_dims: tuple[int, ...] = (400,)  # encoder D -> h1 -> ... -> 2d; the decoder mirrors it
    latent_dim: int = 20  # d: the size of z
    activation: str = "relu"  # after every hidden layer: relu | tanh | elu | softplus | gelu
    likelihood: str = "bernoulli"  # p(x|z), a name in vaelib.likelihoods.LIKELIHOODS: "bernoulli"
    #                   (0/1 pixels; decoder gives logits) or "gaussian" (real values; the mean)
    gaussian_std: float = 0.1  # s of a Gaussian p(x|z) = N(f(z), s² I) (the start if learned)
    gaussian_std_mode: str = "fixed"  # "fixed" s | "shared": one learned s | "per-pixel": s_i
    init_output_bias: bool = False  # train() sets the output bias from the data mean (Burda)
    posterior: str = "gaussian"  # q(z|x): "gaussian" (diagonal) | "flow" (ch. 11: the Gaussian
    #                              pushed through flow_length affine coupling maps)
    flow_length: int = 0  # L, the number of coupling maps (>= 1 for "flow", 0 for "gaussian")
    flow_hidden: int | None = None  # width of each coupling map's hidden layer ("flow" only;
    #                                 None: DEFAULT_FLOW_HIDDEN)
    flow_context: int | None = None  # c, the size of the context c_φ(x) the encoder gives every
    #                                  map ("flow" only; None: DEFAULT_FLOW_CONTEXT)

    def __post_init__(self):
        if isinstance(self.hidden_dims, (str, bytes)) or not isinstance(self.hidden_dims,
                                                                        (tuple, list)):
            raise ValueError(f"hidden_dims must be a sequence of layer widths such as (400,) or "
                             f"[200, 200] (() for none), got {self.hidden_dims!r}.")
        self.hidden_dims = tuple(self.hidden_dims)  # lists (e.g. from JSON) become tuples
        for name in ("data_dim", "latent_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}.")
        if any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in self.hidden_dims):
            raise ValueError(
                f"hidden_dims must be integers >= 1 (e.g. (400,)), got {self.hidden_dims!r}.")
        if not isinstance(self.activation, str) or self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}; choose one of {sorted(ACTIVATIONS)}.")
        get_likelihood(self.likelihood if isinstance(self.likelihood, str) else repr(
            self.likelihood))  # a clear error for an unknown name
        if not isinstance(self.gaussian_std_mode, str) or \
                self.gaussian_std_mode not in GAUSSIAN_STD_MODES:
            raise ValueError(f"unknown gaussian_std_mode {self.gaussian_std_mode!r}; choose one of "
                             f"{GAUSSIAN_STD_MODES}.")
        if not (isinstance(self.gaussian_std, (int, float)) and math.isfinite(self.gaussian_std)
                and self.gaussian_std > 0):
            raise ValueError(
                f"gaussian_std must be a finite number > 0, got {self.gaussian_std!r}.")
        self._check_posterior()
        if self.num_parameters() > MAX_PARAMETERS:  # checked before anything is allocated
            flow = (f", flow_length={self.flow_length}, flow_hidden={self.flow_hidden}, "
                    f"flow_context={self.flow_context}") if self.posterior == "flow" else ""
            raise ValueError(
                f"VAEConfig(data_dim={self.data_dim}, hidden_dims={self.hidden_dims}, "
                f"latent_dim={self.latent_dim}{flow}) would have {self.num_parameters():.3g} "
                f"parameters ({4 * self.num_parameters() / 1e9:.3g} GB of float32 weights, and "
                f"three times that again for training); vaelib allows at most "
                f"{MAX_PARAMETERS:,} ({4 * MAX_PARAMETERS // 10**6} MB). Choose smaller "
                f"hidden_dims or latent_dim{' (or flow sizes)' if flow else ''}: the presets "
                "have 0.3 M (burda) and 0.65 M (pytorch-example).")

    def _check_posterior(self) -> None:
        """The posterior family's fields: valid together, and the flow's sizes resolved."""
        if not isinstance(self.posterior, str) or self.posterior not in POSTERIORS:
            raise ValueError(f"unknown posterior {self.posterior!r}; choose 'gaussian' (a diagonal "
                             "Gaussian q(z|x)) or 'flow' (that Gaussian pushed through flow_length "
                             "coupling maps, chapter 11).")
        value = self.flow_length
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"flow_length must be an integer >= 0 (the number of flow maps), got "
                             f"{value!r}.")
        flow_sizes = {"flow_hidden": DEFAULT_FLOW_HIDDEN, "flow_context": DEFAULT_FLOW_CONTEXT}
        if self.posterior == "gaussian":
            if self.flow_length != 0:
                raise ValueError(f"flow_length={self.flow_length} needs posterior='flow' (a "
                                 "Gaussian posterior has no flow maps): set posterior='flow', or "
                                 "flow_length=0.")
            for name in flow_sizes:
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}={getattr(self, name)!r} is a size of the flow "
                                     f"posterior: set posterior='flow' (with flow_length >= 1), or "
                                     f"leave {name} at None.")
            return
        if self.flow_length < 1:
            raise ValueError("posterior='flow' needs flow_length >= 1 coupling maps (e.g. 4); "
                             "flow_length=0 is the Gaussian posterior, posterior='gaussian'.")
        if self.latent_dim < 2:
            raise ValueError("posterior='flow' uses affine coupling maps, which change one part of "
                             "z given the other: it needs latent_dim >= 2, got "
                             f"{self.latent_dim}. Use posterior='gaussian' for a 1-D latent.")
        for name, default in flow_sizes.items():
            value = getattr(self, name)
            if value is None:
                setattr(self, name, default)
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1 (or None for {default}), got "
                                 f"{value!r}.")

    def num_parameters(self) -> int:
        """The number of trained numbers of the :class:`VAE` this config builds (no allocation)."""
        encoder = [self.data_dim, *self.hidden_dims, 2 * self.latent_dim]
        decoder = [self.latent_dim, *reversed(self.hidden_dims), self.data_dim]
        linear = sum((n_in + 1) * n_out for widths in (encoder, decoder)  # weights and biases
                     for n_in, n_out in zip(widths[:-1], widths[1:]))
        learned_std = {"fixed": 0, "shared": 1, "per-pixel": self.data_dim}
        return linear + (learned_std[self.gaussian_std_mode] if self.likelihood == "gaussian"
                         else 0) + self._flow_parameters()

    def _flow_parameters(self) -> int:
        """The flow posterior's numbers: the encoder's c context outputs and the L coupling maps."""
        if self.posterior != "flow":
            return 0
        last = self.hidden_dims[-1] if self.hidden_dims else self.data_dim  # the encoder's input
        return ((last + 1) * self.flow_context  # the encoder's last layer: c more outputs
                + self.flow_length * _coupling_parameters(self.latent_dim, self.flow_context,
                                                          self.flow_hidden))

    @classmethod
    def preset(cls, name: str, **overrides) -> VAEConfig:
        """A named architecture (see :data:`PRESETS`), with any field overridden by keyword."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuples become lists)."""
        values = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}

    @classmethod
    def from_dict(cls, values: dict) -> VAEConfig:
        """The inverse of :meth:`to_dict`; unknown keys are an error (a config from elsewhere?)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(
                f"unknown VAEConfig field(s) {unknown}; known fields: {sorted(names)}.")
        return cls(**values)


def _coupling_parameters(dim: int, context_dim: int, hidden: int) -> int:
    """The trained numbers of one :class:`vaelib.flows.AffineCoupling` map (no allocation): its
    network [z_a, h] -> hidden -> (s, t)."""
    return (dim + context_dim + 1) * hidden + (hidden + 1) * 2 * dim


def flow_floats_per_sample(config: VAEConfig) -> int:
    """About the float32 numbers a flow posterior's maps hold per (sample, data point) pair for
    the backward pass (0 for a Gaussian posterior): each map's hidden layer (before and after its
    nonlinearity), its scale and shift, the new z, and the context it is given."""
    if config.posterior != "flow":
        return 0
    return config.flow_length * (2 * config.flow_hidden + 4 * config.latent_dim
                                 + config.flow_context)


def _mlp(widths: list[int], activation: str) -> nn.Sequential:
    """Linear layers ``widths[0] -> ... -> widths[-1]``, with the activation between them."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        if i > 0:
            layers.append(ACTIVATIONS[activation]())
        layers.append(nn.Linear(n_in, n_out))
    return nn.Sequential(*layers)


class VAE(nn.Module, LatentVariableModel):
    """A VAE with MLP encoder and decoder (ch. 7-8).

    Args:
        config: the architecture (default ``VAEConfig()``, the pytorch-example model);
        **overrides: fields of the config to change, e.g. ``VAE(latent_dim=2)``.

    Example::

        model = VAE(VAEConfig.preset("burda"))
        elbo = model.elbo_analytic_kl(x)  # (N,) nats per data point
    """

    def __init__(self, config: VAEConfig | None = None, **overrides):
        super().__init__()
        config = config if config is not None else VAEConfig()
        if not isinstance(config, VAEConfig):
            raise TypeError(f"config must be a VAEConfig, got {type(config).__name__}; for a "
                            "preset use VAEConfig.preset('burda').")
        self.config = dataclasses.replace(config, **overrides) if overrides else config
        c = self.config
        # Encoder: x (N, D) -> (N, 2d), split into μ and logvar. Decoder: z (..., d) -> (..., D).
        self.encoder = _mlp([c.data_dim, *c.hidden_dims, 2 * c.latent_dim], c.activation)
        self.decoder = _mlp([c.latent_dim, *reversed(c.hidden_dims), c.data_dim], c.activation)
        self.flows = nn.ModuleList()  # a flow posterior's maps f_1, ..., f_L (none: Gaussian)
        if c.posterior == "flow":
            self._add_flow()
        self.likelihood: Likelihood = get_likelihood(c.likelihood)  # p(x|z): vaelib.likelihoods
        self.output_bias_from_data = False  # set by init_output_bias (train() calls it once)
        if self.likelihood.has_std:  # log s of p(x|z): a constant, or learned (1 or D of them)
            shape = (c.data_dim,) if c.gaussian_std_mode == "per-pixel" else ()
            log_std = torch.full(shape, math.log(c.gaussian_std))
            if c.gaussian_std_mode == "fixed":
                self.register_buffer("log_std", log_std, persistent=False)
            else:
                self.log_std = nn.Parameter(log_std)

    def _add_flow(self) -> None:
        """The flow posterior's parts, made after the Gaussian model's (so that, from the same
        seed, the encoder's μ and logvar rows and the decoder start as the Gaussian VAE's do):
        c more outputs of the encoder's last layer (the context c_φ(x)), and L coupling maps with
        alternating masks, each starting as the identity (so q starts as the Gaussian's)."""
        from .flows import AffineCoupling, coupling_masks

        c = self.config
        gaussian_head = self.encoder[-1]  # (2d outputs), initialized as in the Gaussian VAE
        context_head = nn.Linear(gaussian_head.in_features, c.flow_context)  # its own init
        head = nn.utils.skip_init(nn.Linear, gaussian_head.in_features,
                                  2 * c.latent_dim + c.flow_context)  # no random numbers used
        with torch.no_grad():
            head.weight.copy_(torch.cat([gaussian_head.weight, context_head.weight]))
            head.bias.copy_(torch.cat([gaussian_head.bias, context_head.bias]))
        self.encoder[-1] = head  # x (N, D) -> (N, 2d + c): [μ, logvar, h]
        for mask in coupling_masks(c.latent_dim, c.flow_length):
            self.flows.append(AffineCoupling(c.latent_dim, c.flow_context, c.flow_hidden, mask))

    @classmethod
    def from_preset(cls, name: str, **overrides) -> VAE:
        """``VAE(VAEConfig.preset(name, **overrides))``."""
        return cls(VAEConfig.preset(name, **overrides))

    @property
    def latent_dim(self) -> int:
        """d, the size of z."""
        return self.config.latent_dim

    @property
    def data_dim(self) -> int:
        """D, the size of x."""
        return self.config.data_dim

    @property
    def device(self) -> torch.device:
        return self.decoder[-1].weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.decoder[-1].weight.dtype

    # -- input checks ---------------------------------------------------------------------------

    def check_data(self, x: torch.Tensor) -> torch.Tensor:
        """Check x is ``(N, D)`` data this model can score; return it on the model's device/dtype.

        A Bernoulli likelihood needs values in [0, 1] (0/1 pixels; grey levels in between run, but
        are not a normalized likelihood: binarize them, ch. 8). Reads the values: a host sync on
        a GPU.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of shape (N, {self.data_dim}), got "
                            f"{type(x).__name__}.")
        if x.dim() != 2 or x.shape[1] != self.data_dim:
            raise ValueError(f"x must have shape (N, D={self.data_dim}), got {tuple(x.shape)}; "
                             "flatten images first (vaelib.data.to_unit_interval gives (N, 784) "
                             "in [0, 1]).")
        if not x.is_floating_point():
            raise TypeError(f"x must be floating point, got {x.dtype}; convert uint8 images with "
                            "vaelib.data.to_unit_interval.")
        x = x.to(device=self.device, dtype=self.dtype)
        if x.numel() == 0:
            return x
        lo, hi = torch.stack(torch.aminmax(x)).tolist()  # one pass, one sync; NaN propagates
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError("x contains NaN or infinite values; clean the data first.")
        if self.likelihood.binary_data and (lo < 0 or hi > 1):
            raise ValueError(
                f"a {type(self.likelihood).__name__} likelihood needs data in [0, 1] (pixels "
                "that are on or off), got "
                f"values in [{lo:.3g}, {hi:.3g}]. Scale images to [0, 1] and binarize them "
                "(vaelib.data.binarize), or use likelihood='gaussian' for real-valued data.")
        return x

    # -- encoder and decoder --------------------------------------------------------------------

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The encoder network's raw outputs: ``x (N, D) -> (mean (N, d), logvar (N, d))``, and
        for a flow posterior also the context ``c_φ(x)`` ``(N, c)`` its maps are conditioned on:
        ``(mean, logvar, context)``.

        A tuple of tensors (what the network computes); :meth:`posterior_from` wraps them in the
        distribution q(z|x) (:meth:`posterior` does both).
        """
        if self.config.posterior == "flow":
            d = self.latent_dim
            mean, logvar, context = self.encoder(x).split([d, d, self.config.flow_context], -1)
            return mean, logvar, context  # (N, d), (N, d), (N, c)
        mean, logvar = self.encoder(x).chunk(2, dim=-1)  # (N, 2d) -> 2 × (N, d)
        return mean, logvar

    def posterior_from(self, *encoded: torch.Tensor,
                       validate_args: bool = True) -> DiagonalGaussian | FlowPosterior:
        """q(z|x) from :meth:`encode`'s outputs (or any tensors of their shapes, e.g. one data
        point's parameters being optimized on their own, chapter 11).

        Gaussian: ``posterior_from(mean, logvar)`` = N(μ, diag exp(logvar)), a
        :class:`DiagonalGaussian` over ``(N, d)``. Flow: ``posterior_from(mean, logvar,
        context)``, a :class:`vaelib.flows.FlowPosterior`: that Gaussian pushed through the
        model's L coupling maps, each given the context ``(N, c)``. ``validate_args=False``
        skips the base Gaussian's finiteness checks (no host sync).
        """
        names = ("mean", "logvar", "context") if self.config.posterior == "flow" else \
            ("mean", "logvar")
        if len(encoded) != len(names):
            raise ValueError(
                f"posterior_from takes what encode returns for this {self.config.posterior} "
                f"posterior: {len(names)} tensors ({', '.join(names)}), got {len(encoded)}. Call "
                "it as model.posterior_from(*model.encode(x)).")
        base = DiagonalGaussian(encoded[0], encoded[1], validate_args=validate_args)
        if self.config.posterior == "flow":
            from .flows import FlowPosterior

            return FlowPosterior(base, self.flows, encoded[2])
        return base

    def posterior(self, x: torch.Tensor,
                  validate_args: bool = True) -> DiagonalGaussian | FlowPosterior:
        """q(z|x) = :meth:`posterior_from` ``(*encode(x))``: the encoder's approximation of p(z|x)
        (the toy models' ``posterior`` is the exact one), over ``(N, d)``.

        Gaussian: N(μ(x), diag exp(logvar(x))), a :class:`DiagonalGaussian`. Flow: a
        :class:`vaelib.flows.FlowPosterior`, that Gaussian pushed through L coupling maps
        conditioned on c_φ(x). ``validate_args=False`` skips the finiteness checks of the
        :class:`DiagonalGaussian`.
        """
        return self.posterior_from(*self.encode(x), validate_args=validate_args)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``f(z)``: ``(..., d) -> (..., D)``, the logits of p(x|z) (Bernoulli) or its mean."""
        return self.decoder(z)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x|z]: ``sigmoid(f(z))`` (pixel probabilities) or ``f(z)``; ``(..., d) -> (..., D)``."""
        return self.likelihood.mean(self.decode(z))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """x_hat = E[x | z = mu(x)], the decoder's mean at the posterior mean: ``(N, D)``.

        (For a flow posterior μ(x) is the mean of its base Gaussian, not of q.)"""
        mean = self.encode(x)[0]
        return self.decode_mean(mean)

    @torch.no_grad()
    def generate(self, num_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """New images: x_hat = E[x|z] at ``z ~ p(z)``, ``(K, D)`` (means, not noisy draws).

        (The toy models' ``sample`` returns noisy joint draws ``(x, z)``; this is not that.)
        """
        return self.decode_mean(self.sample_prior(num_samples, generator=generator))

    @torch.no_grad()
    def init_output_bias(self, x_mean: torch.Tensor) -> None:
        """Start the decoder at the average image: output bias = logit(mean) (Bernoulli) or mean.

        With the last layer's weights small, p(x|z) then begins at the per-pixel marginal instead
        of at probability ½ everywhere (Burda et al., 2015). Args: x_mean ``(D,)``, e.g.
        ``x.mean(0)``. When ``config.init_output_bias`` is set, :func:`vaelib.train.train` calls
        this once, on a model whose ``output_bias_from_data`` is still False.
        """
        x_mean = torch.as_tensor(x_mean, dtype=self.dtype).to(self.device).reshape(-1)
        if x_mean.shape != (self.data_dim,):
            raise ValueError(
                f"x_mean must have shape ({self.data_dim},), got {tuple(x_mean.shape)}.")
        self.decoder[-1].bias.copy_(self.likelihood.output_bias(x_mean))
        self.output_bias_from_data = True

    # -- the model's densities (the protocol of vaelib.toy) -------------------------------------

    def sample_prior(self, num_samples: int, num_points: int | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """``z ~ p(z) = N(0, I_d)``: ``(K, d)``, or ``(K, N, d)`` with ``num_points=N``."""
        batch = (check_positive_int("num_samples", num_samples),)
        if num_points is not None:
            batch = (*batch, check_positive_int("num_points", num_points))
        shape = (*batch, self.latent_dim)
        return standard_normal(shape, dtype=self.dtype, device=self.device, generator=generator)

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """``log p(z) = -½ Σ_j (z_j² + log 2π)``: ``(..., d) -> (...)``.

        The toy models' prior (:func:`vaelib.gaussian.standard_normal_log_prob`), with the checks
        that need no host sync (a floating-point tensor whose last dim is d).
        """
        check_tensor("z", z)
        check_last_dim("z", z, self.latent_dim)
        return standard_normal_log_prob(z)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor,
                       validate: bool = True) -> torch.Tensor:
        """``log p(x|z)`` summed over the D pixels.

        x ``(N, D)`` and z ``(K, N, d)`` or ``(N, d)`` give ``(K, N)`` or ``(N,)``.

        Bernoulli, logits l = f(z):  log p(x|z) = Σ_i [x_i l_i - softplus(l_i)]
        Gaussian, mean f(z):         log p(x|z) = -½ Σ_i [((x_i - f_i(z))/s_i)² + log 2π s_i²]
        (each is a :class:`vaelib.likelihoods.Likelihood`, ``self.likelihood``).

        ``validate=False`` skips :meth:`check_data` (no host sync: for training loops).
        """
        if validate:
            x = self.check_data(x)
        out = self.decode(z).float()  # (K, N, D); float32 even under bf16 autocast
        log_std = self.log_std if self.likelihood.has_std else None  # log s (Gaussian only)
        return self.likelihood.log_prob(x, out, log_std)  # (K, N)

    # log_joint(x, z) = log_prior(z) + log_likelihood(x, z): inherited from LatentVariableModel.

    # -- the bounds -----------------------------------------------------------------------------

    def elbo_terms(self, x: torch.Tensor, num_samples: int = 1,
                   generator: torch.Generator | None = None,
                   validate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The two terms of the ELBO per data point: ``(reconstruction (N,), kl (N,))``.

        reconstruction = (1/K) Σ_k log p(x|z_k),  z_k = mu + σ ⊙ eps_k  (reparameterized, ch. 7)
        kl             = KL(q(z|x) ‖ N(0, I))  in closed form (ch. 6)

        A flow posterior's KL has no closed form: there z_k is the Gaussian sample pushed through
        the maps, and kl = (1/K) Σ_k [log q(z_k|x) - log p(z_k)], the Monte Carlo KL from the
        same K samples (z_k and log q(z_k|x) from one pass), so reconstruction - kl is
        :func:`vaelib.estimators.elbo`'s estimate (1/K) Σ_k log w_k.

        ``validate=False`` skips the data and finiteness checks (no host sync: for training).
        """
        if validate:
            x = self.check_data(x)
        q = self.posterior(x, validate_args=validate)
        if self.config.posterior == "flow":
            z, log_q = q.rsample_with_log_prob((num_samples,), generator=generator)  # (K, N, d)
            reconstruction = self.log_likelihood(x, z, validate=False).mean(dim=0)  # (N,)
            kl = (log_q.float() - self.log_prior(z).float()).mean(dim=0)  # (N,), Monte Carlo
            return reconstruction, kl
        z = q.rsample(num_samples, generator=generator)  # (K, N, d)
        reconstruction = self.log_likelihood(x, z, validate=False).mean(dim=0)  # (N,)
        kl = gaussian_kl(q.mean.float(), q.logvar.float())  # (N,)
        return reconstruction, kl

    def elbo_analytic_kl(self, x: torch.Tensor, num_samples: int = 1,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """``ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) ‖ p(z))`` per data point, ``(N,)`` (ch. 4, 6).

        The expectation is estimated with K = ``num_samples`` reparameterized samples, the KL
        exactly; :func:`vaelib.estimators.elbo` estimates both terms by sampling
        ``log p(x, z) - log q(z|x)``. Both have the same expectation; which has the lower variance
        depends on q and the model (often this one, not always: chapter 4 measures both).
        Differentiable.

        With a flow posterior the KL has no closed form, and it is estimated from the same K
        samples (see :meth:`elbo_terms`): the result is then the Monte Carlo ELBO
        ``(1/K) Σ_k [log p(x, z_k) - log q(z_k|x)]``, the number :func:`vaelib.estimators.elbo`
        gives from the same random numbers, up to round-off.
        """
        reconstruction, kl = self.elbo_terms(x, num_samples, generator)
        return reconstruction - kl

    def iwae_bound(self, x: torch.Tensor, num_samples: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """``IWAE_K = E[log (1/K) Σ_k p(x, z_k) / q(z_k|x)]`` per data point, ``(N,)`` (ch. 4).

        Estimated from one draw of K = ``num_samples`` samples z_k ~ q(z|x) for each data point.
        ELBO = IWAE_1 <= IWAE_K <= log p(x). Holds K × N decoder outputs in memory; for K in the
        thousands use :func:`vaelib.evaluate.evaluate`, which chunks. With a flow posterior, z_k
        and log q(z_k|x) come from one pass through its maps.
        """
        x = self.check_data(x)
        return estimators.iwae_bound(self, x, self.posterior(x), num_samples, generator=generator)
