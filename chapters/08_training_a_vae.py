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
# # Chapter 8 — Training a VAE on MNIST
#
# *Symbols: see the course's [notation page](../docs/notation.md).*
#
# Chapters 1–7 built every piece on models whose answers we knew exactly. Now we put them together
# on real data: a neural encoder $q_\phi(z\mid x)$ and decoder $p_\theta(x\mid z)$, trained on
# handwritten digits by stochastic gradient ascent on the ELBO. In this chapter you will
#
# 1. write the encoder, the decoder and the loss straight from the equations — the negative ELBO
#    of chapter 7's doubly stochastic estimator, with chapter 6's analytic KL — and check them
#    against `vaelib.vae.VAE` on the same weights;
# 2. train with `vaelib.train` (dynamic binarization, held-out validation), and look at the
#    training curves, reconstructions and samples;
# 3. see why a Bernoulli likelihood needs **binary** data — binary cross-entropy on grey levels is
#    not a likelihood — and what a Gaussian decoder models instead;
# 4. estimate the test log-likelihood $\log p_\theta(x)$ by importance sampling and set it beside
#    the ELBO and the IWAE bounds: the gap of chapter 5, measured on a real model;
# 5. count the **active units** of the latent code and meet **posterior collapse**.
#
# The model is saved to `runs/ch08_vae` (next to this notebook) for chapter 9.

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
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from ipywidgets import IntSlider
from scipy import integrate
from torch import nn

from vaelib.checkpoint import load_checkpoint, load_model
from vaelib.data import fixed_binarization, load_mnist, load_mnist_subset, to_unit_interval
from vaelib.device import default_device, seed_everything
from vaelib.estimators import log_importance_weights, log_mean_exp
from vaelib.evaluate import evaluate
from vaelib.figures import COLORS, FigureExplorer, reference_line, static_figure, use_course_style
from vaelib.kl import gaussian_kl
from vaelib.train import TrainConfig, train, validation_data
from vaelib.vae import VAE, VAEConfig


# %%
use_course_style()
seed_everything(0)

# The one setting of this chapter. "mnist-subset": the 10,000 + 2,000 images bundled with vaelib
# (offline, about a minute on a laptop CPU). "mnist": full MNIST (60,000 + 10,000 images, downloaded
# once and cached), trained longer and evaluated with K = 5000 on the whole test set: 10 minutes on
# 2 CPU cores (test NLL ≈ 89.3 after 200 epochs, asserted in section 6), less on a GPU.
DATASET = "mnist-subset"
DEVICE = default_device()  # CUDA, then Apple MPS, then the CPU

SETTINGS = {  # derived from DATASET; change DATASET, not these
    "mnist-subset": dict(epochs=70, gaussian_epochs=5, eval_points=500, eval_samples=500,
                         curve_points=100, curve_samples=1024),
    "mnist": dict(epochs=200, gaussian_epochs=20, eval_points=10_000, eval_samples=5000,
                  curve_points=1000, curve_samples=4096),
}[DATASET]
RUN_DIR = Path("runs") / "ch08_vae"  # relative to this notebook's folder; runs/ is git-ignored
print(f"dataset {DATASET}, device {DEVICE}, settings {SETTINGS}")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 1. The data: MNIST, binarized
#
# Each image is $28\times28$ grey levels in $[0, 1]$, flattened to $x \in [0,1]^{D}$, $D = 784$.
# Our decoder will be a **Bernoulli** model: it gives every pixel a probability of being *on*,
# so it is a distribution over **binary** images $x \in \{0, 1\}^{784}$. We therefore binarize:
#
# * **training** — *dynamic binarization*: every time an image enters a minibatch, each pixel is
#   redrawn as $\tilde x_i \sim \operatorname{Bernoulli}(\text{grey level}_i)$, so the model sees a
#   fresh binary version each epoch (a little data augmentation, and no overfitting to one
#   arbitrary binarization);
# * **validation and test** — one *fixed* binarization with a fixed seed, so numbers are
#   reproducible and comparable between runs and with the literature (Burda et al., 2015).
#
# We hold out the last 10 % of the training images for validation; the test images are only
# touched at the end.

# %%
mnist = load_mnist_subset() if DATASET == "mnist-subset" else load_mnist()
images = to_unit_interval(mnist.train_images)  # (N, 784) grey levels in [0, 1]
num_val = len(images) // 10
train_x = images[:-num_val].to(DEVICE)  # grey levels: train() binarizes every batch afresh
val_x = images[-num_val:].to(DEVICE)  # train() binarizes it once, with a fixed seed
test_x = to_unit_interval(mnist.test_images)  # (N_test, 784) grey levels
test_bin = fixed_binarization(test_x, seed=0)  # the binary test set every number below is about
test_labels = mnist.test_labels
print(
    f"train {tuple(train_x.shape)}, validation {tuple(val_x.shape)}, test {tuple(test_bin.shape)}"
)
assert set(test_bin.unique().tolist()) == {0.0, 1.0}
assert abs(test_bin.mean().item() - test_x.mean().item()) < 0.005  # E[Bernoulli(p)] = p

# %%
def image_axes(ax):
    """An axis that shows an image: no ticks, grid or frame."""
    ax.set(xticks=[], yticks=[])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)


fig, axes = plt.subplots(1, 5, figsize=(9, 2.2))
digit = test_x[0].reshape(28, 28)
axes[0].imshow(digit, cmap="gray_r", vmin=0, vmax=1)
axes[0].set_title("grey levels")
for k, ax in enumerate(axes[1:]):
    ax.imshow(
        torch.bernoulli(digit, generator=torch.Generator().manual_seed(k)),
        cmap="gray_r",
        vmin=0,
        vmax=1,
    )
    ax.set_title(f"binarization {k + 1}")
for ax in axes:
    image_axes(ax)
