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
# # Chapter 6 — The Gaussian KL, derived and checked
#
# *Symbols: see the course's [notation page](../docs/notation.md).*
#
# The ELBO of chapter 4 has two parts,
#
# $$\mathrm{ELBO}(x) = \mathbb E_{q(z\mid x)}\big[\log p_\theta(x \mid z)\big]
#   - \mathrm{KL}\big(q(z \mid x)\,\|\,p(z)\big),$$
#
# and a VAE's encoder chooses $q(z\mid x) = \mathcal N\big(\mu,\ \mathrm{diag}(\sigma^2)\big)$ while
# the prior is $p(z) = \mathcal N(0, I)$. For this pair the KL term has a closed form, so a VAE
# never has to estimate it by sampling:
#
# $$\boxed{\ \mathrm{KL}\big(\mathcal N(\mu, \mathrm{diag}\,\sigma^2)\,\|\,\mathcal N(0, I)\big)
#   = \frac12 \sum_{j=1}^{d} \big(\sigma_j^2 + \mu_j^2 - 1 - \log \sigma_j^2\big)\ }$$
#
# It is one line of code, and one of the most often mistyped lines in machine learning (σ for σ²,
# a missing ½, a missing sum, a flipped sign). In this chapter you will
#
# 1. derive it step by step: two Gaussian integrals and one second moment;
# 2. check it three independent ways (quadrature, Monte Carlo with a 99% confidence interval, and
#    `torch.distributions`) on 400 random $(\mu, \log\sigma^2)$, extreme ones included;
# 3. derive and check the KL between two diagonal Gaussians, and see that KL is not symmetric;
# 4. see, numerically, why encoders output $\log \sigma^2$ rather than $\sigma$ or $\sigma^2$;
# 5. meet the classic mistakes, each shown as a wrong number.

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
import warnings

import matplotlib.pyplot as plt
import numpy as np
import torch
from ipywidgets import FloatSlider
from scipy import integrate, stats
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from vaelib.device import seed_everything
from vaelib.exercises import (check_gaussian_kl, check_kl_from_std, check_kl_full_covariance,
                              check_kl_mean_only)
from vaelib.gaussian import DiagonalGaussian
from vaelib.kl import gaussian_kl, gaussian_kl_between, mc_kl
from vaelib.figures import COLORS, FigureExplorer, reference_line, static_figure, use_course_style

use_course_style()
generator = seed_everything(0)
torch.set_default_dtype(torch.float64)  # exact math: float64, except where float32 is the point
LOG_2PI = math.log(2 * math.pi)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The two distributions
#
# For one data point the encoder outputs two vectors of length $d$ (the latent dimension): the
# mean $\mu$ and the **log-variance** $\log \sigma^2$ (`mu`, `logvar`; section 8 explains why the
# log). They define
#
# $$q(z) = \mathcal N\big(z;\ \mu,\ \mathrm{diag}(\sigma_1^2, \dots, \sigma_d^2)\big),
# \qquad \sigma_j^2 = e^{\text{logvar}_j}, \qquad \sigma_j = e^{\text{logvar}_j / 2},$$
#
# and the prior is $p(z) = \mathcal N(z;\ 0, I)$. The covariance matrix holds **variances** on its
# diagonal: $\mathrm{diag}(\sigma^2)$, not $\mathrm{diag}(\sigma)$. (We drop the "$\mid x$": the KL
# is computed one data point at a time.)
#
# A diagonal covariance means independent coordinates, so the log-density is a sum of 1-D
# log-densities:
#
# $$\log q(z) = \sum_{j=1}^d \log \mathcal N(z_j;\ \mu_j, \sigma_j^2), \qquad
# \log \mathcal N(z_j;\ m, s^2) = -\frac12 \log(2\pi s^2) - \frac{(z_j - m)^2}{2 s^2}.$$
#
# We write the 1-D log-density from its formula, check it against SciPy, and check the sum against
# SciPy's $d$-dimensional Gaussian with covariance $\mathrm{diag}(\sigma^2)$.

# %%
def log_normal(z, mean, var):
    """log N(z; mean, var) = −½ log(2π var) − (z − mean)² / (2 var), for 1-D floats."""
    return -0.5 * math.log(2 * math.pi * var) - (z - mean) ** 2 / (2 * var)


for z_j, mean_j, var_j in [(0.3, -1.0, 0.5), (4.0, 2.0, 3.0), (-7.0, 0.0, 1.0)]:
    scipy_value = stats.norm.logpdf(z_j, mean_j, math.sqrt(var_j))  # SciPy takes the std
    assert abs(log_normal(z_j, mean_j, var_j) - scipy_value) < 1e-12

mu = torch.tensor([1.5, -0.3, 0.0])       # (d,) with d = 3
logvar = torch.tensor([-1.0, 0.7, 0.0])   # (d,)
z = torch.tensor([0.9, 1.1, -0.4])
q = DiagonalGaussian(mu, logvar)
scipy_q = stats.multivariate_normal(mean=mu.numpy(), cov=np.diag(logvar.exp().numpy()))  # diag(σ²)
sum_of_1d = sum(log_normal(z[j].item(), mu[j].item(), logvar[j].exp().item()) for j in range(3))
print(f"log q(z): sum of 1-D = {sum_of_1d:.12f}, vaelib = {q.log_prob(z).item():.12f}, "
      f"SciPy d-dim = {scipy_q.logpdf(z.numpy()):.12f}")
assert abs(sum_of_1d - scipy_q.logpdf(z.numpy())) < 1e-12
assert abs(q.log_prob(z).item() - scipy_q.logpdf(z.numpy())) < 1e-12

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The derivation, step by step
#
# **Step 1 — the KL splits over dimensions.** By definition
#
# $$\mathrm{KL}(q\,\|\,p) = \mathbb E_{q}\big[\log q(z) - \log p(z)\big]
#  = \underbrace{\mathbb E_q[\log q(z)]}_{\text{first integral}}
#  - \underbrace{\mathbb E_q[\log p(z)]}_{\text{second integral}} .$$
#
# Both logs are sums over $j$, and the $j$-th term depends on $z_j$ only, whose distribution under
# $q$ is $\mathcal N(\mu_j, \sigma_j^2)$. So each integral is a sum of 1-D integrals, and
# $\mathrm{KL}(q\,\|\,p) = \sum_j \mathrm{KL}\big(\mathcal N(\mu_j, \sigma_j^2)\,\|\,
# \mathcal N(0,1)\big)$. From here on we work with one coordinate and drop the index $j$.
#
# **Step 2 — the first integral.** With
# $\log q(z) = -\frac12\log(2\pi\sigma^2) - \frac{(z-\mu)^2}{2\sigma^2}$ and
# $\mathbb E_q[(z-\mu)^2] = \sigma^2$ (the definition of the variance),
#
# $$\mathbb E_q[\log q(z)] = -\frac12 \log(2\pi\sigma^2) - \frac{\sigma^2}{2\sigma^2}
#   = -\frac12\big(\log 2\pi\sigma^2 + 1\big).$$
#
# (This is minus the entropy of $q$: a narrow $q$ has a large $\mathbb E_q[\log q]$.)
#
# We check it by quadrature. To integrate against $q$ we substitute $z = \mu + \sigma t$, so that
# $q(z)\,dz = \mathcal N(t; 0, 1)\,dt$, the standard normal density:
# $\ \mathbb E_q[f(z)] = \int \mathcal N(t; 0, 1)\, f(\mu + \sigma t)\, dt$. The integrand then has
# the same width whatever $\sigma$ is (section 4 shows what goes wrong without this substitution).

# %%
def expect_under_q(f, mean, var):
    """E_q[f(z)] for q = N(mean, var) in 1-D: ∫ φ(t) f(mean + √var · t) dt, by quadrature."""
    std = math.sqrt(var)

    def integrand(t):
        return math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi) * f(mean + std * t)  # φ(t) f(z)

    value, _abs_error = integrate.quad(integrand, -np.inf, np.inf, epsrel=1e-11, limit=200)
    return value


mean_1, var_1 = 0.8, 0.3
second_central = expect_under_q(lambda z: (z - mean_1) ** 2, mean_1, var_1)
e_log_q = expect_under_q(lambda z: log_normal(z, mean_1, var_1), mean_1, var_1)
e_log_q_closed = -0.5 * (math.log(2 * math.pi * var_1) + 1)
print(f"E_q[(z − μ)²] = {second_central:.12f}   (σ² = {var_1})")
print(f"E_q[log q]    = {e_log_q:.12f}   closed form −½(log 2πσ² + 1) = {e_log_q_closed:.12f}")
assert abs(second_central - var_1) < 1e-10
assert abs(e_log_q - e_log_q_closed) < 1e-10
q_1 = DiagonalGaussian(torch.tensor([mean_1]), torch.tensor([math.log(var_1)]))
assert abs(-q_1.entropy().item() - e_log_q_closed) < 1e-12  # E_q[log q] = −H[q], vaelib's entropy

