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
# # Chapter 11 — A richer q(z|x): normalizing flows, and where the gap comes from
#
# *Symbols: see the course's [notation page](../docs/notation.md).*
#
# Chapter 5 showed that the ELBO falls short of $\log p(x)$ by exactly
# $\mathrm{KL}(q(z\mid x)\,\Vert\,p(z\mid x))$, and chapter 10 closed part of that gap from one
# side: a tighter bound, $\mathrm{IWAE}_K$. This chapter closes it from the other side: a **richer
# family for $q$**. A diagonal Gaussian cannot bend around a banana-shaped posterior or cover two
# modes; push it through a chain of invertible maps and it can. Chapter 7 proved the
# change-of-variables formula that makes this work; here it is used $L$ times in a row.
#
# 1. **A chain of maps** — $\log q_L(z_L) = \log q_0(z_0) - \sum_l \log\lvert\det \partial
#    f_l/\partial z_{l-1}\rvert$, derived, checked against autograd's Jacobian, and checked to
#    integrate to 1; planar flows (Rezende & Mohamed, 2015) and the constraint that keeps them
#    invertible.
# 2. **On exact posteriors** — for one $x$ of the 1-D nonlinear toy (chapter 5) and of a 2-D toy
#    with a curved posterior, $q$ fitted by maximizing the ELBO for flow lengths
#    $L = 0$ (a Gaussian), 1, 2, 4, 8: the exact gap
#    $\log p(x) - \mathrm{ELBO} = \mathrm{KL}(q\,\Vert\,p(z\mid x))$ against $L$, and pictures.
# 3. **Where a VAE's gap comes from** — the approximation gap and the amortization gap (Cremer, Li
#    & Duvenaud, 2018) of VAEs trained on MNIST, for the Gaussian and the flow family.
# 4. **A Gaussian-$q$ VAE against a flow-$q$ VAE** — the same epochs and initialization: test
#    $\log p(x)$, ELBO and gap on the same images, with paired standard errors, and what a budget of
#    seconds on a CPU can and cannot show.
#
# The toy models run in float64 (exact math), the neural VAEs in float32, all on the CPU.

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
import torch
import torch.nn.functional as F

from vaelib.data import fixed_binarization, load_mnist_subset, to_unit_interval
from vaelib.device import seed_everything
from vaelib.evaluate import evaluate
from vaelib.figures import COLORS, use_course_style
from vaelib.flows import FlowPosterior, PlanarFlow
from vaelib.gaps import fit_posterior, inference_gaps
from vaelib.gaussian import LOG_2PI, DiagonalGaussian
from vaelib.montecarlo import generator
from vaelib.toy import NonlinearToy, NonlinearToy2D
from vaelib.train import train
from vaelib.vae import VAE, VAEConfig

use_course_style()
seed_everything(0)
torch.set_default_dtype(torch.float64)  # exact math for the toy models (the VAEs set float32)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The density of a chain of maps
#
# Chapter 7: if $z_0$ has density $q_0$ and $f$ is invertible and differentiable, then $z = f(z_0)$
# has density $q(z) = q_0(z_0)\,\lvert\det \partial f/\partial z_0\rvert^{-1}$ at $z_0 = f^{-1}(z)$:
# a map that stretches a neighbourhood by a factor $\lvert\det\rvert$ spreads the same probability
# over a volume that many times larger. Apply it to $L$ maps in a row,
# $z_l = f_l(z_{l-1})$ for $l = 1, \dots, L$; the Jacobian of the chain is the product of the
# maps' Jacobians (chain rule), and the determinant of a product is the product of determinants:
#
# $$
# \log q_L(z_L) = \log q_0(z_0) - \sum_{l=1}^{L} \log\Big\lvert\det
# \frac{\partial f_l}{\partial z_{l-1}}\Big\rvert ,
# \qquad z_0 = \mu + \sigma\odot\varepsilon,\quad
# \log q_0(z_0) = \log\mathcal N(\varepsilon; 0, I) - \sum_{j=1}^d \log\sigma_j .
# $$
#
# Each determinant is taken at the map's own input $z_{l-1}$, which the forward pass visits anyway:
# drawing $z_L$ and computing its $\log q_L$ cost one pass, with no inverse. That is all a
# **normalizing flow** posterior needs for the ELBO, $\mathbb E_q[\log p(x, z_L) - \log q_L(z_L)]$,
# and for importance sampling. The catch is the determinant: for a general $d\times d$ Jacobian it
# costs $O(d^3)$, so flows use maps whose determinant is cheap.
#
# **The planar map** (Rezende & Mohamed, 2015) moves every point along one direction $\hat u$, by an
# amount that depends on its position along another, $w$:
#
# $$
# f(z) = z + \hat u \tanh(w^\top z + b), \qquad
# \frac{\partial f}{\partial z} = I + \tanh'(w^\top z + b)\,\hat u\, w^\top, \qquad
# \det\frac{\partial f}{\partial z} = 1 + \tanh'(w^\top z + b)\, w^\top\hat u ,
# $$
#
# the last by the matrix determinant lemma, $\det(I + a b^\top) = 1 + b^\top a$: $O(d)$. With
# $\tanh' = 1 - \tanh^2 \in (0, 1]$ the determinant stays positive, and the map invertible, as long
# as $w^\top\hat u \ge -1$. Rezende & Mohamed obtain such a $\hat u$ from any raw $u$ by moving $u$
# along $w$:
#
# $$
# \hat u = u + \big(m(w^\top u) - w^\top u\big)\frac{w}{\lVert w\rVert^2},
# \qquad m(a) = -1 + \operatorname{softplus}(a) > -1,
# $$
#
# so that $w^\top\hat u = m(w^\top u) > -1$ whatever $u$, $w$ and $b$ the optimizer picks. The
# inline version, straight from the equations:

# %% tags=["answer"]
def constrained_u(u, w):
    """The planar map's û from raw u, w (d,): invertible for any raw values."""
    wu = u @ w
    return u + (-1 + F.softplus(wu) - wu) * w / w.square().sum()


