"""A non-editable ``pip install .`` into a fresh virtual environment gives a working vaelib.

The wheel must carry the bundled MNIST subset (vaelib/data/*.npz) and the licence files. To stay
fast and offline, the fresh environment borrows this one's third-party packages (torch, NumPy, ...)
through a ``.pth`` line and pip builds with the setuptools already here (``--no-build-isolation``);
vaelib itself comes only from the install: the build runs from a copy of the sources, and the
check runs from a folder that holds none, so neither the source tree nor the editable install is
importable.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["pyproject.toml", "README.md", "LICENSE", "LICENSE-data", "vaelib"]

CHECK = """
import sys, vaelib
from pathlib import Path
assert Path(vaelib.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), vaelib.__file__
mnist = vaelib.load_mnist_subset()
print(vaelib.__file__)
print(tuple(mnist.train_images.shape), tuple(mnist.test_images.shape), int(mnist.train_labels[0]))
"""


@pytest.mark.slow
def test_pip_install_into_a_fresh_venv_gives_a_working_vaelib(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip()
    # torch, NumPy, setuptools, ... from this environment; no vaelib among them (editable installs
    # are hooked in by their own .pth files, which a plain path line does not run).
    Path(purelib, "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_REQUIRE_VIRTUALENV")}
    build = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-v",
                            "--no-deps", "--no-build-isolation", "--no-index", str(src)],
                           cwd=tmp_path, env=env, capture_output=True, text=True)
    assert build.returncode == 0, build.stdout + build.stderr
    # setuptools warns of a deprecated licence table and of data folders missing from `packages`
    assert "BuildBackendWarning" not in build.stdout + build.stderr, build.stdout + build.stderr

    run = tmp_path / "elsewhere"
    run.mkdir()
    out = subprocess.run([python, "-c", CHECK], cwd=run, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    where, shapes = out.stdout.splitlines()
    assert Path(where).is_relative_to(venv) and "site-packages" in where
    assert shapes == "(10000, 28, 28) (2000, 28, 28) 5"

    dist_info = next(Path(purelib).glob("vaelib-*.dist-info"))
    assert {p.name for p in (dist_info / "licenses").iterdir()} == {"LICENSE", "LICENSE-data"}
    assert "License-Expression: MIT AND CC-BY-SA-3.0" in (dist_info / "METADATA").read_text()
