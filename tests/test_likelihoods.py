"""vaelib.likelihoods: each p(x|z) against torch.distributions, and the choice by name."""

import math

import pytest
import torch
from torch.distributions import Bernoulli as TorchBernoulli
from torch.distributions import Normal

from vaelib.likelihoods import LIKELIHOODS, Bernoulli, Gaussian, get_likelihood


def test_bernoulli_against_torch_distributions():
    g = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(4, 5, 7, generator=g)  # (K, N, D)
    x = torch.rand(5, 7, generator=g).round()  # (N, D) binary
    want = TorchBernoulli(logits=logits).log_prob(x.expand_as(logits)).sum(-1)
    torch.testing.assert_close(Bernoulli().log_prob(x, logits), want)
    torch.testing.assert_close(Bernoulli().mean(logits), torch.sigmoid(logits))
    p = torch.tensor([0.2, 0.5, 0.9])
    torch.testing.assert_close(torch.sigmoid(Bernoulli().output_bias(p)), p)


def test_gaussian_against_torch_distributions():
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(3, 5, 7, generator=g)
    x = torch.randn(5, 7, generator=g)
    log_std = 0.3 * torch.randn(7, generator=g)
    want = Normal(mean, log_std.exp()).log_prob(x).sum(-1)
    torch.testing.assert_close(Gaussian().log_prob(x, mean, log_std), want)
    shared = torch.tensor(math.log(0.5))
    torch.testing.assert_close(Gaussian().log_prob(x, mean, shared),
                               Normal(mean, 0.5).log_prob(x).sum(-1))
    assert Gaussian().mean(mean) is mean and Gaussian().output_bias(x) is x
    # its default log_std=None is s = 1
    torch.testing.assert_close(Gaussian().log_prob(x, mean), Normal(mean, 1.0).log_prob(x).sum(-1))


def test_choice_by_name():
    assert set(LIKELIHOODS) == {"bernoulli", "gaussian"}
    assert get_likelihood("bernoulli").binary_data and not get_likelihood("gaussian").binary_data
    assert get_likelihood("gaussian").has_std and not get_likelihood("bernoulli").has_std
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'.*'bernoulli'.*'gaussian'"):
        get_likelihood("poisson")
