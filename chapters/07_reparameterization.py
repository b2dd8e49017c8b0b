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
# # Chapter 7 — The reparameterization trick: gradients of expectations
#
# *Symbols: see the course's [notation page](../docs/notation.md).*
#
# A VAE is trained by gradient ascent on the ELBO of its $n$ training points,
#
# $$
# \mathcal L(\theta, \phi) = \sum_{i=1}^{n} \mathbb E_{q_\phi(z \mid x_i)}\big[\log p_\theta(x_i, z)
# - \log q_\phi(z \mid x_i)\big].
# $$
#
# The decoder's gradient $\nabla_\theta$ is easy: $\theta$ does not change the distribution we
# average over, so $\nabla_\theta$ goes inside the expectation. The encoder's gradient
# $\nabla_\phi$ is the hard part, because $\phi$ *is* the distribution. This chapter
#
# 1. shows why $\nabla_\phi \mathbb E_{q_\phi}[f(z)]$ cannot simply be moved inside the expectation;
# 2. derives the **score-function** (REINFORCE) estimator and the **pathwise** (reparameterized)
#    estimator, checks both unbiased against a closed form, and compares their variances across
#    the latent dimension $d$ and the number of samples $K$;
# 3. builds reparameterizations two ways — the inverse CDF of a uniform and a location-scale
#    transform of a fixed density — and checks samples and gradients;
# 4. derives the **doubly stochastic** estimator of the ELBO gradient (a minibatch of data *and*
#    Monte Carlo samples), checks it unbiased, and uses it to train a linear VAE whose ELBO climbs
#    to the exact maximum log-likelihood of probabilistic PCA.
#
# Everything runs in float64 on the CPU: this is exact math, checked against exact answers.

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
from scipy import stats
from torch import nn

from vaelib.device import seed_everything
from vaelib.estimators import elbo, log_importance_weights
from vaelib.figures import COLORS, FigureExplorer, reference_line, static_figure, use_course_style
from vaelib.gaussian import DiagonalGaussian
from vaelib.gradients import pathwise_gradient, score_function_gradient
from vaelib.kl import gaussian_kl
from vaelib.montecarlo import assert_unbiased, generator
from vaelib.toy import LinearGaussian

use_course_style()
seed_everything(0)
torch.set_default_dtype(torch.float64)  # exact math: float64 throughout this chapter
LOG_2PI = math.log(2 * math.pi)

# One colour per estimator in every figure of this chapter (the exact value stays black).
EST_COLORS = {
    "score": COLORS["naive"],
    "score + baseline": COLORS["proposal"],
    "pathwise": COLORS["importance"],
}
# a second cue beside the colour
EST_MARKERS = {"score": "s", "score + baseline": "^", "pathwise": "o"}
EST_LINES = {"score": "--", "score + baseline": ":", "pathwise": "-"}



# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Why the gradient cannot simply go inside
#
# Take a diagonal Gaussian $q_\phi(z) = \mathcal N(z; \mu, \operatorname{diag}\sigma^2)$ with
# parameters $\phi = (\mu, \log\sigma^2)$ and a function $f$ that does not depend on $\phi$. Then
#
# $$
# \nabla_\phi\, \mathbb E_{q_\phi}[f(z)] = \nabla_\phi \int q_\phi(z)\, f(z)\, dz
# = \int f(z)\, \nabla_\phi q_\phi(z)\, dz .
# $$
#
# The gradient lands on the **density**, not on $f$. The naive move
# "$\mathbb E_{q_\phi}[\nabla_\phi f(z)]$" gives $0$, since $f$ does not depend on $\phi$; and the
# right-hand side is not an expectation under $q_\phi$ that we could estimate by sampling, because
# $\nabla_\phi q_\phi$ is not a density (it takes negative values and integrates to
# $\nabla_\phi 1 = 0$).
#
# In code the same thing happens silently: the samples $z_k$ are *numbers*; their average
# $\frac1K \sum_k f(z_k)$ has forgotten which $\mu$ and $\sigma$ produced them.
#
# Our running example is $f(z) = \sum_j z_j^2$, whose expectation is known:
# $\mathbb E_q[f] = \sum_j (\mu_j^2 + \sigma_j^2)$, so
#
# $$
# \frac{\partial}{\partial \mu_j} \mathbb E_q[f] = 2\mu_j, \qquad
# \frac{\partial}{\partial \log\sigma_j^2} \mathbb E_q[f] = \sigma_j^2
# \quad\Big(\text{since } \tfrac{d\sigma^2}{d\log\sigma^2} = \sigma^2\Big).
# $$

# %%
def f(z):
    """f(z) = Σ_j z_j²: (K, ..., d) -> (K, ...)."""
    return z.square().sum(dim=-1)


mu = torch.tensor([1.0, -0.5, 0.3])
logvar = torch.tensor([0.0, -1.0, 0.5])
exact_mu, exact_logvar = 2 * mu, logvar.exp()  # ∇_μ E[f] = 2μ, ∇_{log σ²} E[f] = σ²

mu_, logvar_ = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
z = DiagonalGaussian(mu_, logvar_).sample(10_000, generator=generator(1))  # (K, d): plain numbers
naive = f(z).mean()
print(f"MC estimate of E[f] = {naive:.3f} (exact {float((mu.square() + logvar.exp()).sum()):.3f}); "
      f"does it know about μ? requires_grad = {naive.requires_grad}")
assert not naive.requires_grad  # no path from the samples back to (μ, log σ²): no gradient at all

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The score-function estimator (REINFORCE)
#
# The **log-derivative trick** turns $\nabla_\phi q_\phi$ back into $q_\phi$ times something:
# since $\nabla_\phi \log q_\phi(z) = \nabla_\phi q_\phi(z) / q_\phi(z)$,
#
# $$
# \nabla_\phi q_\phi(z) = q_\phi(z)\, \nabla_\phi \log q_\phi(z)
# \quad\Longrightarrow\quad
# \nabla_\phi \mathbb E_{q_\phi}[f(z)] = \int f(z)\, q_\phi(z)\, \nabla_\phi \log q_\phi(z)\, dz
# = \mathbb E_{q_\phi}\big[f(z)\, \nabla_\phi \log q_\phi(z)\big].
# $$
#
# That *is* an expectation under $q_\phi$, so we can sample it:
# $\hat g = \frac1K \sum_k f(z_k) \nabla_\phi \log q_\phi(z_k)$, $z_k \sim q_\phi$.
# $\nabla_\phi \log q_\phi$ is called the **score**. It has mean zero,
#
# $$
# \mathbb E_{q_\phi}[\nabla_\phi \log q_\phi(z)] = \int \nabla_\phi q_\phi(z)\, dz = \nabla_\phi
# \int q_\phi(z)\, dz = \nabla_\phi 1 = 0,
# $$
#
# so a **baseline** $b$ that does not depend on $z$ can be subtracted for free:
# $\mathbb E_q[(f(z) - b)\nabla_\phi \log q_\phi(z)]$ is the same gradient, often with a much
# smaller variance.
#
# For the diagonal Gaussian,
# $\log q = -\frac12 \sum_j \big[\log 2\pi + \log\sigma_j^2 + (z_j - \mu_j)^2 e^{-\log\sigma_j^2}\big]$,
# so
#
# $$
# \frac{\partial \log q}{\partial \mu_j} = \frac{z_j - \mu_j}{\sigma_j^2} =
# \frac{\varepsilon_j}{\sigma_j},
# \qquad
# \frac{\partial \log q}{\partial \log\sigma_j^2} = -\frac12 + \frac12
# \frac{(z_j-\mu_j)^2}{\sigma_j^2} = \frac12(\varepsilon_j^2 - 1),
# \qquad \varepsilon_j = \frac{z_j - \mu_j}{\sigma_j}.
# $$
#
# The estimator needs only the *values* of $f$ — not its derivative — which is why it also works
# for discrete $z$ and for non-differentiable $f$ (reinforcement learning's rewards).

# %%
num_samples = 200_000  # K
q = DiagonalGaussian(mu, logvar)
z = q.sample(num_samples, generator=generator(2))  # (K, d)
var = logvar.exp()  # σ²
score_mu = (z - mu) / var  # ∇_μ log q(z), (K, d)
score_logvar = 0.5 * ((z - mu).square() / var - 1)  # ∇_{log σ²} log q(z), (K, d)
g_mu = f(z)[:, None] * score_mu  # one estimate per sample z_k, (K, d)
g_logvar = f(z)[:, None] * score_logvar

