"""Tests for vaelib.gradients: score-function and pathwise estimators of ∇ E_q[f(z)].

References are independent of the code under test: closed-form gradients of Gaussian expectations
(E[Σ z²] = Σ (μ² + σ²), E[a·z] = a·μ, E[exp(a·z)] = exp(a·μ + ½ Σ a² σ²), E[1{z₁ > 0}] = Φ(μ₁/σ₁)
with SciPy's normal pdf), closed-form variances, autograd through torch.distributions.Normal, and
autograd through DiagonalGaussian.rsample.

Monte Carlo tolerances: every seed is fixed (so nothing can flake) *and* the tolerance is a
confidence interval, |mean - exact| <= 5 standard errors per entry (a false alarm would have
probability < 1e-6 per entry even with a random seed), with enough samples that a factor-2, sign or
σ-for-σ² slip lies many standard errors away (checked in test_tolerance_catches_typical_bugs).
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from vaelib.gaussian import DiagonalGaussian
from vaelib.gradients import GradientSamples, pathwise_gradient, score_function_gradient

DT = torch.float64
Z_MAX = 5.0  # standard errors allowed between a Monte Carlo mean and the exact value


def _params() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of 4 settings of (μ, log σ²) in d = 3, and a direction a for the linear/exp tests."""
    g = torch.Generator().manual_seed(123)
    mu = torch.empty(4, 3, dtype=DT).uniform_(-1.5, 1.5, generator=g)
    logvar = torch.empty(4, 3, dtype=DT).uniform_(-1.0, 1.0, generator=g)
    a = torch.tensor([0.4, -0.3, 0.2], dtype=DT)
    return mu, logvar, a


# Closed forms: f, and the gradient of E_q[f] with respect to (μ, log σ²), derived by hand.
def _quadratic():
    f = lambda z: z.square().sum(dim=-1)  # noqa: E731
    # E[Σ z²] = Σ (μ² + σ²):  ∇_μ = 2μ,  ∇_{log σ²} = σ² (dσ²/dlog σ² = σ²)
    exact = lambda mu, logvar: (2 * mu, logvar.exp())  # noqa: E731
    return f, exact


def _linear(a):
    f = lambda z: (z * a).sum(dim=-1) + 3.0  # noqa: E731
    exact = lambda mu, logvar: (a.expand_as(mu), torch.zeros_like(logvar))  # noqa: E731
    return f, exact


def _exponential(a):
    f = lambda z: torch.exp((z * a).sum(dim=-1))  # noqa: E731

    def exact(mu, logvar):
        # E[exp(a·z)] = exp(a·μ + ½ Σ a² σ²): ∇_μ = a E, ∇_{log σ²} = ½ a² σ² E
        value = torch.exp((a * mu).sum(-1, keepdim=True) + 0.5 * (a.square() * logvar.exp()).sum(
            -1, keepdim=True))
        return a * value, 0.5 * a.square() * logvar.exp() * value

    return f, exact


def _cases():
    _, _, a = _params()
    return {"quadratic": _quadratic(), "linear": _linear(a), "exp": _exponential(a)}


def assert_unbiased(samples: GradientSamples, exact: tuple[torch.Tensor, torch.Tensor]) -> None:
    """|K-sample mean - exact| <= Z_MAX standard errors, entry by entry (zero variance: exact)."""
    for mean, se, want, name in zip(samples.mean(), samples.std_error(), exact, ("mu", "logvar")):
        err = (mean - want).abs()
        bound = Z_MAX * se + 1e-10
        assert bool((err <= bound).all()), f"{name}: error {err} exceeds {Z_MAX} s.e. {bound}"


ESTIMATORS = {
    "score": lambda f, mu, lv, k, g: score_function_gradient(f, mu, lv, k, generator=g),
    "score_const_baseline": lambda f, mu, lv, k, g: score_function_gradient(
        f, mu, lv, k, generator=g, baseline=1.5),
    "score_leave_one_out": lambda f, mu, lv, k, g: score_function_gradient(
        f, mu, lv, k, generator=g, baseline="leave_one_out"),
    "pathwise": lambda f, mu, lv, k, g: pathwise_gradient(f, mu, lv, k, generator=g),
}


@pytest.mark.parametrize("case", ["quadratic", "linear", "exp"])
@pytest.mark.parametrize("estimator", list(ESTIMATORS))
def test_unbiased_against_closed_form(case, estimator):
    mu, logvar, _ = _params()
    f, exact = _cases()[case]
    g = torch.Generator().manual_seed(7)
    samples = ESTIMATORS[estimator](f, mu, logvar, 100_000, g)
    assert samples.grad_mean.shape == samples.grad_logvar.shape == (100_000, 4, 3)
    assert_unbiased(samples, exact(mu, logvar))


