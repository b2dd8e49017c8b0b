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
# # Chapter 10 — Tighter bounds and their price: training with the importance-weighted bound
#
# *Symbols: see the course's [notation page](../docs/notation.md).*
#
# Chapter 4 derived the importance-weighted bound
#
# $$
# \mathrm{ELBO} = \mathrm{IWAE}_1 \le \mathrm{IWAE}_K = \mathbb E_{z_{1:K}\sim q_\phi}\Big[\log
# \frac1K\sum_{k=1}^K w_k\Big] \le \log p_\theta(x),
# \qquad w_k = \frac{p_\theta(x, z_k)}{q_\phi(z_k\mid x)},
# $$
#
# and chapter 8 measured it on a trained VAE. If $\mathrm{IWAE}_K$ is a tighter bound, why not
# *train* on it (Burda, Grosse & Salakhutdinov, 2015)? This chapter answers with checked numbers:
#
# 1. **the gradient** of $\log\frac1K\sum_k w_k$ is a self-normalized average of the samples'
#    gradients; checked against autograd, and equal to chapter 7's ELBO gradient at $K = 1$;
# 2. **training on it** — on the linear-Gaussian model with a diagonal $q$, where the ELBO keeps a
#    mean-field gap, the decoder trained on $\mathrm{IWAE}_K$ gets closer to the maximum likelihood
#    as $K$ grows;
# 3. **the price** — the encoder's gradient signal fades: its signal-to-noise ratio falls like
#    $1/\sqrt K$ while the decoder's grows like $\sqrt K$ (Rainforth et al., 2018), measured against
#    the *exact* expected gradient of a toy model (exact to quadrature accuracy: two nested 1-D
#    quadratures, checked against closed forms to $10^{-8}$ and better);
# 4. **a fix** — the doubly reparameterized gradient (DReG; Tucker et al., 2019), derived, checked
#    unbiased against the exact expectation, with an encoder SNR that no longer falls;
# 5. **on MNIST** — the chapter 8 VAE trained three times from the same start: on the ELBO, on
#    $\mathrm{IWAE}_5$ with the plain gradient, on $\mathrm{IWAE}_5$ with DReG: test $\log p(x)$,
#    ELBO, the encoder's width and active units.
#
# The toy models run in float64 (exact math), the neural VAE in float32, all on the CPU.

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
from ipywidgets import Checkbox, SelectionSlider
from torch import nn

from vaelib.data import fixed_binarization, load_mnist_subset, to_unit_interval
from vaelib.device import seed_everything
from vaelib.estimators import elbo, iwae_bound, log_mean_exp
from vaelib.evaluate import evaluate
from vaelib.figures import COLORS, FigureExplorer, reference_line, static_figure, use_course_style
from vaelib.gaussian import LOG_2PI, DiagonalGaussian
from vaelib.montecarlo import assert_unbiased, generator
from vaelib.objectives import iwae_bound_1d, iwae_surrogate, self_normalized_weights
from vaelib.toy import LinearGaussian
from vaelib.train import train
from vaelib.vae import VAE, VAEConfig

use_course_style()
seed_everything(0)
torch.set_default_dtype(torch.float64)  # exact math for the toy models (the VAE sets float32)

EST_COLORS = {"plain": COLORS["naive"], "DReG": COLORS["importance"], "decoder": COLORS["elbo"]}



# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The gradient of the IWAE bound
#
# Draw $z_k = \mu_\phi(x) + \sigma_\phi(x)\odot\varepsilon_k$, $\varepsilon_k \sim \mathcal N(0, I)$
# (chapter 7), and write $\log w_k = \log p_\theta(x, z_k) - \log q_\phi(z_k\mid x)$. One draw of
# the bound is $\log \hat p_K = \log \frac1K \sum_k w_k$. Its gradient, by the chain rule through
# the logarithm and $\nabla w_k = w_k \nabla \log w_k$:
#
# $$
# \nabla_{\theta,\phi} \log \frac1K\sum_{k=1}^K w_k
# = \frac{\sum_k \nabla w_k}{\sum_j w_j}
# = \sum_{k=1}^K \tilde w_k\, \nabla_{\theta,\phi} \log w_k,
# \qquad \tilde w_k = \frac{w_k}{\sum_{j} w_j} = \operatorname{softmax}(\log w)_k .
# $$
#
# The ELBO's gradient averages the samples' gradients with equal weights $\frac1K$; the IWAE's
# weighs each by its **self-normalized importance weight** $\tilde w_k$ — the samples that explain
# $x$ well count more. At $K = 1$, $\tilde w_1 = 1$: the gradient *is* chapter 7's ELBO gradient,
# not merely equal in expectation. The $\tilde w_k$ are computed from $\log w$ by a softmax, never
# by exponentiating $w_k$ (which overflows; chapter 2).
#
# **The toy model** of this chapter: a linear-Gaussian model with a one-dimensional latent,
# $z \sim \mathcal N(0, 1)$, $x\mid z \sim \mathcal N(Wz + b, s^2 I_2)$ — decoder $\theta = (W, b)$,
# with $W \in \mathbb R^{2\times 1}$ the linear decoder's loadings of the notation page (a single
# column here; $w$ keeps its one meaning, the importance weight) — and
# $q_\phi(z\mid x) = \mathcal N(\mu, \sigma^2)$ with $\phi = (\mu, \log\sigma^2)$, for one data
# point $x$. Its parameters may carry a leading batch dimension, so that $R$ independent copies can
# give $R$ independent gradient estimates in one backward pass (sections 3 and 4).

# %%
class Toy:
    """z ~ N(0, 1), x | z ~ N(W z + b, s² I_D); W, b: (D,) or one copy per data point (N, D)."""

    def __init__(self, W, b, noise_std=0.8):
        self.W, self.b, self.noise_std = W, b, noise_std

    def log_joint(self, x, z):
        """log p(z) + log p(x|z): x (N, D), z (K, N, 1) -> (K, N)."""
        sq = (x - z * self.W - self.b).square().sum(-1)  # |x - Wz - b|², (K, N)
        D, s = x.shape[-1], self.noise_std
        return -0.5 * (z.square() + LOG_2PI).sum(-1) - 0.5 * (
            sq / s**2 + D * math.log(2 * math.pi * s**2)
        )


W_TOY, B_TOY = torch.tensor([1.5, -0.7]), torch.tensor([0.3, -0.2])
X_TOY = torch.tensor([[2.0, -1.0]])  # the one data point, (1, D)
MU_TOY, LOGVAR_TOY = 0.2, -1.0  # where we look at q's gradients (not the optimum)
truth = LinearGaussian(W_TOY[:, None], B_TOY, 0.8)
z_check = torch.randn(4, 1, 1, generator=generator(0))
assert torch.allclose(
    Toy(W_TOY, B_TOY).log_joint(X_TOY, z_check), truth.log_joint(X_TOY, z_check), rtol=1e-12
)


def toy_parameters(copies=None):
    """θ = (W, b) and φ = (μ, log σ²), requiring gradients; `copies` = R gives each a leading (R,).
    """
    shape = () if copies is None else (copies,)
    return [
        W_TOY.expand(*shape, 2).clone().requires_grad_(True),
        B_TOY.expand(*shape, 2).clone().requires_grad_(True),
        torch.full((*shape, 1), MU_TOY).requires_grad_(True),
        torch.full((*shape, 1), LOGVAR_TOY).requires_grad_(True),
    ]


# %% [markdown]
# The formula, straight from the equation: $K$ separate autograd calls give $\nabla \log w_k$,
# weighted by the softmax of the $\log w_k$ — against autograd of $\log\frac1K\sum_k w_k$ itself,
# and against `vaelib.objectives.iwae_surrogate` (a tensor whose value is $\log\hat p_K$ and whose
# gradient is the estimator), drawing the same $\varepsilon$ from the same generator.

# %%
K = 8
W, b, mu, logvar = params = toy_parameters()
eps = torch.randn(K, 1, 1, generator=generator(1))  # ε_k, (K, N=1, d=1)
z = mu + torch.exp(0.5 * logvar) * eps  # reparameterized samples, (K, 1, 1)
log_w = Toy(W, b).log_joint(X_TOY, z) - DiagonalGaussian(mu, logvar).log_prob(z)  # (K, 1)
weights = torch.softmax(log_w.detach(), dim=0)  # w̃_k
by_formula = [torch.zeros_like(p) for p in params]
for k in range(K):  # Σ_k w̃_k ∇ log w_k, one sample at a time
    for total, grad in zip(
        by_formula, torch.autograd.grad(log_w[k].sum(), params, retain_graph=True)
    ):
        total += weights[k, 0] * grad
by_autograd = torch.autograd.grad(log_mean_exp(log_w, dim=0).sum(), params)
surrogate = iwae_surrogate(
    Toy(W, b), X_TOY, DiagonalGaussian(mu, logvar), K, generator=generator(1)
)
by_vaelib = torch.autograd.grad(surrogate.sum(), params)
for name, a, c, v in zip(["W", "b", "μ", "log σ²"], by_formula, by_autograd, by_vaelib):
    assert torch.allclose(a, c, rtol=1e-12) and torch.allclose(c, v, rtol=1e-12), name
    print(f"∂/∂{name:6s} Σ w̃ ∇log w = {a.numpy().round(6)}   autograd = {c.numpy().round(6)}")