# The score formulas against autograd of vaelib's log q, on a few samples:
for k in range(3):
    mu_, logvar_ = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
    log_q = DiagonalGaussian(mu_, logvar_).log_prob(z[k])
    auto_mu, auto_logvar = torch.autograd.grad(log_q, (mu_, logvar_))
    assert torch.allclose(auto_mu, score_mu[k], rtol=1e-12)
    assert torch.allclose(auto_logvar, score_logvar[k], rtol=1e-12)

# The score has mean zero (within 5 standard errors):
for name, s in (("E[score_μ] = 0", score_mu), ("E[score_logvar] = 0", score_logvar)):
    assert_unbiased(s.mean(0), s.std(0) / num_samples**0.5, 0.0, name)

# The tested library version draws the same samples from the same generator and agrees to rounding:
score = score_function_gradient(f, mu, logvar, num_samples, generator=generator(2))
assert torch.allclose(score.grad_mean, g_mu, rtol=1e-9)
assert torch.allclose(score.grad_logvar, g_logvar, rtol=1e-9)
print("score-function estimate of ∇_μ E[f]:", g_mu.mean(0).numpy().round(3),
      " exact:", exact_mu.numpy())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. The pathwise estimator (reparameterization)
#
# Write the sample as a deterministic, differentiable function of $\phi$ and of noise whose
# distribution does *not* depend on $\phi$:
#
# $$
# z = g_\phi(\varepsilon) = \mu + \sigma \odot \varepsilon, \qquad \varepsilon \sim \mathcal N(0,
# I), \qquad \sigma = \exp(\tfrac12 \log\sigma^2).
# $$
#
# Then $\mathbb E_{q_\phi}[f(z)] = \mathbb E_{\varepsilon}[f(g_\phi(\varepsilon))]$ and now the
# distribution we average over is fixed, so the gradient goes inside (for differentiable $f$
# whose gradient does not grow too fast, by dominated convergence):
#
# $$
# \nabla_\phi\, \mathbb E_{q_\phi}[f(z)] = \mathbb E_{\varepsilon}\big[\nabla_\phi
# f(g_\phi(\varepsilon))\big],
# \qquad
# \frac{\partial f}{\partial \mu_j} = \frac{\partial f}{\partial z_j}, \qquad
# \frac{\partial f}{\partial \log\sigma_j^2} = \frac{\partial f}{\partial z_j}\cdot \tfrac12
# \sigma_j \varepsilon_j .
# $$
#
# In code this is nothing more than sampling $z$ *inside the graph*: autograd follows the path
# $\phi \to z \to f(z)$. For $f = \sum_j z_j^2$ the per-sample estimates are $2 z_j$ and
# $2 z_j \cdot \frac12 \sigma_j \varepsilon_j$.

# %%
mu_, logvar_ = mu.clone().requires_grad_(True), logvar.clone().requires_grad_(True)
eps = torch.randn(num_samples, 3, generator=generator(2))  # ε ~ N(0, I), (K, d)
z = mu_ + torch.exp(0.5 * logvar_) * eps  # the path from (μ, log σ²) to z
f(z).mean().backward()  # (1/K) Σ_k ∇ f(z_k), by autograd
print("pathwise estimate of ∇_μ E[f]:", mu_.grad.numpy().round(3), " exact:", exact_mu.numpy())

# By hand, and with the tested library version (per-sample estimates, same generator):
z, std = z.detach(), torch.exp(0.5 * logvar)
path = pathwise_gradient(f, mu, logvar, num_samples, generator=generator(2))
assert torch.allclose(path.grad_mean, 2 * z, rtol=1e-12)  # ∂f/∂z = 2z
assert torch.allclose(path.grad_logvar, 2 * z * 0.5 * std * eps, rtol=1e-12)  # × ∂z/∂log σ² = ½σε
assert torch.allclose(path.grad_mean.mean(0), mu_.grad, rtol=1e-10)
assert torch.allclose(path.grad_logvar.mean(0), logvar_.grad, rtol=1e-10)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Both are unbiased — checked against closed forms
#
# Two test functions with known Gaussian expectations:
#
# * $f(z) = \sum_j z_j^2$: $\ \nabla_\mu = 2\mu$, $\ \nabla_{\log\sigma^2} = \sigma^2$;
# * $f(z) = \exp(a^\top z)$:
#   $\ \mathbb E_q[f] = \exp\!\big(a^\top\mu + \frac12 \sum_j a_j^2 \sigma_j^2\big)$ (the Gaussian
#   moment generating function), so $\nabla_\mu = a\,\mathbb E_q[f]$ and
#   $\nabla_{\log\sigma_j^2} = \frac12 a_j^2 \sigma_j^2\, \mathbb E_q[f]$.
#
# Each estimate must lie within 5 standard errors of the exact gradient, and we print the
# per-sample variances side by side.

# %%
a = torch.tensor([0.5, -0.4, 0.3])
mgf = torch.exp(a @ mu + 0.5 * (a.square() * var).sum())  # E[exp(aᵀz)]
cases = {
    "Σ z²": (f, 2 * mu, var),
    "exp(aᵀz)": (lambda z: torch.exp(z @ a), a * mgf, 0.5 * a.square() * var * mgf),
}
variances = {}
for case, (fn, want_mu, want_logvar) in cases.items():
    for name, estimator in (("score", score_function_gradient), ("pathwise", pathwise_gradient)):
        est = estimator(fn, mu, logvar, num_samples, generator=generator(3))
        (mean_mu, mean_lv), (se_mu, se_lv) = est.mean(), est.std_error()
        assert_unbiased(mean_mu, se_mu, want_mu, f"{name} ∇_μ, {case}")
        assert_unbiased(mean_lv, se_lv, want_logvar, f"{name} ∇_logvar, {case}")
        variances[case, name] = est.grad_mean.var(0)
        print(f"{case:9s} {name:8s} ∇_μ = {mean_mu.numpy().round(3)}",
              f"± {(2 * se_mu).numpy().round(3)} (exact {want_mu.numpy().round(3)}),",
              f"per-sample var {est.grad_mean.var(0).numpy().round(2)}")
    assert (variances[case, "pathwise"] < variances[case, "score"]).all()  # pathwise wins, here

# %% [markdown]
# Both estimators converge to the exact gradient; the figure shows *how fast*. Each line is the
# running average of the per-sample estimates of $\partial/\partial\mu_1$ and
# $\partial/\partial\log\sigma_1^2$ as $K$ grows; the band is $\pm 2$ standard errors.

# %%
def running_mean_band(samples):
    """Running mean of (K,) per-sample estimates and its ±2 standard-error band."""
    k = torch.arange(1, len(samples) + 1)
    mean = samples.cumsum(0) / k
    second = samples.square().cumsum(0) / k
    se = ((second - mean.square()).clamp(min=0) / k).sqrt()
    return k, mean, 2 * se


fig, axes = plt.subplots(1, 2, figsize=(11, 4))
show = np.unique(np.logspace(1, math.log10(num_samples), 300).astype(int)) - 1
panels = ((axes[0], "grad_mean", exact_mu[0], r"$\partial/\partial\mu_1$"),
          (axes[1], "grad_logvar", exact_logvar[0], r"$\partial/\partial\log\sigma_1^2$"))
for ax, attr, want, label in panels:
    for name, est in (("score", score), ("pathwise", path)):
        k, mean, band = (t[show] for t in running_mean_band(getattr(est, attr)[:, 0]))
        ax.plot(k, mean, color=EST_COLORS[name], ls=EST_LINES[name], label=name)
        ax.fill_between(k, mean - band, mean + band, color=EST_COLORS[name], alpha=0.2)
    reference_line(ax, float(want), label=f"exact = {float(want):.2f}")
    ax.set(xscale="log", xlabel="number of samples K", ylabel=f"estimate of {label} E[f]",
           title=f"{label} of E[Σ z²]: running average ± 2 s.e.")
    ax.set_ylim(float(want) - 3, float(want) + 3)
    ax.legend()
