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
# # Chapter 1 — The marginal likelihood
#
# *Symbols: see the course's [notation page](../docs/notation.md).*
#
# A variational autoencoder is a **latent-variable model**: a random code $z$ is drawn from a simple
# distribution and a decoder turns it into data $x$. Such a model assigns each data point the
# probability
#
# $$p_\theta(x) = \int p_\theta(x \mid z)\, p(z)\, dz ,$$
#
# the **marginal likelihood**. Training means making $p_\theta(x)$ large on the data, so this
# integral is the one number the whole course is about. Here we compute it *exactly*, in the two
# cases where that is possible, and see why it is out of reach for a neural decoder. Every later
# chapter (Monte Carlo, importance sampling, the ELBO) is a way around this integral.
#
# In this chapter you will
#
# 1. write the model's densities from their formulas and check them against SciPy;
# 2. see $p(x)$ as a *continuous mixture*: Gaussian "slices" threaded along a curve;
# 3. see why the integral is intractable for a neural decoder;
# 4. derive $p(x) = \mathcal N(b,\, WW^\top + s^2 I)$ for a linear decoder two ways, and check it by
#    quadrature, sampling and SciPy;
# 5. state maximum likelihood as the goal, and reach it for the linear model.

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
from ipywidgets import FloatSlider, SelectionSlider
from matplotlib.colors import PowerNorm
from matplotlib.patches import Ellipse
from scipy import integrate, stats

from vaelib.device import seed_everything
from vaelib.figures import COLORS, FigureExplorer, reference_line, static_figure, use_course_style
from vaelib.toy import LinearGaussian, NonlinearToy

use_course_style()
generator = seed_everything(0)
torch.set_default_dtype(torch.float64)  # exact math: float64 throughout this chapter
LOG_2PI = math.log(2 * math.pi)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. A latent-variable model
#
# The model tells a two-step story of how each data point is made:
#
# $$
# z \sim p(z) = \mathcal N(0,\, I_d), \qquad
# x \mid z \sim p_\theta(x \mid z) = \mathcal N\big(f_\theta(z),\; s^2 I_D\big).
# $$
#
# - $z \in \mathbb R^d$ is the **latent code**, never observed; $p(z)$ is the **prior**.
# - $x \in \mathbb R^D$ is the **data**; $f_\theta : \mathbb R^d \to \mathbb R^D$ is the **decoder**
#   (a neural network in a VAE, a parabola or a line in this chapter), $s > 0$ the noise's standard
#   deviation, and $\theta$ collects the decoder's parameters and $s$.
#
# The joint density is $p_\theta(x, z) = p(z)\, p_\theta(x \mid z)$. With both factors Gaussian,
# their logs are sums over coordinates:
#
# $$
# \log p(z) = -\frac12 \sum_{j=1}^{d} \big(z_j^2 + \log 2\pi\big), \qquad
# \log p_\theta(x \mid z) = -\frac12 \sum_{i=1}^{D} \Big(\frac{(x_i - f_{\theta,i}(z))^2}{s^2}
#     + \log 2\pi s^2\Big).
# $$
#
# Only $x$ is observed, so the probability the model gives to $x$ sums the joint over every code
# that could have produced it (the sum rule):
#
# $$
# \boxed{\;p_\theta(x) = \int p_\theta(x \mid z)\, p(z)\, dz
#       = \mathbb E_{z \sim p(z)}\big[p_\theta(x \mid z)\big]\;}
# $$
#
# Here are the two log densities written straight from the formulas:

# %%
def log_prior(z):
    """log N(z; 0, I) = -½ Σ_j (z_j² + log 2π): (..., d) -> (...)."""
    return -0.5 * (z**2 + LOG_2PI).sum(dim=-1)


def log_likelihood(x, z, decode, noise_std):
    """log N(x; f(z), s² I) = -½ Σ_i [(x_i - f_i(z))² / s² + log 2π s²]: x (N, D), z (N, d) -> (N,).
    """
    return -0.5 * (((x - decode(z)) / noise_std) ** 2 + math.log(2 * math.pi * noise_std**2)).sum(
        dim=-1
    )


# %% [markdown]
# Our first model is the **nonlinear toy** of `vaelib.toy`: a 1-D latent and the parabola
# $f(z) = (z,\, a z^2)$ as decoder (here $a = 1$ and $s = 0.3$), so $d = 1$ and $D = 2$. `sample`
# runs the story forward (*ancestral sampling*: first $z$, then $x$ given $z$). We check our two
# functions against the library and against SciPy's independent normal density.

# %%
toy = NonlinearToy(noise_std=0.3, curve="parabola", a=1.0)
x_toy, z_toy = toy.sample(2000, generator=generator)  # (N, 2), (N, 1)

ours = log_prior(z_toy) + log_likelihood(x_toy, z_toy, toy.decode, toy.noise_std)
scipy_joint = (stats.norm.logpdf(z_toy.numpy()).sum(-1)
               + stats.norm.logpdf(x_toy.numpy(), loc=toy.decode(z_toy).numpy(), scale=0.3).sum(-1))
assert torch.allclose(ours, toy.log_joint(x_toy, z_toy), rtol=0, atol=1e-12)
assert np.allclose(ours.numpy(), scipy_joint, rtol=0, atol=1e-12)
print(f"log p(x, z) of the first point: {ours[0]:.6f} (ours), {scipy_joint[0]:.6f} (SciPy)")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The toy model: a curve in the plane
#
# The decoder maps the line of codes onto a parabola; the noise blurs each point off the curve by
# about $s = 0.3$. Colouring every sample by the code it came from shows the story: $z$ picks a
# place on the curve, the noise does the rest. The histogram on the left is the prior $p(z)$.

# %%
z_line = torch.linspace(-3.2, 3.2, 400)[:, None]  # (400, 1)
curve = toy.decode(z_line)  # (400, 2): the decoder's image, f(z)