assert torch.allclose(self_normalized_weights(log_w), weights, rtol=1e-14)
assert torch.isclose(surrogate, log_mean_exp(log_w, dim=0), rtol=1e-14).all()  # its value: log p̂_K
print(f"self-normalized weights w̃ = {weights[:, 0].numpy().round(3)}")

# K = 1 gives chapter 7's reparameterized ELBO gradient exactly (same ε, vaelib.estimators.elbo):
one = torch.autograd.grad(iwae_surrogate(Toy(W, b), X_TOY, DiagonalGaussian(mu, logvar), 1,
                                         generator=generator(2)).sum(), params)
ch7 = torch.autograd.grad(
    elbo(Toy(W, b), X_TOY, DiagonalGaussian(mu, logvar), 1, generator=generator(2)).sum(), params
)
assert all(torch.equal(a, c) for a, c in zip(one, ch7))
print("K = 1: the IWAE gradient equals the ELBO gradient bit for bit")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Training on IWAE$_K$: a tighter bound pulls the decoder closer to the maximum likelihood
#
# In chapter 7 a linear VAE with a diagonal $q$ trained on the ELBO reached the maximum likelihood
# of probabilistic PCA exactly. That relied on a symmetry: any rotation $WR$ of the loadings gives
# the same $p_\theta(x)$, and the ELBO picks the rotation whose posterior covariance
# $(I + W^\top W/s^2)^{-1}$ is diagonal — the one a diagonal $q$ can match, so the mean-field gap of
# chapter 5 closes for free.
#
# Take that freedom away, as factor analysis does to make its loadings identifiable: constrain $W$
# to be **lower triangular** ($W_{12} = 0$ for $d = 2$). Every covariance $WW^\top$ is still
# reachable (so the maximum likelihood is unchanged: the closed form of chapter 7), but now the
# maximizing $W$ is unique up to signs, and its posterior is **correlated**. A diagonal $q$ then
# keeps a gap at the maximum likelihood, and the ELBO,
# $\log p_\theta(x) - \mathrm{KL}(q\,\Vert\,p_\theta(z\mid x))$, prefers a decoder with a smaller
# gap over the one with the largest $\log p_\theta(x)$: **the ELBO-trained θ stays short of the
# maximum**. $\mathrm{IWAE}_K$ penalizes the mismatch less — its gap
# $\log p - \mathrm{IWAE}_K \approx \frac{1}{2K}\operatorname{Var}_q[w/p(x)] = \frac{\rho}{2K}$
# (chapter 4, with $\rho$ the relative variance of one weight) shrinks with $K$ — so the decoder it
# trains should come closer.
#
# We fit $n = 100$ points, with an affine encoder
# $q_\phi(z\mid x) = \mathcal N(Ax + c, \operatorname{diag}\sigma^2)$ (chapter 7's linear VAE), by
# Adam on the full batch with the IWAE$_K$ gradient of section 1, for $K = 1, 4, 16, 64$, and
# measure the exact $\frac1n\log p_\theta(x)$ of the trained decoder against the exact maximum.

# %%
class TriangularLinearVAE(nn.Module):
    """Decoder p(x|z) = N(Lz + b, s² I) with L = W ⊙ (lower-triangular mask); q(z|x) = N(Ax + c,
    diag σ²).
    """

    def __init__(self, data_dim, latent_dim, seed=0):
        super().__init__()
        g = generator(seed)
        self.W = nn.Parameter(0.1 * torch.randn(data_dim, latent_dim, generator=g))  # (D, d)
        self.b = nn.Parameter(torch.zeros(data_dim))
        self.log_s = nn.Parameter(torch.tensor(0.0))
        self.A = nn.Parameter(0.1 * torch.randn(latent_dim, data_dim, generator=g))  # (d, D)
        self.c = nn.Parameter(torch.zeros(latent_dim))
        self.logvar = nn.Parameter(torch.zeros(latent_dim))  # shared log σ²
        self.register_buffer("mask", torch.ones(data_dim, latent_dim).tril())  # W_12 = 0

    def loadings(self):
        return self.W * self.mask  # L, lower triangular

    def posterior(self, x):
        """q(z|x) for x (N, D): a DiagonalGaussian over (N, d)."""
        mean = x @ self.A.T + self.c
        return DiagonalGaussian(mean, self.logvar.expand_as(mean))

    def log_joint(self, x, z):
        """log p(z) + log p(x|z): x (N, D), z (K, N, d) -> (K, N)."""
        sq = (x - z @ self.loadings().T - self.b).square().sum(-1)
        return -0.5 * (z.square() + LOG_2PI).sum(-1) - 0.5 * (
            sq * torch.exp(-2 * self.log_s) + x.shape[-1] * (LOG_2PI + 2 * self.log_s)
        )

    def decoder(self):
        """The decoder as vaelib's LinearGaussian (exact log p(x) and posterior)."""
        return LinearGaussian(self.loadings().detach(), self.b.detach(), self.log_s.exp().item())


# %%
# The data, its exact maximum log-likelihood per point (probabilistic PCA's closed form, chapter 7),
# and a check that the model's inline log p(x, z) is vaelib's.
D_LIN, d_LIN, n_LIN = 4, 2, 100
data_model = LinearGaussian(
    torch.tensor([[1.0, 0.0], [1.0, 0.5], [1.0, 0.5], [0.8, -0.3]]), None, 0.5
)
x_lin, _ = data_model.sample(n_LIN, generator=generator(31))  # (n, D)

x_bar = x_lin.mean(0)
# λ_1 ≥ ... ≥ λ_D
eigvals = torch.linalg.eigvalsh((x_lin - x_bar).T @ (x_lin - x_bar) / n_LIN).flip(0)
s2_ml = eigvals[d_LIN:].mean()
ll_ml = (
    -0.5 * (D_LIN * LOG_2PI + eigvals[:d_LIN].log().sum() + (D_LIN - d_LIN) * s2_ml.log() + D_LIN)
).item()

check = TriangularLinearVAE(D_LIN, d_LIN, seed=1)  # the inline log p(x, z) is vaelib's:
z_check = torch.randn(3, n_LIN, d_LIN, generator=generator(32))
assert torch.allclose(
    check.log_joint(x_lin, z_check), check.decoder().log_joint(x_lin, z_check), rtol=1e-12
)


# %%
def closed_form_elbo(vae, x):
    """E_q[log p(x, z)] + H[q] in closed form (Gaussian integrals): (N,)."""
    q = vae.posterior(x)
    m, v = q.mean, q.logvar.exp()  # (N, d) each
    L, s2 = vae.loadings(), torch.exp(2 * vae.log_s)
    # E_q|x - Lz - b|²
    sq = (x - m @ L.T - vae.b).square().sum(-1) + (v * L.square().sum(0)).sum(-1)
    return (-0.5 * (sq / s2 + x.shape[-1] * torch.log(2 * math.pi * s2))
            - 0.5 * (m.square() + v + LOG_2PI).sum(-1) + 0.5 * (1 + LOG_2PI + q.logvar).sum(-1))


# %% [markdown]
# One training step is one Adam step up the mean bound over the $n$ points, with section 1's
# gradient (reparameterized draws $z_k = \mu_\phi(x_i) + \sigma_\phi \odot \varepsilon_k$):
#
# $$
# \frac1n\sum_{i=1}^n \mathrm{IWAE}_K(x_i), \qquad
# \mathrm{IWAE}_K(x) = \log \frac1K \sum_{k=1}^K \frac{p_\theta(x, z_k)}{q_\phi(z_k\mid x)}.
# $$

# %%
def iwae_step(vae, x, K, optimizer, generator):
    """One Adam step on the loss −(1/n) Σ_i IWAE_K(x_i), x (n, D); its gradient is section 1's."""
    loss = -iwae_surrogate(vae, x, vae.posterior(x), K, generator=generator).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


# %%
# Train one decoder per K (400 steps, cosine learning rate), then measure it exactly.
trained = {}
for K in (1, 4, 16, 64):
    vae_lin = TriangularLinearVAE(D_LIN, d_LIN, seed=40)
    optimizer = torch.optim.Adam(vae_lin.parameters(), lr=0.05)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 400)
    gen = generator(41)
    for step in range(400):
        iwae_step(vae_lin, x_lin, K, optimizer, gen)
        schedule.step()
    dec = vae_lin.decoder()
    log_px = dec.log_marginal(x_lin)  # exact, (n,)
    _, post_cov = dec.posterior_parameters(x_lin)  # exact posterior covariance (I + LᵀL/s²)⁻¹
    with torch.no_grad():  # IWAE_K − log p(x): 20 independent K-sample draws per point, (20 n,)
        x_rep = x_lin.repeat(20, 1)
        shortfall = (iwae_bound(vae_lin, x_rep, vae_lin.posterior(x_rep), K, chunk_size=64,
                                generator=generator(42)) - log_px.repeat(20))
        elbo_exact = closed_form_elbo(vae_lin, x_lin).mean().item()
    precision = torch.linalg.inv(post_cov)  # Λ
    trained[K] = dict(
        log_px=log_px.mean().item(),
        elbo=elbo_exact,
        rho=(post_cov[0, 1] / post_cov.diagonal().prod().sqrt()).item(),
        bound_gap=shortfall.mean().item(),
        bound_se=(shortfall.std() / len(shortfall) ** 0.5).item(),
        # q's variances over the KL-optimal diagonal ones, 1/Λ_jj (chapter 5); 1: the
        # ELBO's q
        q_width=(vae_lin.logvar.detach().exp() * precision.diagonal()).numpy(),
    )