def planar_map(z, u_hat, w, b):
    """One planar map: z (K, d) -> (f(z) (K, d), log |det ∂f/∂z| (K,))."""
    a = z @ w + b  # wᵀz + b, (K,)
    f = z + u_hat * torch.tanh(a)[:, None]
    log_det = torch.log(torch.abs(1 + (1 - torch.tanh(a).square()) * (u_hat @ w)))
    return f, log_det


# %% [markdown]
# **Check 1: the chain against autograd's Jacobian.** Three planar maps with random raw parameters
# in $d = 2$ (large enough to bend the Gaussian visibly). The formula's $\log q_3(z_3)$ must equal
# $\log\mathcal N(\varepsilon; 0, I) - \log\lvert\det \partial z_3/\partial\varepsilon\rvert$ with
# the Jacobian of the *whole* chain $\varepsilon \mapsto z_3$ computed by
# `torch.autograd.functional.jacobian` (no formula involved), and `vaelib.flows` must give the same
# $z_3$ and $\log q_3$ from the same $\varepsilon$: `FlowPosterior(base, flows)` is the push-forward
# of a `DiagonalGaussian` base through a list of `PlanarFlow`s, and `transform(eps)` returns
# $(z_L, \log q_L(z_L))$ in one pass.

# %%
MEAN_2D, LOGVAR_2D = torch.tensor([0.3, -0.2]), torch.tensor([0.2, -0.4])  # q_0's μ, log σ²
g = generator(1)
raw = [(1.5 * torch.randn(2, generator=g), 1.5 * torch.randn(2, generator=g),
        torch.randn((), generator=g)) for _ in range(3)]  # raw (u, w, b) of 3 maps
maps = [(constrained_u(u, w), w, b) for u, w, b in raw]


def chain(eps):
    """ε (K, d) -> z_L (K, d) and log q_L(z_L) (K,), by the formula."""
    z = MEAN_2D + torch.exp(0.5 * LOGVAR_2D) * eps  # z_0
    log_q = -0.5 * (eps.square() + LOG_2PI + LOGVAR_2D).sum(-1)  # log q_0(z_0)
    for u_hat, w, b in maps:
        z, log_det = planar_map(z, u_hat, w, b)
        log_q = log_q - log_det
    return z, log_q


eps = torch.randn(5, 2, generator=generator(1))
z_L, log_q_L = chain(eps)
for k in range(len(eps)):
    jacobian = torch.autograd.functional.jacobian(lambda e: chain(e[None])[0][0], eps[k])  # (d, d)
    by_autograd = -0.5 * (eps[k].square() + LOG_2PI).sum() - torch.linalg.slogdet(jacobian)[1]
    assert torch.isclose(log_q_L[k], by_autograd, rtol=1e-12), k
assert all(w @ u_hat > -1 for u_hat, w, _ in maps)  # the constraint holds for the raw draws
print(f"log q_3(z_3), formula:  {log_q_L.numpy().round(6)}\n"
      f"          by autograd:  equal to 1e-12 (relative) at all {len(eps)} points")

# %%
def vaelib_chain(mean, logvar, raw_params):
    """The same chain in vaelib: a FlowPosterior over one data point (N = 1)."""
    flows = []
    for u, w, b in raw_params:
        flow = PlanarFlow(len(u))
        with torch.no_grad():  # its raw parameters: û is computed inside from u and w
            flow.u.copy_(u), flow.w.copy_(w), flow.b.copy_(b)
        flows.append(flow)
    return FlowPosterior(DiagonalGaussian(mean[None], logvar[None]), flows)


q_flow = vaelib_chain(MEAN_2D, LOGVAR_2D, raw)
with torch.no_grad():
    z_lib, log_q_lib = q_flow.transform(eps[:, None, :])  # ε (K, N = 1, d)
assert torch.allclose(z_lib[:, 0], z_L, rtol=1e-12, atol=1e-12)
assert torch.allclose(log_q_lib[:, 0], log_q_L, rtol=1e-12)
assert all(torch.allclose(f.u_hat, m[0], rtol=1e-12) for f, m in zip(q_flow.flows, maps))
print("vaelib.flows.FlowPosterior.transform: the same z_3 and log q_3 (1e-12)")

# %% [markdown]
# **Check 2: the density integrates to 1.** `FlowPosterior.log_prob(z)` evaluates $q_L$ at any
# $z_L$, not only at the flow's own samples: it inverts every map (a planar map has no closed-form
# inverse, but along $w$ it is a monotone scalar equation, solved numerically) and applies the
# formula at the $z_0, \dots, z_{L-1}$ it finds. On a fine grid its density must sum to 1 — in 2-D
# (the three maps above) and in 1-D (four maps); and at the flow's own samples it must give back
# `transform`'s $\log q_L$.

# %%
def grid_2d(limit, size):
    """A square grid: its points (size², 2), its axis values (size,) and one cell's area."""
    axis = torch.linspace(-limit, limit, size)
    zz = torch.stack(torch.meshgrid(axis, axis, indexing="xy"), dim=-1).reshape(-1, 2)
    return zz, axis, (axis[1] - axis[0]).item() ** 2


zz, axis_2d, cell = grid_2d(7.0, 281)
with torch.no_grad():
    mass_2d = (q_flow.log_prob(zz[:, None, :])[:, 0].exp().sum() * cell).item()
    round_trip = q_flow.log_prob(z_lib)  # at the flow's own samples, (K, 1)
assert abs(mass_2d - 1) < 1e-4
assert torch.allclose(round_trip, log_q_lib, atol=1e-8)

g = generator(2)
raw_1d = [(torch.randn(1, generator=g), torch.randn(1, generator=g), torch.randn((), generator=g))
          for _ in range(4)]
q_1d = vaelib_chain(torch.tensor([0.5]), torch.tensor([-0.5]), raw_1d)
z_1d = torch.linspace(-12, 12, 6001)
with torch.no_grad():
    density_1d = q_1d.log_prob(z_1d[:, None, None])[:, 0].exp()  # (G,)
mass_1d = torch.trapezoid(density_1d, z_1d).item()
assert abs(mass_1d - 1) < 1e-8
print(f"∫ q_3 over a 2-D grid = {mass_2d:.6f};  ∫ q_4 over a 1-D grid = {mass_1d:.10f};  "
      "log_prob at the flow's samples = transform's log q (1e-8)")