@pytest.mark.parametrize("case", ["quadratic", "exp"])
def test_closed_forms_match_autograd_of_expectation(case):
    """The hand-derived gradients used above are those of the closed-form expectations."""
    mu, logvar, a = _params()
    mu, logvar = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
    if case == "quadratic":
        value = (mu.square() + logvar.exp()).sum()
    else:
        value = torch.exp((a * mu).sum(-1) + 0.5 * (a.square() * logvar.exp()).sum(-1)).sum()
    grad_mu, grad_logvar = torch.autograd.grad(value, (mu, logvar))
    want_mu, want_logvar = _cases()[case][1](mu.detach(), logvar.detach())
    torch.testing.assert_close(grad_mu, want_mu, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_logvar, want_logvar, rtol=1e-12, atol=1e-12)


def test_tolerance_catches_typical_bugs():
    """The 5-s.e. criterion has power: typical slips are rejected at the sample sizes used."""
    mu, logvar, _ = _params()
    f, exact = _quadratic()
    want = exact(mu, logvar)
    for estimator in ("score", "pathwise"):
        s = ESTIMATORS[estimator](f, mu, logvar, 100_000, torch.Generator().manual_seed(7))
        assert_unbiased(s, want)
        std = (0.5 * logvar).exp()
        slips = [
            GradientSamples(s.grad_mean, 2 * s.grad_logvar),  # forgot the ½ of d σ / d log σ²
            GradientSamples(-s.grad_mean, s.grad_logvar),  # sign
            GradientSamples(s.grad_mean * std, s.grad_logvar),  # score eps instead of eps / σ
            GradientSamples(s.grad_mean, s.grad_logvar * std),  # σ² where σ belongs
        ]
        for slip in slips:
            with pytest.raises(AssertionError):
                assert_unbiased(slip, want)


def test_step_function_score_function_only():
    """f = 1{z₁ > 0} is not differentiable: E = Φ(μ₁/σ₁), ∇_μ₁ = φ(μ₁/σ₁)/σ₁,
    ∇_{log σ₁²} = -½ φ(μ₁/σ₁) μ₁/σ₁. The score function gets it; the pathwise estimator refuses."""
    mu, logvar, _ = _params()
    f = lambda z: (z[..., 0] > 0).to(z.dtype)  # noqa: E731
    s = score_function_gradient(f, mu, logvar, 100_000, generator=torch.Generator().manual_seed(3),
                                baseline=0.5)
    std = (0.5 * logvar).exp()
    t = (mu[:, 0] / std[:, 0]).numpy()
    pdf = torch.as_tensor(stats.norm.pdf(t), dtype=DT)
    want_mu, want_logvar = torch.zeros_like(mu), torch.zeros_like(logvar)
    want_mu[:, 0] = pdf / std[:, 0]
    want_logvar[:, 0] = -0.5 * pdf * mu[:, 0] / std[:, 0]
    assert_unbiased(s, (want_mu, want_logvar))
    with pytest.raises(ValueError, match="differentiabl"):
        pathwise_gradient(f, mu, logvar, 10)