plt.tight_layout()
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Variance across dimensions and sample sizes
#
# Unbiased is not enough: an estimator whose variance is huge needs huge $K$. For
# $f(z) = \sum_{j=1}^d z_j^2$ with every $\mu_j = \mu$, $\sigma_j = \sigma$, look at the
# estimate of $\partial/\partial\mu_1$ from one sample:
#
# * **pathwise**: $\hat g = 2 z_1$, so $\operatorname{Var}\hat g = 4\sigma^2$ — **independent of
#   $d$**;
# * **score function** with baseline $b$: $\hat g = (f(z) - b)\,\varepsilon_1/\sigma$. Write
#   $f = z_1^2 + R$ with $R = \sum_{j \ge 2} z_j^2$ independent of $\varepsilon_1$. With the
#   Gaussian moments $\mathbb E\varepsilon^2 = 1$, $\mathbb E\varepsilon^4 = 3$,
#   $\mathbb E\varepsilon^6 = 15$ (odd moments vanish),
#
# expand $z_1^n = (\mu + \sigma\varepsilon_1)^n$ by the binomial theorem and keep the even powers of
# $\varepsilon_1$: $\mathbb E[z_1^n\varepsilon_1^2] = \sum_k \binom nk \mu^{n-k}\sigma^k\,
# \mathbb E[\varepsilon_1^{k+2}]$, so
#
# $$
# \mathbb E[z_1^2\varepsilon_1^2] = \mu^2\cdot 1 + \sigma^2\cdot 3, \qquad
# \mathbb E[z_1^4\varepsilon_1^2] = \mu^4\cdot 1 + 6\mu^2\sigma^2\cdot 3 + \sigma^4\cdot 15
# = \mu^4 + 18\mu^2\sigma^2 + 15\sigma^4,
# $$
# $$
# \mathbb E R = (d-1)(\mu^2+\sigma^2), \qquad
# \mathbb E R^2 = (d-1)(4\mu^2\sigma^2 + 2\sigma^4) + (\mathbb E R)^2,
# $$
# $$
# \operatorname{Var}\hat g =
# \frac{\mathbb E[f^2\varepsilon_1^2] - 2b\,\mathbb E[f\varepsilon_1^2] + b^2}{\sigma^2} - 4\mu^2,
# \quad
# \mathbb E[f\varepsilon_1^2] = \mu^2 + 3\sigma^2 + \mathbb E R,
# \quad
# \mathbb E[f^2\varepsilon_1^2] = \mathbb E[z_1^4\varepsilon_1^2] + 2\,\mathbb E R\,(\mu^2 +
# 3\sigma^2) + \mathbb E R^2 .
# $$
#
# Without a baseline the variance grows like $d^2$: every other coordinate's $z_j^2$ is noise
# multiplied into the gradient of $\mu_1$. The baseline $b = \mathbb E_q[f]$ removes the $d^2$
# term but a term growing like $d$ remains. The variance of a $K$-sample average is the
# per-sample variance divided by $K$ — the same $1/K$ for both, so the ratio of variances is the
# ratio of samples needed for the same accuracy.

# %%
def score_variance(mu, sigma, d, baseline=0.0):
    """Closed-form variance of the one-sample score-function estimate of ∂/∂μ_1 E[Σ_j z_j²]."""
    mean_r = (d - 1) * (mu**2 + sigma**2)  # E[R], R = Σ_{j≥2} z_j²
    second_r = (d - 1) * (4 * mu**2 * sigma**2 + 2 * sigma**4) + mean_r**2  # E[R²]
    e_f_eps2 = mu**2 + 3 * sigma**2 + mean_r  # E[f ε_1²]
    e_z4_eps2 = mu**4 + 18 * mu**2 * sigma**2 + 15 * sigma**4  # E[z_1⁴ ε_1²]
    e_f2_eps2 = e_z4_eps2 + 2 * mean_r * (mu**2 + 3 * sigma**2) + second_r  # E[f² ε_1²]
    return (e_f2_eps2 - 2 * baseline * e_f_eps2 + baseline**2) / sigma**2 - 4 * mu**2


# The two moments, checked exactly: Gauss–Hermite quadrature with 10 nodes integrates polynomials up
# to degree 19 against N(0, 1) without error, so it reproduces E[z²ε²] and E[z⁴ε²] to rounding.
nodes, weights = np.polynomial.hermite_e.hermegauss(10)  # ∫ h(ε) e^{-ε²/2} dε ≈ Σ w_g h(ε_g)
weights = weights / math.sqrt(2 * math.pi)  # now Σ w_g h(ε_g) = E[h(ε)] for ε ~ N(0, 1)
for mu_check, sigma_check in [(1.0, 1.0), (-0.7, 0.3), (2.5, 1.8)]:
    z_nodes = mu_check + sigma_check * nodes
    assert math.isclose((weights * z_nodes**2 * nodes**2).sum(), mu_check**2 + 3 * sigma_check**2,
                        rel_tol=1e-12)
    assert math.isclose((weights * z_nodes**4 * nodes**2).sum(),
                        mu_check**4 + 18 * mu_check**2 * sigma_check**2 + 15 * sigma_check**4,
                        rel_tol=1e-12)


def variance_and_se(samples):
    """Sample variance over dim 0 and its standard error sqrt((m4 - var²) / K)."""
    centred = samples - samples.mean(0)
    var_hat = centred.square().mean(0)
    return var_hat, ((centred.pow(4).mean(0) - var_hat.square()) / len(samples)).sqrt()


# %%
MU, SIGMA = 1.0, 1.0  # every coordinate: μ_j = 1, σ_j = 1
dims = [1, 2, 4, 8, 16, 32, 64, 128]
mean_f = lambda d: d * (MU**2 + SIGMA**2)  # noqa: E731  E_q[f], the baseline
exact_var = {"score": [score_variance(MU, SIGMA, d) for d in dims],
             "score + baseline": [score_variance(MU, SIGMA, d, baseline=mean_f(d)) for d in dims],
             "pathwise": [4 * SIGMA**2 for d in dims]}
measured = {name: [] for name in exact_var}
for i, d in enumerate(dims):
    mu_d, logvar_d = torch.full((d,), MU), torch.full((d,), math.log(SIGMA**2))
    runs = {"score": score_function_gradient(f, mu_d, logvar_d, 20_000, generator(10 + d)),
            "score + baseline": score_function_gradient(f, mu_d, logvar_d, 20_000,
                                                        generator(10 + d), baseline=mean_f(d)),
            "pathwise": pathwise_gradient(f, mu_d, logvar_d, 20_000, generator(10 + d))}
    for name, est in runs.items():
        v, se = variance_and_se(est.grad_mean[:, 0])
        assert_unbiased(v, se, exact_var[name][i], f"Var of {name} at d={d}")  # ≈ closed form
        measured[name].append((v.item(), se.item()))

# Across K: the variance of the K-sample average, over 1000 independent replicates, at d = 16.
d_fixed, replicas, Ks = 16, 1000, [1, 4, 16, 64, 256]
mu_r, logvar_r = torch.full((replicas, d_fixed), MU), torch.zeros(replicas, d_fixed)
over_K = {"score": [], "pathwise": []}
for num in Ks:
    for name, estimator in (("score", score_function_gradient), ("pathwise", pathwise_gradient)):
        estimates = estimator(f, mu_r, logvar_r, num, generator=generator(num))  # (K, replicas, d)
        averages = estimates.grad_mean[..., 0].mean(0)  # the K-sample estimate of each replicate
        over_K[name].append(variance_and_se(averages))
        one_sample = score_variance(MU, SIGMA, d_fixed) if name == "score" else 4 * SIGMA**2
        assert_unbiased(*over_K[name][-1], one_sample / num, f"Var of {name} mean at K={num}")

ratio_128 = exact_var["score"][-1] / exact_var["pathwise"][-1]
print(f"at d = 128 the score-function estimate needs {ratio_128:,.0f}× more samples than the "
      f"pathwise one ({exact_var['score + baseline'][-1] / 4:,.0f}× with the baseline)")
assert ratio_128 > 1e4 and exact_var["score + baseline"][-1] / 4 > 100

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
for name, points in measured.items():
    v, se = np.array(points).T
    axes[0].errorbar(dims, v, yerr=2 * se, fmt=EST_MARKERS[name], color=EST_COLORS[name],
                     label=f"{name} (measured)")
    axes[0].plot(dims, exact_var[name], "--", color=EST_COLORS[name], linewidth=1)
axes[0].plot([], [], "k--", linewidth=1, label="closed form")
axes[0].set(xscale="log", yscale="log", xlabel="latent dimension d",
            ylabel=r"variance of one-sample estimate of $\partial/\partial\mu_1$",
            title="Variance vs dimension (f = Σ z², K = 1)")