# %%
remaining = {K: ll_ml - t["log_px"] for K, t in trained.items()}
print(f"maximum log-likelihood per point (closed form): {ll_ml:.5f}")
for K, t in trained.items():
    print(f"trained on IWAE_{K:<3d} log p(x) = {t['log_px']:.5f}  remaining gap {remaining[K]:.1e} "
          f"nats  (IWAE_K − log p(x) = {t['bound_gap']:+.5f} ± {t['bound_se']:.5f}; posterior "
          f"correlation {t['rho']:+.2f}; q's variances × Λ_jj = {t['q_width'].round(2)})")
gaps = [remaining[K] for K in (1, 4, 16, 64)]
assert all(g >= -1e-9 for g in gaps)  # nobody beats the maximum likelihood
assert all(a > b for a, b in zip(gaps, gaps[1:]))  # the gap shrinks with every K
# "0.01 to 0.02 nats" (ELBO), "about 10⁻⁴" (K = 64)
assert 0.01 < gaps[0] < 0.02 and gaps[-1] < 2e-4
assert gaps[2] < gaps[1] / 8  # K = 4 -> 16: faster than 1/K (÷4), close to 1/K² (÷16)
# IWAE lets θ keep a correlated posterior
assert abs(trained[64]["rho"]) > 2 * abs(trained[1]["rho"])
assert trained[1]["elbo"] < trained[1]["log_px"]  # K = 1: the closed-form ELBO is a lower bound ...
# ... and IWAE_K, to 3 s.e.
assert all(t["bound_gap"] < 3 * t["bound_se"] for t in trained.values())
# the ELBO's q: the KL-optimal variances 1/Λ_jj
assert np.allclose(trained[1]["q_width"], 1, atol=0.05)
# IWAE's q: broader in every coordinate
assert all((trained[K]["q_width"] > 1.1).all() for K in (16, 64))

# %%
Ks_lin = np.array([1, 4, 16, 64])
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
axes[0].loglog(Ks_lin, gaps, "o-", color=COLORS["importance"], label="max log-lik − log p_θ(x) "
                                                                     "after training")
axes[0].loglog(Ks_lin, gaps[1] * (4 / Ks_lin)**2, ":", color=COLORS["prior"],
               label="∝ 1/K² (through K = 4)")
axes[0].loglog(Ks_lin, gaps[1] * (4 / Ks_lin), ":", color=COLORS["exact"], alpha=0.6,
               label="∝ 1/K (the bound's own gap)")
axes[0].set(
    xlabel="K (training objective IWAE_K)",
    ylabel="nats per data point",
    title="Remaining gap to the maximum likelihood",
)
axes[0].set_xticks(Ks_lin, [str(k) for k in Ks_lin])
axes[0].legend(fontsize=9)
axes[1].plot(Ks_lin, [abs(trained[K]["rho"]) for K in Ks_lin], "o-", color=COLORS["posterior"])
axes[1].set(xscale="log", xlabel="K", ylabel="|correlation| of p_θ(z | x)", title="The posterior "
                                                                                  "of the trained "
                                                                                  "decoder")
axes[1].set_xticks(Ks_lin, [str(k) for k in Ks_lin])
plt.tight_layout()
plt.show()

# %% [markdown]
# Left: the decoder trained on the ELBO ($K = 1$) stays between 0.01 and 0.02 nats per point below
# the maximum likelihood (asserted); the tighter bounds close that gap. Once $K$ is large enough for
# the asymptotics it falls like $1/K^2$, not like the bound's own gap $\rho/(2K)$ — from $K = 4$ to
# $16$ by more than 8× (asserted; $1/K$ would give 4×, $1/K^2$ 16×). The argument is one line: the
# maximum-likelihood $\theta_\star$ is a stationary point of $\log p_\theta(x)$, and
# $\mathrm{IWAE}_K = \log p_\theta(x) - \rho/(2K) + \dots$ (with $\rho$ depending on $\theta$ and
# $q$) moves the optimum away from it by $\delta\theta = O(1/K)$, which costs only
# $\log p_{\theta_\star} - \log p_{\theta_\star + \delta\theta} = -\frac12\delta\theta^\top\nabla^2\log p_{\theta_\star}\,\delta\theta = O(1/K^2)$:
# the first-order term vanishes at a maximum. At $K = 64$ the measured gap, about $10^{-4}$ nats
# (asserted below $2\cdot10^{-4}$), sits above the line: that is the accuracy of 400 stochastic Adam
# steps (a run of 1600 steps moves the $K = 16$ and $K = 64$ points by about that much), not the
# bound. Right: the mechanism — the ELBO bends $\theta$ towards a decoder whose posterior is less
# correlated (easier for a diagonal $q$), while the tighter bounds let it keep the correlated
# posterior that the data call for.
#
# **What the encoder fits.** The printout shows the other half. The ELBO's $q$ minimizes
# $\mathrm{KL}(q\,\Vert\,p_\theta(z\mid x))$, whose diagonal optimum has the variances
# $1/\Lambda_{jj}$ of chapter 5 (too narrow for a correlated posterior): the $K = 1$ run lands on
# them. $\mathrm{IWAE}_K$'s $q$ no longer minimizes that KL: for large $K$ it minimizes the bound's
# gap $\approx \rho/(2K)$, the relative variance of the weights, which punishes $q$ for missing
# posterior mass far more than for spreading too wide — so the trained $q$ is **broader** (asserted:
# more than 1.1 × the KL-optimal variances in every coordinate for $K = 16$ and $64$). Its ELBO is
# therefore lower than the best diagonal $q$ would give the same decoder: part of what an
# IWAE-trained model "loses" in ELBO is this choice of $q$.
#
# On this small model the effect is small in nats. On a VAE, where the posterior is far from
# Gaussian, letting the decoder keep a posterior that $q$ cannot match is one reason IWAE-trained
# decoders score better (Cremer, Li & Duvenaud, 2018, *Inference suboptimality in variational
# autoencoders*, show decoders adapting to their encoder's family); section 5 measures how much.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. The price: the encoder's gradient signal
#
# A gradient *estimate* is useful when its mean stands out from its noise. Rainforth et al. (2018)
# measure this by the **signal-to-noise ratio** of each parameter's estimate $g$,
#
# $$
# \mathrm{SNR} = \frac{\lvert \mathbb E[g] \rvert}{\operatorname{std}(g)},
# $$
#
# and show that for $\mathrm{IWAE}_K$, as $K$ grows, the decoder's SNR grows like $\sqrt K$ but the
# encoder's **falls like $1/\sqrt K$**: the expected encoder gradient vanishes like $1/K$ (for large
# $K$ the bound is $\log p(x) - \frac{1}{2K}\operatorname{Var}[w/p(x)]$, and only the small second
# term depends on $\phi$), while the noise of one estimate shrinks only like $1/\sqrt K$. A tighter
# bound gives the decoder a better signal and the encoder a worse one.
#
# ### The exact expectation, for every $K$
#
# To measure $\mathbb E[g]$ without Monte Carlo error we need $\nabla\mathrm{IWAE}_K$ exactly — here
# and below, "exact" means exact to quadrature accuracy: deterministic integrals whose error is
# checked against closed forms and is orders of magnitude below the Monte Carlo errors they are
# compared with. For $A > 0$, Frullani's integral
# $\log A = \int_0^\infty (e^{-t} - e^{-tA})\,\frac{dt}{t}$ turns the $K$-fold expectation into
# one-dimensional integrals: with $A = \frac1K\sum_k w_k / c$ (any constant $c$, we take
# $c \approx p(x)$ for scale) and independent $z_k$, $\mathbb E[e^{-tA}] = L(t/K)^K$ where
# $L(s) = \mathbb E_q[e^{-s\,w(z)/c}]$, so
#
# $$
# \mathrm{IWAE}_K = \log c + \int_{-\infty}^{\infty}\Big(e^{-e^u} - L\big(e^u / K\big)^K\Big)\,du
# \qquad (t = e^u).
# $$
#
# With a one-dimensional latent, $L$ is a one-dimensional integral over
# $z = \mu + \sigma\varepsilon$ (a trapezoid rule in $\varepsilon$): $\mathrm{IWAE}_K$ costs two
# nested 1-D quadratures for **any** $K$, and it is an ordinary differentiable function of $\theta$
# and $\phi$, so autograd gives $\nabla\mathrm{IWAE}_K$ — the exact expectation of every unbiased
# gradient estimator. `vaelib.objectives.iwae_bound_1d` implements it; we check it at both ends: at
# $K = 1$ against the closed-form ELBO, and for large $K$ against the asymptote
# $\log p(x) - \chi^2(p(z\mid x)\,\Vert\,q)/(2K)$, with the $\chi^2$-divergence
# $\mathbb E_q[(p(z\mid x)/q(z))^2] - 1$ of two Gaussians in closed form. It is an old friend:
# $p(z\mid x)/q(z) = w/p(x)$, so
# $\chi^2(p(z\mid x)\,\Vert\,q) = \mathbb E_q[w^2]/p(x)^2 - 1 = \kappa - 1 = \rho$, the relative
# variance of one weight (chapters 3–4), and the asymptote is chapter 4's $\log p(x) - \rho/(2K)$.