# %%
# Plotting: the density of q_l after l = 0, 1, 2, 3 planar maps (the same base and maps as above).
def draw_chain(axes, mean, logvar, raw_params, limit=4.0, size=161):
    zz, axis, _ = grid_2d(limit, size)
    for length, ax in enumerate(axes):
        q_l = vaelib_chain(mean, logvar, raw_params[:length])
        with torch.no_grad():
            density = q_l.log_prob(zz[:, None, :])[:, 0].exp().reshape(size, size)
            samples = q_l.sample((300,))[:, 0]
        ax.contourf(axis, axis, density, levels=12, cmap="Oranges")
        ax.scatter(*samples.T, s=2, color=COLORS["prior"], alpha=0.5)
        ax.set(title=f"q_{length}: {length} planar map{'s' if length != 1 else ''}", xlabel="z₁",
               xlim=(-limit, limit), ylim=(-limit, limit), aspect="equal")
    axes[0].set_ylabel("z₂")


fig, axes = plt.subplots(1, 4, figsize=(13, 3.6))
draw_chain(axes, MEAN_2D, LOGVAR_2D, raw)
plt.tight_layout()
plt.show()

# %% [markdown]
# Each planar map bends the density across one hyperplane $w^\top z + b = 0$: points on one side
# are pushed along $\hat u$, points on the other the opposite way, and the $\tanh$ makes the push
# fade with the distance from the hyperplane. One map makes one ridge or one dent; a few in a row
# make curved shapes — and 300 samples (grey) follow the density that the formula computes. A
# planar map has $2d + 1$ parameters: cheap, but each map changes little, so planar flows need many
# maps in high dimension. Section 3's VAE uses another kind, the affine coupling map, whose
# determinant is also cheap and whose scale and shift come from a network of the other coordinates
# and of $x$.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Fitting a flow to an exact posterior
#
# Now the question of the chapter, where every number can be checked: how much of the gap
# $\log p(x) - \mathrm{ELBO}(q) = \mathrm{KL}(q\,\Vert\,p(z\mid x))$ does a flow close? For one
# data point $x$ we fit a non-amortized $q$ — a diagonal Gaussian base with its own $\mu$ and
# $\log\sigma^2$, followed by $L$ planar maps with their own $u, w, b$ — by maximizing the Monte
# Carlo ELBO with Adam (reparameterized samples: $z_L$ is a differentiable function of $\varepsilon$
# and of every parameter, chapter 7). $L = 0$ is the Gaussian of chapter 5.
# `vaelib.gaps.fit_posterior` does this; the fitted $q$ is a `FlowPosterior`.
#
# Two models whose posterior is known exactly on a grid:
#
# * the **1-D nonlinear toy** of chapter 5, $x\mid z \sim \mathcal N((z, z^2), s^2 I_2)$, at a point
#   $x$ above the parabola's vertex: $z$ and $-z$ explain $x_2$ equally well, $x_1$ prefers one
#   of them, and the posterior has two modes of unequal mass;
# * a **2-D toy**, whose posterior is curved, so that a diagonal Gaussian cannot follow it.
#
# For each fitted $q$ we measure the gap twice, independently: as $\log p(x)$ (quadrature) minus the
# ELBO (20,000 fresh samples from $q$, with its standard error), and as
# $\mathrm{KL}(q\,\Vert\,p(z\mid x)) = \int q\,(\log q - \log p(z\mid x))\,dz$ on the grid, with
# $q$'s density from `FlowPosterior.log_prob` and the exact posterior from the toy. That the two
# agree is chapter 5's identity, checked once more for a $q$ that is no longer Gaussian.

# %%
LENGTHS = [0, 1, 2, 4, 8]  # flow lengths L; 0 is the diagonal Gaussian
FIT = dict(steps=600, seed=0)  # Adam steps per fit (4 restarts each; the best ELBO is kept)


def fit_all(model, x):
    """One fitted q per flow length: {L: vaelib.gaps.PosteriorFit}."""
    return {L: fit_posterior(model, x, L, **FIT) for L in LENGTHS}


def kl_on_grid(q, log_posterior, zz, cell):
    """KL(q ‖ p(z|x)) = Σ_g q(z_g) (log q(z_g) − log p(z_g|x)) · cell, on grid points zz (G, d)."""
    with torch.no_grad():
        log_q = q.log_prob(zz[:, None, :])[:, 0]  # (G,)
    return (log_q.exp() * (log_q - log_posterior) * cell).sum().item()


toy_1d = NonlinearToy(noise_std=0.3, curve="parabola")
X_1D = torch.tensor([[0.1, 1.2]])  # above the vertex: two modes, z ≈ +0.85 (heavier) and −0.77
toy_2d = NonlinearToy2D(noise_std=0.3, curve="parabola", a=0.5)
X_2D = torch.tensor([[2.0]])  # z₂ + a z₁² = 2: a banana with two bumps at z₁ ≈ ±1.7
fits_1d, fits_2d = fit_all(toy_1d, X_1D), fit_all(toy_2d, X_2D)

z_line = torch.linspace(-4, 4, 4001)[:, None]  # the 1-D grid, (G, 1)
post_1d = toy_1d.log_posterior_density(X_1D, z_line[:, 0])[:, 0]  # exact log p(z|x), (G,)
rises = post_1d.diff() > 0  # the exact posterior's local maxima on the grid: two modes
assert (rises[:-1] & ~rises[1:]).sum() == 2
minor_mass = (post_1d.exp() * (z_line[:, 0] < 0)).sum().item() * 0.002  # the mode at z < 0
assert 0.05 < minor_mass < 0.25
zz_2d, axis_z, cell_2d = grid_2d(4.0, 321)
post_2d = toy_2d.log_posterior_density(X_2D, zz_2d[:, None, :])[:, 0]  # (G², )

