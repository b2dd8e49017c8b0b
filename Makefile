# vae-course: every target uses one virtual environment, .venv, made on first use.
#   make lab     set up (first time) and start JupyterLab on the course, opened at chapters/ (prints the URL)
#   make student-lab  write the student edition, then start JupyterLab opened at student/
#   make test    set up (first time) and run every test: unit tests, pairing, every chapter (nbval)
#   make selftest  check, in about a minute, that training works on this machine's GPU (or CPU)
#   make bench   print the benchmarks' figures (JSON)
#   make bench-load  chapter times alone and with 1 and 2 competing busy processes, peak memory (JSON)
#   make student write the student edition, student/NN_name.ipynb (solutions replaced by stubs)
#   make slides  export every chapter to reveal.js slides in slides/ (present live: RISE in Lab)
#   make site    execute every chapter and write the readable HTML course to site/index.html
#   make sync    regenerate every chapters/*.ipynb from its .py (after editing a .py outside Lab)

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

.PHONY: help venv lab student-lab test selftest bench bench-load sync student slides site clean

help:
	@sed -n 's/^#   //p' Makefile

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -r requirements.txt
	$(BIN)/python -m pip install --no-deps -e .
	@mkdir -p $(dir $(LAB_SETTINGS))
	@# Open the paired chapters/*.py files as notebooks in JupyterLab (Jupytext keeps both in sync).
	@echo '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"python": "Jupytext Notebook"}}}' > $(LAB_SETTINGS)
	@touch $(STAMP)

venv: $(STAMP)

# The whole repository is served (chapters/, student/, ...); the file browser opens at chapters/.
lab: $(STAMP)
	$(BIN)/jupyter lab --no-browser --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/chapters \
	  $(ALLOW_ROOT) $(LAB_ARGS)

student-lab: student
	$(BIN)/jupyter lab --no-browser --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/student \
	  $(ALLOW_ROOT) $(LAB_ARGS)

# One execution of each chapter (nbval) is kept in build/executed/ (conftest.py); the site and slides
# tests reuse it. The student edition is built into build/student/ and executed too.
test: $(STAMP)
	$(BIN)/python -m scripts.make_student --out build/student
	$(BIN)/python -m pytest chapters build/student tests --nbval-lax --nbval-current-env $(PYTEST_ARGS)

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
