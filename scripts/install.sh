#!/usr/bin/env bash
# The README's install command: a virtual environment in .venv with the CPU build of PyTorch and
# this project installed editable with its test extras. CI (.ci/run) runs exactly this script.
#
#   bash scripts/install.sh
#
# Environment knobs (all optional):
#   PYTHON           interpreter that creates the venv (default: python3)
#   VENV             where the venv lives (default: .venv in the checkout)
#   TORCH_VERSION    PyTorch version installed first (default: 2.13.0)
#   TORCH_INDEX_URL  index to take PyTorch from, e.g. https://download.pytorch.org/whl/cpu on a
#                    Linux machine without a local CPU wheel (the plain PyPI wheel is the CUDA
#                    build). Unset: pip's own configuration decides (find-links, indexes).
#   CONSTRAINTS      pip constraints file of tested library versions (default: constraints.txt in
#                    the checkout); CONSTRAINTS= (empty) resolves the newest releases instead, for
#                    trying a library upgrade before regenerating that file.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
CONSTRAINTS="${CONSTRAINTS-constraints.txt}"
constraint_args=()
if [ -n "$CONSTRAINTS" ]; then
    constraint_args=(-c "$CONSTRAINTS")
fi

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating virtual environment in $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)

"${PIP[@]}" install --quiet --upgrade pip

# PyTorch first, CPU build, so resolving the project's dependencies never pulls a CUDA build.
torch_args=("torch==${TORCH_VERSION}")
if [ -n "${TORCH_INDEX_URL:-}" ]; then
    torch_args+=(--index-url "$TORCH_INDEX_URL")
fi
"${PIP[@]}" install "${torch_args[@]}"

# The project and its test tools at the tested versions (constraints.txt), so that a new day's
# releases cannot change what CI runs.
"${PIP[@]}" install "${constraint_args[@]}" -e ".[test]"

"$VENV/bin/python" -c "import benchmark, torch; print('installed crystal-gen-benchmark', benchmark.__version__, 'with torch', torch.__version__)"
