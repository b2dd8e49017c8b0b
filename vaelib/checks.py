"""The input checks shared by the exact-math modules (gaussian, kl, toy, estimators, gradients).

Each raises a clear error that says what was expected and how to fix it, and returns the value, so
a check can wrap the expression it checks: ``x = check_finite("x", x.to(dtype))``.
"""

from __future__ import annotations

import torch

__all__ = [
    "check_tensor",
    "check_finite",
    "check_positive_int",
    "check_num_samples",
    "check_last_dim",
    "check_dim",
]


def check_tensor(name: str, value: object, min_dim: int = 0) -> torch.Tensor:
    """``value`` must be a floating-point tensor with at least ``min_dim`` dimensions."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor, got {type(value).__name__}; "
            f"wrap it with torch.as_tensor({name}, dtype=torch.float64)."
        )
    if not value.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor, got dtype {value.dtype}; "
            f"convert it with {name}.to(torch.float64) (or float32 for a neural network)."
        )
    if value.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimension(s), got shape {tuple(value.shape)}."
        )
    return value


def check_finite(name: str, value: torch.Tensor) -> torch.Tensor:
    """Raise when ``value`` holds NaN or ±inf (this reads the tensor: a host sync on a GPU)."""
    if not bool(torch.isfinite(value).all()):
        raise ValueError(
            f"{name} contains NaN or infinite values; check how it was computed "
            "(e.g. a log of 0, an exp that overflowed, or a diverged training run)."
        )
    return value


def check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    """``value`` must be a Python int (not bool) ``>= minimum``: a size such as ``data_dim``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r}).")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}.")
    return value


def check_num_samples(num_samples: object, name: str = "num_samples", minimum: int = 1) -> int:
    """``num_samples`` (K, a number of Monte Carlo samples) must be an int ``>= minimum``."""
    return check_positive_int(name, num_samples, minimum)


def check_last_dim(
    name: str, z: torch.Tensor, size: int, what: str = "latent dimension d"
) -> None:
    """``z`` must have last dimension ``size`` (the ``what``)."""
    if z.dim() == 0 or z.shape[-1] != size:
        raise ValueError(
            f"{name} must have last dimension {size} (the {what}), got shape {tuple(z.shape)}."
        )


def check_dim(name: str, value: torch.Tensor, dim: object) -> int:
    """``dim`` must be an int naming a dimension of ``value`` (negative counts from the end)."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim must be an int, got {type(dim).__name__} ({dim!r}).")
    if not -value.dim() <= dim < value.dim():
        raise ValueError(
            f"dim={dim} is not a dimension of {name}, which has {value.dim()} dimension(s) "
            f"(shape {tuple(value.shape)}): use a dim from {-value.dim()} to {value.dim() - 1}."
        )
    return dim