# %%
gaps_toy = {}
for name, fits, post, zz, cell in (("1-D toy", fits_1d, post_1d, z_line, 0.002),
                                   ("2-D toy", fits_2d, post_2d, zz_2d, cell_2d)):
    print(f"{name}: log p(x) = {fits[0].log_marginal.item():.4f} (quadrature)")
    for L, fit in fits.items():
        gap, se = fit.gap.item(), fit.elbo_se.item()  # log p(x) − ELBO(q), and its s.e.
        kl = kl_on_grid(fit.q, post, zz, cell)  # the same gap as KL(q ‖ p(z|x)), on the grid
        print(f"  L = {L}: ELBO {fit.elbo.item():8.4f}   log p(x) − ELBO = {gap:.4f} ± {se:.4f}"
              f"   KL(q ‖ p(z|x)) on the grid = {kl:.4f}")
        assert gap > -3 * se and kl > -1e-6  # a KL is never negative
        assert abs(gap - kl) < 4 * se + 2e-3  # chapter 5's identity, for a flow q
        gaps_toy[name, L] = gap
    assert all(gaps_toy[name, L] < gaps_toy[name, 0] + 3 * fits[L].elbo_se.item() for L in fits)
    assert gaps_toy[name, 8] < gaps_toy[name, 0] / 4  # L = 8 closes most of the Gaussian's gap

# %%
def mass_below_zero(q):
    """q's probability of z < 0 on the 1-D grid."""
    with torch.no_grad():
        density = q.log_prob(z_line[:, None, :])[:, 0].exp()  # (G,)
    return (density * (z_line[:, 0] < 0)).sum().item() * 0.002


minor_share = {L: mass_below_zero(fit.q) for L, fit in fits_1d.items()}
print(f"1-D toy, mass on the lighter mode (z < 0): exact {minor_mass:.3f};  "
      + ",  ".join(f"q with L = {L}: {share:.3f}" for L, share in minor_share.items()))
assert minor_share[0] < 0.01  # the Gaussian sits on the heavier mode
assert abs(minor_share[8] - minor_mass) < 0.03  # eight maps give the lighter mode its share

# %%
# Plotting: q against the exact posterior (1-D), and the gap against the flow length.
STYLES = {0: ":", 2: "--", 8: "-"}  # a second cue besides colour: the line style


def draw_1d(ax):
    ax.fill_between(z_line[:, 0], post_1d.exp(), color=COLORS["posterior"], alpha=0.3,
                    label="exact p(z | x)")
    for L, style in STYLES.items():
        with torch.no_grad():
            density = fits_1d[L].q.log_prob(z_line[:, None, :])[:, 0].exp()
        ax.plot(z_line[:, 0], density, style, color=COLORS["proposal"], label=f"q, L = {L}")
    ax.set(xlabel="z", ylabel="density", title=f"1-D toy, x = {X_1D[0].tolist()}", xlim=(-2.5, 2.5))
    ax.legend(fontsize=9)


def draw_gaps(ax):
    for name, marker in (("1-D toy", "o"), ("2-D toy", "s")):
        gaps = [max(gaps_toy[name, L], 1e-4) for L in LENGTHS]  # floored for the log scale
        ax.plot(LENGTHS, gaps, marker + "-", color=COLORS["elbo"] if marker == "o"
                else COLORS["importance"], label=name)
    ax.set(yscale="log", xlabel="flow length L (planar maps)", ylabel="log p(x) − ELBO (nats)",
           title="The gap KL(q ‖ p(z|x)) against L")
    ax.set_xticks(LENGTHS)
    ax.legend(fontsize=9)


fig, axes = plt.subplots(1, 2, figsize=(12, 4))
draw_1d(axes[0])
draw_gaps(axes[1])
plt.tight_layout()
plt.show()

# %%
# Plotting: the 2-D toy's exact posterior (black contours) and q for L = 0, 2, 8 (filled).
def draw_2d(axes, lengths=(0, 2, 8)):
    size = len(axis_z)
    for ax, L in zip(axes, lengths):
        with torch.no_grad():
            q_density = fits_2d[L].q.log_prob(zz_2d[:, None, :])[:, 0].exp().reshape(size, size)
        ax.contourf(axis_z, axis_z, q_density, levels=10, cmap="Oranges")
        ax.contour(axis_z, axis_z, post_2d.exp().reshape(size, size), levels=6,
                   colors=COLORS["exact"], linewidths=0.8)
        ax.set(title=f"L = {L}: gap {gaps_toy['2-D toy', L]:.3f} nats", xlabel="z₁",
               aspect="equal", xlim=(-3.5, 3.5), ylim=(-3, 2.5))
    axes[0].set_ylabel("z₂")


fig, axes = plt.subplots(1, 3, figsize=(13, 4))
draw_2d(axes)
plt.tight_layout()
plt.show()