# %%
def exact_iwae(K, params):
    """IWAE_K of the toy at (W, b, μ, log σ²), exactly (quadrature): a differentiable scalar."""
    W, b, mu, logvar = params
    model = Toy(W, b)
    return iwae_bound_1d(
        lambda z: model.log_joint(X_TOY, z[:, None, None])[:, 0],
        mu.reshape(()),
        logvar.reshape(()),
        K,
    )


params = toy_parameters()
W, b, mu, logvar = params
var = logvar.exp()
sq = (X_TOY[0] - W * mu - b).square().sum() + var * W.square().sum()  # E_q|x - Wz - b|²
closed_elbo = (
    -0.5 * (mu.square() + var + LOG_2PI)
    - 0.5 * (sq / 0.64 + 2 * math.log(2 * math.pi * 0.64))
    + 0.5 * (1 + LOG_2PI + logvar)
).sum()  # E_q[log p(z) + log p(x|z)] + H[q]

# %%
assert torch.isclose(exact_iwae(1, params), closed_elbo, rtol=1e-10)
for a, c in zip(
    torch.autograd.grad(exact_iwae(1, params), params), torch.autograd.grad(closed_elbo, params)
):
    assert torch.allclose(a, c, rtol=1e-8, atol=1e-10)  # and so is its gradient

log_px = truth.log_marginal(X_TOY).item()
m_post, v_post = (t.item() for t in truth.posterior_parameters(X_TOY))  # p(z|x) = N(m, v)
s2, mq = math.exp(LOGVAR_TOY), MU_TOY
a = 1 / v_post - 1 / (2 * s2)  # ∫ p(z|x)²/q(z) dz is a Gaussian integral
chi2 = (
    math.sqrt(s2)
    / (v_post * math.sqrt(2 * a))
    * math.exp((m_post / v_post - mq / (2 * s2)) ** 2 / a - m_post**2 / v_post + mq**2 / (2 * s2))
    - 1
)
gap_big_k = log_px - exact_iwae(10_000, params).item()
print(f"log p(x) = {log_px:.6f};  K = 10,000: gap × K = {gap_big_k * 1e4:.4f}, χ²/2 = ρ/2 = "
      f"{chi2 / 2:.4f}")
assert math.isclose(gap_big_k * 1e4, chi2 / 2, rel_tol=1e-3)

# %% [markdown]
# ### SNR against $K$ on the toy
#
# For each $K$ we draw $R = 2000$ independent $K$-sample gradient estimates (one backward pass: each
# replicate has its own copy of the parameters) and divide the exact
# $\lvert\nabla\mathrm{IWAE}_K\rvert$ by their standard deviation, for the encoder's $\mu$ and the
# decoder's $b_1$. We record DReG's encoder estimate too (section 4).

# %%
def gradient_estimates(K, encoder_gradient, replicas, seed):
    """`replicas` independent K-sample estimates of ∇(W, b, μ, log σ²): (R, 6)."""
    W, b, mu, logvar = params_r = toy_parameters(replicas)
    surrogate = iwae_surrogate(
        Toy(W, b),
        X_TOY.expand(replicas, 2),
        DiagonalGaussian(mu, logvar),
        K,
        encoder_gradient,
        generator=generator(seed),
    )
    grads = torch.autograd.grad(surrogate.sum(), params_r)  # each replicate's own gradient
    return torch.cat([g.reshape(replicas, -1) for g in grads], dim=1)


def exact_gradient(K):
    """∇ IWAE_K at the toy's parameters, (6,): W (2), b (2), μ, log σ²."""
    params = toy_parameters()
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(exact_iwae(K, params), params)])


# %%
Ks = [1, 4, 16, 64, 256, 1024]
R = 2000
MU_INDEX, B1_INDEX = 4, 2  # positions of μ and b_1 in the gradient vector
snr = {"plain": [], "DReG": [], "decoder": []}
exact_grads = {}
for K in Ks:
    exact_grads[K] = exact_gradient(K)
    for kind, key in (("plain", "plain"), ("dreg", "DReG")):
        g = gradient_estimates(K, kind, R, seed=K)
        assert_unbiased(g.mean(0), g.std(0) / R**0.5, exact_grads[K], f"{kind} at K={K}")
        snr[key].append((exact_grads[K][MU_INDEX].abs() / g[:, MU_INDEX].std()).item())
        if kind == "plain":
            snr["decoder"].append((exact_grads[K][B1_INDEX].abs() / g[:, B1_INDEX].std()).item())


def loglog_slope(ks, values, smallest=16):
    """Least-squares slope of log(value) against log(K) over K >= smallest."""
    keep = np.array(ks) >= smallest
    return np.polyfit(np.log(np.array(ks)[keep]), np.log(np.array(values)[keep]), 1)[0]


slopes = {key: loglog_slope(Ks, values) for key, values in snr.items()}
for key, values in snr.items():
    print(f"{key:8s} SNR: {np.round(values, 3)}   slope (K ≥ 16) {slopes[key]:+.2f}")
assert -0.7 < slopes["plain"] < -0.3  # the encoder's falls like 1/√K (Rainforth et al.)
assert 0.3 < slopes["decoder"] < 0.7  # the decoder's grows like √K
assert snr["plain"][-1] < snr["plain"][2] / 4  # K = 1024 vs K = 16: more than 4× worse
assert snr["plain"][-1] < 1  # at K = 1024 the encoder's estimate is mostly noise: std > |mean|
print(f"K = 1024: the plain encoder gradient's std is {1 / snr['plain'][-1]:.1f} × its mean")

# %%
fig, ax = plt.subplots(figsize=(8, 4.5))
Ks_np = np.array(Ks)
ax.loglog(
    Ks_np,
    snr["decoder"],
    "o-",
    color=EST_COLORS["decoder"],
    label=f"decoder $b_1$ (slope {slopes['decoder']:+.2f})",
)
ax.loglog(Ks_np, snr["plain"], "o-", color=EST_COLORS["plain"], label="encoder $\\mu$, plain IWAE "
                                                                      "gradient (slope "
                                                                      f"{slopes['plain']:+.2f})")
ax.loglog(
    Ks_np, snr["plain"][2] * (Ks_np / 16) ** -0.5, ":", color=EST_COLORS["plain"], label="∝ 1/√K"
)
ax.loglog(
    Ks_np, snr["decoder"][2] * (Ks_np / 16) ** 0.5, ":", color=EST_COLORS["decoder"], label="∝ √K"
)
ax.set(xlabel="K", ylabel="SNR = |E g| / std g", title="The tighter the bound, the weaker the "
                                                       "encoder's gradient signal")
ax.set_xticks(Ks_np, [str(k) for k in Ks])
ax.legend(fontsize=9)
plt.show()

