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
# # Chapter 4 — Jensen's inequality and the evidence lower bound (ELBO)
#
# *Symbols: see the course's [notation page](../docs/notation.md).*
#
# Chapter 3 gave us an **unbiased** estimate of the marginal likelihood: draw $z_1, \dots, z_K$
# from a proposal $q(z\mid x)$ and average the importance weights,
#
# $$\hat p_K(x) = \frac1K \sum_{k=1}^K w_k, \qquad w_k = \frac{p(x, z_k)}{q(z_k\mid x)}, \qquad
# \mathbb E_q\big[\hat p_K(x)\big] = p(x).$$
#
# But what we want to maximize is the log-likelihood $\sum_n \log p(x_n)$, and $\log$ is
# **concave**: the log of an unbiased estimate of $p(x)$ is *biased low* for $\log p(x)$. This
# chapter turns that bias into the central object of the VAE:
#
# 1. **Jensen's inequality** $\log \mathbb E[w] \ge \mathbb E[\log w]$, proved, measured and drawn;
# 2. the **ELBO** $= \mathbb E_q[\log w]$, and its standard form
#    $\mathbb E_q[\log p(x\mid z)] - \mathrm{KL}(q(z\mid x)\,\|\,p(z))$; the two forms checked equal
#    by Monte Carlo and *exactly*, in closed form, on the linear-Gaussian model;
# 3. the ELBO as a **lower** bound, $\mathrm{ELBO} \le \log p(x)$ (which way round, and what it does
#    *not* promise);
# 4. the **IWAE bound**,
#    $\mathrm{ELBO} = \mathrm{IWAE}_1 \le \mathrm{IWAE}_K \le \mathrm{IWAE}_{K+1} \le \log p(x)$,
#    climbing to the exact $\log p(x)$ as $K$ grows.
#
# | symbol | meaning | code |
# | --- | --- | --- |
# | $w = p(x,z)/q(z\mid x)$ | importance weight | `log_w`, shape `(K, N)` |
# | $\mathrm{ELBO}(q) = \mathbb E_q[\log w]$ | evidence lower bound | `vaelib.estimators.elbo` |
# | $\mathrm{IWAE}_K = \mathbb E[\log \hat p_K]$ | importance-weighted bound | `vaelib.estimators.iwae_bound` |
# | $\mathrm{KL}(q\,\|\,p(z))$ | KL to the prior $\mathcal N(0, I)$ | `vaelib.kl.gaussian_kl` |

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
import itertools
import math

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch

from vaelib.device import seed_everything
from vaelib.estimators import elbo, iwae_bound, log_importance_weights, log_mean_exp
from vaelib.exercises import (
    check_elbo_from_log_weights,
    check_iwae_from_log_weights,
    check_which_is_larger,
)
from vaelib.figures import COLORS, FigureExplorer, reference_line, static_figure, use_course_style
from vaelib.gaussian import DiagonalGaussian, FullGaussian
from vaelib.kl import gaussian_kl
from vaelib.toy import LinearGaussian

use_course_style()
generator = seed_everything(0)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Jensen's inequality
#
# A function $f$ is **concave** when every chord lies below its graph:
# $f(\lambda a + (1-\lambda) b) \ge \lambda f(a) + (1-\lambda) f(b)$ for $\lambda\in[0,1]$. The
# logarithm is concave ($\log'' w = -1/w^2 < 0$). **Jensen's inequality** extends the chord from two
# points to any distribution: for a positive random variable $w$ with finite mean,
#
# $$\boxed{\;\log \mathbb E[w] \;\ge\; \mathbb E[\log w]\;}$$
#
# with equality **only when $w$ is constant** (almost surely).
#
# **Proof in two lines.** A concave function lies below each of its tangents. Take the tangent of
# $\log$ at $\mu = \mathbb E[w]$:
#
# $$\log w \;\le\; \log \mu + \frac{w - \mu}{\mu} \qquad\text{for all } w > 0 .$$
#
# Take expectations of both sides: $\mathbb E[\log w] \le \log\mu + (\mathbb E[w] - \mu)/\mu =
# \log \mathbb E[w]$. Since $\log$ is *strictly* concave, the tangent touches it only at $w=\mu$, so
# equality needs $w = \mu$ with probability one.

# %%
mu_w = 2.2
w_grid = torch.linspace(1e-3, 50.0, 100_001, dtype=torch.float64)
tangent = math.log(mu_w) + (w_grid - mu_w) / mu_w  # the tangent of log at w = mu_w
distance = tangent - torch.log(w_grid)  # >= 0: log lies below its tangent everywhere ...
assert (distance >= -1e-15).all()
assert abs(w_grid[distance.argmin()] - mu_w) < 1e-3  # ... and touches it only at w = mu_w

# %% [markdown]
# **Measured.** Let $\log w \sim \mathcal N(a, \tau^2)$ (a *log-normal* weight: a good model of
# importance weights in many dimensions, where $\log w$ is a sum of many small terms). Then
# $\mathbb E[\log w] = a$, while the Gaussian moment generating function
# $\mathbb E[e^{t\,\log w}] = e^{ta + t^2\tau^2/2}$ at $t = 1$ gives
# $\mathbb E[w] = e^{a + \tau^2/2}$, so
#
# $$\log \mathbb E[w] - \mathbb E[\log w] = \frac{\tau^2}{2}.$$
#
# The Jensen gap grows with the *spread* of $\log w$; it is zero only for $\tau = 0$. We estimate
# both sides from $10^6$ samples (the log of a mean of weights is computed with the stable
# `log_mean_exp` of chapter 2), each with its standard error.

# %%
a, tau = 0.0, 1.0  # log w ~ N(a, τ²): a and τ name only this example
num_samples = 1_000_000
eps = torch.randn(num_samples, generator=generator, dtype=torch.float64)
log_w_lognormal = a + tau * eps  # log w ~ N(a, τ²)

mean_of_log = log_w_lognormal.mean()  # E[log w] ≈ (1/K) Σ log w_k
log_of_mean = log_mean_exp(log_w_lognormal, dim=0)  # log E[w] ≈ log (1/K) Σ w_k
se_mean_of_log = log_w_lognormal.std() / math.sqrt(num_samples)
relative_w = torch.exp(log_w_lognormal - log_of_mean)  # w / mean(w)
se_log_of_mean = relative_w.std() / math.sqrt(num_samples)  # delta method: sd(w) / (E[w] √K)

