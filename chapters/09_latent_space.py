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
# # Chapter 9 — Exploring the latent space
#
# *Symbols: see the course's [notation page](../docs/notation.md).*
#
# A trained VAE gives us two maps: the **decoder** $z \mapsto p_\theta(x\mid z)$, which turns any
# point of the latent space into an image, and the **encoder** $x \mapsto q_\phi(z\mid x)
# = \mathcal N(\mu_\phi(x), \operatorname{diag}\sigma^2_\phi(x))$, which turns an image into a
# small cloud of codes. This chapter looks at both, with widgets that respond as you move them.
# You will
#
# 1. train a VAE with a **2-dimensional** latent space, and load (or quickly train) chapter 8's
#    50-dimensional one, and compare their test ELBOs;
# 2. turn the knobs of the 50-D model — one slider per **active** unit — and see why a single
#    latent unit rarely means one thing;
# 3. see the whole 2-D latent space at once: the test images' codes beside the decoder's
#    **manifold** on a grid placed by the inverse Gaussian CDF (Kingma & Welling, 2014);
# 4. draw $q_\phi(z\mid x)$ as what it is, a distribution: its 1σ and 2σ ellipses and decoded
#    samples;
# 5. interpolate between two images, **linearly** and **spherically**, and learn why the
#    straight line through a high-dimensional Gaussian is not a typical path.
#
# Every widget has a static figure beside it, so the chapter also reads without a kernel.
# Everything runs on the CPU: decoding one image and drawing it takes about a millisecond.

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
import copy
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy import stats

from vaelib.checkpoint import CheckpointError, load_checkpoint
from vaelib.data import fixed_binarization, load_mnist_subset, to_unit_interval
from vaelib.device import seed_everything
from vaelib.evaluate import evaluate
from vaelib.explorers import Interpolation, LatentExplorer, LatentMap, PosteriorUncertainty
from vaelib.figures import COLORS, use_course_style
from vaelib import latent  # latent.slerp and latent.inverse_cdf_grid: exercises 1 and 2 write them
from vaelib.latent import encode_dataset, latent_activity, lerp
from vaelib.train import train
from vaelib.vae import VAE, VAEConfig

use_course_style()
seed_everything(0)

mnist = load_mnist_subset()  # 10,000 training and 2,000 test images, bundled with vaelib
train_x = to_unit_interval(mnist.train_images)  # (10000, 784) grey levels, binarized per batch
test_x = fixed_binarization(to_unit_interval(mnist.test_images))  # (2000, 784): one fixed 0/1 draw
test_labels = mnist.test_labels  # (2000,) the digits, only to colour the figures
RUN_DIR = Path("runs") / "ch08_vae"  # chapter 8's checkpoint, next to this notebook
print(f"{len(train_x)} training and {len(test_x)} test images")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. Two models: a 2-D latent space, and chapter 8's 50-D one
#
# A 2-D latent space can be *seen* whole, so we train one: an MLP VAE with a Bernoulli decoder like
# chapter 8's but smaller, one ReLU hidden layer of 256 units and $d = 2$, ten epochs of the ELBO on
# the bundled subset (a few seconds on a laptop CPU). For a richer code we use chapter 8's model
# (Burda et al.'s 784-200-200-50), loaded from its checkpoint in `runs/ch08_vae` when chapter 8 has
# been run; otherwise the same architecture is trained here for a few epochs (worse, but enough to
# explore).

# %%
model_2d = VAE(VAEConfig(hidden_dims=(256,), latent_dim=2))
history_2d = train(model_2d, train_x, epochs=10, lr=3e-3, seed=0)
print(f"2-D model: training ELBO {history_2d.train_elbo[-1]:.1f} nats per image after "
      f"{len(history_2d)} epochs ({history_2d.seconds[-1]:.0f} s)")


# %%
def load_or_train_chapter8_model():
    """Chapter 8's VAE from its checkpoint if there is a usable one, else a quick stand-in."""
    try:
        checkpoint = load_checkpoint(RUN_DIR)
        c = checkpoint.config
        if c.data_dim == 784 and c.likelihood == "bernoulli" and c.latent_dim > 2:
            return checkpoint.model, f"loaded from {RUN_DIR} ({checkpoint.epoch} epochs, chapter 8)"
        reason = f"the model in {RUN_DIR} is not a Bernoulli MNIST VAE with latent_dim > 2"
    except (FileNotFoundError, CheckpointError) as err:
        reason = f"no usable checkpoint in {RUN_DIR}: {type(err).__name__}"
    model = VAE(VAEConfig.preset("burda"))
    train(model, train_x, epochs=8, lr=3e-3, seed=0)
    return model, f"trained here for 8 epochs ({reason}; run chapter 8 for a better one)"