axes[0].set_xticks(dims, [str(d) for d in dims])
axes[0].legend(fontsize=8)
for name, points in over_K.items():
    v = np.array([p[0].item() for p in points])
    se = np.array([p[1].item() for p in points])
    one = score_variance(MU, SIGMA, d_fixed) if name == "score" else 4 * SIGMA**2
    axes[1].errorbar(Ks, v, yerr=2 * se, fmt=EST_MARKERS[name], color=EST_COLORS[name],
                     label=f"{name} (measured)")
    axes[1].plot(Ks, [one / k for k in Ks], "--", color=EST_COLORS[name], linewidth=1,
                 label=f"{name}: Var₁ / K")
axes[1].set(xscale="log", yscale="log", xlabel="number of samples K",
            ylabel="variance of the K-sample average",
            title=f"Variance vs K (d = {d_fixed}, {replicas} replicates)")
axes[1].set_xticks(Ks, [str(k) for k in Ks])
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# **Reading the figure.** Left: the pathwise variance is flat in $d$ at $4\sigma^2 = 4$; the
# score function's grows like $d^2$ (like $d$ with the baseline) — four orders of magnitude apart
# at $d = 128$. Right: both fall like $1/K$, parallel lines on a log-log plot, so the gap never
# closes: the ratio of the two lines (their vertical distance on the log scale) is the factor of
# extra samples the score function needs for the same accuracy.
#
# The pathwise estimator is not *always* better (for a rapidly oscillating $f$ its
# gradient can be the noisier one), and it needs $f$ differentiable in $z$ and $z$ continuous.
# But for the VAE, where $f = \log p_\theta(x, z) - \log q_\phi(z\mid x)$ is smooth in $z$, it
# is the estimator of choice.
#
# ### Explore: the spread of the two estimators
#
# The sliders set $K$ and $d$; the figure shows the distribution of the $K$-sample estimate of
# $\partial/\partial\mu_1 \mathbb E[\sum_j z_j^2]$ (exact value $2\mu_1 = 2$) over 400
# independent runs. The checkbox subtracts the baseline $b = \mathbb E_q[f]$ (known here; in
# practice one estimates it, e.g. by the average of the *other* samples, the `leave_one_out`
# baseline of `score_function_gradient`).

# %%
def draw_spread(fig, num_samples, latent_dim, baseline):
    replicas = 400
    mu_r, logvar_r = torch.ones(replicas, latent_dim), torch.zeros(replicas, latent_dim)
    b = latent_dim * 2.0 if baseline else None  # E_q[Σ z²] = d (μ² + σ²)
    sf = score_function_gradient(f, mu_r, logvar_r, num_samples, generator=generator(5), baseline=b)
    pw = pathwise_gradient(f, mu_r, logvar_r, num_samples, generator=generator(6))
    estimates = {"score + baseline" if baseline else "score": sf.grad_mean[..., 0].mean(0).numpy(),
                 "pathwise": pw.grad_mean[..., 0].mean(0).numpy()}
    lo, hi = np.percentile(np.concatenate(list(estimates.values())), [0.5, 99.5])
    half_width = max(hi - 2.0, 2.0 - lo, 1.0)
    bins = np.linspace(2.0 - half_width, 2.0 + half_width, 61)
    ax = fig.subplots()
    for name, values in estimates.items():
        ax.hist(
            values.clip(bins[0], bins[-1]),
            bins=bins,
            color=EST_COLORS[name],
            alpha=0.6,
            hatch=None if name == "pathwise" else "//",
            label=f"{name}: sd = {values.std():.3g}",
        )
    reference_line(ax, 2.0, label=r"exact $2\mu_1 = 2$", horizontal=False)
    ax.set(
        xlabel=r"K-sample estimate of $\partial/\partial\mu_1$ E[Σ z²]",
        ylabel="runs (of 400)",
        title=f"Spread of the two estimators: K = {num_samples}, d = {latent_dim}",
    )
    ax.legend()
    ratio = estimates["pathwise"].std() / list(estimates.values())[0].std()
    return (f"pathwise sd / score sd = {ratio:.3g}: "
            f"the score function needs ≈ {1 / ratio**2:,.0f}× more samples")


static_figure(draw_spread, num_samples=10, latent_dim=16, baseline=False)
FigureExplorer(draw_spread,
               num_samples=widgets.IntSlider(value=10, min=1, max=100, description="K"),
               latent_dim=widgets.IntSlider(value=16, min=1, max=64, description="d"),
               baseline=widgets.Checkbox(value=False, description="baseline"))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Two ways to build a reparameterization
#
# A reparameterization of $q_\phi$ is a differentiable map $z = g_\phi(\varepsilon)$ from noise
# with a fixed distribution. Two general recipes:
#
# **(a) Inverse CDF.** If $u \sim \mathcal U(0, 1)$ and $F_\phi$ is a continuous, strictly
# increasing CDF, then $z = F_\phi^{-1}(u)$ has CDF $F_\phi$:
# $P(z \le t) = P(u \le F_\phi(t)) = F_\phi(t)$. The gradient of the sample follows from
# differentiating the identity $F_\phi(z_\phi(u)) = u$ in $\phi$ at fixed $u$ (chain rule; the
# right side does not move), with $\partial F_\phi(z)/\partial z = q_\phi(z)$:
#
# $$
# 0 = \frac{\partial F_\phi}{\partial\phi}(z) + q_\phi(z)\,\frac{\partial z}{\partial\phi}
# \quad\Longrightarrow\quad
# \frac{\partial z}{\partial \phi} = -\frac{\partial F_\phi(z)/\partial\phi}{q_\phi(z)} .
# $$
#
# This is the **implicit reparameterization gradient**: it needs $F_\phi$ and $q_\phi$ at the
# sample, never $F_\phi^{-1}$.
#
# * Exponential with rate $\lambda$: $F(z) = 1 - e^{-\lambda z}$, so $z = -\log(1-u)/\lambda$ and
#   $\partial z/\partial\lambda = -z/\lambda$. Check: $\mathbb E[z^2] = 2/\lambda^2$, so
#   $\frac{d}{d\lambda}\mathbb E[z^2] = -4/\lambda^3$.
# * Gaussian: $\Phi^{-1}(u) = \sqrt2\,\operatorname{erfinv}(2u - 1)$, so
#   $z = \mu + \sigma\sqrt2\,\operatorname{erfinv}(2u-1)$ — the standard normal $\varepsilon$ is
#   itself an inverse-CDF sample.
#
# **(b) Location-scale.** If $\varepsilon \sim p_0$ (any fixed density), then
# $z = \mu + s\,\varepsilon$ has density $\frac1s\, p_0\!\big(\frac{z-\mu}{s}\big)$ (change of
# variables), and $\partial z/\partial\mu = 1$, $\partial z/\partial s = \varepsilon$. Gaussian,
# Laplace, logistic, Student-t and Cauchy families all work this way.
#
# * Laplace: $\varepsilon \sim \text{Laplace}(0, 1)$, $z = \mu + s\varepsilon$;
#   $\mathbb E[z^2] = \mu^2 + 2s^2$, so $\nabla_\mu = 2\mu$, $\nabla_s = 4s$.
#
# Families whose inverse CDF has no usable closed form (Gamma, Beta) use the same implicit formula
# $-\partial_\phi F / q$ with $\partial_\phi F$ computed from an accurate approximation of the CDF
# (Figurnov, Mohamed & Mnih, 2018); `torch.distributions.Gamma.rsample` implements it. How to
# compute $\partial_\phi F$ for the Gamma CDF, and the multivariate version for the Dirichlet, are
# beyond this course: see that paper, sections 3–4. Discrete distributions have no
# reparameterization at all (no continuous path from $\phi$ to $z$): there one uses the score
# function or a continuous relaxation (Gumbel-softmax).

# %%
n_draws = 50_000
u = torch.rand(n_draws, generator=generator(20))  # u ~ U(0, 1)

# (a) Exponential(λ) by the inverse CDF
rate = torch.tensor(1.5, requires_grad=True)
z_exp = -torch.log1p(-u) / rate  # z = F⁻¹(u) = -log(1 - u)/λ
per_sample = -2 * z_exp.detach().square() / rate.detach()  # d(z²)/dλ = 2z · (-z/λ)
# the implicit formula ∂z/∂λ = -(∂F/∂λ)(z) / q(z), with SciPy's CDF differentiated numerically, =
# autograd:
for k in range(3):
    z_k, h = z_exp[k].item(), 1e-6
    cdf = lambda lam: stats.expon(scale=1 / lam).cdf(z_k)  # noqa: E731  F_λ(z_k)
    dF = (cdf(1.5 + h) - cdf(1.5 - h)) / (2 * h)  # ∂F/∂λ by central differences
    (auto,) = torch.autograd.grad(z_exp[k], rate, retain_graph=True)
    assert math.isclose(auto.item(), -dF / stats.expon(scale=1 / 1.5).pdf(z_k), rel_tol=1e-6)