fig.suptitle(
    "Dynamic binarization: each epoch sees a different binary draw of the same digit", y=1.04
)
plt.show()

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 2. The model, from the equations
#
# **Generative model** (decoder, parameters $\theta$): a code $z \in \mathbb R^d$, $d = 50$, from
# the prior, and independent Bernoulli pixels whose logits a neural network $f_\theta$ computes (the
# decoder's output $f_\theta(z)$ is now logits, where in chapters 1–7 it was a Gaussian's mean;
# $\ell$ names the logits in this chapter, not a log-likelihood),
#
# $$
# p(z) = \mathcal N(0, I_d), \qquad
# p_\theta(x \mid z) = \prod_{i=1}^{D} \operatorname{Bernoulli}\big(x_i;\
# \operatorname{sigmoid}(\ell_i)\big),
# \qquad \ell = f_\theta(z) \in \mathbb R^{D}.
# $$
#
# With $\log \operatorname{sigmoid}(\ell) = \ell - \operatorname{softplus}(\ell)$ and
# $\log(1 - \operatorname{sigmoid}(\ell)) = -\operatorname{softplus}(\ell)$, where
# $\operatorname{softplus}(\ell) = \log(1 + e^{\ell})$, the log-likelihood is a **sum over the 784
# pixels**, computed stably from the logits:
#
# $$
# \log p_\theta(x\mid z) = \sum_{i=1}^{D} \big[x_i \log \operatorname{sigmoid}(\ell_i) + (1 -
# x_i)\log(1 - \operatorname{sigmoid}(\ell_i))\big]
# = \sum_{i=1}^{D} \big[x_i \ell_i - \operatorname{softplus}(\ell_i)\big].
# $$
#
# **Encoder** (parameters $\phi$): a second network outputs the mean and the log-variance of a
# diagonal Gaussian,
# $q_\phi(z \mid x) = \mathcal N\big(\mu_\phi(x), \operatorname{diag}\sigma^2_\phi(x)\big)$.
#
# **The ELBO** (chapter 4) with the KL to the prior in closed form (chapter 6):
#
# $$
# \mathrm{ELBO}(x) = \mathbb E_{q_\phi(z\mid x)}\big[\log p_\theta(x \mid z)\big]
# - \mathrm{KL}\big(q_\phi(z\mid x)\,\Vert\,p(z)\big), \qquad
# \mathrm{KL} = \frac12 \sum_{j=1}^{d}\big(\mu_j^2 + \sigma_j^2 - 1 - \log\sigma_j^2\big).
# $$
#
# **The loss** is chapter 7's doubly stochastic estimator. A minibatch $B$ of $m$ of the $n$
# training images (indexed by $b$) and one reparameterized sample per image,
# $z_b = \mu_\phi(x_b) + \sigma_\phi(x_b)\odot\varepsilon_b$ with
# $\varepsilon_b \sim \mathcal N(0, I_d)$, give the unbiased estimate
# $\frac nm \sum_{b\in B}\big[\log p_\theta(x_b\mid z_b) - \mathrm{KL}_b\big]$ of
# $\sum_{b=1}^n \mathrm{ELBO}(x_b)$. Dividing it by $n$ (a constant: the gradient keeps its
# direction) gives the loss we minimize, in **nats per image**:
#
# $$
# \text{loss} = -\frac1m \sum_{b \in B}
# \Big[\underbrace{\sum_{i=1}^{D}\big(x_{b,i}\,\ell_{b,i} - \operatorname{softplus}(\ell_{b,i})\big)}_{\log p_\theta(x_b \mid z_b)}
# - \mathrm{KL}_b\Big],
# \qquad \ell_b = f_\theta(z_b).
# $$
#
# **Averaged** over the images of the batch, **summed** over the pixels and the latent dimensions.
#
# The architecture is Burda, Grosse & Salakhutdinov's (2015) one-stochastic-layer VAE:
# 784–200–200–(50 + 50) for the encoder, 50–200–200–784 for the decoder, tanh in between.

# %%
class VAEFromScratch(nn.Module):
    """Encoder x (N, 784) -> (mu, logvar) (N, 50); decoder z (..., 50) -> logits (..., 784)."""

    def __init__(self, data_dim=784, hidden=200, latent_dim=50):
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(data_dim, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, 2 * latent_dim),
        )
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, data_dim),
        )

    def encode(self, x):
        mu, logvar = self.encoder(x).chunk(2, dim=-1)  # (N, 2d) -> 2 × (N, d)
        return mu, logvar

    def decode(self, z):
        return self.decoder(z)  # the logits ℓ = f(z), one per pixel

# %%
def elbo_estimate(model, x, generator=None):
    """One-sample ELBO of every image: log p(x|z) - KL(q(z|x) ‖ p(z)), z = μ + σ ⊙ ε. (N, D) ->
    (N,).
    """
    mu, logvar = model.encode(x)  # (N, d)
    eps = torch.randn(mu.shape, generator=generator)  # ε ~ N(0, I)
    z = mu + torch.exp(0.5 * logvar) * eps  # reparameterized (ch. 7)
    logits = model.decode(z)  # (N, D)
    log_lik = (x * logits - F.softplus(logits)).sum(dim=-1)  # Σ over the 784 pixels
    kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(dim=-1)  # analytic (ch. 6)
    return log_lik - kl


def negative_elbo_loss(model, x, generator=None):
    """The training loss: minus the ELBO, averaged over the m images of the minibatch (nats per
    image).
    """
    return -elbo_estimate(model, x, generator).mean()


# %% [markdown]
# Now `vaelib`'s version: `VAE(VAEConfig.preset("burda"))` has the same layers under the same names,
# so its weights load into ours unchanged. Fed the same $\varepsilon$ (the same seed), the two ELBOs
# must agree image by image, and so must the gradients of the loss with respect to every weight. We
# also check the two halves separately: the log-likelihood against `torch.distributions.Bernoulli`
# and the KL against `vaelib.kl.gaussian_kl`.

# %%
vae_check = VAE(VAEConfig.preset("burda"))  # randomly initialized; on the CPU, like ours
ours = VAEFromScratch()
ours.load_state_dict(
    vae_check.state_dict()
)  # copy the weights over (raises if any name or shape differs)
x_batch = fixed_binarization(images[:256].cpu(), seed=1)  # (256, 784) binary

elbo_ours = elbo_estimate(ours, x_batch, torch.Generator().manual_seed(7))
elbo_vaelib = vae_check.elbo_analytic_kl(
    x_batch, generator=torch.Generator().manual_seed(7)
)  # (256,)
print(f"ELBO of a random network: {elbo_vaelib.mean():.2f} nats per image; "
      f"largest difference {(elbo_ours - elbo_vaelib).abs().max():.1e} nats")
assert torch.allclose(elbo_ours, elbo_vaelib, rtol=1e-5, atol=1e-3)  # float32, sums of 784 terms

grads_ours = torch.autograd.grad(
    negative_elbo_loss(ours, x_batch, torch.Generator().manual_seed(8)), list(ours.parameters())
)
grads_vaelib = torch.autograd.grad(
    -vae_check.elbo_analytic_kl(x_batch, generator=torch.Generator().manual_seed(8)).mean(),
    list(vae_check.parameters()),
)

# %%
assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(grads_ours, grads_vaelib))

with torch.no_grad():  # the two halves, each against an independent reference
    mu, logvar = ours.encode(x_batch)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(
        mu.shape, generator=torch.Generator().manual_seed(9)
    )
    logits = ours.decode(z)
    reference = torch.distributions.Bernoulli(logits=logits).log_prob(x_batch).sum(-1)
    assert torch.allclose(
        (x_batch * logits - F.softplus(logits)).sum(-1), reference, rtol=1e-5, atol=1e-3
    )
    assert torch.allclose(
        0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(-1),
        gaussian_kl(mu, logvar),
        rtol=1e-5,
        atol=1e-5,
    )
print("from scratch = vaelib: ELBO per image, every gradient, log p(x|z), KL")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 3. Training with `vaelib.train`
#
# `vaelib.train.train(model, train_x, ...)` minimizes exactly this loss with Adam (learning rate
# $10^{-3}$, minibatches of $m = 128$). What it adds is engineering, not mathematics: the data stay
# on the device, each epoch's minibatches are slices of one random permutation, each batch is
# binarized afresh, nothing is read back to the host until the epoch ends (on a GPU a `.item()` per
# step would stall it every step), and it keeps a **history** of the ELBO, the reconstruction term
# $\mathbb E_q[\log p_\theta(x\mid z)]$ and the KL per epoch, on the training batches and on the
# validation set. Burda et al.'s recipe also starts the decoder's output bias at the logit of the
# mean training image, so training begins from "the average digit" rather than from $p = \frac12$
# everywhere (`init_output_bias=True` in the preset).
#
# Passing `checkpoint_dir` makes it save the model with `vaelib.checkpoint` (the config as JSON
# beside the weights, written atomically), which is how chapter 9 gets it. The progress bar shows
# the epoch and the running ELBO; the stop button keeps what has been learned so far.
#
# A `callback` runs after every epoch. Ours records how many latent units the encoder *uses*: a
# unit $j$ whose posterior mean $\mu_j(x)$ does not vary across validation images tells the decoder
# nothing about them (section 7 makes this precise: the unit's **activity**).