# %% [markdown]
# **Step 3 — the second moment.** The second integral needs $\mathbb E_q[z^2]$. Write
# $z = \mu + \sigma\varepsilon$ with $\varepsilon \sim \mathcal N(0, 1)$; then
# $z^2 = \mu^2 + 2\mu\sigma\varepsilon + \sigma^2\varepsilon^2$, and since
# $\mathbb E[\varepsilon] = 0$, $\mathbb E[\varepsilon^2] = 1$,
#
# $$\mathbb E_q[z^2] = \sigma^2 + \mu^2 \qquad (\text{variance} + \text{mean}^2).$$
#
# **Step 4 — the second integral.** With $\log p(z) = -\frac12 \log 2\pi - \frac{z^2}{2}$,
#
# $$\mathbb E_q[\log p(z)] = -\frac12\big(\log 2\pi + \mathbb E_q[z^2]\big)
#   = -\frac12\big(\log 2\pi + \sigma^2 + \mu^2\big).$$
#
# We check $\mathbb E_q[z^2]$ by quadrature and by Monte Carlo (with a 99% confidence interval,
# $\pm 2.576$ standard errors), and the second integral by quadrature.

# %%
second_moment = expect_under_q(lambda z: z**2, mean_1, var_1)
eps = torch.randn(200_000, generator=generator)
z_samples = mean_1 + math.sqrt(var_1) * eps            # z = μ + σ ε, (K,)
mc_moment = z_samples.square().mean().item()
z99 = stats.norm.ppf(0.995)                            # 2.576: two-sided 99% quantile of N(0, 1)
mc_half_width = z99 * z_samples.square().std().item() / math.sqrt(len(z_samples))
e_log_p = expect_under_q(lambda z: log_normal(z, 0.0, 1.0), mean_1, var_1)
e_log_p_closed = -0.5 * (LOG_2PI + var_1 + mean_1**2)
print(f"E_q[z²]: σ² + μ² = {var_1 + mean_1**2:.6f}, quadrature = {second_moment:.12f}, "
      f"Monte Carlo = {mc_moment:.4f} ± {mc_half_width:.4f} (99%)")
print(f"E_q[log p] = {e_log_p:.12f}   closed form −½(log 2π + σ² + μ²) = {e_log_p_closed:.12f}")
assert abs(second_moment - (var_1 + mean_1**2)) < 1e-10
assert abs(mc_moment - (var_1 + mean_1**2)) < mc_half_width
assert abs(e_log_p - e_log_p_closed) < 1e-10

# %% [markdown] slideshow={"slide_type": "slide"}
# **Step 5 — subtract.** The $\log 2\pi$ terms cancel:
#
# $$\mathrm{KL} = \mathbb E_q[\log q] - \mathbb E_q[\log p]
#   = -\frac12\big(\log 2\pi + \log\sigma^2 + 1\big) + \frac12\big(\log 2\pi + \sigma^2 + \mu^2\big)
#   = \frac12\big(\sigma^2 + \mu^2 - 1 - \log\sigma^2\big),$$
#
# and summing over the $d$ coordinates (step 1) gives the boxed formula. Below, the KL is written
# straight from steps 2 and 4 (two terms, then their difference) and compared with
# `vaelib.kl.gaussian_kl`, which computes the simplified form; then both are compared with the two
# integrals done by quadrature, coordinate by coordinate.

# %% tags=["answer"]
def kl_from_two_integrals(mu, logvar):
    """E_q[log q] − E_q[log p] from steps 2 and 4, summed over the last dim: (..., d) -> (...)."""
    e_log_q = -0.5 * (LOG_2PI + logvar + 1)                   # −½ (log 2πσ² + 1)
    e_log_p = -0.5 * (LOG_2PI + logvar.exp() + mu.square())   # −½ (log 2π + σ² + μ²)
    return (e_log_q - e_log_p).sum(dim=-1)


mu_batch = 2 * torch.randn(1000, 8, generator=generator)       # (N, d)
logvar_batch = 1.5 * torch.randn(1000, 8, generator=generator)  # (N, d)
torch.testing.assert_close(kl_from_two_integrals(mu_batch, logvar_batch),
                           gaussian_kl(mu_batch, logvar_batch), rtol=1e-12, atol=1e-12)


def kl_quad(mean, var):
    """KL(N(mean, var) ‖ N(0, 1)) = E_q[log q − log p] by quadrature (no closed form used)."""
    return expect_under_q(lambda z: log_normal(z, mean, var) - log_normal(z, 0.0, 1.0), mean, var)


quadrature_kl = sum(kl_quad(m, v) for m, v in zip(mu.tolist(), logvar.exp().tolist()))
print(f"KL for mu = {mu.tolist()}, logvar = {logvar.tolist()}:")
print(f"  two integrals = {kl_from_two_integrals(mu, logvar).item():.12f}")
print(f"  vaelib        = {gaussian_kl(mu, logvar).item():.12f}")
print(f"  quadrature    = {quadrature_kl:.12f}")
assert abs(quadrature_kl - gaussian_kl(mu, logvar).item()) < 1e-9

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. What the formula says
#
# Each coordinate contributes two separate costs:
#
# $$\mathrm{KL}_j = \underbrace{\tfrac12 \mu_j^2}_{\text{moving the mean}}
#  + \underbrace{\tfrac12\big(\sigma_j^2 - 1 - \log \sigma_j^2\big)}_{\text{changing the spread}}
#  .$$
#
# - **It is never negative.** $\log x \le x - 1$ for every $x > 0$ (the log is concave and $x - 1$
#   is its tangent at $x = 1$), so $\sigma^2 - 1 - \log\sigma^2 \ge 0$, with equality only at
#   $\sigma^2 = 1$. The KL is zero exactly when $q$ is the prior ($\mu = 0$, $\sigma^2 = 1$).
# - **In the encoder's own coordinate** $v = \log\sigma^2$ (the encoder's `logvar`; in this chapter
#   only, $v$ names the log-variance, where chapter 5's $v_j$ were variances) the spread cost is
#   $\frac12(e^v - 1 - v)$: it grows **exponentially** when $q$ is wider than the prior ($v > 0$)
#   but only **linearly**, like $-v/2 = \log(1/\sigma)$, when $q$ is narrower. Making a code precise
#   is cheap; making it vague is expensive. The dotted lines below are these linear asymptotes.

# %%
v_grid = torch.linspace(-8, 4, 601)
fig, (ax_v, ax_map) = plt.subplots(1, 2, figsize=(12, 4.2))
for mean_value, shade in [(0.0, 1.0), (1.0, 0.7), (2.0, 0.45)]:
    kl_curve = gaussian_kl(torch.full((601, 1), mean_value), v_grid[:, None])
    ax_v.plot(v_grid, kl_curve, color=COLORS["proposal"], alpha=shade, lw=2,
              label=rf"$\mu = {mean_value:g}$")
    ax_v.plot(v_grid, 0.5 * (mean_value**2 - 1 - v_grid), color=COLORS["proposal"], alpha=shade,
              ls=":", lw=1.2)
ax_v.axvline(0.0, color=COLORS["prior"], lw=1, ls="--", label=r"$\sigma^2 = 1$ (the prior's)")
ax_v.set(ylim=(0, 8), xlabel=r"$v = \log \sigma^2$", ylabel=r"$\mathrm{KL}_j$ (nats)",
         title=r"Per-coordinate KL: linear for narrow $q$, exponential for wide $q$")
asymptote_label = r"dotted: $\frac{1}{2}(\mu^2 - 1 - v)$" + "\n" + r"(asymptote, $v \to -\infty$)"
ax_v.text(-7.8, 6.9, asymptote_label, fontsize=9, color="0.3")
ax_v.legend(loc="upper right")

mean_axis = torch.linspace(-3, 3, 241)
v_axis = torch.linspace(-8, 4, 241)
M, V = torch.meshgrid(mean_axis, v_axis, indexing="xy")
kl_map = gaussian_kl(M[..., None], V[..., None])   # (241, 241): one coordinate, d = 1
contours = ax_map.contour(M, V, kl_map, levels=[0.1, 0.5, 1, 2, 4, 8, 16], cmap="viridis")
ax_map.clabel(contours, fmt="%g", fontsize=8)
ax_map.plot(0, 0, marker="*", ms=14, color=COLORS["prior"])
ax_map.annotate("the prior: KL = 0", xy=(0, 0), xytext=(0.9, -6.8), fontsize=9,
                arrowprops={"arrowstyle": "->", "color": "0.4"})
