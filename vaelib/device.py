"""One device helper and the seeding helpers for the whole course.

Tensors follow their inputs (``torch.randn_like``, ``device=x.device``); the only place that picks a
device is :func:`default_device`.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["default_device", "seed_everything", "derive_seed"]


def default_device() -> torch.device:
    """The best device present: CUDA, then Apple's MPS, then the CPU.

    Set the environment variable ``VAELIB_DEVICE`` (e.g. ``cpu``) to override the choice, for instance
    to compare CPU and GPU timings on one machine.
    """
    forced = os.environ.get("VAELIB_DEVICE")
    if forced:
        try:
            return torch.device(forced)
        except RuntimeError as err:
            raise ValueError(
                f"VAELIB_DEVICE={forced!r} is not a torch device; use 'cpu', 'cuda', 'cuda:0' or 'mps'."
            ) from err
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every GPU).

    Returns a fresh ``torch.Generator`` seeded with ``seed`` as well, for code that prefers an
    explicit generator over global state.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def derive_seed(seed: int, index: int) -> int:
    """The seed of item ``index`` (an epoch, a data point) of a run seeded with ``seed``.

    ``seed · 1,000,003 + index`` (a prime multiplier): a different seed for every (seed, index)
    pair with index < 1,000,003, so each item's random numbers do not depend on which other items
    were drawn before it (a resumed run, or a chunked evaluation, draws the same numbers).
    """
    return seed * 1_000_003 + index