z_exp.square().mean().backward()
assert torch.isclose(rate.grad, per_sample.mean(), rtol=1e-10)  # autograd follows the same path


# %%
# (a') Gaussian by the inverse CDF, parameters (μ, log σ²) as in the rest of the course
mu_g, logvar_g = torch.tensor(0.5, requires_grad=True), torch.tensor(-0.5, requires_grad=True)
eps_inv = math.sqrt(2) * torch.erfinv(2 * u - 1)  # Φ⁻¹(u)
assert np.allclose(eps_inv.numpy(), stats.norm.ppf(u.numpy()), atol=1e-7)  # vs SciPy's Φ⁻¹
z_gauss = mu_g + torch.exp(0.5 * logvar_g) * eps_inv
z_gauss.square().mean().backward()

# (b) Laplace(μ, s) by location-scale of a fixed Laplace(0, 1)
mu_l, scale_l = torch.tensor(-0.5, requires_grad=True), torch.tensor(0.8, requires_grad=True)
g = generator(21)
# Laplace(0, 1) is the difference of two independent Exp(1) variables:
exp_1, exp_2 = (torch.empty(n_draws).exponential_(generator=g) for _ in range(2))
eps_lap = exp_1 - exp_2
z_lap = mu_l + scale_l * eps_lap
z_lap.square().mean().backward()

checks = [  # (name, estimate, per-sample estimates for the s.e., exact)
    ("exponential  d/dλ E[z²]", rate.grad, per_sample, -4 / 1.5**3),
    ("gaussian     d/dμ E[z²]", mu_g.grad, 2 * z_gauss.detach(), 2 * 0.5),
    ("gaussian  d/dlogσ² E[z²]", logvar_g.grad, z_gauss.detach() * math.exp(-0.25) * eps_inv,
     math.exp(-0.5)),  # 2z · ½σε with σ = e^{-1/4}; exact σ² = e^{-1/2}
    ("laplace      d/dμ E[z²]", mu_l.grad, 2 * z_lap.detach(), 2 * -0.5),
    ("laplace      d/ds E[z²]", scale_l.grad, 2 * z_lap.detach() * eps_lap, 4 * 0.8),
]
for name, estimate, samples, exact in checks:
    assert torch.isclose(estimate, samples.mean(), rtol=1e-10)  # autograd = the per-sample formula
    se = samples.std() / n_draws**0.5
    assert_unbiased(estimate, se, exact, name)
    print(f"{name}: {estimate.item():+.4f} ± {2 * se.item():.4f}   exact {exact:+.4f}")

# %%
targets = [  # samples, SciPy's density (an independent reference), title
    (z_exp.detach(), stats.expon(scale=1 / 1.5),
     "Exponential(λ = 1.5)\ninverse CDF: z = -log(1-u)/λ"),
    (z_gauss.detach(), stats.norm(0.5, math.exp(-0.25)),
     "$\\mathcal{N}(0.5,\\ \\sigma^2 = e^{-0.5})$\ninverse CDF: z = μ + σ√2 erfinv(2u-1)"),
    (z_lap.detach(), stats.laplace(-0.5, 0.8),
     "Laplace(μ = -0.5, s = 0.8)\nlocation-scale: z = μ + s ε"),
]
fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
for ax, (samples, dist, title) in zip(axes, targets):
    ks = stats.kstest(samples.numpy(), dist.cdf)
    assert ks.pvalue > 1e-3, title  # the samples follow the target law (Kolmogorov-Smirnov)
    lo, hi = dist.ppf(0.001), dist.ppf(0.999)
    ax.hist(samples.numpy(), bins=np.linspace(lo, hi, 60), density=True, color=COLORS["proposal"],
            alpha=0.6, label=f"{n_draws:,} samples")
    grid = np.linspace(lo, hi, 400)
    ax.plot(grid, dist.pdf(grid), "--", color=COLORS["exact"], label="target density")
    ax.set(title=title, xlabel="z", ylabel="density")
    ax.text(0.98, 0.6, f"KS p = {ks.pvalue:.2f}", transform=ax.transAxes, ha="right", fontsize=9)
    ax.legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# **The general rule, and why $q$'s density must be tractable.** Both recipes are instances of one
# change of variables. Let $\varepsilon \sim p_\varepsilon$ and $z = g_\phi(\varepsilon)$ with
# $g_\phi$ invertible and differentiable. In one dimension, for increasing $g_\phi$,
# $P(z \le t) = P(\varepsilon \le g_\phi^{-1}(t))$; differentiating in $t$ gives
# $q_\phi(t) = p_\varepsilon(g_\phi^{-1}(t))\,\frac{d}{dt}g_\phi^{-1}(t)$ (for decreasing $g_\phi$
# the inequality flips and the derivative is negative: take its absolute value). In $d$ dimensions
# the substitution $\varepsilon = g_\phi^{-1}(z)$ in $\int p_\varepsilon(\varepsilon)\,d\varepsilon$
# brings in the Jacobian determinant:
#
# $$
# q_\phi(z) = p_\varepsilon\big(g_\phi^{-1}(z)\big)\,
# \Big|\det \frac{\partial g_\phi^{-1}(z)}{\partial z}\Big| .
# $$
#
# Location-scale: $g^{-1}(z) = (z - \mu)/s$ and $|\det| = s^{-d}$. Inverse CDF: $p_\varepsilon = 1$
# on $(0, 1)$ and $g^{-1} = F_\phi$, so $q_\phi = F_\phi'$. A reparameterization for a VAE needs
# more than samples: the ELBO $\mathbb E_q[\log p_\theta(x, z) - \log q_\phi(z\mid x)]$ contains
# $\log q_\phi$ itself, evaluated (and differentiated) at each sample. A $g_\phi$ whose inverse or
# Jacobian determinant we cannot compute (a generic neural network of $\varepsilon$, say) still
# gives samples and pathwise gradients of $\mathbb E_q[\log p_\theta(x, z)]$, but not
# $\log q_\phi(z)$: the entropy term of the ELBO, and with it the ELBO, can no longer be estimated,
# and dropping the term lets $q$ collapse onto the mode of $p_\theta(x, z)$. That is why the two
# practical designs are the location–scale and inverse-CDF families (and, beyond this course,
# normalizing flows: invertible $g_\phi$ built so that the determinant is cheap; Rezende & Mohamed,
# 2015). Checked below for a nonlinear, increasing $g$: $z = \exp(\mu + \sigma\varepsilon)$, whose
# change-of-variables density must be SciPy's log-normal.

# %%
mu_ln, sigma_ln = 0.3, 0.6
g_inverse = lambda z: (np.log(z) - mu_ln) / sigma_ln  # noqa: E731  ε = g⁻¹(z)
g_inverse_slope = lambda z: 1 / (sigma_ln * z)  # noqa: E731  d g⁻¹/dz > 0
z_grid_ln = np.linspace(0.01, 12, 500)
q_change_of_variables = stats.norm.pdf(g_inverse(z_grid_ln)) * np.abs(g_inverse_slope(z_grid_ln))
# an independent reference
q_scipy = stats.lognorm(s=sigma_ln, scale=math.exp(mu_ln)).pdf(z_grid_ln)
assert np.allclose(q_change_of_variables, q_scipy, rtol=1e-12, atol=0)
z_ln = np.exp(
    mu_ln + sigma_ln * torch.randn(n_draws, generator=generator(22), dtype=torch.float64).numpy()
)
ks_ln = stats.kstest(z_ln, stats.lognorm(s=sigma_ln, scale=math.exp(mu_ln)).cdf)
assert ks_ln.pvalue > 1e-3  # the samples g(ε) follow that density
# and the entropy term the ELBO needs, -E_q[log q(z)], from the samples' log q = log p_ε(ε) -
# log|g'(ε)|:
log_q_at_samples = stats.norm.logpdf(g_inverse(z_ln)) + np.log(g_inverse_slope(z_ln))
entropy_mc, entropy_se = -log_q_at_samples.mean(), log_q_at_samples.std() / math.sqrt(n_draws)
entropy_exact = stats.lognorm(s=sigma_ln, scale=math.exp(mu_ln)).entropy()
assert abs(entropy_mc - entropy_exact) < 4 * entropy_se
print("change of variables = SciPy's log-normal density to "
      f"{np.abs(q_change_of_variables - q_scipy).max():.1e}; KS p = {ks_ln.pvalue:.2f}; entropy "
      f"{entropy_mc:.4f} ± {entropy_se:.4f} (exact {entropy_exact:.4f})")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. The doubly stochastic estimator of the ELBO gradient