model_big, origin = load_or_train_chapter8_model()
print(f"{model_big.latent_dim}-D model: {origin}")

# %% [markdown]
# How good are they? The test ELBO and the importance-sampled $\log p(x)$ (chapter 8's
# `vaelib.evaluate`, $K = 50$ samples per image, on 1,000 test images): two numbers cannot
# describe digits as well as fifty.

# %%
scores = {}
for name, model in (("2-D", model_2d), (f"{model_big.latent_dim}-D", model_big)):
    summary = evaluate(model, test_x[:1000], num_samples=50, iwae_samples=50, binarize=False,
                       progress=False).summary()
    scores[name] = summary
    print(f"{name:>5} model: test ELBO {summary['elbo']:7.1f}   log p(x) ≈ "
          f"{summary['log_likelihood']:7.1f} ± {summary['log_likelihood_sem']:.1f} nats per image")
elbo_2d = scores["2-D"]["elbo"]
elbo_big = scores[f"{model_big.latent_dim}-D"]["elbo"]
assert elbo_2d > -175, elbo_2d  # we reach about -161 in 10 epochs; -175 leaves a wide margin
assert elbo_big > elbo_2d + 20  # the 50-D code explains the test images far better
# The bound, checked on independent draws: log p̂(x) and the ELBO above come from the same 50
# weights per image, and "mean of logs <= log of mean" holds for any numbers, so comparing them
# checks arithmetic only. An ELBO from fresh samples (seed 1) tests the bound itself: IWAE_50 >=
# ELBO.
elbo_2d_fresh = evaluate(model_2d, test_x[:1000], num_samples=50, iwae_samples=50, binarize=False,
                         seed=1, progress=False).summary()["elbo"]
print(f"2-D model: ELBO from fresh samples {elbo_2d_fresh:.1f} (seed 0: {elbo_2d:.1f}), "
      f"log p(x) ≈ {scores['2-D']['log_likelihood']:.1f}")
assert abs(elbo_2d_fresh - elbo_2d) < 0.5  # two unbiased ELBO estimates agree (Monte Carlo noise)
assert scores["2-D"]["log_likelihood"] > elbo_2d_fresh  # the ELBO is a lower bound (chapter 4)

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. Turning the knobs: decoding a point $z$
#
# The decoder is a function $f_\theta: \mathbb R^d \to \mathbb R^{784}$ whose outputs are the
# logits of 784 Bernoulli pixels, so the image it "means" at $z$ is the expected image
#
# $$
# \mathbb E[x \mid z] = \operatorname{sigmoid}\big(f_\theta(z)\big) \in [0, 1]^{784},
# $$
#
# pixel probabilities, drawn dark on white (`model.decode_mean(z)`). Not a sample: a sample would
# be a noisy 0/1 image, which is why decoded means look smooth and a little blurry.
#
# The 50-D model does not use its 50 units equally. Chapter 8 measured each unit's **activity**
# $A_j = \operatorname{Var}_x\big[\mu_{\phi,j}(x)\big]$, how much its posterior mean moves from
# image to image; an inactive unit ($A_j \approx 0$) says the same thing about every image, so the
# decoder learns to ignore it. The explorer gives a slider to each of the 8 most active units and
# holds the others at the code of a test image; the chooser below the sliders starts from the
# posterior mean $\mu_\phi(x)$ of any test image, so the picture starts as its reconstruction.

# %%
mu_big, logvar_big = encode_dataset(model_big, test_x)  # (2000, 50) each
activity = latent_activity(mu_big)  # A_j, (50,)
print(f"active units (A_j > 0.01): {int((activity > 0.01).sum())} of {model_big.latent_dim}; "
      f"the 8 most active: {torch.argsort(activity, descending=True)[:8].tolist()}")

explorer = LatentExplorer(model_big, test_x, test_labels, start=0)
with torch.no_grad():  # the explorer's image is E[x | z] = sigmoid(f(z)) at the sliders' z
    torch.testing.assert_close(explorer.decoded, torch.sigmoid(model_big.decode(explorer.z)))
    torch.testing.assert_close(explorer.z, mu_big[0])  # ... starting from image 0's code
explorer.show_static()  # the static twin: a latent traversal around the same z
explorer

