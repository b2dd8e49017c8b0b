"""One click to a running course: the Binder configuration and each chapter's Colab set-up cell.

Binder is checked without Docker: ``jupyter-repo2docker --no-build`` renders the Dockerfile it would
build, and its install steps, followed into the requirement files they name, must install the CPU
build of torch and no ``nvidia-*`` package. The Colab cell is run for real in a fresh Python, with a
stand-in ``google.colab`` module (which Colab's kernel imports at start-up) and a local git
repository as the course to clone.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from scripts.course_links import BINDER_BADGE, CLONE_URL, colab_url
from scripts.make_student import make_student_notebook

pytestmark = pytest.mark.slow  # renders the Binder image and runs the Colab cell, in subprocesses

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))


# --- Binder --------------------------------------------------------------------------------------

def requirement_lines(path: Path) -> list[str]:
    """The lines of a pip requirements file, with the files it includes (-r) followed."""
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split(" #")[0].strip()
        if line.startswith("-r "):
            lines += requirement_lines(path.parent / line[3:].strip())
        elif line and not line.startswith("#"):
            lines.append(line)
    return lines


@pytest.fixture(scope="module")
def dockerfile() -> str:
    r2d = shutil.which("jupyter-repo2docker", path=str(BIN)) or shutil.which("jupyter-repo2docker")
    assert r2d, "jupyter-repo2docker is not installed (requirements.txt pins it)"
    out = subprocess.run([r2d, "--no-build", "--debug", str(ROOT)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


def test_binder_builds_python_311_from_the_binder_folder(dockerfile):
    assert "python=3.11" in dockerfile
    installs = re.findall(r'pip install[^\n]*-r "?([^"\s]+)"?', dockerfile)
    assert installs == [".binder/requirements.txt"]
    assert "./.binder/postBuild" in dockerfile


def test_binder_installs_the_cpu_torch_and_no_cuda(dockerfile):
    lines = requirement_lines(ROOT / ".binder" / "requirements.txt")
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines
    torch_pins = [line for line in lines if re.match(r"torch\s*[=<>~!]", line)]
    assert "torch==2.13.0+cpu" in torch_pins
    # every other torch pin in the files (the course's own) must allow that same CPU build
    assert {pin.split("+")[0] for pin in torch_pins} == {"torch==2.13.0"}
    assert not [line for line in lines if line.lower().startswith("nvidia")]
    assert "nvidia" not in dockerfile.lower()


def test_binder_post_build_installs_vaelib_and_the_jupytext_viewer():
    script = (ROOT / ".binder" / "postBuild").read_text()
    assert os.access(ROOT / ".binder" / "postBuild", os.X_OK)
    assert "pip install --no-deps --no-cache-dir .\n" in script and " -e " not in script
    assert '"defaultViewers": {"python": "Jupytext Notebook"}' in script
    assert "scripts.make_student --out student" in script
    result = subprocess.run(["bash", "-n", str(ROOT / ".binder" / "postBuild")],
                            capture_output=True)
    assert result.returncode == 0, result.stderr  # valid bash


# --- Colab ---------------------------------------------------------------------------------------

def setup_cells(path: Path) -> list:
    nb = nbformat.read(path, as_version=4)
    return [cell for cell in nb.cells if "colab-setup" in cell.metadata.get("tags", [])]


def colab_cell() -> str:
    return setup_cells(CHAPTERS[0])[0].source


def test_every_chapter_opens_with_the_same_colab_cell():
    source = colab_cell()
    assert f'"{CLONE_URL}"' in source
    for path in CHAPTERS:
        nb = nbformat.read(path, as_version=4)
        first_code = next(cell for cell in nb.cells if cell.cell_type == "code")
        assert "colab-setup" in first_code.metadata.get("tags", []), path.name
        assert first_code.source == source, f"{path.name}: its Colab set-up cell differs"
        assert len(setup_cells(path)) == 1
        # the student edition keeps it, unchanged
        student = make_student_notebook(nb)
        assert [cell.source for cell in student.cells
                if "colab-setup" in cell.metadata.get("tags", [])] == [source], path.name


def run_cell(code: str, cwd: Path, env: dict) -> list[str]:
    """Run ``code`` twice in a fresh Python (as a student might), then report what it changed."""
    program = (f"import os, sys\nbefore = list(sys.path)\ncell = {code!r}\nexec(cell)\nexec(cell)\n"
               "import vaelib\n"
               "print(vaelib.__file__)\nprint(os.getcwd())\nprint(sys.path == before)\n"
               "print(vaelib.load_mnist_subset())\n")
    out = subprocess.run([sys.executable, "-c", program], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.fixture
def local_course(tmp_path) -> str:
    """A git repository holding the course's library and chapters: the URL the cell clones."""
    repo = tmp_path / "origin"
    for folder in ("vaelib", "chapters"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns(
            "__pycache__", "runs", ".ipynb_checkpoints"))
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "--quiet", str(repo)], check=True)
    subprocess.run(git + ["add", "."], check=True)
    subprocess.run(git + ["commit", "--quiet", "-m", "course"], check=True)
    return repo.as_uri()