print(f"E[log w]: {mean_of_log:.4f} ± {se_mean_of_log:.4f}   (exact a = {a})")
print(f"log E[w]: {log_of_mean:.4f} ± {se_log_of_mean:.4f}   (exact a + τ²/2 = {a + tau**2 / 2})")
print(f"Jensen gap: {log_of_mean - mean_of_log:.4f}   (exact τ²/2 = {tau**2 / 2})")
assert abs(mean_of_log - a) < 4 * se_mean_of_log
assert abs(log_of_mean - (a + tau**2 / 2)) < 4 * se_log_of_mean
assert log_of_mean > mean_of_log  # the direction: log of the mean >= mean of the log

# %% [markdown]
# **Drawn.** Left: a weight taking two values with probability ½ each. The point
# $(\mathbb E[w], \mathbb E[\log w])$ is the midpoint of the chord; the curve above it is at
# $\log\mathbb E[w]$. Right: the same picture for the log-normal weight: the cloud of points
# $(w_k, \log w_k)$ sits on the curve, its centre of mass $(\bar w, \overline{\log w})$ sits below
# it, by $\tau^2/2$.

# %%
fig, (ax_chord, ax_cloud) = plt.subplots(1, 2, figsize=(11, 4.2))

curve = np.linspace(0.05, 8.0, 400)
w_two = np.array([0.4, 4.0])  # w takes these two values, probability ½ each
mean_w, mean_log = w_two.mean(), np.log(w_two).mean()
ax_chord.plot(curve[curve < 5.5], np.log(curve[curve < 5.5]), color="black", label="log w")
ax_chord.plot(w_two, np.log(w_two), "o-", color=COLORS["elbo"], label="chord between the values")
ax_chord.plot(mean_w, math.log(mean_w), "o", color=COLORS["importance"], ms=8, label="log E[w]")
ax_chord.plot(mean_w, mean_log, "s", color=COLORS["elbo"], ms=8, label="E[log w]")
ax_chord.annotate("", xy=(mean_w, math.log(mean_w)), xytext=(mean_w, mean_log),
                  arrowprops=dict(arrowstyle="<->", color="black"))
ax_chord.text(mean_w + 0.1, (mean_log + math.log(mean_w)) / 2,
              f"Jensen gap\n{math.log(mean_w) - mean_log:.2f} nats", va="center")
ax_chord.set(title="Two values: the chord lies below the log", xlabel="w", ylabel="log w",
             ylim=(-1.3, 2.0))
ax_chord.legend(loc="lower right")

shown = log_w_lognormal[:300].numpy()  # a few of the log-normal samples
bar_w, bar_log = math.exp(log_of_mean), float(mean_of_log)
ax_cloud.plot(curve, np.log(curve), color="black", label="log w")
ax_cloud.plot(np.exp(shown), shown, "o", color=COLORS["prior"], alpha=0.3, ms=4,
              label="samples (w_k, log w_k)")
ax_cloud.plot(bar_w, math.log(bar_w), "o", color=COLORS["importance"], ms=8, label="log of mean w")
ax_cloud.plot(bar_w, bar_log, "s", color=COLORS["elbo"], ms=8, label="mean of log w")
ax_cloud.annotate("", xy=(bar_w, math.log(bar_w)), xytext=(bar_w, bar_log),
                  arrowprops=dict(arrowstyle="<->", color="black"))
ax_cloud.text(bar_w + 0.15, (bar_log + math.log(bar_w)) / 2, f"gap ≈ τ²/2 = {tau**2 / 2:.2f}",
              va="center")
ax_cloud.set(title=f"log w ~ N({a:g}, {tau:g}²): the centre of mass lies below", xlabel="w",
             ylabel="log w", xlim=(0, 8), ylim=(-3, 2.3))
ax_cloud.legend(loc="lower right")
plt.tight_layout()
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The ELBO: Jensen applied to importance sampling
#
# Take any proposal $q(z\mid x)$ that is positive wherever $p(x, z)$ is. Multiply and divide by it
# inside the integral (chapter 3), then apply Jensen:
#
# $$
# \log p(x) = \log \int p(x, z)\,dz
# = \log \int q(z\mid x)\,\frac{p(x,z)}{q(z\mid x)}\,dz
# = \log \mathbb E_{q}\big[w(z)\big]
# \;\ge\; \mathbb E_{q}\big[\log w(z)\big]
# = \mathbb E_{q}\big[\log p(x,z) - \log q(z\mid x)\big] =: \mathrm{ELBO}(q).
# $$
#
# The **evidence lower bound** is the *expected log importance weight*. Now split the joint,
# $\log p(x,z) = \log p(x\mid z) + \log p(z)$:
#
# $$
# \mathrm{ELBO}(q) = \mathbb E_q\big[\log p(x\mid z)\big] + \mathbb E_q\big[\log p(z) - \log q(z\mid
# x)\big]
# = \underbrace{\mathbb E_q\big[\log p(x\mid z)\big]}_{\text{reconstruction}}
# \;-\; \underbrace{\mathrm{KL}\big(q(z\mid x)\,\|\,p(z)\big)}_{\text{regularizer}} ,
# $$
#
# because $\mathrm{KL}(q\,\|\,p) = \mathbb E_q[\log q - \log p]$. This is the form a VAE trains on:
# decode samples of $q$ well, but keep $q$ close to the prior. For a diagonal Gaussian
# $q = \mathcal N(\mu, \operatorname{diag}\sigma^2)$ and $p(z) = \mathcal N(0, I)$ the KL has the
# closed form $\tfrac12\sum_j(\sigma_j^2 + \mu_j^2 - 1 - \log\sigma_j^2)$ (derived in chapter 6;
# `vaelib.kl.gaussian_kl`).

# %% [markdown]
# **The running example.** A linear-Gaussian model (probabilistic PCA, chapter 1) with $D = 5$,
# $d = 2$, one data point $x$, and a deliberately imperfect diagonal $q$, as an untrained encoder
# might output: its mean is one posterior standard deviation off in each coordinate, and it is 1.5
# times too wide. Here $\log p(x)$ and the posterior $p(z\mid x)$ are known exactly.

