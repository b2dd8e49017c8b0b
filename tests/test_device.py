import random

import numpy as np
import pytest
import torch

from vaelib.device import default_device, derive_seed, seed_everything


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


def test_derive_seed_gives_every_seed_and_index_its_own_seed():
    assert derive_seed(0, 5) == 5 and derive_seed(2, 7) == 2 * 1_000_003 + 7
    seeds = {derive_seed(s, i) for s in range(20) for i in range(1000)}
    assert len(seeds) == 20 * 1000
