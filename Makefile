# hwsim — the two commands a user needs: `make demo` and `make test`.
# Both build the environment on first use (.venv, Python >= 3.12) and reuse it afterwards.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
STAMP := $(VENV)/.hwsim-installed

# A Python >= 3.12 (accelforge's hwcomponents requires it). Override: make PYTHON=/path/python3.12
PY_OK := import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)
PYTHON ?= $(shell for p in python3.12 python3.13 $$HOME/.pyenv/versions/3.12*/bin/python3 \
             /root/.pyenv/versions/3.12*/bin/python3 python3; do \
             command -v $$p >/dev/null 2>&1 && $$p -c '$(PY_OK)' 2>/dev/null \
             && { command -v $$p; break; }; done)

.PHONY: setup demo test test-slow test-browser test-all bench energy-cache clean-venv help

help:
	@echo "make demo          set up if needed, run the digits quickstart study (the main job)"
	@echo "make test          set up if needed, run the fast test suite"
	@echo "make test-slow     tests marked slow (live AccelForge mapping, longer training)"
	@echo "make test-browser  open the HTML report in headless Chromium (installs chromium via apt)"
	@echo "make bench         run benchmarks/ (prints tables)"
	@echo "make energy-cache  regenerate arch/cache for the shipped arch files and networks"

setup: $(STAMP)

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
	  echo "error: no Python >= 3.12 found (needed by accelforge/hwcomponents)."; \
	  echo "       install one, or pass it: make PYTHON=/path/to/python3.12 ..."; exit 1; fi
	@echo "== building $(VENV) with $(PYTHON) (first time: ~4 min, ~6 GB for torch)"
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	$(BIN)/python -m hwsim.setup_env
	@command -v dot >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "== installing graphviz (apt)"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null; \
	  else echo "note: graphviz 'dot' not found; install it (apt-get install graphviz) for AccelForge's mapping diagrams"; fi; }
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hwsim study studies/digits_quickstart.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

test-browser: $(STAMP)
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "== installing chromium (apt)"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }
	$(BIN)/python -m pytest -q -m browser

test-all: test test-slow test-browser

bench: $(STAMP)
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

energy-cache: $(STAMP)
	$(BIN)/hwsim energy --arch arch/eyeriss_sram.yaml --fill-cache

clean-venv:
	rm -rf $(VENV)