# %%
model = LinearGaussian.random(data_dim=5, latent_dim=2, noise_std=0.7,
                              generator=torch.Generator().manual_seed(0))
x, _ = model.sample(1, generator=torch.Generator().manual_seed(1))  # (N, D) = (1, 5)
log_px = model.log_marginal(x)  # exact log p(x), (N,)

post_mean, post_cov = model.posterior_parameters(
    x
)  # exact p(z|x) = N(post_mean, post_cov): (1, d), (d, d)
post_std = post_cov.diagonal().sqrt()  # (d,)
mu = post_mean + 1.0 * post_std  # off by one posterior standard deviation, (1, d)
logvar = torch.log(1.5**2 * post_cov.diagonal()).expand_as(mu)  # 1.5 times too wide, (1, d)
q = DiagonalGaussian(mu, logvar)
print(model, "\nexact log p(x) =", f"{log_px.item():.4f}")

# %% [markdown]
# **Form 1, from the equation:** draw $z_k \sim q$, compute
# $\log w_k = \log p(x, z_k) - \log q(z_k\mid x)$, average. **Form 2:** average $\log p(x\mid z_k)$
# over the *same* samples and subtract the analytic KL. Each is a Monte Carlo estimate of the same
# number, with its own standard error.

# %%
K = 100_000
z = q.rsample(K, generator=torch.Generator().manual_seed(2))  # (K, N, d)
log_w = model.log_joint(x, z) - q.log_prob(z)  # log w_k = log p(x, z_k) - log q(z_k|x), (K, N)
elbo_form1 = log_w.mean(dim=0)  # (N,)
se_form1 = log_w.std(dim=0) / math.sqrt(K)

log_lik = model.log_likelihood(x, z)  # log p(x|z_k), (K, N)
kl_prior = gaussian_kl(mu, logvar)  # KL(q(z|x) ‖ N(0, I)), closed form, (N,)
elbo_form2 = log_lik.mean(dim=0) - kl_prior
se_form2 = log_lik.std(dim=0) / math.sqrt(K)

print(f"form 1  E_q[log p(x,z) - log q(z|x)]  = {elbo_form1.item():.4f} ± {se_form1.item():.4f}")
print(f"form 2  E_q[log p(x|z)] - KL(q ‖ p(z)) = {elbo_form2.item():.4f} ± {se_form2.item():.4f}")
assert abs(elbo_form1 - elbo_form2).item() < 4 * math.hypot(se_form1.item(), se_form2.item())

# %% [markdown]
# The library's `elbo` is form 1; given the same random numbers it must return exactly our inline
# number (up to floating-point rounding, tolerance $10^{-12}$).

# %%
elbo_vaelib = elbo(model, x, q, num_samples=K, generator=torch.Generator().manual_seed(2))
print(f"vaelib.estimators.elbo = {elbo_vaelib.item():.4f}")
assert torch.allclose(elbo_vaelib, elbo_form1, rtol=0, atol=1e-12)

# %% [markdown] slideshow={"slide_type": "slide"}
# ### The ELBO in closed form on the linear-Gaussian model
#
# For $p(x\mid z) = \mathcal N(x; Wz + b, s^2 I_D)$ and any Gaussian $q = \mathcal N(m, V)$ every
# term of the ELBO is an integral we can do by hand. Write $z = m + e$ with $\mathbb E[e] = 0$,
# $\operatorname{Cov}[e] = V$, and $r = x - b - Wm$ (the residual at q's mean):
#
# $$
# \|x - b - Wz\|^2 = \|r - We\|^2 = \|r\|^2 - 2\,r^\top W e + e^\top W^\top W e .
# $$
#
# The middle term has mean zero; the last one is a scalar, so it equals its trace:
# $\mathbb E[e^\top W^\top W e] = \mathbb E[\operatorname{tr}(W^\top W\, e e^\top)] =
# \operatorname{tr}(W^\top W V)$. Hence
#
# $$
# \boxed{\;\mathbb E_q[\log p(x\mid z)] = -\frac D2 \log(2\pi s^2)
#   - \frac{\|x - b - Wm\|^2 + \operatorname{tr}(W^\top W V)}{2 s^2}\;}
# $$
#
# The **trace term** is the price of q's spread: a wider q decodes to points further from $x$ on
# average. For a diagonal $V = \operatorname{diag}\sigma^2$ it is
# $\sum_j \sigma_j^2\,\|W_{:,j}\|^2$. With
# $\mathrm{KL}(\mathcal N(m, V)\,\|\,\mathcal N(0, I)) = \tfrac12\big(\operatorname{tr}V + \|m\|^2 - d
# - \log\det V\big)$,
#
# $$
# \mathrm{ELBO}(q) = \mathbb E_q[\log p(x\mid z)] - \mathrm{KL}\big(\mathcal N(m, V)\,\|\,\mathcal
# N(0, I)\big)
# \quad\text{(form 2, exactly).}
# $$
#
# Form 1 in closed form uses the other pieces:
# $\mathbb E_q[\log p(z)] = -\tfrac d2\log 2\pi - \tfrac12(\|m\|^2 + \operatorname{tr} V)$ and
# $-\mathbb E_q[\log q] = H[q] = \tfrac12\log\det(2\pi e V)$, the entropy of q. Form 1
# $=\mathbb E_q[\log p(x\mid z)] + \mathbb E_q[\log p(z)] + H[q]$.

# %%
def expected_log_likelihood(model, x, mean, cov):
    """E_q[log p(x|z)] for q = N(mean, cov) on a LinearGaussian.

    x (N, D), mean (N, d), cov (d, d) or (N, d, d) -> (N,)."""
    W, b, s2 = model.W, model.b, model.noise_std**2
    residual = x - b - mean @ W.T  # r = x - b - W m, (N, D)
    trace = (W.T @ W * cov).sum(dim=(-2, -1))  # tr(Wᵀ W V) = Σ_ij (WᵀW)_ij V_ij (V symmetric)
    log_norm = -0.5 * model.data_dim * math.log(2 * math.pi * s2)  # -D/2 log(2π s²)
    return log_norm - (residual.square().sum(-1) + trace) / (2 * s2)