fig, (ax_z, ax_x) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [1, 1.5]})
ax_z.hist(
    z_toy[:, 0].numpy(), bins=50, density=True, color=COLORS["prior"], alpha=0.5, label="samples"
)
ax_z.plot(
    z_line[:, 0],
    log_prior(z_line).exp(),
    color=COLORS["prior"],
    label="$p(z) = \\mathcal{N}(0, 1)$",
)
ax_z.set(title="The code: $z \\sim p(z)$", xlabel="$z$", ylabel="density")
ax_z.legend()
points = ax_x.scatter(*x_toy.T, c=z_toy[:, 0], cmap="coolwarm", s=6, vmin=-2.5, vmax=2.5)
ax_x.plot(*curve.T, color="black", lw=1.5, label="decoder's image $f(z) = (z, z^2)$")
ax_x.set(title="The data: $x \\mid z \\sim \\mathcal{N}(f(z), s^2 I_2)$", xlabel="$x_1$",
         ylabel="$x_2$", xlim=(-3.5, 3.5), ylim=(-1.2, 7))
fig.colorbar(points, ax=ax_x, label="the code $z$ each $x$ came from")
ax_x.legend(loc="upper center")
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. $p(x)$ as a sum of slices
#
# The integral over $z$ is the limit of a Riemann sum on a grid $z_g$ with spacing $\Delta z$:
#
# $$
# p(x) = \int p(z)\, \mathcal N\big(x;\, f(z),\, s^2 I\big)\, dz
#      \;\approx\; \sum_g \underbrace{\Delta z\; p(z_g)}_{\text{weight}}\;
#        \underbrace{\mathcal N\big(x;\, f(z_g),\, s^2 I\big)}_{\text{a round blob at } f(z_g)} .
# $$
#
# Each term is a **slice**: a round Gaussian blob of width $s$ centred on the curve at $f(z_g)$,
# weighted by how probable its code is. The weights sum to about 1, so the sum is a mixture of
# Gaussians, and in the limit $\Delta z \to 0$ the marginal is a **continuous mixture**: infinitely
# many blobs threaded along the decoder's curve. Computed in log space (the sum of exponentials
# becomes a `logsumexp`, chapter 2 says why):

# %%
def riemann_log_marginal(model, x, z_step, z_limit=6.0):
    """log Σ_g Δz p(z_g) p(x|z_g) on the grid z_g = -z_limit, ..., z_limit (step Δz): x (N, 2) ->
    (N,).
    """
    z_grid = torch.arange(-z_limit, z_limit + z_step / 2, z_step)[:, None, None]  # (G, 1, 1)
    chunks = []
    for x_chunk in x.split(4096):  # 4096 points at a time bounds the memory (G × 4096 slices)
        # each weighted slice, (G, n)
        log_slices = model.log_joint(x_chunk, z_grid) + math.log(z_step)
        chunks.append(torch.logsumexp(log_slices, dim=0))
    return torch.cat(chunks)


# A grid over the data plane, for pictures.
x1_axis, x2_axis = torch.linspace(-3.5, 3.5, 121), torch.linspace(-1.5, 7.0, 141)
X1, X2 = torch.meshgrid(x1_axis, x2_axis, indexing="xy")  # (141, 121) each
x_plane = torch.stack([X1.flatten(), X2.flatten()], dim=-1)  # (M, 2)

# %% [markdown]
# The library's `toy.log_marginal` does the same sum with the trapezoid rule on 4001 points over
# $z \in [-10, 10]$. We check three things: our Riemann sum with a fine step agrees with it, both
# agree with SciPy's adaptive quadrature `integrate.quad`, and the density integrates to 1 over the
# plane. (A Riemann sum of a smooth integrand that vanishes at both ends converges very fast: once
# the step is a fraction of the integrand's width, here about $s / \lVert f'(z)\rVert$, the error
# is far below $10^{-8}$.)

# %%
log_p_fine = riemann_log_marginal(toy, x_toy[:500], z_step=0.02)
assert torch.allclose(log_p_fine, toy.log_marginal(x_toy[:500]), rtol=0, atol=1e-8)
# p(x), for pictures
density_exact = riemann_log_marginal(toy, x_plane, z_step=0.02).exp().reshape(X1.shape)


def quad_marginal(model, x_point):
    """p(x) = ∫ p(z) p(x|z) dz by SciPy's adaptive quadrature, for one x of shape (2,)."""
    def integrand(z):
        return math.exp(model.log_joint(x_point[None], torch.tensor([[z]])).item())

    return integrate.quad(integrand, -10, 10, points=[-1, 0, 1], epsabs=0, epsrel=1e-11, limit=200)[
        0
    ]


for x_point in x_toy[:4]:
    p_quad, p_lib = quad_marginal(toy, x_point), toy.log_marginal(x_point[None]).exp().item()
    assert math.isclose(p_quad, p_lib, rel_tol=1e-8), (p_quad, p_lib)
    print(f"x = ({x_point[0]:+.3f}, {x_point[1]:+.3f}):  p(x) = {p_lib:.10f} (vaelib)  "
          f"{p_quad:.10f} (quad)")

# ∫∫ p(x) dx1 dx2 = 1: a midpoint sum over a box holding all but ~1e-5 of the mass (|z| < 4.2).
big_axis1, big_axis2 = torch.linspace(-5, 5, 101), torch.linspace(-2, 19, 211)  # cells 0.1 × 0.1
cell_area = (big_axis1[1] - big_axis1[0]) * (big_axis2[1] - big_axis2[0])
big_plane = torch.stack(torch.meshgrid(big_axis1, big_axis2, indexing="xy"), dim=-1).reshape(-1, 2)
total_probability = (
    riemann_log_marginal(toy, big_plane, z_step=0.05).exp().sum() * cell_area
).item()
assert abs(total_probability - 1) < 1e-3, total_probability
print(f"∫∫ p(x) dx = {total_probability:.5f}")

# %% [markdown]
# Now the picture. Left: five slices $\Delta z\, p(z_g)\, \mathcal N(x; f(z_g), s^2 I)$ alone, with
# $\Delta z = 1$. Middle: the sum of all slices with $\Delta z = 0.5$, a string of beads. Right: the
# marginal $p(x)$ itself: the beads have merged into a smooth, curved density, heaviest near the
# vertex where the prior puts most of its codes. All three share one colour scale (colour grows
# like $\sqrt{\text{density}}$, so the faint arms show).

# %%
def show_density(ax, density, title, vmax):
    mesh = ax.pcolormesh(X1, X2, density, cmap="viridis", norm=PowerNorm(0.5, vmin=0, vmax=vmax),
                         shading="auto")
    ax.set(title=title, xlabel="$x_1$", ylabel="$x_2$", xlim=(-3.5, 3.5), ylim=(-1.5, 7.0))
    ax.grid(False)
    return mesh


