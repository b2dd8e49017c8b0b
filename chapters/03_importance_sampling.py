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
# # Chapter 3 — Importance sampling: look where the posterior is
#
# *Symbols: see the course's [notation page](../docs/notation.md).*
#
# Chapter 2 estimated the marginal likelihood $p(x) = \int p(x\mid z)\,p(z)\,dz$ by averaging
# $p(x\mid z)$ over samples from the prior, and saw it fail: almost every prior sample explains $x$
# badly, so a handful of lucky samples carry the whole estimate. The fix is to **sample where the
# posterior $p(z\mid x)$ puts its mass, and correct for having looked there on purpose.**
#
# This chapter derives and checks, on a model where everything is known exactly:
#
# 1. the identity $p(x) = \mathbb{E}_{q(z\mid x)}\!\big[p(x\mid z)\,p(z)/q(z\mid x)\big]$ and the
#    importance-sampling estimator built on it;
# 2. that the estimator is **unbiased for $p(x)$** but **biased low for $\log p(x)$** (a preview of
#    Jensen's inequality and the ELBO, chapter 4);
# 3. its variance: proportional to $1/K$, and to a number $\kappa - 1$ that depends on how well
#    $q$ matches $p(z\mid x)$ (zero when $q$ *is* the posterior), in closed form for Gaussians;
# 4. the **effective sample size**, a diagnostic we can compute from the weights alone;
# 5. the danger of a proposal **narrower than the posterior**: the variance of the weights is
#    infinite once $\sigma_q^2 \le \sigma_\star^2/2$, and the estimate jumps instead of settling;
# 6. why a proposal that is good in one dimension is not good enough in fifty.

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

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import integrate, stats

from vaelib.device import seed_everything
from vaelib.estimators import (
    effective_sample_size,
    importance_log_marginal,
    log_importance_weights,
    log_mean_exp,
)
from vaelib.figures import COLORS, FigureExplorer, reference_line, static_figure, use_course_style
from vaelib.gaussian import DiagonalGaussian, FullGaussian
from vaelib.toy import LinearGaussian

use_course_style()
generator = seed_everything(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The identity: multiply and divide by $q$
#
# Take any density $q(z\mid x)$ over the latent space that is positive wherever $p(x, z) > 0$. Then
#
# $$
# p(x) = \int p(x\mid z)\,p(z)\,dz
#      = \int q(z\mid x)\,\frac{p(x\mid z)\,p(z)}{q(z\mid x)}\,dz
#      = \mathbb{E}_{z\sim q(z\mid x)}\big[\,w(z)\,\big],
# \qquad
# w(z) = \frac{p(x, z)}{q(z\mid x)} .
# $$
#
# Nothing was approximated: we multiplied the integrand by $q/q = 1$. The **importance weight**
# $w(z)$ corrects for sampling from $q$ instead of the prior. An expectation can be estimated by an
# average, so with $z_1, \dots, z_K$ drawn independently from $q(z\mid x)$,
#
# $$
# \hat p_K(x) = \frac1K \sum_{k=1}^K w(z_k),
# \qquad
# \log \hat p_K(x) = \operatorname{logsumexp}_k\big(\log w_k\big) - \log K,
# \qquad
# \log w_k = \log p(x, z_k) - \log q(z_k\mid x).
# $$
#
# We always work with $\log w_k$: the weights themselves under- or overflow once $x$ has hundreds of
# dimensions, as an image does (chapter 2's log-sum-exp trick). Two special cases:
#
# - $q(z\mid x) = p(z)$ gives $w = p(x\mid z)$: **chapter 2's naive estimator is importance sampling
#   with the prior as proposal.**
# - Bayes' rule $p(x, z) = p(x)\,p(z\mid x)$ rewrites the weight as
#
# $$
# w(z) = p(x)\,\frac{p(z\mid x)}{q(z\mid x)} .
# $$
#
# So $q(z\mid x) = p(z\mid x)$ makes **every weight equal to $p(x)$**: one sample gives the exact
# answer. We cannot use that $q$ in general (writing it down needs $p(x)$, the unknown), but the
# closer $q$ is to the posterior, the flatter the weights and the better the estimate. The rest of
# the chapter makes "closer" precise.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. A model with an exact posterior
#
# We use `vaelib.toy.LinearGaussian` with a 1-D latent and $D = 3$ (probabilistic PCA):
#
# $$
# z \sim \mathcal N(0, 1), \qquad x \mid z \sim \mathcal N(W z + b,\; s^2 I_3),
# \qquad W \in \mathbb R^{3\times 1}.
# $$
#
# **The exact posterior.** As a function of $z$, $\log p(x, z) = \log p(z) + \log p(x\mid z)$ is
# a quadratic, so $p(z\mid x) \propto p(x, z)$ is Gaussian. Collecting the terms in $z$
# (everything else is a constant $c$ that does not depend on $z$):
#
# $$
# \log p(x, z) = -\frac{z^2}{2} - \frac{\lVert x - b - W z\rVert^2}{2 s^2} + c
# = -\frac12\Big(1 + \frac{W^\top W}{s^2}\Big) z^2 + z\,\frac{W^\top (x - b)}{s^2} + c'
# = -\frac{(z - \mu_\star)^2}{2\sigma_\star^2} + c'' ,
# $$
#
# where the last step completes the square, giving
#
# $$
# \sigma_\star^2 = \Big(1 + \frac{W^\top W}{s^2}\Big)^{-1},
# \qquad
# \mu_\star = \sigma_\star^2\,\frac{W^\top (x - b)}{s^2},
# \qquad p(z\mid x) = \mathcal N(z;\ \mu_\star, \sigma_\star^2).
# $$
#
# (With a $d$-dimensional latent the same steps give precision $I + W^\top W/s^2$, which is what
# `LinearGaussian.posterior` computes.) We write these two lines from the equation and compare
# them with the library.

# %%
W = torch.tensor([[1.2], [-0.8], [0.6]], dtype=torch.float64)  # (D, d) = (3, 1)
b = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)  # (D,)
noise_std = 0.5  # s
model = LinearGaussian(W, b, noise_std)
x = torch.tensor([[2.3, -1.3, 0.7]], dtype=torch.float64)  # (N, D) = (1, 3): one data point

# the exact posterior, written from the equation
sigma2_post = 1.0 / (1.0 + (W.T @ W).item() / noise_std**2)  # σ⋆² = (1 + WᵀW/s²)⁻¹
mu_post = sigma2_post * (W[:, 0] @ (x[0] - b)).item() / noise_std**2  # μ⋆ = σ⋆² Wᵀ(x - b)/s²
sigma_post = math.sqrt(sigma2_post)

mean_lib, cov_lib = model.posterior_parameters(x)
assert abs(mean_lib.item() - mu_post) < 1e-12 and abs(cov_lib.item() - sigma2_post) < 1e-12
log_px = model.log_marginal(x).item()  # exact log p(x)
print(f"posterior p(z|x) = N({mu_post:.4f}, {sigma_post:.4f}²);  exact log p(x) = {log_px:.6f}")

# %% [markdown]
# Bayes' rule says $\log p(x, z) - \log p(z\mid x) = \log p(x)$ **for every $z$**. That is the
# zero-variance property in one line: with $q = p(z\mid x)$ every log-weight is $\log p(x)$.
# We check it on a grid of 201 values of $z$ against the exact $\log p(x)$, to $10^{-10}$.

# %%
# (G, N, d) = (201, 1, 1)
z_grid = torch.linspace(-3.0, 5.0, 201, dtype=torch.float64)[:, None, None]
# N(μ⋆, σ⋆²), (N, d) params
exact_posterior = DiagonalGaussian(torch.tensor([[mu_post]], dtype=torch.float64),
                                   torch.tensor([[math.log(sigma2_post)]], dtype=torch.float64))
log_w_exact = model.log_joint(x, z_grid) - exact_posterior.log_prob(z_grid)  # (G, 1)
assert (log_w_exact - log_px).abs().max() < 1e-10
# the library's exact posterior (a full-covariance Gaussian in general) gives the same log-weights
log_w_full = model.log_joint(x, z_grid) - model.posterior(x).log_prob(z_grid)
assert (log_w_full - log_w_exact).abs().max() < 1e-10
print(
    f"log p(x, z) - log p(z|x) on the grid: {log_w_exact.min():.12f} ... {log_w_exact.max():.12f}"
)

# %% [markdown] slideshow={"slide_type": "slide"}
# ### Four proposals
#
# The posterior is narrow ($\sigma_\star \approx 0.30$) and away from the prior's centre
# ($\mu_\star \approx 1.35$). We compare four proposals $q(z\mid x) = \mathcal N(\mu_q, \sigma_q^2)$
# throughout the chapter:
#
# | name | $\mu_q$ | $\sigma_q$ | |
# | --- | --- | --- | --- |
# | prior | $0$ | $1$ | chapter 2's naive estimator |
# | poor $q$ | $\mu_\star + \sigma_\star$ | $\sigma_\star$ | right width, mean one posterior std off |
# | good $q$ | $\mu_\star + 0.2\,\sigma_\star$ | $1.2\,\sigma_\star$ | nearly right, a little wider |
# | exact posterior | $\mu_\star$ | $\sigma_\star$ | zero variance |