def test_pathwise_mean_equals_autograd_through_rsample():
    mu, logvar, a = _params()
    f = _exponential(a)[0]
    samples = pathwise_gradient(f, mu, logvar, 50, generator=torch.Generator().manual_seed(11))
    mu_, logvar_ = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
    z = DiagonalGaussian(mu_, logvar_).rsample(50, generator=torch.Generator().manual_seed(11))
    grads = torch.autograd.grad(f(z).mean(dim=0).sum(), (mu_, logvar_))
    for got, want in zip(samples.mean(), grads):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_score_per_sample_equals_autograd_of_torch_normal_log_prob():
    """ĝ_k = (f(z_k) - b) ∇ log q(z_k), with ∇ log q from autograd through torch.distributions."""
    mu, logvar, _ = _params()
    f = _quadratic()[0]
    num_samples, baseline = 6, 0.7
    samples = score_function_gradient(f, mu, logvar, num_samples,
                                      generator=torch.Generator().manual_seed(5), baseline=baseline)
    z = DiagonalGaussian(mu, logvar).sample(num_samples, generator=torch.Generator().manual_seed(5))
    for k in range(num_samples):
        mu_, logvar_ = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
        normal = torch.distributions.Normal(mu_, (0.5 * logvar_).exp())
        log_q = normal.log_prob(z[k]).sum(-1)  # (N,)
        score_mu, score_logvar = torch.autograd.grad(log_q.sum(), (mu_, logvar_))
        weight = (f(z[k]) - baseline).unsqueeze(-1)
        torch.testing.assert_close(samples.grad_mean[k], weight * score_mu, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(samples.grad_logvar[k], weight * score_logvar, rtol=1e-10,
                                   atol=1e-12)


def _variance_ci(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample variance over dim 0 and its standard error sqrt((m4 - s⁴)/K)."""
    centred = x - x.mean(0)
    var = centred.square().mean(0)
    m4 = centred.pow(4).mean(0)
    return var, ((m4 - var.square()) / x.shape[0]).sqrt()


def test_variances_match_closed_forms():
    """f = Σ z²: pathwise Var ĝ_μ = 4σ², Var ĝ_logvar = μ²σ² + 2σ⁴; score-function
    Var ĝ_μj = [μ⁴ + 18μ²σ² + 15σ⁴ + 2E[R](μ² + 3σ²) + E[R²]]/σ² - 4μ², R = Σ_{i≠j} z_i²."""
    mu, logvar, _ = _params()
    f = _quadratic()[0]
    var_ = logvar.exp()
    path = pathwise_gradient(f, mu, logvar, 200_000, generator=torch.Generator().manual_seed(1))
    for x, want in ((path.grad_mean, 4 * var_),
                    (path.grad_logvar, mu.square() * var_ + 2 * var_.square())):
        got, se = _variance_ci(x)
        assert bool(((got - want).abs() <= Z_MAX * se).all())
    score = score_function_gradient(f, mu, logvar, 200_000,
                                    generator=torch.Generator().manual_seed(2))
    m2 = mu.square() + var_  # E[z_i²]
    var_zsq = 4 * mu.square() * var_ + 2 * var_.square()  # Var[z_i²]
    mean_r = m2.sum(-1, keepdim=True) - m2
    second_r = (var_zsq.sum(-1, keepdim=True) - var_zsq) + mean_r.square()
    moment = (mu.pow(4) + 18 * mu.square() * var_ + 15 * var_.square()
              + 2 * mean_r * (mu.square() + 3 * var_) + second_r) / var_
    got, se = _variance_ci(score.grad_mean)
    assert bool(((got - (moment - 4 * mu.square())).abs() <= Z_MAX * se).all())
    # and the pathwise estimator is the better one here, in every coordinate
    assert bool((4 * var_ < moment - 4 * mu.square()).all())


def test_linear_f_pathwise_mu_gradient_has_zero_variance():
    mu, logvar, a = _params()
    s = pathwise_gradient(_linear(a)[0], mu, logvar, 20, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(s.grad_mean, a.expand(20, 4, 3), rtol=0, atol=1e-14)


def test_baselines_reduce_variance_far_from_zero():
    """With f ≈ 20 on average, centring f cuts the score-function variance many times over."""
    mu = torch.full((1, 5), 2.0, dtype=DT)
    logvar = torch.zeros(1, 5, dtype=DT)
    f = _quadratic()[0]
    expected_f = float((mu.square() + logvar.exp()).sum())  # 25
    var = {}
    for name, baseline in (("none", None), ("const", expected_f), ("loo", "leave_one_out")):
        s = score_function_gradient(f, mu, logvar, 20_000,
                                    generator=torch.Generator().manual_seed(4), baseline=baseline)
        var[name] = float(s.grad_mean.var(0).mean())
    assert var["const"] < var["none"] / 5
    assert var["loo"] < var["none"] / 5


def test_dtype_device_reproducibility_and_no_graph():
    mu = torch.tensor([[0.3, -0.2]], requires_grad=True)  # float32, part of a caller's graph
    logvar = torch.tensor([[0.1, 0.4]], requires_grad=True)
    f = _quadratic()[0]
    for estimator in (score_function_gradient, pathwise_gradient):
        s1 = estimator(f, mu, logvar, 8, generator=torch.Generator().manual_seed(9))
        s2 = estimator(f, mu, logvar, 8, generator=torch.Generator().manual_seed(9))
        assert s1.grad_mean.dtype == s1.grad_logvar.dtype == torch.float32
        assert s1.grad_mean.device == mu.device
        assert not s1.grad_mean.requires_grad and not s1.grad_logvar.requires_grad
        torch.testing.assert_close(s1.grad_mean, s2.grad_mean, rtol=0, atol=0)
        grad_mu, grad_logvar = s1  # unpacks like a tuple
        assert grad_mu.shape == grad_logvar.shape == (8, 1, 2)
    assert mu.grad is None and logvar.grad is None
    with torch.no_grad():  # the pathwise estimator works inside no_grad too
        s = pathwise_gradient(f, mu, logvar, 8, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(s.grad_mean, s1.grad_mean)


def test_unbatched_mu_of_shape_d():
    mu, logvar = torch.tensor([1.0, -1.0], dtype=DT), torch.zeros(2, dtype=DT)
    s = pathwise_gradient(_quadratic()[0], mu, logvar, 1000,
                          generator=torch.Generator().manual_seed(0))
    assert s.grad_mean.shape == (1000, 2)
    assert_unbiased(s, (2 * mu, logvar.exp()))


@pytest.mark.gpu
def test_cuda_follows_inputs():
    mu, logvar = torch.zeros(3, 2, device="cuda"), torch.zeros(3, 2, device="cuda")
    for estimator in (score_function_gradient, pathwise_gradient):
        s = estimator(_quadratic()[0], mu, logvar, 4)
        assert s.grad_mean.device.type == "cuda" and s.grad_logvar.device.type == "cuda"


def test_std_error_values_and_needs_two_samples():
    s = GradientSamples(torch.tensor([[1.0], [3.0]], dtype=DT),
                        torch.tensor([[0.0], [4.0]], dtype=DT))
    se_mu, se_logvar = s.std_error()  # sample std (Bessel) / sqrt(K): √2/√2 and √8/√2
    assert math.isclose(float(se_mu), 1.0) and math.isclose(float(se_logvar), 2.0)
    with pytest.raises(ValueError, match="at least 2"):
        GradientSamples(torch.ones(1, 1), torch.ones(1, 1)).std_error()


@pytest.mark.parametrize("estimator", [score_function_gradient, pathwise_gradient])
def test_bad_input(estimator):
    mu, logvar = torch.zeros(2, 3, dtype=DT), torch.zeros(2, 3, dtype=DT)
    f = _quadratic()[0]
    with pytest.raises(TypeError, match="function of z"):
        estimator("z**2", mu, logvar, 4)
    with pytest.raises(TypeError, match="torch.Tensor"):
        estimator(f, [0.0, 0.0], logvar, 4)
    with pytest.raises(TypeError, match="floating-point"):
        estimator(f, torch.zeros(2, 3, dtype=torch.int64), logvar, 4)
    with pytest.raises(ValueError, match="same shape"):
        estimator(f, mu, torch.zeros(2, 2, dtype=DT), 4)
    with pytest.raises(ValueError, match="NaN"):
        estimator(f, mu, torch.full((2, 3), float("nan"), dtype=DT), 4)
    with pytest.raises(ValueError, match="at least 1"):
        estimator(f, mu, logvar, 0)
    with pytest.raises(TypeError, match="int"):
        estimator(f, mu, logvar, 2.5)
    with pytest.raises(ValueError, match="one value per sample"):
        estimator(lambda z: z.square(), mu, logvar, 4)  # forgot the sum over d
    with pytest.raises(TypeError, match="floating-point torch.Tensor"):
        estimator(lambda z: z.square().sum(-1).detach().numpy(), mu, logvar, 4)
    with pytest.raises(ValueError, match="NaN or infinite"):
        estimator(lambda z: z.sum(-1) / 0.0, mu, logvar, 4)


def test_bad_baseline():
    mu, logvar = torch.zeros(2, 3, dtype=DT), torch.zeros(2, 3, dtype=DT)
    f = _quadratic()[0]
    with pytest.raises(ValueError, match="leave_one_out"):
        score_function_gradient(f, mu, logvar, 4, baseline="mean")
    with pytest.raises(ValueError, match="num_samples >= 2"):
        score_function_gradient(f, mu, logvar, 1, baseline="leave_one_out")
    with pytest.raises(ValueError, match="batch shape"):
        score_function_gradient(f, mu, logvar, 4, baseline=torch.zeros(4, 2, dtype=DT))
    # one baseline per batch entry is fine
    s = score_function_gradient(f, mu, logvar, 4, baseline=torch.ones(2, dtype=DT))
    assert s.grad_mean.shape == (4, 2, 3)


def test_leave_one_out_unbiased_with_two_samples():
    """With K = 2 the baseline of each sample is the other sample's f: still unbiased (a baseline
    that included f(z_k) itself would halve the estimate). 100 000 independent pairs, as a batch."""
    mu, logvar, _ = _params()
    f = _quadratic()[0]
    replicas = 100_000
    s = score_function_gradient(f, mu.expand(replicas, 4, 3), logvar.expand(replicas, 4, 3), 2,
                                generator=torch.Generator().manual_seed(8),
                                baseline="leave_one_out")
    # (replicas, 4, 3): i.i.d. K=2 means
    pairs = GradientSamples(s.grad_mean.mean(0), s.grad_logvar.mean(0))
    assert_unbiased(pairs, _quadratic()[1](mu, logvar))