vmax = density_exact.max().item()
z_slices = torch.arange(-2.0, 2.01, 1.0)  # five codes, Δz = 1
log_five = toy.log_joint(x_plane, z_slices[:, None, None]).T.reshape(*X1.shape, -1)  # (141, 121, 5)
density_beads = riemann_log_marginal(toy, x_plane, z_step=0.5).exp().reshape(X1.shape)

fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), sharey=True)
show_density(axes[0], log_five.exp().sum(-1), "five slices ($\\Delta z = 1$)", vmax)
for z_g in z_slices:
    f_g = toy.decode(z_g.reshape(1, 1))[0]
    axes[0].annotate(
        f"$z = {z_g:.0f}$", f_g, xytext=(8, 4), textcoords="offset points", color="white"
    )
show_density(axes[1], density_beads, "sum of slices, $\\Delta z = 0.5$", vmax)
mesh = show_density(axes[2], density_exact, "the marginal $p(x)$ ($\\Delta z \\to 0$)", vmax)
for ax in axes:
    ax.plot(*curve.T, color="white", lw=0.8, ls=":")
fig.colorbar(mesh, ax=axes, label="density", shrink=0.9)
plt.show()

# %% [markdown]
# The marginal is *not* Gaussian, although every slice is: a curved decoder bends the mixture into a
# banana. And the sum-of-slices view explains why $p(x)$ integrates to 1: each slice integrates to
# its weight $\Delta z\, p(z_g)$ over the plane, and the weights sum to $\int p(z)\,dz = 1$.
#
# One more thing to notice: **a density is not a probability**. Only its integral is 1; its values
# can be anything positive. With less noise the blobs are taller, and at $s = 0.1$ the toy's
# density at the vertex is above 1.

# %%
sharp_toy = NonlinearToy(noise_std=0.1, curve="parabola", a=1.0)
peak = sharp_toy.log_marginal(torch.zeros(1, 2)).exp().item()
print(f"peak of p(x) for s = 0.3: {vmax:.3f};  p(0, 0) for s = 0.1: {peak:.3f}")
assert peak > 1.0

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Why $p(x)$ is intractable for a neural decoder
#
# Two routes compute an integral exactly or nearly so, and a neural decoder blocks both.
#
# **A closed form** needs the exponent of the integrand,
# $-\tfrac12\lVert z\rVert^2 - \tfrac1{2s^2}\lVert x - f_\theta(z)\rVert^2$, to be quadratic in $z$:
# then it is an unnormalized Gaussian in $z$, and Gaussian integrals are known (section 5). That
# holds exactly when $f_\theta$ is affine. A neural network with nonlinear activations gives no such
# form, and no other closed form is known.
#
# **Quadrature** replaces the integral by a sum over a grid, as above. With $G$ points per axis, a
# $d$-dimensional latent needs $G^d$ decoder evaluations *per data point*. The toy ($d = 1$) takes
# 4001. A modest VAE has $d = 20$. Worse, the integrand is concentrated: as a function of $z$,
# $p(z)\,p(x \mid z)$ is a narrow peak (or two) of width about $s / \lVert f'(z) \rVert$, so
# nearly every grid point contributes nothing, and nobody tells us in advance where the peak is.

# %%
x_one = torch.tensor([[1.5, 2.2]])  # near one arm of the parabola: only z ≈ 1.5 explains it
x_two = torch.tensor([[0.0, 1.0]])  # inside the bend: z ≈ -0.7 and z ≈ +0.7 explain it equally well
z_plot = torch.linspace(-4, 4, 2001)

fig, (ax_int, ax_cost) = plt.subplots(1, 2, figsize=(11, 3.8))
ax_int.plot(
    z_plot, (-0.5 * z_plot**2).exp(), color=COLORS["prior"], ls="--", label="the prior $p(z)$"
)
for x_point, color in [(x_one, COLORS["posterior"]), (x_two, COLORS["proposal"])]:
    integrand = toy.log_joint(x_point, z_plot[:, None, None])[:, 0].exp()  # p(z) p(x|z), (2001,)
    p_x = toy.log_marginal(x_point).exp().item()
    ax_int.plot(z_plot, integrand / integrand.max(), color=color,
                label=f"$x = ({x_point[0, 0]:.1f}, {x_point[0, 1]:.1f})$, area $p(x) = {p_x:.4f}$")
    ax_int.fill_between(z_plot, integrand / integrand.max(), color=color, alpha=0.2)
ax_int.set(title="The integrand $p(z)\\,p(x \\mid z)$ is narrow", xlabel="$z$",
           ylabel="scaled to a peak of 1", ylim=(0, 1.35))
ax_int.legend(fontsize=8, loc="upper left")

dims = np.arange(1, 26)
evaluations = 100.0**dims  # G = 100 points per axis
ax_cost.semilogy(dims, evaluations, "o-", color=COLORS["naive"], ms=3, label="$100^d$ grid points")
one_hour, universe = 1e9 * 3600, 1e9 * 4.35e17  # evaluations at 10⁹ decoder calls per second
ax_cost.axhline(one_hour, color="gray", ls=":", label="1 hour at $10^9$ calls/s")
ax_cost.axhline(universe, color="black", ls="--", label="age of the universe at $10^9$ calls/s")
ax_cost.axvline(20, color=COLORS["importance"], lw=1, label="a typical VAE, $d = 20$")
ax_cost.set(title="Quadrature cost per data point", xlabel="latent dimension $d$",
            ylabel="decoder evaluations")
ax_cost.legend(fontsize=8, loc="upper left")
plt.show()

