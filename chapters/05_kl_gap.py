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
# # Chapter 5 — The ELBO's gap is a KL divergence
#
# *Symbols: see the course's [notation page](../docs/notation.md).*
#
# Chapter 4 showed that the ELBO is a lower bound on $\log p(x)$. This chapter says **exactly how
# far below** it is:
#
# $$
# \log p(x) \;=\; \mathrm{ELBO}(q) \;+\; \mathrm{KL}\big(q(z\mid x)\,\big\|\,p(z\mid x)\big).
# $$
#
# We derive the identity in three lines, then verify it to floating-point precision on the
# linear-Gaussian model, where every term has a closed form. Then we use it:
#
# 1. **Inference as optimization.** For a fixed model, maximizing the ELBO over $q$ *is* minimizing
#    the KL to the posterior. When the family contains the posterior the gap closes; when it does
#    not (a diagonal $q$ for a correlated posterior, a Gaussian $q$ for a bimodal one), a gap
#    remains and we compute it.
# 2. **Learning.** EM alternates an exact E-step (gap $=0$) with an M-step on $\theta$; gradient
#    ascent moves $(\theta, q)$ together. Both are compared with the exact maximum likelihood.
# 3. **Amortization.** A VAE's encoder $q(z\mid x;\phi)$ replaces one $q$ per data point by one
#    network. The gap then splits into an *approximation gap* and an *amortization gap*, both
#    measured.

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
from matplotlib.colors import LogNorm
from torch import nn

from vaelib.device import seed_everything
from vaelib.estimators import elbo, log_importance_weights
from vaelib.exercises import check_kl_normal_1d, check_mean_field_gap, check_optimal_q_variance
from vaelib.figures import COLORS, FigureExplorer, reference_line, static_figure, use_course_style
from vaelib.gaussian import DiagonalGaussian
from vaelib.kl import gaussian_kl, gaussian_kl_between
from vaelib.toy import LinearGaussian, NonlinearToy

use_course_style()
generator = seed_everything(0)
torch.set_num_threads(1)  # every problem here is tiny: one thread beats two that wait on each other
F64 = torch.float64
GAP_COLOR = "firebrick"  # this chapter's colour for the gap KL(q ‖ p(z|x))

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The identity, in three lines
#
# Bayes' rule $p(z\mid x) = p(x, z) / p(x)$ gives, for **every** $z$ with $p(z\mid x) > 0$,
#
# $$
# \log p(x) = \log p(x, z) - \log p(z\mid x).
# $$
#
# The left side does not depend on $z$, so it equals its own average under any distribution
# $q(z\mid x)$. Average both sides over $z \sim q(z\mid x)$, then add and subtract
# $\log q(z\mid x)$:
#
# $$
# \begin{aligned}
# \log p(x) &= \mathbb{E}_{q}\big[\log p(x, z) - \log p(z\mid x)\big] \\
#           &=
#           \underbrace{\mathbb{E}_{q}\big[\log p(x, z) - \log q(z\mid x)\big]}_{\mathrm{ELBO}(q)}
#            +
#            \underbrace{\mathbb{E}_{q}\big[\log q(z\mid x) - \log p(z\mid x)\big]}_{\mathrm{KL}(q(z\mid x)\,\|\,p(z\mid x))}.
# \end{aligned}
# $$
#
# No inequality was used: this is an **equality** for every $q$ (if $q$ puts mass where the
# posterior has none, the ELBO is $-\infty$ and the KL $+\infty$; our models' posteriors are
# positive everywhere). Three consequences:
#
# - **The bound, again.** $\mathrm{KL} \ge 0$ (proved just below, for any $q$ and $p$), so
#   $\mathrm{ELBO}(q) \le \log p(x)$, with equality **if and only if** $q(z\mid x) = p(z\mid x)$.
#   This is chapter 4's result without Jensen, and it names the slack.
# - **Inference as optimization.** For a fixed model, $\log p(x)$ does not depend on $q$. Raising
#   the ELBO by changing $q$ can therefore only shrink the KL: *the best $q$ in a family is the one
#   closest to the posterior in $\mathrm{KL}(q\,\|\,p)$*, and we never need $p(z\mid x)$ or $p(x)$
#   to find it.
# - **The direction matters.** The gap is $\mathrm{KL}(q\,\|\,p)$, an average under $q$ of
#   $\log q - \log p(z\mid x)$. It explodes where $q$ puts mass and the posterior has almost none,
#   and charges only mildly for posterior mass that $q$ misses. This makes the best $q$ *too narrow*
#   rather than too wide, and *mode-seeking* (sections 5 and 6).
#
# **Why $\mathrm{KL}(q\,\|\,p) \ge 0$ for any densities $q$ and $p$.** For $t > 0$,
# $\log t \le t - 1$, with equality only at $t = 1$: $h(t) = t - 1 - \log t$ has $h(1) = 0$ and
# $h'(t) = 1 - 1/t$, negative below 1 and positive above, so $h \ge 0$. Put $t = p(z)/q(z)$ and
# average over $z \sim q$ (where $q > 0$; where $p = 0$ but $q > 0$ the KL is $+\infty$ and there is
# nothing to prove):
#
# $$
# -\mathrm{KL}(q\,\|\,p) = \mathbb E_q\Big[\log \frac{p(z)}{q(z)}\Big]
# \le \mathbb E_q\Big[\frac{p(z)}{q(z)} - 1\Big] = \int_{q > 0} p(z)\,dz - 1 \le 0 .
# $$
#
# Equality needs $p/q = 1$ wherever $q > 0$ and no mass of $p$ outside, i.e. $q = p$ (almost
# everywhere). When the supports agree the middle term is exactly 0, so
# $\mathrm{KL}(q\,\|\,p) = \mathbb E_q[h(p/q)]$: the average of a non-negative function. Nothing
# here is Gaussian. Checked below by quadrature on two non-Gaussian pairs: Gamma against Gamma
# (where `torch.distributions` has the closed form) and Laplace against Student-t, in both
# directions.

# %%
from scipy import integrate, stats  # quadrature and non-Gaussian densities, for this check only


def kl_by_quadrature(q, p, pieces):
    """KL(q ‖ p) = ∫ q log(q/p) dz and ∫ q h(p/q) dz with h(t) = t - 1 - log t, on the given pieces.
    """
    h_of_log = lambda r: np.exp(r) - 1 - r  # noqa: E731  h(t) at t = e^r: >= 0, = 0 only at r = 0
    direct = sum(
        integrate.quad(lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z)), a, b, limit=200)[0]
        for a, b in pieces
    )
    via_h = sum(integrate.quad(lambda z: q.pdf(z) * h_of_log(p.logpdf(z) - q.logpdf(z)), a, b,
                               limit=200)[0] for a, b in pieces)
    return direct, via_h


t_values = np.logspace(-6, 6, 1201)
assert (np.log(t_values) <= t_values - 1).all()  # log t <= t - 1, the only inequality used
gamma_q, gamma_p = stats.gamma(a=2.0, scale=1.0), stats.gamma(a=3.5, scale=0.5)
kl_gamma, kl_gamma_h = kl_by_quadrature(gamma_q, gamma_p, [(0, 1), (1, np.inf)])
kl_gamma_closed = torch.distributions.kl_divergence(  # Gamma(concentration, rate = 1/scale)
    torch.distributions.Gamma(torch.tensor(2.0, dtype=F64), torch.tensor(1.0, dtype=F64)),
    torch.distributions.Gamma(torch.tensor(3.5, dtype=F64), torch.tensor(2.0, dtype=F64))).item()
laplace, student = stats.laplace(loc=0.5, scale=0.7), stats.t(df=4)
# Finite pieces, split at the Laplace's kink (beyond |z| ≈ 500 SciPy's Laplace log-density
# underflows
# to -inf): the Student-t₄'s mass beyond |z| = 400 is 2·10⁻¹⁰, the Laplace's e^-570.
pieces = [(-400, -20), (-20, 0.5), (0.5, 20), (20, 400)]
kl_lt, kl_lt_h = kl_by_quadrature(laplace, student, pieces)
kl_tl, kl_tl_h = kl_by_quadrature(student, laplace, pieces)
print(f"KL(Gamma(2, 1) ‖ Gamma(3.5, 2)) = {kl_gamma:.6f} (quadrature), {kl_gamma_closed:.6f} "
      "(closed form)")
