# vae-course: every target uses one virtual environment, .venv, made on first use.
#   make lab     set up (first time) and start JupyterLab on the course, opened at chapters/ (prints the URL)
#   make student-lab  write the student edition, then start JupyterLab opened at student/
#   make test    set up (first time) and run every test: ruff, unit tests, pairing, every chapter (nbval)
#   make test-fast  ruff and the unit tests only (no chapters, servers, browser, packaging): about a minute
#   make lint    ruff (pinned) over vaelib, scripts, benchmarks, tests and the chapters' .py files
#   make selftest  check, in about a minute, that training works on this machine's GPU (or CPU)
#   make bench   print the benchmarks' figures (JSON)
#   make bench-load  chapter times alone and with 1 and 2 competing busy processes, peak memory (JSON)
#   make student write the student edition, student/NN_name.ipynb (solutions replaced by stubs)
#   make slides  export every chapter to reveal.js slides in slides/ (present live: RISE in Lab)
#   make site    execute every chapter and write the readable HTML course to site/index.html
#   make sync    regenerate every chapters/*.ipynb from its .py (after editing a .py outside Lab)
#   make hub     start a local JupyterHub (127.0.0.1:8000) to try the class path: make hub HUB_PORT=8001
#   make bench-class  N = 1 2 4 8 students running chapter 8 at once through a hub (JSON)
#   make links REPO=owner/name  point every Colab and Binder link at your GitHub repository

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
# Extra arguments for JupyterLab, e.g. make lab LAB_ARGS="--port 9999 --ip 0.0.0.0"
LAB_ARGS ?=
# Jupyter refuses to run as root unless asked (containers, some CI and cloud machines run as root).
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
# Extra arguments for pytest, e.g. make test PYTEST_ARGS="-x -k kl"
PYTEST_ARGS ?=
# Extra arguments for the training and evaluation benchmarks
BENCH_ARGS ?=
# Extra arguments for the load benchmark, e.g. make bench-load BENCH_LOAD_ARGS="--chapters 01 08"
BENCH_LOAD_ARGS ?=
# Extra arguments for the class benchmark, e.g. make bench-class BENCH_CLASS_ARGS="--students 1 2"
BENCH_CLASS_ARGS ?=
# The local hub's port (make hub)
HUB_PORT ?= 8000
# JupyterHub's proxy, configurable-http-proxy, from npm at the version deploy/proxy/ pins (npm ci).
PROXY  := $(VENV)/node/node_modules/.bin/configurable-http-proxy

.PHONY: help venv lab student-lab test test-fast lint selftest bench bench-load sync student slides site clean hub \
	hub-proxy bench-class links

help:
	@sed -n 's/^#   //p' Makefile

$(STAMP): requirements.txt requirements-hub.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt -r requirements-hub.txt
	$(BIN)/python -m pip install --no-deps -e .
	@mkdir -p $(dir $(LAB_SETTINGS))
	@# Open the paired chapters/*.py files as notebooks in JupyterLab (Jupytext keeps both in sync).
	@echo '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"python": "Jupytext Notebook"}}}' > $(LAB_SETTINGS)
	@touch $(STAMP)

venv: $(STAMP)

# The hub's proxy (tests/test_hub.py, make hub, make bench-class): Node.js >= 20 and npm are needed.
$(PROXY): deploy/proxy/package.json deploy/proxy/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "error: npm (Node.js >= 20) is needed to install \
	JupyterHub's proxy, configurable-http-proxy: install nodejs and npm (e.g. apt-get install nodejs \
	npm), then run make again" >&2; exit 1; }
	@mkdir -p $(VENV)/node
	cp deploy/proxy/package.json deploy/proxy/package-lock.json $(VENV)/node/
	npm ci --prefix $(VENV)/node --no-audit --no-fund --loglevel=error
	@touch $(PROXY)

hub-proxy: $(PROXY)

# The whole repository is served (chapters/, student/, ...); the file browser opens at chapters/.
lab: $(STAMP)
	$(BIN)/jupyter lab --no-browser --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/chapters \
	  $(ALLOW_ROOT) $(LAB_ARGS)

student-lab: student
	$(BIN)/jupyter lab --no-browser --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/student \
	  $(ALLOW_ROOT) $(LAB_ARGS)

# One execution of each chapter (nbval) is kept in build/executed/ (conftest.py); the site and slides
# tests reuse it. The student edition is built into build/student/ and executed too.
test: lint $(PROXY)
	$(BIN)/python -m scripts.make_student --out build/student
	$(BIN)/python -m pytest chapters build/student tests --nbval-lax --nbval-current-env $(PYTEST_ARGS)

# The unit tests only: tests marked slow or notebooks (pyproject.toml) are left out, gpu ones skip
# without CUDA. Run make test before a commit that touches a chapter, the site or the class path.
test-fast: lint
	$(BIN)/python -m pytest tests -m "not slow and not notebooks" $(PYTEST_ARGS)

# ruff at the version requirements.txt pins, with the rules in pyproject.toml
RUFF_PATHS := vaelib scripts benchmarks tests conftest.py $(wildcard chapters/*.py)
lint: $(STAMP)
	$(BIN)/ruff check $(RUFF_PATHS)

# Before class, on the machine that will train: one line per item, exit status 1 if one failed.
selftest: $(STAMP)
	$(BIN)/python -m vaelib.selftest

# On a GPU machine: make bench BENCH_ARGS="--device cuda --data-dir /path/to/mnist"
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_train.py --repeats 3 $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_evaluate.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_chapters.py

# Run it on an otherwise idle machine: it loads the machine itself and compares with the quiet run.
bench-load: $(STAMP)
	$(BIN)/python benchmarks/bench_load.py $(BENCH_LOAD_ARGS)

# A local hub to try what the students get (scripts/class_hub.py); Ctrl-C stops it and its servers.
hub: $(STAMP) $(PROXY)
	$(BIN)/python -m scripts.class_hub --port $(HUB_PORT)

# Run it on an otherwise idle machine: it loads the machine itself (N students' kernels at once).
bench-class: $(STAMP) $(PROXY)
	$(BIN)/python benchmarks/bench_class.py $(BENCH_CLASS_ARGS)

# Rewrites README.md's Binder and Colab links, scripts/course_links.py and every chapter's Colab cell.
links: $(STAMP)
	$(BIN)/python -m scripts.course_links --repo="$(REPO)"

sync: $(STAMP)
	cd chapters && for f in [0-9]*.py; do ../$(BIN)/jupytext --to ipynb --update "$$f"; done

student: $(STAMP)
	$(BIN)/python -m scripts.make_student --out student

slides: $(STAMP)
	$(BIN)/python -m scripts.build_slides --out slides

site: $(STAMP)
	$(BIN)/python -m scripts.build_site --out site

clean:
	rm -rf build site student slides .pytest_cache