# %% [markdown]
# So $\log p_\theta(x)$ can be neither written down nor computed by brute force for a VAE. We need
# an *estimator* (chapters 2–3) or a *bound* we can optimize (chapter 4 onwards). To judge them we
# need models where we know the truth: the toy (by quadrature, $d = 1$) and the linear-Gaussian
# model, next.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. The linear-Gaussian model: $p(x)$ in closed form
#
# With an affine decoder $f(z) = Wz + b$, $W \in \mathbb R^{D \times d}$, the model is
# *probabilistic PCA* (Tipping & Bishop, 1999): `vaelib.toy.LinearGaussian(W, b, noise_std)`.
#
# **Derivation 1: linear-Gaussian rules.** Write the sampling story as one equation,
# $x = Wz + b + s\,\varepsilon$ with $\varepsilon \sim \mathcal N(0, I_D)$ independent of $z$. The
# pair $(z, \varepsilon)$ is jointly Gaussian and $x$ is an affine function of it, so $x$ is
# Gaussian, and a Gaussian is fixed by its mean and covariance:
#
# $$
# \mathbb E[x] = W\,\mathbb E[z] + b + s\,\mathbb E[\varepsilon] = b ,
# $$
#
# $$
# \operatorname{Cov}[x] = \mathbb E\big[(Wz + s\varepsilon)(Wz + s\varepsilon)^\top\big]
#  = W\,\underbrace{\mathbb E[zz^\top]}_{I_d}\,W^\top
#  + s\,W\underbrace{\mathbb E[z\varepsilon^\top]}_{0}
#  + s\,\underbrace{\mathbb E[\varepsilon z^\top]}_{0}\,W^\top
#  + s^2\,\underbrace{\mathbb E[\varepsilon\varepsilon^\top]}_{I_D}
#  = WW^\top + s^2 I_D .
# $$
#
# $$
# \boxed{\;p(x) = \mathcal N\big(x;\; b,\; C\big), \qquad C = WW^\top + s^2 I_D\;}
# \qquad
# \log p(x) = -\frac12\Big[D\log 2\pi + \log\det C + (x-b)^\top C^{-1}(x-b)\Big].
# $$

# %% tags=["answer"]
def linear_log_marginal(x, W, b, noise_std):
    """log N(x; b, C) with C = W Wᵀ + s² I (derivation 1): x (N, D) -> (N,)."""
    D = W.shape[0]
    C = W @ W.T + noise_std**2 * torch.eye(D)  # (D, D)
    u = x - b  # (N, D)
    mahalanobis = (u * torch.linalg.solve(C, u.T).T).sum(dim=-1)  # (x - b)ᵀ C⁻¹ (x - b), (N,)
    return -0.5 * (D * LOG_2PI + torch.logdet(C) + mahalanobis)


# %% [markdown]
# **Derivation 2: completing the square in $z$.** Write $u = x - b$ and collect the terms of
# $\log p(z) + \log p(x \mid z)$ that contain $z$:
#
# $$
# -\frac12\lVert z\rVert^2 - \frac{1}{2s^2}\lVert u - Wz\rVert^2
#  = -\frac12 z^\top \Lambda z + \eta^\top z - \frac{\lVert u\rVert^2}{2s^2},
# \qquad \Lambda = I_d + \frac{W^\top W}{s^2},\quad \eta = \frac{W^\top u}{s^2}.
# $$
#
# Completing the square,
# $-\tfrac12 z^\top\Lambda z + \eta^\top z = -\tfrac12 (z - \Lambda^{-1}\eta)^\top \Lambda (z - \Lambda^{-1}\eta) + \tfrac12\eta^\top\Lambda^{-1}\eta$,
# and the Gaussian integral
# $\int e^{-\frac12 (z-m)^\top\Lambda(z-m)}dz = (2\pi)^{d/2}\det\Lambda^{-1/2}$ cancels the prior's
# $(2\pi)^{-d/2}$:
#
# $$
# \log p(x) = -\frac D2 \log 2\pi s^2 - \frac{\lVert u\rVert^2}{2s^2}
#             + \frac12\,\eta^\top\Lambda^{-1}\eta - \frac12\log\det\Lambda .
# $$
#
# (The completed square also hands us the posterior, $p(z \mid x) = \mathcal N(\Lambda^{-1}\eta,\,
# \Lambda^{-1})$: chapter 3 uses it.) The two derivations agree because of two matrix identities,
# Woodbury's $C^{-1} = s^{-2} I - s^{-4}\, W \Lambda^{-1} W^\top$ and the determinant lemma
# $\det C = s^{2D} \det\Lambda$. We check all of it below.

# %% tags=["answer"]
def linear_log_marginal_completed_square(x, W, b, noise_std):
    """log p(x) by completing the square in z (derivation 2): x (N, D) -> (N,)."""
    D, d = W.shape
    s2 = noise_std**2
    Lam = torch.eye(d) + W.T @ W / s2  # posterior precision Λ, (d, d)
    u = x - b  # (N, D)
    eta = u @ W / s2  # rows are ηᵀ = uᵀ W / s², (N, d)
    quad = (eta * torch.linalg.solve(Lam, eta.T).T).sum(dim=-1)  # ηᵀ Λ⁻¹ η, (N,)
    return (-0.5 * D * math.log(2 * math.pi * s2) - (u**2).sum(dim=-1) / (2 * s2)
            + 0.5 * quad - 0.5 * torch.logdet(Lam))


linear = LinearGaussian.random(data_dim=5, latent_dim=2, noise_std=0.5, generator=generator)
x_lin, _ = linear.sample(1000, generator=generator)  # (1000, 5)
W, b, s = linear.W, linear.b, linear.noise_std
C = W @ W.T + s**2 * torch.eye(5)

by_rules = linear_log_marginal(x_lin, W, b, s)
by_square = linear_log_marginal_completed_square(x_lin, W, b, s)
by_scipy = stats.multivariate_normal(mean=b.numpy(), cov=C.numpy()).logpdf(x_lin.numpy())
assert torch.allclose(by_rules, by_square, rtol=0, atol=1e-10)
assert np.allclose(by_rules.numpy(), by_scipy, rtol=0, atol=1e-10)
assert torch.allclose(by_rules, linear.log_marginal(x_lin), rtol=0, atol=1e-10)

Lam = torch.eye(2) + W.T @ W / s**2
woodbury = torch.eye(5) / s**2 - W @ torch.linalg.inv(Lam) @ W.T / s**4
assert torch.allclose(torch.linalg.inv(C), woodbury, atol=1e-10)  # Woodbury
assert math.isclose(
    torch.logdet(C).item(), 10 * math.log(s) + torch.logdet(Lam).item(), rel_tol=1e-12
)
print(f"log p(x_0): {by_rules[0]:.10f} (rules)  {by_square[0]:.10f} (square)  {by_scipy[0]:.10f} "
      "(SciPy)")