#
# Back to the VAE objective $\mathcal L(\theta,\phi) = \sum_{i=1}^n \ell_i(\theta,\phi)$ with
# $\ell_i = \mathbb E_{q_\phi(z\mid x_i)}[\log p_\theta(x_i,z) - \log q_\phi(z\mid x_i)]$, the ELBO
# of point $i$ (here $\ell_i$ is not chapter 1's log-likelihood $\ell(\theta)$). Its exact gradient
# costs a pass over all $n$ points *and* an integral for each. Two independent sources of randomness
# replace both:
#
# 1. a **minibatch** $B$: $m$ of the $n$ indices, uniformly at random without replacement;
# 2. **$V$ reparameterized samples** per point (in this section $V$ counts samples; it is not a
#    covariance): $z_{iv} = \mu_\phi(x_i) + \sigma_\phi(x_i)\odot\varepsilon_{iv}$,
#    $\varepsilon_{iv} \sim \mathcal N(0, I)$.
#
# $$
# \hat g = \frac{n}{m} \sum_{i \in B} \frac1V \sum_{v=1}^V \nabla_{\theta,\phi}\Big[\log
# p_\theta(x_i, z_{iv}) - \log q_\phi(z_{iv}\mid x_i)\Big].
# $$
#
# **Unbiased.** Condition on $B$ and average over $\varepsilon$ first: by the pathwise argument of
# section 3, $\mathbb E_\varepsilon[\hat g \mid B] = \frac nm \sum_{i\in B} \nabla \ell_i$ (autograd
# differentiates $\log q_\phi$ both through $z$ and through its own $\phi$; both are part of the
# integrand's gradient). Then average over $B$, writing the sum over the batch with indicators:
#
# $$
# \mathbb E_B\Big[\frac nm \sum_{i=1}^n \mathbb 1[i\in B]\,\nabla\ell_i\Big]
# = \frac nm \sum_{i=1}^n P(i\in B)\,\nabla\ell_i
# = \frac nm \sum_{i=1}^n \frac mn\,\nabla\ell_i = \nabla\mathcal L,
# $$
#
# because a uniformly random $m$-subset contains each index with probability $m/n$. The factor
# $n/m$ is what makes a minibatch stand for the whole data set.
#
# ### The model: a linear VAE
#
# Decoder (the `LinearGaussian` model of chapter 1, parameters $\theta = (W, b, \log s)$):
# $p_\theta(z) = \mathcal N(0, I_d)$, $p_\theta(x\mid z) = \mathcal N(Wz + b, s^2 I_D)$. Encoder,
# affine in $x$ (parameters $\phi = (A, c, \log\sigma^2)$):
# $q_\phi(z\mid x) = \mathcal N(Ax + c, \operatorname{diag}\sigma^2)$ — the exact posterior of this
# model has a covariance that does not depend on $x$ (chapter 3), so a shared $\log\sigma^2$
# suffices. (vaelib's `LinearGaussian` stores $s$ as a plain number, so the class below writes
# $\log p_\theta(x, z)$ itself, with a learnable $\log s$, and checks it against vaelib's.)
#
# Here the ELBO has a **closed form**, our exact reference. With
# $q = \mathcal N(\mu, \operatorname{diag}\sigma^2)$,
# $\mathbb E_q\lVert x - Wz - b\rVert^2 = \lVert x - W\mu - b\rVert^2 + \sum_j \sigma_j^2 \lVert w_j\rVert^2$
# ($w_j$ the $j$-th column of $W$), hence
#
# $$
# \ell_i = -\frac D2 \log(2\pi s^2) - \frac{1}{2s^2}\Big(\lVert x_i - W\mu_i - b\rVert^2 + \sum_j
# \sigma_j^2 \lVert w_j\rVert^2\Big) - \mathrm{KL}\big(\mathcal N(\mu_i,
# \operatorname{diag}\sigma^2)\,\Vert\,\mathcal N(0, I)\big).
# $$

# %%
class LinearVAE(nn.Module):
    """Decoder p(x|z) = N(Wz + b, s² I), θ = (W, b, log s); encoder q(z|x) = N(Ax + c, diag σ²)."""

    def __init__(self, data_dim, latent_dim, seed=0):
        super().__init__()
        g = generator(seed)
        self.W = nn.Parameter(0.1 * torch.randn(data_dim, latent_dim, generator=g))  # (D, d)
        self.b = nn.Parameter(torch.zeros(data_dim))  # (D,)
        self.log_s = nn.Parameter(torch.tensor(0.0))  # log of the noise std s
        self.A = nn.Parameter(0.1 * torch.randn(latent_dim, data_dim, generator=g))  # (d, D)
        self.c = nn.Parameter(torch.zeros(latent_dim))  # (d,)
        self.logvar = nn.Parameter(torch.zeros(latent_dim))  # log σ², shared by every x
        self.latent_dim = latent_dim

    def encode(self, x):
        """q(z|x) for x (N, D): a DiagonalGaussian with mean and logvar (N, d)."""
        mu = x @ self.A.T + self.c
        return DiagonalGaussian(mu, self.logvar.expand_as(mu))

    def gaussian_log_lik(self, sq_err, data_dim):
        """-½ (sq_err / s² + D log 2πs²): log N(x; mean, s² I) when sq_err = |x - mean|²."""
        return -0.5 * (sq_err * torch.exp(-2 * self.log_s) + data_dim * (LOG_2PI + 2 * self.log_s))

    def log_joint(self, x, z):
        """log p(z) + log p(x|z): x (N, D), z (K, N, d) -> (K, N)."""
        log_prior = -0.5 * (z.square() + LOG_2PI).sum(-1)
        sq_err = (x - z @ self.W.T - self.b).square().sum(-1)  # |x - Wz - b|², (K, N)
        return log_prior + self.gaussian_log_lik(sq_err, x.shape[-1])

    def exact_elbo(self, x):
        """The closed-form ELBO of every data point: (N, D) -> (N,)."""
        q = self.encode(x)
        # E_q|x - Wz - b|² = |x - Wμ - b|² + Σ_j σ_j² |w_j|²
        sq_err = (x - q.mean @ self.W.T - self.b).square().sum(-1)
        sq_err = sq_err + (q.variance * self.W.square().sum(0)).sum(-1)
        return self.gaussian_log_lik(sq_err, x.shape[-1]) - gaussian_kl(q.mean, q.logvar)

    def decoder(self):
        """The current decoder as vaelib's LinearGaussian (exact log p(x), no gradients)."""
        return LinearGaussian(self.W.detach(), self.b.detach(), self.log_s.exp().item())


# %%
D, d, n = 5, 2, 1000
true_model = LinearGaussian.random(D, d, noise_std=0.5, generator=generator(30))
x, _ = true_model.sample(n, generator=generator(31))  # (n, D)
vae = LinearVAE(D, d, seed=32)

# The inline log p(x, z) is vaelib's, and the closed-form ELBO is the Monte Carlo one (500 samples):
with torch.no_grad():
    z_check = torch.randn(3, n, d, generator=generator(33))
    assert torch.allclose(vae.log_joint(x, z_check), vae.decoder().log_joint(x, z_check),
                          rtol=1e-12)
    log_w = log_importance_weights(vae.decoder(), x, vae.encode(x), 500, generator(34))  # (K, n)
    assert_unbiased(log_w.mean(0), log_w.std(0) / 500**0.5, vae.exact_elbo(x), "closed-form ELBO")

# %% [markdown]
# The estimator, straight from the equation (with $V$ samples it is $n/m$ times the sum over the
# batch of vaelib's `elbo`, chapter 4), and its unbiasedness checked against the exact full-batch
# gradient $\nabla\mathcal L$ from the closed form: 2000 independent estimates with $m = 100$,
# $V = 1$, averaged, compared entry by entry for all 30 parameters.