# %% [markdown]
# Both lines bend where the asymptotics take over (from $K \approx 16$ here): beyond it, every
# fourfold increase of $K$ doubles the decoder's SNR and halves the encoder's. At $K = 1024$ the
# encoder's gradient is mostly noise — its SNR is below 1 (asserted; printed above): one estimate's
# standard deviation exceeds its mean, so training would move $\phi$ almost at random, and with it
# the proposal that the bound's tightness depends on.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. A fix: the doubly reparameterized gradient (DReG)
#
# Split the encoder's gradient of $\log w_k = \log p_\theta(x, z_k) - \log q_\phi(z_k\mid x)$, with
# $z_k = z_\phi(\varepsilon_k)$, into the path through $z_k$ and the direct dependence of
# $\log q_\phi$:
#
# $$
# \nabla_\phi \log w_k =
# \underbrace{\frac{\partial \log w_k}{\partial z_k}\frac{\partial z_k}{\partial\phi}}_{\text{path}}
# \;-\; \underbrace{\frac{\partial}{\partial\phi}\log q_\phi(z)\Big|_{z = z_k}}_{\text{score}} .
# $$
#
# In the IWAE gradient $\sum_k \tilde w_k\nabla_\phi\log w_k$, the score part
# $-\mathbb E\big[\sum_k \tilde w_k\,\partial_\phi\log q_\phi(z_k)\big]$ is zero only when $K = 1$
# (the score has mean zero, chapter 7). For $K > 1$ its expectation is not zero, so it cannot simply
# be dropped (section 4's control shows the bias), but it is a score-function term — the noisy kind
# of chapter 7. **Reparameterize it a second time.** For any function $f$ of $z$ that does not
# depend on $\phi$, the score-function and pathwise forms of chapter 7 are two expressions of the
# same gradient:
#
# $$
# \mathbb E_{q_\phi}\big[f(z)\,\partial_\phi\log q_\phi(z)\big] = \partial_\phi\,\mathbb
# E_{q_\phi}[f(z)]
# = \mathbb E_\varepsilon\Big[\frac{\partial f}{\partial z}\frac{\partial z}{\partial\phi}\Big].
# $$
#
# Apply it to $f = \tilde w_k$ as a function of $z_k$ (the other samples held fixed, and $\phi$
# inside $w$ held fixed). Since $\tilde w_k$ is a softmax,
# $\partial\tilde w_k/\partial\log w_k = \tilde w_k - \tilde w_k^2$:
#
# $$
# \mathbb E\Big[\sum_k \tilde w_k\,\partial_\phi\log q_\phi(z_k)\Big]
# = \mathbb E\Big[\sum_k (\tilde w_k - \tilde
# w_k^2)\frac{\partial\log w_k}{\partial z_k}\frac{\partial z_k}{\partial\phi}\Big],
# $$
#
# and subtracting it from the path part leaves the **DReG estimator** of the encoder's gradient
# (Tucker, Lawson, Gu & Maddison, 2019):
#
# $$
# \widehat\nabla_\phi^{\,\mathrm{DReG}} = \sum_{k=1}^K \tilde
# w_k^{\,2}\,\frac{\partial\log w_k}{\partial z_k}\frac{\partial z_k}{\partial\phi},
# \qquad \frac{\partial \log w_k}{\partial z_k} = \partial_z\log p_\theta(x, z_k) - \partial_z \log
# q_\phi(z_k\mid x)\ \ (\phi\ \text{fixed}).
# $$
#
# Same expectation, no score term; the decoder keeps
# $\sum_k\tilde w_k\nabla_\theta\log p_\theta(x, z_k)$. Each term is of order $1/K^2$
# ($\tilde w_k \approx 1/K$) and there are $K$ of them, so the mean ($\sim 1/K$) and the noise
# ($\sim K^{-3/2}$) now shrink at rates whose ratio *grows* like $\sqrt K$. (At $K = 1$,
# $\tilde w_1 = 1$ and DReG is the "sticking the landing" estimator of Roeder et al., 2017: the ELBO
# gradient with the score term dropped.)
#
# In code: evaluate $\log q$ with detached $(\mu, \log\sigma^2)$ so that $\phi$ reaches $\log w_k$
# only through $z_k$, and multiply the gradient arriving at $z_k$ by $\tilde w_k$ once more. By
# hand, against `iwae_surrogate(..., encoder_gradient="dreg")`:

# %%
K = 8
W, b, mu, logvar = params = toy_parameters()
eps = torch.randn(K, 1, 1, generator=generator(3))
std = torch.exp(0.5 * logvar.detach())
z = (mu.detach() + std * eps).requires_grad_(True)  # z_k as a leaf: we want ∂ log w_k / ∂z_k
log_w = Toy(W.detach(), b.detach()).log_joint(X_TOY, z) - DiagonalGaussian(
    mu.detach(), logvar.detach()
).log_prob(z)
(dlogw_dz,) = torch.autograd.grad(log_w.sum(), z)  # (K, 1, 1)
w2 = torch.softmax(log_w.detach(), dim=0).square()[..., None]  # w̃_k², (K, 1, 1)
dreg_mu = (w2 * dlogw_dz).sum(0)  # ∂z/∂μ = 1
dreg_logvar = (w2 * dlogw_dz * 0.5 * std * eps).sum(0)  # ∂z/∂log σ² = ½ σ ε

surrogate = iwae_surrogate(
    Toy(W, b), X_TOY, DiagonalGaussian(mu, logvar), K, "dreg", generator=generator(3)
)
lib = torch.autograd.grad(surrogate.sum(), params)
plain = torch.autograd.grad(iwae_surrogate(Toy(W, b), X_TOY, DiagonalGaussian(mu, logvar), K,
                                           generator=generator(3)).sum(), params)
assert torch.allclose(lib[2], dreg_mu, rtol=1e-10) and torch.allclose(
    lib[3], dreg_logvar, rtol=1e-10
)
# θ: unchanged
assert torch.allclose(lib[0], plain[0], rtol=1e-12) and torch.allclose(lib[1], plain[1], rtol=1e-12)
print(f"DReG ∂/∂μ = {dreg_mu.item():+.6f} (vaelib {lib[2].item():+.6f}); plain ∂/∂μ = "
      f"{plain[2].item():+.6f}, same samples")

# %% [markdown]
# **Unbiased — against the exact expectation.** Section 3 already checked, for every $K$, that the
# mean of 2000 plain and 2000 DReG estimates of all six partial derivatives lies within 5 standard
# errors of the exact $\nabla\mathrm{IWAE}_K$. Here the check with 40,000 replicates at $K = 8$, and
# a control: the same check applied to the tempting "one $\tilde w_k$ is enough" estimator
# $\sum_k\tilde w_k\,\partial_z\log w_k\,\partial_\phi z_k$ — the path part alone, that is Roeder et
# al.'s (2017) "sticking the landing" (STL) estimator applied to IWAE — must fail: for $K > 1$ it is
# biased (unbiased only at $K = 1$, where it is STL for the ELBO).

# %%
K, R_big = 8, 40_000
exact_mu = exact_grads_8 = exact_gradient(K)
for kind in ("plain", "dreg"):
    g = gradient_estimates(K, kind, R_big, seed=80)
    z_score = assert_unbiased(g.mean(0), g.std(0) / R_big**0.5, exact_grads_8, f"{kind}, K = {K}")
    print(f"{kind:5s}: mean ∂/∂μ = {g[:, MU_INDEX].mean():+.5f} ± "
          f"{2 * g[:, MU_INDEX].std() / R_big**0.5:.5f}   exact {exact_grads_8[MU_INDEX]:+.5f}   "
          f"(largest deviation over the 6 entries: {z_score:.1f} s.e.)")

eps = torch.randn(K, R_big, 1, generator=generator(81))
z = (MU_TOY + math.exp(0.5 * LOGVAR_TOY) * eps).requires_grad_(True)
q_fixed = DiagonalGaussian(torch.full((R_big, 1), MU_TOY), torch.full((R_big, 1), LOGVAR_TOY))
log_w = Toy(W_TOY, B_TOY).log_joint(X_TOY.expand(R_big, 2), z) - q_fixed.log_prob(z)
(dz,) = torch.autograd.grad(log_w.sum(), z)
# STL: Σ_k w̃_k ∂_z log w_k, (R,)
path_only = (torch.softmax(log_w.detach(), 0)[..., None] * dz).sum(0)[:, 0]
bias_z = ((path_only.mean() - exact_grads_8[MU_INDEX]) / (path_only.std() / R_big**0.5)).item()
print(
    f"STL (path part alone): mean ∂/∂μ = {path_only.mean():+.5f}, {bias_z:+.0f} standard errors "
    "from the exact value"
)
# the check can tell a biased estimator: more than a hundred standard errors off
assert abs(bias_z) > 100

# %% [markdown]
# And its signal: the DReG encoder SNR from section 3's runs, beside the plain one.

# %%
print(f"encoder SNR, K = {Ks}:\n  plain {np.round(snr['plain'], 3)}\n  DReG  "
      f"{np.round(snr['DReG'], 3)}")
print(f"slopes (K ≥ 16): plain {slopes['plain']:+.2f}, DReG {slopes['DReG']:+.2f}")
assert slopes["DReG"] > 0.3  # DReG's encoder SNR grows with K instead of falling
# and beats plain for every K > 1
assert all(d > p for d, p in zip(snr["DReG"][1:], snr["plain"][1:]))

fig, ax = plt.subplots(figsize=(8, 4.5))
ax.loglog(Ks_np, snr["plain"], "o-", color=EST_COLORS["plain"], label="encoder μ, plain (slope "
                                                                      f"{slopes['plain']:+.2f})")
ax.loglog(Ks_np, snr["DReG"], "o-", color=EST_COLORS["DReG"], label="encoder μ, DReG (slope "
                                                                    f"{slopes['DReG']:+.2f})")
ax.loglog(
    Ks_np, snr["decoder"], "o--", color=EST_COLORS["decoder"], alpha=0.6, label="decoder b₁ (both)"
)
ax.set(xlabel="K", ylabel="SNR", title="DReG: the encoder's signal grows with K")
ax.set_xticks(Ks_np, [str(k) for k in Ks])
ax.legend(fontsize=9)
plt.show()