# %% [markdown]
# **Check by integration and by sampling.** In $d = 1$ the integral over $z$ is one-dimensional, so
# SciPy's quadrature computes it directly, and the closed form must agree to quadrature precision.
# And samples drawn by the two-step story must have mean $b$ and covariance $WW^\top + s^2 I$: each
# entry of the sample covariance of $N$ draws has standard error
# $\sqrt{(C_{ii}C_{jj} + C_{ij}^2)/N}$, so we allow 5 of them.

# %%
line = LinearGaussian(torch.tensor([[1.5], [0.8]]), torch.tensor([0.5, -0.3]), noise_std=0.4)
C_line = line.marginal_covariance  # (2, 2)
for x_point in line.sample(5, generator=generator)[0]:
    p_quad = quad_marginal(line, x_point)
    p_closed = line.log_marginal(x_point[None]).exp().item()
    assert math.isclose(p_quad, p_closed, rel_tol=1e-8), (p_quad, p_closed)
print(f"quadrature over z matches N(b, WWᵀ + s²I) at 5 points (last: {p_quad:.10f} vs "
      f"{p_closed:.10f})")

num_draws = 200_000
x_many, _ = line.sample(num_draws, generator=generator)
mean_hat = x_many.mean(dim=0)
cov_hat = torch.cov(x_many.T, correction=0)
mean_se = (C_line.diagonal() / num_draws).sqrt()
cov_se = ((C_line.diagonal()[:, None] * C_line.diagonal()[None, :] + C_line**2) / num_draws).sqrt()
assert ((mean_hat - line.b).abs() < 5 * mean_se).all()
assert ((cov_hat - C_line).abs() < 5 * cov_se).all()
print(
    "C =",
    C_line.numpy().round(4).tolist(),
    " sample covariance =",
    cov_hat.numpy().round(4).tolist(),
)

# %% [markdown]
# The picture: the slices are now blobs along a *straight* line, and their continuous mixture is a
# Gaussian ellipse. Its long axis points along $w$ (the one column of $W$) with variance
# $\lVert w\rVert^2 + s^2$, its short axis has variance $s^2$: these are the eigenvalues of $C$.

# %%
def covariance_ellipse(ax, mean, cov, n_std, **kwargs):
    """Draw the set {x : (x - mean)ᵀ cov⁻¹ (x - mean) = n_std²} for a 2-D Gaussian."""
    eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending
    angle = math.degrees(math.atan2(eigenvectors[1, 1], eigenvectors[0, 1]))
    width, height = 2 * n_std * eigenvalues.flip(0).sqrt()
    ax.add_patch(
        Ellipse(mean.tolist(), width.item(), height.item(), angle=angle, fill=False, **kwargs)
    )


w_norm2 = (line.W**2).sum().item()
eigenvalues = torch.linalg.eigvalsh(C_line)
assert torch.allclose(eigenvalues, torch.tensor([0.4**2, w_norm2 + 0.4**2]), atol=1e-12)

Y1, Y2 = torch.meshgrid(torch.linspace(-3.5, 4.5, 161), torch.linspace(-3, 3, 121), indexing="xy")
y_plane = torch.stack([Y1.flatten(), Y2.flatten()], dim=-1)  # (M, 2)
z_seven = torch.linspace(-3, 3, 7)  # Δz = 1
seven = line.log_joint(y_plane, z_seven[:, None, None]).exp().sum(0).reshape(Y1.shape)

# %%
fig, (ax_s, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True, sharey=True)
ax_s.pcolormesh(Y1, Y2, seven, cmap="viridis", norm=PowerNorm(0.5), shading="auto")
ax_s.set(title="seven slices along the line $f(z) = wz + b$", xlabel="$x_1$", ylabel="$x_2$")
ax_m.scatter(*x_many[:1500].T, s=2, color=COLORS["prior"], alpha=0.5, label="samples of $x$")
for k in (1, 2, 3):
    covariance_ellipse(
        ax_m,
        line.b,
        C_line,
        k,
        color=COLORS["exact"],
        lw=1.2,
        label="exact $\\mathcal{N}(b, WW^\\top + s^2 I)$: 1, 2, 3 sd" if k == 1 else None,
    )
covariance_ellipse(ax_m, mean_hat, cov_hat, 2, color=COLORS["naive"], ls="--", lw=1.5,
                   label="sample covariance, 2 sd")
ax_m.set(title="the marginal: a Gaussian ellipse", xlabel="$x_1$")
for ax in (ax_s, ax_m):
    ax.plot(*line.decode(z_line[:, :1]).T, color="white" if ax is ax_s else "black", lw=0.8, ls=":")
    ax.set(xlim=(-3.5, 4.5), ylim=(-3, 3))
    ax.set_aspect("equal")
    ax.grid(False)
ax_m.legend(fontsize=8, loc="lower right", markerscale=4)
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. Maximum likelihood: the goal
#
# Given data $x_1, \dots, x_N$ drawn independently from an unknown $p_{\text{data}}$, we choose the
# parameters that make the data most probable, i.e. that maximize the **log-likelihood**
#
# $$
# \ell(\theta) = \sum_{n=1}^N \log p_\theta(x_n).
# $$
#
# (With a prior $p(\theta)$ on the parameters one can instead maximize
# $\ell(\theta) + \log p(\theta)$, the **MAP** (maximum a posteriori) estimate; weight decay is the
# case of a Gaussian prior. The extra term does not involve $z$, so everything this course says
# about $p_\theta(x)$ applies unchanged; we use maximum likelihood throughout.)
#
# Why this goal: by the law of large numbers
# $\tfrac1N \ell(\theta) \to \mathbb E_{p_{\text{data}}}[\log p_\theta(x)]
#  = -H(p_{\text{data}}) - \mathrm{KL}(p_{\text{data}} \,\Vert\, p_\theta)$,
# and the entropy $H$ does not depend on $\theta$, so **maximizing the likelihood minimizes the KL
# divergence from the data distribution to the model**. For Gaussians every term is known in closed
# form ($H = \tfrac12\log\det(2\pi e\, C_0)$ and the KL between two Gaussians), so we can check this
# identity on the linear model: data from one model, likelihood under another.

# %%
true_model = line  # the data's distribution: N(b0, C0)
other_model = LinearGaussian(torch.tensor([[1.0], [1.2]]), torch.tensor([0.0, 0.2]), noise_std=0.7)
p_data = torch.distributions.MultivariateNormal(true_model.b, true_model.marginal_covariance)
p_other = torch.distributions.MultivariateNormal(other_model.b, other_model.marginal_covariance)