# %%
proposals = {  # name -> (μ_q, σ_q)
    "prior": (0.0, 1.0),
    "poor q": (mu_post + sigma_post, sigma_post),
    "good q": (mu_post + 0.2 * sigma_post, 1.2 * sigma_post),
    "exact posterior": (mu_post, sigma_post),
}
# one colour per proposal (COLORS from vaelib.figures, plus teal for the good q)
PROPOSAL_COLORS = {"prior": COLORS["prior"], "poor q": COLORS["proposal"],
                   "good q": "#56B4E9", "exact posterior": COLORS["posterior"]}


def gaussian_proposal(mean, std, num_points=1):
    """q(z|x) = N(mean, std²) for a 1-D latent, repeated for `num_points` copies of x: (N, 1)
    params.
    """
    mean_t = torch.full((num_points, 1), float(mean), dtype=torch.float64)
    logvar_t = torch.full((num_points, 1), 2 * math.log(std), dtype=torch.float64)
    return DiagonalGaussian(mean_t, logvar_t)


def normal_pdf(z, mean, std):
    return stats.norm.pdf(z, loc=mean, scale=std)


z_plot = np.linspace(-3.0, 4.0, 700)
fig, ax = plt.subplots(figsize=(8, 3.8))
ax.fill_between(z_plot, normal_pdf(z_plot, mu_post, sigma_post), color=COLORS["posterior"],
                alpha=0.2, label=r"posterior $p(z\mid x)$")
for name, (mean, std) in proposals.items():
    style = ":" if name == "exact posterior" else "-"
    ax.plot(z_plot, normal_pdf(z_plot, mean, std), style, color=PROPOSAL_COLORS[name], lw=2,
            label=fr"{name}: $\mathcal{{N}}({mean:.2f}, {std:.2f}^2)$")
ax.set(xlabel="latent $z$", ylabel="density", title="The target posterior and four proposals "
                                                    "$q(z\\mid x)$")
ax.legend(loc="upper left")
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. The estimator, written from the equation
#
# Three lines: sample from $q$, take log-weights, log-mean-exp. Then the tested library version,
# `vaelib.estimators.importance_log_marginal`, run with the same random numbers (the same seed):
# the two must agree to rounding error, $10^{-12}$.

# %%
def my_importance_log_marginal(x, proposal, num_samples, generator=None):
    z = proposal.rsample(num_samples, generator=generator)  # z_k ~ q(z|x), (K, N, d)
    # log w_k = log p(x, z_k) - log q(z_k|x), (K, N)
    log_w = model.log_joint(x, z) - proposal.log_prob(z)
    return torch.logsumexp(log_w, dim=0) - math.log(num_samples)  # log (1/K) Σ_k w_k, (N,)


num_samples = 1000
for name, (mean, std) in proposals.items():
    q = gaussian_proposal(mean, std)
    ours = my_importance_log_marginal(x, q, num_samples, torch.Generator().manual_seed(1))
    library = importance_log_marginal(model, x, q, num_samples, torch.Generator().manual_seed(1))
    assert torch.allclose(ours, library, rtol=0, atol=1e-12)
    print(f"{name:>16}: log p̂_K = {library.item():.6f}   (exact {log_px:.6f}, error "
          f"{library.item() - log_px:+.2e})")
    # K = 1000: within about 4 standard deviations (section 5)
    assert abs(library.item() - log_px) < 0.3

# the exact posterior: one sample is enough, and it is exact to rounding error
one_sample = importance_log_marginal(model, x, gaussian_proposal(mu_post, sigma_post), 1, generator)
assert abs(one_sample.item() - log_px) < 1e-12

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Unbiased for $p(x)$, biased low for $\log p(x)$
#
# **Unbiasedness.** Each $z_k$ is drawn from $q$, so by linearity of expectation
#
# $$
# \mathbb{E}\big[\hat p_K(x)\big] = \frac1K \sum_{k=1}^K \mathbb{E}_{q}\big[w(z_k)\big]
# = \mathbb{E}_{q}[w] = \int q(z\mid x)\,\frac{p(x, z)}{q(z\mid x)}\,dz = p(x)
# \qquad \text{for every } K \ge 1 .
# $$
#
# **The log is biased low.** $\log$ is concave, so Jensen's inequality gives, again for every $K$,
#
# $$
# \mathbb{E}\big[\log \hat p_K(x)\big] \;\le\; \log \mathbb{E}\big[\hat p_K(x)\big] = \log p(x).
# $$
#
# How much? Write $\hat p_K = p(x)\,(1 + \varepsilon)$ with $\mathbb{E}[\varepsilon] = 0$ and
# $\operatorname{Var}[\varepsilon] = \operatorname{Var}[\hat p_K]/p(x)^2 = (\kappa - 1)/K$, where
# $\kappa = \mathbb{E}_q[w^2]/p(x)^2$ is the second moment of $w/p(x)$ (computed below, derived in
# section 5). A second-order Taylor expansion
# $\log(1 + \varepsilon) \approx \varepsilon - \varepsilon^2/2$ (the *delta method*, good once $K$
# is large enough that $\varepsilon$ is small) gives
#
# $$
# \mathbb{E}\big[\log \hat p_K(x)\big] \approx \log p(x) - \frac{\kappa - 1}{2K}.
# $$
#
# The bias shrinks like $1/K$, and it is the same phenomenon that makes the ELBO a lower bound
# (chapter 4): the log of an average is at least the average of the logs.
#
# To see the distribution of the estimator we run it $R = 3000$ times independently for the same
# $x$: we give the estimator $R$ copies of $x$ as a batch, so each copy gets its own $K$ samples.
# One draw of $K_{\max} = 1000$ samples per run serves every $K \le 1000$ (the running estimate
# uses the first $K$).

# %%
num_repeats, max_samples = 3000, 1000
x_repeated = x.expand(num_repeats, -1)  # (R, D): R independent runs of the estimator
log_w_rel = {}  # log(w_k / p(x)), (K_max, R), per proposal
for name, (mean, std) in proposals.items():
    q = gaussian_proposal(mean, std, num_points=num_repeats)
    log_w_rel[name] = log_importance_weights(model, x_repeated, q, max_samples, generator) - log_px

sample_counts = [1, 3, 10, 30, 100, 300, 1000]
k_index = torch.tensor(sample_counts) - 1


def running_log_ratio(log_w):
    """log(p̂_k / p(x)) for k = 1..K_max from log(w/p(x)): logcumsumexp - log k, (K_max, R)."""
    k = torch.arange(1, log_w.shape[0] + 1, dtype=torch.float64)[:, None]
    return torch.logcumsumexp(log_w, dim=0) - torch.log(k)


log_ratio = {name: running_log_ratio(lw)[k_index] for name, lw in log_w_rel.items()}  # (len(Ks), R)

# %% [markdown]
# We need $\kappa = \mathbb{E}_q[w^2]/p(x)^2$ for the predictions (the second moment of $w/p(x)$;
# chapter 2's relative variance $\rho(x)$ is this chapter's $\kappa - 1$; we write $\kappa$ for the
# second moment because it appears more simply in the formulas below). Section 5 derives it in
# closed form; for now we compute it independently, as a 1-D integral by quadrature
# (`scipy.integrate.quad`), using $w = p(x)\,p(z\mid x)/q(z\mid x)$:
#
# $$
# \kappa = \frac{\mathbb{E}_q[w^2]}{p(x)^2} = \int q(z\mid x)\,\frac{p(z\mid x)^2}{q(z\mid x)^2}\,dz
# = \int \frac{p(z\mid x)^2}{q(z\mid x)}\,dz .
# $$

# %%
def rho_by_quadrature(mean, std):
    """∫ p(z|x)² / q(z|x) dz by adaptive quadrature, integrand evaluated in log space."""
    def integrand(z):
        return math.exp(
            2 * stats.norm.logpdf(z, mu_post, sigma_post) - stats.norm.logpdf(z, mean, std)
        )
    lo, hi = mu_post - 20 * sigma_post, mu_post + 20 * sigma_post
    value, _ = integrate.quad(
        integrand, lo, hi, points=[mu_post, mean], limit=200, epsabs=0, epsrel=1e-11
    )
    return value


rho_quad = {name: rho_by_quadrature(mean, std) for name, (mean, std) in proposals.items()}
for name, value in rho_quad.items():
    print(f"{name:>16}: κ - 1 = {value - 1:.4f}")
assert abs(rho_quad["exact posterior"] - 1) < 1e-9  # q = p(z|x): κ = 1, zero variance

