#!/usr/bin/env bash
# The generative probing numbers on a GPU, in one run (each part bounded, its output kept in $OUT):
#   1. benchmarks/bench_invert.py on a Qwen2.5-1.5B-shaped model (random weights, bf16), the whole
#      vocabulary (151,936 first tokens) screened, against re-encoding the prompts;
#   2. the same with the default 8,192-token prefilter;
#   3. evals/generative/production.py: probe-calibrate + probe-adapter --search on the generative cohort
#      (COHORT, as evals.generative.run --stage train builds it), the production commands on CUDA.
# Usage: OUT=dir COHORT=dir bash scripts/gpu_check.sh   (from the repository root; wheels in .whl/ are
# installed first when present: packages the machine's Python lacks)
set -uo pipefail
OUT=${OUT:-/tmp/gpu_check}
COHORT=${COHORT:-.gencohort}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch, transformers, peft, sys; print(sys.version.split()[0], torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)"
} 2>&1 | tee "$OUT/env.txt"
timeout "${T_BENCH:-200}" python3 benchmarks/bench_invert.py --models qwen2.5-1.5b-shape --candidates 0 --n 1 --naive 256 \
  --threads 8 2>&1 | tee "$OUT/bench_whole_vocab.txt"
timeout "${T_PRE:-80}" python3 benchmarks/bench_invert.py --models qwen2.5-1.5b-shape --n 2 --naive 256 --threads 8 2>&1 \
  | tee "$OUT/bench_prefilter.txt"
if [ -d "$COHORT/base" ]; then
  timeout "${T_PROD:-260}" python3 -m evals.generative.production --out "$COHORT" --json "$OUT/production.jsonl" 2>&1 \
    | tee "$OUT/production.txt"
fi
nvidia-smi --query-gpu=name,memory.used --format=csv 2>&1 | tee -a "$OUT/env.txt"
