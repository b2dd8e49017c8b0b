"""Where the course lives on GitHub, and the Binder and Colab links made from it.

The course has no public home yet: ``GITHUB_REPO`` is a placeholder. When it gets one, change it
here and run ``python -m pytest tests/test_one_click.py``: the test names every link in README.md
and every chapter's Colab set-up cell that still points elsewhere.
"""

from __future__ import annotations

GITHUB_REPO = "vae-course/vae-course"  # owner/name on GitHub (placeholder)
CLONE_URL = f"https://github.com/{GITHUB_REPO}"
BINDER_URL = f"https://mybinder.org/v2/gh/{GITHUB_REPO}/HEAD?urlpath=lab/tree/chapters"
BINDER_BADGE = f"[![launch binder](https://mybinder.org/badge_logo.svg)]({BINDER_URL})"


def colab_url(notebook: str) -> str:
    """The "Open in Colab" link of ``chapters/<notebook>`` (e.g. ``08_training_a_vae.ipynb``)."""
    return f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/main/chapters/{notebook}"