# %%
R = num_repeats
ratio = {name: lr.exp() for name, lr in log_ratio.items()}  # p̂_K / p(x), (len(Ks), R)
for name in ["prior", "poor q", "good q"]:
    mean_ratio = ratio[name].mean(dim=1)  # should be 1 for every K
    std_err = ratio[name].std(dim=1) / math.sqrt(R)
    assert ((mean_ratio - 1).abs() < 4 * std_err).all(), name  # unbiased for p(x): within 4 s.e.
    bias_log = log_ratio[name].mean(dim=1)  # E[log p̂_K] - log p(x), should be < 0
    se_log = log_ratio[name].std(dim=1) / math.sqrt(R)
    predicted = torch.tensor([-(rho_quad[name] - 1) / (2 * K) for K in sample_counts])
    resolvable = predicted.abs() > 5 * se_log  # where the bias stands out of the Monte Carlo noise
    assert (bias_log[resolvable] < -2 * se_log[resolvable]).all(), name  # biased low (Jensen)
    for i in (sample_counts.index(10), sample_counts.index(100)):
        print(f"{name:>7}, K = {sample_counts[i]:>3}: mean of p̂_K/p(x) = {mean_ratio[i]:.4f} ± "
              f"{std_err[i]:.4f};  E[log p̂_K] - log p(x) = {bias_log[i]:+.5f} ± {se_log[i]:.5f} "
              f"(delta method {predicted[i]:+.5f})"
              + ("" if resolvable[i] else "  <- bias below the Monte Carlo noise"))
# the delta method is a large-K approximation: for K >= 100 it is within 25% (plus 4 standard errors
# of Monte Carlo noise) for the two worse proposals
for name in ["prior", "poor q"]:
    for i, K in enumerate(sample_counts):
        if K >= 100:
            observed = log_ratio[name][i].mean().item()
            std_err = log_ratio[name][i].std().item() / math.sqrt(R)
            predicted = -(rho_quad[name] - 1) / (2 * K)
            assert abs(observed - predicted) < 0.25 * abs(predicted) + 4 * std_err, (
                name,
                K,
                observed,
                predicted,
            )

# %%
K_show, i_show = 10, sample_counts.index(10)

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 3.9))
ax = axes[0]
values = ratio["prior"][i_show].numpy()
ax.hist(values, bins=100, color=PROPOSAL_COLORS["prior"], alpha=0.7)  # every run, the full range
ax.axvline(1.0, color=COLORS["exact"], ls="--", lw=1.5, label="truth: 1")
ax.axvline(values.mean(), color=COLORS["importance"], lw=2, label=f"mean {values.mean():.3f}")
ax.axvline(np.median(values), color=COLORS["importance"], lw=1.5, ls=":",
           label=f"median {np.median(values):.3f}")
ax.set(xlabel=r"$\hat p_K(x)\,/\,p(x)$", ylabel="runs", title="$\\hat p_K$ is unbiased (prior, K "
                                                              f"= {K_show})")
ax.legend()
ax = axes[1]
values = log_ratio["prior"][i_show].numpy()
ax.hist(values, bins=100, color=PROPOSAL_COLORS["prior"], alpha=0.7)
ax.axvline(0.0, color=COLORS["exact"], ls="--", lw=1.5, label="truth: 0")
ax.axvline(values.mean(), color=COLORS["importance"], lw=2, label=f"mean {values.mean():+.3f}")
ax.set(xlabel=r"$\log \hat p_K(x) - \log p(x)$", ylabel="runs", title="$\\log \\hat p_K$ is "
                                                                      "biased low (prior, K = "
                                                                      f"{K_show})")
ax.legend()
ax = axes[2]
Ks = np.array(sample_counts)
for name in ["prior", "poor q", "good q"]:
    bias = -log_ratio[name].mean(dim=1).numpy()
    err = 2 * log_ratio[name].std(dim=1).numpy() / math.sqrt(R)
    shown = bias - err > 0  # only where the bias is resolved from the noise
    ax.errorbar(
        Ks[shown], bias[shown], yerr=err[shown], fmt="o", color=PROPOSAL_COLORS[name], label=name
    )
    ax.plot(Ks, (rho_quad[name] - 1) / (2 * Ks), "--", color=PROPOSAL_COLORS[name], lw=1)
