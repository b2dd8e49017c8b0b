"""vaelib: the tested library behind the vae-course chapters.

Flat, one module per idea. Importing it runs one thing: :mod:`vaelib.device` sets torch's CPU
threads once (``fit_threads``: the CPUs this process may use, or ``VAELIB_THREADS``), so every
chapter trains at the speed the machine allows; nothing else runs. The maths, the models and the
data are re-exported here, so ``from vaelib import LinearGaussian`` and ``from vaelib.toy import
LinearGaussian`` are the same. Imported from their own modules instead: the functions named like
their modules (``from vaelib.evaluate import evaluate``, ``from vaelib.train import train``), the
command line, and the figures and explorers, so that ``import vaelib`` and ``python -m
vaelib.train`` load no ipywidgets, matplotlib or Pillow.

=============  ==========================================================================
module         holds
=============  ==========================================================================
device         default_device, check_device, available_devices, seed_everything, derive_seed,
               fit_threads (torch threads)
protocols      LatentVariableModel, SamplesPrior, Proposal (the interfaces of the estimators)
checks         check_tensor, check_finite, check_num_samples, check_positive_int,
               check_last_dim, check_dim
gaussian       DiagonalGaussian, FullGaussian (torch.distributions), standard_normal,
               standard_normal_log_prob
kl             gaussian_kl, gaussian_kl_between, mc_kl
toy            LinearGaussian (exact), NonlinearToy (1-D latent, quadrature), NonlinearToy2D
               (2-D latent, 2-D quadrature)
estimators     log_mean_exp, naive/importance estimators of log p(x), ESS, ELBO, IWAE
objectives     training on IWAE_K: iwae_surrogate (plain or DReG gradient), exact 1-D IWAE_K
gradients      score-function and pathwise estimators of the gradient of E_q[f(z)]
data           MNIST: bundled subset, verified download and cache, binarization
likelihoods    p(x|z) by name: Bernoulli, Gaussian (log-prob, mean, output bias, binary data?)
vae            VAEConfig (presets) and VAE
flows          PlanarFlow, AffineCoupling, coupling_masks, FlowPosterior (q(z|x) through
               invertible maps: z and log q together; ch. 11)
gaps           fit_posterior (q fitted to one x of a toy), optimize_local_posterior,
               inference_gaps (approximation and amortization gaps; ch. 11)
atomic         atomic_file, atomic_write_bytes (a file written whole or not at all)
checkpoint     save_checkpoint, load_checkpoint, load_model, checkpoint_files
evaluate       evaluate(model, ...): test ELBO, IWAE-K, importance-sampled log-likelihood
train          train(model, ...), TrainConfig, History, validation_data (not re-exported)
cli            ``python -m vaelib.train``, its run folder and load_run (not re-exported)
latent         encode_dataset, latent activity, slerp, lerp, inverse_cdf_grid
figures        the course style (COLORS, use_course_style, reference_line), FigureExplorer,
               static_figure (not re-exported)
explorers      LatentExplorer, LatentMap, Interpolation, PosteriorUncertainty (not re-exported)
exercises      check_<name> self-checks (``from vaelib.exercises import ...``)
=============  ==========================================================================

The README's ``vaelib`` section splits them in two: the maths read with the chapters (protocols,
checks, gaussian, kl, toy, estimators, objectives, gradients, likelihoods, vae, flows, gaps), which
imports nothing from the rest, and the course and run machinery (``tests/test_layout.py`` holds the
line).
"""

from .checkpoint import *  # noqa: F401,F403
from .checks import *  # noqa: F401,F403
from .data import *  # noqa: F401,F403
from .device import *  # noqa: F401,F403
from .estimators import *  # noqa: F401,F403
from .evaluate import Evaluation, chunk_sizes, importance_log_likelihood  # noqa: F401
from .flows import *  # noqa: F401,F403
from .gaussian import *  # noqa: F401,F403
from .gradients import *  # noqa: F401,F403
from .kl import *  # noqa: F401,F403
from .latent import *  # noqa: F401,F403
from .objectives import *  # noqa: F401,F403
from .protocols import *  # noqa: F401,F403
from .toy import *  # noqa: F401,F403
from .vae import *  # noqa: F401,F403

__version__ = "0.1.0"
