"""The latent-space explorers of chapter 9, all on one base, :class:`LatentView`.

They call the model (``encode``, ``decode_mean``, ``log_prior``, ``posterior``) and
:mod:`vaelib.latent` (encodings, activity, lerp/slerp, the inverse-CDF grid), and only draw.
Every one has a static twin, ``show_static()``, for GitHub and nbval. One module per explorer:

=========================  ============================================================
module                     holds
=========================  ============================================================
base                       LatentView (model, images, digits, encodings, checked once),
                           DIGIT_CMAP and the drawing helpers the explorers share
latent_explorer            LatentExplorer: a slider per latent unit (the most active ones
                           when there are many) and the decoded image, updated in place
latent_map                 LatentMap: the encoded test set beside the decoded manifold on
                           the inverse-CDF grid; two sliders pick a point
interpolation              Interpolation: decoded images along the linear and spherical
                           paths between two encodings, and ‖z‖ along each
posterior_uncertainty      PosteriorUncertainty: q(z|x) as 1σ and 2σ ellipses, and
                           decoded samples from it
=========================  ============================================================

**Add a widget here**: a new module with ``class MyView(LatentView, FigureExplorer)`` that calls
``self._keep_model_and_data(model, x, labels, image_shape)`` first, re-exported below.
"""

from .base import DIGIT_CMAP, LatentView
from .interpolation import Interpolation
from .latent_explorer import LatentExplorer
from .latent_map import LatentMap
from .posterior_uncertainty import PosteriorUncertainty

__all__ = ["DIGIT_CMAP", "LatentView", "LatentExplorer", "LatentMap", "Interpolation",
           "PosteriorUncertainty"]