# %% [markdown]
# **Reading the numbers and the pictures.** The two measurements of each gap agree — the Monte
# Carlo $\log p(x) - \mathrm{ELBO}$ and the grid's $\mathrm{KL}(q\,\Vert\,p(z\mid x))$, within
# four standard errors and $2\cdot10^{-3}$ (asserted) — so the identity of chapter 5 holds for a
# $q$ that is no longer Gaussian, and so does $\mathrm{KL} \ge 0$. On both toys the gap with 8
# maps is less than a quarter of the Gaussian's (asserted), and no flow does worse than the
# Gaussian by more than three standard errors (asserted); it need not fall at every added map,
# since each fit is a stochastic optimization with local optima (four restarts, the best kept).
#
# The 1-D posterior has two modes (asserted), the lighter one at $z < 0$ holding between 5% and
# 25% of the mass (asserted; the printout gives it). The Gaussian sits on the heavier mode and puts
# less than 1% of its mass on the other (asserted); a planar map in one dimension is a smoothed
# step, $z + \hat u\tanh(wz + b)$, which can split one bump into two, and with eight maps $q$
# gives the lighter mode its share of the mass to within 0.03 (asserted). The 2-D posterior is a
# banana with a bump on each arm: the Gaussian sits at the top, where the arms meet, and cannot
# bend; a few maps stretch it along one arm; eight cover most of the banana. Planar maps are not the
# only choice, nor the best in high dimension; but on these posteriors, which are exact, the claim
# that a richer family closes the gap is checked, not assumed.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Where a VAE's gap comes from: approximation and amortization
#
# A VAE's encoder gives each $x$ its $q_\phi(z\mid x)$ from one shared network. Chapter 5, section 8
# split its gap in two (Cremer, Li & Duvenaud, 2018). With $q^\star_x$ the best member of the
# family $\mathcal Q$ for this one $x$ (the largest ELBO any $q \in \mathcal Q$ reaches):
#
# $$
# \underbrace{\log p(x) - \mathrm{ELBO}(q_\phi(\cdot\mid x))}_{\text{the gap}}
# = \underbrace{\log p(x) -
# \mathrm{ELBO}(q^\star_x)}_{\Delta_{\mathrm{approx}}(x):\ \text{the family}}
# + \underbrace{\mathrm{ELBO}(q^\star_x) -
# \mathrm{ELBO}(q_\phi(\cdot\mid x))}_{\Delta_{\mathrm{amort}}(x):\ \text{the encoder}} .
# $$
#
# A richer family can only shrink $\Delta_{\mathrm{approx}}$; a better encoder only
# $\Delta_{\mathrm{amort}}$. On MNIST nothing is exact, so each term is *estimated*:
#
# * $\log p(x)$ by importance sampling with many samples (chapter 8), with $q^\star_x$ as the
#   proposal (its ELBO is the larger, so its weights usually vary less than $q_\phi$'s), from the
#   same samples as $\mathrm{ELBO}(q^\star_x)$, so that $\Delta_{\mathrm{approx}} \ge 0$ for every
#   image (log of a mean ≥ mean of logs);
# * $q^\star_x$ by optimizing **this $x$'s own** parameters — the encoder's outputs for $x$, started
#   where the encoder puts them, with the decoder and the encoder's weights frozen — by Adam on the
#   ELBO, for all test images at once (`vaelib.gaps.optimize_local_posterior`). For the flow VAE
#   the local parameters are $\mu$, $\log\sigma^2$ and the context $c_\phi(x)$ that conditions its
#   coupling maps.
#
# Both estimates err in known directions: a finite optimization finds a $q$ no better than
# $q^\star_x$, so the measured $\Delta_{\mathrm{approx}}$ is too large and $\Delta_{\mathrm{amort}}$
# too small by the same amount; a finite $K$ makes $\log\hat p(x)$ too small (chapter 4), which
# lowers $\Delta_{\mathrm{approx}}$. Their sum, $\log\hat p(x) - \mathrm{ELBO}(q_\phi)$, is fixed by
# the two end points alone. `vaelib.gaps.inference_gaps` returns all of it per test image.
#
# **The VAEs.** Burda et al.'s one-stochastic-layer model of chapters 8 and 10 (784–200–200–50,
# tanh), trained on the bundled subset for the same few epochs: once with chapter 8's Gaussian $q$,
# once with a flow $q$ — `VAEConfig(posterior="flow", flow_length=4)`: the encoder
# also outputs a context $c_\phi(x)$, and the Gaussian is pushed through four **affine coupling**
# maps (Dinh et al., 2017; the RealNVP layer): each keeps half of the coordinates, $z_a$, and
# scales and shifts the other half, $z_b \mapsto z_b\odot e^{s} + t$ with
# $(s, t)$ = a small network of $(z_a, c_\phi(x))$. Its Jacobian is triangular, so
# $\log\lvert\det\rvert = \sum_j s_j$; the halves alternate from map to map. The coupling maps
# start as the identity, so both VAEs start from the same $q$, and `torch.manual_seed(0)` before
# each gives them the same decoder and encoder weights (the flow's extra weights are drawn after
# them) and, with `seed=0`, the same minibatches.
#
# The two do not train on the same *estimator*, though. Chapter 8's Gaussian VAE has its KL in
# closed form (chapter 6): only the reconstruction term is sampled. A flow's KL has no closed form,
# so its ELBO is estimated from the sample as a whole, $\log p(x, z) - \log q(z\mid x)$, whose
# gradient is noisier. A third run separates the two: the Gaussian VAE trained on that same
# estimator — chapter 10's $\mathrm{IWAE}_1$, which *is* the ELBO estimated from one sample,
# `train(..., objective="iwae", num_samples=1)`.

# %%
torch.set_default_dtype(torch.float32)  # the neural VAEs: float32
mnist = load_mnist_subset()
train_images = to_unit_interval(mnist.train_images)  # (N, 784) grey levels
test_bin = fixed_binarization(to_unit_interval(mnist.test_images), seed=0)  # fixed binary test set
EPOCHS, BATCH, LR, FLOW_LENGTH = 5, 100, 2e-3, 4
NUM_TEST = 100  # the same first 100 test images for every number below
FLOW = dict(posterior="flow", flow_length=FLOW_LENGTH)
MONTE_CARLO_KL = dict(objective="iwae", num_samples=1)  # IWAE_1: log p(x, z) − log q(z|x)
RUNS = {"Gaussian q": ({}, {}), "Gaussian q, MC KL": ({}, MONTE_CARLO_KL), "flow q": (FLOW, {})}


def train_vae(posterior, objective):
    """Chapter 8's model with the given q family and objective, trained by vaelib: (model, s)."""
    torch.manual_seed(0)  # the same initial weights (and seed=0: the same minibatches)
    model = VAE(VAEConfig.preset("burda", **posterior))
    history = train(model, train_images, epochs=EPOCHS, batch_size=BATCH, lr=LR, seed=0,
                    progress=False, **objective)
    assert len(history) == EPOCHS and all(math.isfinite(e) for e in history.train_elbo)
    return model, history.seconds[-1]


vaes = {}
for name, (posterior, objective) in RUNS.items():
    vaes[name], seconds = train_vae(posterior, objective)
    print(f"{name:17s} {EPOCHS} epochs in {seconds:.1f} s, "
          f"{sum(p.numel() for p in vaes[name].parameters()):,} weights")

# %%
x_test = test_bin[:NUM_TEST]
gaps_vae = {name: inference_gaps(model, x_test, steps=150, num_samples=8, eval_samples=1000,
                                 seed=0) for name, model in vaes.items()}
