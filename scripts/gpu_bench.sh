#!/usr/bin/env bash
# The speed figures README's "Speed" section asks for, in one run on a CUDA machine (no downloads:
# random weights of the real shapes; speed does not depend on the weights).
#
#   bash scripts/gpu_bench.sh [OUT_DIR]      # default OUT_DIR: bench-results/
#
# Writes one text file per benchmark and prints them. About 5-8 minutes on one modern GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-bench-results}
mkdir -p "$OUT"
"$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), "no CUDA device: this script measures GPU figures (use the bench commands directly on CPU)"
print("GPU:", torch.cuda.get_device_name(0), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
PY
run() {  # name, then the command
  local name=$1; shift
  echo "==> $name: $*"
  "$@" 2>&1 | tee "$OUT/$name.txt"
}
run perceptual-bf16 "$PY" -m engine bench perceptual --device cuda --sizes tiny,base,large --nfe 1,2,4,8,16,32 --dtype bfloat16
run perceptual-fp16 "$PY" -m engine bench perceptual --device cuda --sizes base --nfe 1,8,32 --dtype float16
run semantic-fp16 "$PY" -m engine bench semantic --device cuda --random-arch llama2-7b --dtype float16 --units 250
run semantic-4bit "$PY" -m engine bench semantic --device cuda --random-arch llama2-7b --quant 4bit --units 250
run e2e-tiny "$PY" -m engine bench e2e --profile tiny --device cuda
echo "results in $OUT/"