ax_map.set(xlabel=r"$\mu$", ylabel=r"$v = \log\sigma^2$", title="Contours of the KL (nats), d = 1")
plt.show()

assert (kl_map >= 0).all()
assert gaussian_kl(torch.zeros(1, 5), torch.zeros(1, 5)).item() == 0.0  # exactly 0 at the prior
x_positive = torch.logspace(-6, 6, 1001)
assert (x_positive - 1 - x_positive.log() >= 0).all()  # log x ≤ x − 1

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Three independent checks, on extreme values too
#
# The derivation could hide a slip, and so could `vaelib`. We check the closed form three ways that
# share nothing with it, on 400 random 1-D cases: 200 "typical" ones ($\mu \sim \mathcal N(0,1)$,
# $\log\sigma^2 \sim \mathcal N(0,1)$) and 200 extreme ones ($\mu$ uniform on $[-50, 50]$,
# $\log\sigma^2$ uniform on $[-20, 10]$, i.e. $\sigma$ from $4.5\cdot 10^{-5}$ to $148$), the
# corners included.
#
# 1. **Quadrature**: $\int q(z)\,[\log q(z) - \log p(z)]\,dz$ by `scipy.integrate.quad`.
# 2. **Monte Carlo**: $\frac1K\sum_k [\log q(z_k) - \log p(z_k)]$, $z_k \sim q$, with a 99%
#    confidence interval $\pm 2.576\,\hat s/\sqrt K$; the truth should fall outside it in about 1%
#    of the cases.
# 3. **`torch.distributions.kl_divergence`**, PyTorch's independent implementation.
#
# **Where quadrature needs care.** Integrated in $z$ over $(-\infty, \infty)$, `quad` first samples
# the integrand at a fixed set of points. A $q$ with $\sigma = 4.5\cdot10^{-5}$ is a spike that can
# fall between all of them: `quad` then returns **0.0 with an estimated error of 0.0**, and no
# warning. Integrating in the standardized variable $t = (z - \mu)/\sigma$ (as `expect_under_q`
# does) fixes it. (A second trap: write the integrand with log-densities,
# $q(z)\,[\log q(z) - \log p(z)]$, never $\log\big(q(z)/p(z)\big)$, whose ratio is $0/0$ in the
# tails where both densities underflow.)

# %%
def kl_quad_naive(mean, var):
    """∫ q(z) [log q(z) − log p(z)] dz over z ∈ (−∞, ∞), with no change of variables."""

    def integrand(z):
        log_q = log_normal(z, mean, var)
        return math.exp(log_q) * (log_q - log_normal(z, 0.0, 1.0))

    with warnings.catch_warnings():  # quad may warn on some cases; what it returns is the point
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        return integrate.quad(integrand, -np.inf, np.inf, epsrel=1e-11, limit=200)


for mean_value, v in [(50.0, -20.0), (0.0, -20.0), (1.0, -1.0)]:
    exact = gaussian_kl(torch.tensor([mean_value]), torch.tensor([v])).item()
    naive, naive_error = kl_quad_naive(mean_value, math.exp(v))
    print(f"μ = {mean_value:5}, log σ² = {v:6}: exact {exact:12.6f}   naive quad {naive:12.6f} "
          f"(its error estimate {naive_error:.1e})   "
          f"quad in t {kl_quad(mean_value, math.exp(v)):12.6f}")
spike_kl = gaussian_kl(torch.tensor([50.0]), torch.tensor([-20.0])).item()
assert abs(kl_quad_naive(50.0, math.exp(-20.0))[0]) < 1e-6 < spike_kl  # silently 0, not 1259.5
assert abs(kl_quad(50.0, math.exp(-20.0)) - spike_kl) < 1e-11 * spike_kl

# %% [markdown]
# Now the 400 cases. The reference is `vaelib.kl.gaussian_kl`; each method reports its error
# relative to it.

# %%
case_generator = torch.Generator().manual_seed(6)
typical_mu, typical_logvar = torch.randn(2, 200, generator=case_generator)
extreme_mu = 100 * torch.rand(196, generator=case_generator) - 50       # U(−50, 50)
extreme_logvar = 30 * torch.rand(196, generator=case_generator) - 20    # U(−20, 10)
corner_mu = torch.tensor([50.0, -50.0, 50.0, -50.0])
corner_logvar = torch.tensor([-20.0, -20.0, 10.0, 10.0])
case_mu = torch.cat([typical_mu, extreme_mu, corner_mu])                   # (400,)
case_logvar = torch.cat([typical_logvar, extreme_logvar, corner_logvar])   # (400,)
case_var = case_logvar.exp()
exact_kl = gaussian_kl(case_mu[:, None], case_logvar[:, None])   # (400,): d = 1 per case

quad_kl = torch.tensor([kl_quad(m, v) for m, v in zip(case_mu.tolist(), case_var.tolist())])
naive_kl = torch.tensor([kl_quad_naive(m, v)[0]
                         for m, v in zip(case_mu.tolist(), case_var.tolist())])
torch_kl = kl_divergence(Normal(case_mu, case_var.sqrt()), Normal(0.0, 1.0))  # Normal takes σ
mc_estimate, mc_std_error = mc_kl(case_mu[:, None], case_logvar[:, None], num_samples=4000,
                                  generator=generator)


def relative_error(estimate):
    return ((estimate - exact_kl).abs() / exact_kl).max().item()


mc_inside = ((mc_estimate - exact_kl).abs() <= z99 * mc_std_error).double().mean().item()
naive_wrong = int(((naive_kl - exact_kl).abs() > 1e-6 * exact_kl).sum())
print(f"KL values span {exact_kl.min().item():.2e} to {exact_kl.max().item():.2e} nats")
print(f"quadrature (in t)      max relative error {relative_error(quad_kl):.1e}")
print(f"torch.distributions    max relative error {relative_error(torch_kl):.1e}")
print(f"Monte Carlo, K = 4000  truth inside the 99% interval in {100 * mc_inside:.1f}% of cases")
print(f"naive quadrature (z)   max relative error {relative_error(naive_kl):.1e}; "
      f"wrong (> 1e-6) in {naive_wrong} of 400 cases")
assert relative_error(quad_kl) < 1e-11
assert relative_error(torch_kl) < 1e-12
assert 0.97 <= mc_inside
assert relative_error(naive_kl) > 0.5  # the naive integral misses the narrow spikes

# %%
case_std = case_var.sqrt()
floor = 1e-17  # errors of exactly 0 are drawn at this floor on the log axis
fig, (ax_err, ax_mc) = plt.subplots(1, 2, figsize=(12, 4.2))
for values, color, label, marker in [
    (naive_kl, COLORS["naive"], "quadrature in z (naive)", "x"),
    (quad_kl, "#8c564b", "quadrature in t = (z − μ)/σ", "o"),
    (torch_kl, "#56B4E9", "torch.distributions", "."),
]:
    rel = ((values - exact_kl).abs() / exact_kl).clamp(min=floor)
    ax_err.scatter(case_std, rel, s=14, marker=marker, color=color, label=label, alpha=0.7)
ax_err.axhline(torch.finfo(torch.float64).eps, color=COLORS["exact"], ls="--", lw=1,
               label="float64 machine epsilon")
ax_err.set(xscale="log", yscale="log", xlabel=r"$\sigma$ of q",
           ylabel="relative error (exact 0 drawn at 1e-17)",
           title="Closed form vs quadrature and torch.distributions")
ax_err.legend(loc="center right", fontsize=8)

standardized = ((mc_estimate - exact_kl) / mc_std_error).numpy()
t_axis = np.linspace(-4.5, 4.5, 300)
ax_mc.hist(standardized, bins=30, density=True, color=COLORS["importance"], alpha=0.6,
           label="(estimate − exact) / standard error")
ax_mc.plot(t_axis, stats.norm.pdf(t_axis), color=COLORS["exact"], lw=1.5, label="N(0, 1)")
for sign in (-1, 1):
    reference_line(ax_mc, sign * z99, label="99% interval" if sign > 0 else None, horizontal=False)
ax_mc.set(xlabel="standardized Monte Carlo error", ylabel="density",
          title=f"Monte Carlo (K = 4000): truth inside 99% CI in {100 * mc_inside:.1f}% of cases")
ax_mc.legend(loc="upper left", fontsize=8)
plt.show()