for name, g in gaps_vae.items():
    s = g.summary()
    print(f"{name}:\n  log p̂(x) {s['log_likelihood']:8.2f}   ELBO(q⋆) {s['elbo_local']:8.2f}   "
          f"ELBO(q_φ) {s['elbo_encoder']:8.2f}\n  Δ_approx {s['approximation_gap']:5.2f} ± "
          f"{s['approximation_gap_se']:.2f}   Δ_amort {s['amortization_gap']:5.2f} ± "
          f"{s['amortization_gap_se']:.2f}   total {s['total_gap']:5.2f} ± {s['total_gap_se']:.2f}")
    # the decomposition is exact, image by image
    assert torch.allclose(g.approximation_gap + g.amortization_gap, g.total_gap, atol=1e-9)
    assert (g.approximation_gap >= 0).all()  # log mean w ≥ mean log w on the same samples
    # both gaps are there: each mean more than 3 standard errors above zero
    assert s["approximation_gap"] > 3 * s["approximation_gap_se"]
    assert s["amortization_gap"] > 3 * s["amortization_gap_se"]

# %% [markdown]
# **Reading the decomposition.** Both gaps are real for every run: each is more than three
# standard errors above zero (asserted), and they add up to the total exactly, image by image
# (asserted; by construction, since all three numbers share their end points). The printout gives
# their sizes at this budget. Two caveats, from the estimators' known directions: 150 Adam steps
# find a $q$ no better than $q^\star_x$, so part of what shows as $\Delta_{\mathrm{approx}}$ is
# unfinished optimization; and for the flow VAE the local optimization moves $\mu$, $\log\sigma^2$
# and the context but not the coupling maps' weights (shared by all $x$), so its
# $\Delta_{\mathrm{approx}}$ is the gap of the flow *this encoder trained*, not of the best coupling
# flow of that size.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. A Gaussian-$q$ VAE against a flow-$q$ VAE
#
# Section 3 asked where each model's gap comes from. The last question is the one a practitioner
# asks: does the flow make a better *model*? The three VAEs were trained for the same epochs on the
# same minibatches (seed 0) from the same random state (`torch.manual_seed(0)` before each is built;
# the flow VAE has more weights — its encoder's extra context outputs and the coupling networks — so
# its starting weights cannot be identical, only drawn the same way). We compare, **on the same test
# images**:
#
# * the test $\log p(x)$, estimated with $K = 5000$ importance samples (chapter 8's estimator,
#   `vaelib.evaluate.evaluate`, with each model's own $q$ as the proposal: for the flow VAE,
#   $\log q$ is computed through the flow);
# * the ELBO, and the gap $\log\hat p(x) - \mathrm{ELBO}$;
#
# and for each, **paired** differences, image by image, with the standard error of their mean:
# flow − Gaussian (the two VAEs as a user would train them), and the two differences that tell the
# family from the estimator: flow − Gaussian with the Monte Carlo KL (the same estimator, another
# family), and Gaussian − Gaussian with the Monte Carlo KL (the same family, another estimator).
# Pairing removes the image-to-image spread (some digits are far harder than others, by tens of
# nats) that would swamp an unpaired comparison.

# %%
K_TEST = 5000  # Burda et al.'s K
evals = {name: evaluate(model, x_test, num_samples=K_TEST, iwae_samples=5, seed=0, progress=False)
         for name, model in vaes.items()}
for name, ev in evals.items():
    s = ev.summary()
    print(f"{name:17s} log p(x) {s['log_likelihood']:8.2f}   IWAE_5 {s['iwae_5']:8.2f}   ELBO "
          f"{s['elbo']:8.2f}   gap {s['log_likelihood'] - s['elbo']:5.2f}   (ESS "
          f"{s['ess_mean']:.0f} of {K_TEST})")
    assert s["elbo"] < s["iwae_5"] < s["log_likelihood"]  # chapter 4's ordering of the bounds


# %%
MEASURES = {  # per test image, (NUM_TEST,) each
    "log p(x)": lambda name: evals[name].log_likelihood,
    "ELBO": lambda name: evals[name].elbo,
    "gap": lambda name: evals[name].log_likelihood - evals[name].elbo,
    "Δ_approx": lambda name: gaps_vae[name].approximation_gap,
    "Δ_amort": lambda name: gaps_vae[name].amortization_gap,
}
PAIRS = [("flow q", "Gaussian q"), ("flow q", "Gaussian q, MC KL"),
         ("Gaussian q", "Gaussian q, MC KL")]


def paired(values, first, second):
    """first − second, image by image: (mean, paired s.e., unpaired s.e.)."""
    a, b = values(first), values(second)
    unpaired = math.sqrt(a.var().item() / len(a) + b.var().item() / len(b))
    return (a - b).mean().item(), (a - b).std().item() / math.sqrt(len(a)), unpaired


differences = {(first, second, what): paired(values, first, second)
               for first, second in PAIRS for what, values in MEASURES.items()}
for first, second in PAIRS:
    print(f"{first} − {second}:")
    for what in MEASURES:
        mean, se, unpaired = differences[first, second, what]
        verdict = "within 2 s.e. of 0" if abs(mean) < 2 * se else (
            "above 0 by > 2 s.e." if mean > 0 else "below 0 by > 2 s.e.")
        print(f"  {what:8s} {mean:+6.2f} ± {se:.2f} (paired; unpaired s.e. {unpaired:.2f}): "
              f"{verdict}")
# pairing pays where images differ most: log p(x) and ELBO vary by tens of nats between images
assert all(differences[pair + (what,)][1] < differences[pair + (what,)][2] / 3
           for pair in PAIRS for what in ("log p(x)", "ELBO"))
# the estimator matters: the same Gaussian family, trained with its KL in closed form, is better
estimator_cost, estimator_se, _ = differences["Gaussian q", "Gaussian q, MC KL", "log p(x)"]
assert estimator_cost > 2 * estimator_se
# ... and at this budget the family matters less than that: same estimator, flow against Gaussian
like_for_like = differences["flow q", "Gaussian q, MC KL", "log p(x)"][0]
assert abs(like_for_like) < estimator_cost / 2

# %%
# Plotting: the gap split in two for each run (left), and two paired differences (right).
def draw_decomposition(ax):
    names = list(gaps_vae)
    approx = [gaps_vae[n].approximation_gap.mean().item() for n in names]
    amort = [gaps_vae[n].amortization_gap.mean().item() for n in names]
    se = [gaps_vae[n].summary()["total_gap_se"] for n in names]
    labels = [n.replace(", ", ",\n") for n in names]
    ax.bar(labels, approx, color=COLORS["posterior"], label="Δ_approx (the family)")
    ax.bar(labels, amort, bottom=approx, color=COLORS["proposal"], hatch="//",
           label="Δ_amort (the encoder)", yerr=se, capsize=4)
    ax.set(ylabel="nats per test image", title=f"log p̂(x) − ELBO(q_φ), {NUM_TEST} test images")
    ax.legend(fontsize=9)