# %% [markdown]
# ### Explore: the spread of the encoder's gradient estimates
#
# 1000 independent estimates of $\partial\,\mathrm{IWAE}_K/\partial\mu$ on the toy, from the plain
# estimator and from DReG, against the exact value (dashed). Move $K$: the exact value creeps
# towards 0 (the bound depends less and less on $q$); the plain estimates stay spread out, DReG's
# narrow faster than the target moves.

# %%
def draw_spread(fig, num_samples, show_plain):
    exact = exact_gradient(num_samples)[MU_INDEX].item()
    estimates = {"DReG": gradient_estimates(num_samples, "dreg", 1000, seed=7)[:, MU_INDEX].numpy()}
    if show_plain:
        estimates["plain"] = gradient_estimates(num_samples, "plain", 1000, seed=7)[
            :, MU_INDEX
        ].numpy()
    everything = np.concatenate(list(estimates.values()))
    lo, hi = np.percentile(everything, [0.5, 99.5])
    bins = np.linspace(min(lo, exact), max(hi, exact), 61)
    ax = fig.subplots()
    for name, values in estimates.items():
        ax.hist(values.clip(bins[0], bins[-1]), bins=bins, color=EST_COLORS[name], alpha=0.55,
                label=f"{name}: SNR = {abs(exact) / values.std():.2f}")
    reference_line(ax, exact, label=f"exact ∂IWAE_K/∂μ = {exact:.4f}", horizontal=False)
    ax.set(xlabel="one K-sample estimate of ∂ IWAE_K / ∂μ", ylabel="estimates (of 1000)",
           title=f"Encoder gradient estimates, K = {num_samples}")
    ax.legend(fontsize=9)
    return f"K = {num_samples}: exact gradient {exact:+.4f}"


static_figure(draw_spread, num_samples=64, show_plain=True)

# %%
FigureExplorer(
    draw_spread,
    num_samples=SelectionSlider(
        options=[1, 2, 4, 8, 16, 32, 64, 128, 256], value=64, description="K"
    ),
    show_plain=Checkbox(value=True, description="show plain"),
)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. On MNIST: the chapter 8 VAE trained on the ELBO, on IWAE$_5$, and on IWAE$_5$ with DReG
#
# Burda et al.'s one-stochastic-layer model (784–200–200–50, tanh; chapter 8), on the bundled
# subset, trained three times from the same initialization, with the same minibatches in every
# epoch: on the ELBO ($K = 1$, the analytic-KL form of chapter 8), on $\mathrm{IWAE}_5$ with the
# plain gradient of section 1, and on $\mathrm{IWAE}_5$ with DReG for the encoder (section 4). The
# three differ in the training objective only, so the differences between them are the objective's.
# `vaelib.train.train` does all three: its `objective="iwae"` option replaces the step's loss
# $-\mathrm{ELBO}$ by $-$`iwae_surrogate(...)`, with $K$ = `num_samples` and
# `encoder_gradient="plain"` or `"dreg"` (the same options as
# `python -m vaelib.train --objective iwae --k 5 --encoder-gradient dreg`; they are saved with the
# run). We then compare, on the same 1000 test images: $\log p(x)$ estimated with $K = 500$
# importance samples (chapter 8), the ELBO, $\mathrm{IWAE}_5$, the encoder's width, and the number
# of **active units** ($\operatorname{Var}_x[\mu_j(x)] > 0.01$, chapter 8).
#
# A CPU budget of a few seconds per model is far from Burda et al.'s 3280 epochs: the numbers below
# are early in training, and the comparison is between runs of equal length, not with the
# literature.

# %%
torch.set_default_dtype(torch.float32)  # the neural VAE: float32
mnist = load_mnist_subset()
train_images = to_unit_interval(mnist.train_images)  # (N, 784) grey levels
# the fixed binary test set
test_bin = fixed_binarization(to_unit_interval(mnist.test_images), seed=0)
EPOCHS, BATCH, LR = 6, 100, 2e-3
OBJECTIVES = {  # name -> vaelib.train's options
    "ELBO": {},  # objective="elbo", the default
    "IWAE_5": dict(objective="iwae", num_samples=5, encoder_gradient="plain"),
    "IWAE_5 + DReG": dict(objective="iwae", num_samples=5, encoder_gradient="dreg"),
}


def train_vae(**objective):
    """Chapter 8's model, trained by vaelib.train with the given objective; (model, seconds)."""
    # the same initial weights for every run (and seed=0: the same minibatches)
    torch.manual_seed(0)
    model = VAE(VAEConfig.preset("burda"))
    history = train(
        model,
        train_images,
        epochs=EPOCHS,
        batch_size=BATCH,
        lr=LR,
        seed=0,
        progress=False,
        **objective,
    )
    assert len(history) == EPOCHS and all(math.isfinite(e) for e in history.train_elbo)
    return model, history.seconds[-1]


vaes = {}
for name, options in OBJECTIVES.items():
    vaes[name], seconds = train_vae(**options)
    print(f"{name:14s} {EPOCHS} epochs in {seconds:.1f} s")
vae_elbo = vaes["ELBO"]

# %% [markdown]
# **Is $K = 500$ enough?** Burda et al. estimate $\log p(x)$ with $K = 5000$; ten times fewer
# samples cost ten times less and give a lower estimate in expectation (chapter 4: $\log\hat p_K$ is
# itself $\mathrm{IWAE}_K$). So on the first 100 of the test images we also estimate it with
# $K = 5000$, from independent draws (another seed): that it comes out higher is a check that could
# fail, and how much higher tells how far $K = 500$ is from the answer, to be weighed against the
# gaps between the models. The effective sample size of the weights (chapter 3) is printed beside
# it.

# %%
NUM_TEST, K_TEST = 1000, 500  # log p(x) with K = 500 on 1000 test images, the same for every model
NUM_CHECK, K_CHECK = 100, 5000  # and with K = 5000 on the first 100, from independent draws
results = {}
for name, model in vaes.items():
    ev = evaluate(
        model, test_bin[:NUM_TEST], num_samples=K_TEST, iwae_samples=5, seed=0, progress=False
    )
    check = evaluate(model, test_bin[:NUM_CHECK], num_samples=K_CHECK, iwae_samples=5, seed=1,
                     progress=False)  # independent draws: another seed
    shift = check.log_likelihood - ev.log_likelihood[:NUM_CHECK]  # K = 5000 minus K = 500, (100,)
    with torch.no_grad():
        mu, logvar = model.encode(test_bin)  # over the whole test set, (N, d) each
    activity = mu.var(dim=0)  # Var_x μ_j(x), (d,)
    active = activity > 0.01
    results[name] = dict(
        eval=ev,
        shift=shift.mean().item(),
        shift_se=shift.std().item() / NUM_CHECK**0.5,
        ess=(ev.ess.mean().item(), check.ess.mean().item()),
        activity=activity,
        active=int(active.sum()),
        log_sigma=0.5 * logvar[:, active].mean().item(),
        kl=(ev.log_likelihood - ev.elbo).mean().item(),
    )  # ≈ KL(q ‖ p(z|x))
    r, s = results[name], ev.summary()
    print(f"{name:14s} log p(x) {s['log_likelihood']:8.2f}  IWAE_5 {s['iwae_5']:8.2f}  ELBO "
          f"{s['elbo']:8.2f}  log p(x) − ELBO {r['kl']:5.2f}  active {r['active']} of 50, "
          f"their mean log σ_j(x) {r['log_sigma']:+.3f}"
          f"\n{'':14s} K = 5000 − K = 500: {r['shift']:+.2f} ± {r['shift_se']:.2f} nats;  "
          f"ESS {r['ess'][0]:.1f} of 500, {r['ess'][1]:.1f} of 5000")

# %%
def paired_gap(a, b):
    """Mean log p(x) of model a minus model b over the same test images, and its standard error."""
    d = results[a]["eval"].log_likelihood - results[b]["eval"].log_likelihood  # (NUM_TEST,)
    return d.mean().item(), d.std().item() / NUM_TEST**0.5


gaps_vae = {(a, b): paired_gap(a, b) for a, b in
            (("IWAE_5", "ELBO"), ("IWAE_5 + DReG", "ELBO"), ("IWAE_5 + DReG", "IWAE_5"))}
for (a, b), (gap, se) in gaps_vae.items():
    print(f"log p(x): {a} − {b} = {gap:+.2f} nats (paired s.e. {se:.2f})")