# %% [markdown]
# The closed form agrees with quadrature to a relative $10^{-11}$ (asserted) and with PyTorch to
# rounding, for every $\sigma$ from $4.5\cdot10^{-5}$ to 148 and $|\mu|$ up to 50 (KL up to
# $1.2\cdot10^4$ nats), and the Monte Carlo errors scatter like a standard normal, as they must if
# the estimator is unbiased and the closed form is the truth. The naive quadrature (crosses) is
# wrong for every small $\sigma$: a reminder to check a reference before trusting it.
#
# Monte Carlo in code, straight from the definition, for the $d$-dimensional example of section 1:
# with $z = \mu + \sigma\varepsilon$ we have $(z-\mu)^2/\sigma^2 = \varepsilon^2$, so
# $\log q(z) - \log p(z) = \sum_j \frac12\big(-\log\sigma_j^2 - \varepsilon_j^2 + z_j^2\big)$.
# It agrees with `vaelib.kl.mc_kl` and the closed form within their 99% intervals.

# %%
def kl_monte_carlo(mu, logvar, num_samples, generator=None):
    """(1/K) Σ_k [log q(z_k) − log p(z_k)], z_k = μ + σ ε_k; returns (estimate, standard error)."""
    eps = torch.randn(num_samples, *mu.shape, generator=generator)   # (K, ..., d)
    z = mu + (0.5 * logvar).exp() * eps                              # (K, ..., d)
    log_q = -0.5 * (LOG_2PI + logvar + eps.square()).sum(dim=-1)     # (K, ...)
    log_p = -0.5 * (LOG_2PI + z.square()).sum(dim=-1)                # (K, ...)
    log_ratio = log_q - log_p
    return log_ratio.mean(dim=0), log_ratio.std(dim=0) / math.sqrt(num_samples)


inline_estimate, inline_se = kl_monte_carlo(mu, logvar, 100_000, generator=generator)
vaelib_estimate, vaelib_se = mc_kl(mu, logvar, num_samples=100_000, generator=generator)
exact = gaussian_kl(mu, logvar)
print(f"exact {exact.item():.5f}   "
      f"inline MC {inline_estimate.item():.5f} ± {z99 * inline_se.item():.5f}   "
      f"vaelib MC {vaelib_estimate.item():.5f} ± {z99 * vaelib_se.item():.5f}   (99%)")
assert (inline_estimate - exact).abs() < z99 * inline_se
assert (vaelib_estimate - exact).abs() < z99 * vaelib_se
assert (inline_estimate - vaelib_estimate).abs() < z99 * math.hypot(inline_se, vaelib_se)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. The covariance is $\mathrm{diag}(\sigma^2)$, and the sum runs over all $d$ dimensions
#
# The 1-D checks test one coordinate at a time. Two things remain: that the coordinates add up (step
# 1), and that the covariance in the formula is $\mathrm{diag}(\sigma^2)$. PyTorch's
# `MultivariateNormal` computes the KL between two $d$-dimensional Gaussians from their full
# covariance matrices (through Cholesky factors, assuming no independence); against
# $\mathcal N(0, I)$ it is
# $\frac12\big[\mathrm{tr}\,\Sigma + \mu^\top\mu - d - \log\det\Sigma\big]$. So it checks both at
# once. Handing it $\mathrm{diag}(\sigma)$ instead gives a different number: the σ-for-σ² mistake in
# matrix form.

# %%
mu_d = 1.5 * torch.randn(50, 6, generator=generator)       # (N, d)
logvar_d = 2.0 * torch.randn(50, 6, generator=generator)   # (N, d)
prior = MultivariateNormal(torch.zeros(6), covariance_matrix=torch.eye(6))
cov_right = torch.diag_embed(logvar_d.exp())               # (N, d, d): diag(σ²)
cov_wrong = torch.diag_embed((0.5 * logvar_d).exp())       # (N, d, d): diag(σ), the mistake
kl_full = kl_divergence(MultivariateNormal(mu_d, covariance_matrix=cov_right), prior)   # (N,)
kl_wrong = kl_divergence(MultivariateNormal(mu_d, covariance_matrix=cov_wrong), prior)  # (N,)
torch.testing.assert_close(gaussian_kl(mu_d, logvar_d), kl_full, rtol=1e-10, atol=1e-10)
print(f"first data point: vaelib {gaussian_kl(mu_d, logvar_d)[0].item():.6f}, "
      f"MultivariateNormal with diag(σ²) {kl_full[0].item():.6f}, with diag(σ) "
      f"{kl_wrong[0].item():.6f}")
assert ((kl_wrong - kl_full).abs() > 1e-3).all()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. The KL between two diagonal Gaussians
#
# The same steps give the KL from $q = \mathcal N(\mu_q, \mathrm{diag}\,\sigma_q^2)$ to any
# $p = \mathcal N(\mu_p, \mathrm{diag}\,\sigma_p^2)$ (a learned prior, or chapter 5's posterior).
# Per coordinate, the first integral is unchanged,
# $\mathbb E_q[\log q] = -\frac12(\log 2\pi\sigma_q^2 + 1)$. For the second, split
# $z - \mu_p = (z - \mu_q) + (\mu_q - \mu_p)$; the cross term has mean zero, so
#
# $$\mathbb E_q\big[(z - \mu_p)^2\big] = \sigma_q^2 + (\mu_q - \mu_p)^2, \qquad
# \mathbb E_q[\log p] = -\frac12\Big(\log 2\pi\sigma_p^2
#   + \frac{\sigma_q^2 + (\mu_q - \mu_p)^2}{\sigma_p^2}\Big).$$
#
# Subtracting, $\log 2\pi$ cancels again and
#
# $$\mathrm{KL}(q\,\|\,p) = \frac12 \sum_{j=1}^d \Big[\frac{\sigma_{q,j}^2}{\sigma_{p,j}^2}
#   + \frac{(\mu_{q,j} - \mu_{p,j})^2}{\sigma_{p,j}^2} - 1
#   - \log\frac{\sigma_{q,j}^2}{\sigma_{p,j}^2}\Big].$$
#
# With $\mu_p = 0$, $\sigma_p = 1$ it is the boxed formula. A shortcut explains its shape: the KL
# does not change when both distributions go through the same invertible map, and
# $z \mapsto (z - \mu_p)/\sigma_p$ sends $p$ to $\mathcal N(0, 1)$ and $q$ to
# $\mathcal N\big((\mu_q - \mu_p)/\sigma_p,\ \sigma_q^2/\sigma_p^2\big)$. So the general KL is the
# prior KL of the **standardized** $q$: mean $(\mu_q - \mu_p)/\sigma_p$, log-variance
# $\log\sigma_q^2 - \log\sigma_p^2$. That is our inline version; we check it against
# `vaelib.kl.gaussian_kl_between` (which implements the formula above), PyTorch, Monte Carlo and
# quadrature.

# %%
def kl_between_by_standardizing(mu_q, logvar_q, mu_p, logvar_p):
    """KL(q ‖ p) as the prior KL of q mapped through z ↦ (z − μ_p)/σ_p: (..., d) -> (...)."""
    return gaussian_kl((mu_q - mu_p) * torch.exp(-0.5 * logvar_p), logvar_q - logvar_p)


mu_q, logvar_q, mu_p, logvar_p = 1.5 * torch.randn(4, 200, 5, generator=generator)  # each (N, d)
kl_general = gaussian_kl_between(mu_q, logvar_q, mu_p, logvar_p)   # (N,)
torch.testing.assert_close(kl_between_by_standardizing(mu_q, logvar_q, mu_p, logvar_p),
                           kl_general, rtol=1e-12, atol=1e-12)
torch_general = kl_divergence(Normal(mu_q, (0.5 * logvar_q).exp()),
                              Normal(mu_p, (0.5 * logvar_p).exp())).sum(dim=-1)
torch.testing.assert_close(kl_general, torch_general, rtol=1e-12, atol=1e-12)
mc_general, mc_general_se = mc_kl(mu_q, logvar_q, mu_p, logvar_p, num_samples=4000,
                                  generator=generator)
general_inside = ((mc_general - kl_general).abs() <= z99 * mc_general_se).double().mean().item()


def kl_between_quad(mean_q, var_q, mean_p, var_p):
    """1-D KL(N(mean_q, var_q) ‖ N(mean_p, var_p)) by quadrature over t = (z − mean_q)/σ_q."""
    return expect_under_q(lambda z: log_normal(z, mean_q, var_q) - log_normal(z, mean_p, var_p),
                          mean_q, var_q)


quad_general = torch.tensor([  # the first 20 data points, summing the d = 5 coordinates
    sum(kl_between_quad(mu_q[n, j].item(), logvar_q[n, j].exp().item(),
                        mu_p[n, j].item(), logvar_p[n, j].exp().item()) for j in range(5))
    for n in range(20)])