# %%
model = VAE(VAEConfig.preset("burda")).to(DEVICE)
print(model.config)
train_config = TrainConfig(epochs=SETTINGS["epochs"], checkpoint_every=10, seed=0)
val_bin = validation_data(model, val_x, train_config)  # the binary validation set train() scores
units_in_use = []  # per epoch: number of units with Var_x[μ_j(x)] > 0.01, and > 0.1


def record_units_in_use(history, vae):
    """train() calls callback(history, model) after every epoch."""
    with torch.no_grad():
        # Var over the validation images of μ_j(x), (d,)
        activity = vae.encode(val_bin)[0].var(dim=0)
    units_in_use.append([(activity > 0.01).sum().item(), (activity > 0.1).sum().item()])


history = train(model, train_x, train_config, val_x=val_x, checkpoint_dir=RUN_DIR,
                callback=record_units_in_use)
print(f"{len(history)} epochs in {history.seconds[-1]:.1f} s; final ELBO per image: train "
      f"{history.train_elbo[-1]:.2f}, validation {history.val_elbo[-1]:.2f} nats (KL "
      f"{history.val_kl[-1]:.2f})")
assert len(history) == SETTINGS["epochs"] and not history.interrupted
assert history.val_elbo[-1] > -116  # measured ≈ -109.5 on the subset
# it kept learning after the first epoch (≈ -174 then)
assert history.val_elbo[-1] > history.val_elbo[0] + 5
assert history.train_kl[-1] > 15  # the code carries information (≈ 22 nats)
assert units_in_use[0][0] > units_in_use[-1][0]  # units were switched off during training

# %%
fig, axes = plt.subplots(2, 2, figsize=(11, 7))
axes = axes.ravel()
panels = [("ELBO", history.train_elbo, history.val_elbo, COLORS["elbo"]),
          (r"reconstruction $\mathbb{E}_q[\log p(x\mid z)]$", history.train_reconstruction,
           history.val_reconstruction, COLORS["importance"]),
          (r"KL$(q(z\mid x)\,\Vert\,p(z))$", history.train_kl, history.val_kl, COLORS["proposal"])]
for ax, (name, train_curve, val_curve, color) in zip(axes, panels):
    ax.plot(history.epoch, train_curve, color=color, label="training batches")
    ax.plot(
        history.val_epoch,
        val_curve,
        "o--",
        color=color,
        markersize=3,
        alpha=0.7,
        label="validation",
    )
    ax.set(xlabel="epoch", ylabel="nats per image", title=name)
    ax.legend()
units_in_use_arr = np.array(units_in_use)  # (epochs, 2)
axes[3].plot(
    history.epoch,
    units_in_use_arr[:, 0],
    color=COLORS["posterior"],
    label=r"Var$_x[\mu_j(x)] > 0.01$",
)
axes[3].plot(
    history.epoch,
    units_in_use_arr[:, 1],
    ":",
    color=COLORS["posterior"],
    label=r"Var$_x[\mu_j(x)] > 0.1$",
)
axes[3].set(xlabel="epoch", ylabel=f"units (of {model.latent_dim})", ylim=(0, model.latent_dim + 2),
            title="latent units in use (validation)")
axes[3].legend()
fig.suptitle(f"Training the VAE on {DATASET} ({len(train_x):,} images, {len(history)} epochs)")
plt.tight_layout()
plt.show()

# %% [markdown]
# Read the first three panels together: ELBO = reconstruction − KL, epoch by epoch. Early on the
# reconstruction term shoots up while the KL grows from a few nats: the encoder learns to put
# information about $x$ into $z$, and the decoder learns to use it. (The average KL bounds that
# information from above: it equals the mutual information between $x$ and $z$ under the encoder
# plus $\mathrm{KL}(q(z)\,\Vert\,p(z))$ for the average posterior $q(z)$; Hoffman & Johnson, 2016.)
# Later both change slowly. The training curve is the average over the epoch's batches *while the
# weights were changing*, with a fresh binarization each time; the validation curve is measured at
# the end of each epoch on one fixed binarization of held-out images. On 9,000 images the gap
# between the two slowly widens while the validation ELBO still improves: mild **overfitting**.
#
# The fourth panel is the surprise. After the first epoch nearly all 50 units vary a little with
# the input. The number with a large activity (dotted) drops within a few epochs and then settles;
# the number above 0.01 drifts down much more slowly (and not monotonically) as the encoder
# switches off units it does not need. Section 7 comes back to these switched-off units: they are
# **posterior collapse**, one unit at a time.
#
# The checkpoint is on disk; loading it gives back the same network:

# %%
checkpoint = load_checkpoint(RUN_DIR)
assert checkpoint.epoch == SETTINGS["epochs"] and checkpoint.config == model.config
with torch.no_grad():
    assert torch.equal(
        checkpoint.model.encode(test_bin[:5])[0], model.cpu().encode(test_bin[:5])[0]
    )
model.to(DEVICE)
print(f"saved in {RUN_DIR.resolve()} — chapter 9 loads it with "
      f"vaelib.checkpoint.load_model({str(RUN_DIR)!r})")

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 4. Reconstructions and samples
#
# From here on the model is only *evaluated*: `model.eval()` (this network has no dropout or batch
# normalization, so it changes nothing here — but it is the habit that keeps such layers from
# misbehaving) and `torch.no_grad()` (no graph, much less memory).
#
# A **reconstruction** encodes $x$, takes the posterior mean $\mu_\phi(x)$ as the code, and shows
# the decoder's pixel probabilities $\operatorname{sigmoid}(f_\theta(\mu_\phi(x)))$. A **sample**
# draws $z \sim \mathcal N(0, I)$ and shows the same probabilities: the *mean* of
# $p_\theta(x\mid z)$, as is customary. An actual draw $x \sim p_\theta(x \mid z)$ is a binary
# image, speckled like the binarized data (right panel below).

# %%
model.eval()
cpu_model = load_model(RUN_DIR)  # a CPU copy for the small figures below
cpu_model.eval()
first_of_each_class = [int((test_labels == c).nonzero()[0]) for c in range(10)]
with torch.no_grad():
    x_show = test_bin[first_of_each_class]  # (10, 784): one test digit of each class
    x_rec = cpu_model.reconstruct(x_show)  # sigmoid(f(μ(x))), (10, 784)
    prior_means = cpu_model.generate(64, generator=torch.Generator().manual_seed(0))  # (64, 784)
    # x ~ p(x|z)
    prior_draws = torch.bernoulli(prior_means, generator=torch.Generator().manual_seed(1))