print(f"KL(Laplace ‖ Student-t₄) = {kl_lt:.6f},  KL(Student-t₄ ‖ Laplace) = {kl_tl:.6f}")
assert abs(kl_gamma - kl_gamma_closed) < 1e-8
for direct, via_h in [(kl_gamma, kl_gamma_h), (kl_lt, kl_lt_h), (kl_tl, kl_tl_h)]:
    assert direct > 0 and abs(direct - via_h) < 1e-8  # KL = E_q[h(p/q)] >= 0

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Every term in closed form on the linear-Gaussian model
#
# The model from chapter 1: $z \sim \mathcal{N}(0, I_d)$,
# $x\mid z \sim \mathcal{N}(Wz + b,\, s^2 I_D)$, with posterior
# $p(z\mid x) = \mathcal{N}(\mu_\star, \Sigma_\star)$, $\Sigma_\star = (I + W^\top W/s^2)^{-1}$,
# $\mu_\star = \Sigma_\star W^\top (x-b)/s^2$. Take a **diagonal** Gaussian $q = \mathcal{N}(m, V)$,
# $V = \mathrm{diag}(v)$, the family a VAE's encoder outputs. The three terms are computed by three
# independent formulas.
#
# **$\log p(x)$** is $\log \mathcal{N}(x;\, b,\, WW^\top + s^2 I)$ (chapter 1):
# `model.log_marginal`.
#
# **The ELBO** in its standard form $\mathbb{E}_q[\log p(x\mid z)] - \mathrm{KL}(q\,\|\,p(z))$
# (chapter 4). Write $z = m + \delta$ with $\mathbb{E}[\delta] = 0$,
# $\mathbb{E}[\delta\delta^\top] = V$. The cross term vanishes in
#
# $$
# \mathbb{E}_q\|x - b - Wz\|^2 = \|x - b - Wm\|^2 + \mathbb{E}\|W\delta\|^2
#   = \|x - b - Wm\|^2 + \operatorname{tr}(W V W^\top)
#   = \|x - b - Wm\|^2 + \textstyle\sum_j v_j \|w_j\|^2,
# $$
#
# ($w_j$ is the $j$-th column of $W$), so
#
# $$
# \mathbb{E}_q[\log p(x\mid z)] = -\tfrac{D}{2}\log(2\pi s^2)
#   - \frac{\|x - b - Wm\|^2 + \sum_j v_j\|w_j\|^2}{2s^2},
# \qquad
# \mathrm{KL}(q\,\|\,p(z)) = \tfrac12 \textstyle\sum_j \big(v_j + m_j^2 - 1 - \log v_j\big).
# $$
#
# **The KL to the posterior**, diagonal $q$ against full-covariance $p(z\mid x)$, with
# $\Lambda = \Sigma_\star^{-1}$:
#
# $$
# \mathrm{KL}(q\,\|\,p(z\mid x)) =
# \underbrace{\mathbb{E}_q[\log q(z)]}_{-\frac12\sum_j \log(2\pi e\, v_j)}
#   + \tfrac12\Big[d\log 2\pi + \log\det\Sigma_\star +
#   \mathbb{E}_q\big[(z-\mu_\star)^\top\Lambda(z-\mu_\star)\big]\Big],
# $$
#
# and
# $\mathbb{E}_q[(z-\mu_\star)^\top\Lambda(z-\mu_\star)] = (m-\mu_\star)^\top\Lambda(m-\mu_\star) + \operatorname{tr}(\Lambda V)$
# by the same split $z = m + \delta$, with $\operatorname{tr}(\Lambda V) = \sum_j \Lambda_{jj} v_j$.
# The $\log 2\pi$ terms cancel and $-\tfrac12\sum_j 1 = -\tfrac d2$, so
#
# $$
# \mathrm{KL}(q\,\|\,p(z\mid x)) = \tfrac12\Big[\textstyle\sum_j \Lambda_{jj} v_j +
# (m-\mu_\star)^\top\Lambda(m-\mu_\star) - d
#   + \log\det\Sigma_\star - \sum_j \log v_j\Big].
# $$
#
# (Here, as in chapters 3–4, $m$ and $V = \operatorname{diag}(v)$ are the mean and covariance of a
# $q$ chosen freely, $v_j$ its variances; $\mu_\star$, $\Sigma_\star$ are the exact posterior's.
# From chapter 6 on, $q$ is an encoder's output, written
# $\mathcal N(\mu, \operatorname{diag}\sigma^2)$.)

# %%
def expected_log_likelihood(model, x, mean, var):
    """E_q[log p(x|z)] for q = N(mean, diag var): x (N, D), mean and var (N, d) -> (N,)."""
    s2 = model.noise_std**2
    residual = x - model.decode(mean)  # x - b - W m, (N, D)
    spread = var @ model.W.square().sum(dim=0)  # Σ_j v_j ‖w_j‖² = tr(W V Wᵀ), (N,)
    constant = -0.5 * model.data_dim * math.log(2 * math.pi * s2)  # -D/2 log(2π s²)
    return constant - (residual.square().sum(-1) + spread) / (2 * s2)


def closed_form_elbo(model, x, mean, logvar):
    """ELBO(q) = E_q[log p(x|z)] - KL(q ‖ p(z)), exactly: (N,)."""
    return expected_log_likelihood(model, x, mean, logvar.exp()) - gaussian_kl(mean, logvar)


def kl_to_posterior(mean, logvar, post_mean, post_cov):
    """KL(N(m, diag v) ‖ N(μ⋆, Σ⋆)), shape (N,):
    ½[Σ_j Λ_jj v_j + (m-μ⋆)ᵀΛ(m-μ⋆) - d + log det Σ⋆ - Σ_j log v_j]."""
    precision = torch.linalg.inv(post_cov)  # Λ = Σ⋆⁻¹, (d, d)
    diff = mean - post_mean  # m - μ⋆, (N, d)
    trace = logvar.exp() @ precision.diagonal()  # Σ_j Λ_jj v_j = tr(Λ V), (N,)
    mahalanobis = ((diff @ precision) * diff).sum(-1)  # (m-μ⋆)ᵀ Λ (m-μ⋆), (N,)
    return 0.5 * (trace + mahalanobis - mean.shape[-1] + torch.logdet(post_cov) - logvar.sum(-1))


# %% [markdown]
# A 2-D latent model whose two columns of $W$ point in similar directions, so the posterior is
# strongly correlated (this matters in section 5). We draw 1000 data points and give each its own
# random $q$: a mean near the posterior mean and a variance between $e^{-4}$ and $e^{2}$.

# %%
W_2d = torch.tensor([[1.0, 0.8], [0.6, 1.0], [0.3, 0.2]], dtype=F64)  # (D, d) = (3, 2)
model_2d = LinearGaussian(W_2d, torch.tensor([0.5, -0.2, 0.1], dtype=F64), noise_std=0.5)
x_many, _ = model_2d.sample(1000, generator=generator)  # (N, D) = (1000, 3)
post_mean, post_cov = model_2d.posterior_parameters(x_many)  # (N, 2), (2, 2)
q_mean = post_mean + 1.5 * torch.randn(1000, 2, dtype=F64, generator=generator)
q_logvar = -4 + 6 * torch.rand(1000, 2, dtype=F64, generator=generator)

log_px = model_2d.log_marginal(x_many)
elbo_q = closed_form_elbo(model_2d, x_many, q_mean, q_logvar)
kl_q = kl_to_posterior(q_mean, q_logvar, post_mean, post_cov)
correlation = (post_cov[0, 1] / post_cov.diagonal().prod().sqrt()).item()
print(f"posterior correlation ρ = {correlation:.3f}")
print(f"{'log p(x)':>10} {'ELBO':>10} {'KL':>10} {'ELBO + KL':>10}")
for i in range(4):
    print(f"{log_px[i]:10.4f} {elbo_q[i]:10.4f} {kl_q[i]:10.4f} {elbo_q[i] + kl_q[i]:10.4f}")

# %% [markdown]
# Before trusting the identity, each formula is checked against code that shares nothing with it:
# the KL against `torch.distributions.kl_divergence` of two `MultivariateNormal`s, and the
# closed-form ELBO against the Monte Carlo ELBO of `vaelib.estimators.elbo` (chapter 4), within 5
# standard errors.

# %%
q_torch = torch.distributions.MultivariateNormal(q_mean, torch.diag_embed(q_logvar.exp()))
posterior_torch = torch.distributions.MultivariateNormal(post_mean, post_cov)
kl_reference = torch.distributions.kl_divergence(q_torch, posterior_torch)
assert torch.allclose(kl_q, kl_reference, rtol=1e-10, atol=1e-10), (kl_q - kl_reference).abs().max()

K = 20_000  # Monte Carlo check on the first 8 (x, q) pairs
few = slice(0, 8)
q_few = DiagonalGaussian(q_mean[few], q_logvar[few])
log_w = log_importance_weights(model_2d, x_many[few], q_few, K, generator)  # (K, 8)
mc_elbo, std_error = log_w.mean(0), log_w.std(0) / math.sqrt(K)
z_scores = (mc_elbo - elbo_q[few]) / std_error
print("Monte Carlo ELBO minus closed form, in standard errors:", np.round(z_scores.numpy(), 2))
assert z_scores.abs().max() < 5

residual = log_px - elbo_q - kl_q
print(f"max |log p(x) - ELBO(q) - KL(q ‖ p(z|x))| over 1000 random q: {residual.abs().max():.2e}")
assert residual.abs().max() < 1e-10  # the identity, to float64 precision

# %% [markdown]
# The identity holds to rounding error (the residual printed above; the assert allows $10^{-10}$),
# although the three terms come from three unrelated computations (a $D\times D$ Gaussian density, a
# reconstruction term plus a KL to the prior, and a $d \times d$ precision matrix).
#
# **Picture it for one $x$.** Every $q$ is a point $(\mathrm{KL}, \mathrm{ELBO})$. The identity says
# all of them lie on one line of slope $-1$ through $(0, \log p(x))$, and only the posterior reaches
# the top. Notice that no *diagonal* $q$ gets closer to it than about half a nat: section 5 explains
# why.

# %%
x_one = x_many[:1]
mean_one, cov_one = model_2d.posterior_parameters(x_one)
cloud_mean = mean_one + 0.8 * torch.randn(400, 2, dtype=F64, generator=generator)
cloud_logvar = -4 + 5 * torch.rand(400, 2, dtype=F64, generator=generator)
cloud_elbo = closed_form_elbo(model_2d, x_one.expand(400, -1), cloud_mean, cloud_logvar)
cloud_kl = kl_to_posterior(cloud_mean, cloud_logvar, mean_one, cov_one)
log_px_one = model_2d.log_marginal(x_one).item()

fig, ax = plt.subplots(figsize=(6.5, 4))
kl_axis = np.linspace(0, cloud_kl.max().item() * 1.05, 2)
ax.plot(kl_axis, log_px_one - kl_axis, color=COLORS["elbo"], lw=6, alpha=0.25,
        label="the line ELBO = log p(x) − KL")
ax.scatter(
    cloud_kl, cloud_elbo, s=12, color=COLORS["proposal"], alpha=0.7, label="400 random diagonal q"
)
ax.plot(0, log_px_one, marker="*", ms=16, color=COLORS["posterior"], ls="none",
        label="q = p(z|x) (not diagonal)")
reference_line(ax, log_px_one, label=f"log p(x) = {log_px_one:.2f}")
ax.set(xlim=(-1, kl_axis[-1]), xlabel="KL(q ‖ p(z|x))  [nats]", ylabel="ELBO(q)  [nats]",
       title="Every q lands on the line ELBO + KL = log p(x)")
