# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,slideshow,-all
#     notebook_metadata_filter: kernelspec,jupytext.cell_metadata_filter,jupytext.notebook_metadata_filter,-all
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] slideshow={"slide_type": "slide"}
# # Chapter 2 — Naive Monte Carlo
#
# *Symbols: see the course's [notation page](../docs/notation.md).*
#
# Chapter 1 wrote the marginal likelihood as an expectation over the prior,
#
# $$p(x) = \int p(x \mid z)\, p(z)\, dz = \mathbb E_{z \sim p(z)}\big[p(x \mid z)\big],$$
#
# and an expectation can be estimated by an average over samples. This is the simplest estimator
# of $p(x)$ there is, it is unbiased, and it works for any decoder. This chapter shows why it is
# still useless for a VAE: the number of samples it needs **grows exponentially with the latent
# dimension**, because almost every code drawn from the prior explains $x$ badly.
#
# In this chapter you will
#
# 1. write the estimator and show it is unbiased, with relative variance
#    $\operatorname{Var}[\hat p_K]/p(x)^2 = \rho(x)/K$;
# 2. compute it in log space with the **log-sum-exp trick**, after watching the naive computation
#    return $-\infty$;
# 3. watch it converge to the exact $\log p(x)$ of the linear-Gaussian model;
# 4. measure how its error and the samples it needs grow with the latent dimension $d$, fit the
#    exponential rate, and explain it.

# %% slideshow={"slide_type": "skip"} tags=["colab-setup"]
# On Google Colab only (elsewhere this cell does nothing): fetch the course, make `vaelib`
# importable in this kernel (Colab has torch and vaelib's other needs) and work in its chapters/.
import os
import shutil
import subprocess
import sys
import tempfile

if "google.colab" in sys.modules and not os.path.isdir("../vaelib"):
    course = os.path.abspath("vae-course")
    if os.path.isdir(course) and not os.listdir(course):
        os.rmdir(course)  # empty, left by an interrupted download: download it again below
    if not os.path.isdir(course):
        url = os.environ.get("VAE_COURSE_REPO", "https://github.com/vae-course/vae-course")
        download = tempfile.mkdtemp(prefix=".vae-course-", dir=".")  # renamed once complete
        clone = subprocess.run(["git", "clone", "--depth", "1", "--quiet", url, download],
                               capture_output=True, text=True)
        if clone.returncode != 0:
            shutil.rmtree(download, ignore_errors=True)  # this cell's own, just made
            said = " ".join(clone.stderr.split())  # git's message, on one line
            raise RuntimeError(
                f"Could not download the course from {url} (git: {said}). "
                "Check the internet connection and the address; to use another copy, set "
                "VAE_COURSE_REPO to its git URL. Then run this cell again.")
        os.rename(download, course)
    if not os.path.isdir(os.path.join(course, "chapters")):
        raise RuntimeError(
            f"{course} exists but holds no chapters/ (an interrupted download?). Move anything "
            "of yours out of it, delete it (!rm -r vae-course) and run this cell again.")
    sys.path.insert(0, course)
    os.chdir(os.path.join(course, "chapters"))

# %%
# %matplotlib inline
import math

import matplotlib.pyplot as plt
import numpy as np
import torch
from ipywidgets import IntSlider, SelectionSlider
from matplotlib.patches import Ellipse

from vaelib.device import seed_everything
from vaelib.estimators import log_mean_exp, naive_mc_log_marginal
from vaelib.figures import COLORS, FigureExplorer, reference_line, static_figure, use_course_style
from vaelib.toy import LinearGaussian

use_course_style()
generator = seed_everything(0)
torch.set_default_dtype(torch.float64)  # exact math: float64 throughout this chapter
LOG_2PI = math.log(2 * math.pi)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The estimator
#
# Draw $K$ codes from the prior and average the likelihoods:
#
# $$
# \hat p_K(x) = \frac1K \sum_{k=1}^K p(x \mid z_k), \qquad z_1, \dots, z_K
# \overset{\text{iid}}{\sim} p(z).
# $$
#
# **Unbiased.** Each term has expectation $\mathbb E_{p(z)}[p(x \mid z)] = p(x)$, so
# $\mathbb E[\hat p_K(x)] = p(x)$.
#
# **Variance.** The terms are independent, so
# $\operatorname{Var}[\hat p_K(x)] = \frac1K \operatorname{Var}_{p(z)}[p(x \mid z)]$. Divided by
# $p(x)^2$ this is the squared **relative error**
#
# $$
# \frac{\operatorname{Var}[\hat p_K(x)]}{p(x)^2} = \frac{\rho(x)}{K}, \qquad
# \rho(x) = \operatorname{Var}_{p(z)}\big[w(z)\big] = \mathbb E_{p(z)}\big[w(z)^2\big] - 1, \qquad
# w(z) = \frac{p(x \mid z)}{p(x)} .
# $$
#
# The relative error falls like $\sqrt{\rho(x)/K}$, and $K \approx \rho(x)/\varepsilon^2$ samples
# give a relative error $\varepsilon$. Everything hinges on $\rho(x)$, the relative variance of a
# *single* sample. We will compute it exactly for the linear-Gaussian model and watch it explode.
#
# The estimator, written from the equation (in probability space, for now):

# %%
def naive_estimate(model, x, num_samples, generator=None):
    """p̂_K(x) = (1/K) Σ_k p(x|z_k), z_k ~ p(z): x (N, D) -> (N,)."""
    z = model.sample_prior(num_samples, num_points=x.shape[0], generator=generator)  # (K, N, d)
    likelihoods = model.log_likelihood(x, z).exp()  # p(x|z_k), (K, N)
    return likelihoods.mean(dim=0)


# A linear-Gaussian model (chapter 1) with D = 5, d = 2, where p(x) is known exactly.
model = LinearGaussian.random(data_dim=5, latent_dim=2, noise_std=0.5,
                              generator=torch.Generator().manual_seed(3))
x_obs, _ = model.sample(3, generator=generator)  # (3, 5): three observed points
p_exact = model.log_marginal(x_obs).exp()

