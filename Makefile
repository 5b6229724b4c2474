# Two entry points for people and CI alike: `make demo` and `make test`.
# Both create .venv on first use and reinstall when pyproject.toml or setup.py changes.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint format tour bench clean system

# The product (zcl/, its own distribution) and the course and lab around it, in one resolve so
# that the course's dependency on zcl is met by the tree's own copy.
$(INSTALLED): pyproject.toml setup.py zcl/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e './zcl[ssh]' -e '.[dev]'
	touch $@

demo: $(INSTALLED)
	$(PY) -m cluster_patterns.local_cluster

BENCH_EXTRA := $(VENV)/.bench-installed
$(BENCH_EXTRA): $(INSTALLED)
	$(PY) -m pip install --quiet -e './zcl[ssh]' -e '.[dev,bench]'
	touch $@

# Each step's numbers, side by side in one run; figures land in results/bench-0N.json and the
# documents' marked sections are rendered from them. The Docker figures
# (results/bench-docker.json) come from `./docker/simulate-cluster.sh bench --json ...`.
bench: $(BENCH_EXTRA) system
	$(PY) 01-zmq-basics/tour.py --json results/bench-01.json
	$(PY) -m cluster_patterns.benchmark --json results/bench-02.json
	$(PY) -m cluster_sim.performance_comparison --json results/bench-03.json
	$(PY) -m zcl_lab.fanout_bench --json results/bench-fanout.json
	$(PY) -m zcl_lab.fleet_shell_bench --json results/bench-fleet-shell.json
	$(PY) -m zcl_tools.figures render

tour: $(INSTALLED)
	$(PY) 01-zmq-basics/tour.py

test: lint system
	$(PY) -m pytest --durations=25  # the slowest tests named, so that slow ones are seen

# Step 03 measures SSH against a real OpenSSH server, logging in as a user whose shell starts
# fast (root's bash here spends 160 ms in .bashrc). As root (CI, containers) this installs
# Debian's openssh-server and creates that user (password field "*": no password, yet not
# locked, which sshd without PAM requires for key logins); that user runs the simulated perf
# test with Debian's python3, as our venv's interpreter may sit where it cannot read.
# mmdebstrap builds the Docker cluster's base image from Debian packages (docker/); pdsh is
# one of the peers zcl-run is measured against and tested beside (tests/test_fleet_shell_bench.py).
# Otherwise (not root) the SSH tests skip.
FAST_SHELL_USER := zclab
system:
	@if [ "$$(id -u)" != 0 ]; then \
		echo "not root: not installing openssh-server or the $(FAST_SHELL_USER) user"; \
	else \
		[ -x /usr/sbin/sshd ] && [ -x /usr/bin/python3 ] && command -v mmdebstrap >/dev/null && \
			command -v systemd-analyze >/dev/null && command -v pdsh >/dev/null || \
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			openssh-server python3 mmdebstrap systemd pdsh >/dev/null; }; \
		id $(FAST_SHELL_USER) >/dev/null 2>&1 || { \
			useradd --system --create-home --shell /bin/sh $(FAST_SHELL_USER) && \
			usermod -p '*' $(FAST_SHELL_USER); }; \
	fi

# mypy cannot follow setuptools' folder mapping, so it reads the course's packages through
# links (zcl is a plain src layout, found on mypy_path).
TYPECHECK := build/typecheck
PACKAGES := cluster_patterns:02-cluster-patterns cluster_sim:03-cluster-runner-simulation zcl_lab:lab zcl_tools:tools

lint: $(INSTALLED)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	@mkdir -p $(TYPECHECK)
	@for pair in $(PACKAGES); do ln -sfn ../../$${pair#*:} $(TYPECHECK)/$${pair%%:*}; done
	$(PY) -m mypy
	$(PY) -m mypy 01-zmq-basics/*.py
	$(VENV)/bin/lint-imports
	$(VENV)/bin/shellcheck docker/simulate-cluster.sh docker/node-init.sh docker/bare/lab-node-setup .ci/run
	cd integration-plan/deploy && ANSIBLE_CONFIG=ansible.cfg ../../$(VENV)/bin/ansible-lint --nocolor -qq

format: $(INSTALLED)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info
