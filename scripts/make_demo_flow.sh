#!/usr/bin/env bash
# Train and evaluate the demo flow model (docs/demo.md "Flow model (part 2)"):
#   demo corpus (train split only) -> demo codes -> train-flow, both chains side by side (one thread
#   each: about 2 h on 2 cores) -> held-out VC test set -> NFE sweep of both chains (one report and
#   plot) and the shipped setting -> copies the implicit model to assets/models/demo/flow/.
# Resumable: run it again after an interruption and every step continues where it stopped.
#
#   bash scripts/make_demo_flow.sh [CORPUS_DIR] [CODEC_DIR] [RUN_DIR]
#
# Environment: PYTHON (default .venv/bin/python); ASR / SPEAKER (eval scorers, default auto);
# REPORTS (default reports), SHIP (default assets/models/demo/flow), PLOT (default docs/demo_flow_nfe.png);
# MAX_STEPS (a smoke run: overrides the configs' train.max_steps);
# PRIOR_RAW=1 also trains the implicit chain with model.prior_space=raw (a third run beside the
# other two, so about 3 h on 2 cores) and evaluates it into REPORTS/flow_demo_raw for the prior-scale check.
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${1:-data/demo_corpus}
CODEC=${2:-assets/models/demo/codec}
RUN=${3:-runs/flow_demo}
PY=${PYTHON:-.venv/bin/python}
ASR=${ASR:-auto}
SPEAKER=${SPEAKER:-auto}
REPORTS=${REPORTS:-reports}
SHIP=${SHIP:-assets/models/demo/flow}
PLOT=${PLOT:-docs/demo_flow_nfe.png}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}   # one thread per training process: the runs share the cores
CODEC_ARGS=(--profile demo --set "codec.path=$CODEC")
mkdir -p "$RUN" "$REPORTS"

if [ ! -f "$CODEC/model.safetensors" ]; then
  echo "no demo codec in $CODEC: train it first (bash scripts/make_demo_codec.sh) or pass its folder" >&2
  exit 1
fi

# 1. codes of the train split (held-out voices and sentences are never read)
"$PY" -m engine extract --manifest "$CORPUS" --split train --out "$RUN/codes" --workers 1 --quiet "${CODEC_ARGS[@]}"

# 2. both chains (and optionally the raw-space prior) at once, one thread each; logs in RUN/*.log
declare -A CONFIG=([implicit]=assets/configs/train/flow_demo.yaml [explicit]=assets/configs/train/flow_demo_explicit.yaml
                   [implicit_raw]=assets/configs/train/flow_demo.yaml)
RUNS=(implicit explicit)
[ "${PRIOR_RAW:-0}" = 1 ] && RUNS+=(implicit_raw)
pids=()
for name in "${RUNS[@]}"; do
  if [ -f "$RUN/$name/final/model.safetensors" ]; then
    echo "$name: already trained ($RUN/$name/final)"
    continue
  fi
  extra=()
  [ -n "${MAX_STEPS:-}" ] && extra+=(--max-steps "$MAX_STEPS")
  [ "$name" = implicit_raw ] && extra+=(--train-set model.prior_space=raw)
  echo "$name: training (log: $RUN/$name.log)"
  "$PY" -m engine train-flow --config "${CONFIG[$name]}" --data "$RUN/codes" --out "$RUN/$name" --resume --quiet \
      "${extra[@]}" "${CODEC_ARGS[@]}" > "$RUN/$name.log" 2>&1 &
  pids+=($!)
done
for pid in "${pids[@]}"; do
  wait "$pid" || { echo "a training run failed; see $RUN/*.log" >&2; exit 1; }
done

# 3. the held-out VC test set, the NFE sweep of both chains (euler: NFE = steps), the shipped setting
"$PY" -m engine eval build-testset demo --corpus "$CORPUS" --out "$RUN/testset"
FLOW_ARGS=(--set "perceptual.flow.path=$RUN/implicit/final" --set "perceptual.flow.other_chain_path=$RUN/explicit/final")
"$PY" -m engine eval vc "${CODEC_ARGS[@]}" "${FLOW_ARGS[@]}" --manifest "$RUN/testset/manifest.jsonl" --out "$REPORTS"/flow_demo \
    --steps 1,2,4,8,16 --chain implicit,explicit --set perceptual.flow.solver=euler --asr "$ASR" --speaker "$SPEAKER" --resume
"$PY" -m engine eval vc "${CODEC_ARGS[@]}" --set "perceptual.flow.path=$RUN/implicit/final" --manifest "$RUN/testset/manifest.jsonl" \
    --out "$REPORTS"/flow_demo_default --asr "$ASR" --speaker "$SPEAKER" --resume
if [ "${PRIOR_RAW:-0}" = 1 ]; then
  "$PY" -m engine eval vc "${CODEC_ARGS[@]}" --set "perceptual.flow.path=$RUN/implicit_raw/final" --manifest "$RUN/testset/manifest.jsonl" \
      --out "$REPORTS"/flow_demo_raw --steps 1,2,4,8,16 --set perceptual.flow.solver=euler --asr "$ASR" --speaker "$SPEAKER" --resume
fi

# 4. ship the implicit model (the explicit one stays in RUN unless the sweep says it wins)
mkdir -p "$SHIP"
cp "$RUN/implicit/final/config.yaml" "$RUN/implicit/final/model.safetensors" "$SHIP/"
cp "$REPORTS/flow_demo/wer_sim_vs_steps.png" "$PLOT"
echo "implicit model copied to $SHIP/; the sweep is in $REPORTS/flow_demo/summary.md (plot copied to $PLOT)."
echo "Next: write the model card $SHIP/README.md from $REPORTS/flow_demo/summary.md and"
echo "$REPORTS/flow_demo_default/summary.md, and fill in docs/demo.md \"Flow model (part 2)\"."