def colab_env(tmp_path: Path, repo: str) -> dict:
    """The environment of a Colab kernel: a stand-in google.colab package, imported first (as
    Colab's kernel does), and ``VAE_COURSE_REPO`` set to ``repo``."""
    standin = tmp_path / "standin"
    (standin / "google" / "colab").mkdir(parents=True, exist_ok=True)
    (standin / "google" / "colab" / "__init__.py").write_text("")
    (standin / "sitecustomize.py").write_text("import google.colab\n")
    return {**os.environ, "VAE_COURSE_REPO": repo, "PYTHONPATH": str(standin)}


def test_colab_cell_clones_the_course_and_makes_vaelib_importable(tmp_path, local_course):
    content = tmp_path / "content"  # Colab's working folder
    content.mkdir()
    env = colab_env(tmp_path, local_course)
    where, cwd, same_path, mnist = run_cell(colab_cell(), content, env)
    course = content / "vae-course"
    assert Path(where) == course / "vaelib" / "__init__.py"  # the clone's, not this checkout's
    assert Path(cwd) == course / "chapters"
    assert same_path == "False" and "train=(10000, 28, 28)" in mnist
    assert (course / "chapters" / CHAPTERS[0].name).is_file()


def run_failing_cell(code: str, cwd: Path, env: dict) -> str:
    """Run ``code`` in a fresh Python that should stop with an error; return the last line of what
    it printed (the error a student reads under the traceback)."""
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0, out.stdout
    return out.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("where", ["missing repository", "unreachable host"])
def test_colab_cell_says_what_failed_when_the_course_cannot_be_downloaded(tmp_path, where):
    content = tmp_path / "content"
    content.mkdir()
    url = ((tmp_path / "no-such-repo").as_uri() if where == "missing repository"
           else "https://127.0.0.1:9/vae-course")  # port 9 (discard): nothing answers
    error = run_failing_cell(colab_cell(), content, colab_env(tmp_path, url))
    assert error.startswith(f"RuntimeError: Could not download the course from {url} (git: ")
    assert "Check the internet connection" in error and "VAE_COURSE_REPO" in error
    assert "CalledProcessError" not in error
    assert list(content.iterdir()) == []  # no half-made vae-course/, no download folder left


def test_colab_cell_downloads_again_into_an_empty_folder_an_interrupted_clone_left(
        tmp_path, local_course):
    content = tmp_path / "content"
    (content / "vae-course").mkdir(parents=True)  # what an interrupted `git clone` leaves
    where, cwd, _, mnist = run_cell(colab_cell(), content, colab_env(tmp_path, local_course))
    course = content / "vae-course"
    assert Path(where) == course / "vaelib" / "__init__.py" and Path(cwd) == course / "chapters"
    assert "train=(10000, 28, 28)" in mnist
    assert [p.name for p in content.iterdir()] == ["vae-course"]  # no download folder left


def test_colab_cell_names_a_vae_course_folder_without_chapters_and_keeps_its_files(
        tmp_path, local_course):
    content = tmp_path / "content"
    (content / "vae-course" / ".git").mkdir(parents=True)  # a clone stopped half way
    (content / "vae-course" / "notes.txt").write_text("mine")  # or a student's own file
    error = run_failing_cell(colab_cell(), content, colab_env(tmp_path, local_course))
    assert error.startswith(f"RuntimeError: {content / 'vae-course'} exists but holds no "
                            "chapters/ (an interrupted download?)")
    assert "delete it" in error and "run this cell again" in error
    assert (content / "vae-course" / "notes.txt").read_text() == "mine"  # nothing deleted


def test_colab_cell_does_nothing_outside_colab(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["VAE_COURSE_REPO"] = (tmp_path / "nowhere").as_uri()
    where, cwd, same_path, _ = run_cell(colab_cell(), tmp_path, env)
    assert Path(cwd) == tmp_path and same_path == "True" and not (tmp_path / "vae-course").exists()
    assert Path(where).resolve() == ROOT / "vaelib" / "__init__.py"  # this checkout's, as before


# --- README links --------------------------------------------------------------------------------

def test_readme_links_binder_and_every_chapter_in_colab():
    readme = (ROOT / "README.md").read_text()
    assert BINDER_BADGE in readme
    for path in CHAPTERS:
        assert f"({colab_url(path.name)})" in readme, f"README: no Colab link for {path.name}"
    for url in re.findall(r"https://(?:colab\.research\.google\.com/github|mybinder\.org/v2/gh)/"
                          r"([^/\s)]+/[^/\s)]+)", readme):
        assert url == CLONE_URL.removeprefix("https://github.com/"), url
