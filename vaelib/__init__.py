"""vaelib: the tested library behind the vae-course chapters.

Flat, one module per idea; nothing runs on import. Public names are re-exported here, so
``from vaelib import LinearGaussian`` and ``from vaelib.toy import LinearGaussian`` are the same.

=============  ==========================================================================
module         holds
=============  ==========================================================================
device         default_device, seed_everything
data           MNIST: bundled subset, verified download and cache, binarization
gaussian       DiagonalGaussian, FullGaussian
kl             gaussian_kl, gaussian_kl_between, mc_kl
toy            LinearGaussian (exact), NonlinearToy (1-D latent, quadrature)
estimators     log_mean_exp, naive/importance estimators of log p(x), ESS, ELBO, IWAE
gradients      score-function and pathwise estimators of the gradient of E_q[f(z)]
=============  ==========================================================================
"""

from .data import *  # noqa: F401,F403
from .device import *  # noqa: F401,F403
from .estimators import *  # noqa: F401,F403
from .gaussian import *  # noqa: F401,F403
from .gradients import *  # noqa: F401,F403
from .kl import *  # noqa: F401,F403
from .toy import *  # noqa: F401,F403

__version__ = "0.1.0"