ax.plot([], [], "k--", lw=1, label=r"delta method $(\kappa-1)/2K$")
ax.set(xscale="log", yscale="log", xlabel="number of samples $K$",
       ylabel=r"$\log p(x) - \mathbb{E}[\log \hat p_K]$",
       title="The bias of the log shrinks like 1/K")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Left: the distribution of $\hat p_K$ is skewed — most runs *under*estimate $p(x)$ (the median is
# below 1) and a few large overestimates pull the mean back to exactly 1. Middle: after the log, the
# rare large values no longer compensate, and the mean sits below $0$. Right: the bias of
# $\log\hat p_K$ against $K$; the delta-method line is reached once $K$ is large. Error bars are
# two standard errors over the $R$ runs; points are drawn where the bias is resolved.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Variance against $K$ and against the proposal
#
# **Against $K$.** The $w(z_k)$ are independent and identically distributed, so the variance of
# their average is the variance of one weight divided by $K$:
#
# $$
# \operatorname{Var}\big[\hat p_K(x)\big] = \frac{\operatorname{Var}_q[w]}{K}
# = \frac{\mathbb{E}_q[w^2] - p(x)^2}{K}
# \qquad\Longrightarrow\qquad
# \frac{\operatorname{Var}\big[\hat p_K(x)\big]}{p(x)^2} = \frac{\kappa - 1}{K},
# \qquad \kappa = \int \frac{p(z\mid x)^2}{q(z\mid x)}\,dz \;\ge\; 1 .
# $$
#
# $\kappa \ge 1$ because a variance is non-negative, with equality only when $w$ is constant, i.e.
# $q = p(z\mid x)$. The relative standard error is $\sqrt{(\kappa - 1)/K}$: ten times more accuracy
# costs a hundred times more samples, *whatever* the proposal — the proposal only sets the constant
# $\kappa - 1$. On a log–log plot every proposal is a line of slope $-1$, shifted by
# $\log(\kappa-1)$.

# %%
# Var[p̂_K]/p(x)², (len(Ks),)
relative_variance = {name: ratio[name].var(dim=1) for name in proposals}
for name in ["prior", "poor q", "good q"]:
    predicted = torch.tensor([(rho_quad[name] - 1) / K for K in sample_counts], dtype=torch.float64)
    agreement = relative_variance[name] / predicted
    # each point with K >= 10 within 25% (at K = 1 and 3 the sample variance of skewed weights is
    # itself noisy, ~17% for the poor q: its single weights are log-normal)
    large = torch.tensor(sample_counts) >= 10
    assert ((agreement[large] > 0.75) & (agreement[large] < 1.25)).all(), (name, agreement)
    slope = np.polyfit(np.log(sample_counts[2:]), np.log(relative_variance[name][2:].numpy()), 1)[0]
    assert abs(slope + 1) < 0.05, (name, slope)  # the 1/K law: slope -1 on log-log axes (K >= 10)
    print(f"{name:>16}: κ - 1 = {rho_quad[name] - 1:.4f}; measured/predicted variance "
          f"{agreement.min():.2f} ... {agreement.max():.2f}; log-log slope {slope:.3f}")
assert relative_variance["exact posterior"].max() < 1e-24  # zero variance, up to rounding
print(" exact posterior: largest variance over K = "
      f"{relative_variance['exact posterior'].max():.1e} (rounding)")

fig, ax = plt.subplots(figsize=(7.5, 4.5))
for name in ["prior", "poor q", "good q"]:
    ax.plot(Ks, relative_variance[name].numpy(), "o", color=PROPOSAL_COLORS[name], ms=7,
            label=fr"{name} ($\kappa - 1 = {rho_quad[name] - 1:.3g}$)")
    ax.plot(Ks, (rho_quad[name] - 1) / Ks, "--", color=PROPOSAL_COLORS[name], lw=1.2)
ax.plot([], [], "k--", lw=1.2, label=r"exact: $(\kappa-1)/K$")
ax.plot([], [], " ", label="exact posterior: variance 0 (off the log axis)")
ax.set(xscale="log", yscale="log", xlabel="number of samples $K$",
       ylabel=r"$\mathrm{Var}[\hat p_K(x)] \,/\, p(x)^2$",
       title=f"Variance of the estimator falls like 1/K (R = {R} runs per point)")
ax.legend(fontsize=9)
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ### Against the proposal: $\kappa$ in closed form for Gaussians
#
# Let $p(z\mid x) = \mathcal N(\mu_\star, \sigma_\star^2)$ and $q = \mathcal N(\mu_q, \sigma_q^2)$.
# Writing out the two densities,
#
# $$
# \kappa = \int
# \frac{\mathcal N(z; \mu_\star, \sigma_\star^2)^2}{\mathcal N(z; \mu_q, \sigma_q^2)}\,dz
# = \frac{\sqrt{2\pi}\,\sigma_q}{2\pi\sigma_\star^2}
#   \int \exp\!\Big(-\frac12\Big[\underbrace{\tfrac{2}{\sigma_\star^2}}_{\alpha}(z - \mu_\star)^2
#   - \underbrace{\tfrac{1}{\sigma_q^2}}_{\beta}(z - \mu_q)^2\Big]\Big)\,dz .
# $$
#
# The bracket is a quadratic in $z$ with leading coefficient
# $\lambda = \alpha - \beta = \dfrac{2\sigma_q^2 - \sigma_\star^2}{\sigma_\star^2\,\sigma_q^2}$.
#
# - If $\lambda \le 0$, i.e. $\sigma_q^2 \le \sigma_\star^2/2$, the integrand does not decay in the
#   tails (it grows, or stays flat), so **$\kappa = \infty$: the weights have infinite variance**.
# - If $\lambda > 0$, complete the square: $\alpha(z-\mu_\star)^2 - \beta(z-\mu_q)^2 =
#   \lambda(z - c)^2 - \frac{\alpha\beta}{\lambda}(\mu_q - \mu_\star)^2$ for some $c$, with
#   $\frac{\alpha\beta}{\lambda} = \frac{2}{2\sigma_q^2 - \sigma_\star^2}$, and use
#   $\int e^{-\lambda (z-c)^2/2}\,dz = \sqrt{2\pi/\lambda}$:
#
# $$
# \kappa(\mu_q, \sigma_q) =
# \frac{\sigma_q^2}{\sigma_\star\sqrt{2\sigma_q^2 - \sigma_\star^2}}
# \;\exp\!\Big(\frac{(\mu_q - \mu_\star)^2}{2\sigma_q^2 - \sigma_\star^2}\Big)
# \quad\text{for } \sigma_q^2 > \tfrac12\sigma_\star^2,
# \qquad \kappa = \infty \text{ otherwise.}
# $$
#
# Checks by eye: $\mu_q = \mu_\star, \sigma_q = \sigma_\star$ gives $\kappa = 1$ (zero variance);
# the "poor $q$" ($\sigma_q = \sigma_\star$, one std off) gives exactly $\kappa = e$. Below we check
# the formula against quadrature for our proposals and for random ones.

# %%
def relative_second_moment(mean_q, std_q, mean_post=mu_post, std_post=sigma_post):
    """κ = E_q[w²]/p(x)² for q = N(mean_q, std_q²) and p(z|x) = N(mean_post, std_post²); inf if
    2σ_q² ≤ σ⋆².
    """
    mean_q = torch.as_tensor(mean_q, dtype=torch.float64)
    std_q = torch.as_tensor(std_q, dtype=torch.float64)
    gap = 2 * std_q**2 - std_post**2  # 2σ_q² - σ⋆², must be > 0
    safe_gap = gap.clamp(min=1e-300)
    rho = std_q**2 / (std_post * safe_gap.sqrt()) * torch.exp((mean_q - mean_post) ** 2 / safe_gap)
    return torch.where(gap > 0, rho, torch.inf)


for name, (mean, std) in proposals.items():
    assert math.isclose(relative_second_moment(mean, std).item(), rho_quad[name], rel_tol=1e-8), (
        name
    )
assert math.isclose(relative_second_moment(*proposals["poor q"]).item(), math.e, rel_tol=1e-12)
rng = np.random.default_rng(0)
for _ in range(20):  # random proposals with finite κ, within 2σ⋆ of the posterior mean
    mean = mu_post + sigma_post * rng.uniform(-2, 2)
    std = sigma_post * rng.uniform(0.8, 3.0)
    assert math.isclose(
        relative_second_moment(mean, std).item(), rho_by_quadrature(mean, std), rel_tol=1e-7
    )
assert relative_second_moment(mu_post, 0.7 * sigma_post).item() == math.inf  # 0.49 σ⋆² ≤ σ⋆²/2
assert math.isclose(
    relative_second_moment(mu_post, 2 * sigma_post).item(), 4 / math.sqrt(7), rel_tol=1e-12
)
print("closed-form κ agrees with quadrature to 1e-7 (relative) on 24 proposals")

# %% [markdown]
# The map below draws $\log_{10}(\kappa - 1)$ over proposals, in units of the posterior: the offset
# $(\mu_q - \mu_\star)/\sigma_\star$ and the width $\sigma_q/\sigma_\star$. The hatched band is
# $\sigma_q < \sigma_\star/\sqrt2$, where the variance is infinite. The landscape is lopsided: a
# centred proposal twice too wide has $\kappa = 4/\sqrt7 \approx 1.51$ (relative variance per sample
# $\kappa - 1 \approx 0.51$, or an ESS of about $K/1.5$), while one $\sqrt2$ times too narrow has
# infinite variance.

# %%
offsets = np.linspace(-5, 5, 301)  # (μ_q - μ⋆) / σ⋆
widths = np.geomspace(0.3, 4.0, 301)  # σ_q / σ⋆
offset_grid, width_grid = np.meshgrid(offsets, widths)
rho_map = relative_second_moment(
    mu_post + sigma_post * offset_grid, sigma_post * width_grid
).numpy()
log_excess = np.log10(np.clip(rho_map - 1, 1e-4, None))  # log10(κ - 1), κ - 1 ≥ 1e-4 for display
log_excess[~np.isfinite(rho_map)] = np.nan  # infinite variance: drawn hatched instead

# %%
fig, ax = plt.subplots(figsize=(8, 4.8))
mesh = ax.pcolormesh(
    offset_grid, width_grid, np.clip(log_excess, -3, 6), cmap="viridis", shading="auto"
)
fig.colorbar(mesh, ax=ax, label=r"$\log_{10}(\kappa - 1)$  (relative variance of one weight)")
contours = ax.contour(
    offset_grid,
    width_grid,
    log_excess,
    levels=[-1, 0, 1, 2, 4],
    colors="white",
    linewidths=0.8,
    linestyles="solid",
)
ax.clabel(contours, fmt=lambda v: f"$10^{{{v:.0f}}}$", fontsize=8)
ax.axhspan(0.3, 1 / math.sqrt(2), facecolor="lightgrey", edgecolor="dimgrey", hatch="//", alpha=0.9)
ax.axhline(1 / math.sqrt(2), color="black", lw=1.2)
ax.text(0, 0.5, r"$\sigma_q^2 \leq \sigma_\star^2/2$: infinite variance", ha="center", va="center",
        fontsize=10, bbox=dict(facecolor="white", edgecolor="none", alpha=0.85))
for name, (mean, std) in proposals.items():
    ax.plot(
        (mean - mu_post) / sigma_post,
        std / sigma_post,
        "*" if name == "exact posterior" else "o",
        ms=15 if name == "exact posterior" else 10,
        color=PROPOSAL_COLORS[name],
        mec="white",
        label=name,
    )
ax.set(
    yscale="log",
    xlabel=r"offset $(\mu_q - \mu_\star)/\sigma_\star$",
    ylabel=r"width $\sigma_q/\sigma_\star$",
    title="How good is a Gaussian proposal? (darker is better)",
)
ax.set_yticks([0.3, 0.5, 1 / math.sqrt(2), 1, 2, 4], ["0.3", "0.5", r"$1/\sqrt{2}$", "1", "2", "4"])
ax.yaxis.set_minor_formatter(plt.NullFormatter())  # no "6×10⁻¹" minor labels
ax.grid(False)
ax.legend(loc="upper right", fontsize=8, framealpha=0.9, frameon=True)
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Effective sample size
#
# The variance formula needs $\kappa$, which needs the posterior. In practice we only have the $K$
# weights we drew. How many samples are they worth?
#
# Kish's argument: normalize the weights, $\bar w_k = w_k / \sum_j w_j$, and consider a weighted
# average $\sum_k \bar w_k f(z_k)$ of independent values $f(z_k)$ with variance $\sigma_f^2$ each
# (holding the weights fixed). Its variance is $\sigma_f^2 \sum_k \bar w_k^2$. An unweighted average
# of $n$ independent values has variance $\sigma_f^2/n$. Setting the two equal defines the
# **effective sample size** (Kish, 1965):
#
# $$
# \mathrm{ESS} = \frac{1}{\sum_k \bar w_k^2} = \frac{\big(\sum_k w_k\big)^2}{\sum_k w_k^2},
# \qquad
# \log \mathrm{ESS} = 2\operatorname{logsumexp}_k(\log w_k) - \operatorname{logsumexp}_k(2\log w_k).
# $$
#
# - It is **scale-free**: multiplying every weight by a constant (such as the unknown $p(x)$)
#   changes nothing, so unnormalized log-weights are enough.
# - $1 \le \mathrm{ESS} \le K$: Cauchy–Schwarz gives $(\sum w_k)^2 \le K \sum w_k^2$ (equality iff
#   all weights are equal) and $\sum w_k^2 \le (\sum w_k)^2$ for $w_k \ge 0$ (equality iff one
#   weight carries everything).
# - For large $K$, dividing numerator and denominator by $K^2$ and $K$:
#   $\dfrac{\mathrm{ESS}}{K} = \dfrac{(\frac1K\sum w_k)^2}{\frac1K\sum w_k^2}
#   \to \dfrac{\mathbb{E}_q[w]^2}{\mathbb{E}_q[w^2]} = \dfrac{1}{\kappa}$
#   — the ESS **estimates $\kappa$ from the samples**, and with it the variance of $\hat p_K$,
#   $(\kappa - 1)/K \approx 1/\mathrm{ESS} - 1/K$.
#
# First the definition (normalized weights, by `softmax` of the log-weights, which is stable),
# checked against `vaelib.estimators.effective_sample_size` (the log-space form) to $10^{-10}$:

# %%
def my_effective_sample_size(log_w):
    w_bar = torch.softmax(log_w, dim=0)  # w̄_k = w_k / Σ_j w_j, over the K samples, (K, N)
    return 1.0 / w_bar.square().sum(dim=0)  # ESS = 1 / Σ_k w̄_k², (N,)


ess = {}
for name in proposals:
    ours = my_effective_sample_size(log_w_rel[name])  # (R,): one ESS per run of K = 1000
    ess[name] = effective_sample_size(log_w_rel[name], dim=0)
    assert torch.allclose(ours, ess[name], rtol=1e-10)
    # scale-free
    assert torch.allclose(effective_sample_size(log_w_rel[name] + 1234.5), ess[name], rtol=1e-10)
assert ((ess["prior"] >= 1) & (ess["prior"] <= max_samples)).all()
assert torch.allclose(
    ess["exact posterior"], torch.tensor(float(max_samples), dtype=torch.float64), rtol=1e-9
)
print(f"{'proposal':>16}  median ESS/K over {R} runs   1/κ (large-K limit)")
for name in proposals:
    fraction = ess[name] / max_samples
    limit = 1 / rho_quad[name]
    print(f"{name:>16}  {fraction.median():.4f} (5-95%: "
          f"{fraction.quantile(0.05):.3f}-{fraction.quantile(0.95):.3f})          {limit:.4f}")
    # ESS/K → 1/κ: within 10% at K = 1000 (skewed weights approach the limit from above, slowly)
    assert abs(fraction.median().item() - limit) < 0.1 * limit, name

# %%
fig, ax = plt.subplots(figsize=(7.5, 3.8))
names = list(proposals)
for i, name in enumerate(names):
    fraction = (ess[name] / max_samples).numpy()
    low, mid, high = np.quantile(fraction, [0.05, 0.5, 0.95])
    ax.bar(i, mid, color=PROPOSAL_COLORS[name], alpha=0.8, width=0.6)
    ax.errorbar(i, mid, yerr=[[mid - low], [high - mid]], color="black", capsize=6, lw=1)
    ax.hlines(1 / rho_quad[name], i - 0.38, i + 0.38, color=COLORS["exact"], ls="--", lw=1.5,
              label=r"large-$K$ limit $1/\kappa$" if i == 0 else None)
ax.set_xticks(range(len(names)), names)
ax.set(ylabel="ESS / K", ylim=(0, 1.08), title="Effective sample size per proposal (K = "
                                               f"{max_samples}; bars: median, 5-95% of runs)")
ax.legend(loc="upper left")
plt.show()

# %% [markdown]
# With the prior as proposal, 1000 samples are worth about 160; the good $q$ keeps 93% of them;
# the exact posterior all of them.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. The danger: a proposal lighter-tailed than the posterior
#
# Take a proposal centred on the posterior, $\mu_q = \mu_\star$, and only vary its width. The weight
# is a ratio of two Gaussians:
#
# $$
# \frac{w(z)}{p(x)} = \frac{p(z\mid x)}{q(z\mid x)}
# = \frac{\sigma_q}{\sigma_\star}\exp\!\Big(\frac{(z - \mu_\star)^2}{2}
#   \Big(\frac{1}{\sigma_q^2} - \frac{1}{\sigma_\star^2}\Big)\Big).
# $$
#
# - $\sigma_q \ge \sigma_\star$ (heavier tails than the target): the exponent is $\le 0$, so every
#   weight is **bounded**, $w \le p(x)\,\sigma_q/\sigma_\star$.
# - $\sigma_q < \sigma_\star$ (lighter tails): the weight **grows without bound** in the tails.
#   Samples from $q$ rarely go there — but when one does, its weight is huge. Whether the variance
#   survives is the section-5 condition: the integrand of $\kappa$,
#   $p(z\mid x)^2/q \propto \exp\!\big(-\tfrac{(z-\mu_\star)^2}{2}\big(\tfrac{2}{\sigma_\star^2} - \tfrac{1}{\sigma_q^2}\big)\big)$,
#   decays only if $\sigma_q^2 > \sigma_\star^2/2$.
#
# We compare three centred proposals: **wide** $\sigma_q = 1.2\,\sigma_\star$ (bounded weights),
# **narrow** $\sigma_q = 0.75\,\sigma_\star$ ($\sigma_q^2 = 0.56\,\sigma_\star^2$: finite but
# unbounded), and **too narrow** $\sigma_q = 0.5\,\sigma_\star$
# ($\sigma_q^2 = \sigma_\star^2/4 \le \sigma_\star^2/2$: infinite variance). First the integral
# itself, truncated to $|z - \mu_\star| \le T$: it converges as $T$ grows, or it does not.

# %%
widths_demo = {"wide (1.2σ⋆)": 1.2, "narrow (0.75σ⋆)": 0.75, "too narrow (0.5σ⋆)": 0.5}  # σ_q/σ⋆
WIDTH_COLORS = {
    "wide (1.2σ⋆)": "#56B4E9",
    "narrow (0.75σ⋆)": COLORS["proposal"],
    "too narrow (0.5σ⋆)": "#8c1c13",
}


def truncated_rho(std_q, half_width):
    """∫_{|z-μ⋆| ≤ T} p(z|x)² / q(z|x) dz for a centred q, by quadrature."""
    def integrand(z):
        return math.exp(
            2 * stats.norm.logpdf(z, mu_post, sigma_post) - stats.norm.logpdf(z, mu_post, std_q)
        )

    return integrate.quad(
        integrand, mu_post - half_width, mu_post + half_width, limit=200, epsrel=1e-10
    )[0]


half_widths = np.linspace(0.25, 12, 48) * sigma_post  # T, from 0.25 to 12 posterior stds
truncated = {label: np.array([truncated_rho(t * sigma_post, L) for L in half_widths])
             for label, t in widths_demo.items()}
for label, t in widths_demo.items():
    closed = relative_second_moment(mu_post, t * sigma_post).item()
    if math.isfinite(closed):  # the truncated integral converges to the closed form ...
        assert math.isclose(truncated[label][-1], closed, rel_tol=1e-5), label
    else:  # ... or keeps growing: by e^{(T/σ⋆)²}-fold at σ_q = σ⋆/2
        assert truncated[label][-1] > 1e50 and (np.diff(truncated[label]) > 0).all()
    print(f"{label:>20}: κ - 1 = {closed - 1:.4f}; truncated integral at T = 12σ⋆: "
          f"{truncated[label][-1]:.4g}")

# %% [markdown]
# Now the estimator itself, for $K$ up to a million samples: the running estimate
# $\hat p_k/p(x)$ and the running **sample variance of the weights**
# $\frac1k\sum_{j\le k}(w_j/p(x))^2 - (\hat p_k/p(x))^2$, for several independent runs.

# %%
long_samples = 10**6
runs = {}  # label -> list of log(w/p(x)), (K,) per seed
for label, t in widths_demo.items():
    q = gaussian_proposal(mu_post, t * sigma_post)
    seeds = [0, 1, 2] if label.startswith("too") else [0]
    runs[label] = [
        log_importance_weights(model, x, q, long_samples, torch.Generator().manual_seed(100 + s))[
            :, 0
        ]
        - log_px
        for s in seeds
    ]

k_long = torch.arange(1, long_samples + 1, dtype=torch.float64)


def running_moments(log_w):
    """Running p̂_k/p(x), sample variance of w/p(x), and ESS/k for k = 1..K (all (K,))."""
    w = log_w.exp()  # safe here: w/p(x) is O(1) on typical draws
    mean = w.cumsum(0) / k_long
    second = w.square().cumsum(0) / k_long
    return mean, second - mean.square(), mean.square() / second


moments = {label: [running_moments(lw) for lw in lws] for label, lws in runs.items()}


# %%
# the weight function: log w(z) - log p(x) from the model equals log(σ_q/σ⋆) + (z-μ⋆)²/2 · (1/σ_q² -
# 1/σ⋆²)
for label, t in widths_demo.items():
    q = gaussian_proposal(mu_post, t * sigma_post)
    log_w_model = model.log_joint(x, z_grid) - q.log_prob(z_grid) - log_px  # (G, 1)
    log_w_formula = math.log(t) + 0.5 * (z_grid[..., 0] - mu_post) ** 2 * (
        1 / (t * sigma_post) ** 2 - 1 / sigma2_post
    )
    assert torch.allclose(log_w_model, log_w_formula, rtol=0, atol=1e-9), label

# wide: weights bounded by σ_q/σ⋆, the sample variance settles on κ - 1, ESS/K on 1/κ
rho_wide = relative_second_moment(mu_post, 1.2 * sigma_post).item()
assert runs["wide (1.2σ⋆)"][0].exp().max() <= 1.2 + 1e-12
mean, var, ess_fraction = moments["wide (1.2σ⋆)"][0]
assert abs(var[-1] / (rho_wide - 1) - 1) < 0.02 and abs(ess_fraction[-1] * rho_wide - 1) < 0.01
# too narrow: the sample variance keeps growing and ESS/K keeps falling as K goes from 1e3 to 1e6
# (typically by a factor of tens; the median over the runs is asserted, since a single run can be
# caught just after a jump at K = 1e3)
growth = [var[-1] / var[10**3 - 1] for mean, var, ess_fraction in moments["too narrow (0.5σ⋆)"]]
ess_drop = [
    ess_fraction[10**3 - 1] / ess_fraction[-1]
    for mean, var, ess_fraction in moments["too narrow (0.5σ⋆)"]
]
assert np.median(growth) > 3 and np.median(ess_drop) > 3
for mean, var, ess_fraction in moments["too narrow (0.5σ⋆)"]:
    assert var[-1] > 10  # vs 0.05 for the wide proposal
    assert abs(mean[-1] - 1) < 0.2  # the mean is still finite: p̂ converges, slowly and by jumps
print(f"{'':>20}  sample variance of w/p(x) at K = 1e3, 1e4, 1e5, 1e6      ESS/K at the same K")
for label in widths_demo:
    for mean, var, ess_fraction in moments[label]:
        at = [10**j - 1 for j in (3, 4, 5, 6)]
        print(f"{label:>20}  " + "  ".join(f"{var[i]:9.3f}" for i in at) + "      "
              + "  ".join(f"{ess_fraction[i]:.3f}" for i in at))

# %%
# Plotting: the weight function and the truncated second moment.
def draw_weight_function(ax):
    """w(z)/p(x) for each width of q: bounded only if q is wider than the posterior."""
    z_tail = np.linspace(mu_post - 5 * sigma_post, mu_post + 5 * sigma_post, 400)
    for label, t in widths_demo.items():
        weight = t * np.exp(0.5 * ((z_tail - mu_post) / sigma_post) ** 2 * (1 / t**2 - 1))  # w/p(x)
        ax.plot(
            (z_tail - mu_post) / sigma_post, weight, color=WIDTH_COLORS[label], lw=2, label=label
        )
    ax.axhline(1.0, color=COLORS["exact"], ls="--", lw=1.2, label="$w = p(x)$ (exact posterior)")
    ax.set(yscale="log", xlabel=r"$(z - \mu_\star)/\sigma_\star$", ylabel=r"$w(z)\,/\,p(x)$",
           title="The weight function: bounded only if $q$ is wider")
    ax.legend(fontsize=8)


def draw_truncated_moment(ax):
    """κ integrated out to ±T: it converges to the closed form, or grows without bound."""
    for label in widths_demo:
        ax.plot(
            half_widths / sigma_post, truncated[label], color=WIDTH_COLORS[label], lw=2, label=label
        )
        closed = relative_second_moment(mu_post, widths_demo[label] * sigma_post).item()
        if math.isfinite(closed):
            ax.axhline(closed, color=WIDTH_COLORS[label], ls="--", lw=1)
    ax.plot([], [], "k--", lw=1, label=r"closed-form $\kappa$")
    ax.set(
        yscale="log",
        ylim=(0.5, 1e12),
        xlabel=r"truncation $T/\sigma_\star$",
        ylabel=r"$\int_{|z-\mu_\star|\leq T} p(z\mid x)^2/q\,dz$",
        title=r"$\kappa = \mathbb{E}_q[w^2]/p(x)^2$: converges, or not",
    )
    ax.legend(fontsize=8)


# %%
# Plotting: the running estimate and the running sample variance.
def draw_running_means(ax, steps):
    """The running p̂_k/p(x) of each run, at the sample counts `steps` + 1."""
    for label in widths_demo:
        for i, (mean, var, ess_fraction) in enumerate(moments[label]):
            ax.plot(
                steps + 1,
                mean[steps].numpy(),
                color=WIDTH_COLORS[label],
                lw=1.3,
                alpha=1 - 0.25 * i,
                label=label if i == 0 else None,
            )
    reference_line(ax, 1.0, label="exact: 1")
    ax.set(
        xscale="log",
        ylim=(0.5, 1.5),
        xlabel="number of samples $k$",
        ylabel=r"running $\hat "
        r"p_k(x)\,/\,p(x)$",
        title="The running estimate: jumps when a rare huge weight arrives",
    )
    ax.legend(fontsize=8)

# %%
def draw_running_variances(ax, steps):
    """The running sample variance of w/p(x) of each run, and the exact κ - 1 where finite."""
    for label in widths_demo:
        for i, (mean, var, ess_fraction) in enumerate(moments[label]):
            ax.plot(
                steps + 1,
                var[steps].numpy(),
                color=WIDTH_COLORS[label],
                lw=1.3,
                alpha=1 - 0.25 * i,
                label=label if i == 0 else None,
            )
        closed = relative_second_moment(mu_post, widths_demo[label] * sigma_post).item()
        if math.isfinite(closed):
            ax.axhline(closed - 1, color=WIDTH_COLORS[label], ls="--", lw=1)
    ax.plot([], [], "k--", lw=1, label=r"exact $\kappa - 1$ (where finite)")
    ax.set(xscale="log", yscale="log", ylim=(1e-3, None), xlabel="number of samples $k$",
           ylabel=r"sample variance of $w/p(x)$", title="The sample variance settles only if it "
                                                        "exists")
    ax.legend(fontsize=8)


# %%
fig, axes = plt.subplots(2, 2, figsize=(13, 8))
steps = np.unique(np.geomspace(1, long_samples, 600).astype(int)) - 1  # log-spaced points to draw
draw_weight_function(axes[0, 0])
draw_truncated_moment(axes[0, 1])
draw_running_means(axes[1, 0], steps)
draw_running_variances(axes[1, 1], steps)
fig.tight_layout()
plt.show()

# %% [markdown]
# Read the four panels together:
#
# - **Wide** ($\sigma_q = 1.2\,\sigma_\star$): weights never exceed $1.2\,p(x)$; the running
#   estimate settles on the truth and the sample variance on $\kappa - 1$ — an error bar computed
#   from the samples can be trusted.
# - **Narrow** ($0.75\,\sigma_\star$): the variance is finite ($\kappa - 1 \approx 0.59$), but the
#   weights are unbounded and the sample variance approaches its limit slowly and by jumps.
# - **Too narrow** ($0.5\,\sigma_\star$): the estimate is still unbiased and converges (the mean of
#   $w$ is finite for any $\sigma_q$), but by jumps, and the sample variance **never settles**:
#   every rare tail sample pushes it up again, and ESS/K keeps falling as $K$ grows. Any error bar
#   computed from the samples is meaningless, and most runs sit *below* the truth between jumps.
#
# This is the practical danger for VAEs: an encoder trained by maximizing the ELBO tends to be
# *narrower* than the true posterior (the KL it minimizes, $\mathrm{KL}(q\,\Vert\,p)$, penalizes
# mass where the posterior has none far more than missing mass; chapter 5), exactly the dangerous
# side. When such an encoder is used as the proposal for $\log p(x)$ (chapter 8), a proposal with
# heavier tails (a wider Gaussian, a Student-$t$, or a mixture that keeps some mass on the prior) is
# the safe choice.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. A good proposal in one dimension is not good enough in fifty
#
# Let the latent be $d$-dimensional, with posterior $\mathcal N(\mu_\star, \Sigma_\star)$, and take
# the proposal $q = \mathcal N(\mu_\star, c\,\Sigma_\star)$: the right mean and shape, inflated by a
# factor $c$. Change variables to $u = L^{-1}(z - \mu_\star)$ with $\Sigma_\star = L L^\top$: the
# ratio $p(z\mid x)/q(z\mid x)$ does not change (the Jacobians cancel), and both densities become
# products over the $d$ coordinates of $u$, with $\sigma_\star = 1$ and $\sigma_q^2 = c$. So
# $\kappa$ multiplies across coordinates:
#
# $$
# \kappa_d = \Big(\frac{c}{\sqrt{2c - 1}}\Big)^{d},
# \qquad \frac{\mathrm{ESS}}{K} \to \kappa_d^{-1} \text{ — exponentially small in } d .
# $$
#
# With $c = 2$ ($\sigma_q \approx 1.41\,\sigma_\star$ in every direction), one dimension keeps 87%
# of the samples; fifty keep less than 0.1%. We check this on `LinearGaussian` models with
# $d = 1, \dots, 50$ latents and $D = 64$, using `FullGaussian` for the inflated exact posterior.

# %%
inflation = 2.0  # c: q = N(μ⋆, c Σ⋆)
latent_dims = [1, 2, 5, 10, 20, 50]
dim_samples = 20_000
ess_by_dim = []
for d in latent_dims:
    model_d = LinearGaussian.random(64, d, noise_std=0.5, generator=generator)
    x_d, _ = model_d.sample(1, generator=generator)  # (1, 64)
    mean_d, cov_d = model_d.posterior_parameters(x_d)
    q_d = FullGaussian(mean_d, inflation * cov_d)
    log_w_d = log_importance_weights(model_d, x_d, q_d, dim_samples, generator=generator)  # (K, 1)
    ess_by_dim.append(effective_sample_size(log_w_d).item() / dim_samples)
rho_1 = inflation / math.sqrt(2 * inflation - 1)
predicted_by_dim = [rho_1 ** (-d) for d in latent_dims]
for d, measured, predicted in zip(latent_dims, ess_by_dim, predicted_by_dim):
    print(f"d = {d:>2}: ESS/K = {measured:.5f}   predicted 1/rho_d = {predicted:.5f}")
    # The ESS's own noise grows with d too (its relative s.d. is about 3% at d = 10 and 13% at d =
    # 20
    # here), and once κ_d is comparable to K the sample has not met the weights that matter.
    if d <= 10:
        assert abs(measured / predicted - 1) < 0.15, d
    elif d == 20:
        assert 0.5 < measured / predicted < 2, d

fig, ax = plt.subplots(figsize=(7, 3.8))
dims_fine = np.arange(1, 51)
ax.plot(dims_fine, rho_1 ** (-dims_fine.astype(float)), "--", color=COLORS["exact"], lw=1.2,
        label=r"$1/\kappa_d = (\sqrt{2c-1}/c)^d$")
ax.plot(latent_dims, ess_by_dim, "o", color=COLORS["importance"], ms=8, label="measured, K = "
                                                                              f"{dim_samples}")
ax.set(yscale="log", xlabel="latent dimension $d$", ylabel="ESS / K",
       title=r"Proposal $\mathcal{N}(\mu_\star, 2\Sigma_\star)$: ESS decays exponentially with $d$")
ax.legend()
plt.show()

# %% [markdown]
# At $d = 50$, $\kappa_d \approx 1300$ is no longer small next to $K = 20\,000$, and the measured
# ESS *over*states its limit: the sample has not yet met the rare large weights that dominate
# $\mathbb{E}_q[w^2]$ — section 7's lesson again, in many dimensions.
#
# The proposal has to be close to the posterior **in every direction at once**. This is why the VAE
# does not hand-pick $q$: it *learns* one, $q(z\mid x; \phi)$, for every $x$ (chapters 4–5), and why
# the best bounds (IWAE, chapter 4) are built on exactly this estimator.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 9. Explore: move the proposal
#
# Move the proposal's mean $\mu_q$ and standard deviation $\sigma_q$, and the number of samples $K$.
# Left: the target posterior, $q$, the prior, and the normalized weight $\bar w_k$ of every sample
# (dots, right axis). Right: the running estimate $\log \hat p_k$ against $k$ with the exact
# $\log p(x)$, and (where the variance is finite) the band $\pm 2\sqrt{(\kappa-1)/k}$, the
# delta-method standard deviation of $\log \hat p_k$. Things to try: put $q$ on the posterior (the
# weights all equal $1/K$, ESS $= K$); make it narrow (one weight takes over, the estimate jumps
# below and above the truth); make it wide (slower but steady); move it off-centre.
# The same random numbers $\varepsilon_k$ are used as you move $\mu_q$ and $\sigma_q$
# ($z_k = \mu_q + \sigma_q\varepsilon_k$), so what changes is the proposal, not the luck.

# %%
# Plotting: the left panel.
def draw_proposal_and_weights(ax_z, z, log_w, mean, scale, num_samples):
    """Left panel: the target, q and the prior, each draw's normalized weight on a right axis."""
    grid = np.linspace(-2.5, 4.0, 500)
    ax_z.fill_between(
        grid,
        normal_pdf(grid, mu_post, sigma_post),
        color=COLORS["posterior"],
        alpha=0.25,
        label=r"target $p(z\mid x)$",
    )
    ax_z.plot(
        grid,
        normal_pdf(grid, mean, scale),
        color=COLORS["proposal"],
        lw=2,
        label=r"proposal $q(z\mid x)$",
    )
    ax_z.plot(
        grid,
        normal_pdf(grid, 0.0, 1.0),
        color=COLORS["prior"],
        ls=":",
        lw=1.5,
        label="prior $p(z)$",
    )
    ax_z.set(xlabel="latent $z$", ylabel="density", xlim=(grid[0], grid[-1]), ylim=(0, None),
             title=r"$q$, the target, and the weights")
    ax_w = ax_z.twinx()
    w_bar = torch.softmax(log_w, dim=0).numpy()
    ax_w.plot(z[:, 0, 0].numpy(), w_bar, "o", color=COLORS["importance"], ms=3, alpha=0.6)
    ax_w.set_ylim(0, max(1.1 * w_bar.max(), 2.0 / num_samples))
    ax_w.set_ylabel(r"normalized weight $\bar w_k$", color=COLORS["importance"])
    ax_w.grid(False)
    ax_z.plot([], [], "o", color=COLORS["importance"], ms=3, label=r"$\bar w_k$ (right axis)")
    ax_z.legend(loc="upper left", fontsize=8)


# %%
# Plotting: the right panel.
def draw_running_estimate(ax_k, log_w, rho, ess_value, num_samples):
    """Right panel: the running log p̂_k against the exact log p(x), with ±2 standard errors."""
    k = np.arange(1, num_samples + 1)
    running = (torch.logcumsumexp(log_w, dim=0).numpy() - np.log(k))
    ax_k.plot(k, running, color=COLORS["importance"], lw=1.5, label=r"running $\log \hat p_k$")
    reference_line(ax_k, log_px, label=r"exact $\log p(x)$")
    if math.isfinite(rho):
        band = 2 * np.sqrt((rho - 1) / k)
        ax_k.fill_between(k, log_px - band, log_px + band, color=COLORS["exact"], alpha=0.08,
                          label=r"$\pm 2\sqrt{(\kappa-1)/k}$")
        variance_text = fr"$\kappa - 1 = {rho - 1:.3g}$"
    else:
        variance_text = r"$\kappa = \infty$: $\sigma_q^2 \leq \sigma_\star^2/2$"
    spread = np.abs(running[min(9, num_samples - 1):] - log_px).max()  # ignore the first few k
    half_height = max(0.5, 1.2 * spread)  # the exact value and the whole path stay in view
    ax_k.set(xscale="log", xlim=(1, num_samples), ylim=(log_px - half_height, log_px + half_height),
             xlabel="number of samples $k$", ylabel=r"$\log \hat p_k(x)$",
             title=f"Estimate, ESS = {ess_value:.1f} of K = {num_samples}; " + variance_text)
    ax_k.legend(loc="lower right", fontsize=8)


# %%
def draw_importance_sampling(fig, mean, scale, num_samples):
    q = gaussian_proposal(mean, scale)
    # (K, 1, 1), z_k = μ_q + σ_q ε_k
    z = q.rsample(num_samples, generator=torch.Generator().manual_seed(7))
    log_w = (model.log_joint(x, z) - q.log_prob(z))[:, 0]  # (K,)
    estimate = log_mean_exp(log_w).item()
    ess_value = effective_sample_size(log_w).item()
    rho = relative_second_moment(mean, scale).item()

    ax_z, ax_k = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.15, 1]})
    draw_proposal_and_weights(ax_z, z, log_w, mean, scale, num_samples)
    draw_running_estimate(ax_k, log_w, rho, ess_value, num_samples)
    fig.tight_layout()
    limit_text = (
        f"large-K limit 1/κ = {1 / rho:.3g}"
        if math.isfinite(rho)
        else "κ = ∞, so ESS/K → 0 as K grows"
    )
    return (f"<b>log p̂_K = {estimate:.4f}</b>, exact log p(x) = {log_px:.4f} (error "
            f"{estimate - log_px:+.4f}); ESS = {ess_value:.1f} of K = {num_samples} (ESS/K = "
            f"{ess_value / num_samples:.3f}; {limit_text})")


