import os
import random
import warnings

import numpy as np
import pytest
import torch

from vaelib.device import (MAX_THREADS, available_devices, check_device, default_device,
                           derive_seed, fit_threads, seed_everything, threads_for, usable_cpus)


def test_default_device_is_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.delenv("VAELIB_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert default_device().type == expected


def test_default_device_prefers_cuda(monkeypatch):
    monkeypatch.delenv("VAELIB_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == torch.device("cuda")


def test_default_device_override(monkeypatch):
    monkeypatch.setenv("VAELIB_DEVICE", "cpu")
    assert default_device() == torch.device("cpu")
    monkeypatch.setenv("VAELIB_DEVICE", "not-a-device")
    with pytest.raises(ValueError, match="VAELIB_DEVICE"):
        default_device()


def test_seed_everything_makes_python_numpy_and_torch_repeat():
    def draw():
        return random.random(), np.random.rand(), torch.rand(3)

    g1 = seed_everything(123)
    first = draw()
    a = torch.rand(2, generator=g1)
    g2 = seed_everything(123)
    second = draw()
    b = torch.rand(2, generator=g2)
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2]) and torch.equal(a, b)
    seed_everything(124)
    assert draw()[0] != first[0]


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "1", True])
def test_seed_everything_rejects_bad_seeds(bad):
    with pytest.raises((TypeError, ValueError)):
        seed_everything(bad)


def test_check_device_accepts_what_is_present():
    assert check_device("cpu") == torch.device("cpu")
    assert check_device(torch.device("cpu")) == torch.device("cpu")
    assert "cpu" in available_devices()
    if torch.cuda.is_available():
        assert check_device("cuda").type == "cuda" and "cuda:0" in available_devices()


@pytest.mark.parametrize("asked", ["cuda", "cuda:0", torch.device("cuda", 3)])
def test_check_device_says_what_was_asked_and_what_is_there(monkeypatch, asked):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"device 'cuda.*' was asked for, .* available here: cpu"):
        check_device(asked)


def test_check_device_rejects_names_that_are_no_device():
    with pytest.raises(ValueError, match=r"'nonsense' is not a device.*cpu"):
        check_device("nonsense")
    with pytest.raises(TypeError, match="device must be"):
        check_device(3.5)


def test_derive_seed_gives_every_seed_and_index_its_own_seed():
    assert derive_seed(0, 5) == 5 and derive_seed(2, 7) == 2 * 1_000_003 + 7
    seeds = {derive_seed(s, i) for s in range(20) for i in range(1000)}
    assert len(seeds) == 20 * 1000


# --- threads that fit the machine --------------------------------------------------------------

@pytest.fixture
def affinity(monkeypatch):
    """Pretend this process may run on ``n`` CPUs (what ``taskset`` or a container would allow)."""
    def set_cpus(n):
        monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(n)))
    return set_cpus


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def cgroup_v2(root, text):
    (root / "cpu.max").write_text(text)
    return root


def cgroup_v1(root, quota, period="100000"):
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return root


def test_usable_cpus_is_the_affinity_without_a_quota(tmp_path, affinity):
    affinity(6)
    assert usable_cpus(tmp_path) == 6  # an empty cgroup folder: no quota
    assert usable_cpus(cgroup_v2(tmp_path, "max 100000\n")) == 6