shifts = [r["shift"] for r in results.values()]
dreg_gaps = [gaps_vae["IWAE_5 + DReG", "ELBO"][0], gaps_vae["IWAE_5 + DReG", "IWAE_5"][0]]
# K = 5000 > K = 500 (independent draws)
assert all(r["shift"] > 2 * r["shift_se"] for r in results.values())
# K = 500 -> 5000 moves each estimate by < 1/3 of DReG's gaps
assert max(shifts) < min(dreg_gaps) / 3
assert all(r["ess"][0] < 20 for r in results.values())  # far from ideal weights: ESS < 20 of 500
dreg_over_elbo, dreg_over_plain = (
    gaps_vae["IWAE_5 + DReG", "ELBO"],
    gaps_vae["IWAE_5 + DReG", "IWAE_5"],
)
# DReG: several nats
assert all(gap > 2 and gap > 10 * se for gap, se in (dreg_over_elbo, dreg_over_plain))
assert gaps_vae["IWAE_5", "ELBO"][0] < dreg_over_elbo[0] / 2  # most of the gain is DReG's
iwae_trained = [results[n] for n in ("IWAE_5", "IWAE_5 + DReG")]
# q no longer fits KL(q ‖ p) ...
assert all(r["kl"] > results["ELBO"]["kl"] + 2 for r in iwae_trained)
# ... and is broader
assert all(r["log_sigma"] > results["ELBO"]["log_sigma"] for r in iwae_trained)
assert results["IWAE_5 + DReG"]["active"] >= results["ELBO"]["active"]

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
names = list(results)
for i, (key, label) in enumerate(
    (("log_likelihood", "log p(x), K = 500"), ("iwae", "IWAE₅"), ("elbo", "ELBO"))
):
    values = [getattr(results[n]["eval"], key).mean().item() for n in names]
    axes[0].bar(np.arange(3) + 0.27 * (i - 1), values, width=0.25, label=label,
                color=[COLORS["importance"], COLORS["proposal"], COLORS["elbo"]][i])
axes[0].set_xticks(range(3), names)
low = min(results[n]["eval"].elbo.mean().item() for n in names)
high = max(results[n]["eval"].log_likelihood.mean().item() for n in names)
axes[0].set(ylim=(low - 5, high + 3), ylabel="nats per test image", title="Test bounds "
                                                                          f"({NUM_TEST} test "
                                                                          "images)")
axes[0].legend(fontsize=9)
for n, color in zip(names, (EST_COLORS["decoder"], EST_COLORS["plain"], EST_COLORS["DReG"])):
    axes[1].plot(np.sort(results[n]["activity"].numpy())[::-1], "o-", markersize=3, color=color,
                 label=f"{n}: {results[n]['active']} active")