# %% [markdown]
# The static view (for GitHub and nbval) with a proposal a bit off-centre and too narrow,
# $\sigma_q = 0.55\,\sigma_\star$, inside the infinite-variance band:

# %%
static_figure(draw_importance_sampling, figsize=(13, 4.3),
              mean=mu_post + 0.3 * sigma_post, scale=0.55 * sigma_post, num_samples=1000)

# %%
explorer = FigureExplorer(
    draw_importance_sampling,
    figsize=(13, 4.3),
    mean=widgets.FloatSlider(
        value=round(mu_post + 0.3 * sigma_post, 2),
        min=-1.0,
        max=3.5,
        step=0.05,
        description="mean μ_q",
        continuous_update=True,
    ),
    scale=widgets.FloatLogSlider(
        value=round(0.55 * sigma_post, 3),
        base=10,
        min=-1.3,
        max=0.4,
        step=0.02,
        description="std σ_q",
        readout_format=".3f",
    ),
    num_samples=widgets.SelectionSlider(
        options=[10, 100, 1000, 10000], value=1000, description="K"
    ),
)
explorer

# %% [markdown] slideshow={"slide_type": "slide"}
# > **Classic mistakes**
# >
# > - **Averaging the log-weights instead of the weights.** $\frac1K\sum_k \log w_k$ is not an
# >   estimate of $\log p(x)$: it is a Monte Carlo estimate of the ELBO (chapter 4), whose
# >   expectation is a lower bound. Average the weights, then take the log — in log space,
# >   `logsumexp(log_w) - log K`, never `log(mean(exp(log_w)))`, which underflows.
# > - **Treating $\log \hat p_K$ as unbiased.** Only $\hat p_K$ is. Averaging several *log*
# >   estimates keeps the bias $\approx (\kappa-1)/2K$; pooling all their weights into one
# >   log-mean-exp shrinks it.
# > - **Dropping a normalizing constant.** For $p(x)$ every constant matters: $q$'s
# >   $-\tfrac12\log 2\pi\sigma_q^2$, the likelihood's $-\tfrac D2 \log 2\pi s^2$. (For the ESS or a
# >   self-normalized average they cancel — which is why the mistake goes unnoticed there.)
# > - **A proposal narrower than the posterior.** Below $\sigma_q^2 = \sigma_\star^2/2$ the weights
# >   have infinite variance; above it but below $\sigma_\star^2$ they are still unbounded. The
# >   sample variance and the ESS from one run look fine until a rare weight arrives. When unsure,
# >   err wide.
# > - **Reading a high ESS as proof.** The ESS only sees where $q$ sampled: a proposal that misses a
# >   region (a second mode, a heavy tail) can report a large ESS and a wrong answer.
# > - **A proposal with too little support.** $q(z\mid x)$ must be positive wherever $p(x, z)$ is; a
# >   truncated proposal silently drops that part of the integral (it is no longer unbiased).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - $p(x) = \mathbb{E}_{q(z\mid x)}[w]$ with $w = p(x, z)/q(z\mid x) = p(x)\,p(z\mid x)/q(z\mid x)$,
#   for any $q$ positive where $p(x, z)$ is. The prior is the special case of chapter 2.
# - $\hat p_K = \frac1K\sum_k w_k$ is unbiased for $p(x)$; $\log\hat p_K$ is biased low, by about
#   $(\kappa - 1)/2K$ (Jensen — the idea behind the ELBO and the IWAE bound).
# - $\operatorname{Var}[\hat p_K]/p(x)^2 = (\kappa - 1)/K$ with
#   $\kappa = \int p(z\mid x)^2/q\,dz \ge 1$, measured on a log–log plot as slope $-1$. For
#   Gaussians,
#   $\kappa = \frac{\sigma_q^2}{\sigma_\star\sqrt{2\sigma_q^2 - \sigma_\star^2}} \exp\frac{(\mu_q-\mu_\star)^2}{2\sigma_q^2 - \sigma_\star^2}$;
#   $\kappa = 1$ (zero variance) exactly at $q = p(z\mid x)$.
# - $\mathrm{ESS} = (\sum w_k)^2/\sum w_k^2 \in [1, K]$, scale-free, computed from log-weights;
#   $\mathrm{ESS}/K \to 1/\kappa$.
# - A proposal lighter-tailed than the posterior has unbounded weights, and infinite variance when
#   $\sigma_q^2 \le \sigma_\star^2/2$: the running estimate jumps and the sample variance never
#   settles. Err on the wide side.
# - In $d$ dimensions $\kappa$ multiplies across directions: the proposal must match the posterior
#   everywhere at once. That is what the VAE's encoder is trained to do.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# ### Exercise 1 · Self-normalized importance sampling: the posterior mean
#
# The weights also give **posterior expectations** without knowing $p(x)$. Since
# $p(z\mid x) = p(x, z)/p(x)$ and $p(x) = \mathbb{E}_q[w]$,
#
# $$
# \mathbb{E}_{p(z\mid x)}[f(z)] = \frac{\mathbb{E}_q[w(z) f(z)]}{\mathbb{E}_q[w(z)]}
# \approx \frac{\sum_k w_k f(z_k)}{\sum_k w_k} = \sum_k \bar w_k\, f(z_k).
# $$
#
# Write `posterior_mean_estimate(model, x, proposal, num_samples, generator)` that returns this
# estimate of $\mathbb{E}[z\mid x]$ with $f(z) = z$, shape `(N, d)`. Draw the $K$ samples with
# **one** call `proposal.rsample(num_samples, generator=generator)` (the check compares with a
# reference that uses the same random numbers), and stay in log space: the check includes data
# points whose log-weights are below $-1000$ (where `exp` underflows to 0).