# %%
def show_row(ax_row, rows, title=None):
    """Draw (k, 784) images along a row of axes."""
    for ax, image in zip(ax_row, rows):
        ax.imshow(image.reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
        image_axes(ax)
    if title:
        ax_row[0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=9)


def mosaic(images, cols=8):
    """(k, 784) images -> one (rows·29, cols·29) array, a 1-pixel white gap between digits."""
    rows = math.ceil(len(images) / cols)
    out = np.zeros((rows * 29 + 1, cols * 29 + 1))
    for k, image in enumerate(images):
        r, c = divmod(k, cols)
        out[1 + 29 * r:29 * (r + 1), 1 + 29 * c:29 * (c + 1)] = image.reshape(28, 28).numpy()
    return out


fig, axes = plt.subplots(3, 10, figsize=(11, 3.8))
show_row(axes[0], test_x[first_of_each_class], "grey levels")
show_row(axes[1], x_show, "binarized input x")
show_row(axes[2], x_rec, "reconstruction\nsigmoid(f(μ(x)))")
fig.suptitle("Test digits (never seen in training) and their reconstructions", y=1.0)
plt.show()

fig, axes = plt.subplots(1, 2, figsize=(11, 5.6))
for ax, grid, title in zip(axes, [prior_means, prior_draws],
                           ["means of p(x | z): pixel probabilities", "one draw x ~ p(x | z) each: "
                                                                      "binary images"]):
    ax.imshow(mosaic(grid), cmap="gray_r", vmin=0, vmax=1)
    ax.set_title(title)
    image_axes(ax)
fig.suptitle("64 samples from the model: z ~ N(0, I), then the decoder (same z in both panels)")
plt.tight_layout()
plt.show()

# %% [markdown]
# The reconstructions keep the identity and the style of each digit but are blurrier than the
# input: a 50-dimensional Gaussian code cannot store every pixel, and the decoder's mean averages
# over what the code leaves uncertain. The prior samples are mostly recognizable digits, some
# ambiguous blends: the aggregate of the posteriors $q_\phi(z\mid x)$ over the training set does
# not fill $\mathcal N(0, I)$ perfectly, and codes from the gaps decode to in-between shapes
# (chapter 9 looks at this latent space).

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 5. Why binarize? Bernoulli on binary data versus "BCE" on grey levels
#
# Binary cross-entropy, $\mathrm{BCE}(x, \lambda) = -[x\log\lambda + (1-x)\log(1-\lambda)]$, is what
# $-\log p_\theta(x\mid z)$ becomes for one pixel, with $\lambda = \operatorname{sigmoid}(\ell)$.
# Deep-learning code happily evaluates it for a grey-level target $x \in (0, 1)$. But a likelihood
# must be a normalized distribution over the values $x$ can take:
#
# * on $\{0, 1\}$: $\sum_{x\in\{0,1\}} \lambda^x(1-\lambda)^{1-x} = \lambda + (1 - \lambda) = 1$. ✓
#   A probability mass function, so $\log p_\theta(x\mid z) \le 0$ and the ELBO is a bound on a
#   log-probability.
# * on $[0, 1]$: $e^{-\mathrm{BCE}(x,\lambda)} = \lambda^x(1-\lambda)^{1-x} = (1-\lambda)\,r^x$ with
#   $r = \frac{\lambda}{1-\lambda}$ integrates to
#
# $$
# \int_0^1 \lambda^x (1-\lambda)^{1-x}\, dx = (1-\lambda)\,\frac{r - 1}{\log r}
# = \frac{2\lambda - 1}{\log\lambda - \log(1-\lambda)} \quad (\lambda \ne \tfrac12), \qquad =
# \tfrac12 \text{ at } \lambda = \tfrac12 ,
# $$
#
# which is at most $\frac12$ and depends on $\lambda$. ✗ Not a density: $-\mathrm{BCE}$ on grey
# levels is the log of an *unnormalized* function. Normalizing it (the "continuous Bernoulli",
# Loaiza-Ganem & Cunningham, 2019) adds $-\log\int \ge \log 2$ nats per pixel, at least
# $784\log 2 \approx 543$ nats per image, by an amount that changes with the decoder's output — so
# the "log-likelihood" a grey-level BCE reports is not a log-likelihood, is not comparable with
# anything in the literature, and is not even a fixed offset from one.

# %%
def bce_weight(x, lam):
    """exp(-BCE(x, λ)) = λ^x (1 - λ)^(1 - x)."""
    return lam**x * (1 - lam) ** (1 - x)


lams = np.linspace(0.005, 0.995, 199)
sums = np.array([bce_weight(0, lam) + bce_weight(1, lam) for lam in lams])  # Σ over x in {0, 1}
# ∫ over [0, 1]
integrals = np.array([integrate.quad(bce_weight, 0, 1, args=(lam,))[0] for lam in lams])
off = ~np.isclose(lams, 0.5)
closed_form = np.full_like(lams, 0.5)  # the limit at λ = ½, where the formula is 0/0
closed_form[off] = (2 * lams[off] - 1) / np.log(lams[off] / (1 - lams[off]))
assert np.allclose(sums, 1.0, atol=1e-12)  # a pmf on {0, 1}
assert np.allclose(integrals, closed_form, rtol=1e-8)  # the formula above, by quadrature
assert integrals.max() <= 0.5 + 1e-12  # never a density on [0, 1]
lam = 0.8
print(f"λ = {lam}: Σ over x in {{0,1}} = {bce_weight(0, lam) + bce_weight(1, lam):.6f},  "
      f"∫ over [0,1] = {integrate.quad(bce_weight, 0, 1, args=(lam,))[0]:.6f}")
print(f"missing normalization: at least 784·log 2 = {784 * math.log(2):.1f} nats per image")

fig, ax = plt.subplots(figsize=(7.5, 3.8))
reference_line(ax, 1.0, label="what a likelihood must give: 1")
ax.plot(lams, sums, ":", color=COLORS["elbo"], linewidth=3,
        label=r"sum over $x \in \{0, 1\}$ of $\lambda^x(1-\lambda)^{1-x}$ (binary pixels)")
ax.plot(lams, integrals, color=COLORS["naive"],
        label=r"integral over $x \in [0, 1]$ of $\lambda^x(1-\lambda)^{1-x}$ (grey levels)")
ax.plot([lam], [integrate.quad(bce_weight, 0, 1, args=(lam,))[0]], "o", color=COLORS["naive"])
ax.annotate(f"λ = {lam}: {integrate.quad(bce_weight, 0, 1, args=(lam,))[0]:.3f}", (lam, 0.433),
            xytext=(0.8, 0.68), arrowprops=dict(arrowstyle="->"), fontsize=9, ha="center")
ax.set(
    xlabel=r"decoder output $\lambda$ = sigmoid(logit)",
    ylabel="total mass of exp(-BCE)",
    ylim=(0, 1.1),
    title="exp(-BCE) is normalized on {0, 1}, not on [0, 1]",
)
ax.legend(loc="lower center", fontsize=9)
plt.show()

# %% [markdown]
# ### A Gaussian decoder for grey levels
#
# If we want to model the grey levels themselves, the likelihood must be a density on continuous
# $x$, for example a Gaussian $p_\theta(x\mid z) = \mathcal N\big(f_\theta(z), s^2 I\big)$ with a
# fixed noise $s = 0.1$ (`VAEConfig(likelihood="gaussian", gaussian_std=0.1)`; as in chapters 1–7,
# $s$ is the decoder noise and the decoder's output $f_\theta(z)$ is the mean, where the Bernoulli
# decoder's $f_\theta(z)$ are logits): then
# $\log p_\theta(x\mid z) = -\frac12\sum_i\big[(x_i - f_{\theta,i}(z))^2/s^2 + \log 2\pi s^2\big]$,
# a squared error plus a constant. The reconstruction term is often written as
# $-\lVert x - f_\theta(z)\rVert^2$ alone (e.g. in Doersch's 2016 tutorial): that is this formula
# with $s^2 = \tfrac12$. Any other $s$ weighs the squared error against the KL by $1/(2s^2)$
# instead, so dropping it silently fixes $s^2 = \tfrac12$. We train one briefly on the grey levels
# (no binarization) and compare what the two decoders describe.

# %%
gaussian_model = VAE(VAEConfig.preset("burda", likelihood="gaussian", gaussian_std=0.1)).to(DEVICE)
gaussian_history = train(
    gaussian_model, train_x, epochs=SETTINGS["gaussian_epochs"], val_x=val_x, seed=0, progress=False
)  # binarize=None: only for a Bernoulli likelihood
gaussian_model.eval()
with torch.no_grad():
    gaussian_elbo = (
        gaussian_model.elbo_analytic_kl(test_x[:500].to(DEVICE), generator=None).mean().item()
    )
    bernoulli_elbo = model.elbo_analytic_kl(test_bin[:500].to(DEVICE)).mean().item()
print(f"test ELBO: Bernoulli on binarized digits {bernoulli_elbo:.1f} nats, "
      f"Gaussian (σ = 0.1) on grey levels {gaussian_elbo:+.1f} nats")
print(f"the same Gaussian model on pixels in [0, 255]: {gaussian_elbo - 784 * math.log(255):+.1f} "
      "nats")
assert bernoulli_elbo < 0 < gaussian_elbo  # a log-probability vs a log-density: not comparable

# %%
with torch.no_grad():
    x_pair = test_x[first_of_each_class[2:4]]  # two grey-level test digits, (2, 784)
    bern_mean = cpu_model.reconstruct(fixed_binarization(x_pair, seed=0))  # probabilities, (2, 784)
    bern_draw = torch.bernoulli(bern_mean, generator=torch.Generator().manual_seed(3))
    gauss_mean = gaussian_model.reconstruct(x_pair.to(DEVICE)).cpu()  # f(μ(x)), (2, 784)
    gauss_draw = gauss_mean + 0.1 * torch.randn(
        gauss_mean.shape, generator=torch.Generator().manual_seed(4)
    )
pixel_cmap = plt.get_cmap("gray_r").copy()
pixel_cmap.set_under("#9ecae1")  # values below 0: light blue
pixel_cmap.set_over("#fc9272")  # values above 1: light red
fig, axes = plt.subplots(2, 5, figsize=(12, 4.8))
titles = ["grey-level input", "Bernoulli: mean\n(pixel probabilities)", "Bernoulli: a draw\n(a "
                                                                        "binary image)",
          "Gaussian: mean f(z)\n(grey levels)", "Gaussian: a draw\nf(z) + 0.1 ε"]
for row in range(2):
    for ax, image, title in zip(
        axes[row],
        [x_pair[row], bern_mean[row], bern_draw[row], gauss_mean[row], gauss_draw[row]],
        titles,
    ):
        shown = ax.imshow(image.reshape(28, 28), cmap=pixel_cmap, vmin=0, vmax=1)
        ax.set_title(title if row == 0 else "", fontsize=10)
        image_axes(ax)
fig.colorbar(shown, ax=axes, shrink=0.7, extend="both", label="pixel value (blue < 0, red > 1)")
fig.suptitle("What each decoder models, at the posterior mean code z = μ(x)", x=0.45)
plt.show()
below_zero = (gauss_draw < 0).float().mean().item()
print(f"Gaussian draws: {below_zero:.0%} of pixels below 0, {(gauss_draw > 1).float().mean():.0%} "
      "above 1")
assert 0.2 < below_zero < 0.5  # about a third: the background is 0 plus noise of σ = 0.1

# %% [markdown]
# The Bernoulli decoder describes **which pixels are on**: its mean is a probability map, its
# draws binary images like the binarized data. The Gaussian decoder describes **grey levels plus
# independent noise**: its mean is a grey image (nothing keeps even the mean inside $[0, 1]$: the
# light-blue background is slightly negative), and its draws put a third of the pixels below 0 —
# the background is exactly 0 in MNIST, but a Gaussian with $\sigma = 0.1$ cannot express that.
#
# And its ELBO is *positive* — after a few epochs, and it grows with training — while the
# Bernoulli's is around $-105$ nats. That does not make it the better model: one is a bound on the
# log of a *density* on $\mathbb R^{784}$, the other on the log of a *probability* of a binary image
# (always $\le 0$). A density's value depends on the units — the same model on pixels in $[0, 255]$
# loses $784\log 255 \approx 4344$ nats — and on the arbitrary $\sigma$; with a learned $\sigma$ per
# pixel it is not even bounded (pixels that are always 0 let their $\sigma \to 0$ and the density
# $\to\infty$). Test log-likelihoods are only comparable for the same data *and* the same kind of
# likelihood: on MNIST that is binarized MNIST.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 6. The test log-likelihood by importance sampling
#
# The ELBO is a lower bound; the number a density model is judged by is $\log p_\theta(x)$ on test
# data. It has no closed form, but chapter 3's importance sampling with the encoder as proposal
# estimates it: with $z_k \sim q_\phi(z\mid x)$ and log-weights
# $\log w_k = \log p_\theta(x, z_k) - \log q_\phi(z_k\mid x)$,
#
# $$
# \log \hat p_K(x) = \log \frac1K \sum_{k=1}^K w_k, \qquad
# \mathrm{ELBO}(x) \approx \frac1K\sum_{k=1}^K \log w_k, \qquad
# \mathrm{IWAE}_k(x) = \mathbb E\Big[\log \frac1k \sum_{j=1}^k w_j\Big].
# $$
#
# Chapter 4 showed
# $\mathrm{ELBO} = \mathrm{IWAE}_1 \le \mathrm{IWAE}_k \le \mathrm{IWAE}_{k+1} \le \log p_\theta(x)$,
# with $\mathrm{IWAE}_k \to \log p_\theta(x)$ as $k \to \infty$: $\log\hat p_K$ *is* one draw of
# $\mathrm{IWAE}_K$, a stochastic lower bound that tightens with $K$. Burda et al. (2015) use
# $K = 5000$ on the 10,000 MNIST test images; `vaelib.evaluate.evaluate` does that in chunks that
# fit the memory (50 million decoder passes, about $2\times10^{13}$ floating-point operations:
# minutes on two CPU cores, seconds on a GPU; it is what `DATASET = "mnist"` runs). Burda et al.
# report $\log p_\theta(x) \approx -86.76$ nats for this architecture trained for 3280 epochs;
# `python -m vaelib.train` (the README gives the command) reached $-86.30$ after 3000 epochs on full
# MNIST, 85 minutes on a 2-core CPU. That command follows their model, optimizer (Adam,
# $\epsilon = 10^{-4}$) and evaluation, but not their schedule: it uses minibatches of 100 and a
# learning rate decaying geometrically from $10^{-3}$ to $10^{-4}$ over 3000 epochs, where Burda et
# al. used minibatches of 20 and a stepwise schedule, $10^{-3}\cdot 10^{-i/7}$ for $3^i$ epochs,
# $i = 0, \dots, 7$ (3,280 epochs in all). On the subset we use $K = 500$ on 500 test images.

# %%
num_points, num_samples = SETTINGS["eval_points"], SETTINGS["eval_samples"]
start = time.perf_counter()
evaluation = evaluate(
    model, test_bin[:num_points], num_samples=num_samples, iwae_samples=50, seed=0
)
seconds = time.perf_counter() - start
summary = evaluation.summary()
print(f"{num_points} test images, K = {num_samples}, {seconds:.1f} s on {DEVICE}:")
print(f"  ELBO            {summary['elbo']:8.2f} nats per image")
print(f"  IWAE_50         {summary['iwae_50']:8.2f}")
print(f"  log p(x), K={num_samples:<4d} {summary['log_likelihood']:8.2f}  ± "
      f"{summary['log_likelihood_sem']:.2f} (s.e. over the images); NLL = {summary['nll']:.2f}")
print(f"  gap log p - ELBO ≈ {summary['log_likelihood'] - summary['elbo']:.2f} nats "
      "= KL(q(z|x) ‖ p(z|x)), averaged over the images")
print(f"  effective sample size: {summary['ess_mean']:.1f} of {num_samples} (mean over images)")
# From the same weights the ordering holds for every image, not only on average (Jensen, twice):
assert (evaluation.elbo <= evaluation.iwae + 1e-3).all()
assert (evaluation.iwae <= evaluation.log_likelihood + 1e-3).all()
assert summary["elbo"] > -112  # measured ≈ -105.3 on the subset
assert 1 < summary["log_likelihood"] - summary["elbo"] < 15  # the variational gap: ≈ 5 nats
if DATASET == "mnist":  # measured: NLL 89.3 after 200 epochs (10 minutes on 2 CPU cores)
    assert summary["nll"] < 90.3, summary["nll"]

# %% [markdown]
# The ELBO of the analytic-KL form that training used and the $\frac1K\sum_k\log w_k$ form that
# `evaluate` uses estimate the same number (chapter 6): check it on the same images.

# %%
with torch.no_grad():
    elbo_analytic = model.elbo_analytic_kl(test_bin[:num_points].to(DEVICE), num_samples=100,
                               generator=torch.Generator(device=DEVICE).manual_seed(5)).cpu()
difference = elbo_analytic - evaluation.elbo  # (num_points,)
standard_error = difference.std().item() / math.sqrt(num_points)
print(f"analytic-KL ELBO {elbo_analytic.mean():.2f}, sampled ELBO {evaluation.elbo.mean():.2f}: "
      f"difference {difference.mean():+.3f} ± {standard_error:.3f}")
assert abs(difference.mean().item()) < 4 * standard_error + 0.05

# %% [markdown]
# To see the whole chain $\mathrm{ELBO} \le \mathrm{IWAE}_k \le \log p_\theta(x)$ we compute the
# log-weights ourselves for 100 test images, with $K = 1024$, and average $\log\frac1k\sum_j w_j$
# over the $K/k$ disjoint groups of $k$ weights, for $k = 1, 2, 4, \dots, 1024$.

# %%
num_curve = SETTINGS["curve_points"]
x_curve = test_bin[:num_curve].to(DEVICE)
with torch.no_grad():
    log_w = log_importance_weights(
        model,
        x_curve,
        model.posterior(x_curve),
        SETTINGS["curve_samples"],
        generator=torch.Generator(device=DEVICE).manual_seed(6),
        chunk_size=64,
    ).cpu()
ks = [2**p for p in range(int(math.log2(SETTINGS["curve_samples"])) + 1)]  # 1, 2, 4, ..., K
# IWAE_k: split the K weights into K/k groups of k, log-mean-exp within each group, average the rest
iwae_k = np.array([log_mean_exp(log_w.reshape(-1, k, num_curve), dim=1).mean().item() for k in ks])
elbo_curve = log_w.mean().item()
# vaelib.evaluate, K = 500, other samples
log_p_eval = evaluation.log_likelihood[:num_curve].mean().item()
print("IWAE_k:", ", ".join(f"k={k}: {v:.2f}" for k, v in zip(ks, iwae_k)))
assert math.isclose(iwae_k[0], elbo_curve, rel_tol=1e-6)  # IWAE_1 = ELBO
assert (np.diff(iwae_k) >= -1e-4).all()  # nested groups: each doubling can only raise it (Jensen)
assert iwae_k[-1] - iwae_k[-2] < 0.5  # the last doubling adds only a few tenths of a nat

# %%
assert abs(iwae_k[-1] - log_p_eval) < 0.5  # two independent estimates of log p(x) agree

fig, ax = plt.subplots(figsize=(7.5, 4))
ax.plot(ks, iwae_k, "o-", color=COLORS["importance"], label=r"IWAE$_k$ (mean over 100 test images)")
ax.axhline(elbo_curve, color=COLORS["elbo"], label=f"ELBO = IWAE$_1$ = {elbo_curve:.1f}")
reference_line(ax, log_p_eval, label=fr"$\log \hat p(x)$, K = {num_samples} (vaelib.evaluate) = "
                                     fr"{log_p_eval:.1f}")
ax.annotate("", xy=(1.5, log_p_eval), xytext=(1.5, elbo_curve),
            arrowprops=dict(arrowstyle="<->", color=COLORS["proposal"]))
ax.text(
    1.65,
    (log_p_eval + elbo_curve) / 2,
    f"gap ≈ {log_p_eval - elbo_curve:.1f} nats\n= KL(q ‖ posterior)",
    color=COLORS["proposal"],
    va="center",
    fontsize=9,
)
ax.set(xscale="log", xlabel="k (importance samples inside the log)", ylabel="nats per image",
       title="ELBO ≤ IWAE$_k$ ≤ log p(x) on the trained VAE")
ax.legend(loc="lower right", fontsize=9)
plt.show()

# %% [markdown]
# Chapter 5's picture, now on a 50-dimensional posterior over a neural decoder. The first few
# importance samples close most of the gap; the last doubling adds less than half a nat (asserted),
# and each further one adds less. No finite $K$ says exactly how far $\log p_\theta(x)$ still is,
# and $\log\hat p_K$ is an *under*-estimate in expectation:
# $\mathbb E[\log\hat p_K] = \mathrm{IWAE}_K \le \log p_\theta(x)$, although one draw can land above
# $\log p_\theta(x)$ (chapter 4, exercise 3, question 4). The gap
# $\log p_\theta(x) - \mathrm{ELBO} = \mathrm{KL}(q_\phi(z\mid x)\,\Vert\,p_\theta(z\mid x))$ of
# several nats is the price of the diagonal-Gaussian, amortized $q$: chapter 5's approximation gap
# (no diagonal Gaussian equals the true posterior) plus an *amortization* gap (one encoder network
# serves every $x$, so it does not find the best Gaussian for each; Cremer et al., 2018). Reporting
# the ELBO *as* $\log p(x)$ understates the model by that much.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## 7. Active units and posterior collapse
#
# The KL term charges every latent dimension for the information it carries. A dimension $j$
# whose posterior equals the prior for every input, $q_\phi(z_j\mid x) = \mathcal N(0, 1)$, costs
# nothing — and tells the decoder nothing. Burda et al. (2015) measure this with the **activity**
# of a unit,
#
# $$
# A_j = \operatorname{Var}_{x}\big(\mathbb E_{q_\phi(z\mid x)}[z_j]\big) =
# \operatorname{Var}_{x}\big(\mu_{\phi,j}(x)\big),
# $$
#
# the variance over the test set of the posterior mean; the unit is **active** if $A_j > 0.01$.
# When the code is unused in all dimensions, the model has suffered **posterior collapse**:
# $q_\phi(z\mid x) \approx p(z)$ for every $x$, KL $\approx 0$, and the decoder models $p(x)$ on its
# own, ignoring $z$ (reconstructions stop depending on the input). It happens when the decoder is
# strong enough to do without $z$ (e.g. autoregressive decoders over pixels or words; Bowman et
# al., 2016; Chen et al., 2017) or when the KL term dominates early in training. Partial collapse —
# some units inactive — is the normal state of a VAE with more latent dimensions than it needs.

# %%
with torch.no_grad():
    test_mu, test_logvar = cpu_model.encode(test_bin)  # (N_test, d) each
activity = test_mu.var(dim=0)  # A_j = Var_x[μ_j(x)], (d,)
# E_x[KL_j], (d,)
kl_per_unit = 0.5 * (test_mu.square() + test_logvar.exp() - 1 - test_logvar).mean(dim=0)
active = activity > 0.01
strong = activity > 0.1
order = torch.argsort(activity, descending=True)
num_active, num_strong = int(active.sum()), int(strong.sum())
total_kl = kl_per_unit.sum()
print(f"active units (activity > 0.01): {num_active} of {model.latent_dim}, "
      f"carrying {kl_per_unit[active].sum():.2f} of the {total_kl:.2f} nats of KL per image")
print(f"  of which activity > 0.1: {num_strong}, carrying {kl_per_unit[strong].sum():.2f} nats")
print(f"inactive units: mean σ² = {test_logvar[:, ~active].exp().mean():.3f} (prior: 1), "
      f"largest |μ| = {test_mu[:, ~active].abs().max():.3f}")
assert num_strong >= 10 and num_active >= num_strong
# the strongly active units carry the information
assert kl_per_unit[strong].sum() > 0.95 * total_kl
assert kl_per_unit[~active].sum() < 0.01 * total_kl  # the inactive ones almost none
assert torch.isclose(kl_per_unit.sum(), gaussian_kl(test_mu, test_logvar).mean(), rtol=1e-4)

# %%
fig, axes = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True)
colors = [COLORS["importance"] if a else COLORS["prior"] for a in active[order]]
positions = np.arange(model.latent_dim)
axes[0].bar(positions, activity[order], color=colors)
axes[0].axhline(0.01, color=COLORS["exact"], linestyle="--", linewidth=1.2, label="threshold 0.01")
axes[0].set(yscale="log", ylabel=r"$\mathrm{Var}_x[\mu_j(x)]$",
            title=f"{num_active} active units (blue) of {model.latent_dim}, sorted by activity")