quad_rel_error = ((quad_general - kl_general[:20]).abs() / kl_general[:20]).max().item()
print(f"vs torch.distributions: max |difference| "
      f"{(kl_general - torch_general).abs().max().item():.1e}")
print(f"vs quadrature (20 points): max relative error {quad_rel_error:.1e}")
print(f"Monte Carlo: the 99% interval covers the truth for {100 * general_inside:.1f}% "
      "of 200 points")
assert quad_rel_error < 1e-10
assert general_inside >= 0.97
assert (gaussian_kl_between(mu_q, logvar_q, mu_q, logvar_q) == 0).all()   # KL(q ‖ q) = 0 exactly
zeros = torch.zeros_like(mu_q)
torch.testing.assert_close(gaussian_kl_between(mu_q, logvar_q, zeros, zeros),
                           gaussian_kl(mu_q, logvar_q))   # p = N(0, I): the boxed formula

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. KL is not symmetric
#
# $\mathrm{KL}(q\,\|\,p)$ averages $\log(q/p)$ under $q$; $\mathrm{KL}(p\,\|\,q)$ averages
# $\log(p/q)$ under $p$. For $\mu = 0$ and $v = \log\sigma^2$ the general formula gives
#
# $$\mathrm{KL}(q\,\|\,p) = \tfrac12\big(e^{v} - 1 - v\big), \qquad
#   \mathrm{KL}(p\,\|\,q) = \tfrac12\big(e^{-v} - 1 + v\big),$$
#
# mirror images of each other. A narrow $q$ ($v \ll 0$) costs little in the VAE's direction: $q$
# only has to sit where $p$ has mass. In the reverse direction it is very expensive: $p$'s mass
# falls where $q$ is nearly zero. The VAE's ELBO contains $\mathrm{KL}(q\,\|\,p)$, an expectation
# under $q$ (the distribution we can sample from); swapping the arguments gives a different number
# and a different objective.

# %%
logvar_narrow = torch.tensor([math.log(0.01)])  # σ = 0.1
zero = torch.zeros(1)
kl_q_p = gaussian_kl_between(zero, logvar_narrow, zero, zero).item()
kl_p_q = gaussian_kl_between(zero, zero, zero, logvar_narrow).item()
torch_q_p = kl_divergence(Normal(0.0, 0.1), Normal(0.0, 1.0)).item()
torch_p_q = kl_divergence(Normal(0.0, 1.0), Normal(0.0, 0.1)).item()
print(f"q = N(0, 0.1²), p = N(0, 1):  KL(q ‖ p) = {kl_q_p:.4f} nats,   "
      f"KL(p ‖ q) = {kl_p_q:.4f} nats")
assert abs(kl_q_p - torch_q_p) < 1e-12 and abs(kl_p_q - torch_p_q) < 1e-12
assert abs(kl_q_p - 0.5 * (0.01 - 1 - math.log(0.01))) < 1e-12 and kl_p_q > 25 * kl_q_p

v_sym = torch.linspace(-6, 6, 601)[:, None]
zeros_sym = torch.zeros_like(v_sym)
fig, (ax_dir, ax_dens) = plt.subplots(1, 2, figsize=(12, 4))
ax_dir.plot(v_sym, gaussian_kl_between(zeros_sym, v_sym, zeros_sym, zeros_sym),
            color=COLORS["proposal"], lw=2, label=r"$\mathrm{KL}(q\,\|\,p)$ (the VAE's)")
ax_dir.plot(v_sym, gaussian_kl_between(zeros_sym, zeros_sym, zeros_sym, v_sym),
            color=COLORS["prior"], lw=2, label=r"$\mathrm{KL}(p\,\|\,q)$")
ax_dir.axvline(math.log(0.01), color=COLORS["exact"], ls="--", lw=1, label=r"$\sigma = 0.1$")
ax_dir.set(ylim=(0, 20), xlabel=r"$v = \log\sigma^2$ of q ($\mu = 0$)", ylabel="nats",
           title=r"The two directions are mirror images in $\log\sigma^2$")
ax_dir.legend()
z_axis = np.linspace(-4, 4, 801)
ax_dens.plot(z_axis, stats.norm.pdf(z_axis), color=COLORS["prior"], lw=2, label="p = N(0, 1)")
ax_dens.fill_between(z_axis, stats.norm.pdf(z_axis, 0, 0.1), color=COLORS["proposal"], alpha=0.3,
                     label="q = N(0, 0.1²)")
ax_dens.set(xlabel="z", ylabel="density", yscale="log", ylim=(1e-4, 10),
            title=f"KL(q‖p) = {kl_q_p:.2f} but KL(p‖q) = {kl_p_q:.1f} nats")
ax_dens.legend(loc="upper left")
ax_dens.annotate("p has mass here, q almost none:\nKL(p ‖ q) averages a huge log p/q",
                 xy=(1.5, 0.13), xytext=(0.7, 1.5), fontsize=9,
                 arrowprops={"arrowstyle": "->", "color": "0.4"})
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. Why encoders output $\log \sigma^2$
#
# An encoder's last layer is linear: its outputs are arbitrary real numbers. We compare ways to
# turn such an output into a variance: read it as $\sigma$ (or $\sigma^2$), or as
# $v = \log\sigma^2$.
#
# **(a) Positivity for free.** An output read as $\sigma$ or $\sigma^2$ is negative about half the
# time at initialization, and a Gaussian with a negative scale does not exist: it needs a
# constraint (a softplus, or an exp — which *is* the log-parameterization). An output read as $v$
# is always valid: $\sigma^2 = e^v > 0$.

# %%
raw_outputs = torch.randn(10_000, generator=generator)  # a linear layer's outputs at initialization
print(f"read as σ: {100 * (raw_outputs <= 0).double().mean().item():.1f}% are not valid scales")
try:
    Normal(0.0, torch.tensor(-0.3))  # an output of −0.3, read as σ
except ValueError:
    print("torch.distributions.Normal(0, σ = −0.3) raises ValueError: a scale must be positive")
assert (raw_outputs <= 0).any()
assert ((0.5 * raw_outputs).exp() > 0).all()   # read as log σ²: every output gives a valid σ

# %% [markdown]
# **(b) Well-scaled gradients.** As a function of $\sigma$ the per-coordinate KL is
# $\frac12(\sigma^2 + \mu^2 - 1 - 2\log\sigma)$, and as a function of $v = \log\sigma^2$ it is
# $\frac12(e^v + \mu^2 - 1 - v)$, so
#
# $$\frac{\partial\,\mathrm{KL}}{\partial \sigma} = \sigma - \frac1\sigma, \qquad
# \frac{\partial\,\mathrm{KL}}{\partial v} = \frac12\big(e^{v} - 1\big), \qquad
# \frac{\partial\,\mathrm{KL}}{\partial \mu} = \mu .$$
#
# The $\sigma$-gradient blows up like $1/\sigma$ as $\sigma \to 0$; the $v$-gradient never exceeds
# $\frac12$ in size for $\sigma \le 1$. One gradient step of size $\eta$ moves $\sigma$ by about
# $\eta/\sigma$ in the first case (from $\sigma = 10^{-3}$ with $\eta = 0.1$: to
# $\sigma \approx 100$, far past the optimum $\sigma = 1$), and multiplies $\sigma$ by at most
# $e^{\eta/4}$ in the second: for $\sigma \le 1$, steps in $v$ are small **relative** changes of
# $\sigma$, whatever its scale. That is the range that matters: observing $x$ adds information, so
# an encoder's $q(z\mid x)$ is almost always narrower than the prior. For $\sigma > 1$ the
# $v$-gradient grows like $\sigma^2/2$ and a fixed step overshoots the other way (the right of both
# panels): the same exponential that overflows in (d) below. We check the three derivatives with
# autograd, then draw both effects.

# %%
sigma_axis = torch.logspace(-4, 2, 241)
sigma_param = sigma_axis.clone().requires_grad_(True)
(0.5 * (sigma_param.square() - 1 - 2 * sigma_param.log())).sum().backward()   # KL as f(σ), μ = 0
v_param = (2 * sigma_axis.log()).requires_grad_(True)
mu_param = torch.linspace(-3, 3, 241).requires_grad_(True)
gaussian_kl(mu_param[:, None], v_param[:, None]).sum().backward()             # KL as f(μ, v)
torch.testing.assert_close(sigma_param.grad, sigma_axis - 1 / sigma_axis)
torch.testing.assert_close(v_param.grad, 0.5 * (sigma_axis.square() - 1))
torch.testing.assert_close(mu_param.grad, mu_param.detach())
assert v_param.grad[sigma_axis <= 1].abs().max() <= 0.5