def kl_to_prior(mean, cov):
    """KL(N(mean, cov) ‖ N(0, I)) = ½ (tr V + |m|² - d - log det V).

    mean (N, d), cov (d, d) or (N, d, d) -> (N,)."""
    trace = cov.diagonal(dim1=-2, dim2=-1).sum(-1)
    return 0.5 * (trace + mean.square().sum(-1) - mean.shape[-1] - torch.logdet(cov))


def closed_form_elbo(model, x, mean, cov):
    """ELBO = E_q[log p(x|z)] - KL(q ‖ p(z)) for a Gaussian q = N(mean, cov), exactly: (N,)."""
    return expected_log_likelihood(model, x, mean, cov) - kl_to_prior(mean, cov)


# %% [markdown]
# Three checks, each with its tolerance:
# 1. for our diagonal q, `kl_to_prior` equals `vaelib.kl.gaussian_kl` ($10^{-12}$), and form 1 and
#    form 2 in closed form are the *same number* ($10^{-12}$): the identity
#    $\mathbb E_q[\log p(z)] + H[q] = -\mathrm{KL}(q\,\|\,p(z))$;
# 2. both Monte Carlo estimates above (and so vaelib's `elbo`, which equals form 1) agree with the
#    closed form within 4 standard errors.

# %%
cov_q = torch.diag_embed(logvar.exp())  # V = diag(σ²), (N, d, d)
elbo_exact = closed_form_elbo(model, x, mu, cov_q)

d = model.latent_dim
# E_q[log p(z)] = -d/2 log 2π - ½ (|m|² + tr V)
expected_log_prior = -0.5 * d * math.log(2 * math.pi) - 0.5 * (mu.square() + logvar.exp()).sum(-1)
elbo_exact_form1 = expected_log_likelihood(model, x, mu, cov_q) + expected_log_prior + q.entropy()
elbo_exact_form2 = expected_log_likelihood(model, x, mu, cov_q) - gaussian_kl(mu, logvar)

print(f"closed form: form 1 = {elbo_exact_form1.item():.10f}, "
      f"form 2 = {elbo_exact_form2.item():.10f}")
print(f"Monte Carlo: form 1 = {elbo_form1.item():.4f} ± {se_form1.item():.4f}, "
      f"form 2 = {elbo_form2.item():.4f} ± {se_form2.item():.4f}")
assert torch.allclose(kl_to_prior(mu, cov_q), gaussian_kl(mu, logvar), rtol=0, atol=1e-12)
assert torch.allclose(elbo_exact_form1, elbo_exact_form2, rtol=0, atol=1e-12)
assert torch.allclose(elbo_exact, elbo_exact_form2, rtol=0, atol=1e-12)
assert abs(elbo_form1 - elbo_exact).item() < 4 * se_form1.item()
assert abs(elbo_form2 - elbo_exact).item() < 4 * se_form2.item()

# %% [markdown]
# Form 2 takes the KL out of the Monte Carlo average: that part of the estimate is now exact, and so
# is its gradient, which is why VAEs use it whenever the KL has a closed form. It does not
# automatically make the *whole* estimate less noisy, though: $\log p(x\mid z)$ and
# $\log p(z) - \log q(z\mid x)$ fluctuate together, and here the two standard errors are about the
# same (within 10%).

# %%
print(f"standard error with K = {K}: form 1 {se_form1.item():.5f}, form 2 {se_form2.item():.5f}")
assert 0.9 < (se_form2 / se_form1).item() < 1.1

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Which way round: the ELBO is a *lower* bound
#
# $$\boxed{\;\mathrm{ELBO}(q) \;\le\; \log p(x)\quad\text{for every } q\;}$$
#
# — the *evidence lower bound*. Writing it the other way round ($\mathrm{ELBO} \ge \log p(x)$, or
# $\mathbb E[\log w] \ge \log\mathbb E[w]$) is a classic slip; a quick sanity check is the name and
# the concavity of $\log$ (the chord is *below* the curve). By Jensen's equality case, the bound is
# tight exactly when $w = p(x, z)/q(z\mid x)$ is constant in $z$, that is when
# $q(z\mid x) \propto p(x, z)$: **q is the exact posterior** $p(z\mid x)$. (Chapter 5 shows that the
# gap is exactly $\mathrm{KL}(q(z\mid x)\,\|\,p(z\mid x))$.)
#
# Checked in closed form: on 50 data points, 200 random diagonal Gaussians q each, every ELBO lies
# below $\log p(x)$; and the exact posterior (a full-covariance Gaussian here) gives
# $\mathrm{ELBO} = \log p(x)$ to $10^{-10}$.

# %%
num_points, num_q = 50, 200
x_many, _ = model.sample(num_points, generator=generator)  # (N, D)
log_px_many = model.log_marginal(x_many)  # (N,)
mean_many, cov_many = model.posterior_parameters(x_many)  # (N, d), (d, d)

# random diagonal q's around the posterior: means a few posterior sds off, variances × e^(±2)
shape = (num_q, num_points, d)
noise = torch.randn(shape, generator=generator, dtype=torch.float64)
uniform = torch.rand(shape, generator=generator, dtype=torch.float64)
mu_rand = mean_many + 2.0 * cov_many.diagonal().sqrt() * noise  # (num_q, N, d)
logvar_rand = cov_many.diagonal().log() + 4.0 * uniform - 2.0  # (num_q, N, d)
elbo_rand = closed_form_elbo(model, x_many, mu_rand, torch.diag_embed(logvar_rand.exp()))
elbo_posterior = closed_form_elbo(model, x_many, mean_many, cov_many)  # q = p(z|x), (N,)

largest = (elbo_rand - log_px_many).max().item()
error_at_posterior = (elbo_posterior - log_px_many).abs().max().item()
print(f"max over {num_q * num_points} (x, q) pairs of ELBO - log p(x): {largest:.4f}  (< 0)")
print(f"exact posterior: max |ELBO - log p(x)| = {error_at_posterior:.2e}")
assert largest < 0
assert torch.allclose(elbo_posterior, log_px_many, rtol=0, atol=1e-10)

# %%
fig, ax = plt.subplots(figsize=(6.0, 4.4))
shown_q = 10  # draw 10 of the 200 q's per data point
ax.plot(log_px_many.expand(shown_q, -1).flatten(), elbo_rand[:shown_q].flatten(), ".",
        color=COLORS["elbo"], alpha=0.35, label="ELBO(q), random diagonal q")