@pytest.mark.parametrize("text, expected", [
    ("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1), ("1600000 100000", 6)])
def test_usable_cpus_follows_the_cgroup_v2_quota(tmp_path, affinity, text, expected):
    affinity(6)
    assert usable_cpus(cgroup_v2(tmp_path, text + "\n")) == expected


@pytest.mark.parametrize("quota, expected", [("-1", 8), ("300000", 3), ("25000", 1)])
def test_usable_cpus_follows_the_cgroup_v1_quota(tmp_path, affinity, quota, expected):
    affinity(8)
    assert usable_cpus(cgroup_v1(tmp_path, quota)) == expected


def test_usable_cpus_ignores_an_unreadable_quota(tmp_path, affinity):
    affinity(4)
    assert usable_cpus(cgroup_v2(tmp_path, "garbage 100000")) == 4


def test_threads_for_is_half_the_cpus_between_one_and_the_cap():
    assert [threads_for(n) for n in (1, 2, 3, 4, 6)] == [1, 1, 1, 2, 3]
    assert threads_for(64) == MAX_THREADS


def test_fit_threads_sets_torch_from_the_quota(tmp_path, affinity, keep_threads):
    affinity(16)
    assert fit_threads({}, cgroup_v2(tmp_path, "200000 100000")) == 1  # a 2-CPU JupyterHub pod
    assert torch.get_num_threads() == 1
    assert fit_threads({}, tmp_path / "none") == MAX_THREADS
    assert torch.get_num_threads() == MAX_THREADS


def test_environment_overrides_the_rule(tmp_path, affinity, keep_threads):
    affinity(2)
    assert fit_threads({"OMP_NUM_THREADS": "2"}, tmp_path) == 2
    assert torch.get_num_threads() == 2
    assert fit_threads({"OMP_NUM_THREADS": "3,1"}, tmp_path) == 3
    assert fit_threads({"OMP_NUM_THREADS": "2", "VAELIB_THREADS": "1"}, tmp_path) == 1
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("bad", ["0", "-2", "two", "1.5"])
def test_bad_thread_counts_are_refused_by_name(tmp_path, keep_threads, bad):
    with pytest.raises(ValueError, match="VAELIB_THREADS"):
        fit_threads({"VAELIB_THREADS": bad}, tmp_path)


@pytest.mark.slow  # fresh Python processes importing torch
def test_importing_vaelib_fits_the_threads(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "VAELIB_THREADS")}
    code = ("import torch, vaelib.device as d; "
            "print(torch.get_num_threads(), d.threads_for(d.usable_cpus()))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == out[1]
    env["VAELIB_THREADS"] = "3"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[0] == "3"


@pytest.fixture
def fresh_warnings(monkeypatch):
    """Each test sees the once-per-process warnings afresh."""
    import vaelib.device
    monkeypatch.setattr(vaelib.device, "_warned", set())


def test_more_threads_than_cpus_is_taken_with_one_warning(tmp_path, affinity, keep_threads,
                                                          fresh_warnings):
    affinity(2)
    with pytest.warns(RuntimeWarning, match=r"VAELIB_THREADS=1000 .* the 2 CPU\(s\)") as record:
        assert fit_threads({"VAELIB_THREADS": "1000"}, tmp_path) == 1000
        assert fit_threads({"VAELIB_THREADS": "1000"}, tmp_path) == 1000  # once, not twice
    assert len(record) == 1 and "VAELIB_THREADS=1" in str(record[0].message)  # what fits
    assert torch.get_num_threads() == 1000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fit_threads({"VAELIB_THREADS": "2"}, tmp_path) == 2  # as many as CPUs: quiet


@pytest.mark.parametrize("bad", ["garbage", "0", "-2", "1.5", ","])
def test_a_bad_omp_num_threads_is_warned_about_and_the_rule_used(tmp_path, affinity,
                                                                 keep_threads, fresh_warnings,
                                                                 bad):
    affinity(8)
    with pytest.warns(RuntimeWarning, match="OMP_NUM_THREADS") as record:
        assert fit_threads({"OMP_NUM_THREADS": bad}, tmp_path) == threads_for(8)
        assert fit_threads({"OMP_NUM_THREADS": bad}, tmp_path) == threads_for(8)
    assert len(record) == 1
    assert f"{threads_for(8)} thread(s) for the 8 usable CPU(s)" in str(record[0].message)
    # VAELIB_THREADS still wins over it, without a word about the other
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fit_threads({"OMP_NUM_THREADS": bad, "VAELIB_THREADS": "1"}, tmp_path) == 1


@pytest.mark.slow  # fresh Python processes importing torch
def test_importing_vaelib_survives_a_bad_omp_num_threads():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "VAELIB_THREADS"}
    env["OMP_NUM_THREADS"] = "garbage"
    code = ("import torch, vaelib, vaelib.device as d; "
            "print(torch.get_num_threads(), d.threads_for(d.usable_cpus()))")
    done = subprocess.run([sys.executable, "-W", "default", "-c", code], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = done.stdout.split()
    assert out[0] == out[1]
    assert done.stderr.count("RuntimeWarning: OMP_NUM_THREADS='garbage'") == 1