def draw_paired(ax, pairs=PAIRS[1:]):
    bins = torch.linspace(-15, 15, 31).numpy()
    for (first, second), color, hatch in zip(pairs, ("importance", "elbo"), ("", "\\\\")):
        diff = evals[first].log_likelihood - evals[second].log_likelihood
        diff = diff.clamp(-15, 15)  # beyond ±15 nats: counted in the end bins
        mean, se, _ = differences[first, second, "log p(x)"]
        ax.hist(diff.numpy(), bins=bins, color=COLORS[color], alpha=0.55, hatch=hatch,
                label=f"{first} − {second}: {mean:+.2f} ± {2 * se:.2f} (2 s.e.)")
    ax.axvline(0, color=COLORS["exact"], linewidth=1)
    ax.set(xlabel="log p(x) per test image: difference between two VAEs (nats)",
           ylabel="test images", title=f"Paired differences, K = {K_TEST}")
    ax.legend(fontsize=8, loc="upper left")


fig, axes = plt.subplots(1, 2, figsize=(13, 4.4))
draw_decomposition(axes[0])
draw_paired(axes[1])
plt.tight_layout()
plt.show()

# %% [markdown]
# **What a few seconds of CPU can and cannot show.** The printout gives each paired difference with
# its standard error and says whether it lies more than two standard errors from zero. What is
# asserted: each model's bounds in chapter 4's order
# ($\mathrm{ELBO} < \mathrm{IWAE}_5 < \log\hat p(x)$); both gaps present in every run; the
# decomposition exact; pairing shrinking the standard error of the $\log p(x)$ and ELBO differences
# more than threefold, because the test images differ from each other by tens of nats while each
# image's numbers move together; and the estimator's cost: the same Gaussian VAE trained on the
# one-sample estimate of the whole ELBO ends with a lower test $\log p(x)$ than when its KL is in
# closed form, by more than two paired standard errors.
#
# That last number is why the plain comparison, flow − Gaussian, misleads here. After five epochs
# the flow VAE can be behind chapter 8's Gaussian VAE, and it would be easy to blame the family;
# but the flow had to train on the noisier estimator, and the Gaussian VAE trained on that same
# estimator is about as far behind. Against it, the like-for-like difference is the one that speaks
# of the family, and at this budget it is less than half the estimator's effect (asserted; the
# printout says whether it is within two standard errors of zero).
#
# What this budget cannot settle is the question the comparison is for. The paired standard error
# covers the choice of test images and the importance sampler's noise, not the spread from one
# training run to another, which chapter 10 measured at 0.2 to 0.6 nats of $\log p(x)$ per model
# for this architecture after six epochs; and five epochs are far from the thousands of the
# literature, where a flow's extra capacity has time to pay (Kingma et al., 2016, inverse
# autoregressive flows; Cremer et al. find that in trained VAEs the amortization gap is often the
# larger part, so a better encoder can matter more than a richer family). To tell the families
# apart, repeat the runs over seeds, as chapter 10's benchmark does, and train longer — on a GPU,
# with the command line: `python -m vaelib.train --posterior flow --flow-length 4 ...`, against the
# Gaussian VAE trained with `--objective iwae --k 1` as well as the default. The two remedies
# combine: `--objective iwae --k 5 --encoder-gradient dreg` with a flow trains chapter 10's tighter
# bound with this chapter's richer $q$ (DReG's $\log q$ at fixed encoder weights inverts the
# coupling maps, which is exact).

# %% [markdown]
# **Why the constraint on $\hat u$.** One check before the mistakes: with the raw $u$ and
# $w^\top u < -1$, a planar map folds the line back on itself — not invertible, so two $z_0$ land
# on the same $z$, and the formula, which counts one of them, gives a wrong density; with $\hat u$
# the same raw numbers give a monotone map.

# %%
u_raw, w_1, b_0 = torch.tensor([-3.0]), torch.tensor([1.0]), torch.tensor(0.0)  # wᵀu = −3
z_fold = torch.linspace(-3, 3, 601)[:, None]
folded, _ = planar_map(z_fold, u_raw, w_1, b_0)
unfolded, _ = planar_map(z_fold, constrained_u(u_raw, w_1), w_1, b_0)
assert (folded[:, 0].diff() < 0).any() and (unfolded[:, 0].diff() > 0).all()
print(f"raw u: f decreases on part of the line; û = {constrained_u(u_raw, w_1).item():+.3f}: "
      "f increases everywhere")