def gaussian_kl(mean0, cov0, mean1, cov1):
    """KL(N0 ‖ N1) = ½ [tr(C1⁻¹ C0) + (m1 - m0)ᵀ C1⁻¹ (m1 - m0) - D + log det C1 - log det C0]."""
    diff = mean1 - mean0
    return 0.5 * (
        torch.trace(torch.linalg.solve(cov1, cov0))
        + diff @ torch.linalg.solve(cov1, diff)
        - len(mean0)
        + torch.logdet(cov1)
        - torch.logdet(cov0)
    )


entropy = 0.5 * torch.logdet(2 * math.pi * math.e * true_model.marginal_covariance)
kl = gaussian_kl(true_model.b, true_model.marginal_covariance,
                 other_model.b, other_model.marginal_covariance)
assert torch.isclose(entropy, p_data.entropy(), rtol=1e-12)
assert torch.isclose(kl, torch.distributions.kl_divergence(p_data, p_other), rtol=1e-10)

log_lik = other_model.log_marginal(x_many)  # log p_θ(x_n) under the other model, (200000,)
average, standard_error = log_lik.mean().item(), log_lik.std().item() / math.sqrt(num_draws)
predicted = (-entropy - kl).item()
assert abs(average - predicted) < 5 * standard_error
print(f"(1/N) ℓ(θ) = {average:.4f} ± {standard_error:.4f}   -H - KL = {predicted:.4f}")

# %% [markdown]
# **Fitting the linear model.** For probabilistic PCA the maximum is known in closed form (Tipping &
# Bishop, 1999). Let $\bar x$ be the sample mean and
# $S = \tfrac1N\sum_n (x_n - \bar x)(x_n - \bar x)^\top$ the sample covariance (with $\tfrac1N$, not
# $\tfrac1{N-1}$), with eigenvalues $\lambda_1 \ge \dots \ge \lambda_D$ and eigenvectors $U$. Then
#
# $$
# b_{\text{ML}} = \bar x, \qquad
# s^2_{\text{ML}} = \frac{1}{D - d}\sum_{j > d} \lambda_j, \qquad
# W_{\text{ML}} = U_d\,\big(\operatorname{diag}(\lambda_1, \dots, \lambda_d) - s^2_{\text{ML}}
# I\big)^{1/2} R
# $$
#
# for any orthogonal $d \times d$ matrix $R$: the likelihood depends on $W$ only through $WW^\top$,
# because rotating $z$ leaves the prior $\mathcal N(0, I)$ unchanged. The noise takes up the
# variance the $d$ latent directions cannot explain. We check the closed form by maximizing $\ell$
# numerically (L-BFGS with autograd, from a random start), then look at $\ell$ as a function of one
# parameter, $s$.

# %%
x_data, _ = true_model.sample(400, generator=generator)  # N = 400 points in D = 2
x_bar = x_data.mean(dim=0)
S = torch.cov(x_data.T, correction=0)  # (1/N) Σ (x - x̄)(x - x̄)ᵀ
lambdas, U = torch.linalg.eigh(S)  # ascending: λ_2, λ_1
s_ml = lambdas[0].sqrt().item()  # D - d = 1 discarded direction
W_ml = U[:, 1:] * (lambdas[1] - s_ml**2).sqrt()  # (2, 1)
ml_model = LinearGaussian(W_ml, x_bar, s_ml)
best_average = ml_model.log_marginal(x_data).mean().item()

# Numerical maximization of ℓ over (W, b, log s), starting far from the answer.
params = {"W": torch.randn(2, 1, generator=generator).requires_grad_(),
          "b": torch.zeros(2, requires_grad=True), "log_s": torch.zeros((), requires_grad=True)}
optimizer = torch.optim.LBFGS(params.values(), max_iter=200, line_search_fn="strong_wolfe",
                              tolerance_grad=1e-12, tolerance_change=1e-14)


def negative_average_log_likelihood():
    optimizer.zero_grad()
    loss = -linear_log_marginal(x_data, params["W"], params["b"], params["log_s"].exp()).mean()
    loss.backward()
    return loss


optimizer.step(negative_average_log_likelihood)
fitted_average = -negative_average_log_likelihood().item()
s_fitted = params["log_s"].exp().item()
assert abs(fitted_average - best_average) < 1e-9
assert abs(s_fitted - s_ml) < 1e-5
assert torch.allclose(params["W"] @ params["W"].T, W_ml @ W_ml.T, atol=1e-5)  # W up to its sign
print(f"closed form: s_ML = {s_ml:.6f}, ℓ/N = {best_average:.8f}")
print(f"L-BFGS:      s    = {s_fitted:.6f}, ℓ/N = {fitted_average:.8f}   (true s = "
      f"{true_model.noise_std})")

# %%
s_values = torch.linspace(0.15, 1.2, 211)
profile = torch.stack(
    [linear_log_marginal(x_data, W_ml, x_bar, s_value).mean() for s_value in s_values]
)
s_best_on_grid = s_values[profile.argmax()].item()
assert abs(s_best_on_grid - s_ml) <= (s_values[1] - s_values[0]).item()

fig, (ax_fit, ax_ll) = plt.subplots(1, 2, figsize=(11, 4))
ax_fit.scatter(*x_data.T, s=5, color=COLORS["prior"], alpha=0.6, label="data, $N = 400$")
covariance_ellipse(ax_fit, true_model.b, true_model.marginal_covariance, 2, color=COLORS["exact"],
                   ls="--", lw=1.5, label="true model, 2 sd")
covariance_ellipse(
    ax_fit,
    x_bar,
    ml_model.marginal_covariance,
    2,
    color=COLORS["importance"],
    lw=1.5,
    label="maximum-likelihood fit, 2 sd",
)
ax_fit.set(
    title="data and the fitted model", xlabel="$x_1$", ylabel="$x_2$", xlim=(-4, 5), ylim=(-3, 3)
)
ax_fit.set_aspect("equal")
ax_fit.legend(fontsize=8, loc="lower right")
ax_ll.plot(s_values, profile, color=COLORS["importance"], label="$\\ell(s)/N$, $W$ and $b$ at the "
                                                                "maximum")
