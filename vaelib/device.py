"""One device helper and the seeding helpers for the whole course.

Tensors follow their inputs (``torch.randn_like``, ``device=x.device``); the only place that picks a
device is :func:`default_device`, and the one place that checks a device someone asked for (a
``--device`` flag, ``load_model(..., device=)``) is :func:`check_device`.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["default_device", "check_device", "available_devices", "seed_everything",
           "derive_seed"]


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
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def available_devices() -> list[str]:
    """The devices this machine can compute on, e.g. ``['cpu', 'cuda:0', 'cuda:1']``."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        names.append("mps")
    return names


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``, once it is known to be present on this machine.

    Raises:
        ValueError: a name that is no device (``'nonsense'``), or one this machine does not have
            (``'cuda'`` without a GPU); the message lists the devices that are present.
        TypeError: neither a string nor a ``torch.device``.
    """
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', or a torch.device; got "
                        f"{type(device).__name__} ({device!r}).")
    present = ", ".join(available_devices())
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ValueError(f"{device!r} is not a device name; use one of the devices available "
                         f"here: {present}.") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type == "cuda":
        ok = torch.cuda.is_available() and (resolved.index is None
                                            or resolved.index < torch.cuda.device_count())
    elif resolved.type == "mps":
        ok = _mps_available()
    else:  # xpu, meta, ...: present if a tensor can be made there
        try:
            torch.empty(0, device=resolved)
            ok = True
        except (RuntimeError, AssertionError):
            ok = False
    if not ok:
        raise ValueError(f"device {str(resolved)!r} was asked for, but this machine does not have "
                         f"it; devices available here: {present}.")
    return resolved


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