ax.legend(loc="lower left")
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Move $q$ and watch the budget
#
# A 1-D latent model ($d=1$, $D=2$), one data point. Move $q$'s mean and scale (standard deviation):
#
# - **left**: the exact posterior $p(z\mid x)$ and your $q$ (the prior in grey);
# - **middle**: the budget. The ELBO (green) and the gap KL (red) always stack up to exactly
#   $\log p(x)$ (dashed): the column's height never changes, only the split does;
# - **right**: the gap over all $(m, \sigma)$, on a log colour scale; the star is the posterior, the
#   only place where the gap is 0.
#
# With $d=1$ the posterior is a 1-D Gaussian, so the KL is between two diagonal Gaussians and
# `vaelib.kl.gaussian_kl_between` computes it; we check it agrees with `kl_to_posterior`.

# %%
model_1d = LinearGaussian(torch.tensor([[1.5], [-0.8]], dtype=F64), None, 1.0)
x_1d = torch.tensor([[1.2, -1.0]], dtype=F64)
post_mean_1d, post_cov_1d = model_1d.posterior_parameters(x_1d)  # (1, 1), (1, 1)
post_logvar_1d = post_cov_1d.diagonal().log()[None]  # (1, 1)
log_px_1d = model_1d.log_marginal(x_1d).item()


def gap_1d(mean, scale):
    """(ELBO, KL(q ‖ p(z|x))) for q = N(mean, scale²) on model_1d; mean, scale: tensors (M,)."""
    mean, logvar = mean[:, None], 2 * torch.log(scale)[:, None]
    x = x_1d.expand(len(mean), -1)
    kl = gaussian_kl_between(mean, logvar, post_mean_1d.expand_as(mean),
                             post_logvar_1d.expand_as(logvar))
    return closed_form_elbo(model_1d, x, mean, logvar), kl


test_mean, test_scale = torch.linspace(-2, 3, 7, dtype=F64), torch.linspace(0.1, 2, 7, dtype=F64)
test_elbo, test_kl = gap_1d(test_mean, test_scale)
assert torch.allclose(test_kl, kl_to_posterior(test_mean[:, None], 2 * test_scale.log()[:, None],
                                               post_mean_1d, post_cov_1d), rtol=1e-12, atol=1e-12)
assert (test_elbo + test_kl - log_px_1d).abs().max() < 1e-10

# The gap on a grid of (mean, scale), computed once for the right-hand panel.
grid_mean = torch.linspace(-2.5, 3.0, 111, dtype=F64)
grid_scale = torch.logspace(-1, math.log10(2.0), 81, dtype=F64)
mesh_mean, mesh_scale = torch.meshgrid(grid_mean, grid_scale, indexing="ij")
_, grid_gap = gap_1d(mesh_mean.reshape(-1), mesh_scale.reshape(-1))
grid_gap = grid_gap.reshape(mesh_mean.shape)