# %%
step_size = 0.1
sigma_after_sigma_step = sigma_axis - step_size * sigma_param.grad  # σ − η ∂KL/∂σ
v_after_step = v_param.detach() - step_size * v_param.grad  # v − η ∂KL/∂v
sigma_after_v_step = torch.exp(0.5 * v_after_step)
fig, (ax_grad, ax_step) = plt.subplots(1, 2, figsize=(12, 4.2))
ax_grad.plot(sigma_axis, sigma_param.grad.abs(), color=COLORS["naive"], lw=2, ls="--",
             label=r"$|\partial \mathrm{KL}/\partial\sigma| = |\sigma - 1/\sigma|$")
ax_grad.plot(sigma_axis, v_param.grad.abs(), color=COLORS["elbo"], lw=2,
             label=r"$|\partial \mathrm{KL}/\partial \log\sigma^2| = \frac{1}{2}|\sigma^2 - 1|$")
ax_grad.set(xscale="log", yscale="log", ylim=(1e-3, 1e5), xlabel=r"$\sigma$",
            ylabel="gradient magnitude", title="Gradient of the KL in two parameterizations")
ax_grad.legend(loc="upper center")
ax_step.plot(sigma_axis, sigma_after_sigma_step, color=COLORS["naive"], lw=2, ls="--",
             label=r"a step in $\sigma$")
ax_step.plot(sigma_axis, sigma_after_v_step, color=COLORS["elbo"], lw=2,
             label=r"a step in $\log\sigma^2$")
ax_step.plot(sigma_axis, sigma_axis, color=COLORS["prior"], lw=1, ls=":", label="no change")
reference_line(ax_step, 1.0, label=r"the optimum $\sigma = 1$")
ax_step.set(xscale="log", yscale="log", ylim=(1e-4, 1e4), xlabel=r"$\sigma$ before the step",
            ylabel=r"$\sigma$ after the step",
            title=rf"One gradient step on the KL, $\eta = {step_size}$")
ax_step.legend(loc="upper center", fontsize=9)
plt.show()

sigma_small = 1e-3
overshoot = sigma_small - step_size * (sigma_small - 1 / sigma_small)
print(
    f"from σ = {sigma_small:g}: a step in σ lands at σ = {overshoot:.1f}; a step in log σ² at "
    f"σ = {sigma_small * math.exp(step_size / 4 * (1 - sigma_small**2)):.6f}"
)
assert overshoot > 99
assert (sigma_after_v_step / sigma_axis).max() <= math.exp(step_size / 4) + 1e-12

# %% [markdown] slideshow={"slide_type": "slide"}
# **(c) The float32 range: small variances.** Neural networks compute in float32, whose smallest
# positive number is about $1.4\cdot10^{-45}$. Code that computes $\sigma^2$ from $\sigma$ and then
# $\log\sigma^2$ breaks twice as $\sigma$ shrinks: at $\sigma = 10^{-20}$ the KL is still finite
# but its gradient, which contains $1/\sigma^2 = 10^{40}$, already overflows to $-\infty$; below
# $\sigma \approx 3\cdot10^{-23}$, $\sigma^2$ underflows to 0 and $\log\sigma^2 = -\infty$, so the
# KL itself is $+\infty$. One such value ruins every weight in one optimizer step. In
# log-parameterization the KL needs $e^v$ only in the term $\frac12 e^v$, where underflowing to 0 is
# harmless, and $-v/2$ stays exact: the KL and its gradient ($\frac12(e^v - 1) \to -\frac12$) stay
# finite.
#
# **(d) The price: large variances.** $e^v$ overflows float32 once
# $v > \log(3.4\cdot10^{38}) \approx 88.72$: the KL and its gradient become $+\infty$. So the usual
# practice is to **clamp** the encoder's log-variance, e.g. to $[-30, 20]$ as in the autoencoders
# of latent diffusion / Stable Diffusion (`DiagonalGaussianDistribution`). The clamp is a guard, not
# a model: outside it the gradient is exactly zero, so a clamped coordinate gets no signal back.

# %%
def kl_from_std_float32(std):
    """The per-coordinate KL (μ = 0) from σ in float32, through σ²: ½(σ² − 1 − log σ²)."""
    var = std.float().square()        # σ² underflows to 0 for σ below ~3e-23 in float32
    return 0.5 * (var - 1 - var.log())


rows = []
for sigma_value in [1e-3, 1e-20, 1e-23, 1e-30]:
    std32 = torch.tensor([sigma_value], dtype=torch.float32, requires_grad=True)
    kl_std = kl_from_std_float32(std32)
    kl_std.backward()
    logvar32 = torch.tensor([[2 * math.log(sigma_value)]], dtype=torch.float32, requires_grad=True)
    kl_logvar = gaussian_kl(torch.zeros(1, 1, dtype=torch.float32), logvar32)
    kl_logvar.backward()
    rows.append((kl_std.item(), std32.grad.item(), kl_logvar.item(), logvar32.grad.item()))
    print(f"σ = {sigma_value:7.0e}:  from σ²: KL = {kl_std.item():9.4g}, "
          f"grad {std32.grad.item():9.3g}   |   from log σ² = {logvar32.item():7.2f}: "
          f"KL = {kl_logvar.item():8.4f}, grad {logvar32.grad.item():.3f}")
assert math.isfinite(rows[1][0]) and math.isinf(rows[1][1])  # σ = 1e-20: KL finite, grad −inf
assert math.isinf(rows[2][0]) and not math.isfinite(rows[2][1])   # σ = 1e-23: KL = inf
assert all(math.isfinite(r[2]) and math.isfinite(r[3]) for r in rows)   # log σ²: always finite
assert abs(rows[2][2] - 0.5 * (-1 - 2 * math.log(1e-23))) < 1e-4  # and right: ½(e^v − 1 − v)

log_float32_max = math.log(torch.finfo(torch.float32).max)
on_the_edge = torch.tensor([[88.0], [89.0]], dtype=torch.float32)   # (2, 1): v = 88 and v = 89
kl_edge = gaussian_kl(torch.zeros_like(on_the_edge), on_the_edge)
print(f"log of float32's largest number = {log_float32_max:.4f}; "
      f"KL at v = 88: {kl_edge[0].item():.3e}, at v = 89: {kl_edge[1].item()}")
assert abs(log_float32_max - 88.7228) < 1e-4
assert math.isfinite(kl_edge[0].item()) and math.isinf(kl_edge[1].item())

encoder_logvar = torch.tensor([[-40.0, 5.0, 25.0, 95.0]], dtype=torch.float32, requires_grad=True)
clamped = encoder_logvar.clamp(-30.0, 20.0)
kl_clamped = gaussian_kl(torch.zeros_like(clamped), clamped)
kl_clamped.backward()
print(f"clamped to [-30, 20]: KL = {kl_clamped.item():.4g} (finite); gradient per coordinate "
      f"{encoder_logvar.grad.tolist()[0]}")
assert math.isfinite(kl_clamped.item())
assert encoder_logvar.grad[0, 1] != 0 and (encoder_logvar.grad[0, [0, 2, 3]] == 0).all()

# %% [markdown]
# The whole trade-off in one picture: the per-coordinate KL ($\mu = 0$) computed in float32 from
# $\log\sigma^2$ (thin solid line) and from $\sigma$ via $\sigma^2$ (thick dashed line), over
# $v = \log\sigma^2$ from $-140$ to $100$. A curve stops where its value becomes infinite.

# %%
v_float32 = torch.linspace(-140, 100, 2401, dtype=torch.float32)
kl_via_logvar = gaussian_kl(torch.zeros_like(v_float32)[:, None], v_float32[:, None])
kl_via_std = kl_from_std_float32(torch.exp(0.5 * v_float32))   # σ = e^{v/2}, then σ², log σ²
smallest_subnormal = torch.finfo(torch.float32).smallest_normal * 2.0**-23
underflow_v = math.log(smallest_subnormal)                      # ≈ −103.3


def finite_or_nan(values):
    return torch.where(torch.isfinite(values), values, torch.nan)  # matplotlib leaves NaN out


fig, ax = plt.subplots(figsize=(11, 4.2))
ax.axvspan(-30, 20, color=COLORS["elbo"], alpha=0.08, label="a usual clamp: [−30, 20]")
ax.plot(v_float32, finite_or_nan(kl_via_std), color=COLORS["naive"], lw=3, alpha=0.6, ls="--",
        label=r"from $\sigma$: $\frac{1}{2}(\sigma^2 - 1 - \log\sigma^2)$")
ax.plot(v_float32, finite_or_nan(kl_via_logvar), color=COLORS["elbo"], lw=1.5,
        label=r"from $v$: $\frac{1}{2}(e^v - 1 - v)$ (vaelib)")