axes[0].legend()
axes[1].bar(positions, kl_per_unit[order], color=colors)
axes[1].set(yscale="log", ylabel=r"$\mathbb{E}_x[\mathrm{KL}_j]$ (nats)",
            title="Each unit's share of the KL term: the inactive ones cost (and carry) almost "
                  "nothing")
axes[1].set_xticks(positions, [str(int(j)) for j in order], fontsize=7)
axes[1].set_xlabel("latent unit j (its index in z), sorted by activity")
plt.tight_layout()
plt.show()

# %% [markdown]
# The activity spans three orders of magnitude, in three groups. A core of units with activity
# near 1 carries practically all of the KL: that is the code the decoder uses. The inactive units
# have $\mu_j(x) \approx 0$ and $\sigma_j^2(x) \approx 1$ for every test digit — a collapsed
# posterior, unit by unit — and the decoder has learned to ignore them. In between, some units sit
# just above the threshold, each carrying a hundredth of a nat or so: units on their way out (the
# fourth panel of section 3; trained longer, their count keeps falling towards the core's). So the
# threshold 0.01 is a convention, and the count it gives depends on how long you trained: look at
# the whole spectrum, or at the KL per unit, not only at the count. Burda et al. found about 20
# active units of 50 for this model on full MNIST after 3280 epochs, and more with the IWAE
# objective. How to *see* collapse: the KL per unit (or in total) near 0, posterior
# means that do not vary with $x$, and reconstructions that look alike whatever the input. Common
# remedies: warm up the KL term from weight 0 to 1 (Bowman et al., 2016), "free bits" (a minimum
# KL per unit; Kingma et al., 2016), a weaker decoder, or the IWAE objective.