reference_line(ax_ll, s_ml, label=f"closed form $s_{{ML}} = \\sqrt{{\\lambda_2}} = {s_ml:.3f}$",
               horizontal=False)
ax_ll.axvline(true_model.noise_std, color=COLORS["prior"], ls=":",
              label=f"true $s = {true_model.noise_std}$")
ax_ll.set(
    title="the log-likelihood as a function of the noise $s$",
    xlabel="noise std $s$",
    ylabel="average log-likelihood $\\ell / N$",
    ylim=(profile.max() - 1.5, profile.max() + 0.15),
)
ax_ll.legend(fontsize=8, loc="lower right")
plt.show()

# %% [markdown]
# Too small an $s$ and the data points off the line become wildly improbable; too large and the
# density is spread thin everywhere. The maximum sits at $s_{\text{ML}}$, close to (not exactly at)
# the true $s$: with $N = 400$ points the estimate has sampling error. For a neural decoder there is
# no closed form and not even $\ell(\theta)$ itself can be computed, which is why the rest of the
# course estimates and bounds it.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Explore: build $p(x)$ from its slices
#
# Move the **noise** $s$, the **bend** $a$ of the decoder $f(z) = (z, a z^2)$, and the **slice
# step** $\Delta z$. Left: the Riemann sum
# $\sum_g \Delta z\, p(z_g)\, \mathcal N(x; f(z_g), s^2 I)$, dots at the slice centres $f(z_g)$
# sized by their prior weight. Right: the marginal $p(x)$. Things to try:
#
# - make $\Delta z$ larger than $s$: the sum falls apart into beads; smaller: it merges into $p(x)$;
# - set the bend to $0$: the toy becomes the linear-Gaussian model with $W = (1, 0)^\top$, $b = 0$,
#   and $p(x) = \mathcal N(0, \operatorname{diag}(1 + s^2, s^2))$ (its 2-sd ellipse is drawn
#   dashed);
# - shrink $s$: the density concentrates on the curve and its peak grows far above 1.

# %%
# A coarser grid than the figures' keeps each redraw quick.
V1, V2 = torch.meshgrid(
    torch.linspace(-3.5, 3.5, 91), torch.linspace(-1.5, 7.0, 111), indexing="xy"
)
v_plane = torch.stack([V1.flatten(), V2.flatten()], dim=-1)  # (M, 2)


def draw_slices(fig, noise_std, bend, slice_step):
    model = NonlinearToy(noise_std=noise_std, curve="parabola", a=bend)
    axes = fig.subplots(1, 2, sharey=True)
    riemann = riemann_log_marginal(model, v_plane, z_step=slice_step).exp().reshape(V1.shape)
    # p(x) itself: a Riemann sum with a step well below the narrowest slice width s / |f'(z)|,
    # over |z| <= 4.5 (prior mass outside: 7e-6).
    fine_step = min(0.02, noise_std / 8)
    exact = (
        riemann_log_marginal(model, v_plane, z_step=fine_step, z_limit=4.5).exp().reshape(V1.shape)
    )
    top = exact.max().item()
    for ax, density, title in [(axes[0], riemann, f"sum of slices, $\\Delta z = {slice_step}$"),
                               (axes[1], exact, "the marginal $p(x)$")]:
        ax.pcolormesh(V1, V2, density, cmap="viridis", norm=PowerNorm(0.5, vmin=0, vmax=top),
                      shading="auto")
        ax.plot(*model.decode(z_line).T, color="white", lw=0.8, ls=":")
        ax.set(title=title, xlabel="$x_1$", xlim=(-3.5, 3.5), ylim=(-1.5, 7.0))
        ax.grid(False)
    axes[0].set_ylabel("$x_2$")
    centres = torch.arange(-3.0, 3.0 + slice_step / 2, slice_step)[:, None]  # the slices' codes
    axes[0].scatter(*model.decode(centres).T, s=60 * log_prior(centres).exp() / 0.4, color="white",
                    edgecolor="black", lw=0.5, zorder=3)
    if bend == 0:
        cov = torch.diag(torch.tensor([1 + noise_std**2, noise_std**2]))
        covariance_ellipse(axes[1], torch.zeros(2), cov, 2, color="white", ls="--", lw=1.2)
    cell = (V1[0, 1] - V1[0, 0]) * (V2[1, 0] - V2[0, 0])
    gap = (riemann - exact).abs().max().item()
    return (f"s = {noise_std:.2f}, a = {bend:.2f}, Δz = {slice_step}: largest |sum of slices − "
            f"p(x)| = {gap:.3g}; peak of p(x) = {top:.2f}; mass in the picture = "
            f"{(exact.sum() * cell):.3f}")


static_figure(draw_slices, figsize=(11, 4.2), noise_std=0.3, bend=1.0, slice_step=0.5)

# %%
FigureExplorer(
    draw_slices, figsize=(11, 4.2),
    noise_std=FloatSlider(value=0.3, min=0.1, max=0.8, step=0.05, description="noise s"),
    bend=FloatSlider(value=1.0, min=0.0, max=1.5, step=0.25, description="bend a"),
    slice_step=SelectionSlider(options=[1.0, 0.5, 0.25, 0.1, 0.05], value=0.5, description="Δz"),
)

# %% [markdown] slideshow={"slide_type": "slide"}
# > **Classic mistakes**
# >
# > - **$s$ for $s^2$.** The covariance of $x$ is $WW^\top + s^2 I$. Writing $WW^\top + sI$, or
# >   passing the standard deviation where a library expects a variance (`cov=` in SciPy) or the
# >   reverse (`scale=` in `torch.distributions.Normal` and `scipy.stats.norm` is the standard
# >   deviation), gives a wrong density that still looks plausible.
# > - **$W^\top W$ for $WW^\top$.** $W^\top W$ is $d \times d$ (it appears in the posterior's
# >   precision $\Lambda$); the covariance of $x$ is the $D \times D$ matrix $WW^\top$.
# > - **$p(x \mid z)$ is not $p(x)$.** Plugging one code into the decoder (say $z = 0$, or a single
# >   sample) gives the likelihood of that code, not the marginal, which averages over all codes.
# > - **Dropping the normalizing constant.** $-\frac D2 \log 2\pi s^2$ depends on $s$: without it
# >   the "log-likelihood" $-\lVert x - f(z)\rVert^2 / 2s^2$ keeps increasing as $s \to \infty$, and
# >   "maximum likelihood" would choose infinite noise.
# > - **A density is not a probability.** $p(x) > 1$ is fine (the sharp toy's peak is above 1); only
# >   $\int p(x)\,dx = 1$.
# > - **A Riemann sum without $\Delta z$.** $\sum_g p(z_g)\, p(x \mid z_g)$ misses the factor
# >   $\Delta z$, an error of $\log \Delta z$ in $\log p(x)$.
#
# Three of them, measured: the error each makes in $\log p(x)$ at three points of section 5's model.