# %% [markdown]
# *Above:* the **latent traversal** (static) — row $j$ moves one unit from $-3$ to $3$ while the
# others stay at the code of test image 0 — and the explorer (live: move a slider, or pick another
# test image). Look at what one unit does: it changes the slant *and* the thickness, or the digit
# itself — rarely one feature you could name.
#
# That is not bad luck. The prior $\mathcal N(0, I)$ looks the same in every direction: for any
# rotation $R$, the decoder $f'(z) = f(R^\top z)$ with the same prior defines **exactly the same**
# model $p(x) = \int p(x\mid z)\,p(z)\,dz$ (substitute $z' = Rz$: $p(Rz) = p(z)$ and
# $|\det R| = 1$). The likelihood therefore cannot prefer one set of axes over another; only the
# diagonal (mean-field) $q_\phi$ breaks the tie: the ELBO is higher in axes where the posteriors
# are closer to diagonal. In the linear-Gaussian model that settles the axes (chapters 5 and 7:
# the best mean-field $q$, and training, pick the axes in which the one posterior covariance is
# diagonal, up to order and signs). In a nonlinear VAE each image's posterior has its own
# correlation, no single rotation makes them all diagonal, and the axes the ELBO settles on are a
# compromise over the data, not features anyone chose. The invariance itself, checked on the 2-D
# model with a rotation by 40°:

# %%
angle = np.deg2rad(40.0)
R = torch.tensor([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]],
                 dtype=torch.float32)
rotated = copy.deepcopy(model_2d)
with torch.no_grad():
    rotated.decoder[0].weight.copy_(model_2d.decoder[0].weight @ R.T)  # f'(z) = f(Rᵀz): W' = W Rᵀ
    z = torch.randn(1000, 2, generator=torch.Generator().manual_seed(1))
    same_images = torch.allclose(rotated.decode_mean(z @ R.T), model_2d.decode_mean(z), atol=1e-6)
    same_prior = torch.allclose(model_2d.log_prior(z @ R.T), model_2d.log_prior(z), atol=1e-5)
print(f"f'(Rz) = f(z): {same_images};  log p(Rz) = log p(z): {same_prior}")
assert same_images and same_prior  # so the rotated model has the same p(x): the axes are arbitrary

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. The whole 2-D latent space at once
#
# With $d = 2$ we can draw everything. **Left** of the map below: each test image $x_n$ as the
# point $\mu_\phi(x_n)$, coloured by its digit — the *means* of the posteriors. The codes the
# decoder is trained on are samples from the **aggregate posterior** (over the training images;
# we look at the test images')
#
# $$
# q_\phi(z) = \frac1N \sum_{n=1}^N q_\phi(z\mid x_n),
# $$
#
# a mixture of $N$ small Gaussians. By the law of total variance its covariance is the spread of
# the means plus the average width of each posterior:
#
# $$
# \operatorname{Cov}_{q_\phi(z)}[z] = \operatorname{Cov}_n\big[\mu_\phi(x_n)\big]
# + \frac1N\sum_n \operatorname{diag}\sigma^2_\phi(x_n).
# $$
#
# The KL term of the ELBO pulls every $q_\phi(z\mid x)$ towards $p(z) = \mathcal N(0, I)$, the
# reconstruction term pushes the codes of different digits apart; the compromise is *roughly*
# the prior — not exactly. The formula, checked by sampling one $z_n \sim q_\phi(z\mid x_n)$ per
# test image:

# %%
mu_2d, logvar_2d = encode_dataset(model_2d, test_x)  # (2000, 2) each
variance_formula = mu_2d.var(dim=0, unbiased=False) + logvar_2d.exp().mean(dim=0)  # (2,)
generator = torch.Generator().manual_seed(2)
draws = [mu_2d + (0.5 * logvar_2d).exp() * torch.randn(mu_2d.shape, generator=generator)
         for _ in range(50)]  # 50 draws of z_n ~ q(z|x_n) for every n: 100,000 samples of q(z)
variance_sampled = torch.cat(draws).var(dim=0)
print(f"aggregate posterior: mean {mu_2d.mean(0).numpy().round(2)}, variance by the formula "
      f"{variance_formula.numpy().round(3)}, by sampling {variance_sampled.numpy().round(3)} "
      "(prior: 0 and 1)")
torch.testing.assert_close(variance_sampled, variance_formula, rtol=0.03, atol=0)  # MC error < 1 %

