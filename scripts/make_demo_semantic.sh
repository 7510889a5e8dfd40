#!/usr/bin/env bash
# Train the demo semantic model (docs/demo.md "Semantic model (part 3)"):
#   demo codes of the train split (made by scripts/make_demo_flow.sh, or extracted here) ->
#   TTS/ASR instruction records straight from the codes -> a small LLaMA trained from scratch with
#   assets/configs/train/llm_demo.yaml (about 1.3-1.6 h on one thread of the 2-core machine) ->
#   copied to assets/models/demo/semantic/ (semantic.path of the demo profile).
# Resumable: run it again after an interruption (or in several sessions) and it continues where it stopped.
#
#   bash scripts/make_demo_semantic.sh [CORPUS_DIR] [CODES_DIR] [RUN_DIR]
#
# Environment: PYTHON (default .venv/bin/python); CONFIG (default assets/configs/train/llm_demo.yaml);
# TEXT_UNITS (chars | phonemes: overrides the config's model.text_units; each gets its own data file
# and run folder, so both can be trained and compared); SIZE (overrides model.size, e.g. tiny for a
# smoke run); MAX_STEPS (overrides train.max_steps); THREADS (torch threads, default 1);
# INIT_FROM (continue a trained model, e.g. the shipped assets/models/demo/semantic: its weights and
# tokenizer, a fresh schedule; use a new RUN_DIR for it);
# TRAIN_SET (more training-YAML overrides, space-separated KEY=VALUE, e.g. "train.lr=8e-4 data.asr_fraction=0.5");
# CODEC (default assets/models/demo/codec, only used when the codes must be extracted);
# SHIP (default assets/models/demo/semantic; SHIP=none keeps the model in the run folder).
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${1:-data/demo_corpus}
CODES=${2:-runs/flow_demo/codes}
RUN=${3:-runs/llm_demo}
PY=${PYTHON:-.venv/bin/python}
CONFIG=${CONFIG:-assets/configs/train/llm_demo.yaml}
CODEC=${CODEC:-assets/models/demo/codec}
SHIP=${SHIP:-assets/models/demo/semantic}
THREADS=${THREADS:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$THREADS}
UNITS=${TEXT_UNITS:-$("$PY" -c "import sys, yaml; print((yaml.safe_load(open(sys.argv[1])).get('model') or {}).get('text_units', 'chars'))" "$CONFIG")}
mkdir -p "$RUN"

# 1. codes of the train split (held-out voices and sentences are never read)
if [ ! -f "$CODES/index.jsonl" ]; then
  if [ ! -f "$CODEC/model.safetensors" ]; then
    echo "no codes in $CODES and no demo codec in $CODEC: train the codec first (bash scripts/make_demo_codec.sh)" >&2
    exit 1
  fi
  "$PY" -m engine extract --manifest "$CORPUS" --split train --out "$CODES" --workers 1 --quiet --profile demo --set "codec.path=$CODEC"
fi

# 2. TTS and ASR records from the codes (RVQ-1 = row 0); only the corpus's train rows can enter
DATA="$RUN/data-$UNITS.jsonl"
if [ ! -f "$DATA" ]; then
  "$PY" -m engine train-llm build-data --codes "$CODES" --train-config "$CONFIG" --text-units "$UNITS" --out "$DATA"
fi

# 3. training from scratch (resumes from the newest checkpoint in the run folder)
extra=(--train-set "model.text_units=$UNITS")
[ -n "${SIZE:-}" ] && extra+=(--model "scratch:$SIZE")
[ -n "${MAX_STEPS:-}" ] && extra+=(--max-steps "$MAX_STEPS")
[ -n "${INIT_FROM:-}" ] && extra+=(--train-set "init_from=$INIT_FROM")
for kv in ${TRAIN_SET:-}; do extra+=(--train-set "$kv"); done
"$PY" -m engine train-llm run --config "$CONFIG" --data "$DATA" --out "$RUN/$UNITS" --threads "$THREADS" --resume --quiet "${extra[@]}"

# 4. ship it
if [ "$SHIP" != none ]; then
  mkdir -p "$SHIP"
  cp "$RUN/$UNITS/final/"* "$SHIP/"
  # the weights in float16 (half the size; the CPU loads them back as float32)
  "$PY" -c "import sys, torch; from transformers import LlamaForCausalLM; m = LlamaForCausalLM.from_pretrained(sys.argv[1], torch_dtype=torch.float32); m.half().save_pretrained(sys.argv[1])" "$SHIP"
  echo "model copied to $SHIP/ (semantic.path of the demo profile)."
  echo "Next: write the model card $SHIP/README.md (data, licences, command, scores) and fill in docs/demo.md \"Semantic model (part 3)\"."
fi
