#!/usr/bin/env bash
# simulate-cluster.sh: a Compose cluster of real hosts for steps 02 and 03, built without a
# registry, with faults injected the way real clusters fail. `simulate-cluster.sh --help` lists
# the verbs; `simulate-cluster.sh VERB --help` explains one.
#
# The driver is Python (zcl_lab.cluster_driver, on the Docker SDK); this wrapper only
# finds the controller's venv, which `make test` or `make demo` makes, and runs it there.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-$HERE/../.venv/bin/python}"
[ -x "$PYTHON" ] || {
    echo "simulate-cluster.sh: error: no $PYTHON: run 'make test' or 'make demo' once first (it makes the venv)" >&2
    exit 1
}
ZCL_DOCKER_DIR="$HERE" exec "$PYTHON" -m zcl_lab.cluster_driver "$@"
