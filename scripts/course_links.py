"""Where the course lives on GitHub, and the Binder and Colab links made from it.

The course ships with the placeholder ``GITHUB_REPO`` below. An instructor who publishes it points
every link at their own repository with one command:

    make links REPO=owner/name        # = python -m scripts.course_links --repo owner/name

It rewrites ``GITHUB_REPO`` here, the Binder badge and every Colab link in README.md, and the
repository URL in every chapter's Colab set-up cell (``chapters/NN_name.py``, then its paired
``.ipynb`` through Jupytext). ``python -m pytest tests/test_one_click.py`` then checks that every
link and every cell agree.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

GITHUB_REPO = "vae-course/vae-course"  # owner/name on GitHub (placeholder; set by make links)
CLONE_URL = f"https://github.com/{GITHUB_REPO}"
BINDER_URL = f"https://mybinder.org/v2/gh/{GITHUB_REPO}/HEAD?urlpath=lab/tree/chapters"
BINDER_BADGE = f"[![launch binder](https://mybinder.org/badge_logo.svg)]({BINDER_URL})"

ROOT = Path(__file__).resolve().parents[1]
# GitHub's rules: an owner is letters, digits and single hyphens (at most 39, not at either end);
# a repository name is letters, digits, '.', '-' and '_' (at most 100, not '.' or '..').
REPO_PATTERN = re.compile(r"(?!-)(?!.*--)[A-Za-z0-9-]{1,39}(?<!-)/(?!\.\.?$)[A-Za-z0-9._-]{1,100}")
SETTING = re.compile(r'^GITHUB_REPO = "([^"]+)"', re.MULTILINE)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file beside it, renamed)."""
    part = path.with_name(path.name + ".part")
    part.write_text(text)
    os.replace(part, path)


def colab_url(notebook: str) -> str:
    """The "Open in Colab" link of ``chapters/<notebook>`` (e.g. ``08_training_a_vae.ipynb``)."""
    return f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/main/chapters/{notebook}"


class LinksError(ValueError):
    """The links cannot be rewritten; the message says why and what to do."""


def check_repo(repo: str) -> str:
    """``repo`` if it is a GitHub ``owner/name``; else a :class:`LinksError` showing the form."""
    example = "e.g. make links REPO=alice/vae-course"
    if not repo:
        raise LinksError("no repository given: name your GitHub repository as owner/name, "
                         + example)
    if repo.startswith(("http://", "https://", "git@")) or repo.endswith(".git"):
        raise LinksError(f"REPO={repo!r} is a URL: give only owner/name (the part after "
                         f"github.com/, without .git), {example}")
    if not REPO_PATTERN.fullmatch(repo):
        raise LinksError(f"REPO={repo!r} is not a GitHub owner/name (an owner of letters, digits "
                         f"and hyphens, a '/', a name of letters, digits, '.', '-', '_'), "
                         + example)
    return repo


def current_repo(root: Path) -> str:
    """The ``GITHUB_REPO`` that the course at ``root`` is set to now."""
    found = SETTING.search((root / "scripts" / "course_links.py").read_text())
    if not found:
        raise LinksError(f"{root / 'scripts' / 'course_links.py'}: no GITHUB_REPO line found")
    return found.group(1)


def rewrite_readme(text: str, old: str, new: str) -> tuple[str, int]:
    """README.md with every Binder, Colab and GitHub link to ``old`` (and the `old` it names)
    pointing at ``new``; and how many were rewritten."""
    pattern = re.compile(r"(https://mybinder\.org/v2/gh/|https://colab\.research\.google\.com/"
                         r"github/|https://github\.com/|`)" + re.escape(old) + r"(?=[/)`\s]|$)")
    return pattern.subn(lambda m: m.group(1) + new, text)


def publish(repo: str, root: Path = ROOT) -> dict[str, int]:
    """Point every link of the course at ``root`` to ``https://github.com/<repo>``.
    Returns the number of links rewritten per file (relative paths)."""
    new, old = check_repo(repo), current_repo(root)
    changes: dict[str, int] = {}
    chapters = sorted((root / "chapters").glob("[0-9][0-9]_*.py"))
    sources = {}
    for path in chapters:  # check everything before changing anything
        text = path.read_text()
        if f'"https://github.com/{old}"' not in text:
            raise LinksError(f"{path.relative_to(root)}: its Colab set-up cell does not clone "
                             f"https://github.com/{old} (as scripts/course_links.py says); "
                             "run `python -m pytest tests/test_one_click.py` to see what differs")
        sources[path] = text
    readme = root / "README.md"
    readme_text, count = rewrite_readme(readme.read_text(), old, new)
    if old == new:
        return {}
    settings = root / "scripts" / "course_links.py"
    settings_text = SETTING.sub(f'GITHUB_REPO = "{new}"', settings.read_text(), count=1)
    write_atomic(settings, settings_text)
    changes[str(settings.relative_to(root))] = 1
    write_atomic(readme, readme_text)
    changes["README.md"] = count
    for path, text in sources.items():
        write_atomic(path, text.replace(f'"https://github.com/{old}"',
                                        f'"https://github.com/{new}"'))
        changes[str(path.relative_to(root))] = 1
        changes[str(path.with_suffix(".ipynb").relative_to(root))] = 1
    # each paired .ipynb, regenerated from its .py as `make sync` does (outputs and metadata kept)
    subprocess.run([sys.executable, "-m", "jupytext", "--quiet", "--to", "ipynb", "--update",
                    *[path.name for path in sources]], cwd=root / "chapters", check=True)
    return changes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Point every Colab and Binder link of the course "
                                     "at your GitHub repository.")
    parser.add_argument("--repo", required=True, help="owner/name on GitHub, e.g. alice/vae-course")
    parser.add_argument("--root", type=Path, default=ROOT, help="the course's folder")
    args = parser.parse_args(argv)
    try:
        changes = publish(args.repo, args.root)
    except LinksError as error:
        sys.exit(f"error: {error}")
    if not changes:
        print(f"every link already points at https://github.com/{args.repo}")
        return
    for path, count in changes.items():
        print(f"{path}: {count} link(s)")
    print(f"every link now points at https://github.com/{args.repo}; check with "
          "`python -m pytest tests/test_one_click.py`, then commit and push.")


if __name__ == "__main__":
    main()