ax.plot(log_px_many, elbo_posterior, "o", mfc="none", color=COLORS["posterior"],
        label="ELBO(p(z|x)) = log p(x)")
lims = np.array([log_px_many.min().item() - 1, log_px_many.max().item() + 1])
ax.plot(lims, lims, "--", color=COLORS["exact"], lw=1.2, label="ELBO = log p(x)")
ax.fill_between(lims, lims, lims + 40, color="0.85", label="forbidden: ELBO > log p(x)")
ax.set(xlim=lims, ylim=(elbo_rand[:shown_q].min().item() - 1, lims[1] + 2), xlabel="exact log p(x)",
       ylabel="ELBO(q)", title="Every ELBO lies below log p(x); the exact posterior touches it")
ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
plt.show()

# %% [markdown]
# **What the bound does *not* say.** It is a statement about an *expectation*. A single log-weight
# $\log w_k$ — a one-sample ELBO estimate — can perfectly well exceed $\log p(x)$: since
# $\mathbb E_q[w] = p(x)$, unless $w$ is constant *some* weights must lie above $p(x)$. A one-sample
# estimate above a known $\log p(x)$ is not a bug; an *average* over many samples above it (beyond
# its error bars) is.

# %%
above = (log_w > log_px).double().mean().item()
print(f"fraction of the {K} single log-weights above log p(x): {above:.1%}")
assert 0.2 < above < 0.5  # many single draws exceed log p(x) ...
assert elbo_form1 + 4 * se_form1 < log_px  # ... while their average is clearly below it

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. The IWAE bound: more samples inside the log
#
# The ELBO applies Jensen to a *single* weight. Apply it to the average of $K$ weights instead
# (Burda, Grosse & Salakhutdinov, 2015). Since $\hat p_K = \frac1K\sum_k w_k$ is unbiased for
# $p(x)$,
#
# $$
# \mathrm{IWAE}_K := \mathbb E_{z_{1:K}\sim q}\Big[\log \frac1K \sum_{k=1}^K w_k\Big]
# \;\le\; \log \mathbb E\Big[\frac1K\sum_k w_k\Big] = \log p(x),
# \qquad \mathrm{IWAE}_1 = \mathbb E_q[\log w] = \mathrm{ELBO}.
# $$
#
# **It never gets looser as K grows.** The average of $K+1$ weights is the average, over the $K+1$
# subsets $I$ of size $K$, of the $K$-sample averages:
# $\frac1{K+1}\sum_{k=1}^{K+1} w_k = \mathbb E_I\big[\frac1K\sum_{k\in I} w_k\big]$ with $I$ uniform
# (each $w_k$ is left out of exactly one subset). Jensen on that average, then the expectation over
# the $z$'s (every subset holds $K$ i.i.d. samples):
#
# $$
# \mathrm{IWAE}_{K+1} = \mathbb E\Big[\log \mathbb E_I\Big[\tfrac1K\textstyle\sum_{k\in I}
# w_k\Big]\Big]
# \ge \mathbb E\Big[\mathbb E_I \log \tfrac1K\textstyle\sum_{k\in I} w_k\Big] = \mathrm{IWAE}_K .
# $$
#
# So $\mathrm{ELBO} = \mathrm{IWAE}_1 \le \mathrm{IWAE}_K \le \mathrm{IWAE}_{K+1} \le \log p(x)$,
# and $\mathrm{IWAE}_K \to \log p(x)$ as $K\to\infty$ when the weights are bounded (the law of large
# numbers makes $\hat p_K \to p(x)$). **How fast:** write $\hat p_K = p(x)(1+\varepsilon)$ with
# $\mathbb E[\varepsilon] = 0$, $\operatorname{Var}[\varepsilon] = \rho/K$,
# $\rho = \operatorname{Var}_q[w]/p(x)^2$ (chapter 2's relative variance of one weight); then
# $\log(1+\varepsilon) \approx \varepsilon - \varepsilon^2/2$ gives
#
# $$\log p(x) - \mathrm{IWAE}_K \approx \frac{\rho}{2K} \qquad (K \text{ large}).$$

# %%
# The subset identity behind the monotonicity proof, on K + 1 = 6 numbers:
w_six = torch.rand(6, generator=generator, dtype=torch.float64) * 3
subset_means = torch.stack(
    [w_six[list(subset)].mean() for subset in itertools.combinations(range(6), 5)]
)
assert torch.allclose(subset_means.mean(), w_six.mean(), rtol=0, atol=1e-14)
assert torch.log(subset_means).mean() <= torch.log(w_six.mean())  # Jensen over the subsets

# %% [markdown]
# **Inline, then the library.** From the equation: $K$ log-weights, then a stable log-mean-exp over
# the sample axis (dim 0). `vaelib.estimators.iwae_bound` with the same random numbers must agree to
# $10^{-12}$, and with $K = 1$ it is exactly the library's `elbo`.

# %%
K_iwae = 50
z = q.rsample(K_iwae, generator=torch.Generator().manual_seed(3))  # (K, N, d)
log_w_iwae = model.log_joint(x, z) - q.log_prob(z)  # (K, N)
iwae_inline = torch.logsumexp(log_w_iwae, dim=0) - math.log(K_iwae)  # log (1/K) Σ_k w_k, (N,)

iwae_vaelib = iwae_bound(model, x, q, K_iwae, generator=torch.Generator().manual_seed(3))
assert torch.allclose(iwae_vaelib, iwae_inline, rtol=0, atol=1e-12)
iwae_1 = iwae_bound(model, x, q, 1, generator=torch.Generator().manual_seed(4))
elbo_1 = elbo(model, x, q, 1, generator=torch.Generator().manual_seed(4))
assert torch.equal(iwae_1, elbo_1)  # IWAE_1 is the ELBO
print(f"IWAE_{K_iwae} (one draw): inline {iwae_inline.item():.4f}, vaelib {iwae_vaelib.item():.4f}")

# %% [markdown]
# **The sweep.** One draw of $\log\hat p_K$ needs $K$ weights; $\mathrm{IWAE}_K$ is its expectation.
# We draw one pool of $2^{20} \approx 10^6$ log-weights from q with `log_importance_weights` and cut
# it into disjoint groups of $K$: $2^{20}/K$ independent draws of $\log\hat p_K$ (via `log_mean_exp`
# over each group), whose mean estimates $\mathrm{IWAE}_K$, with a standard error, for
# $K = 1, 2, 4, \dots, 1024$. (Every K reuses the same pool, so neighbouring K's are compared on
# common random numbers.) The same pool estimates $\rho$.

