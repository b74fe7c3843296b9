#!/usr/bin/env bash
# Sets up CPRec on a fresh machine: a virtual environment in .venv with every package installed
# editable. Idempotent: a second run only checks that everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# torch first and pinned: this version is a CPU build; an unpinned torch pulls a multi-GB CUDA build.
python -m pip install -q "torch==${CPREC_TORCH_VERSION:-2.13.0}"
python -m pip install -q -e packages/core -e packages/data_prep -e packages/trainer -e packages/evaluator -e packages/pipeline \
  "pytest>=8" "ruff>=0.6" "moto[server]>=5"