# %% tags=["solution"]
def posterior_mean_estimate(model, x, proposal, num_samples, generator=None):
    """The self-normalized importance-sampling estimate of E[z|x]: x (N, D) -> (N, d)."""
    # Σ_k w̄_k z_k with w̄ = softmax(log w) over the K samples (stable for log-weights of -1000)
    z = proposal.rsample(num_samples, generator=generator)  # (K, N, d)
    log_w = model.log_joint(x, z) - proposal.log_prob(z)  # (K, N)
    w_bar = torch.softmax(log_w, dim=0)  # normalized weights, each column sums to 1
    return (w_bar[..., None] * z).sum(dim=0)  # (N, d)


# %%
from vaelib.exercises import check_self_normalized_posterior_mean

check_self_normalized_posterior_mean(posterior_mean_estimate);

# %% [markdown]
# Self-normalized estimates are *not* unbiased (a ratio of two averages), but they are consistent,
# and they are how a VAE's importance weights are turned into posterior summaries.
#
# ### Exercise 2 · When the mean is off, how wide should $q$ be?
#
# Your proposal's mean is off by $\Delta = \mu_q - \mu_\star$, and you may only choose its variance
# $v = \sigma_q^2$. Using the closed form of $\kappa$ from section 5, find the $v$ that minimizes
# the variance of the weights. (Hint: minimize
# $\log\kappa = \log v - \tfrac12\log(2v - \sigma_\star^2)
# + \Delta^2/(2v -
#   \sigma_\star^2)$; setting the derivative to zero gives a quadratic in $v$. Only one root lies where $\kappa$ is finite.) Write `best_proposal_variance(posterior_var, offset)` returning that $v$.