# %%
pool = log_importance_weights(model, x, q, 2**20, generator=generator, chunk_size=2**17)
pool = pool[:, 0]  # (2²⁰,) log-weights for our one data point
K_values = [2**i for i in range(11)]
iwae_mean, iwae_se = [], []
for K_i in K_values:
    draws = log_mean_exp(pool.view(K_i, -1), dim=0)  # 2²⁰/K draws of log p̂_K, one per group
    iwae_mean.append(draws.mean().item())
    iwae_se.append(draws.std().item() / math.sqrt(draws.numel()))
iwae_mean, iwae_se = np.array(iwae_mean), np.array(iwae_se)
gap = log_px.item() - iwae_mean  # log p(x) - IWAE_K

rho = torch.exp(pool - log_px).var().item()  # ρ = Var_q[w] / p(x)²
for K_i, value, se in zip(K_values, iwae_mean, iwae_se):
    print(f"K = {K_i:5d}: IWAE_K = {value:.4f} ± {se:.4f}   gap = {log_px.item() - value:.4f}   "
          f"ρ/(2K) = {rho / (2 * K_i):.4f}")

# %% [markdown]
# The asserts: $\mathrm{IWAE}_1$ is the closed-form ELBO; each doubling of K never lowers the bound
# and no estimate exceeds $\log p(x)$ (beyond 3 standard errors); at $K = 1024$ the bound is within
# 0.005 nats of $\log p(x)$; for $K = 16 \dots 128$ the measured $K\cdot$gap matches $\rho/2$ within
# 20%; and `iwae_bound` called directly agrees with the pool's estimate (4 standard errors).

# %%
assert abs(iwae_mean[0] - elbo_exact.item()) < 4 * iwae_se[0]
assert np.all(np.diff(iwae_mean) > -3 * np.hypot(iwae_se[1:], iwae_se[:-1]))
assert np.all(iwae_mean < log_px.item() + 3 * iwae_se)
assert abs(gap[-1]) < 0.005
asymptotic = [K_i * g for K_i, g in zip(K_values, gap) if 16 <= K_i <= 128]
print(f"K·gap for K = 16..128: {np.round(asymptotic, 3)}, ρ/2 = {rho / 2:.3f}")
assert abs(np.mean(asymptotic) / (rho / 2) - 1) < 0.2

# The library's iwae_bound, called directly on 2,000 copies of x, agrees with the pool's estimate.
copies = 2_000
q_copies = DiagonalGaussian(mu.expand(copies, -1), logvar.expand(copies, -1))
direct = iwae_bound(model, x.expand(copies, -1), q_copies, 64, generator=generator)  # (copies,)
direct_mean, direct_se = direct.mean().item(), direct.std().item() / math.sqrt(copies)
i64 = K_values.index(64)
print(f"IWAE_64: iwae_bound {direct_mean:.4f} ± {direct_se:.4f}, "
      f"pool {iwae_mean[i64]:.4f} ± {iwae_se[i64]:.4f}")
assert abs(direct_mean - iwae_mean[i64]) < 4 * math.hypot(direct_se, iwae_se[i64])

# %%
fig, (ax_bound, ax_gap) = plt.subplots(1, 2, figsize=(11.5, 4.3))
ax_bound.fill_between(K_values, iwae_mean - 2 * iwae_se, iwae_mean + 2 * iwae_se,
                      color=COLORS["importance"], alpha=0.25, label="± 2 standard errors")
ax_bound.plot(K_values, iwae_mean, "o-", color=COLORS["importance"],
              label="IWAE_K (mean of 2²⁰/K draws)")
ax_bound.axhline(elbo_exact.item(), color=COLORS["elbo"], lw=1.5,
                 label="ELBO = IWAE_1 (closed form)")
reference_line(ax_bound, log_px.item(), label="exact log p(x)")
ax_bound.set(xscale="log", xlabel="number of samples K", ylabel="nats",
             title="IWAE_K climbs to log p(x)")
ax_bound.legend(loc="lower right")
zoom = ax_bound.inset_axes([0.38, 0.4, 0.58, 0.36])  # the last few hundredths of a nat, magnified
zoom.fill_between(K_values, iwae_mean - 2 * iwae_se, iwae_mean + 2 * iwae_se,
                  color=COLORS["importance"], alpha=0.25)
zoom.plot(K_values, iwae_mean, "o-", color=COLORS["importance"], ms=4)
reference_line(zoom, log_px.item())
zoom.set(xscale="log", xlim=(12, 1400), ylim=(log_px.item() - 0.06, log_px.item() + 0.01))
zoom.set_title("zoom: K ≥ 16", fontsize=9)
zoom.tick_params(labelsize=8)

resolved = np.array(K_values) <= 128  # beyond, the gap is below the Monte Carlo noise
K_res = np.array(K_values)[resolved]
ax_gap.errorbar(K_res, gap[resolved], yerr=2 * iwae_se[resolved], fmt="o",
                color=COLORS["importance"], capsize=3, label="log p(x) − IWAE_K  (± 2 se)")
ax_gap.plot(
    K_res, rho / (2 * K_res), ":", color=COLORS["exact"], label="ρ / (2K)  (large-K theory)"
)
ax_gap.axhline(log_px.item() - elbo_exact.item(), color=COLORS["elbo"], lw=1, alpha=0.6,
               label="ELBO's gap")
ax_gap.set(xscale="log", yscale="log", xlabel="number of samples K", ylabel="gap (nats)",
           title="The gap shrinks like 1/K")