num_samples = 100_000
p_hat = naive_estimate(model, x_obs, num_samples, generator=generator)
print("exact p(x):   ", p_exact.numpy())
print("naive, K=1e5: ", p_hat.numpy())

# %% [markdown]
# How close should they be? We can estimate the standard error from the same samples,
# $\operatorname{sd}(p(x \mid z_k))/\sqrt K$, and require the estimate within 5 of them (a 1 in
# 1.7 million event for a Gaussian error, so this check does not flake).

# %%
z = model.sample_prior(num_samples, num_points=3, generator=generator)  # (K, 3, 2)
likelihoods = model.log_likelihood(x_obs, z).exp()  # (K, 3)
standard_error = likelihoods.std(dim=0) / math.sqrt(num_samples)
assert ((likelihoods.mean(dim=0) - p_exact).abs() < 5 * standard_error).all()
print("relative standard errors:", (standard_error / p_exact).numpy().round(4))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The log-sum-exp trick
#
# Now take data the size of an MNIST image, $D = 784$, with noise $s = 1$. Even for the *best*
# code, $\log p(x \mid z) \approx -\frac D2 \log 2\pi s^2 - \frac{D}{2} \approx -1100$, and
# $e^{-1100}$ is far below the smallest positive float64 ($\approx 4.9 \times 10^{-324} =
# e^{-744.4}$). Every `exp` underflows to 0, the average is 0, and its log is $-\infty$:

# %%
big = LinearGaussian.random(data_dim=784, latent_dim=1, noise_std=1.0,
                            generator=torch.Generator().manual_seed(1))
x_big, _ = big.sample(3, generator=generator)  # (3, 784)
log_lik_big = big.log_likelihood(x_big, big.sample_prior(10_000, num_points=3, generator=generator))

naive_log = torch.log(torch.exp(log_lik_big).mean(dim=0))  # exp, average, log
print("largest log p(x|z_k) per point:", log_lik_big.max(dim=0).values.numpy().round(1))
print("log of the average, computed naively:", naive_log.numpy())
assert torch.isinf(naive_log).all()
assert torch.exp(torch.tensor(-750.0)) == 0 and torch.exp(torch.tensor(-700.0)) > 0  # float64
assert torch.exp(torch.tensor(-104.0, dtype=torch.float32)) == 0  # float32 gives up even sooner

# %% [markdown]
# The fix: take out the largest term before exponentiating. With $m = \max_k a_k$,
#
# $$
# \log \frac1K \sum_{k=1}^K e^{a_k}
# = \log\Big( e^{m} \cdot \frac1K \sum_{k=1}^K e^{a_k - m} \Big)
# = m + \log \sum_{k=1}^K e^{a_k - m} - \log K .
# $$
#
# Every $e^{a_k - m} \le 1$ (no overflow) and the largest one equals 1, so the sum is between 1 and
# $K$ and its log is between 0 and $\log K$ (no underflow). That is `torch.logsumexp`, minus
# $\log K$ for the *mean*:

# %% tags=["answer"]
def my_log_mean_exp(a, dim=0):
    """log (1/K) Σ_k exp(a_k) = m + log Σ_k exp(a_k - m) - log K, m = max_k a_k."""
    m = a.max(dim=dim, keepdim=True).values
    return (m + (a - m).exp().sum(dim=dim, keepdim=True).log()).squeeze(dim) - math.log(
        a.shape[dim]
    )


stable_log = my_log_mean_exp(log_lik_big, dim=0)
exact_big = big.log_marginal(x_big)
print("stable log-mean-exp:", stable_log.numpy().round(4))
print("exact log p(x):     ", exact_big.numpy().round(4))
assert torch.isfinite(stable_log).all()

# Against vaelib, on logs far out of exp's range in both directions, and along either dimension.
a = torch.tensor([[1e4, -1e4, 3.0], [1e4 - 1.0, -1e4 - 2.0, -math.inf]])
assert torch.allclose(my_log_mean_exp(a, dim=0), log_mean_exp(a, dim=0), rtol=1e-14, atol=1e-12)
assert torch.allclose(my_log_mean_exp(a, dim=1), log_mean_exp(a, dim=1), rtol=1e-14, atol=1e-12)
assert torch.allclose(
    my_log_mean_exp(log_lik_big, dim=0), log_mean_exp(log_lik_big, dim=0), atol=1e-10
)
# ... and against the definition, where exp does not overflow.
small = torch.randn(50, 4, generator=generator)
assert torch.allclose(my_log_mean_exp(small), small.exp().mean(dim=0).log(), atol=1e-14)
print("log_mean_exp([1e4, 1e4 - 1]) =", log_mean_exp(a[:, 0], dim=0).item())

# %% [markdown]
# The estimate is finite, and it is also *good* here, although the posterior is much narrower than
# the prior: with $d = 1$ a small but steady fraction of the prior samples still lands where the
# posterior has its mass, and $K$ in the thousands collects enough of them. (In $d$ dimensions that
# fraction shrinks geometrically: sections 4 and 5.) How good it should be follows from section 1:
# the error of $\hat p_K$ relative to $p(x)$ has standard deviation $\sqrt{\rho(x)/K}$, and section
# 3 computes $\rho(x)$ exactly (the helper `relative_variance` below).
# `vaelib.estimators.naive_mc_log_marginal` is the same estimator: given the same random numbers it
# returns exactly our value.

# %%
def relative_variance(model, x):
    """ρ(x) = E_p(z)[p(x|z)²] / p(x)² - 1 for a LinearGaussian (derived in section 3): (N, D) ->
    (N,).
    """
    s2, D = model.noise_std**2, model.data_dim
    C_half = model.W @ model.W.T + 0.5 * s2 * torch.eye(D)  # W Wᵀ + (s²/2) I
    u = x - model.b
    log_normal_half = -0.5 * (D * LOG_2PI + torch.logdet(C_half)
                              + (u * torch.linalg.solve(C_half, u.T).T).sum(-1))
    log_second_moment = -0.5 * D * math.log(4 * math.pi * s2) + log_normal_half  # log E[p(x|z)²]
    return (log_second_moment - 2 * model.log_marginal(x)).exp() - 1


