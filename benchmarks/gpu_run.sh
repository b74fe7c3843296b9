#!/usr/bin/env bash
# `cprec run --preset large` on an offline GPU machine, and what docs/results.md quotes of it.
#   ../shared/device/pack-wheels.sh     # where pip works: Ray, DeepSpeed and their needs into .whl/
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl omegaconf==2.4.0 duckdb==2.0.1
#   benchmarks/gpu_run.sh [seed] [seconds]   # there, from the repository root (seconds: a time limit, 0 = none)
#   PRESET=smoke benchmarks/gpu_run.sh       # any preset (a CPU check of this script: smoke, with .venv/bin on PATH)
# Stages are content-addressed, so a second call on the same machine continues where a first one
# was cut off (fine-tuning runs inside the evaluation are reused too). The report, run manifest,
# evaluation results, per-user metrics, training curves and the full log are packed into
# $OUT/<preset>-seed<seed>.tar.gz (or runs/ when OUT is unset); the claims table is printed last.
set -uo pipefail
seed=${1:-0}
budget=${2:-0}  # 0: no limit
preset=${PRESET:-large}
root=$PWD/runs/$preset-seed$seed
out=${OUT:-$PWD/runs}
mkdir -p "$root" "$out"

if ! python3 -c 'import ray, deepspeed, duckdb, omegaconf' 2>/dev/null && [ ! -d /tmp/site/ray ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD/packages/core/src:$PWD/packages/data_prep/src:$PWD/packages/trainer/src:$PWD/packages/evaluator/src:$PWD/packages/pipeline/src
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null

# Seconds, not minutes, to learn that a GPU path computes the wrong thing (the scorer, the training
# attentions) before the run spends its budget on it.
if python3 -c 'import torch, sys; sys.exit(not torch.cuda.is_available())'; then
  python3 benchmarks/gpu_check.py || exit 3
fi

started=$(date +%s)
timeout "$budget" python3 -m cprec.pipeline run --preset "$preset" "out_dir=$root" "seed=$seed" >>"$root/run.log" 2>&1
status=$?
echo "cprec run exit $status after $(( $(date +%s) - started )) s"
grep -E '^\[cprec run\]' "$root/run.log" | tail -n 30

(cd "$root" && tar czf "$out/$preset-seed$seed.tar.gz" --exclude='*/model/*' --exclude='*/runs/*' \
  --exclude='*/tokens/*' --exclude='*/checkpoints/*' --exclude='*/train/*' --exclude='*/data/*' \
  --exclude='*/datasets/*' --exclude='world-*' \
  run.log $(ls -d report.md run.json ./*.png ./*/_STAGE.json ./*/metrics.jsonl ./*/stats.json ./eval-* 2>/dev/null))

[ -f "$root/report.md" ] && python3 - "$root" "$seed" <<'EOF'
import sys
from cprec.pipeline.claims import check, markdown
rows = check({int(sys.argv[2]): sys.argv[1]})
print(markdown(rows, [int(sys.argv[2])]))
EOF
exit $status