# %% [markdown]
# **Right** of the map: what the decoder makes of the plane. Kingma & Welling (2014, fig. 4) do
# not place the images on an even grid in $z$ — that would spend most of them in the tails,
# where the prior has little mass — but at equal steps of **probability**: with $\Phi$ the
# standard normal CDF,
#
# $$
# z_i = \Phi^{-1}\!\Big(\frac{i + \frac12}{n}\Big), \qquad i = 0, \dots, n-1,
# $$
#
# the median of the $i$-th of $n$ slices of equal prior mass $\frac1n$. On the grid $(z_i, z_j)$
# every image then stands for the same prior mass $\frac1{n^2}$, and the grid reaches only as far as
# there is mass to represent: $\pm\Phi^{-1}(1 - \frac1{2n}) = \pm 1.83$ for $n = 15$.
# `vaelib.latent.inverse_cdf_grid` computes it (writing it from the equation is exercise 2), checked
# here against what defines it: equal mass per slice, and each point its slice's median:

# %%
n = 15
grid = latent.inverse_cdf_grid(n, dtype=torch.float64).numpy()  # writing it is exercise 2
edges = stats.norm.ppf(np.arange(n + 1) / n)  # the slices' edges: -inf, ..., +inf
assert np.allclose(np.diff(stats.norm.cdf(edges)), 1 / n)  # equal mass 1/n per slice, per axis
assert np.allclose(stats.norm.cdf(grid) - stats.norm.cdf(edges[:-1]), 0.5 / n)  # medians

even = np.linspace(-3, 3, n)  # the naive alternative: evenly spaced in z
even_edges = np.concatenate([[-np.inf], (even[1:] + even[:-1]) / 2, [np.inf]])
even_mass = np.diff(stats.norm.cdf(even_edges))  # the mass nearer to each point than to the others
assert abs(even_mass.max() - 0.170) < 0.001 and abs(even_mass.min() - 0.0027) < 0.0001
tails = np.abs(even) > 2
assert tails.mean() == 0.4 and not (np.abs(grid) > 2).any()
print(f"even grid: {tails.mean():.0%} of the points of each axis lie beyond |z| = 2, where the "
      f"prior has {2 * stats.norm.sf(2):.1%} of its mass; inverse-CDF grid: "
      f"{(np.abs(grid) > 2).mean():.0%} of them")
corner_mass = 1 - (1 - 2 * stats.norm.sf(2)) ** 2  # prior mass with some |z_k| > 2
print(f"on the {n} × {n} even grid, {1 - (1 - tails.mean()) ** 2:.0%} of the images have a "
      f"coordinate beyond 2, where the prior has {corner_mass:.1%} of its mass")
