"""One device helper, the seeding helpers and one thread rule for the whole course.

Tensors follow their inputs (``torch.randn_like``, ``device=x.device``); the only place that picks a
device is :func:`default_device`, and the one place that checks a device someone asked for (a
``--device`` flag, ``load_model(..., device=)``) is :func:`check_device`.

Threads: importing this module (every chapter and ``vaelib`` itself do) sets torch's intra-op
threads with :func:`fit_threads`, from the CPUs this process may really use (see
:func:`usable_cpus`). The course's models are small (784-400-20, batches of 128): on a 2-core
machine one thread trains as fast as two, and 3.3x faster than two when two other processes share
the cores, because OpenMP threads wait on each other whenever a core is taken away. Hence the rule
of :func:`threads_for`.
"""

from __future__ import annotations

import math
import os
import random
import warnings
from pathlib import Path

import numpy as np
import torch

__all__ = ["default_device", "check_device", "available_devices", "seed_everything",
           "derive_seed", "usable_cpus", "threads_for", "fit_threads"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
MAX_THREADS = 4  # matrices of a few hundred columns stop gaining from more threads well before this


def default_device() -> torch.device:
    """The best device present: CUDA, then Apple's MPS, then the CPU.

    Set the environment variable ``VAELIB_DEVICE`` (e.g. ``cpu``) to override the choice, for
    instance to compare CPU and GPU timings on one machine.
    """
    forced = os.environ.get("VAELIB_DEVICE")
    if forced:
        try:
            return torch.device(forced)
        except RuntimeError as err:
            raise ValueError(
                f"VAELIB_DEVICE={forced!r} is not a torch device; "
                "use 'cpu', 'cuda', 'cuda:0' or 'mps'."
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


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """The CPUs this process may really use: its CPU affinity, capped by the cgroup CPU quota.

    A container, a JupyterHub spawner or ``taskset`` can give a process fewer CPUs than the machine
    has (``os.cpu_count()`` reports the machine). The quota is read from cgroup v2's ``cpu.max``
    (``"<quota> <period>"`` or ``"max <period>"``) or cgroup v1's ``cpu/cpu.cfs_quota_us`` and
    ``cpu.cfs_period_us`` (quota -1: none); a quota of 1.5 CPUs counts as 2.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = _cgroup_quota(Path(cgroup_root))
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return cpus


def _cgroup_quota(root: Path) -> float | None:
    """The cgroup CPU quota in CPUs (e.g. 1.5), or None when there is none or it cannot be read."""
    v2 = root / "cpu.max"
    if v2.is_file():
        fields = v2.read_text().split()
        if len(fields) == 2 and fields[0] != "max":
            return _ratio(fields[0], fields[1])
        return None
    for v1 in (root / "cpu", root / "cpu,cpuacct"):
        quota, period = v1 / "cpu.cfs_quota_us", v1 / "cpu.cfs_period_us"
        if quota.is_file() and period.is_file():
            if quota.read_text().strip() == "-1":
                return None
            return _ratio(quota.read_text(), period.read_text())
    return None


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None  # an unreadable quota is no quota: fall back to the affinity
    return q / p if q > 0 and p > 0 else None


def threads_for(cpus: int) -> int:
    """torch threads for ``cpus`` usable CPUs: half of them, at least 1, at most ``MAX_THREADS``.

    Measured on 2 CPUs (README, "Shared machines"): 1 thread is as fast as 2 on a quiet machine
    and 3.3x faster with two competing busy processes. Half the CPUs leaves room for the Jupyter
    server, the browser and the neighbours on a shared node; the course's small matrices gain little
    beyond 4.
    """
    return max(1, min(MAX_THREADS, cpus // 2))


def fit_threads(environ: dict | None = None, cgroup_root: Path = CGROUP_ROOT) -> int:
    """Set torch's intra-op threads for this machine and return the number set.

    ``VAELIB_THREADS`` (a positive integer) wins, then ``OMP_NUM_THREADS``; otherwise
    ``threads_for(usable_cpus())``. The two are not treated alike when they are wrong:

    - ``VAELIB_THREADS`` is the course's own setting, so a value that is no positive whole number
      is an error (whoever set it meant a number; a silent fallback would hide the typo), and more
      threads than usable CPUs is taken but warned about once (they would only wait on each other).
    - ``OMP_NUM_THREADS`` is often set for every program on a hub: a value that is no positive
      whole number is warned about once and the rule is used instead, so one bad setting does not
      stop every chapter at ``import vaelib``.
    """
    environ = os.environ if environ is None else environ
    threads = None
    for name in ("VAELIB_THREADS", "OMP_NUM_THREADS"):
        value = environ.get(name, "").strip()
        if value:
            threads = _parse_threads(value)
            if threads is None and name == "VAELIB_THREADS":
                raise ValueError(f"{name}={value!r} is not a positive whole number of threads; "
                                 f"unset it or use e.g. {name}=1.")
            if threads is None:
                _warn_once(f"{name}={value!r} is not a positive whole number of threads, so vaelib "
                           f"ignores it and uses its own rule ({_rule(cgroup_root)}); set it to "
                           f"e.g. {name}=1, or unset it.")
                continue  # the rule below
            if name == "VAELIB_THREADS" and threads > (cpus := usable_cpus(cgroup_root)):
                _warn_once(f"{name}={threads} asks for more threads than the {cpus} CPU(s) this "
                           f"process may use, so they will wait on each other (slower, and "
                           f"slowing the neighbours on a shared machine); {_rule(cgroup_root)} "
                           f"would be used without it, e.g. {name}={threads_for(cpus)}.")
            break
    if threads is None:
        threads = threads_for(usable_cpus(cgroup_root))
    torch.set_num_threads(threads)
    return threads


def _parse_threads(value: str) -> int | None:
    """A thread count from an environment variable (OpenMP also allows "4,2": outer, nested), or
    None when it is no positive whole number."""
    try:
        threads = int(value.split(",")[0])
    except ValueError:
        return None
    return threads if threads >= 1 else None


def _rule(cgroup_root: Path) -> str:
    cpus = usable_cpus(cgroup_root)
    return f"{threads_for(cpus)} thread(s) for the {cpus} usable CPU(s)"


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    """A ``RuntimeWarning`` the first time this process meets ``message`` (each import of a chapter
    would otherwise repeat it)."""
    if message not in _warned:
        _warned.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


fit_threads()  # on import: every chapter imports this module before it computes anything