# %%
def doubly_stochastic_elbo(vae, x, batch_size, num_samples, generator=None):
    """(n/m) Σ_{i∈B} (1/V) Σ_v [log p(x_i, z_iv) - log q(z_iv|x_i)]: a scalar, gradient ĝ."""
    n = x.shape[0]
    batch = x[torch.randperm(n, generator=generator)[:batch_size]]  # (m, D), without replacement
    q = vae.encode(batch)
    z = q.rsample(num_samples, generator=generator)  # (V, m, d), reparameterized
    log_w = vae.log_joint(batch, z) - q.log_prob(z)  # (V, m)
    return n / batch_size * log_w.mean(dim=0).sum()


params = list(vae.parameters())
gen, num_estimates = generator(35), 2000

def flat_gradient(scalar):
    """The gradient of a scalar with respect to all parameters, as one vector (30,)."""
    return torch.cat([g.flatten() for g in torch.autograd.grad(scalar, params)])


estimates = torch.stack([flat_gradient(doubly_stochastic_elbo(vae, x, 100, 1, gen))
                         for _ in range(num_estimates)])  # (2000, 30)
exact_grad = flat_gradient(vae.exact_elbo(x).sum())  # ∇L from the closed form
mean_grad, se_grad = estimates.mean(0), estimates.std(0) / num_estimates**0.5
worst = assert_unbiased(mean_grad, se_grad, exact_grad, "doubly stochastic ELBO gradient")
print(f"30 gradient entries, largest deviation {worst:.2f} standard errors; "
      f"one estimate's relative noise: {(estimates.std(0) / exact_grad.abs()).median():.2f}"
      " (median)")

# Same generator state, same number: the estimator is n/m times the batch sum of vaelib's elbo.
g1, g2 = generator(36), generator(36)
batch = x[torch.randperm(n, generator=g2)[:100]]
library = n / 100 * elbo(vae, batch, vae.encode(batch), 4, g2).sum()
assert torch.isclose(doubly_stochastic_elbo(vae, x, 100, 4, g1), library)

# %%
# Each parameter's averaged estimate divided by its exact gradient: 1 means unbiased.
ratio, ratio_band = mean_grad / exact_grad, 2 * se_grad / exact_grad.abs()
sizes = [p.numel() for p in params]
names = [r"$W$", r"$b$", r"$\log s$", r"$A$", r"$c$", r"$\log\sigma^2$"]
fig, ax = plt.subplots(figsize=(9, 3.8))
ax.errorbar(range(len(ratio)), ratio, yerr=ratio_band, fmt="o", color=COLORS["elbo"],
            label=f"(n/m) × batch sum: mean of {num_estimates} estimates ± 2 s.e.")
ax.plot(range(len(ratio)), ratio * 100 / n, "x", color=COLORS["prior"],
        label="without the n/m factor")
reference_line(ax, 1.0, label="exact gradient (ratio 1)")
ax.axhline(100 / n, color=COLORS["prior"], linestyle=":", linewidth=1, label="m/n = 0.1")
edges = np.cumsum([0] + sizes)
for edge in edges[1:-1]:
    ax.axvline(edge - 0.5, color="0.8", linewidth=0.8)
ax.set_xticks((edges[:-1] + edges[1:] - 1) / 2, names)
ax.set(ylim=(0, 1.35), xlabel="parameter (decoder θ: W, b, log s | encoder φ: A, c, log σ²)",
       ylabel="estimate ÷ exact gradient",
       title=f"Doubly stochastic ELBO gradient (m = 100 of n = {n}, V = 1) is unbiased")
ax.legend(fontsize=8, loc="center", bbox_to_anchor=(0.5, 0.45), ncol=2, frameon=True,
          framealpha=0.9)
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. Training the linear VAE: the ELBO climbs to the maximum likelihood
#
# We fit the linear VAE to the $n = 1000$ points by Adam on $\hat g$ ($m = 100$, $V = 1$, a
# learning rate decayed to zero). Every 20 steps we record, on the whole data set, the exact ELBO
# per point and the exact $\frac1n\log p_\theta(x)$ of the current decoder (chapter 1).
#
# The reference is the **maximum-likelihood** probabilistic PCA fit, which has a closed form
# (Tipping & Bishop, 1999). With the sample covariance
# $S = \frac1n\sum_i (x_i - \bar x)(x_i - \bar x)^\top$ and its eigenvalues
# $\lambda_1 \ge \dots \ge \lambda_D$ (eigenvectors $U$):
#
# $$
# b_{\text{ML}} = \bar x, \qquad s^2_{\text{ML}} = \frac{1}{D-d}\sum_{j>d}\lambda_j, \qquad
# W_{\text{ML}} = U_{:, 1:d}\,(\Lambda_d - s^2_{\text{ML}} I)^{1/2} R
# $$
#
# for any rotation $R$, and the maximum log-likelihood per point is
# $-\frac12\big[D\log 2\pi + \sum_{j\le d}\log\lambda_j + (D-d)\log s^2_{\text{ML}} + D\big]$.
#
# Two things must happen for the ELBO to reach it: the decoder must reach the ML solution, and the
# gap $\log p_\theta(x) - \text{ELBO} = \mathrm{KL}(q_\phi(z\mid x)\,\Vert\,p_\theta(z\mid x))$
# must close. A *diagonal* $q$ can match the posterior only if its covariance
# $(I + W^\top W/s^2)^{-1}$ is diagonal, i.e. if the columns of $W$ are orthogonal — the ML
# solution with $R = I$ (up to the signs and order of the columns). Maximizing the ELBO picks
# exactly that rotation (Lucas et al., 2019), and we check it below.

# %%
x_bar = x.mean(0)
S = (x - x_bar).T @ (x - x_bar) / n  # sample covariance, (D, D)
eigvals, eigvecs = torch.linalg.eigh(S)
eigvals, eigvecs = eigvals.flip(0), eigvecs.flip(1)  # λ_1 ≥ ... ≥ λ_D
s2_ml = eigvals[d:].mean()
W_ml = eigvecs[:, :d] * (eigvals[:d] - s2_ml).sqrt()
ml_model = LinearGaussian(W_ml, x_bar, s2_ml.sqrt().item())
ll_ml = ml_model.log_marginal(x).mean().item()  # exact log p(x) per point at the ML solution
ll_ml_closed = -0.5 * (D * LOG_2PI + eigvals[:d].log().sum() + (D - d) * s2_ml.log() + D)
assert math.isclose(ll_ml, ll_ml_closed.item(), rel_tol=1e-10)
assert ll_ml >= true_model.log_marginal(x).mean().item()  # ML beats even the data's true parameters
print(f"maximum log-likelihood per point: {ll_ml:.5f}")

# %%
vae = LinearVAE(D, d, seed=40)
num_steps, batch_size, num_samples_v = 2000, 100, 1
optimizer = torch.optim.Adam(vae.parameters(), lr=0.1)
schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, num_steps)
gen = generator(41)
history = {"step": [], "elbo": [], "log_px": []}
for step in range(num_steps + 1):
    if step % 20 == 0:
        with torch.no_grad():
            history["step"].append(step)
            history["elbo"].append(vae.exact_elbo(x).mean().item())
            history["log_px"].append(vae.decoder().log_marginal(x).mean().item())
    if step == num_steps:
        break
    loss = -doubly_stochastic_elbo(vae, x, batch_size, num_samples_v, gen) / n  # -ELBO per point
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    schedule.step()

elbo_hist, log_px_hist = np.array(history["elbo"]), np.array(history["log_px"])
print(f"at step 0: log p(x) {log_px_hist[0]:.2f}, ELBO {elbo_hist[0]:.2f} (per point)")
assert abs(log_px_hist[0] - (-15.5)) < 0.05 and abs(elbo_hist[0] - (-15.6)) < 0.05  # the text below
gap, ml_gap = log_px_hist[-1] - elbo_hist[-1], ll_ml - log_px_hist[-1]
print(f"final ELBO {elbo_hist[-1]:.5f}, log p(x) {log_px_hist[-1]:.5f}, "
      f"maximum {ll_ml:.5f} (per point)")
