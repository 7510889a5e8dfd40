#!/usr/bin/env bash
# The speed figures README's "Speed" section asks for, in one run on a CUDA machine (no downloads:
# random weights of the real shapes; speed does not depend on the weights).
#
#   bash scripts/gpu_bench.sh [OUT_DIR]      # default OUT_DIR: bench-results/
#   BASE=/path/to/older/checkout bash scripts/gpu_bench.sh   # also: flow sampler side by side with it
#
# Writes one text file per benchmark and prints them. About 10-15 minutes on one modern GPU
# (the first compiled runs include torch.compile's warm-up).
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
# semantic LLM, LLaMA-2-7B shape: our decode loop (static cache, compiled step with CUDA graphs) vs
# transformers generate(), same model, prompt, sampling and token count; target >= 150 units/s bf16
run semantic-bf16-compare "$PY" -m engine bench semantic --device cuda --random-arch llama2-7b --dtype bfloat16 --units 250 --repeats 3 --compare
run semantic-4bit-compare "$PY" -m engine bench semantic --device cuda --random-arch llama2-7b --quant 4bit --units 250 --repeats 3 --compare
run semantic-bf16-eager "$PY" -m engine bench semantic --device cuda --random-arch llama2-7b --dtype bfloat16 --units 250 --repeats 2 --compile off
# flow model: time per call and RTF (bf16, compiled with CUDA graphs for 250-frame buckets)
run perceptual-bf16 "$PY" -m engine bench perceptual --device cuda --sizes tiny,base,large --nfe 1,2,4,8,16,32 --dtype bfloat16
run perceptual-bf16-eager "$PY" -m engine bench perceptual --device cuda --sizes base --nfe 1,8,32 --dtype bfloat16 --compile off
run perceptual-fp16 "$PY" -m engine bench perceptual --device cuda --sizes base --nfe 1,8,32 --dtype float16
if [ -n "${BASE:-}" ]; then  # side by side with an older checkout (e.g. git worktree add ../base 5953d7e)
  run perceptual-compare-base "$PY" -m engine bench perceptual --device cuda --compare-with "$BASE" --arch 1024,12,16 --steps 16 --rounds 5
  run perceptual-compare-fixture-cpu "$PY" -m engine bench perceptual --device cpu --compare-with "$BASE" --arch 256,6,4 --steps 16 --rounds 3 --threads 4
fi
run e2e-tiny "$PY" -m engine bench e2e --profile tiny --device cuda
echo "results in $OUT/"