# %% [markdown] slideshow={"slide_type": "slide"}
# ### Explore: a test digit, its reconstruction, and its posterior
#
# Pick a test image. Top: the binarized input, the reconstruction
# $\operatorname{sigmoid}(f(\mu(x)))$, and the means of $p(x\mid z)$ for five codes
# $z \sim q(z\mid x)$ — how much the posterior's uncertainty changes the digit. Bottom: the
# posterior $q(z_j\mid x)$ of each unit (mean ± 2σ), sorted by activity as above, against the
# prior's ± 2 band.

# %%
def draw_digit(fig, index):
    x = test_bin[index:index + 1]  # (1, 784)
    with torch.no_grad():
        mu, logvar = cpu_model.encode(x)  # (1, d)
        eps = torch.randn(5, model.latent_dim, generator=torch.Generator().manual_seed(index))
        z = mu + torch.exp(0.5 * logvar) * eps  # 5 codes from q(z|x), (5, d)
        images = torch.cat([x, cpu_model.reconstruct(x), cpu_model.decode_mean(z)])  # (7, 784)
    grid = fig.add_gridspec(2, 7, height_ratios=[1, 1.3], hspace=0.3)
    titles = ["input x", "reconstruction", *[f"z ~ q(z|x) #{k + 1}" for k in range(5)]]
    for k, (image, title) in enumerate(zip(images, titles)):
        ax = fig.add_subplot(grid[0, k])
        ax.imshow(image.reshape(28, 28), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        image_axes(ax)
    ax = fig.add_subplot(grid[1, :])
    std = torch.exp(0.5 * logvar[0])
    ax.axhspan(-2, 2, color=COLORS["prior"], alpha=0.15, label="prior N(0, 1): ± 2")
    ax.errorbar(positions, mu[0, order], yerr=2 * std[order], fmt="o", markersize=3,
                color=COLORS["proposal"], label="q(z_j | x): μ ± 2σ")
    ax.axvline(num_active - 0.5, color=COLORS["prior"], linewidth=1)
    ax.set(
        xlabel="latent unit (sorted by activity; active ones left of the grey line)",
        ylabel="z_j",
        ylim=(-4, 4),
    )
    ax.legend(loc="upper right", fontsize=8, ncol=2)
    kl = gaussian_kl(mu, logvar).item()
    return (f"test image {index} (digit {int(test_labels[index])}): KL = {kl:.1f} nats, "
            + (f"ELBO ≈ {evaluation.elbo[index]:.1f}, log p(x) ≈ "
               f"{evaluation.log_likelihood[index]:.1f} nats, ESS {evaluation.ess[index]:.0f} of "
               f"{num_samples}" if index < num_points else ""))


static_figure(draw_digit, figsize=(10, 4.4), index=first_of_each_class[2])

# %%
FigureExplorer(draw_digit, figsize=(10, 4.4),
               index=IntSlider(value=first_of_each_class[2], min=0, max=len(test_bin) - 1,
                               description="test image"))

# %% [markdown]
# Things to look for: the active units sit inside the prior band with a small σ (the code is
# precise there); the inactive ones are exactly the prior, μ ≈ 0 and 2σ ≈ 2. Then find digits
# whose posterior samples change shape. Are they the ambiguous or oddly written ones? Do they have
# a lower ELBO, a larger gap to $\log p(x)$, a smaller effective sample size (a Gaussian $q$ that
# fits their posterior worse)?

# %% [markdown] slideshow={"slide_type": "slide"}
# > **Classic mistakes**
# >
# > * **BCE on grey levels.** `F.binary_cross_entropy(x_hat, x)` runs on grey-level targets, but it
# >   is not a likelihood there (section 5): the number is not a log-probability, not comparable
# >   with published results, and not a fixed offset from one. Binarize (dynamically for training,
# >   once with a fixed seed for testing), or use a likelihood for continuous data.
# > * **Averaging over pixels instead of summing.** The ELBO sums $\log p(x_i\mid z)$ over the 784
# >   pixels. `reduction="mean"` (the default of PyTorch's losses) divides the reconstruction term
# >   by 784, which is the same as weighting the KL 784 times too strongly: the posterior is pushed
# >   onto the prior (often complete posterior collapse) and the reported number is not the ELBO.
# >   Sum over pixels and latent dimensions; average over the images of the batch.
# > * **The sign of the KL.** The ELBO *subtracts* $\mathrm{KL}(q\,\Vert\,p)$; the loss is
# >   $-\mathrm{ELBO} = \text{reconstruction loss} + \mathrm{KL}$. With the sign flipped the KL is
# >   rewarded, it has no upper bound, and the encoder drives μ and σ to extremes until the loss
# >   diverges. And $\mathrm{KL} = \frac12\sum_j(\mu_j^2 + \sigma_j^2 - 1 - \log\sigma_j^2)$
# >   takes the variance $e^{\log\sigma^2}$, not σ.
# > * **Evaluating in training mode, with gradients.** Call `model.eval()` (dropout and batch norm
# >   behave differently in training) and wrap evaluation in `torch.no_grad()`: the autograd graph
# >   of K = 5000 samples per image would not fit in memory.
# > * **Reporting the ELBO as $\log p(x)$.** The ELBO is a lower bound, here about 5 nats below.
# >   Report the importance-sampled $\log p(x)$ with its K (5000 for MNIST), or say "ELBO".
# > * **Comparing log-likelihoods across likelihoods or preprocessing.** A Gaussian's log-density on
# >   grey levels, a Bernoulli's log-probability on binarized digits, and results on a different
# >   binarization are different quantities.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Summary
#
# * A VAE is two networks and one loss:
#   $-\frac1m\sum_{b\in B}\big[\log p_\theta(x_b\mid z_b) - \mathrm{KL}(q_\phi(z\mid x_b)\,\Vert\,p(z))\big]$
#   with one reparameterized $z_b$ per image, the log-likelihood summed over the pixels
#   ($\sum_i x_i\ell_i - \operatorname{softplus}(\ell_i)$ for a Bernoulli decoder with logits
#   $\ell$) and the KL in closed form. Our 20-line version agrees with `vaelib.vae.VAE` to float
#   precision.
# * `vaelib.train.train` minimizes it with dynamic binarization and returns the curves; ELBO =
#   reconstruction − KL, and the average KL bounds the information the code carries.
# * A Bernoulli likelihood is a distribution over **binary** images; on grey levels BCE is not
#   normalized ($\int_0^1 \le \frac12$ per pixel). Log-likelihoods are comparable only for the same
#   data and the same kind of likelihood.
# * The test log-likelihood is estimated by importance sampling with the encoder as proposal
#   (`vaelib.evaluate`, K = 5000 for published numbers). On a real model
#   $\mathrm{ELBO} \le \mathrm{IWAE}_k \le \log p(x)$, and the gap is several nats.
# * Active units ($\operatorname{Var}_x[\mu_j(x)] > 0.01$) count the dimensions the model uses;
#   units whose posterior is the prior for every $x$ have collapsed.
# * The trained model is in `runs/ch08_vae`; chapter 9 explores its latent space.

# %% [markdown] slideshow={"slide_type": "slide"}
# ## Exercises
#
# **Exercise 1 — the loss.** Write `negative_elbo(logits, x, mu, logvar)`: the training loss for a
# Bernoulli decoder, given the decoder's logits `(N, D)` at one sample $z_i \sim q(z\mid x_i)$,
# the binary images `x` `(N, D)` and the encoder's `mu`, `logvar` `(N, d)`. Return one number:
# minus the ELBO estimate, averaged over the N images. *Hints:* which dimensions are summed and
# which averaged? Is the KL added or subtracted? (You may use `F.binary_cross_entropy_with_logits`
# — check its `reduction`.)

# %% tags=["solution"]
def negative_elbo(logits, x, mu, logvar):
    """Minus the ELBO estimate, averaged over the N images: logits, x (N, D), mu, logvar (N, d) ->
    scalar.
    """
    reconstruction = (x * logits - F.softplus(logits)).sum(dim=-1)  # log p(x|z), (N,)
    kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(dim=-1)  # (N,)
    return -(reconstruction - kl).mean()


# %%
from vaelib.exercises import check_negative_elbo

check_negative_elbo(negative_elbo);

# %% [markdown]
# **Exercise 2 — active units.** Write `count_active_units(mu)`: given the posterior means
# `mu` `(N, d)` of N data points, return the number of units whose activity
# $\operatorname{Var}_x[\mu_j(x)]$ exceeds 0.01 (an integer).

# %% tags=["solution"]
def count_active_units(mu):
    """Number of j with Var over the N points of mu[:, j] > 0.01: (N, d) -> int."""
    return int((mu.var(dim=0) > 0.01).sum())


# %%
from vaelib.exercises import check_count_active_units

check_count_active_units(count_active_units);

# %% [markdown]
# **Exercise 3 — the missing normalizer.** Write `bce_integral(lam)`: for a decoder output
# $\lambda \in (0, 1)$ (a Python float), return $\int_0^1 \lambda^x(1-\lambda)^{1-x}\,dx$, the total
# mass that $e^{-\mathrm{BCE}}$ gives to grey levels (by the closed form or by
# `scipy.integrate.quad`). Then: how many nats per image does a BCE "log-likelihood" on grey levels
# miss, for a decoder that outputs $\lambda = 0.9$ on every pixel?

# %% tags=["solution"]
def bce_integral(lam):
    """The integral over x in [0, 1] of the Bernoulli density with mean lam, for a float lam in (0,
    1).
    """
    if abs(lam - 0.5) < 1e-9:
        return 0.5
    return (2 * lam - 1) / math.log(lam / (1 - lam))


# %%
from vaelib.exercises import check_bce_integral

check_bce_integral(bce_integral);

# %% [markdown]
# **Exercise 4 (no check — to think about).** Train the VAE again with the KL term multiplied by
# $\beta = 10$ (write a ten-line loop around `negative_elbo_loss` above, with `beta` as an
# argument). Count the active units. What happens to the reconstructions, and why does a large
# $\beta$ produce posterior collapse? What would "KL warm-up" (β growing from 0 to 1 over the first
# epochs) change?
