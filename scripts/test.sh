#!/usr/bin/env bash
# The README's test command: the test suite in the .venv made by scripts/install.sh.
# CI (.ci/run) runs exactly this script. Extra arguments go to pytest, e.g.
#
#   bash scripts/test.sh tests/core -x
#
# Defaults, each only when the variable is unset:
#   BENCHMARK_DATA_DIR  ../shared/data next to the checkout (the dataset CSVs)
#   BENCHMARK_OFFLINE   1 (tests never download)
#   BENCHMARK_ORACLE_DIR ../shared/oracles next to the checkout (property-model weights)
#   VENV                .venv in the checkout
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

VENV="${VENV:-.venv}"
export BENCHMARK_DATA_DIR="${BENCHMARK_DATA_DIR:-$ROOT/../shared/data}"
export BENCHMARK_OFFLINE="${BENCHMARK_OFFLINE:-1}"
export BENCHMARK_ORACLE_DIR="${BENCHMARK_ORACLE_DIR:-$ROOT/../shared/oracles}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "error: no virtual environment at $VENV; run: bash scripts/install.sh" >&2
    exit 2
fi

# `python -m` puts the checkout root first on sys.path, where datasets/, metrics/, models/ and
# tasks/ would import as top-level packages and hide a wrong `import metrics...` that breaks the
# installed package. -P (Python >= 3.11) leaves the root off; only pytest itself gets it, not the
# processes the tests start.
safe_path=()
if "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    safe_path=(-P)
fi

exec "$VENV/bin/python" "${safe_path[@]}" -m pytest -q "$@"