print(f"gap log p - ELBO = {gap:.1e},  ML - log p = {ml_gap:.1e}")
assert (elbo_hist <= log_px_hist + 1e-12).all()  # a lower bound at every step (exact quantities)
assert gap < 5e-3 and 0 <= ml_gap < 5e-3  # nats per data point
gram = vae.W.detach().T @ vae.W.detach()  # WᵀW: nearly diagonal (orthogonal columns)
cosine = (gram[0, 1] / gram.diagonal().prod().sqrt()).item()
print(f"cosine between the two columns of W: {cosine:.1e}")
assert abs(cosine) < 0.05
_, post_cov = vae.decoder().posterior_parameters(
    x
)  # exact posterior covariance (I + WᵀW/s²)⁻¹, (d, d)
print("exact posterior covariance:\n", post_cov.numpy().round(4))
print("q's variances:", vae.logvar.exp().detach().numpy().round(4))
assert torch.allclose(post_cov, torch.diag(vae.logvar.exp().detach()), rtol=0.02, atol=2e-3)

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
axes[0].plot(history["step"], log_px_hist, color=COLORS["importance"],
             label=r"exact $\frac{1}{n}\log p_\theta(x)$")
axes[0].plot(history["step"], elbo_hist, color=COLORS["elbo"], label="exact ELBO per point")
reference_line(axes[0], ll_ml, label=f"maximum likelihood (closed form) = {ll_ml:.3f}")
axes[0].set(xlabel="Adam step", ylabel="nats per data point",
            title="The ELBO climbs to the maximum likelihood", ylim=(ll_ml - 1.0, ll_ml + 0.2))
axes[0].legend(loc="lower right")
axes[1].plot(history["step"], log_px_hist - elbo_hist, color=COLORS["proposal"],
             label=r"gap $\log p_\theta(x) - \mathrm{ELBO}$ = KL(q ‖ posterior)")
axes[1].plot(history["step"], ll_ml - log_px_hist, color=COLORS["importance"],
             label=r"$\log p_{\mathrm{ML}}(x) - \log p_\theta(x)$")
axes[1].set(yscale="log", xlabel="Adam step", ylabel="nats per data point",
            title="Both gaps close (log scale)")
axes[1].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# Left: the two curves start far below ($\log p_\theta(x) \approx -15.5$ and the ELBO
# $\approx -15.6$ nats per point, printed above, off the plot), rise together, and end on the dashed
# maximum-likelihood line; the ELBO is always below $\log p_\theta(x)$. Right: the variational gap
# and the distance to the maximum likelihood both fall by orders of magnitude; the wiggles are the
# minibatch and sampling noise of $\hat g$, damped as the learning rate decays.

# %% [markdown] slideshow={"slide_type": "slide"}
# > **Classic mistakes**
# >
# > * **Sampling outside the graph.** `q.sample()`, `torch.no_grad()`, `.detach()` or a NumPy
# >   sampler cut the path $\phi \to z$: the encoder gets no gradient from
# >   $\mathbb E_q[\log p(x\mid z)]$, and nothing warns you (section 1). Sample with `rsample`:
# >   $z = \mu + \sigma\odot\varepsilon$.
# > * **$\exp(\log\sigma^2)$ for $\sigma$.** The scale is $\sigma = \exp(\tfrac12\log\sigma^2)$;
# >   multiplying $\varepsilon$ by the variance samples from the wrong distribution.
# > * **Dropping or mis-scaling $n/m$.** For a plain sum over the data, omitting $n/m$ only rescales
# >   the gradient (absorbed by Adam or the learning rate), but the number you report is then not
# >   the ELBO, and as soon as the objective has a term that is not a sum over data points (a prior
# >   on $\theta$, a KL on global parameters) the balance between the terms is wrong. Using $m/n$
# >   instead of $n/m$, or summing over the $V$ samples instead of averaging, are the same slip.
# > * **A baseline that depends on the sample.** $b$ must not depend on $z_k$; including $f(z_k)$
# >   in its own baseline (the mean over *all* $K$ samples) biases the score-function estimate —
# >   average the *others* (`baseline="leave_one_out"`).
# > * **Score function where pathwise applies.** For a smooth $f$ of a continuous $z$, the score
# >   function's variance grows with $d$ (like $d^2$ without a baseline); the pathwise estimator's
# >   need not. Keep the score function for discrete $z$ or non-differentiable $f$.
# > * **Judging an estimator by one run.** Unbiasedness is a statement about the average of many
# >   independent estimates; check it with a confidence interval, not by eye.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * $\nabla_\phi\mathbb E_{q_\phi}[f(z)]$ differentiates the *density*; the naive
#   $\mathbb E_q[\nabla_\phi f]$ is $0$, and a Monte Carlo average of plain samples has no gradient.
# * **Score function:**
#   $\nabla_\phi\mathbb E_q[f] = \mathbb E_q[(f(z) - b)\nabla_\phi\log q_\phi(z)]$; needs only
#   values of $f$; for the Gaussian the score is
#   $(\varepsilon/\sigma,\ \frac12(\varepsilon^2 - 1))$; its variance grows with the dimension.
# * **Pathwise:** $z = \mu + \sigma\odot\varepsilon$ moves $\phi$ into the integrand:
#   $\nabla_\phi\mathbb E_q[f] = \mathbb E_\varepsilon[\nabla_\phi f(\mu + \sigma\odot\varepsilon)]$;
#   needs $\nabla_z f$; here its variance $4\sigma^2$ does not depend on $d$.
# * Reparameterizations come from an **inverse CDF** ($z = F_\phi^{-1}(u)$) or a
#   **location-scale** transform ($z = \mu + s\varepsilon$).
# * The **doubly stochastic** estimator $\frac nm\sum_{i\in B}\frac1V\sum_v\nabla[\log p - \log q]$
#   is unbiased for the full-data ELBO gradient; with it a linear VAE reaches the closed-form
#   maximum likelihood of probabilistic PCA, and its ELBO closes the gap.
# * `vaelib.gradients`: `score_function_gradient(f, mu, logvar, K, baseline=...)` and
#   `pathwise_gradient(f, mu, logvar, K)` return per-sample estimates $(K, \dots, d)$.
#
# Next (chapter 8): the same estimator trains a neural VAE on MNIST.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# **Exercise 1 — the pathwise sample.** Write `pathwise_sample(mu, logvar, eps)` returning
# $z = \mu + \sigma\odot\varepsilon$ for tensors of shape `(N, d)`, with gradients flowing to
# `mu` and `logvar`. *Hint:* `logvar` is $\log\sigma^2$; what is $\sigma$?

# %% tags=["solution"]
def pathwise_sample(mu, logvar, eps):
    """The pathwise sample z from mu, logvar and the given noise eps, all (N, d) -> z (N, d)."""
    return mu + torch.exp(0.5 * logvar) * eps


# %%
from vaelib.exercises import check_pathwise_sample

check_pathwise_sample(pathwise_sample);

# %% [markdown]
# **Exercise 2 — the score.** Write `score_mu(z, mu, logvar)` returning $\nabla_\mu \log q(z) $ for
# $q = \mathcal N(\mu, \operatorname{diag} e^{\log\sigma^2})$, one entry per coordinate, shape
# `(N, d)`. Derive it from $\log q$ by hand (don't call autograd).

# %% tags=["solution"]
def score_mu(z, mu, logvar):
    """The gradient of log q(z) with respect to mu, for z, mu, logvar of shape (N, d) -> (N, d)."""
    return (z - mu) * torch.exp(-logvar)


# %%
from vaelib.exercises import check_score_mu

check_score_mu(score_mu);

# %% [markdown]
# **Exercise 3 — the minibatch scaling.** Given `log_w` of shape `(V, m)` — the values
# $\log p(x_i, z_{iv}) - \log q(z_{iv}\mid x_i)$ for $V$ samples of each of the $m$ points of a
# minibatch — and the data set size `num_data` $= n$, return the unbiased estimate of the
# full-data ELBO $\sum_{i=1}^n \ell_i$ (one number).

# %% tags=["solution"]
def minibatch_elbo_estimate(log_w, num_data):
    """The unbiased estimate of the full-data ELBO from log_w (V, m) and num_data n -> one number.
    """
    num_samples, batch_size = log_w.shape
    return num_data / batch_size * log_w.mean(dim=0).sum()


# %%
from vaelib.exercises import check_minibatch_elbo_estimate

check_minibatch_elbo_estimate(minibatch_elbo_estimate);

# %% [markdown]
# **Going further (a question to think about, no check).** In section 7 the gradient of
# $-\log q_\phi(z\mid x)$ has two parts: through $z$ and through $\phi$ directly. Show that the
# direct part has expectation zero (it is minus the score), and that at the exact posterior
# $q = p(z\mid x)$ the remaining pathwise part is exactly zero for every $\varepsilon$ — the idea
# behind the "sticking the landing" estimator (Roeder et al., 2017).