prior = torch.randn(200_000, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
span = (prior.abs() <= grid[-1]).all(dim=1).double().mean().item()  # inside the grid's extent
print(f"prior mass inside the grid's extent: {span:.3f} "
      f"(exact (1 - 1/n)² = {(1 - 1 / n) ** 2:.3f})")
assert abs(span - (1 - 1 / n) ** 2) < 0.005  # MC standard error ≈ 0.0008

# %% [markdown]
# The two grids side by side. Right: the prior mass each point stands for — for the inverse-CDF
# grid its slice, exactly $\frac1n$; for the even grid the mass nearer to it than to its
# neighbours, from 17 % in the middle down to 0.3 % at the ends (log scale).

# %%
fig, (ax_points, ax_mass) = plt.subplots(1, 2, figsize=(12, 3.6))
zz = np.linspace(-3.5, 3.5, 400)
ax_points.plot(zz, stats.norm.pdf(zz), color=COLORS["prior"], label="prior N(0, 1)")
ax_points.plot(grid, np.full(n, 0.03), "|", markersize=16, color=COLORS["importance"],
               label="z = Φ⁻¹((i + ½)/n)")
ax_points.plot(even, np.full(n, -0.03), "|", markersize=16, color=COLORS["naive"],
               label="evenly spaced on [-3, 3]")
ax_points.set(xlabel="z", ylabel="density", title=f"Where the n = {n} points of each axis go")
ax_points.legend(loc="upper right", fontsize=8)
ax_mass.bar(
    np.arange(n) - 0.2,
    np.diff(stats.norm.cdf(edges)),
    width=0.4,
    color=COLORS["importance"],
    label="inverse-CDF grid",
)
ax_mass.bar(np.arange(n) + 0.2, even_mass, width=0.4, color=COLORS["naive"], label="even grid")
ax_mass.axhline(1 / n, color=COLORS["exact"], linestyle="--", linewidth=1.2, label="1/n")
ax_mass.set(xlabel="point i", ylabel="prior mass it stands for", yscale="log",
            title="Each point's share of the prior")
ax_mass.legend(fontsize=8)
plt.show()

# %% [markdown]
# The map: move the two sliders to pick a point $z$; it is decoded on the right and marked on
# both panels (the middle panel is drawn in probability coordinates $u = \Phi(z)$, ticks labelled
# in $z$; the red square is the grid cell the point falls in). Above it, the same figure drawn
# once, statically, at $z = (1, -1)$.

# %%
latent_map = LatentMap(model_2d, test_x, test_labels, grid_size=n, start=(1.0, -1.0))
with torch.no_grad():
    torch.testing.assert_close(latent_map.decoded, model_2d.decode_mean(torch.tensor([1.0, -1.0])))
inside = ((mu_2d.abs() <= grid[-1]).all(dim=1)).float().mean().item()
print(f"test codes μ(x) inside the grid's extent: {inside:.0%} (prior: {(1 - 1 / n) ** 2:.0%})")
latent_map.show_static()
latent_map

# %% [markdown]
# Things to look for: the digits form regions, and the manifold changes smoothly across the
# borders between them (a 4 becomes a 9 through shapes that are a bit of both); the codes are
# denser in some places than others, and some regions of the prior hold few codes — there the
# decoder shows shapes no test image maps to.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. $q_\phi(z\mid x)$ is a cloud, not a point
#
# The map shows one point per image, but the encoder returns a distribution,
# $q_\phi(z\mid x) = \mathcal N(\mu, \operatorname{diag}\sigma^2)$. Its level sets are ellipses
# with semi-axes $c\,\sigma_1$ and $c\,\sigma_2$; the ellipse holds the mass
#
# $$
# P\Big(\sum_k \big(\tfrac{z_k - \mu_k}{\sigma_k}\big)^2 \le c^2\Big) = P(\chi^2_2 \le c^2)
# = 1 - e^{-c^2/2}:
# \qquad 39.3\,\% \text{ for } c = 1, \quad 86.5\,\% \text{ for } c = 2,
# $$
#
# since $\varepsilon_k = (z_k - \mu_k)/\sigma_k$ are independent standard normals and the χ²
# distribution with 2 degrees of freedom is exponential with mean 2. Checked by sampling:

# %%
eps = torch.randn(200_000, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
for c in (1.0, 2.0):
    inside_c = (eps.square().sum(dim=1) <= c**2).double().mean().item()
    exact = 1 - np.exp(-c**2 / 2)
    print(f"c = {c:.0f}: {inside_c:.4f} of the samples inside, exact {exact:.4f}")
    assert abs(inside_c - exact) < 0.005  # MC standard error ≈ 0.001
sigma_2d = (0.5 * logvar_2d).exp()  # (2000, 2)
print(f"posterior σ of the 2-D model: median {sigma_2d.median():.3f} (the prior's: 1)")
assert sigma_2d.median() < 0.5  # each image pins its code down far more tightly than the prior

# %% [markdown]
# Pick an image: its 1σ (solid) and 2σ (dashed) ellipses on the map, a zoom on them with samples
# $z_k \sim q_\phi(z\mid x)$, and on the right the image, its reconstruction
# $\mathbb E[x\mid z = \mu]$, and the decoded samples $\mathbb E[x\mid z_k]$. The samples are the
# codes the ELBO's reconstruction term actually decodes during training; they differ in detail
# (thickness, slant) but not in the digit.

# %%
uncertainty = PosteriorUncertainty(model_2d, test_x, test_labels, num_samples=8)
index = uncertainty.indices[4]  # the first test image of a 4
uncertainty.controls["image"].value = index
torch.testing.assert_close(uncertainty.posterior.mean[0], mu_2d[index])
uncertainty.show_static()
uncertainty

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Interpolation: the straight line and the great circle
#
# To morph image $a$ into image $b$, decode points on a path between their codes
# $z_0 = \mu_\phi(x_a)$ and $z_1 = \mu_\phi(x_b)$. The obvious path is the straight line,
# $z_t = (1 - t)\,z_0 + t\,z_1$. In high dimension it has a flaw you can compute. If
# $z \sim \mathcal N(0, I_d)$, then $\|z\|^2 = \sum_j z_j^2 \sim \chi^2_d$, with mean $d$ and
# standard deviation $\sqrt{2d}$: the norm concentrates around $\sqrt d$ (for $d = 50$, 99 % of
# the draws have $5.3 \le \|z\| \le 8.9$). The midpoint of two independent draws is
# $\frac12(z_a + z_b) \sim \mathcal N(0, \frac12 I)$, so $\|\cdot\|^2 \sim \frac12\chi^2_d$: its
# norm is near $\sqrt{d/2} = 5$, a norm the prior almost never produces,
# $P(\|z\| \le \sqrt{d/2}) = F_{\chi^2_d}(d/2) \approx 0.001$.
#
# Careful: the midpoint is not where the prior's *density* is low — $p(z)$ is largest at $z = 0$.
# It is **atypical**: a shell of radius $\sqrt{d/2}$ holds almost none of the prior's mass, and
# almost none of the codes the decoder was trained on.
#
# **Spherical interpolation** (slerp; Shoemake 1985, White 2016) follows the great circle
# instead. In the plane of the unit vectors $\hat z_0, \hat z_1$ with angle
# $\Omega = \arccos(\hat z_0\cdot\hat z_1)$, the unit vector orthogonal to $\hat z_0$ is
# $e = (\hat z_1 - \cos\Omega\,\hat z_0)/\sin\Omega$, and turning $\hat z_0$ by the angle $t\Omega$
# gives
#
# $$
# \cos(t\Omega)\,\hat z_0 + \sin(t\Omega)\,e
# = \frac{\sin((1-t)\Omega)}{\sin\Omega}\,\hat z_0 + \frac{\sin(t\Omega)}{\sin\Omega}\,\hat z_1 ,
# $$
#
# using $\sin\Omega\cos(t\Omega) - \cos\Omega\sin(t\Omega) = \sin((1-t)\Omega)$. Slerp applies
# these weights to $z_0$ and $z_1$ themselves: for endpoints of equal norm the whole path keeps it.
# At $t = \frac12$ both weights are $\frac{\sin(\Omega/2)}{\sin\Omega} = \frac1{2\cos(\Omega/2)}$,
# so slerp's midpoint is the straight line's midpoint pushed out by $1/\cos(\Omega/2)$ — by
# $\sqrt2$ for the nearly orthogonal codes of high dimension.

# %%
z0, z1 = torch.randn(2, 50, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
z1 = z1 * z0.norm() / z1.norm()  # equal norms
t = torch.linspace(0, 1, 11, dtype=torch.float64)
path = latent.slerp(z0, z1, t)  # (11, 50), vaelib (writing the formula yourself is exercise 1)
# The left-hand side of the derivation: turn ẑ0 by the angle tΩ towards e in their plane.
u0, u1 = z0 / z0.norm(), z1 / z1.norm()
omega = torch.arccos(u0 @ u1)
e = (u1 - torch.cos(omega) * u0) / torch.sin(omega)  # the unit vector orthogonal to ẑ0
turned = z0.norm() * (torch.cos(t[:, None] * omega) * u0 + torch.sin(t[:, None] * omega) * e)
torch.testing.assert_close(path, turned, rtol=1e-12, atol=1e-12)
torch.testing.assert_close(path.norm(dim=1), z0.norm().expand(11))  # the norm is kept
half_angle = torch.arccos(z0 @ z1 / z0.norm() ** 2) / 2
torch.testing.assert_close(path[5], lerp(z0, z1, 0.5)[0] / torch.cos(half_angle))  # t = ½
print(
    f"angle between z0 and z1: {2 * half_angle.rad2deg():.1f}°; ‖z‖ at t = ½: straight line "
    f"{lerp(z0, z1, 0.5)[0].norm():.2f}, great circle {path[5].norm():.2f}, endpoints "
    f"{z0.norm():.2f}"
)

# %% [markdown]
# The norms of prior draws, of straight-line midpoints and of slerp midpoints between two
# independent draws, for $d = 2$ and $d = 50$, against the exact densities ($\|z\|$ has the χ
# distribution with $d$ degrees of freedom; the straight-line midpoint's norm is that divided by
# $\sqrt2$):

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
num_pairs = 20_000
for ax, d in zip(axes, (2, 50)):
    pairs = torch.randn(2, num_pairs, d, generator=torch.Generator().manual_seed(d),
                        dtype=torch.float64)
    norms = {"prior draws": pairs[0].norm(dim=1),
             "straight-line midpoints": lerp(pairs[0], pairs[1], 0.5)[0].norm(dim=1),
             "great-circle midpoints": latent.slerp(pairs[0], pairs[1], 0.5)[0].norm(dim=1)}
    assert abs(norms["prior draws"].square().mean().item() / d - 1) < 0.03  # E‖z‖² = d
    assert abs(norms["straight-line midpoints"].square().mean().item() / (d / 2) - 1) < 0.03
    colors = [COLORS["prior"], COLORS["naive"], COLORS["importance"]]
    hatches = [None, "//", "\\\\"]  # a second cue beside the colour
    r = np.linspace(0, 1.15 * stats.chi.ppf(0.9999, d), 300)
    # (slerp's far swings: cut)
    for (label, values), color, hatch in zip(norms.items(), colors, hatches):
        ax.hist(values.numpy(), bins=np.linspace(0, r[-1], 80), density=True, alpha=0.45,
                color=color, hatch=hatch, label=label)
    ax.plot(r, stats.chi.pdf(r, d), color=COLORS["exact"], linestyle="--", label="exact χ_d")
    ax.plot(r, np.sqrt(2) * stats.chi.pdf(np.sqrt(2) * r, d), color=COLORS["exact"],
            linestyle=":", label="exact χ_d / √2")
    if d == 50:  # 99 % of the prior's draws between the χ quantiles 0.5 % and 99.5 %
        low, high = stats.chi.ppf([0.005, 0.995], d)
        within = ((norms["prior draws"] >= low) & (norms["prior draws"] <= high)).double().mean()
        assert abs(low - 5.29) < 0.01 and abs(high - 8.92) < 0.01 and abs(within - 0.99) < 0.003
    atypical = stats.chi2.cdf(d / 2, d)
    ax.set(xlabel="‖z‖", ylabel="density",
           title=f"d = {d}: P(‖z‖ ≤ √(d/2)) = {atypical:.3g} under the prior")
    ax.legend(fontsize=7)
plt.show()
assert stats.chi2.cdf(25, 50) < 0.002  # the d = 50 straight-line midpoint's norm: atypical

# %% [markdown]
# In the 2-D space the three histograms overlap a lot — the straight line is fine there. In 50
# dimensions they barely overlap (about 8 % for prior draws against straight-line midpoints). The
# same happens between codes of real images: below, the 50-D model's decoded path between two test
# images, linear and spherical, and $\|z_t\|$ along each, against the band where the test images'
# codes lie. (The codes are posterior means, shrunk towards 0 compared with prior draws, and a
# trained model uses only some of its units — chapter 8 counted them — so the dip is smaller than
# for prior draws; but it is there.)

# %%
interpolation = Interpolation(model_big, test_x, test_labels, start=0, end=1, steps=9)
for method in ("linear", "spherical"):  # both paths start and end at the two images' codes
    torch.testing.assert_close(interpolation.paths[method][0], mu_big[0])
    torch.testing.assert_close(interpolation.paths[method][-1], mu_big[1])
middle = {m: interpolation.paths[m][4].norm().item() for m in ("linear", "spherical")}
assert middle["linear"] < middle["spherical"]  # the straight line cuts inside
interpolation.show_static()
interpolation

# %% [markdown]
# > **Classic mistakes**
# >
# > * **Reading meaning into a single latent unit.** The prior is rotation-invariant, so a
# >   rotated decoder gives the same model (section 2): nothing in $p(x)$ makes the axes
# >   meaningful, and a unit usually changes several features at once. Only the diagonal $q$
# >   breaks the symmetry, weakly; "disentangled" units are not something the ELBO promises.
# > * **Reading the 2-D map as the posterior.** The scatter shows posterior **means**, one point
# >   per image. Each $q_\phi(z\mid x)$ is a cloud (section 4), and the codes the decoder learns
# >   from are samples of the aggregate posterior, a mixture of those clouds — roughly, not
# >   exactly, $\mathcal N(0, I)$.
# > * **Interpolating linearly in a high-dimensional Gaussian latent space.** The midpoint of two
# >   typical codes has norm $\approx \|z\|/\sqrt2$: not a low-*density* point of the prior (the
# >   density is highest at 0) but an **atypical** one, in a shell that holds almost none of the
# >   prior's mass ($F_{\chi^2_{50}}(25) \approx 0.001$). Use slerp, which keeps the norm. In 2-D
# >   the difference is small.
# > * **An even grid in $z$ for the manifold.** Evenly spaced points on $[-3, 3]$ put 40 % of each
# >   axis's images beyond $|z| = 2$, where the prior has 4.6 % of its mass. Place them at
# >   $z = \Phi^{-1}(u)$, evenly in probability.
# > * **Decoded means for samples.** `decode_mean(z)` is $\mathbb E[x\mid z]$, a grey-level image
# >   of pixel probabilities; a sample from $p(x\mid z)$ is a noisy binary image. Blurry means are
# >   expected, not a failure of training.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * The decoder maps every $z$ to an image
#   $\mathbb E[x\mid z] = \operatorname{sigmoid}(f_\theta(z))$; the encoder maps every image to a
#   Gaussian cloud $q_\phi(z\mid x)$, much narrower than the prior along the active units (and
#   equal to it along the inactive ones).
# * Of chapter 8's 50 units only the **active** ones ($A_j = \operatorname{Var}_x[\mu_j(x)]$ well
#   above 0) matter; single units seldom mean single features, because $p(x)$ is invariant to
#   rotations of $z$.
# * In 2-D we see the whole space: the **aggregate posterior**
#   $\frac1N\sum_n q_\phi(z\mid x_n)$, with covariance
#   $\operatorname{Cov}[\mu] + \overline{\sigma^2}$, roughly fills the prior; the **manifold** is
#   drawn on the grid $z_i = \Phi^{-1}((i+\frac12)/n)$, one image per $1/n^2$ of prior mass.
# * $\|z\|^2 \sim \chi^2_d$ concentrates at $d$: straight-line midpoints are atypical in high
#   dimension; **slerp**
#   $\frac{\sin((1-t)\Omega)}{\sin\Omega}z_0 + \frac{\sin(t\Omega)}{\sin\Omega}z_1$
#   keeps the norm.
# * `vaelib.latent`: `encode_dataset`, `latent_activity`, `most_active_dims`, `lerp`, `slerp`,
#   `inverse_cdf_grid`, `latent_grid`. `vaelib.explorers`: `LatentExplorer`, `LatentMap`,
#   `Interpolation`, `PosteriorUncertainty`, each with `show_static()`.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# **Exercise 1 — slerp.** Write `slerp(z0, z1, t)` for two `(d,)` tensors and a number
# $t \in [0, 1]$, returning
# $\frac{\sin((1-t)\Omega)}{\sin\Omega}z_0 + \frac{\sin(t\Omega)}{\sin\Omega}z_1$ with
# $\cos\Omega = z_0\cdot z_1 / (\|z_0\|\,\|z_1\|)$. *Hint:* `torch.arccos`. (The check refuses
# `vaelib.latent.slerp`, which section 5 used.)

# %% tags=["solution"]
def my_slerp(z0, z1, t):
    """Spherical interpolation between (d,) tensors z0 and z1 at time t."""
    omega = torch.arccos(torch.dot(z0, z1) / (z0.norm() * z1.norm()))
    return (torch.sin((1 - t) * omega) * z0 + torch.sin(t * omega) * z1) / torch.sin(omega)


# %%
from vaelib.exercises import check_slerp

check_slerp(my_slerp);

# %% [markdown]
# **Exercise 2 — the manifold's grid.** Write `my_inverse_cdf_grid(n)` returning the $n$ coordinates
# $z_i = \Phi^{-1}((i + \frac12)/n)$, $i = 0, \dots, n-1$, in increasing order. *Hint:*
# `scipy.stats.norm.ppf` is $\Phi^{-1}$. (The check refuses `vaelib.latent.inverse_cdf_grid`.)

# %% tags=["solution"]
def my_inverse_cdf_grid(n):
    """n points at equal steps of N(0, 1) probability: the medians of n equal-mass slices."""
    return stats.norm.ppf((np.arange(n) + 0.5) / n)


# %%
from vaelib.exercises import check_inverse_cdf_grid

check_inverse_cdf_grid(my_inverse_cdf_grid);

# %% [markdown]
# **Exercise 3 — how atypical is the middle?** Write `prior_mass_within(radius, d)` returning
# $P(\|z\| \le r)$ for $z \sim \mathcal N(0, I_d)$. Then use it: what fraction of the prior's
# draws in $d = 50$ are at least as close to the origin as a typical straight-line midpoint,
# $\|z\| = \sqrt{d/2}$? *Hint:* what is the distribution of $\|z\|^2$?

# %% tags=["solution"]
def prior_mass_within(radius, d):
    """The prior probability that ‖z‖ is at most radius, for z ~ N(0, I_d) in d dimensions -> float.
    """
    return stats.chi2.cdf(radius**2, d)


# %%
from vaelib.exercises import check_prior_mass_within

check_prior_mass_within(prior_mass_within);

# %% [markdown]
# **Going further (no check).** (a) Train the 2-D model with a Gaussian likelihood, or with a
# KL weight $\beta > 1$ ($\beta$-VAE): how do the map and the aggregate posterior change?
# (b) In the explorer, start from a 7 and find the single unit that turns it into a 9 fastest;
# then rotate the latent space (section 2) and look for it again.
