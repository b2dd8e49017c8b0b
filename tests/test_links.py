"""`make links REPO=owner/name` (scripts/course_links.py), run on a copy of the course: every Binder
and Colab link and every chapter's Colab set-up cell then name the new repository, the chapters'
pairs still match, and a wrong REPO is refused with a message before anything is changed."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest

from scripts.course_links import GITHUB_REPO, LinksError, check_repo

pytestmark = pytest.mark.slow  # rewrites a copy of the repository, in subprocesses

ROOT = Path(__file__).resolve().parents[1]
NEW = "alice-b/my.vae_course"


def copy_course(where: Path) -> Path:
    """The files `make links` reads and writes, copied to ``where``."""
    for name in ("README.md", "jupytext.toml", "scripts/course_links.py"):
        (where / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, where / name)
    (where / "chapters").mkdir()
    for path in (ROOT / "chapters").glob("[0-9][0-9]_*.*"):
        if path.suffix in (".py", ".ipynb"):
            shutil.copy2(path, where / "chapters" / path.name)
    return where


def links(root: Path, repo: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scripts.course_links", f"--repo={repo}",
                           "--root", str(root)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def load_settings(root: Path):
    """The copy's scripts/course_links.py, imported as a module of its own."""
    spec = importlib.util.spec_from_file_location("copied_links", root / "scripts/course_links.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def colab_cell(path: Path) -> str:
    notebook = (nbformat.read(path, as_version=4) if path.suffix == ".ipynb"
                else jupytext.read(path))
    return next(c.source for c in notebook.cells if "colab-setup" in c.metadata.get("tags", []))


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    root = copy_course(tmp_path_factory.mktemp("course"))
    done = links(root, NEW)
    assert done.returncode == 0, done.stderr
    assert f"https://github.com/{NEW}" in done.stdout
    return root


def test_every_readme_link_names_the_new_repository(published):
    settings = load_settings(published)
    assert settings.GITHUB_REPO == NEW
    readme = (published / "README.md").read_text()
    assert settings.BINDER_BADGE in readme
    for path in sorted((published / "chapters").glob("*.ipynb")):
        assert f"({settings.colab_url(path.name)})" in readme, path.name
    named = re.findall(r"https://(?:colab\.research\.google\.com/github|mybinder\.org/v2/gh)/"
                       r"([^/\s)]+/[^/\s)]+)", readme)
    assert len(named) >= 11 and set(named) == {NEW}
    assert f"`{GITHUB_REPO}`" not in readme and f"`{NEW}`" in readme
    # nothing else in the README changed
    original = (ROOT / "README.md").read_text()
    assert readme.replace(NEW, GITHUB_REPO) == original


def test_every_chapter_clones_the_new_repository_and_its_pair_matches(published):
    cells = set()
    for source in sorted((published / "chapters").glob("[0-9][0-9]_*.py")):
        notebook = source.with_suffix(".ipynb")
        assert colab_cell(source) == colab_cell(notebook), source.name
        cells.add(colab_cell(notebook))
        # the .ipynb is exactly what Jupytext makes from the .py, apart from the one URL
        assert notebook.read_text().replace(NEW, GITHUB_REPO) == (
            ROOT / "chapters" / notebook.name).read_text()
    assert len(cells) == 1
    assert f'"https://github.com/{NEW}"' in cells.pop()


def test_running_it_again_changes_nothing_and_it_can_be_undone(published, tmp_path):
    again = links(published, NEW)
    assert again.returncode == 0 and "already points" in again.stdout
    back = copy_course(tmp_path)
    assert links(back, NEW).returncode == 0 and links(back, GITHUB_REPO).returncode == 0
    for name in ("README.md", "scripts/course_links.py", "chapters/01_marginal_likelihood.py",
                 "chapters/01_marginal_likelihood.ipynb"):
        assert (back / name).read_text() == (ROOT / name).read_text(), name


@pytest.mark.parametrize("repo, message", [
    ("", "no repository given"),
    ("https://github.com/alice/vae-course", "is a URL: give only owner/name"),
    ("alice/vae-course.git", "is a URL"),
    ("alice", "is not a GitHub owner/name"),
    ("alice/vae/course", "is not a GitHub owner/name"),
    ("-alice/vae-course", "is not a GitHub owner/name"),
    ("alice/vae course", "is not a GitHub owner/name"),
    ("alice/..", "is not a GitHub owner/name"),
])
def test_a_wrong_repo_is_refused_and_nothing_changes(repo, message, tmp_path):
    with pytest.raises(LinksError, match=message):
        check_repo(repo)
    root = copy_course(tmp_path)
    done = links(root, repo)
    assert done.returncode != 0 and message in done.stderr and "make links REPO=" in done.stderr
    assert (root / "README.md").read_text() == (ROOT / "README.md").read_text()
    assert (root / "scripts/course_links.py").read_text() == (
        ROOT / "scripts/course_links.py").read_text()


def test_valid_repositories_are_accepted():
    for repo in ("alice/vae-course", "a/b", "Org-1/x.y_z", NEW):
        assert check_repo(repo) == repo
