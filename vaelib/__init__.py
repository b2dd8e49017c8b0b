"""vaelib: the tested library behind the vae-course chapters.

Flat, one module per idea; nothing runs on import. Public names are re-exported here, so
``from vaelib import LinearGaussian`` and ``from vaelib.toy import LinearGaussian`` are the same.
"""

from .device import *  # noqa: F401,F403

__version__ = "0.1.0"