rho_big = relative_variance(big, x_big)
relative_errors = (stable_log - exact_big).exp() - 1  # p̂/p - 1
assert (relative_errors.abs() < 5 * (rho_big / 10_000).sqrt()).all()
print("relative error of p̂:", relative_errors.numpy().round(4), " expected size:",
      (rho_big / 10_000).sqrt().numpy().round(4))

same_seed = [torch.Generator().manual_seed(7) for _ in range(2)]
z_ours = big.sample_prior(10_000, num_points=3, generator=same_seed[0])
ours = my_log_mean_exp(big.log_likelihood(x_big, z_ours), dim=0)
library = naive_mc_log_marginal(big, x_big, 10_000, generator=same_seed[1])
assert torch.allclose(ours, library, rtol=0, atol=1e-10)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Convergence to the exact value
#
# For the linear-Gaussian model $\rho(x)$ has a closed form. Squaring a Gaussian density halves its
# variance, up to a constant:
#
# $$
# p(x \mid z)^2 = \big(2\pi s^2\big)^{-D} e^{-\lVert x - f(z)\rVert^2 / s^2}
# = \big(4\pi s^2\big)^{-D/2}\; \mathcal N\big(x;\, f(z),\, \tfrac{s^2}{2} I\big).
# $$
#
# Averaging over the prior is chapter 1's integral again, with noise variance $s^2/2$ instead of
# $s^2$:
#
# $$
# \mathbb E_{p(z)}\big[p(x \mid z)^2\big] = \big(4\pi s^2\big)^{-D/2}\;
#   \mathcal N\big(x;\, b,\, WW^\top + \tfrac{s^2}{2} I\big),
# \qquad
# \rho(x) = \frac{\mathbb E_{p(z)}[p(x \mid z)^2]}{p(x)^2} - 1 .
# $$
#
# This is the helper `relative_variance` used above. First we check it against a Monte Carlo
# average of $p(x \mid z)^2$ (a million prior samples, 5 standard errors).

# %%
rho = relative_variance(model, x_obs)
z = model.sample_prior(1_000_000, num_points=3, generator=generator)
# w(z)², (K, 3)
w_squared = (2 * (model.log_likelihood(x_obs, z) - model.log_marginal(x_obs))).exp()
rho_mc = w_squared.mean(dim=0) - 1
rho_se = w_squared.std(dim=0) / 1000
assert ((rho_mc - rho).abs() < 5 * rho_se).all()
print("ρ(x) exact:", rho.numpy().round(3), "  Monte Carlo:", rho_mc.numpy().round(3))

# %% [markdown]
# Now the convergence. Left: the running estimate $\log \hat p_K(x)$ as $K$ grows, for eight
# independent runs, with the exact $\log p(x)$ dashed and the band
# $\log p(x) + \log(1 \pm 2\sqrt{\rho/K})$ where 95 % of runs should lie once $K$ is large. Right:
# the root-mean-square relative error over 400 runs, against the prediction $\sqrt{\rho/K}$: a
# straight line of slope $-\frac12$ on log-log axes. The running estimate is computed in log space
# with `torch.logcumsumexp`.

# %%
x_one = x_obs[:1]  # (1, 5)
log_p_one, rho_one = model.log_marginal(x_one).item(), rho[0].item()
num_runs, max_samples = 400, 10_000
z_runs = model.sample_prior(max_samples, num_points=num_runs, generator=generator)  # (K, R, 2)
log_lik_runs = model.log_likelihood(x_one.expand(num_runs, -1), z_runs)  # (K, R)
k_axis = torch.arange(1, max_samples + 1)
running = torch.logcumsumexp(log_lik_runs, dim=0) - k_axis.log()[:, None]  # log p̂_k, (K, R)
rms_relative = ((running - log_p_one).exp() - 1).square().mean(dim=1).sqrt()  # (K,)

fig, (ax_run, ax_err) = plt.subplots(1, 2, figsize=(12, 4.2))
band = (rho_one / k_axis).sqrt()
valid = 2 * band < 0.9  # the lower edge log(1 - 2√(ρ/K)) exists once K > 4ρ
ax_run.fill_between(
    k_axis[valid],
    log_p_one + (1 - 2 * band[valid]).log(),
    log_p_one + (1 + 2 * band[valid]).log(),
    color=COLORS["naive"],
    alpha=0.15,
    label="2 sd: $p(x)\\,(1 \\pm 2\\sqrt{\\rho/K})$",
)
for run in range(8):
    ax_run.plot(k_axis, running[:, run], color=COLORS["naive"], lw=0.8, alpha=0.8,
                label="running estimate, 8 runs" if run == 0 else None)
reference_line(ax_run, log_p_one, label=f"exact $\\log p(x) = {log_p_one:.3f}$")
ax_run.set(
    xscale="log",
    title="$\\log \\hat p_K(x)$ converges to $\\log p(x)$",
    xlabel="samples $K$",
    ylabel="$\\log \\hat p_K(x)$",
    ylim=(log_p_one - 3, log_p_one + 1.5),
)
ax_run.legend(fontsize=8, loc="lower right")
ax_err.loglog(k_axis, rms_relative, color=COLORS["naive"], label="measured, 400 runs")
ax_err.loglog(k_axis, (rho_one / k_axis).sqrt(), color=COLORS["exact"], ls="--",
              label=f"exact $\\sqrt{{\\rho/K}}$, $\\rho = {rho_one:.2f}$")
ax_err.set(title="relative error $\\propto 1/\\sqrt{K}$", xlabel="samples $K$",
           ylabel="RMS of $\\hat p_K / p - 1$")
ax_err.legend(fontsize=8)
plt.show()

# %% [markdown]
# Three numbers to check. The measured relative variance at $K = 1000$ matches $\rho/K$ (within
# 25 %, the sampling error of a variance from 400 runs of a skewed quantity). The average of
# $\hat p_K$ over runs is $p(x)$ (unbiased), but the average of $\log \hat p_K$ is *below*
# $\log p(x)$: the log of an unbiased estimate is biased low (Jensen's inequality, the subject of
# chapter 4), by about $\rho/(2K)$ for large $K$.

