#!/usr/bin/env bash
# The Littlest JupyterHub (https://tljh.jupyter.org): install vae-course into the users' shared
# environment and set the class limits. Run on the hub's machine, from a checkout of the course:
#   sudo bash deploy/tljh/install.sh https://github.com/OWNER/vae-course-student
# The argument is the repository of the student edition (README, "Teaching a class"): every student
# lands on its nbgitpuller link. (To run the Binder image instead, use the tljh-repo2docker plugin.)
set -euo pipefail
cd "$(dirname "$0")/../.."
repo="${1:?give the repository URL of the student edition, e.g. https://github.com/OWNER/vae-course-student}"
folder="$(basename "${repo%/}" .git)"

# The course's pinned packages (with nbgitpuller) and vaelib, in the environment every server uses.
/opt/tljh/user/bin/pip install -r requirements.txt
/opt/tljh/user/bin/pip install --no-deps .

# The limits of deploy/tljh/config.yaml (measured: README, "Teaching a class").
tljh-config set limits.memory 2G
tljh-config set limits.cpu 1
tljh-config set user_environment.default_app jupyterlab
tljh-config set services.cull.timeout 3600

# Every student lands on the nbgitpuller link of the student edition.
cat > /opt/tljh/config/jupyterhub_config.d/vae-course.py <<PY
c.Spawner.default_url = "/git-pull?repo=${repo}&branch=main&urlpath=lab/tree/${folder}/student"
PY
tljh-config reload