# %% tags=["solution"]
def best_proposal_variance(posterior_var, offset):
    """The proposal variance that minimizes κ when q's mean is off by `offset` (μ_q minus μ⋆)."""
    # d log κ / dv = 1/v - 1/(2v - σ⋆²) - 2Δ²/(2v - σ⋆²)² = 0  ⟺  2v² - (3σ⋆² + 2Δ²) v + σ⋆⁴ = 0;
    # the larger root is the minimum (the smaller one lies below σ⋆²/2, where κ = ∞)
    linear = 3 * posterior_var + 2 * offset**2
    return (linear + math.sqrt(linear**2 - 8 * posterior_var**2)) / 4


# %%
from vaelib.exercises import check_best_proposal_variance

check_best_proposal_variance(best_proposal_variance);

# %% [markdown]
# With $\Delta = 0$ the answer is $\sigma_\star^2$; with any offset it is *larger*. When unsure of
# the mean, widen the proposal.
#
# ### Exercise 3 · Which moments of the weights are finite?
#
# The variance of the sample *variance* depends on $\mathbb{E}_q[w^4]$, so an error bar is
# trustworthy only if the fourth moment is finite too. Repeat the section-5 argument for
# $\mathbb{E}_q[w^k] = p(x)^k \int p(z\mid x)^k / q(z\mid x)^{k-1}\,dz$ with a proposal centred on
# the posterior: for which $\sigma_q$ is it finite? Write `smallest_proposal_std(posterior_std, k)`
# returning the threshold: $\mathbb{E}_q[w^k] < \infty$ exactly when $\sigma_q$ is *above* it
# ($k \ge 1$; for $k = 2$ you should get $\sigma_\star/\sqrt2$).

# %% tags=["solution"]
def smallest_proposal_std(posterior_std, k):
    """The proposal std above which the k-th moment of the weights is finite (q centred on p(z|x)).
    """
    # p^k / q^(k-1) ∝ exp(-(z-μ⋆)²/2 · [k/σ⋆² - (k-1)/σ_q²]) decays iff σ_q² > σ⋆² (k-1)/k
    return posterior_std * math.sqrt((k - 1) / k)


# %%
from vaelib.exercises import check_smallest_proposal_std

check_smallest_proposal_std(smallest_proposal_std);

# %% [markdown]
# For $k = 4$ the threshold is $\sigma_\star\sqrt{3/4} \approx 0.87\,\sigma_\star$: the "narrow"
# proposal of section 7 ($0.75\,\sigma_\star$) has a finite variance but an infinite fourth moment,
# which is why its sample variance wandered before settling. As $k \to \infty$ the threshold tends
# to $\sigma_\star$: only a proposal at least as wide as the posterior has every moment finite.