axes[1].axhline(0.01, color=COLORS["exact"], linestyle="--", linewidth=1, label="threshold 0.01")
axes[1].set(
    yscale="log",
    xlabel="latent unit, sorted by activity",
    ylabel="Var_x μ_j(x)",
    title="Active units",
)
axes[1].legend(fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# **Reading the numbers.** With DReG, the decoder trained on $\mathrm{IWAE}_5$ gives the test images
# a higher $\log p(x)$ than the ELBO-trained one by several nats — more than 2, and more than ten
# paired standard errors (asserted) — and the same over the plain-gradient run. The plain
# $\mathrm{IWAE}_5$ gradient, at the same budget, gains far less: less than half of DReG's gain over
# the ELBO (asserted). Most of the gain is the encoder's gradient, which is this chapter's lesson: a
# tighter bound helps only if the encoder still learns. $K = 5000$ raises each model's estimate — by
# more than two standard errors, and by less than a third of the DReG gaps (both asserted; about
# half a nat here, printed) — and by about the same amount for all three, so it leaves their order
# as it is. The weights are far from ideal (an ESS below 20 samples out of 500, asserted): these are
# models after a few seconds of training.
#
# **Is it the objective or the seed?** The three runs share one initialization and one sequence of
# minibatches; another seed gives other networks. `benchmarks/bench_iwae_objectives.py` repeats the
# three runs for seeds 0–4 and evaluates each the same way ($K = 500$ on the same 1000 test images,
# and $K = 5000$ on 200 of them). Measured on the course's 2-core machine (1 torch thread, while
# other jobs shared the CPU; torch 2.13, 26 minutes), the paired gaps in $\log p(x)$ over the five
# seeds (mean, standard deviation, range; each seed's own paired standard error 0.12–0.16 nats):
#
# | | mean | sd over seeds | range |
# | --- | --- | --- | --- |
# | IWAE$_5$ + DReG − ELBO | +3.14 | 0.62 | +2.40 … +3.82 |
# | IWAE$_5$ + DReG − IWAE$_5$ (plain) | +2.61 | 0.37 | +2.20 … +2.94 |
# | IWAE$_5$ (plain) − ELBO | +0.52 | 0.55 | −0.28 … +0.94 |
#
# So the DReG run's lead — two to four nats — is the objective's: it holds for every seed, with
# margins of 15 standard errors and more, and each model's own $\log p(x)$ moves by 0.2 to 0.6 nats
# (sd) from seed to seed. Plain $\mathrm{IWAE}_5$ against the ELBO is *not* settled at this budget:
# its gain is about the size of the seed-to-seed spread, and one seed in five has it below the ELBO.
# The $K = 500$ estimates sat 0.29 to 0.76 nats below the $K = 5000$ ones for all 15 models, much
# less than the DReG gaps.
#
# **What the encoder fits.** Trained on the ELBO, the encoder minimizes
# $\mathrm{KL}(q\,\Vert\,p_\theta(z\mid x))$; trained on $\mathrm{IWAE}_K$ it no longer does: as in
# section 2, the bound's gap $\approx\rho/(2K)$ rewards a $q$ that covers the posterior rather than
# one that hides inside it. Both IWAE-trained encoders come out **broader** — a larger mean
# $\log\sigma_j(x)$ over their active units (asserted; so in all five seeds of the benchmark) — and
# further from the ELBO's target: their
# $\log p(x) - \mathrm{ELBO} \approx \mathrm{KL}(q\,\Vert\,p_\theta(z\mid x))$ is larger by more
# than 2 nats (asserted; 8.7 to 11.5 nats against 5.5 to 6.3 over the five seeds). That is part of
# the measured gap: an IWAE-trained model's ELBO is not its $\log p(x)$ minus a small KL, since its
# $q$ was never asked to make the ELBO tight, and comparing models by their ELBO would hide most of
# what DReG gains. The DReG model also keeps at least as many units active as the ELBO model
# (asserted; the counts are printed): the ELBO's KL term switches off units whose information does
# not pay for their cost, the tighter bound charges them less — Burda et al.'s observation. The
# activity spectra (right) show where the models differ: in their weakest units.

# %% [markdown]
# ### The price on the VAE
#
# The same measurement on the ELBO-trained VAE, for a minibatch of 10 test images: 30 independent
# $K$-sample gradient estimates $g^{(r)}$ of all the weights, for $K = 1, 8, 64$. No exact
# expectation is available here, and most single weights have too small a signal to measure with 30
# estimates, so we take one SNR per network, the length of its mean gradient over the square root of
# its total variance,
#
# $$
# \mathrm{SNR} = \frac{\lVert \mathbb E g\rVert}{\sqrt{\operatorname{tr}\operatorname{Cov} g}},
# \qquad
# \lVert\mathbb E g\rVert^2 \approx \lVert\bar g\rVert^2 -
# \frac{\operatorname{tr}\widehat{\operatorname{Cov}}\,g}{R}
# $$
#
# (the mean of $R$ noisy vectors is longer than their expectation by about
# $\operatorname{tr}\operatorname{Cov}/R$ in square; we subtract it).

# %%
def network_snr(model, x, K, encoder_gradient, replicas=30, seed=0):
    """(encoder SNR, decoder SNR): |E g| / sqrt(tr Cov g) over each network's weights, R estimates.
    """
    gen = generator(seed)
    estimates = []
    for _ in range(replicas):
        model.zero_grad()
        (
            -iwae_surrogate(
                model, x, model.posterior(x, validate_args=False), K, encoder_gradient, gen
            ).mean()
        ).backward()
        estimates.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    g = torch.stack(estimates)  # (R, number of weights); the encoder's come first
    n_enc = sum(p.numel() for p in model.encoder.parameters())
    ratios = []
    for part in (g[:, :n_enc], g[:, n_enc:]):
        total_var = part.var(dim=0).sum()  # tr Cov g
        signal2 = part.mean(dim=0).square().sum() - total_var / replicas  # |E g|², debiased
        ratios.append((signal2.clamp_min(0).sqrt() / total_var.sqrt()).item())
    return ratios


x_snr = test_bin[:10]

# %%
Ks_vae = [1, 8, 64]
vae_snrs = {
    kind: [network_snr(vae_elbo, x_snr, K, kind) for K in Ks_vae] for kind in ("plain", "dreg")
}
enc_plain, dec_plain = zip(*vae_snrs["plain"])
enc_dreg = [r[0] for r in vae_snrs["dreg"]]
print(f"K = {Ks_vae}: decoder SNR {np.round(dec_plain, 3)}; encoder SNR plain "
      f"{np.round(enc_plain, 3)}, DReG {np.round(enc_dreg, 3)}")
assert dec_plain[-1] > 1.3 * dec_plain[0]  # the decoder's signal grows with K ...
# ... the encoder's falls behind
assert enc_plain[-1] / dec_plain[-1] < 0.75 * enc_plain[0] / dec_plain[0]
# and DReG gives the encoder a stronger one
assert all(d > 1.3 * p for d, p in zip(enc_dreg, enc_plain))

fig, ax = plt.subplots(figsize=(8, 4.2))
ax.loglog(Ks_vae, dec_plain, "o-", color=EST_COLORS["decoder"], label="decoder")
ax.loglog(Ks_vae, enc_plain, "o-", color=EST_COLORS["plain"], label="encoder, plain")
ax.loglog(Ks_vae, enc_dreg, "o-", color=EST_COLORS["DReG"], label="encoder, DReG")
ax.set(xlabel="K", ylabel="|E g| / sqrt(tr Cov g)", title="SNR on the subset VAE (10 test images, "
                                                          "30 estimates)")
ax.set_xticks(Ks_vae, [str(k) for k in Ks_vae])
ax.legend(fontsize=9)
plt.show()

# %% [markdown]
# The toy's picture, in its early stage: the decoder's signal grows steadily with $K$, while the
# plain encoder gradient's stays where it was — it falls *relative* to the decoder's, and at
# $K \le 64$ a 50-dimensional posterior is still far from the large-$K$ regime where section 3 saw
# it fall like $1/\sqrt K$. DReG gives the encoder a stronger signal at every $K$ measured (more
# than 1.3 times the plain one, asserted at $K = 1, 8, 64$).
#
# **Training at scale.** Burda et al. report a test log-likelihood of $-84.78$ nats on full MNIST
# for this model trained on $\mathrm{IWAE}_{50}$ (3280 epochs), against $-86.76$ for the same model
# on the ELBO; Tucker et al. show DReG improves the IWAE-trained encoder further. That run needs a
# GPU; the README gives the command.

# %% [markdown] slideshow={"slide_type": "slide"}
# > **Classic mistakes**
# >
# > * **Averaging the log-weights.** $\frac1K\sum_k\log w_k$ is the ELBO with $K$ samples, not
# >   $\mathrm{IWAE}_K$: the logarithm goes *outside* the average, $\log\frac1K\sum_k w_k$
# >   (log-mean-exp). Its gradient weighs by $\tilde w_k$, not by $\frac1K$.
# > * **Weights from `exp(log_w)`.** $w_k$ overflows or underflows for any realistic $D$; compute
# >   $\tilde w_k$ as a softmax of the log-weights.
# > * **Reporting the training bound as $\log p(x)$.** $\mathrm{IWAE}_5$ is still a lower bound;
# >   report $\log p(x)$ estimated with many importance samples ($K = 5000$ in the literature, or a
# >   smaller $K$ shown to move it less than the differences reported, as in section 5), and say
# >   which $K$ the model was trained with.
# > * **"Larger $K$ is always better."** The decoder gains, but the plain encoder gradient's SNR
# >   falls like $1/\sqrt K$: with $K$ in the hundreds the encoder barely learns. Use DReG (or a
# >   moderate $K$).
# > * **DReG with the score term left in.** DReG needs $\log q$ evaluated with $\phi$ detached; with
# >   the live $\log q_\phi$ the score term comes back and the estimator is neither plain nor DReG.
# > * **DReG weights $\tilde w_k$ instead of $\tilde w_k^2$.** Keeping only the path part with the
# >   IWAE weights (STL applied to IWAE) is biased for $K > 1$: section 4's control is more than a
# >   hundred standard errors off (asserted).
# > * **Differentiating through the weights.** Written as a weighted sum, the surrogate is
# >   $\sum_k \tilde w_k \log w_k$ with the $\tilde w_k$ held constant — computed from
# >   `log_w.detach()` — so that the gradient flows through each $\log w_k$ and never through
# >   $\tilde w_k$; with live weights autograd adds the gradient of the weights themselves, and the
# >   result is no longer $\nabla\log\frac1K\sum_k w_k$. (Differentiating the log-mean-exp itself
# >   needs no care.)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * $\nabla\log\frac1K\sum_k w_k = \sum_k\tilde w_k\nabla\log w_k$ with self-normalized weights
#   $\tilde w = \operatorname{softmax}(\log w)$; at $K = 1$ it is the ELBO gradient exactly.
# * Training on $\mathrm{IWAE}_K$ moves the decoder closer to the maximum likelihood where a
#   diagonal $q$ holds the ELBO back (from between 0.01 and 0.02 to about $10^{-4}$ nats per point,
#   $K = 1$ to $64$, on the triangular factor model), the remaining gap falling like $1/K^2$; and
#   its $q$ is no longer the KL-optimal one, but broader.
# * The price: the plain encoder gradient's SNR falls like $1/\sqrt K$ while the decoder's grows
#   like $\sqrt K$ (measured slopes close to $\mp\frac12$ against the exact expected gradient).
# * DReG, $\sum_k\tilde w_k^2\,\partial_z\log w_k\,\partial_\phi z_k$ with $\log q$'s $\phi$ held
#   fixed, has the same expectation (checked against the exact $\nabla\mathrm{IWAE}_K$) and an
#   encoder SNR that grows with $K$.
# * On MNIST, at a few seconds' budget: $\mathrm{IWAE}_5$ with DReG beats the ELBO by two to four
#   nats of test $\log p(x)$ in each of five seeds; with the plain gradient its gain is within the
#   seed-to-seed spread. The IWAE-trained encoders are broader, and further from the posterior in
#   $\mathrm{KL}(q\,\Vert\,p_\theta(z\mid x))$: compare models by $\log p(x)$, not by their ELBO.
# * `vaelib.objectives`: `iwae_surrogate(model, x, q, K, encoder_gradient="plain" | "dreg")` (value
#   $\log\hat p_K$, gradient the estimator), `self_normalized_weights`, and `iwae_bound_1d`, the
#   exact $\mathrm{IWAE}_K$ of a 1-D latent.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# **Exercise 1 — self-normalized weights.** Write `normalized_weights(log_w)`: for log-weights of
# shape `(K, N)` return $\tilde w_{kn} = w_{kn} / \sum_j w_{jn}$, each column summing to 1. It must
# work for log-weights around $-1000$ (where `exp` underflows to 0), and for data points whose
# log-weights lie thousands of nats apart.

# %% tags=["solution"]
def normalized_weights(log_w):
    """The self-normalized weights over the K samples (dim 0): (K, N) -> (K, N)."""
    # w̃ = softmax of log w over dim 0 (it subtracts the maximum: stable at any scale)
    return torch.softmax(log_w, dim=0)


# %%
from vaelib.exercises import check_normalized_weights

check_normalized_weights(normalized_weights);

# %% [markdown]
# **Exercise 2 — the IWAE gradient from per-sample gradients.** Given `grads` of shape `(K, P)` (row
# $k$: $\nabla\log w_k$ with respect to $P$ parameters) and the log-weights `log_w` of shape `(K,)`,
# return the gradient of $\log\frac1K\sum_k w_k$, shape `(P,)`. The check includes float32
# log-weights at MNIST's scale ($-200$ to $-110$), where `exp` underflows to 0.

# %% tags=["solution"]
def iwae_gradient(grads, log_w):
    """The gradient of log p̂_K from per-sample gradients: (K, P), (K,) -> (P,)."""
    # Σ_k w̃_k ∇ log w_k
    return (torch.softmax(log_w, dim=0)[:, None] * grads).sum(dim=0)


# %%
from vaelib.exercises import check_iwae_gradient

check_iwae_gradient(iwae_gradient);

# %% [markdown]
# **Exercise 3 — DReG for the encoder.** Given `path_grads` of shape `(K, P)` (row $k$:
# $\frac{\partial\log w_k}{\partial z_k}\frac{\partial z_k}{\partial\phi}$, with $\log q$'s $\phi$
# held fixed) and `log_w` `(K,)`, return the DReG estimate of the encoder's gradient, `(P,)`.

# %% tags=["solution"]
def dreg_encoder_gradient(path_grads, log_w):
    """DReG's estimate of the encoder's gradient: (K, P), (K,) -> (P,)."""
    # Σ_k w̃_k² ∂_z log w_k ∂z_k/∂φ
    return (torch.softmax(log_w, dim=0).square()[:, None] * path_grads).sum(dim=0)


# %%
from vaelib.exercises import check_dreg_encoder_gradient

check_dreg_encoder_gradient(dreg_encoder_gradient);

# %% [markdown]
# **Going further (no check).** Rainforth et al. (2018) propose objectives that keep the encoder's
# signal. **MIWAE** trains both networks on the average of $M$ independent $\mathrm{IWAE}_K$ bounds,
# $\frac1M\sum_{m=1}^M\log\frac1K\sum_{k=1}^K w_{m,k}$ ($M = 1$ is $\mathrm{IWAE}_K$; $K = 1$ the
# ELBO with $M$ samples). **PIWAE** uses the same $M K$ samples twice: the decoder is trained on
# $\mathrm{IWAE}_{MK}$ of all of them, the encoder on the MIWAE bound of the $M$ groups of $K$.
# (Their third, CIWAE, trains on a mixture $\beta\,\mathrm{ELBO} + (1-\beta)\,\mathrm{IWAE}_K$.)
# Write PIWAE with two surrogates, each network's gradient taken from its own, and compare its test
# $\log p(x)$ and active units with section 5's three runs at the same budget. Why does it help the
# encoder to be trained on a *looser* bound?