# %%
x_check = x_lin[:3]
right = linear.log_marginal(x_check)
mistakes = {
    "s instead of s²": linear_log_marginal(x_check, W, b, math.sqrt(s)) - right,
    "log p(x | z = 0)": linear.log_likelihood(x_check, torch.zeros(3, 2)) - right,
    "no -½ log det 2πC": -0.5 * ((x_check - b) * torch.linalg.solve(C, (x_check - b).T).T).sum(-1)
    - right,
}
for name, error in mistakes.items():
    print(f"{name:>20}: error in log p(x) = {error.numpy().round(3)}")
assert all((error.abs() > 0.1).all() for error in mistakes.values())

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# - A latent-variable model draws $z \sim p(z)$, then $x \sim p_\theta(x \mid z)$; the probability
#   of data is the **marginal likelihood** $p_\theta(x) = \int p_\theta(x \mid z)\,p(z)\,dz$.
# - $p(x)$ is a **continuous mixture** of the slices $p(z)\,p(x \mid z)$, Gaussian blobs threaded
#   along the decoder's image; a curved decoder makes it non-Gaussian.
# - For a **linear** decoder, $p(x) = \mathcal N(b,\, WW^\top + s^2 I)$, derived by the
#   linear-Gaussian rules and by completing the square (which also gives the posterior), and checked
#   against SciPy, 1-D quadrature and sampling.
# - For a **neural** decoder there is no closed form, and quadrature costs $G^d$ evaluations per
#   point, almost all wasted outside a narrow peak.
# - Training maximizes $\ell(\theta) = \sum_n \log p_\theta(x_n)$, which minimizes
#   $\mathrm{KL}(p_{\text{data}} \Vert p_\theta)$. The linear model's maximum is known in closed
#   form; for a VAE we will need estimators (chapters 2–3) and bounds (chapters 4–5).
#
# **Further reading.** Kingma & Welling (2014), *Auto-encoding variational Bayes*; Rezende, Mohamed
# & Wierstra (2014), *Stochastic backpropagation and approximate inference in deep generative
# models*; Doersch (2016), *Tutorial on variational autoencoders* (arXiv:1606.05908); Kingma &
# Welling (2019), *An introduction to variational autoencoders*. The symbols of the whole course are
# listed in the [notation page](../docs/notation.md).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# **Exercise 1 — the linear-Gaussian marginal.** Write `my_linear_log_marginal(x, W, b, noise_std)`
# returning $\log \mathcal N(x;\, b,\, WW^\top + s^2 I)$ for every row of `x` (shape `(N, D)` in,
# `(N,)` out), from the formula, without `vaelib` or SciPy. The check tries several random models.
# It refuses section 5's `linear_log_marginal` (and its completed square) itself, but cannot tell a
# copy from your own work: close that section and write it from the formula.

# %% tags=["solution"]
def my_linear_log_marginal(x, W, b, noise_std):
    """The linear-Gaussian model's log p(x), one per row of x: x (N, D), W (D, d), b (D,), noise_std
    s
    -> (N,).
    """
    D = W.shape[0]
    C = W @ W.T + noise_std**2 * torch.eye(D, dtype=W.dtype)
    u = x - b
    mahalanobis = (u * torch.linalg.solve(C, u.T).T).sum(dim=-1)
    return -0.5 * (D * math.log(2 * math.pi) + torch.logdet(C) + mahalanobis)


# %%
from vaelib.exercises import check_linear_log_marginal

check_linear_log_marginal(my_linear_log_marginal);

# %% [markdown]
# **Exercise 2 — the toy's marginal by quadrature.** Write `my_toy_log_marginal(model, x)` that
# computes $\log p(x) = \log \int p(z)\, p(x \mid z)\, dz$ for a `NonlinearToy` (1-D latent) with a
# sum over a grid of $z$ values (or `scipy.integrate.quad`). Use `model.log_joint(x, z)` for
# $\log p(x, z)$; mind the $\Delta z$ and work in log space. Input `(N, 2)`, output `(N,)`; the
# check compares with `model.log_marginal` to a relative error of $10^{-6}$ in $p(x)$.

# %% tags=["solution"]
def my_toy_log_marginal(model, x):
    """The nonlinear toy's log p(x) by quadrature over its 1-D latent: x (N, 2) -> (N,)."""
    # log Σ_g Δz p(z_g) p(x|z_g) on a fine, wide grid, with logsumexp.
    z_grid = torch.linspace(-10, 10, 8001, dtype=x.dtype)  # step 0.0025
    step = (z_grid[1] - z_grid[0]).item()
    log_joint = model.log_joint(x, z_grid[:, None, None])  # (G, N)
    return torch.logsumexp(log_joint, dim=0) + math.log(step)


# %%
from vaelib.exercises import check_toy_log_marginal

check_toy_log_marginal(my_toy_log_marginal);

# %% [markdown]
# **Exercise 3 — the maximum-likelihood noise.** For a linear-Gaussian model with $D = 2$ and
# $d = 1$ fitted by maximum likelihood, write `ml_noise_std(x)` that returns $s_{\text{ML}}$ (a
# float) for data `x` of shape `(N, 2)`, using the closed form of section 6. *Hint:* which
# eigenvalue, and which normalization of the sample covariance?

# %% tags=["solution"]
def ml_noise_std(x):
    """The maximum-likelihood noise std s_ML of probabilistic PCA, two data dimensions, one latent:
    x (N, 2) -> float.
    """
    # s_ML² is the smallest eigenvalue of the 1/N sample covariance (D - d = 1 direction left over).
    S = torch.cov(x.T, correction=0)
    return torch.linalg.eigvalsh(S)[0].sqrt().item()


# %%
from vaelib.exercises import check_ml_noise_std

check_ml_noise_std(ml_noise_std);
