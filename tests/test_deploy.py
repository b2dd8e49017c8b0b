"""deploy/: the Zero to JupyterHub and The Littlest JupyterHub configurations an instructor copies.

Checked offline as far as possible: the YAML parses, both carry the per-student limits of
deploy/limits.json (the one place the measured limits are written, README "Teaching a class"), the
TLJH script sets the same ones, and the nbgitpuller default URL has the README's form, with the
folder nbgitpuller will clone into.
"""

import json
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
LIMITS = json.loads((DEPLOY / "limits.json").read_text())


def load(path: str) -> dict:
    return yaml.safe_load((DEPLOY / path).read_text())


def test_zero_to_jupyterhub_carries_the_measured_limits():
    user = load("z2jh/config.yaml")["singleuser"]
    assert user["cpu"] == {"limit": LIMITS["cpu_limit"], "guarantee": LIMITS["cpu_guarantee"]}
    assert user["memory"] == {"limit": LIMITS["memory_limit"],
                              "guarantee": LIMITS["memory_guarantee"]}
    assert user["image"]["name"].endswith("/vae-course")
    assert LIMITS["cpu_guarantee"] <= LIMITS["cpu_limit"]


def test_zero_to_jupyterhub_lands_students_on_the_nbgitpuller_link():
    url = urlsplit(load("z2jh/config.yaml")["singleuser"]["defaultUrl"])
    assert url.path == "/git-pull"
    query = {key: values[0] for key, values in parse_qs(url.query).items()}
    assert set(query) == {"repo", "branch", "urlpath"}
    folder = query["repo"].rstrip("/").split("/")[-1]  # where nbgitpuller clones it
    assert query["urlpath"] == f"lab/tree/{folder}/student"


def test_the_littlest_jupyterhub_carries_the_measured_limits():
    config = load("tljh/config.yaml")
    assert config["limits"] == {"memory": LIMITS["memory_limit"], "cpu": LIMITS["cpu_limit"]}
    script = (DEPLOY / "tljh" / "install.sh").read_text()
    assert f"tljh-config set limits.memory {LIMITS['memory_limit']}\n" in script
    assert f"tljh-config set limits.cpu {LIMITS['cpu_limit']}\n" in script
    assert "/git-pull?repo=${repo}&branch=main&urlpath=lab/tree/${folder}/student" in script
    done = subprocess.run(["bash", "-n", str(DEPLOY / "tljh" / "install.sh")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr  # valid bash


def test_the_readme_quotes_the_same_limits():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Teaching a class")[1].split("\n## ")[0]
    assert "deploy/limits.json" in section
    assert f"{LIMITS['memory_limit']}" in section and "make bench-class" in section
