"""vaelib.montecarlo: the seeded generator and the unbiasedness check chapters 7 and 10 share."""

import math

import pytest
import torch

from vaelib.montecarlo import assert_unbiased, generator


def test_generator_is_a_fresh_stream_per_call_and_leaves_the_global_seed_alone():
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a = torch.randn(5, generator=generator(3))
    b = torch.randn(5, generator=generator(3))
    reference = torch.randn(5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(a, reference)
    assert not torch.equal(a, torch.randn(5, generator=generator(4)))
    assert torch.equal(torch.get_rng_state(), before)


def test_assert_unbiased_passes_an_unbiased_mean_and_fails_a_biased_one():
    # The sample mean of K = 10_000 draws of N(1, 2²), per entry of 4: se = 2 / sqrt(K) = 0.02.
    draws = 1.0 + 2.0 * torch.randn(10_000, 4, generator=generator(0), dtype=torch.float64)
    estimate, se = draws.mean(0), draws.std(0) / math.sqrt(draws.shape[0])
    exact = torch.ones(4, dtype=torch.float64)
    z = assert_unbiased(estimate, se, exact, "sample mean")
    assert z == pytest.approx(((estimate - exact) / se).abs().max().item()) and z < 5
    with pytest.raises(AssertionError, match=r"shifted mean: \d+\.\d standard errors"):
        assert_unbiased(estimate + 0.2, se, exact, "shifted mean")  # bias 0.2 = 10 se
    assert assert_unbiased(estimate + 0.2, se, exact, "wide", z_max=100) > 5
