"""vaelib: the tested library behind the vae-course chapters.

Flat, one module per idea; nothing runs on import. Public names are re-exported here, so
``from vaelib import LinearGaussian`` and ``from vaelib.toy import LinearGaussian`` are the same.
The two functions named like their modules are imported from the module:
``from vaelib.train import train`` and ``from vaelib.evaluate import evaluate``.

=============  ==========================================================================
module         holds
=============  ==========================================================================
device         default_device, seed_everything
gaussian       DiagonalGaussian, FullGaussian
kl             gaussian_kl, gaussian_kl_between, mc_kl
toy            LinearGaussian (exact), NonlinearToy (1-D latent, quadrature)
estimators     log_mean_exp, naive/importance estimators of log p(x), ESS, ELBO, IWAE
objectives     training on IWAE_K: iwae_surrogate (plain or DReG gradient), exact 1-D IWAE_K
gradients      score-function and pathwise estimators of the gradient of E_q[f(z)]
data           MNIST: bundled subset, verified download and cache, binarization
vae            VAEConfig (presets) and VAE
train          train(model, ...), TrainConfig, History; CLI ``python -m vaelib.train``
evaluate       evaluate(model, ...): test ELBO, IWAE-K, importance-sampled log-likelihood
checkpoint     save_checkpoint, load_checkpoint, load_model
latent         slerp, lerp, inverse_cdf_grid, latent activity
widgets        FigureExplorer, static_figure, LatentExplorer, LatentMap, Interpolation, ...
plots          the course's figure style
exercises      check_<name> self-checks (``from vaelib.exercises import ...``)
=============  ==========================================================================
"""

from .checkpoint import *  # noqa: F401,F403
from .data import *  # noqa: F401,F403
from .device import *  # noqa: F401,F403
from .estimators import *  # noqa: F401,F403
from .gaussian import *  # noqa: F401,F403
from .gradients import *  # noqa: F401,F403
from .kl import *  # noqa: F401,F403
from .latent import *  # noqa: F401,F403
from .objectives import *  # noqa: F401,F403
from .plots import *  # noqa: F401,F403
from .toy import *  # noqa: F401,F403
from .vae import *  # noqa: F401,F403
from .widgets import *  # noqa: F401,F403

__version__ = "0.1.0"

# Imported on first use, so that `python -m vaelib.train` does not find vaelib.train already imported.
_LAZY = {"TrainConfig": "train", "History": "train", "NonFiniteLossError": "train",
         "Evaluation": "evaluate", "importance_log_likelihood": "evaluate"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'vaelib' has no attribute {name!r}")
