"""Two helpers the chapters share for Monte Carlo experiments (chapters 7 and 10).

- :func:`generator`: a fresh seeded ``torch.Generator``, so a cell draws the same numbers when run
  again (each call starts its own stream; no global seed is touched).
- :func:`assert_unbiased`: the check that an estimate agrees with an exact value to within a few of
  its standard errors, entry by entry.
"""

from __future__ import annotations

import torch

__all__ = ["generator", "assert_unbiased"]


def generator(seed: int) -> torch.Generator:
    """A fresh torch.Generator, so that every cell draws the same numbers when run again."""
    return torch.Generator().manual_seed(seed)


def assert_unbiased(estimate: torch.Tensor, std_error: torch.Tensor, exact: torch.Tensor,
                    name: str, z_max: float = 5.0) -> float:
    """|estimate - exact| <= z_max standard errors, entry by entry: a Monte Carlo check that a
    correct estimator passes (all but ~1e-6 of the time, and the seeds are fixed) and a biased
    one fails once the bias is a few standard errors. Returns the largest
    z = |estimate - exact| / se; raises AssertionError naming the estimator otherwise."""
    z = ((estimate - exact) / std_error).abs().max().item()
    assert z <= z_max, f"{name}: {z:.1f} standard errors from the exact value"
    return z