# %%
# Plotting (the figure's layout, not the lesson): one function per panel, then the three together.
def normal_pdf(z, mean, std):
    """N(z; mean, std²), elementwise."""
    return torch.exp(-0.5 * ((z - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))


def draw_densities(ax_density, mean, scale):
    """Left panel: the prior, the exact posterior and q = N(mean, scale²)."""
    z = torch.linspace(-4, 4, 400, dtype=F64)
    post_sd = post_cov_1d.sqrt().item()
    ax_density.plot(z, normal_pdf(z, 0.0, 1.0), color=COLORS["prior"], lw=1, label="prior p(z)")
    ax_density.plot(z, normal_pdf(z, post_mean_1d.item(), post_sd), color=COLORS["posterior"],
                    lw=2.5, label="posterior p(z|x)")
    ax_density.plot(z, normal_pdf(z, mean, scale), color=COLORS["proposal"], lw=2,
                    label="your q(z|x)")
    peak = 1 / (min(scale, post_sd) * math.sqrt(2 * math.pi))  # the higher of the two peaks
    ax_density.set(xlabel="z", ylabel="density", title="q against the exact posterior",
                   ylim=(0, 1.15 * peak))
    ax_density.legend(loc="upper left")


# %%
# Plotting: the middle panel.
def draw_budget(ax_budget, elbo_value, kl_value):
    """Middle panel: log p(x) as one column, split into the ELBO and the KL."""
    floor = log_px_1d - 8.0  # the column starts here (all values are negative, in nats)
    shown_elbo = max(elbo_value, floor)
    ax_budget.bar(0, shown_elbo - floor, bottom=floor, width=0.8, color=COLORS["elbo"])
    ax_budget.bar(0, log_px_1d - shown_elbo, bottom=shown_elbo, width=0.8, color=GAP_COLOR,
                  hatch="//", alpha=0.8)
    reference_line(ax_budget, log_px_1d)
    ax_budget.text(0.5, log_px_1d + 0.15, f"log p(x)\n{log_px_1d:.2f}", va="bottom", fontsize=9)
    ax_budget.text(0.5, (shown_elbo + log_px_1d) / 2, f"KL\n{kl_value:.2f}", va="center",
                   color=GAP_COLOR, fontsize=9)
    elbo_label = f"ELBO\n{elbo_value:.2f}" + ("\n(below the axis)" if elbo_value < floor else "")
    ax_budget.text(0.5, max((shown_elbo + floor) / 2, floor + 0.8), elbo_label, va="center",
                   color=COLORS["elbo"], fontsize=9)
    ax_budget.set(xlim=(-0.5, 1.4), ylim=(floor, log_px_1d + 1.5), xticks=[], ylabel="nats",
                  title="ELBO + KL = log p(x)")


# %%
# Plotting: the right panel.
def draw_gap_map(fig, ax_map, mean, scale):
    """Right panel: the gap KL(q ‖ p(z|x)) over (mean, scale), the posterior and q marked."""
    post_sd = post_cov_1d.sqrt().item()
    image = ax_map.pcolormesh(mesh_mean, mesh_scale, grid_gap.clamp_min(1e-3), shading="auto",
                              norm=LogNorm(vmin=1e-3, vmax=1e2), cmap="magma_r")
    contours = ax_map.contour(mesh_mean, mesh_scale, grid_gap, levels=[0.01, 0.1, 1, 10],
                              colors="white", linewidths=0.6)
    ax_map.clabel(contours, fmt="%g", fontsize=7)
    ax_map.plot(post_mean_1d.item(), post_sd, marker="*", ms=14, color=COLORS["posterior"],
                markeredgecolor="white", label="posterior")
    ax_map.plot(mean, scale, marker="o", ms=9, color=COLORS["proposal"], markeredgecolor="black",
                label="your q", clip_on=False)
    ax_map.set(yscale="log", xlabel="mean of q", ylabel="scale σ of q (log)",
               title="the gap KL(q ‖ p(z|x))")
    ax_map.set_yticks([0.1, 0.2, 0.5, 1, 2], labels=["0.1", "0.2", "0.5", "1", "2"])
    ax_map.minorticks_off()  # (fewer ticks: faster redraws)
    ax_map.legend(loc="upper left", fontsize=8, frameon=True, framealpha=0.9)
    colorbar = fig.colorbar(image, ax=ax_map, label="nats (log scale)")
    colorbar.ax.minorticks_off()


# %%
# Plotting: the three panels for one q.
def draw_gap(fig, mean, scale):
    """The identity for q = N(mean, scale²): densities, the ELBO + KL budget, the gap landscape."""
    ax_density, ax_budget, ax_map = fig.subplots(
        1, 3, gridspec_kw={"width_ratios": [1.5, 0.7, 1.3]}
    )
    elbo_t, kl_t = gap_1d(torch.tensor([mean], dtype=F64), torch.tensor([scale], dtype=F64))
    elbo_value, kl_value = elbo_t.item(), kl_t.item()
    draw_densities(ax_density, mean, scale)
    draw_budget(ax_budget, elbo_value, kl_value)
    draw_gap_map(fig, ax_map, mean, scale)
    # fixed: fast redraws
    fig.subplots_adjust(left=0.05, right=0.98, bottom=0.14, top=0.9, wspace=0.4)
    return (f"log p(x) = {log_px_1d:.4f} = ELBO {elbo_value:.4f} + KL {kl_value:.4f} "
            f"(sum {elbo_value + kl_value:.4f})")


# The static twin of the widget below (for GitHub and printed pages).
static_figure(draw_gap, figsize=(13, 4), mean=-1.0, scale=1.0)

# %% [markdown]
# The live version: move the sliders (the figure above is the same drawing at mean $-1$, scale $1$).

# %%
FigureExplorer(
    draw_gap, figsize=(13, 4),
    mean=widgets.FloatSlider(value=-1.0, min=-2.5, max=3.0, step=0.05, description="mean of q"),
    scale=widgets.FloatSlider(value=1.0, min=0.1, max=2.0, step=0.02, description="scale σ of q"),
)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Maximizing the ELBO over $q$ finds the posterior
#
# Fix the model and climb the ELBO in $q$'s parameters $(m, \log v)$ by gradient ascent with `torch`
# autograd. Since $\log p(x)$ does not move, every step up the ELBO is a step down the gap. Three
# ways to get the gradient, on the 1-D model:
#
# - **closed form**: differentiate the exact ELBO of section 2;
# - **reparameterized** (chapter 7): one sample $z = m + \sigma\varepsilon$, the gradient of
#   $\log p(x, z) - \log q(z\mid x)$. Unbiased, but noisy;
# - **"sticking the landing"** (Roeder, Wu & Duvenaud, 2017): the same, with $q$'s parameters
#   detached inside $\log q(z)$. The dropped term $\nabla_\phi \log q_\phi(z)$ has mean zero (the
#   expected score), so the gradient stays unbiased, and at $q = p(z\mid x)$ the remaining term
#   $\nabla_z[\log p(x, z) - \log q(z)] = \nabla_z \log p(z\mid x) - \nabla_z \log q(z)$ is exactly
#   zero for every $\varepsilon$.
#
# The ordinary reparameterized gradient does **not** vanish at the optimum: its score term
# $-\nabla_m \log q(z) = -(z-m)/\sigma^2 = -\varepsilon/\sigma$ has mean zero but variance
# $1/\sigma^2$. So plain SGD stalls at a noise floor, while the other two converge to machine
# precision.

# %%
def climb_elbo_1d(gradient, steps=300, lr=0.1):
    """Gradient ascent on q = N(m, e^logvar) for model_1d at x_1d; the exact gap after each step."""
    mean = torch.tensor([[-2.0]], dtype=F64, requires_grad=True)
    logvar = torch.tensor([[1.0]], dtype=F64, requires_grad=True)
    optimizer = torch.optim.SGD([mean, logvar], lr=lr)
    step_generator = torch.Generator().manual_seed(1)
    gaps = []
    for _ in range(steps):
        optimizer.zero_grad()
        if gradient == "closed form":
            objective = closed_form_elbo(model_1d, x_1d, mean, logvar)
        else:
            z = DiagonalGaussian(mean, logvar).rsample(1, generator=step_generator)  # (1, 1, 1)
            if gradient == "reparameterized":
                q_params = (mean, logvar)
            else:  # sticking the landing: no gradient through q's parameters inside log q(z)
                q_params = (mean.detach(), logvar.detach())
            objective = model_1d.log_joint(x_1d, z) - DiagonalGaussian(*q_params).log_prob(z)
        (-objective.sum()).backward()
        optimizer.step()
        with torch.no_grad():
            gaps.append(log_px_1d - closed_form_elbo(model_1d, x_1d, mean, logvar).item())
    return np.array(gaps), mean.detach(), logvar.detach()


# %%
runs = {name: climb_elbo_1d(name)
        for name in ["closed form", "reparameterized", "sticking the landing"]}
gaps_closed, mean_closed, logvar_closed = runs["closed form"]
print(f"closed form: gap {gaps_closed[-1]:.1e}; "
      f"q = N({mean_closed.item():.6f}, {logvar_closed.exp().item():.6f}), "
      f"posterior N({post_mean_1d.item():.6f}, {post_cov_1d.item():.6f})")
assert gaps_closed[-1] < 1e-10
assert torch.allclose(mean_closed, post_mean_1d, atol=1e-6)
assert torch.allclose(logvar_closed.exp(), post_cov_1d, atol=1e-6)
assert runs["sticking the landing"][0][-1] < 1e-10
noise_floor = np.median(runs["reparameterized"][0][-100:])
print(f"reparameterized SGD: median gap over the last 100 steps {noise_floor:.2e}")
assert 1e-4 < noise_floor < 0.5  # stalls at the noise floor, near but not at the posterior

# Why: at q = p(z|x), the per-sample gradient in m is exactly -ε/σ (reparameterized) and 0 (sticking
# the landing). One copy of m per sample ε gives the 2000 per-sample gradients in one backward pass.
eps = torch.randn(2000, 1, dtype=F64, generator=torch.Generator().manual_seed(2))  # its own stream
post_std_1d = post_cov_1d.sqrt()  # (1, 1)
per_sample_grads = {}
for name in ["reparameterized", "sticking the landing"]:
    m = post_mean_1d.expand(2000, 1).clone().requires_grad_(True)  # (2000, 1)
    z = m + post_std_1d * eps  # (2000, 1)
    q = DiagonalGaussian(
        m if name == "reparameterized" else m.detach(), post_logvar_1d.expand(2000, 1)
    )
    (model_1d.log_joint(x_1d, z) - q.log_prob(z)).sum().backward()
    per_sample_grads[name] = m.grad
assert torch.allclose(per_sample_grads["reparameterized"], -eps / post_std_1d, atol=1e-10)
assert per_sample_grads["sticking the landing"].abs().max() < 1e-10
print(f"at the posterior: reparameterized gradient variance "
      f"{per_sample_grads['reparameterized'].var():.3f} (1/σ² = {1 / post_cov_1d.item():.3f}); "
      "sticking the landing: max |gradient| "
      f"{per_sample_grads['sticking the landing'].abs().max():.1e}")

# %%
fig, ax = plt.subplots(figsize=(7, 4))
styles = {"closed form": COLORS["exact"], "reparameterized": COLORS["proposal"],
          "sticking the landing": COLORS["importance"]}
for name, (gaps, _, _) in runs.items():
    ax.plot(np.arange(1, len(gaps) + 1), np.maximum(gaps, 1e-16), color=styles[name], lw=1.5,
            label=name)
ax.axhline(1e-16, color="grey", lw=0.8, ls=":", label="float64 resolution")
ax.set(yscale="log", xlabel="gradient step", ylabel="gap  log p(x) − ELBO(q)  [nats]",
       title="Climbing the ELBO closes the gap (d = 1: the posterior is in the family)")
ax.legend()
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Mean field: a diagonal $q$ cannot close a correlated gap
#
# Back to the 2-D model, whose posterior has correlation $\rho \approx -0.8$ (in this section and
# exercise 3, $\rho$ is a correlation coefficient, not chapter 2's relative variance). Minimize
# $\mathrm{KL}(q\,\|\,p(z\mid x))$ over diagonal $q$ using the closed form of section 2:
#
# - in $m$: the only term is $\tfrac12 (m-\mu_\star)^\top\Lambda(m-\mu_\star)$, minimized at
#   $m = \mu_\star$;
# - in $v_j$: $\tfrac12(\Lambda_{jj} v_j - \log v_j)$ has derivative
#   $\tfrac12(\Lambda_{jj} - 1/v_j)$, zero at $v_j = 1/\Lambda_{jj}$.
#
# Substituting back,
#
# $$
# \min_{q\ \mathrm{diagonal}} \mathrm{KL}(q\,\|\,p(z\mid x)) = \tfrac12\Big[\textstyle\sum_j \log
# \Lambda_{jj} - \log\det\Lambda\Big]
#   \;\overset{d=2}{=}\; -\tfrac12\log(1-\rho^2),
# $$
#
# which is $\ge 0$ by Hadamard's inequality ($\det\Lambda \le \prod_j \Lambda_{jj}$), with equality
# iff $\Lambda$ is diagonal. Two lessons: the gap that remains depends on the posterior's
# correlation, not on how long we optimize; and $1/\Lambda_{jj} \le (\Sigma_\star)_{jj}$, so
# **mean-field $q$ under-estimates the marginal variances** (it fits the *conditional* widths).

# %%
x_star = x_many[:1]
mu_star, sigma_star = model_2d.posterior_parameters(x_star)
precision_star = torch.linalg.inv(sigma_star)
gap_theory = 0.5 * (precision_star.diagonal().log().sum() - torch.logdet(precision_star)).item()
assert abs(gap_theory + 0.5 * math.log(1 - correlation**2)) < 1e-12

mf_mean = torch.zeros(1, 2, dtype=F64, requires_grad=True)  # a diagonal ("mean-field") q
mf_logvar = torch.zeros(1, 2, dtype=F64, requires_grad=True)
optimizer = torch.optim.SGD([mf_mean, mf_logvar], lr=0.07)
for _ in range(800):
    optimizer.zero_grad()
    (-closed_form_elbo(model_2d, x_star, mf_mean, mf_logvar).sum()).backward()
    optimizer.step()
mf_elbo = closed_form_elbo(model_2d, x_star, mf_mean, mf_logvar)  # the best diagonal q's ELBO
mean_field_gap = (model_2d.log_marginal(x_star) - mf_elbo).item()
print(f"mean-field gap after gradient ascent {mean_field_gap:.12f}, "
      f"theory -½ log(1 - ρ²) = {gap_theory:.12f}")
print(f"q variances {mf_logvar.exp().detach().numpy().round(4)}, "
      f"1/Λ_jj = {(1 / precision_star.diagonal()).numpy().round(4)}, "
      f"posterior marginal variances (Σ⋆)_jj = {sigma_star.diagonal().numpy().round(4)}")
assert abs(mean_field_gap - gap_theory) < 1e-9
assert torch.allclose(mf_mean.detach(), mu_star, atol=1e-6)
assert torch.allclose(mf_logvar.exp().detach(), 1 / precision_star.diagonal()[None], rtol=1e-6)
assert (1 / precision_star.diagonal() < sigma_star.diagonal()).all()  # under-estimated marginals

# %% [markdown]
# **The gap belongs to the coordinates, not to $p(x)$.** Rotating the latent space, $W \to WR$ with
# $R$ orthogonal, leaves $p(x) = \mathcal{N}(b, WRR^\top W^\top + s^2 I)$ unchanged. Choose $R$ as
# the eigenvectors of $W^\top W$: then $(WR)^\top(WR)$ is diagonal, so is
# $\Lambda = I + (WR)^\top (WR)/s^2$, and the mean-field gap is zero. The same data, the same
# $\log p(x)$, a posterior that *is* in the diagonal family. (Section 7 shows learning finds such a
# rotation by itself.)

# %%
_, rotation = torch.linalg.eigh(model_2d.W.T @ model_2d.W)  # R, orthogonal (d, d)
model_rotated = LinearGaussian(model_2d.W @ rotation, model_2d.b, model_2d.noise_std)
assert torch.allclose(model_rotated.log_marginal(x_many), model_2d.log_marginal(x_many),
                      rtol=0, atol=1e-12)
mu_rot, sigma_rot = model_rotated.posterior_parameters(x_star)
assert abs(sigma_rot[0, 1].item()) < 1e-12  # a diagonal posterior
q_rot_logvar = sigma_rot.diagonal().log()[None]  # best diagonal q = the posterior itself
rotated_elbo = closed_form_elbo(model_rotated, x_star, mu_rot, q_rot_logvar)
rotated_gap = (model_rotated.log_marginal(x_star) - rotated_elbo).item()
print(f"mean-field gap in the rotated coordinates: {rotated_gap:.1e}")
assert abs(rotated_gap) < 1e-10


# %%
def ellipse(center, cov, radius, num=200):
    """Points of {z : (z-c)ᵀ cov⁻¹ (z-c) = radius²}: (num, 2)."""
    angle = torch.linspace(0, 2 * math.pi, num, dtype=F64)
    circle = torch.stack([angle.cos(), angle.sin()], -1)  # (num, 2)
    return center + radius * circle @ torch.linalg.cholesky(cov).T


fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
cases = [(axes[0], mu_star, sigma_star, mf_logvar.exp().detach()[0],
          f"original W: ρ = {correlation:.2f}, gap = {gap_theory:.3f} nats"),
         (axes[1], mu_rot, sigma_rot, sigma_rot.diagonal(),
          f"rotated W R: ρ = 0, gap = 0 (to {abs(rotated_gap):.0e})")]
for ax, center, cov, q_var, title in cases:
    for radius, alpha in [(1, 1.0), (2, 0.5)]:
        post = ellipse(center[0], cov, radius)
        ax.plot(post[:, 0], post[:, 1], color=COLORS["posterior"], lw=2.5, alpha=alpha,
                label="posterior, 1σ (faded: 2σ)" if radius == 1 else None)
        q_curve = ellipse(center[0], torch.diag(q_var), radius)
        ax.plot(q_curve[:, 0], q_curve[:, 1], color=COLORS["proposal"], lw=2, ls="--", alpha=alpha,
                label="best diagonal q, 1σ (faded: 2σ)" if radius == 1 else None)
    ax.set(
        xlabel="z₁",
        ylabel="z₂",
        title=title,
        aspect="equal",
        xlim=(center[0, 0] - 1.9, center[0, 0] + 1.9),
        ylim=(center[0, 1] - 1.9, center[0, 1] + 1.9),
    )
    ax.legend(loc="upper right", fontsize=8)
fig.suptitle("Mean field fits the conditional widths; it is exact only for an uncorrelated "
             "posterior")
fig.tight_layout()
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Beyond the Gaussian family: the nonlinear toy
#
# The toy of chapter 1: $z \sim \mathcal{N}(0,1)$,
# $x\mid z \sim \mathcal{N}\big((z, z^2),\, 0.3^2 I_2\big)$. A point high above the parabola's
# vertex, $x = (0, 2)$, is explained equally well by $z \approx +1.2$ and $z \approx -1.2$: its
# posterior is **bimodal**, and no Gaussian matches it.
#
# **The exact terms.** $\log p(x)$ and $p(z\mid x)$ come from quadrature on a grid (`vaelib.toy`).
# For $q = \mathcal{N}(m, \sigma^2)$ the ELBO is $\mathbb{E}_q[\log p(x, z)] + \mathcal{H}[q]$, with
# $\mathcal{H}[q] = \tfrac12\log(2\pi e\sigma^2)$. Since $\log p(x,z)$ is a polynomial of degree 4
# in $z$, the expectation is computed **exactly** by Gauss–Hermite quadrature: with
# $z = m + \sigma t$, $\mathbb{E}_q[f(z)] = \sum_g \omega_g f(m + \sigma t_g)$ with $G$ nodes $t_g$
# and weights $\omega_g$, exact for polynomials of degree $\le 2G-1$ (15 here, with $G = 8$).

# %%
toy = NonlinearToy(noise_std=0.3, curve="parabola", a=1.0)
# ∫ e^{-t²/2} f(t) dt ≈ Σ_g ω_g f(t_g); dividing by √(2π) turns it into E[f(t)] for t ~ N(0, 1).
hermite_nodes, hermite_weights = np.polynomial.hermite_e.hermegauss(8)
hermite_nodes = torch.from_numpy(hermite_nodes)  # t_g, (G,)
hermite_weights = torch.from_numpy(hermite_weights) / math.sqrt(2 * math.pi)  # Σ_g ω_g = 1


def gaussian_q_elbo(model, x, mean, logvar):
    """ELBO of q = N(mean, e^logvar), 1-D latent: E_q[log p(x, z)] + H[q]; (N, 1), (N, 1) -> (N,).
    """
    z = mean + (0.5 * logvar).exp() * hermite_nodes[:, None, None]  # z_g = m + σ t_g, (G, N, 1)
    expected_log_joint = (hermite_weights[:, None] * model.log_joint(x, z)).sum(0)  # (N,)
    return expected_log_joint + 0.5 * (1 + math.log(2 * math.pi) + logvar).sum(-1)


def grid_kl_to_posterior(model, x, mean, logvar):
    """KL(q ‖ p(z|x)) = Σ_g Δz q(z_g) [log q(z_g) - log p(z_g|x)] on the model's grid: (N,)."""
    z = model.z_grid[:, None, None]  # (G, 1, 1)
    log_q = DiagonalGaussian(mean, logvar).log_prob(z)  # (G, N)
    log_posterior = model.log_posterior_density(x, model.z_grid)  # (G, N)
    return (log_q.exp() * (log_q - log_posterior)).sum(0) * model.grid_step


# Check the ELBO against Monte Carlo and the identity against quadrature, for a few arbitrary q.
x_check = torch.tensor([[0.0, 2.0], [1.0, 0.5], [-0.5, 1.5]], dtype=F64)
mean_check = torch.tensor([[1.0], [0.5], [-2.0]], dtype=F64)
logvar_check = torch.tensor([[-1.0], [0.3], [-2.5]], dtype=F64)
toy_elbo_check = gaussian_q_elbo(toy, x_check, mean_check, logvar_check)
q_check = DiagonalGaussian(mean_check, logvar_check)
log_w_toy = log_importance_weights(toy, x_check, q_check, K, generator)  # (K, 3)
toy_z_scores = (log_w_toy.mean(0) - toy_elbo_check) / (log_w_toy.std(0) / math.sqrt(K))
assert toy_z_scores.abs().max() < 5, toy_z_scores
toy_kl_check = grid_kl_to_posterior(toy, x_check, mean_check, logvar_check)
toy_identity = toy.log_marginal(x_check) - toy_elbo_check - toy_kl_check
print(f"toy: Monte Carlo z-scores {np.round(toy_z_scores.numpy(), 2)}; "
      f"max |log p(x) - ELBO - KL| = {toy_identity.abs().max():.1e}")
assert toy_identity.abs().max() < 1e-8  # the identity holds here too (quadrature accuracy)


# %% [markdown]
# **The best Gaussian $q$.** Climb the Gauss–Hermite ELBO with Adam, from a few starting means (the
# ELBO is not concave in $(m, \log\sigma^2)$ here: there are local optima), and keep the best.

# %%
def fit_gaussian_q(model, x, init_mean, init_logvar=-1.0, steps=400, lr=0.05, learn_mean=True):
    """Gradient ascent on the exact ELBO of q = N(m, e^logvar), one q per data point.

    init_mean, init_logvar: numbers, or tensors (N, 1) (one start per data point);
    learn_mean=False keeps the mean at init_mean and fits the variance only.
    Returns (mean, logvar), each (N, 1)."""
    start = lambda value: torch.as_tensor(value, dtype=F64).expand(len(x), 1).clone()  # noqa: E731
    mean = start(init_mean).requires_grad_(learn_mean)
    logvar = start(init_logvar).requires_grad_(True)
    optimizer = torch.optim.Adam([mean, logvar] if learn_mean else [logvar], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        (-gaussian_q_elbo(model, x, mean, logvar).sum()).backward()  # N independent problems
        optimizer.step()
    return mean.detach(), logvar.detach()


# %%
def best_gaussian_q(model, x, init_means=(-1.5, 0.0, 1.5), init_logvars=None):
    """The best of S starts, per data point: (mean (N, 1), logvar (N, 1), elbo (N,)).

    The S·N problems are independent, so they are solved as one batch of S copies of x."""
    S, N = len(init_means), len(x)
    init_logvars = [-1.0] * S if init_logvars is None else init_logvars
    stack = lambda starts: torch.cat([torch.as_tensor(v, dtype=F64).expand(N, 1)  # noqa: E731
                                      for v in starts])  # (S·N, 1)
    x_copies = x.repeat(S, 1)  # (S·N, D)
    mean, logvar = fit_gaussian_q(model, x_copies, stack(init_means), stack(init_logvars))
    elbos = gaussian_q_elbo(model, x_copies, mean, logvar).view(S, N)
    best = elbos.argmax(0) * N + torch.arange(N)  # row of the best start, per data point
    return mean[best], logvar[best], elbos.max(0).values


# A lopsided posterior, two close modes, two far modes:
x_examples = torch.tensor([[0.3, 0.8], [0.0, 1.0], [0.0, 2.0]], dtype=F64)
best_mean, best_logvar, best_elbo = best_gaussian_q(toy, x_examples)
log_px_examples = toy.log_marginal(x_examples)
best_gap = log_px_examples - best_elbo
# The Gaussian with the posterior's own mean and variance, for comparison:
moment_mean, moment_var = toy.posterior_moments(x_examples)
moment_gap = log_px_examples - gaussian_q_elbo(toy, x_examples, moment_mean, moment_var.log())
for i in range(len(x_examples)):
    print(f"x = {x_examples[i].tolist()}: best Gaussian q gap = {best_gap[i]:.4f} nats, "
          f"moment-matched Gaussian gap = {moment_gap[i]:.4f} nats")
assert (best_gap > 0.05).all()  # the family's limit: no Gaussian reaches the posterior
assert (best_gap < moment_gap).all()  # moment matching minimizes KL(p ‖ q), not KL(q ‖ p)

# %%
fig, axes = plt.subplots(1, 3, figsize=(14, 4))
z_plot = toy.z_grid[(toy.z_grid > -3.5) & (toy.z_grid < 3.5)]
posterior_plot = toy.log_posterior_density(x_examples, z_plot).exp()  # (G, 3)
for i, ax in enumerate(axes):
    ax.fill_between(z_plot, posterior_plot[:, i], color=COLORS["posterior"], alpha=0.25)
    ax.plot(z_plot, posterior_plot[:, i], color=COLORS["posterior"], lw=2.5,
            label="exact posterior (quadrature)")
    gaussians = [(best_mean[i], best_logvar[i], "-", f"best Gaussian q, gap {best_gap[i]:.3f}"),
                 (moment_mean[i], moment_var[i].log(), ":", "moment-matched, gap "
                                                            f"{moment_gap[i]:.3f}")]
    for m, lv, style, label in gaussians:
        q_density = DiagonalGaussian(m[None], lv[None]).log_prob(z_plot[:, None, None]).exp()[:, 0]
        ax.plot(z_plot, q_density, color=COLORS["proposal"], lw=2, ls=style, label=label)
    ax.set(xlabel="z", ylabel="density",
           title=f"x = ({x_examples[i, 0]:.1f}, {x_examples[i, 1]:.1f})")
    ax.legend(fontsize=8, loc="upper left")
fig.suptitle("The best Gaussian q: on the main mode, straddling two close modes, on one of two far "
             "modes")
fig.tight_layout()
plt.show()

# %% [markdown]
# **How big can the family's gap get?** Slide $x = (0, x_2)$ upwards. Below the vertex the posterior
# is unimodal and nearly Gaussian; once $x_2 > (1+s^2)/2 \approx 0.55$ it splits into two
# mirror-image modes. Two kinds of $q$ compete: a wide $q$ centred at $0$ (the posterior's mean, by
# symmetry) straddling both modes, and a narrow $q$ on one mode. The straddling $q$ puts its mass
# where the posterior has almost none, which $\mathrm{KL}(q\,\|\,p)$ punishes without limit. The
# one-mode $q$ only misses the other half of the posterior; when the modes are far apart and each is
# nearly Gaussian, $p(z\mid x) \approx \tfrac12 q(z)$ where $q$ lives, so
# $\mathrm{KL} \to \mathbb{E}_q[\log q - \log(\tfrac12 q)] = \log 2$.

# %%
x2_sweep = torch.linspace(-1.0, 3.0, 41, dtype=F64)
x_sweep = torch.stack([torch.zeros_like(x2_sweep), x2_sweep], dim=-1)  # (41, 2)
log_px_sweep = toy.log_marginal(x_sweep)
branches = {"straddling q (mean held at 0)": (0.0, False),
            "one-mode q (start at m = 1.5)": (1.5, True)}
branch_gaps = {}
for name, (m0, learn_mean) in branches.items():
    fitted = fit_gaussian_q(toy, x_sweep, m0, steps=600, learn_mean=learn_mean)
    branch_gaps[name] = log_px_sweep - gaussian_q_elbo(toy, x_sweep, *fitted)
sweep_gap = torch.minimum(*branch_gaps.values())
print(f"best Gaussian gap at x = (0, 3): {sweep_gap[-1]:.4f} nats; log 2 = {math.log(2):.4f}")
assert abs(sweep_gap[-1] - math.log(2)) < 0.01
assert sweep_gap[0] < 1e-3  # below the vertex: nearly Gaussian

fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(x2_sweep, sweep_gap, color=GAP_COLOR, lw=4, alpha=0.35, label="best Gaussian q")
for (name, gaps), style in zip(branch_gaps.items(), ["--", "-"]):
    ax.plot(x2_sweep, gaps, color=COLORS["proposal"], ls=style, lw=1.5, label=name)
ax.axhline(math.log(2), color=COLORS["exact"], ls="--", lw=1.2, label="log 2")
ax.set(yscale="log", ylim=(1e-5, 50), xlabel="x₂   (x₁ = 0)",
       ylabel="gap  log p(x) − max ELBO  [nats]",
       title="The gap the Gaussian family cannot close, along x = (0, x₂)")
ax.legend(loc="lower right", fontsize=8)
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Learning $\theta$: EM versus joint gradient ascent
#
# With many data points $x_1,\dots,x_N$ and one $q_n$ each, the identity gives for the whole data
# set
#
# $$
# \ell(\theta) = \sum_n \log p(x_n;\theta)
#   = \underbrace{\sum_n \mathrm{ELBO}(\theta, q_n)}_{\mathcal{L}(\theta, q)}
#   + \sum_n \mathrm{KL}\big(q_n\,\|\,p(z\mid x_n;\theta)\big).
# $$
#
# **EM** (Dempster, Laird & Rubin, 1977) is coordinate ascent on $\mathcal{L}$:
#
# - **E-step**: $q_n \leftarrow p(z\mid x_n;\theta_t)$, the exact posterior. Every KL is 0, so
#   $\mathcal{L} = \ell(\theta_t)$.
# - **M-step**: $\theta_{t+1} \leftarrow \arg\max_\theta \mathcal{L}(\theta, q)$ with $q$ held
#   fixed.
#
# Then
# $\ell(\theta_{t+1}) = \mathcal{L}(\theta_{t+1}, q) + \sum_n\mathrm{KL} \ge \mathcal{L}(\theta_{t+1}, q) \ge \mathcal{L}(\theta_t, q) = \ell(\theta_t)$:
# **the log-likelihood never decreases**.
#
# For probabilistic PCA the M-step is in closed form. Fix $b = \bar x$ (the maximum-likelihood
# offset, for any $W$ and $s$), write $\tilde x_n = x_n - \bar x$, and let the E-step provide
# $\mathbb{E}[z_n] = \mu_{\star n}$ and
# $\mathbb{E}[z_n z_n^\top] = \Sigma_\star + \mu_{\star n}\mu_{\star n}^\top$. Setting the gradient
# of
# $\mathcal{L} = -\tfrac{1}{2s^2}\sum_n \mathbb{E}\|\tilde x_n - W z_n\|^2 - \tfrac{ND}{2}\log(2\pi s^2) + \text{const}$
# to zero:
#
# $$
# W_{t+1} = \Big(\sum_n \tilde x_n \mu_{\star n}^\top\Big)\Big(\sum_n \mathbb{E}[z_n
# z_n^\top]\Big)^{-1},
# \qquad
# s^2_{t+1} = \frac{1}{ND}\sum_n \Big(\|\tilde x_n\|^2 - 2\mu_{\star n}^\top W_{t+1}^\top\tilde x_n
#   + \operatorname{tr}\big(W_{t+1}^\top W_{t+1}\,\mathbb{E}[z_n z_n^\top]\big)\Big).
# $$
#
# **Joint gradient ascent** climbs $\mathcal{L}$ in $(\theta, q)$ at once, with a *diagonal* $q_n$
# per point: what a VAE does, except that a VAE replaces the $q_n$ by an encoder (section 8).
#
# **The reference.** Tipping & Bishop (1999) give the maximum-likelihood solution in closed form:
# with $\lambda_1 \ge \dots \ge \lambda_D$ the eigenvalues of the sample covariance and $U_d$ the
# top $d$ eigenvectors, $s^2_{\mathrm{ML}} = \frac{1}{D-d}\sum_{i>d}\lambda_i$ and
# $W_{\mathrm{ML}} = U_d(\mathrm{diag}(\lambda_{1..d}) - s^2_{\mathrm{ML}} I)^{1/2}$ (up to a
# rotation).

# %%
W_true = torch.tensor([[2.0, 0.0], [1.0, 1.5], [0.5, -1.0], [0.0, 1.0], [1.0, 0.5]], dtype=F64)
true_model = LinearGaussian(W_true, torch.tensor([1.0, 0.0, -1.0, 0.5, 0.0], dtype=F64), 0.5)
data, _ = true_model.sample(300, generator=generator)  # (N, D) = (300, 5)
N, D, d = data.shape[0], data.shape[1], 2
x_bar = data.mean(0)
centered = data - x_bar  # x̃_n, (N, D)

eigenvalues, eigenvectors = torch.linalg.eigh(centered.T @ centered / N)  # ascending
eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)  # λ_1 ≥ ... ≥ λ_D
s2_ml = eigenvalues[d:].mean()
W_ml = eigenvectors[:, :d] * (eigenvalues[:d] - s2_ml).sqrt()
loglik_ml = LinearGaussian(W_ml, x_bar, s2_ml.sqrt().item()).log_marginal(data).mean().item()


def average_loglik(W, s2):
    """ℓ(θ)/N, exactly (chapter 1): the mean of log N(x_n; x̄, W Wᵀ + s² I)."""
    return LinearGaussian(W, x_bar, math.sqrt(s2)).log_marginal(data).mean().item()


# %%
def em_step(W, s2):
    """One E-step (exact posteriors) and one M-step (closed form) for probabilistic PCA."""
    model = LinearGaussian(W, x_bar, math.sqrt(s2))
    post_means, post_cov = model.posterior_parameters(data)  # μ⋆_n (N, d), Σ⋆ (d, d)
    # The E-step closes every gap: with q = p(z|x), even a one-sample ELBO is log p(x) (chapter 3).
    exact_q = model.posterior(data)
    gap = model.log_marginal(data) - elbo(model, data, exact_q, 1, generator)
    assert gap.abs().max() < 1e-10
    second_moment = N * post_cov + post_means.T @ post_means  # Σ_n E[z_n z_nᵀ], (d, d)
    W_new = (centered.T @ post_means) @ torch.linalg.inv(second_moment)  # (D, d)
    s2_new = (centered.square().sum() - 2 * (post_means * (centered @ W_new)).sum()
              + torch.trace(W_new.T @ W_new @ second_moment)) / (N * D)
    return W_new, s2_new.item()


W_init = 0.1 * torch.randn(D, d, dtype=F64, generator=generator)
W, s2 = W_init.clone(), 1.0
em_trace = []
for _ in range(150):
    em_trace.append(average_loglik(W, s2))
    W, s2 = em_step(W, s2)
em_trace = np.array(em_trace)
print(f"EM: ℓ/N from {em_trace[0]:.4f} to {em_trace[-1]:.10f}; maximum likelihood {loglik_ml:.10f}")
assert np.diff(em_trace).min() > -1e-12  # monotone, up to rounding
assert abs(em_trace[-1] - loglik_ml) < 1e-8  # EM reaches the maximum likelihood

# %%
def ppca_elbo(W, log_s2, mean, logvar):
    """Section 2's closed-form ELBO, with θ = (W, log s²) as tensors to differentiate (b = x̄):
    (N,).
    """
    residual = centered - mean @ W.T  # x̃ - W m, (N, D)
    spread = logvar.exp() @ W.square().sum(dim=0)  # Σ_j v_j ‖w_j‖², (N,)
    constant = -0.5 * D * (math.log(2 * math.pi) + log_s2)  # -D/2 log(2π s²)
    expected_log_lik = constant - (residual.square().sum(-1) + spread) / (2 * log_s2.exp())
    return expected_log_lik - gaussian_kl(mean, logvar)


W_joint = W_init.clone().requires_grad_(True)
log_s2 = torch.zeros((), dtype=F64, requires_grad=True)  # s² = 1 at the start, as for EM
q_means = torch.zeros(N, d, dtype=F64, requires_grad=True)  # one diagonal q_n per data point
q_logvars = torch.zeros(N, d, dtype=F64, requires_grad=True)
initial_model = LinearGaussian(W_init, x_bar, 1.0)  # same formula as section 2's closed_form_elbo:
assert torch.allclose(ppca_elbo(W_joint, log_s2, q_means, q_logvars),
                      closed_form_elbo(initial_model, data, q_means, q_logvars), rtol=1e-12)
optimizer = torch.optim.Adam([W_joint, log_s2, q_means, q_logvars], lr=0.05)
joint_trace, joint_elbo_trace = [], []
for _ in range(600):
    optimizer.zero_grad()
    objective = ppca_elbo(W_joint, log_s2, q_means, q_logvars).mean()  # 𝓛(θ, q)/N
    joint_elbo_trace.append(objective.item())
    joint_trace.append(average_loglik(W_joint.detach(), log_s2.exp().item()))
    (-objective).backward()
    optimizer.step()
joint_trace, joint_elbo_trace = np.array(joint_trace), np.array(joint_elbo_trace)
column_cosine = torch.nn.functional.cosine_similarity(W_joint[:, 0], W_joint[:, 1], dim=0).item()
print(f"joint ascent: ℓ/N = {joint_trace[-1]:.6f} (ML {loglik_ml:.6f}), "
      f"ELBO/N = {joint_elbo_trace[-1]:.6f}, cos(w₁, w₂) = {column_cosine:+.4f}")
assert loglik_ml - joint_trace[-1] < 1e-3
assert joint_trace[-1] - joint_elbo_trace[-1] < 1e-2  # the mean-field gap closed ...
assert abs(column_cosine) < 0.05  # ... because W's columns became orthogonal (section 5's rotation)

# %%
fig, (ax_left, ax_right) = plt.subplots(1, 2, figsize=(12, 4))
iterations_em, iterations_joint = np.arange(len(em_trace)), np.arange(len(joint_trace))
ax_left.plot(iterations_em + 1, em_trace, color=COLORS["posterior"], lw=2, label="EM: ℓ(θ)/N")
ax_left.plot(iterations_joint + 1, joint_trace, color=COLORS["elbo"], lw=2,
             label="joint ascent: ℓ(θ)/N")
ax_left.plot(iterations_joint + 1, joint_elbo_trace, color=COLORS["elbo"], lw=1.2, ls=":",
             label="joint ascent: ELBO/N")
reference_line(ax_left, loglik_ml, label="maximum likelihood (closed form)")
ax_left.set(xscale="log", ylim=(em_trace[0] - 0.5, loglik_ml + 0.4), xlabel="iteration (log scale)",
            ylabel="nats per data point", title="Log-likelihood traces")
ax_left.legend(loc="lower right", fontsize=8)
ax_right.plot(iterations_em, np.maximum(loglik_ml - em_trace, 1e-16), color=COLORS["posterior"],
              lw=2, label="EM")
ax_right.plot(iterations_joint, np.maximum(loglik_ml - joint_trace, 1e-16), color=COLORS["elbo"],
              lw=2, label="joint gradient ascent (Adam)")
ax_right.set(yscale="log", xlabel="iteration", ylabel="ℓ_ML/N − ℓ(θ)/N  [nats]",
             title="Distance to the maximum likelihood")
ax_right.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# EM climbs monotonically to the closed-form maximum likelihood (to $10^{-8}$ nats and beyond), each
# iteration an exact E-step and an exact M-step. Joint ascent needs many more (much cheaper) steps
# and its log-likelihood is not guaranteed to rise at every step, because it follows the ELBO, not
# $\ell$. It still reaches the maximum likelihood here, for a reason worth remembering: **the model
# adapts to the approximation**. The mean-field gap penalizes correlated posteriors, and the
# rotation freedom of section 5 lets $\theta$ remove the correlation at no cost in $\ell$ (the
# learned columns of $W$ are orthogonal). In models without such a free symmetry, the same pressure
# *biases* $\theta$ towards models whose posteriors are easy to approximate (Turner & Sahani, 2011).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 8. Amortized inference and the amortization gap
#
# Sections 4–7 fitted **one $q_n$ per data point**: $2d$ numbers each, and an optimization for every
# new $x$. A VAE instead trains an **encoder** $q(z\mid x;\phi)$, one network that maps any $x$ to
# its $q$. That is *amortized* inference: the cost of fitting is paid once, in training. The price
# is a second gap (Cremer, Li & Duvenaud, 2018). With $q^\star_x$ the best member of the family for
# this $x$,
#
# $$
# \underbrace{\log p(x) - \mathrm{ELBO}\big(q(\cdot\mid x;\phi)\big)}_{\text{total gap} \;=\; \mathrm{KL}(q_\phi\,\|\,p(z\mid x))}
# =
# \underbrace{\log p(x) - \mathrm{ELBO}(q^\star_x)}_{\text{approximation gap}\ \ge 0\text{: the family}}
# +
# \underbrace{\mathrm{ELBO}(q^\star_x) - \mathrm{ELBO}\big(q(\cdot\mid x;\phi)\big)}_{\text{amortization gap}\ \ge 0\text{: the encoder}}.
# $$
#
# A better encoder (bigger, better trained) can only shrink the second term; only a richer family
# shrinks the first.
#
# **Linear-Gaussian, $d = 1$: both gaps vanish.** The posterior is
# $\mathcal{N}(\Sigma_\star w^\top(x-b)/s^2, \Sigma_\star)$: its mean is an affine function of $x$
# and its variance a constant, so an affine encoder $x \mapsto (m, \log v)$ contains the exact
# answer, and the family contains the posterior.

# %%
data_1d, _ = model_1d.sample(200, generator=generator)  # (200, 2)
torch.manual_seed(0)
affine_encoder = nn.Linear(2, 2).double()  # x -> (m, log v)
optimizer = torch.optim.Adam(affine_encoder.parameters(), lr=0.05)
for _ in range(500):
    optimizer.zero_grad()
    mean, logvar = affine_encoder(data_1d).split(1, dim=-1)  # (N, 1) each
    (-closed_form_elbo(model_1d, data_1d, mean, logvar).mean()).backward()
    optimizer.step()
with torch.no_grad():
    mean, logvar = affine_encoder(data_1d).split(1, dim=-1)
    encoder_gap_1d = model_1d.log_marginal(data_1d) - closed_form_elbo(
        model_1d, data_1d, mean, logvar
    )
exact_weight = post_cov_1d[0, 0] * model_1d.W[:, 0] / model_1d.noise_std**2  # Σ⋆ wᵀ / s²
learned_weight = affine_encoder.weight[0].detach()
print(
    f"affine encoder: mean amortization gap {encoder_gap_1d.mean():.1e} nats; learned mean "
    f"weights {learned_weight.numpy().round(4)}, exact Σ⋆ wᵀ/s² = {exact_weight.numpy().round(4)}"
)
assert encoder_gap_1d.max() < 1e-4
assert torch.allclose(learned_weight, exact_weight, atol=1e-3)

# %% [markdown]
# **The nonlinear toy: both gaps, measured.** 256 points drawn from the toy. For each we compute
# $\log p(x)$ (quadrature), the best Gaussian $q^\star_x$ (gradient ascent from several starts,
# including each encoder's own output), and the ELBO of three Gaussian encoders
# $x \mapsto (m, \log\sigma^2)$ trained on the average exact ELBO: a **tiny** network (2 hidden
# units), a 32-unit network **under-trained** (60 steps), and the same network **trained** (1500
# steps).

# %%
data_toy, _ = toy.sample(256, generator=generator)  # (256, 2)
log_px_toy = toy.log_marginal(data_toy)


def train_encoder(hidden, steps, lr=0.01):
    """A Gaussian encoder x -> (m, log σ²), one tanh hidden layer, trained on the mean exact ELBO.
    """
    torch.manual_seed(0)
    encoder = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 2)).double()
    optimizer = torch.optim.Adam(encoder.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        mean, logvar = encoder(data_toy).split(1, dim=-1)  # (N, 1) each
        (-gaussian_q_elbo(toy, data_toy, mean, logvar).mean()).backward()
        optimizer.step()
    return encoder


encoders = {"tiny (2 units)": train_encoder(2, 1500),
            "under-trained (32 units, 60 steps)": train_encoder(32, 60),
            "trained (32 units, 1500 steps)": train_encoder(32, 1500)}
with torch.no_grad():  # each encoder's q for every point: (mean (N, 1), logvar (N, 1))
    encoder_qs = {name: encoder(data_toy).split(1, dim=-1) for name, encoder in encoders.items()}
encoder_elbos = {name: gaussian_q_elbo(toy, data_toy, *q) for name, q in encoder_qs.items()}

# q*: the best of three fixed starts and a warm start from each encoder's output.
starts = [(m0, -1.0) for m0 in (-1.5, 0.0, 1.5)] + list(encoder_qs.values())
_, _, best_elbo_toy = best_gaussian_q(toy, data_toy, *zip(*starts))
approximation_gap = log_px_toy - best_elbo_toy  # (N,), the same for every encoder


# %%
print("mean over 256 points, nats per point")
print(f"{'encoder':<36}{'total gap':>10}{'approx.':>10}{'amort.':>10}")
amortization_gaps = {}
for name, encoder_elbo in encoder_elbos.items():
    amortization_gaps[name] = best_elbo_toy - encoder_elbo
    total = log_px_toy - encoder_elbo
    # The total gap is KL(q ‖ p(z|x)): check it against that KL computed on the grid, independently
    # of the Gauss–Hermite ELBO and of log p(x) (the split into two gaps is exact by construction).
    kl_to_posterior = grid_kl_to_posterior(toy, data_toy, *encoder_qs[name])
    assert (total - kl_to_posterior).abs().max() < 1e-6, (total - kl_to_posterior).abs().max()
    print(f"{name:<36}{total.mean():10.4f}{approximation_gap.mean():10.4f}"
          f"{amortization_gaps[name].mean():10.4f}")
assert approximation_gap.min() > -1e-9 and approximation_gap.mean() > 1e-3
median_approximation = approximation_gap.median().item()
print(f"approximation gap: median {median_approximation:.3f} nats, mean "
      f"{approximation_gap.mean():.3f}")
assert 0.003 < median_approximation < 0.03  # "about 0.01 nats" in the text below
# q* is at least as good as every encoder, point by point (up to the optimizer's accuracy):
assert min(gap.min() for gap in amortization_gaps.values()) > -1e-6
mean_amortization = {name: gap.mean().item() for name, gap in amortization_gaps.items()}
trained_name = "trained (32 units, 1500 steps)"
assert all(mean_amortization[trained_name] < value
           for name, value in mean_amortization.items() if name != trained_name)
tiny_gap = amortization_gaps["tiny (2 units)"]
left_arm, right_arm = tiny_gap[data_toy[:, 0] < -1].mean(), tiny_gap[data_toy[:, 0] > 1].mean()
print(f"tiny encoder's mean amortization gap: {left_arm:.2f} nats on the left arm (x₁ < -1), "
      f"{right_arm:.2f} on the right arm (x₁ > 1)")

# %%
fig, (ax_map, ax_bars) = plt.subplots(1, 2, figsize=(12, 4.3),
                                      gridspec_kw={"width_ratios": [1.2, 1]})
tiny_name = "tiny (2 units)"
points = ax_map.scatter(data_toy[:, 0], data_toy[:, 1], c=tiny_gap.clamp_min(1e-4), s=16,
                        norm=LogNorm(vmin=1e-3, vmax=tiny_gap.max()), cmap="viridis")
fig.colorbar(points, ax=ax_map, label="amortization gap [nats, log scale]")
curve = torch.linspace(-2.6, 2.6, 200, dtype=F64)[:, None]
ax_map.plot(*toy.decode(curve).T, color=COLORS["exact"], lw=1, ls="--",
            label="the curve f(z) = (z, z²)")
ax_map.set(xlabel="x₁", ylabel="x₂", title=f"Where the {tiny_name} encoder loses")
ax_map.legend(loc="upper center")

names = list(encoders)
positions = np.arange(len(names))
mean_approximation = approximation_gap.mean().item()
ax_bars.bar(positions - 0.2, [mean_approximation] * len(names), width=0.4,
            color=COLORS["posterior"], label="approximation gap (the Gaussian family)")
ax_bars.bar(positions + 0.2, [mean_amortization[n] for n in names], width=0.4,
            color=COLORS["proposal"], label="amortization gap (the encoder)")
for position, name in zip(positions, names):
    for shift, value in [(-0.2, mean_approximation), (0.2, mean_amortization[name])]:
        ax_bars.text(position + shift, value * 1.15, f"{value:.3f}", ha="center", fontsize=8)
ax_bars.set(yscale="log", xticks=positions, ylim=(None, 40),
            ylabel="mean gap [nats per point, log scale]",
            title="log p(x) − ELBO = approximation + amortization")
ax_bars.set_xticklabels([n.replace(" (", "\n(") for n in names], fontsize=8)
ax_bars.legend(fontsize=8, loc="upper right")
fig.tight_layout()
plt.show()

# %% [markdown]
# The approximation gap is the same for every encoder: it belongs to the Gaussian family and the
# model. It is small for most points (median about 0.01 nats) and largest just above the vertex
# ($|x_1| < 0.4$, $x_2 \approx 0.5$–$0.8$), where the posteriors are lopsided or bimodal. The
# amortization gap is the encoder's own doing. The tiny network, with two tanh units, fits one arm
# of the parabola far worse than the other (left panel, and the numbers printed above); the
# under-trained one has not yet learned the map. Training a big enough encoder brings its total gap
# close to the approximation gap (its amortization gap close to zero), but never below it: **no
# encoder beats the best $q$ per point**.

# %% [markdown] slideshow={"slide_type": "slide"}
# > **Classic mistakes**
# >
# > - **Flipping the KL.** The gap is $\mathrm{KL}(q(z\mid x)\,\|\,p(z\mid x))$, averaged under $q$.
# >   The other direction, $\mathrm{KL}(p\,\|\,q)$, is minimized by matching the posterior's
# >   moments, a different (and, for the ELBO, worse) $q$: section 6 measured it.
# > - **Believing that optimizing $q$ improves the model.** For fixed $\theta$, $\log p(x)$ is a
# >   constant: raising the ELBO over $q$ only tightens the bound. Only a change of $\theta$ moves
# >   $\log p(x)$.
# > - **Reading a higher ELBO as a higher likelihood.** Across different $\theta$, the ELBO can rise
# >   because the gap shrank while $\log p(x)$ stayed put (the rotation of sections 5 and 7) or
# >   fell. Compare models by $\log p(x)$ or a tight estimate of it (importance sampling, chapter
# >   3), not by the ELBO.
# > - **Expecting a diagonal $q$ to reach a correlated posterior.** However long you optimize, mean
# >   field leaves $-\tfrac12\log(1-\rho^2)$ and under-estimates the marginal variances.
# > - **Blaming the encoder for the family's gap (or the reverse).** Measure both: fit $q^\star$ per
# >   point. A bigger encoder cannot close the approximation gap; a richer family cannot fix an
# >   under-trained encoder.
# > - **Checking an identity with Monte Carlo and float32.** Sampling noise and single precision
# >   hide errors of $10^{-3}$. Exact identities deserve closed forms in float64, checked to
# >   $10^{-10}$.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - $\log p(x) = \mathrm{ELBO}(q) + \mathrm{KL}(q(z\mid x)\,\|\,p(z\mid x))$ for **every** $q$: an
#   identity, checked here to rounding error (asserted below $10^{-10}$) on the linear-Gaussian
#   model and to quadrature accuracy (asserted below $10^{-8}$) on the nonlinear toy.
# - For fixed $\theta$, maximizing the ELBO over $q$ is minimizing the KL to the posterior. When the
#   family contains the posterior, the gap closes to machine precision (closed-form or "sticking the
#   landing" gradients; plain reparameterized SGD stalls at a noise floor).
# - When the family does not contain it, a gap remains: $-\tfrac12\log(1-\rho^2)$ for mean field on
#   a correlated Gaussian, up to $\log 2$ for a Gaussian on a bimodal posterior.
#   $\mathrm{KL}(q\,\|\,p)$ is mode-seeking.
# - EM alternates an exact E-step (gap $= 0$) with an M-step, and its log-likelihood never
#   decreases; joint gradient ascent follows the ELBO and lets the model adapt to the approximation.
# - An encoder adds an amortization gap on top of the approximation gap. Both are measurable: a
#   better encoder shrinks only the amortization gap, a richer family only the approximation gap.
#
# **References.** Dempster, Laird & Rubin (1977), *Maximum likelihood from incomplete data via the
# EM algorithm*; Tipping & Bishop (1999), *Probabilistic principal component analysis*; Turner &
# Sahani (2011), *Two problems with variational expectation maximisation for time-series models*;
# Roeder, Wu & Duvenaud (2017), *Sticking the landing*; Cremer, Li & Duvenaud (2018), *Inference
# suboptimality in variational autoencoders*.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# **Exercise 1 — the KL between two 1-D Gaussians.** Derive
# $\mathrm{KL}(\mathcal{N}(\mu_q, \sigma_q^2)\,\|\,\mathcal{N}(\mu_p, \sigma_p^2))$ from
# $\mathbb{E}_q[\log q(z) - \log p(z)]$ (you need
# $\mathbb{E}_q[(z - \mu_p)^2] = \sigma_q^2 + (\mu_q - \mu_p)^2$) and write it for tensors of shape
# $(N,)$. The arguments are **variances**. The check then uses your function to close
# $\log p(x) = \mathrm{ELBO}(q) + \mathrm{KL}(q\,\|\,p(z\mid x))$ on a 1-D linear-Gaussian model.

# %% tags=["solution"]
def kl_normal_1d(mean_q, var_q, mean_p, var_p):
    """KL(N(mean_q, var_q) ‖ N(mean_p, var_p)), elementwise over tensors of shape (N,)."""
    return 0.5 * (var_q / var_p + (mean_q - mean_p) ** 2 / var_p - 1 - torch.log(var_q / var_p))


# %%
check_kl_normal_1d(kl_normal_1d);

# %% [markdown]
# **Exercise 2 — the optimal variance of $q$.** Take $z \sim \mathcal{N}(0, 1)$ and
# $x\mid z \sim \mathcal{N}(wz + b,\, s^2 I_D)$ with $w \in \mathbb{R}^D$, and
# $q = \mathcal{N}(m, v)$. Using the closed-form ELBO of section 2, keep only the terms that depend
# on $v$, set the derivative to zero and solve for $v^\star$. Does it depend on $x$? Compare it with
# the exact posterior variance. Write `optimal_q_variance(w, noise_std)` (with `w` a tensor of shape
# $(D,)$) returning $v^\star$.

# %% tags=["solution"]
def optimal_q_variance(w, noise_std):
    """The ELBO-maximizing variance v of a Gaussian q(z|x), for weights w (D,) and noise std s ->
    float.
    """
    # ELBO(v) = -v ‖w‖² / (2 s²) - ½ (v - log v) + const  =>  -‖w‖²/(2s²) - ½ + 1/(2v) = 0
    return 1.0 / (1.0 + (w**2).sum() / noise_std**2)


# %%
check_optimal_q_variance(optimal_q_variance);

# %% [markdown]
# **Exercise 3 — the mean-field gap.** A 2-D Gaussian posterior has unit variances and correlation
# $\rho$. Starting from section 5's $\tfrac12[\sum_j \log\Lambda_{jj} - \log\det\Lambda]$, compute
# the gap left by the best diagonal $q$ as a function of $\rho$ (invert the $2\times 2$ covariance
# by hand). Then argue that the answer does not change when the variances are not 1. Write
# `mean_field_gap(rho)` for a float `rho`.

# %% tags=["solution"]
def mean_field_gap(rho):
    """The smallest KL from a diagonal Gaussian q to a 2-D Gaussian posterior with correlation rho.
    """
    # Λ = Σ⁻¹ = [[1, -ρ], [-ρ, 1]] / (1 - ρ²): Λ_jj = 1/(1 - ρ²), det Λ = 1/(1 - ρ²)
    return -0.5 * math.log(1 - rho**2)


# %%
check_mean_field_gap(mean_field_gap);