# %% [markdown] slideshow={"slide_type": "slide"}
# > **Classic mistakes**
# >
# > * **Adding the log-determinants.** A map that stretches a neighbourhood spreads the same
# >   probability over more volume, so the density *falls*: $\log q_L = \log q_0 - \sum_l
# >   \log\lvert\det\rvert$.
# > * **Each determinant at the wrong point.** $\det\partial f_l/\partial z_{l-1}$ is evaluated at
# >   the map's input $z_{l-1}$, not at its output $z_l$ or at the final $z_L$; and $q_0$ at $z_0$.
# > * **Forgetting the base's own scale.** $z_0 = \mu + \sigma\odot\varepsilon$ is itself a map:
# >   $\log q_0(z_0) = \log\mathcal N(\varepsilon; 0, I) - \sum_j\log\sigma_j$.
# > * **A planar map without the constraint.** With $w^\top u < -1$ the map folds (above) and the
# >   formula is no longer a density; use $\hat u$.
# > * **Expecting a longer flow to find every mode.** The ELBO's $\mathrm{KL}(q\,\Vert\,p)$ charges
# >   $q$ heavily for mass where $p(z\mid x)$ is small, so a $q$ sitting on one mode has little
# >   reason to grow across a valley towards another. Section 2's 1-D modes are close, with a
# >   shallow valley between them, and the flows find both; with a deep valley, a fit can settle on
# >   one mode and fit it better with every added map. `fit_posterior` keeps the best of several
# >   restarts, which helps, and guarantees nothing.
# > * **The flow's KL in closed form.** There is none: a flow VAE's KL term, and its ELBO, are
# >   Monte Carlo estimates from the same samples as the reconstruction term.
# > * **Comparing two families trained on different estimators.** A Gaussian VAE with its KL in
# >   closed form against a flow VAE whose whole ELBO is sampled measures the estimator as much as
# >   the family (section 4); compare with the Gaussian trained on the same estimator too.
# > * **Comparing the two VAEs by their ELBO, or with unpaired errors.** The ELBO mixes the model
# >   with its gap; compare $\log p(x)$ (large $K$), on the same test images, with paired standard
# >   errors — and over several training seeds before calling a winner.
# > * **A short local optimization.** Too few steps make $\Delta_{\mathrm{approx}}$ too large and
# >   $\Delta_{\mathrm{amort}}$ too small by the same amount; report the steps.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * A chain of invertible maps has the density
#   $\log q_L(z_L) = \log q_0(z_0) - \sum_l \log\lvert\det\partial f_l/\partial z_{l-1}\rvert$,
#   computed in the same pass that draws $z_L$ (checked against autograd's Jacobian of the whole
#   chain, and to integrate to 1 in 1-D and 2-D).
# * A planar map $z + \hat u\tanh(w^\top z + b)$ has determinant $1 + \tanh'(\cdot)\,w^\top\hat u$
#   (the matrix determinant lemma, $O(d)$), and $\hat u$ keeps it invertible for any raw
#   parameters.
# * On exact posteriors, a flow fitted by the ELBO closes most of the Gaussian's gap
#   $\mathrm{KL}(q\,\Vert\,p(z\mid x))$: with 8 planar maps, to less than a quarter of it on both
#   toys (asserted; the measured gaps are printed in section 2), the gap measured twice, as
#   $\log p(x) - \mathrm{ELBO}$ and as a KL on the grid; in 1-D it splits into two bumps and
#   gives the lighter mode, which the Gaussian misses, its share of the mass.
# * A VAE's gap is the approximation gap (the family) plus the amortization gap (the encoder);
#   both are present in every run after a few epochs on MNIST (asserted; section 3's printout).
# * A flow VAE against a Gaussian VAE on the same test images needs paired standard errors, the
#   same training estimator (a flow's KL is sampled; the Gaussian's closed-form KL trains faster,
#   asserted) and several seeds; a few CPU seconds cannot settle which family gives the better
#   model.
# * `vaelib.flows`: `PlanarFlow`, `AffineCoupling`, `FlowPosterior` (`transform(eps)`,
#   `rsample_with_log_prob`, `log_prob`); `vaelib.gaps`: `fit_posterior`, `inference_gaps`;
#   `VAEConfig(posterior="flow", flow_length=L)`.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# **Exercise 1 — the planar map's log-determinant.** Write `planar_log_det(z, u_hat, w, b)`: for
# points `z` of shape `(K, d)` and one planar map $f(z) = z + \hat u\tanh(w^\top z + b)$ (`u_hat`
# and `w` of shape `(d,)`, `b` a 0-dimensional tensor, with $w^\top\hat u \ge -1$), return
# $\log\lvert\det\partial f/\partial z\rvert$ at each point, shape `(K,)`. Derive it by hand: the
# check refuses autograd, a determinant of the $d\times d$ Jacobian, and `vaelib.flows` (and this
# chapter's `planar_map`; a copy of its source would pass, so derive it again). It runs fixed cases
# and one drawn at random each time, in dimensions 1 to 6.

# %% tags=["solution"]
def planar_log_det(z, u_hat, w, b):
    """The log absolute Jacobian determinant of the planar map at each point: (K, d) -> (K,)."""
    # the matrix determinant lemma: det(I + tanh'(a) û wᵀ) = 1 + tanh'(a) wᵀû, a = wᵀz + b
    tanh_prime = 1 - torch.tanh(z @ w + b).square()
    return torch.log(torch.abs(1 + tanh_prime * (u_hat @ w)))


# %%
from vaelib.exercises import check_planar_log_det

check_planar_log_det(planar_log_det);

# %% [markdown]
# **Exercise 2 — the push-forward density of a chain.** Write `push_forward(eps, mean, logvar,
# maps)`: from base noise `eps` `(K, d)`, the base Gaussian's `mean` and `logvar` (each `(d,)`),
# and `maps`, a list of planar maps' `(u_hat, w, b)` applied in order, return `(z_L, log_q)`: the
# points after the last map, `(K, d)`, and $\log q_L(z_L)$, `(K,)`. With an empty list it is the
# Gaussian itself. (You may use your `planar_log_det`; the check refuses autograd, determinants and
# `vaelib.flows`.)

# %% tags=["solution"]
def push_forward(eps, mean, logvar, maps):
    """The chain's output points and their log-density: (K, d) -> ((K, d), (K,))."""
    z = mean + torch.exp(0.5 * logvar) * eps  # z_0
    log_q = -0.5 * (eps.square() + LOG_2PI + logvar).sum(-1)  # log q_0(z_0)
    for u_hat, w, b in maps:  # each log-determinant at the map's own input
        log_q = log_q - planar_log_det(z, u_hat, w, b)
        z = z + u_hat * torch.tanh(z @ w + b)[:, None]
    return z, log_q


# %%
from vaelib.exercises import check_push_forward

check_push_forward(push_forward);

# %% [markdown]
# **Going further (no check).** (a) A *radial* flow (Rezende & Mohamed, 2015) moves points towards
# or away from a centre $z_c$: $f(z) = z + \beta h(\alpha, r)(z - z_c)$ with $r = \lVert z -
# z_c\rVert$, $h = 1/(\alpha + r)$. Derive its log-determinant (the Jacobian is
# $(1 + \beta h) I + \beta h'(r)\,(z - z_c)(z - z_c)^\top / r$, again identity plus rank one) and
# fit section 2's 2-D posterior with it. (b) Section 3's decomposition says how much of the flow
# VAE's gap is amortization: give its encoder twice the hidden units and measure again.