# %%
p_ratio = (running[999] - log_p_one).exp()  # p̂_1000 / p, (R,)
assert abs(p_ratio.var().item() / (rho_one / 1000) - 1) < 0.25
assert abs(p_ratio.mean().item() - 1) < 5 * p_ratio.std().item() / math.sqrt(num_runs)
log_bias_k10 = (running[9] - log_p_one).mean().item()
# clearly below 0
assert log_bias_k10 < -10 * (running[9] - log_p_one).std().item() / math.sqrt(num_runs)
print(f"var(p̂/p) at K=1000: {p_ratio.var():.5f}  (ρ/K = {rho_one / 1000:.5f})")
print(f"mean of p̂/p at K=1000: {p_ratio.mean():.4f}  (unbiased: 1)")
print(f"mean of log p̂ - log p at K = 10: {log_bias_k10:.3f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. The curse of dimension, measured
#
# Now let the latent dimension grow. The cleanest family: $D = d$, $W = I_d$, $b = 0$, $s = 0.5$,
# so every coordinate is an independent copy of a 1-D model. We evaluate at the point
# $x = \sqrt{1 + s^2}\,(1, \dots, 1)$: each coordinate sits one standard deviation from the mean,
# and $\lVert x \rVert^2 = d\,(1 + s^2) = \mathbb E\lVert x\rVert^2$, so $x$ is a *typical* data
# point. Because everything factorizes over coordinates, so does the second moment:
#
# $$
# 1 + \rho_d(x) = \prod_{j=1}^d \big(1 + \rho_1(x_j)\big) = e^{c\,d},
# \qquad c = \log\big(1 + \rho_1(\sqrt{1+s^2})\big).
# $$
#
# **The relative variance grows exponentially in $d$**, so the relative error at fixed $K$ grows
# like $e^{c d/2}$ and the samples needed for a 10 % error like $e^{c d}$. We now *measure* both,
# with `vaelib.estimators.naive_mc_log_marginal`, and fit the rate.

# %%
NOISE = 0.5
X_TYPICAL = math.sqrt(1 + NOISE**2)


def cube_model(latent_dim):
    """The d-dimensional family: D = d, W = I, b = 0, s = 0.5; and its typical point x (1, d)."""
    return LinearGaussian(torch.eye(latent_dim), None, NOISE), torch.full(
        (1, latent_dim), X_TYPICAL
    )


rate = math.log(1 + relative_variance(*cube_model(1)).item())  # c, per latent dimension
for d in (2, 5, 9):  # the product rule, exactly
    assert math.isclose(
        math.log(1 + relative_variance(*cube_model(d)).item()), rate * d, rel_tol=1e-10
    )
print(f"c = {rate:.4f}: each latent dimension multiplies 1 + ρ by e^c = {math.exp(rate):.3f}")

# %% [markdown]
# Two measurements per dimension $d = 1, \dots, 10$:
#
# - the **relative error at $K = 1000$**: the RMS of $\hat p_K / p - 1$ over 400 independent runs;
# - the **samples needed for a 10 % relative error**, $K_{10\%} = \hat\rho/0.1^2$, with $\hat\rho$
#   the variance of $w(z) = p(x \mid z)/p(x)$ over 400 000 prior samples (the same runs, pooled).

# %%
dims = np.arange(1, 11)
K_FIXED, RUNS = 1000, 400
measured_error, measured_rho, exact_rho = [], [], []
for d in dims:
    cube, x_typical = cube_model(int(d))
    log_p = cube.log_marginal(x_typical)
    z = cube.sample_prior(K_FIXED, num_points=RUNS, generator=generator)  # (K, R, d)
    log_w = cube.log_likelihood(x_typical.expand(RUNS, -1), z) - log_p  # log w(z), (K, R)
    estimates = log_mean_exp(log_w, dim=0)  # log p̂_K - log p, one per run, (R,)
    measured_error.append((estimates.exp() - 1).square().mean().sqrt().item())
    measured_rho.append((2 * log_w).exp().mean().item() - 1)  # ρ̂ = mean(w²) - 1 over K·R samples
    exact_rho.append(relative_variance(cube, x_typical).item())
measured_error, measured_rho, exact_rho = map(np.array, (measured_error, measured_rho, exact_rho))

# The library's estimator is the same thing (same random numbers, same answer):
cube, x_typical = cube_model(3)
g1, g2 = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
z = cube.sample_prior(K_FIXED, num_points=5, generator=g1)
assert torch.allclose(log_mean_exp(cube.log_likelihood(x_typical.expand(5, -1), z), dim=0),
                      naive_mc_log_marginal(cube, x_typical.expand(5, -1), K_FIXED, generator=g2))

# %% [markdown]
# A straight line through $\log(1 + \hat\rho)$ against $d$ has slope $\hat c$, the measured
# exponential rate; we compare it with the exact $c$. We fit on $d \le 8$: beyond that, 400 000
# samples are not enough to see the rare codes that carry $\rho$ (more on that in a moment). The
# asserts: the fitted rate within 10 % of $c$, and for $d \le 6$ each measured $\hat\rho$ within
# 25 % and each measured error within 20 % of the exact values.

# %%
fit = dims <= 8
fitted_rate, fitted_intercept = np.polyfit(dims[fit], np.log1p(measured_rho[fit]), deg=1)
assert abs(fitted_rate - rate) < 0.1 * rate
reliable = dims <= 6  # where K·R = 400 000 samples hold many of the codes that carry E[w²]
assert np.all(np.abs(measured_rho[reliable] / exact_rho[reliable] - 1) < 0.25)
assert np.all(np.abs(measured_error[reliable] / np.sqrt(exact_rho[reliable] / K_FIXED) - 1) < 0.2)
print(f"exponential rate per dimension: fitted {fitted_rate:.3f}, exact {rate:.3f}")

d_fine = np.linspace(1, 20, 200)
exact_k_needed = np.expm1(rate * d_fine) / 0.1**2

# %%
fig, (ax_e, ax_k) = plt.subplots(1, 2, figsize=(12, 4.2))
ax_e.semilogy(d_fine, np.sqrt(np.expm1(rate * d_fine) / K_FIXED), color=COLORS["exact"], ls="--",
              label="exact $\\sqrt{\\rho_d / K}$")
ax_e.semilogy(dims, measured_error, "o", color=COLORS["naive"], label=f"measured, {RUNS} runs")
ax_e.axhline(0.1, color=COLORS["prior"], ls=":", label="10 % error")
ax_e.set(
    title=f"relative error of $\\hat p_K(x)$ at $K = {K_FIXED}$",
    xlabel="latent dimension $d$",
    ylabel="RMS of $\\hat p_K / p - 1$",
    xlim=(0.5, 20.5),
    xticks=range(2, 21, 2),
)
ax_e.legend(fontsize=8, loc="upper left")
ax_k.semilogy(d_fine, exact_k_needed, color=COLORS["exact"], ls="--", label="exact $\\rho_d / "
                                                                            "0.1^2$")
ax_k.semilogy(dims, measured_rho / 0.1**2, "o", color=COLORS["naive"], label="measured $\\hat\\rho "
                                                                             "/ 0.1^2$")
ax_k.semilogy(
    d_fine,
    np.expm1(fitted_intercept + fitted_rate * d_fine) / 0.1**2,
    color=COLORS["naive"],
    lw=1,
    label=f"fit $\\propto e^{{{fitted_rate:.3f}\\,d}}$ (exact rate {rate:.3f})",
)
k_at_20 = np.expm1(rate * 20) / 0.1**2
ax_k.annotate(f"$d = 20$: $K \\approx {k_at_20 / 1e10:.0f} \\times 10^{{10}}$", (20, k_at_20),
              xytext=(-150, 0), textcoords="offset points",
              arrowprops={"arrowstyle": "->"}, fontsize=9)
ax_k.set(title="samples needed for a 10 % relative error", xlabel="latent dimension $d$",
         ylabel="$K_{10\\%}$", xlim=(0.5, 20.5), xticks=range(2, 21, 2))
ax_k.legend(fontsize=8, loc="lower right")
plt.show()

# %% [markdown]
# Look at the measurements beyond $d \approx 7$: they stop following the line and turn erratic.
# Most of $\mathbb E[w^2]$ is carried by rare codes that land near the posterior. When no run
# draws one, every run underestimates $p(x)$ by a similar amount, and the measured error comes out
# *below* the truth: the runs agree with each other and are all wrong. When one run does draw one,
# that single sample throws the measurement far up. A Monte Carlo estimator whose variance is
# dominated by rare events cannot be trusted to report its own error. At the
# size of a small VAE, $d = 20$, a 10 % error needs some $10^{10}$ decoder evaluations per data
# point; at $d = 50$, more than $10^{22}$.

# %%
for d in (20, 50):
    print(f"d = {d}: K for 10 % error ≈ {math.expm1(rate * d) / 0.01:.2e}")
assert math.expm1(rate * 20) / 0.01 > 1e9

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Why: almost every prior sample misses
#
# By Bayes' rule the weight of a sample is a ratio of densities in $z$-space,
#
# $$
# w(z) = \frac{p(x \mid z)}{p(x)} = \frac{p(z \mid x)}{p(z)}, \qquad
# 1 + \rho(x) = \mathbb E_{p(z)}\Big[\frac{p(z \mid x)^2}{p(z)^2}\Big] = \int
# \frac{p(z \mid x)^2}{p(z)}\,dz ,
# $$
#
# so $\rho(x)$ is the **$\chi^2$ divergence** between the posterior and the prior: large whenever
# the posterior is much narrower than the prior, or far from its centre. For a Gaussian posterior
# $\mathcal N(m, \Sigma)$ against the prior $\mathcal N(0, I)$ the integral is (complete the square
# as in chapter 1; it needs $\Sigma \prec 2I$, which holds since $\Sigma = (I + W^\top W/s^2)^{-1}
# \preceq I$)
#
# $$
# 1 + \rho(x) =
# \frac{\exp\big(m^\top (2I - \Sigma)^{-1} m\big)}{\sqrt{\det\Sigma\,\det(2I - \Sigma)}} .
# $$
#
# In one dimension with posterior variance $v$ the denominator gives $1/\sqrt{v(2 - v)} \approx
# 1/\sqrt{2v}$ for small $v$: a posterior 10 times narrower than the prior (in standard deviation)
# costs a factor of 7, and the exponential adds more when the posterior sits off-centre. The
# posterior covers a small fraction of the prior in each dimension; over independent dimensions
# those fractions **multiply**, and so do the factors. The posterior
# side of the identity must agree with section 3's formula:

# %%
def relative_variance_from_posterior(model, x):
    """ρ(x) = χ²(p(z|x) ‖ p(z)) for a Gaussian posterior N(m, Σ): (N, D) -> (N,)."""
    m, Sigma = model.posterior_parameters(x)  # (N, d), (d, d)
    two_minus = 2 * torch.eye(model.latent_dim) - Sigma
    log_one_plus = ((m * torch.linalg.solve(two_minus, m.T).T).sum(-1)
                    - 0.5 * (torch.logdet(Sigma) + torch.logdet(two_minus)))
    return log_one_plus.exp() - 1


for some_model, some_x in [(model, x_obs), (big, x_big)]:
    assert torch.allclose(relative_variance_from_posterior(some_model, some_x),
                          relative_variance(some_model, some_x), rtol=1e-10)
print("ρ(x) from the posterior:", relative_variance_from_posterior(model, x_obs).numpy().round(4))

# %% [markdown]
# **The typical weight.** The log-weight is $\log w(z) = \log p(z \mid x) - \log p(z)$, so its
# average over the prior is a KL divergence,
#
# $$
# \mathbb E_{p(z)}\big[\log w(z)\big] = -\,\mathrm{KL}\big(p(z) \,\Vert\, p(z \mid x)\big), \qquad
# \mathrm{KL}\big(\mathcal N(0, I) \,\Vert\, \mathcal N(m, S)\big)
#   = \tfrac12\big[\operatorname{tr} S^{-1} + m^\top S^{-1} m - d + \log\det S\big],
# $$
#
# which also adds up over independent dimensions. While the mean of $w$ stays 1, its typical value
# $e^{-\mathrm{KL}}$ falls exponentially in $d$: the mean is carried by ever rarer, ever larger
# weights.

# %%
def kl_prior_to_posterior(model, x):
    """KL(p(z) ‖ p(z|x)) with p(z|x) = N(m, S): (N, D) -> (N,)."""
    m, S = model.posterior_parameters(x)  # (N, d), (d, d)
    S_inv = torch.linalg.inv(S)
    return 0.5 * (
        torch.trace(S_inv) + (m * (m @ S_inv)).sum(-1) - model.latent_dim + torch.logdet(S)
    )


z = model.sample_prior(200_000, num_points=3, generator=generator)
log_w = model.log_likelihood(x_obs, z) - model.log_marginal(x_obs)  # (K, 3)
assert ((log_w.mean(dim=0) + kl_prior_to_posterior(model, x_obs)).abs()
        < 5 * log_w.std(dim=0) / math.sqrt(200_000)).all()
print("mean of log w:", log_w.mean(dim=0).numpy().round(3))
print("-KL:          ", (-kl_prior_to_posterior(model, x_obs)).numpy().round(3))

# %% [markdown]
# Three pictures of the same fact. Left, in $d = 2$ (with less noise, $s = 0.25$, so that the
# posterior is small enough to see): 300 codes from the prior, each drawn with an area
# proportional to its weight, and the posterior's 1, 2 and 3 standard-deviation ellipses; only the
# codes inside the posterior count. Middle: the distribution of $\log w(z_k)$ over 50 000 prior
# samples against $d$ on the family of section 4: the bulk slides down like $-\mathrm{KL}$, while
# $w = 1$ (the mean) is reached only by the largest few. Right: the share of $\hat p_K$ carried by
# its single largest term, $\max_k w_k / \sum_k w_k$, at $K = 1000$ (median over 100 runs); as it
# approaches 1, the "average" is one sample.

# %%
sharp = LinearGaussian(torch.eye(2), None, noise_std=0.25)
x_sharp = torch.full((1, 2), math.sqrt(1 + 0.25**2))
post_mean, post_cov = sharp.posterior_parameters(x_sharp)  # W = I: a diagonal covariance
z_prior = sharp.sample_prior(300, num_points=1, generator=generator)[:, 0]  # (300, 2)
# w_k / Σ w, (300,)
shares = torch.softmax(sharp.log_likelihood(x_sharp, z_prior[:, None]), dim=0)[:, 0]

dims_w = np.arange(1, 17)
log_w_quantiles, log_w_max, minus_kl, top_shares = [], [], [], []
for d in dims_w:
    cube, x_typical = cube_model(int(d))
    z = cube.sample_prior(50_000, num_points=1, generator=generator)
    log_w = (cube.log_likelihood(x_typical, z) - cube.log_marginal(x_typical))[:, 0]  # (5e4,)
    log_w_quantiles.append(torch.quantile(log_w, torch.tensor([0.05, 0.5, 0.95])).numpy())
    log_w_max.append(log_w.max().item())
    minus_kl.append(-kl_prior_to_posterior(cube, x_typical).item())
    z = cube.sample_prior(K_FIXED, num_points=100, generator=generator)
    log_lik = cube.log_likelihood(x_typical.expand(100, -1), z)  # (K, 100)
    top_shares.append(torch.softmax(log_lik, dim=0).max(dim=0).values.median().item())
log_w_quantiles, top_shares = np.array(log_w_quantiles), np.array(top_shares)


# %%
fig, (ax_z, ax_w, ax_top) = plt.subplots(1, 3, figsize=(15, 4.4),
                                         gridspec_kw={"width_ratios": [1, 1.2, 1.2]})
sorted_shares = shares.sort(descending=True).values
carriers = int((sorted_shares.cumsum(dim=0) < 0.99).sum()) + 1  # fewest codes holding 99 % of Σ w
ax_z.scatter(*z_prior.T, s=4, color=COLORS["prior"], label="300 codes $z_k \\sim p(z)$")
ax_z.scatter(*z_prior.T, s=2000 * shares, color=COLORS["naive"], alpha=0.6,
             label="area $\\propto$ weight $w(z_k)$")
post_sd = post_cov.diagonal().sqrt()
for k in (1, 2, 3):
    label = "posterior $p(z \\mid x)$: 1, 2, 3 sd" if k == 1 else None
    ax_z.add_patch(Ellipse(post_mean[0].tolist(), 2 * k * post_sd[0].item(),
                           2 * k * post_sd[1].item(), fill=False, color=COLORS["posterior"],
                           lw=1.2, label=label))
ax_z.set(title=f"$d = 2$: {carriers} of 300 codes carry 99 % of $\\hat p_K$", xlabel="$z_1$",
         ylabel="$z_2$", xlim=(-3.5, 3.5), ylim=(-3.5, 3.5))
ax_z.set_aspect("equal")
ax_z.legend(fontsize=8, loc="lower left", markerscale=0.5, framealpha=0.8, frameon=True)

ax_w.fill_between(dims_w, log_w_quantiles[:, 0], log_w_quantiles[:, 2], color=COLORS["naive"],
                  alpha=0.2, label="5 %–95 % of prior samples")
ax_w.plot(dims_w, log_w_quantiles[:, 1], color=COLORS["naive"], label="median")
ax_w.plot(dims_w, minus_kl, color=COLORS["exact"], ls=":",
          label="exact mean $-\\mathrm{KL}(p(z)\\,\\Vert\\,p(z \\mid x))$")
ax_w.plot(dims_w, log_w_max, "^", color=COLORS["naive"], ms=5, label="largest of $5 \\times 10^4$")
reference_line(ax_w, 0.0, label="$w = 1$: $p(x \\mid z) = p(x)$")
ax_w.set(title="log-weights $\\log w(z_k)$ of prior samples", xlabel="latent dimension $d$",
         ylabel="$\\log p(x \\mid z_k) - \\log p(x)$", xticks=range(2, 17, 2))
ax_w.legend(fontsize=8, loc="lower left")

ax_top.plot(dims_w, top_shares, "o-", color=COLORS["naive"], ms=4,
            label=f"naive MC, $K = {K_FIXED}$")
ax_top.axhline(1 / K_FIXED, color=COLORS["exact"], ls="--", label="equal weights, $1/K$")
ax_top.set(yscale="log", title="share of $\\hat p_K$ in its largest term",
           xlabel="latent dimension $d$",
           ylabel="largest $w_k$ / $\\Sigma_k w_k$ (median of 100 runs)",
           ylim=(5e-4, 1.5), xticks=range(2, 17, 2))
ax_top.legend(fontsize=8, loc="center right")
plt.show()

# %%
# in d = 2 already, fewer than a third of the codes carry 99 % of the estimate
assert carriers < 100
# bulk near -KL
assert np.allclose(log_w_quantiles[:, 1], minus_kl, atol=0.05 * np.abs(minus_kl).max())
assert top_shares[0] < 0.01 and top_shares[-1] > 0.5 and np.all(np.diff(top_shares[::3]) > 0)
print(f"d = 16: median log w = {log_w_quantiles[-1, 1]:.1f}, -KL = {minus_kl[-1]:.1f}, "
      f"largest of 5e4 = {log_w_max[-1]:.1f}; top sample's share at K = 1000: {top_shares[-1]:.2f}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Explore: samples $K$ against dimension $d$
#
# Each move runs 100 independent naive estimates on the $d$-dimensional model of section 4. Left:
# the histogram of $\log \hat p_K - \log p(x)$ (0 is exact; the shaded band is a relative error
# within 10 %). Right: for five runs, the cumulative share of the estimate carried by the largest
# weights, sorted: a straight diagonal means every sample contributes, a jump to 1 at rank 1 means
# one sample is the whole estimate. Try $d = 1$ with $K = 10$, then $d = 12$ with $K = 10\,000$.

# %%
def draw_naive(fig, num_samples, latent_dim, num_runs=100):
    cube, x_typical = cube_model(latent_dim)
    local = torch.Generator().manual_seed(0)
    z = cube.sample_prior(num_samples, num_points=num_runs, generator=local)  # (K, R, d)
    log_w = cube.log_likelihood(x_typical.expand(num_runs, -1), z) - cube.log_marginal(x_typical)
    errors = log_mean_exp(log_w, dim=0)  # log p̂_K - log p, (R,)
    rho_d = relative_variance(cube, x_typical).item()

    ax_hist, ax_cum = fig.subplots(1, 2)
    ax_hist.axvspan(
        math.log(0.9), math.log(1.1), color=COLORS["elbo"], alpha=0.2, label="within 10 %"
    )
    ax_hist.hist(
        errors.numpy(), bins=30, color=COLORS["naive"], alpha=0.7, label=f"{num_runs} runs"
    )
    reference_line(ax_hist, 0.0, label="exact", horizontal=False)
    ax_hist.set(title=f"$\\log \\hat p_K - \\log p(x)$, $K = {num_samples}$, $d = {latent_dim}$",
                xlabel="error in $\\log p(x)$", ylabel="runs")
    ax_hist.legend(fontsize=8, loc="upper left")
    shares = torch.softmax(log_w[:, :5], dim=0).sort(dim=0, descending=True).values.cumsum(dim=0)
    ranks = torch.arange(1, num_samples + 1)
    ax_cum.plot(
        ranks, ranks / num_samples, color=COLORS["exact"], ls="--", lw=1, label="equal weights"
    )
    ax_cum.plot(ranks, shares, color=COLORS["naive"], lw=1)
    ax_cum.set(xscale="log", ylim=(0, 1.02), title="share of $\\hat p_K$ in the top samples",
               xlabel="the $r$ largest weights", ylabel="cumulative share")
    ax_cum.legend(fontsize=8, loc="upper left")
    within = ((errors.exp() - 1).abs() < 0.1).float().mean().item()
    top = torch.softmax(log_w, dim=0).max(dim=0).values.median().item()
    return (f"exact relative error √(ρ/K) = {math.sqrt(rho_d / num_samples):.3g}; "
            f"runs within 10 %: {100 * within:.0f} %; median share of the top sample: "
            f"{100 * top:.1f} %; K for 10 %: {rho_d / 0.01:.3g}")


static_figure(draw_naive, figsize=(12, 4.2), num_samples=1000, latent_dim=8)

# %%
FigureExplorer(
    draw_naive, figsize=(12, 4.2),
    num_samples=SelectionSlider(options=[10, 100, 1000, 10_000], value=1000, description="K"),
    latent_dim=IntSlider(value=8, min=1, max=16, description="d"),
)

# %% [markdown] slideshow={"slide_type": "slide"}
# > **Classic mistakes**
# >
# > - **Averaging the logs.** $\frac1K \sum_k \log p(x \mid z_k)$ is not an estimate of $\log p(x)$.
# >   It estimates $\mathbb E_{p(z)}[\log p(x \mid z)] = \log p(x) - \mathrm{KL}\big(p(z) \,\Vert\,
# >   p(z \mid x)\big)$, which is smaller, by a lot when the posterior is narrow. The log goes
# >   *outside* the average.
# > - **`exp`, then `mean`, then `log`.** Returns $-\infty$ once every $\log p(x \mid z_k)$ is below
# >   about $-745$ (float64) or $-104$ (float32), the normal case for image-sized $D$ (section 2).
# >   Use `log_mean_exp`.
# > - **log-*sum*-exp for a *mean*.** `torch.logsumexp` sums; the mean needs $-\log K$ too.
# > - **Unbiased for $p(x)$ is not unbiased for $\log p(x)$.**
# >   $\mathbb E[\log \hat p_K] < \log p(x)$ (section 3); the bias vanishes only as $K \to \infty$.
# > - **Trusting agreement between runs.** When $\rho \gg K$, independent runs agree with each other
# >   and are all too low: their spread says nothing about their error (section 4).
#
# The first one, measured on the linear model. Here $\mathbb E_{p(z)}[\log p(x \mid z)]$ has its own
# closed form, since
# $\mathbb E\lVert x - b - Wz\rVert^2 = \lVert x - b\rVert^2 + \operatorname{tr}(W^\top W)$ for
# $z \sim \mathcal N(0, I)$; it must equal $\log p(x) - \mathrm{KL}(p(z) \Vert p(z \mid x))$
# (section 5), and the average of the logs must estimate it.

# %%
s2, D = model.noise_std**2, model.data_dim
u = x_obs - model.b
expected_log_lik = (-0.5 * D * math.log(2 * math.pi * s2)
                    # E_p(z)[log p(x|z)]
                    - (u.square().sum(-1) + model.W.square().sum()) / (2 * s2))
via_kl = model.log_marginal(x_obs) - kl_prior_to_posterior(model, x_obs)
assert torch.allclose(expected_log_lik, via_kl, atol=1e-10)

log_lik = model.log_likelihood(
    x_obs, model.sample_prior(200_000, num_points=3, generator=generator)
)
average_of_logs = log_lik.mean(dim=0)  # the mistake, (3,)
standard_error = log_lik.std(dim=0) / math.sqrt(200_000)
assert ((average_of_logs - expected_log_lik).abs() < 5 * standard_error).all()
print("mean of log p(x|z_k):", average_of_logs.numpy().round(3))
print("log p(x) - KL:       ", expected_log_lik.numpy().round(3))
print("log p(x):            ", model.log_marginal(x_obs).numpy().round(3))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - Naive Monte Carlo estimates $p(x) = \mathbb E_{p(z)}[p(x \mid z)]$ by
#   $\hat p_K = \frac1K\sum_k p(x \mid z_k)$ with codes from the prior. It is unbiased, with
#   relative error $\sqrt{\rho(x)/K}$, where
#   $\rho(x) = \operatorname{Var}_{p(z)}[p(x \mid z)/p(x)]$.
# - Compute it in log space:
#   $\log \hat p_K = \operatorname{logsumexp}_k \log p(x \mid z_k) - \log K$. The naive
#   `log(mean(exp(.)))` returns $-\infty$ for realistic $D$.
# - $\rho(x)$ is the $\chi^2$ divergence between the posterior and the prior, and $1 + \rho(x)$
#   multiplies across latent dimensions, so the error at fixed $K$ and the samples needed **grow
#   exponentially in $d$**: on a simple family we measured a rate within a few % of the predicted
#   $c \approx 0.955$ per dimension, which means $K \approx 2 \times 10^{10}$ at $d = 20$ for a 10 %
#   error.
# - The reason: prior samples almost never land where the posterior is, so one sample ends up
#   carrying the whole estimate. The cure is to sample *from near the posterior* instead, and
#   reweight: **importance sampling**, chapter 3.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# **Exercise 1 — a stable log-mean-exp.** Write `stable_log_mean_exp(a, dim=0)` that returns
# $\log \frac1K \sum_k e^{a_k}$ along `dim` (removed from the shape), without overflow or underflow
# for entries like $\pm 10^4$, and with $-\infty$ entries allowed (they contribute 0). Use only
# elementary operations (`max`, `exp`, `sum`, `log`), not `torch.logsumexp`. The check refuses the
# library's log-sum-exps (torch's, SciPy's, a `log_softmax`) and section 2's `my_log_mean_exp`, but
# it cannot tell a copy of that function, or a shortcut it does not know (`numpy.logaddexp.reduce`),
# from your own work: close section 2 and write it from the idea.

# %% tags=["solution"]
def stable_log_mean_exp(a, dim=0):
    """The log-mean-exp of a along dim (removed), stable for huge |a_k| and -inf entries."""
    m = a.max(dim=dim, keepdim=True).values  # the largest term, kept as a size-1 dim
    log_sum = m + (a - m).exp().sum(dim=dim, keepdim=True).log()
    return log_sum.squeeze(dim) - math.log(a.shape[dim])


# %%
from vaelib.exercises import check_log_mean_exp

check_log_mean_exp(stable_log_mean_exp);

# %% [markdown]
# **Exercise 2 — the naive estimator.** Write
# `my_naive_log_marginal(model, x, num_samples, generator=None)` returning $\log \hat p_K(x)$, shape
# `(N,)`, for any model with `sample_prior(K, num_points=N, generator=...)` and
# `log_likelihood(x, z)` (like those of `vaelib.toy`), working in log space. The check runs it on a
# linear-Gaussian model with $K = 20\,000$ and compares with the exact $\log p(x)$, allowing 6
# standard errors.

# %% tags=["solution"]
def my_naive_log_marginal(model, x, num_samples, generator=None):
    """The naive Monte Carlo estimate of log p(x) from K prior samples, in log space: x (N, D) ->
    (N,).
    """
    z = model.sample_prior(num_samples, num_points=x.shape[0], generator=generator)  # (K, N, d)
    return log_mean_exp(model.log_likelihood(x, z), dim=0)


# %%
from vaelib.exercises import check_naive_log_marginal

check_naive_log_marginal(my_naive_log_marginal);

# %% [markdown]
# **Exercise 3 — how many samples?** Write `samples_needed(model, x, rel_error)` that returns how
# many prior samples $K$ the naive estimator needs so that the standard deviation of
# $\hat p_K(x)/p(x)$ equals `rel_error`, for one point `x` of shape `(1, D)`. Estimate $\rho(x)$ by
# Monte Carlo from prior samples (without using the closed form or `model.log_marginal`), in log
# space. The check accepts answers within 15 % of the exact value.

# %% tags=["solution"]
def samples_needed(model, x, rel_error, num_draws=1_000_000):
    """The number of prior samples K at which p̂_K(x) has relative standard deviation rel_error, for
    one x (1, D).
    """
    # K = ρ̂ / ε², with ρ̂ = mean(w²) / mean(w)² - 1 estimated from prior samples.
    log_lik = model.log_likelihood(x, model.sample_prior(num_draws, num_points=1))[:, 0]  # (M,)
    log_w = log_lik - log_mean_exp(log_lik, dim=0)  # w_k / mean(w): the unknown p(x) cancels
    rho_hat = (2 * log_w).exp().mean().item() - 1
    return rho_hat / rel_error**2


# %%
from vaelib.exercises import check_samples_needed

check_samples_needed(samples_needed);
