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
#   TEST_WORKERS        pytest-xdist worker processes (default: the cores, at most 4; 0 runs
#                       everything in this process). Most tests run torch on one thread, so two
#                       workers on a 2-core machine take the default run from about 6.5 to 4 minutes.
#                       Ignored when the arguments already say -n / --numprocesses / -p no:xdist.
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

workers=()
case " $* " in
    *" -n "*|*" -n="*|*"--numprocesses"*|*"no:xdist"*) ;;
    *)
        n="${TEST_WORKERS:-$(nproc 2>/dev/null || echo 1)}"
        if [ -z "${TEST_WORKERS:-}" ] && [ "$n" -gt 4 ]; then n=4; fi
        if [ "$n" -gt 1 ]; then workers=(-n "$n"); fi
        ;;
esac

exec "$VENV/bin/python" "${safe_path[@]}" -m pytest -q "${workers[@]}" "$@"
