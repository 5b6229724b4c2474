# Two entry points for people and CI alike: `make demo` and `make test`.
# Both create .venv on first use and reinstall when pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint format tour bench clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

demo: $(INSTALLED)
	$(PY) -m cluster_patterns.local_cluster

BENCH_EXTRA := $(VENV)/.bench-installed
$(BENCH_EXTRA): $(INSTALLED)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

# Step 02's numbers, side by side in one run; figures land in results/bench-02.json.
bench: $(BENCH_EXTRA)
	$(PY) -m cluster_patterns.benchmark --json results/bench-02.json

tour: $(INSTALLED)
	$(PY) -m zmq_basics.tour

test: lint
	$(PY) -m pytest

# mypy cannot follow setuptools' folder mapping, so it reads the packages through links.
TYPECHECK := build/typecheck
PACKAGES := zmq_basics:01-zmq-basics cluster_patterns:02-cluster-patterns cluster_sim:03-cluster-runner-simulation

lint: $(INSTALLED)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	@mkdir -p $(TYPECHECK)
	@for pair in $(PACKAGES); do ln -sfn ../../$${pair#*:} $(TYPECHECK)/$${pair%%:*}; done
	$(PY) -m mypy

format: $(INSTALLED)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