ax.axvline(underflow_v, color=COLORS["naive"], ls="--", lw=1)
underflow_label = r"$\sigma^2 \to 0$, $\log\sigma^2 = -\infty$" + "\n(from σ: KL = inf)"
ax.text(underflow_v - 2, 1e30, underflow_label, ha="right", fontsize=9, color=COLORS["naive"])
ax.axvline(log_float32_max, color=COLORS["exact"], ls="--", lw=1)
ax.text(log_float32_max - 2, 1e30, "$e^v$ overflows\n(both: KL = inf)", ha="right", fontsize=9)
ax.set(yscale="log", ylim=(1e-2, 1e42), xlabel=r"$v = \log\sigma^2$",
       ylabel="KL per coordinate (nats)",
       title="float32: log σ² survives tiny variances; both overflow past v ≈ 88.7")
ax.legend(loc="upper center")
plt.show()
assert torch.isfinite(kl_via_logvar[v_float32 < log_float32_max]).all()
assert torch.isinf(kl_via_std[v_float32 < underflow_v - 1]).all()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 9. Explore: q against the prior
#
# Move $\mu$ and $\log\sigma^2$. Left: $q$ and the prior $p$. Middle: the integrand
# $q(z)\,[\log q(z) - \log p(z)]$, whose area is the KL; it is negative where $q < p$, but the
# total never is. Right: the two integrals of the derivation, $\mathbb E_q[\log q]$ and
# $-\mathbb E_q[\log p]$, whose sum is the KL. Things to try: a narrow $q$ ($\log\sigma^2 = -4$)
# has a large $\mathbb E_q[\log q]$ (low entropy) but only a moderate KL; a wide $q$
# ($\log\sigma^2 = 2.5$) makes $-\mathbb E_q[\log p]$ grow like $\sigma^2/2$; at $\mu = 0$,
# $\log\sigma^2 = 0$ the two terms cancel exactly.

# %%
def draw_kl(fig, mu, logvar):
    """q = N(mu, e^logvar) against p = N(0, 1): densities, the KL's integrand, its two terms."""
    ax_pdf, ax_int, ax_terms = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.15, 1.15, 1]})
    z_axis = np.linspace(-6, 6, 1201)
    std = math.exp(0.5 * logvar)
    q_pdf, p_pdf = stats.norm.pdf(z_axis, mu, std), stats.norm.pdf(z_axis)
    ax_pdf.plot(z_axis, p_pdf, color=COLORS["prior"], lw=2, label="p = N(0, 1)")
    ax_pdf.plot(z_axis, q_pdf, color=COLORS["proposal"], lw=2, label="q = N(μ, σ²)")
    ax_pdf.fill_between(z_axis, q_pdf, color=COLORS["proposal"], alpha=0.2)
    ax_pdf.set(xlabel="z", ylabel="density", title="q and the prior p",
               ylim=(0, max(0.6, 1.1 * q_pdf.max())))
    ax_pdf.legend(loc="upper left", fontsize=8)

    integrand = q_pdf * (stats.norm.logpdf(z_axis, mu, std) - stats.norm.logpdf(z_axis))
    ax_int.fill_between(z_axis, integrand, where=integrand >= 0, color=COLORS["naive"],
                        alpha=0.4, label="adds to the KL")
    ax_int.fill_between(z_axis, integrand, where=integrand < 0, color=COLORS["importance"],
                        alpha=0.4, label="subtracts")
    ax_int.axhline(0, color="0.3", lw=0.8)
    ax_int.set(xlabel="z", ylabel=r"$q(z)\,\log\frac{q(z)}{p(z)}$", title="integrand: area = KL")
    ax_int.legend(loc="upper left", fontsize=8)

    kl = gaussian_kl(torch.tensor([mu]), torch.tensor([logvar])).item()
    e_log_q = -0.5 * (LOG_2PI + logvar + 1)                # step 2
    e_log_p = -0.5 * (LOG_2PI + math.exp(logvar) + mu**2)  # step 4
    labels = [r"$\mathbb{E}_q[\log q]$", r"$-\mathbb{E}_q[\log p]$", "KL"]
    values = [e_log_q, -e_log_p, kl]
    bar_colors = [COLORS["proposal"], COLORS["prior"], COLORS["exact"]]
    bars = ax_terms.bar(labels, values, color=bar_colors)
    ax_terms.bar_label(bars, fmt="%.3f", fontsize=9)
    ax_terms.axhline(0, color="0.3", lw=0.8)
    low, high = min(0.0, *values), max(0.0, *values)
    margin = 0.15 * (high - low + 1)
    ax_terms.set(ylim=(low - margin, high + margin), ylabel="nats", title=f"KL = {kl:.3f} nats")
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.14, top=0.9, wspace=0.32)  # fast layout
    return (
        f"KL = {kl:.4f} nats = ½μ² ({0.5 * mu**2:.4f}, the mean) + ½(σ² − 1 − log σ²) "
        f"({0.5 * (math.exp(logvar) - 1 - logvar):.4f}, the spread)"
    )


# %%
static_figure(draw_kl, figsize=(13, 4), mu=1.2, logvar=-1.5)

kl_explorer = FigureExplorer(
    draw_kl, figsize=(13, 4),
    mu=FloatSlider(value=1.2, min=-3.0, max=3.0, step=0.1, description="μ"),
    logvar=FloatSlider(value=-1.5, min=-4.0, max=3.0, step=0.1, description="log σ²"),
)
kl_explorer

# %%
# The bars at μ = 1.2, log σ² = −1.5 are the quadrature integrals of section 2, and they add up
q_var = math.exp(-1.5)
e_log_q_quad = expect_under_q(lambda z: log_normal(z, 1.2, q_var), 1.2, q_var)
e_log_p_quad = expect_under_q(lambda z: log_normal(z, 0.0, 1.0), 1.2, q_var)
kl_widget = gaussian_kl(torch.tensor([1.2]), torch.tensor([-1.5])).item()
assert abs(e_log_q_quad - e_log_p_quad - kl_widget) < 1e-10
assert abs(kl_widget - (0.5 * 1.2**2 + 0.5 * (q_var - 1 + 1.5))) < 1e-12  # mean + spread
kl_explorer.controls["logvar"].value = 0.0   # moving the sliders redraws: at the prior, KL = 0
kl_explorer.controls["mu"].value = 0.0
assert kl_explorer.readout.value.startswith("KL = 0.0000")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 10. Classic mistakes
#
# > **Classic mistakes**
# >
# > 1. **σ where σ² belongs.** The formula has the variance,
# >    $\frac12\sum(\sigma^2 + \mu^2 - 1 - \log\sigma^2)$ with $\sigma^2 = e^{\text{logvar}}$ and
# >    $\log\sigma^2 = \text{logvar}$. Writing $e^{\text{logvar}/2}$ for $\sigma^2$, $\log\sigma$
# >    for $\log\sigma^2$, a covariance $\mathrm{diag}(\sigma)$, `Normal(mu, logvar.exp())`
# >    (PyTorch's `Normal` takes the **standard deviation**), or a tensor named `logvar` that holds
# >    $\log\sigma$: each gives a number that is wrong, yet positive and plausible. Nothing crashes;
# >    the model just trains with the wrong regularizer.
# > 2. **Forgetting the sum over dimensions.** The KL of independent coordinates is the **sum** of
# >    the per-coordinate KLs: `.sum(dim=-1)`, one number per data point. A `.mean()` over the
# >    latent dimensions divides the KL by $d$ and silently re-weights the two terms of the ELBO.
# > 3. **The sign.** Kingma & Welling (2014, appendix B) write
# >    $-\mathrm{KL} = \frac12\sum(1 + \log\sigma^2 - \mu^2 - \sigma^2)$. Code that copies this
# >    expression must negate it before adding it to a loss. PyTorch's `examples/vae` quotes the
# >    expression in a comment (`0.5 * sum(1 + log(sigma^2) - mu^2 - sigma^2)`, which is −KL) above
# >    code that computes `-0.5 * torch.sum(...)` (+KL, which is right): comment and code disagree
# >    by a sign. A KL that comes out negative is always a bug.
# > 4. **The direction.** $\mathrm{KL}(q\,\|\,p) \ne \mathrm{KL}(p\,\|\,q)$: the ELBO needs the KL
# >    from the encoder's $q$ to the prior. `gaussian_kl_between(mu_q, logvar_q, mu_p, logvar_p)`
# >    and `kl_divergence(q, p)` both take $q$ first.
# > 5. **A missing ½**, and **a reference trusted blindly**: quadrature in $z$ returns 0 for a
# >    narrow $q$ (section 4). Checks need checking too.
#
# Each mistake, as a number, for one data point with $d = 3$:

# %%
mu_m = torch.tensor([[1.0, -0.5, 0.3]])      # (N, d) = (1, 3)
logvar_m = torch.tensor([[-1.0, 0.5, 0.2]])  # (N, d)
var_m, std_m = logvar_m.exp(), (0.5 * logvar_m).exp()
zeros_m = torch.zeros_like(mu_m)
right = gaussian_kl(mu_m, logvar_m)          # (N,)
mistakes = {
    "σ where σ² belongs": 0.5 * (std_m + mu_m**2 - 1 - std_m.log()).sum(dim=-1),
    "log σ where log σ² belongs": 0.5 * (var_m + mu_m**2 - 1 - 0.5 * logvar_m).sum(dim=-1),
    "Normal(mu, logvar.exp())": kl_divergence(Normal(mu_m, var_m), Normal(0.0, 1.0)).sum(dim=-1),
    "mean over dims, not sum": 0.5 * (var_m + mu_m**2 - 1 - logvar_m).mean(dim=-1),
    "the −KL of the appendix": 0.5 * (1 + logvar_m - mu_m**2 - var_m).sum(dim=-1),
    "reverse direction KL(p ‖ q)": gaussian_kl_between(zeros_m, zeros_m, mu_m, logvar_m),
    "missing ½": (var_m + mu_m**2 - 1 - logvar_m).sum(dim=-1),
}
print(f"{'right: vaelib.kl.gaussian_kl':32s} {right.item():8.4f}")
for name, value in mistakes.items():
    print(f"{name:32s} {value.item():8.4f}   ({100 * (value / right - 1).item():+.0f}%)")
    assert (value - right).abs() > 0.05 * right
assert mistakes["the −KL of the appendix"] < 0

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - $\mathrm{KL}\big(\mathcal N(\mu, \mathrm{diag}\,\sigma^2)\,\|\,\mathcal N(0, I)\big)
#   = \frac12\sum_j(\sigma_j^2 + \mu_j^2 - 1 - \log\sigma_j^2)$, from two Gaussian integrals,
#   $\mathbb E_q[\log q] = -\frac12\sum(\log 2\pi\sigma^2 + 1)$ and
#   $\mathbb E_q[\log p] = -\frac12\sum(\log 2\pi + \sigma^2 + \mu^2)$, and the second moment
#   $\mathbb E[z^2] = \sigma^2 + \mu^2$. It is $\ge 0$, and $0$ only at the prior.
# - Checked on 400 random cases with $\log\sigma^2 \in [-20, 10]$ and $|\mu| \le 50$: quadrature
#   agrees to a relative $10^{-11}$ (asserted), `torch.distributions` to rounding, and Monte
#   Carlo's 99% intervals cover the truth about 99% of the time. Quadrature needs the right variable
#   to see a narrow $q$.
# - Between two diagonal Gaussians:
#   $\frac12\sum\big[\sigma_q^2/\sigma_p^2 + (\mu_q-\mu_p)^2/\sigma_p^2 - 1
#   - \log(\sigma_q^2/\sigma_p^2)\big]$, the prior KL of $q$ standardized by $p$. KL is not
#   symmetric.
# - Encoders output $\log\sigma^2$: positivity for free, gradients and steps on the scale of
#   $\sigma$, no $\log 0$ for tiny variances. The price is $e^v$ overflowing float32 past
#   $v \approx 88.7$, which a clamp (e.g. $[-30, 20]$) guards against.
# - In code: `vaelib.kl.gaussian_kl(mu, logvar)`,
#   `gaussian_kl_between(mu_q, logvar_q, mu_p, logvar_p)`, and `mc_kl(...)` for a Monte Carlo
#   check. Chapter 7 differentiates through samples of $q$; chapter 8 puts this KL into the VAE's
#   loss.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# ### Exercise 1 — the closed form, simplified
#
# Section 2 wrote the KL as the difference of two integrals. Write the **simplified** closed form
# $\frac12\sum_j(\sigma_j^2 + \mu_j^2 - 1 - \log\sigma_j^2)$ yourself, for `mu` and `logvar` of
# shape `(N, d)`, returning one KL per data point, shape `(N,)`. Use only `torch` (not
# `vaelib.kl`). Watch for σ versus σ², the ½, the sum, and the sign. The check refuses `vaelib.kl`,
# `torch.distributions` and section 2's `kl_from_two_integrals`, but cannot tell a copy from your
# own work.

# %% tags=["solution"]
def my_gaussian_kl(mu, logvar):
    """KL(q ‖ N(0, I)) for a diagonal q with means mu and log-variances logvar: (N, d), (N, d) ->
    (N,).
    """
    return 0.5 * (logvar.exp() + mu.square() - 1 - logvar).sum(dim=-1)


# %%
check_gaussian_kl(my_gaussian_kl);

# %% [markdown]
# ### Exercise 2 — a full covariance
#
# Some encoders output a full covariance $\Sigma = L L^\top$ through its Cholesky factor $L$ (lower
# triangular, positive diagonal). Repeat steps 2–4 for $q = \mathcal N(\mu, \Sigma)$ in $d$
# dimensions: you need $\mathbb E_q[(z - \mu)^\top \Sigma^{-1} (z - \mu)]$ and
# $\mathbb E_q[z^\top z]$ (use the trace). You should find
# $\mathrm{KL}\big(\mathcal N(\mu, \Sigma)\,\|\,\mathcal N(0, I)\big)
# = \frac12\big[\mathrm{tr}\,\Sigma + \mu^\top\mu - d - \log\det\Sigma\big]$, which is the boxed
# formula when $\Sigma$ is diagonal. Implement it for `mu` of shape `(N, d)` and `scale_tril` ($L$)
# of shape `(N, d, d)`, returning `(N,)`, reading $\mathrm{tr}\,\Sigma$ and $\log\det\Sigma$ off $L$
# without forming $\Sigma$. This is σ versus σ² again, in matrix form. Use only tensor operations
# (the check refuses `torch.distributions`' KL and `vaelib.kl`).

# %% tags=["solution"]
def my_kl_full_covariance(mu, scale_tril):
    """KL(N(mu, L Lᵀ) ‖ N(0, I)) for mu (N, d) and Cholesky factors L (N, d, d): -> (N,)."""
    d = mu.shape[-1]
    trace = scale_tril.square().sum(dim=(-2, -1))        # tr(L Lᵀ) = Σ_ik L_ik²
    diagonal = scale_tril.diagonal(dim1=-2, dim2=-1)     # (N, d): L_ii > 0
    log_det = 2 * diagonal.log().sum(dim=-1)             # log det(L Lᵀ) = 2 Σ_i log L_ii
    return 0.5 * (trace + mu.square().sum(dim=-1) - d - log_det)


# %%
check_kl_full_covariance(my_kl_full_covariance);

# %% [markdown]
# ### Exercise 3 — only the mean moves
#
# Let $q = \mathcal N(\mu, \mathrm{diag}\,\sigma^2)$ and
# $p = \mathcal N(0, \mathrm{diag}\,\sigma^2)$ share their variances: only the means differ.
# Simplify the general KL by hand and implement it for `mu`, `logvar` of shape `(N, d)` (the shared
# log-variances), returning `(N,)`. With $\sigma = 1$ you should find $\frac12\|\mu\|^2$. Is this KL
# symmetric in $q$ and $p$?

# %% tags=["solution"]
def my_kl_mean_only(mu, logvar):
    """KL(q ‖ p) for diagonal q and p sharing the log-variances logvar, means mu and 0: (N, d) ->
    (N,).
    """
    # the spread terms σ²/σ² − 1 − log(σ²/σ²) vanish; only the mean term (μ − 0)²/σ² is left
    return 0.5 * (mu.square() / logvar.exp()).sum(dim=-1)


# %%
check_kl_mean_only(my_kl_mean_only);

# %% [markdown]
# ### Exercise 4 — an encoder that outputs σ
#
# Some code bases have the encoder output the standard deviation $\sigma$ (through a softplus)
# instead of $\log\sigma^2$. Write the KL to $\mathcal N(0, I)$ from `mu` and `std` (both `(N, d)`,
# `std > 0`), returning `(N,)`. This is where σ and σ² get confused: what are $\sigma^2$ and
# $\log\sigma^2$ in terms of `std`?

# %% tags=["solution"]
def my_kl_from_std(mu, std):
    """KL(q ‖ N(0, I)) for a diagonal q with means mu and standard deviations std > 0: (N, d) ->
    (N,).
    """
    return 0.5 * (std.square() + mu.square() - 1 - 2 * std.log()).sum(dim=-1)


# %%
check_kl_from_std(my_kl_from_std);