ax_gap.legend(loc="lower left")
plt.tight_layout()
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Explore: the distribution of log w
#
# The widget draws the same picture for a family of Gaussian proposals shaped like the exact
# posterior:
# $q = \mathcal N\big(m_{\text{post}} + \text{shift}\cdot\sigma_{\text{post}},\; \text{scale}^2\,\Sigma_{\text{post}}\big)$.
# **Top:** the histogram of single log-weights $\log w$ (10,000 draws), their mean (the ELBO) and
# the log of their mean weight. **Bottom:** the histogram of $\log\hat p_K$ over independent draws
# of $K$ samples each (2,000 draws, fewer for large K); its mean is $\mathrm{IWAE}_K$ (± standard
# errors in the readout). The dashed line is the exact $\log p(x)$.
#
# Things to try: set shift = 0 and scale = 1 ($q$ *is* the posterior: every $\log w$ equals
# $\log p(x)$, the histogram collapses to a spike and all the bounds are tight); raise $K$ and watch
# the bottom histogram narrow and its mean climb to the dashed line; make q *narrower* than the
# posterior (scale < 1, shift > 0) and see the rare huge weights that make $\log\hat p_K$ converge
# slowly (chapter 3's light-tail danger).

# %%
def log_weight_draws(K, scale, shift):
    """Under q = N(m + shift·sd, scale²·Σ): 10,000 single log-weights (10_000,) and `reps` draws
    of log p̂_K (reps,), both from one seeded stream; returns (pool, log_p_hat, reps)."""
    q_mean = post_mean + shift * post_std  # (1, d)
    q_cov = scale**2 * post_cov  # (d, d)
    gen = torch.Generator().manual_seed(5)
    pool = log_importance_weights(model, x, FullGaussian(q_mean, q_cov), 10_000, generator=gen)
    pool = pool[:, 0]  # 10,000 single log-weights
    reps = max(100, min(2_000, 100_000 // K))  # draws of log p̂_K (fewer for large K: quicker)
    q_reps = FullGaussian(q_mean.expand(reps, -1), q_cov)
    log_p_hat = iwae_bound(model, x.expand(reps, -1), q_reps, K, generator=gen, chunk_size=100)
    return pool, log_p_hat, reps


# %%
# Plotting: the two histograms for one (K, scale, shift).
def draw_log_weights(fig, K, scale, shift):
    """Single log-weights and K-sample log-mean-weights under q = N(m + shift·sd, scale²·Σ)."""
    pool, log_p_hat, reps = log_weight_draws(K, scale, shift)
    exact = log_px.item()
    elbo_est, iwae_est = pool.mean().item(), log_p_hat.mean().item()
    log_mean_w = log_mean_exp(pool, dim=0).item()
    elbo_se = pool.std().item() / math.sqrt(pool.numel())
    iwae_se = log_p_hat.std().item() / math.sqrt(reps) if reps > 1 else math.nan
    low = min(np.quantile(pool.numpy(), 0.01), exact - 0.5)  # the far left tail is left out
    high = max(pool.max().item(), exact + 0.5)
    bins = np.linspace(low, high, 80)

    def histogram(ax, values, color):  # the fraction of all draws that falls in each bin
        values = values.numpy()
        weights = np.full(values.size, 1 / values.size)
        ax.hist(values, bins=bins, weights=weights, color=color, alpha=0.6)

    ax_top, ax_bottom = fig.subplots(2, 1, sharex=True)
    histogram(ax_top, pool, COLORS["proposal"])
    ax_top.axvline(elbo_est, color=COLORS["elbo"], lw=2,
                   label=f"mean of log w (ELBO) = {elbo_est:.3f}")
    ax_top.axvline(log_mean_w, color=COLORS["importance"], lw=2,
                   label=f"log of mean w = {log_mean_w:.3f}")
    reference_line(ax_top, exact, label=f"exact log p(x) = {exact:.3f}", horizontal=False)
    ax_top.set(ylabel="fraction of draws", title="single log-weights log w,  z ~ q  (10,000 draws)")
    ax_top.legend(loc="best", fontsize=8)

    histogram(ax_bottom, log_p_hat, COLORS["importance"])
    ax_bottom.axvline(elbo_est, color=COLORS["elbo"], lw=2, label="ELBO")
    ax_bottom.axvline(iwae_est, color=COLORS["importance"], lw=2,
                      label=f"IWAE_{K} = mean = {iwae_est:.3f}")
    reference_line(ax_bottom, exact, label="exact log p(x)", horizontal=False)
    ax_bottom.set(xlabel="nats", ylabel="fraction of draws",
                  title=f"log of the mean of K = {K} weights ({reps:,} draws)")
    ax_bottom.legend(loc="best", fontsize=8)
    fig.tight_layout()
    above = (pool > exact + 1e-9).double().mean().item()  # 1e-9: ignore rounding when q = p(z|x)
    return (f"ELBO ≈ {elbo_est:.3f} ± {elbo_se:.3f},  IWAE_{K} ≈ {iwae_est:.3f} ± {iwae_se:.3f},  "
            f"exact log p(x) = {exact:.3f};  {above:.0%} of single log-weights lie above log p(x)")


# %%
static_figure(draw_log_weights, figsize=(8, 6), K=10, scale=1.5, shift=1.0)

# %%
FigureExplorer(
    draw_log_weights, figsize=(8, 6),
    K=widgets.SelectionSlider(options=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000], value=10,
                              description="K"),
    scale=widgets.FloatSlider(value=1.5, min=0.5, max=3.0, step=0.05, description="q scale"),
    shift=widgets.FloatSlider(value=1.0, min=0.0, max=3.0, step=0.1, description="q shift"),
)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Classic mistakes
#
# > **Classic mistakes**
# >
# > 1. **The bound written the wrong way round.** $\mathrm{ELBO} \le \log p(x)$ and
# >    $\mathbb E[\log w] \le \log\mathbb E[w]$: the *average of logs* is the smaller one. If your
# >    average ELBO exceeds a known $\log p(x)$ by more than its error bars, there is a bug.
# > 2. **Expecting every sample below $\log p(x)$.** The bound is on the expectation; single
# >    log-weights land above $\log p(x)$ a good fraction of the time (here about a third).
# > 3. **Taking the log of an unbiased estimate of $p(x)$ as unbiased for $\log p(x)$.** It is
# >    biased *low* by Jensen: $\mathbb E[\log\hat p_K] = \mathrm{IWAE}_K < \log p(x)$. Chapter 3's
# >    estimate of $p(x)$ is unbiased; its log is a lower bound in expectation.
# > 4. **The KL's sign or direction.**
# >    $\mathrm{ELBO} = \mathbb E_q[\log p(x\mid z)] \mathbin{\mathbf -} \mathrm{KL}(q(z\mid x)\,\|\,p(z))$:
# >    minus, and $q$ first. With $+\mathrm{KL}$ the "bound" can exceed $\log p(x)$ (shown below).
# > 5. **Averaging over the wrong axis.** Log-weights are `(K, N)`: reduce over dim 0, the samples.
# >    A log-mean-exp over dim 1 mixes different data points into one meaningless number.
# > 6. **`log(mean(exp(log_w)))`.** A VAE on MNIST has $\log w \approx -100$ nats; in float32
# >    $e^{-104}$ is already 0, and the naive IWAE is $-\infty$. Use `torch.logsumexp` /
# >    `log_mean_exp`.

# %%
elbo_with_wrong_sign = log_lik.mean(dim=0) + kl_prior  # E_q[log p(x|z)] + KL: mistake 4
print(f"'ELBO' with +KL = {elbo_with_wrong_sign.item():.3f} > log p(x) = {log_px.item():.3f}")
assert elbo_with_wrong_sign > log_px

log_w_mnist_like = (log_w[:1000] - 110.0).float()  # log-weights of a typical MNIST size, float32
naive = torch.log(torch.exp(log_w_mnist_like).mean(dim=0))  # mistake 6
stable = log_mean_exp(log_w_mnist_like, dim=0)
print(f"naive log(mean(exp(log w))) = {naive.item()},  log_mean_exp = {stable.item():.3f}")
assert naive.item() == -math.inf and torch.isfinite(stable).all()
assert torch.exp(torch.tensor(-104.0)) == 0  # float32: e^-104 underflows to exactly 0

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - **Jensen:** $\log\mathbb E[w] \ge \mathbb E[\log w]$, with equality only for a constant $w$; for
#   a log-normal weight the gap is exactly $\tau^2/2$ (measured: 0.50).
# - **ELBO**
#   $=\mathbb E_q[\log p(x,z) - \log q(z\mid x)] = \mathbb E_q[\log p(x\mid z)] - \mathrm{KL}(q(z\mid x)\,\|\,p(z))$:
#   the two forms agree by Monte Carlo and, on the linear-Gaussian model, exactly in closed form,
#   where $\mathbb E_q[\log p(x\mid z)]$ carries the trace term
#   $\operatorname{tr}(W^\top W V)/(2s^2)$.
# - **Lower bound:** $\mathrm{ELBO}(q) \le \log p(x)$ for every q, tight exactly at the posterior —
#   in expectation; single samples can exceed $\log p(x)$.
# - **IWAE:**
#   $\mathrm{ELBO} = \mathrm{IWAE}_1 \le \mathrm{IWAE}_K \le \mathrm{IWAE}_{K+1} \le \log p(x)$; the
#   gap shrinks like $\rho/(2K)$, with $\rho$ the relative variance of the weights.
# - **Library:** `vaelib.estimators.elbo`, `iwae_bound`, `log_importance_weights`, `log_mean_exp`,
#   and `vaelib.kl.gaussian_kl` for the analytic KL.
#
# **Next (chapter 5):** how big is the gap? Exactly $\log p(x) - \mathrm{ELBO}(q) =
# \mathrm{KL}(q(z\mid x)\,\|\,p(z\mid x))$, so maximizing the ELBO over q is posterior inference.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# ### Exercise 1 — the ELBO from log-weights
# Given log-weights `log_w` of shape `(K, N)` ($\log w_k = \log p(x, z_k) - \log q(z_k\mid x)$, K
# samples on dim 0, N data points on dim 1), return the Monte Carlo ELBO estimate for each data
# point, shape `(N,)`.

# %% tags=["solution"]
def elbo_from_log_weights(log_w):
    """(K, N) log-weights -> (N,) ELBO estimates, one per data point."""
    # the mean of the log-weights over the K samples
    return log_w.mean(dim=0)


# %%
check_elbo_from_log_weights(elbo_from_log_weights);

# %% [markdown]
# ### Exercise 2 — the IWAE bound from log-weights
# Return $\log \frac1K\sum_k w_k$ for each data point, shape `(N,)`, **stably**: the check includes
# log-weights near $-1000$ and $+800$, where `exp` underflows or overflows. Write the log-sum-exp
# trick yourself (subtract the maximum over the samples), without `torch.logsumexp`. The check
# refuses the library's log-sum-exps (torch's, SciPy's, a `log_softmax`); a shortcut it does not
# know (`numpy.logaddexp.reduce`) it cannot stop: the exercise is for you.

# %% tags=["solution"]
def iwae_from_log_weights(log_w):
    """(K, N) log-weights -> (N,) IWAE_K estimates, computed stably."""
    m = log_w.max(dim=0).values  # the largest log-weight per data point, (N,)
    return m + torch.log(torch.exp(log_w - m).mean(dim=0))  # m + log (1/K) Σ exp(log w_k - m)


# %%
check_iwae_from_log_weights(iwae_from_log_weights);

# %% [markdown]
# ### Exercise 3 — which one can never be smaller?
# For each pair, answer `"A"` or `"B"` (the one that is never smaller than the other, for every
# model, $x$ and $q$), or `"either"` (when either can be larger, depending on the model, $x$, $q$ or
# the random draw). Expectations are over $z \sim q(z\mid x)$; $\mathrm{IWAE}_K$ is the expectation
# of $\log\hat p_K$. Give the answers as a dict from question number to answer,
# `{1: "A", 2: "either", ...}`, with all six questions (a list of the six answers in question order,
# `["A", "either", ...]`, is accepted too).
#
# | # | A | B |
# | --- | --- | --- |
# | 1 | $\mathbb E_q[\log w]$ | $\log\mathbb E_q[w]$ |
# | 2 | $\mathrm{IWAE}_1$ | $\mathrm{IWAE}_{10}$ |
# | 3 | $\log p(x)$ | $\mathrm{IWAE}_{1000}$ |
# | 4 | $\log w(z_1)$ for one draw $z_1\sim q$ | $\log p(x)$ |
# | 5 | $\mathbb E_q[\log p(x\mid z)]$ | $\mathrm{ELBO}(q)$ |
# | 6 | $\mathbb E_q[\log p(x\mid z)]$ | $\log p(x)$ |

# %% tags=["solution"]
answers = {1: "B", 2: "B", 3: "A", 4: "either", 5: "A", 6: "either"}

# %%
check_which_is_larger(answers);
