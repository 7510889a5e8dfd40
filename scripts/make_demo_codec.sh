#!/usr/bin/env bash
# Rebuild the demo codec from scratch (docs/demo.md): corpus -> teacher features -> phase 1 (v1:
# mel + Whisper distillation, 2 s crops) -> phase 2 (v2: + phoneme CTC head on RVQ-1, whole
# utterances) -> phase 3 (the decoder alone, codes frozen) -> v3 phase 1 (RVQ-1 from Whisper's
# features: adapter + RVQ-1 with the phoneme head, v2's mel encoder frozen) -> v3 phase 2 (mel
# encoder, RVQ-2..8 and decoder, RVQ-1 frozen) -> v4 (an istft waveform head on the frozen v3
# decoder, replacing HiFi-GAN; the codes stay v3's) -> evaluation on the held-out voices ->
# assets/models/demo/codec/. Resumable: run it again after an interruption and every step continues
# where it stopped.
#
#   bash scripts/make_demo_codec.sh [CORPUS_DIR] [RUN_DIR]
#   (v2's phases run in RUN_DIR_v2, RUN_DIR_v2_decoder; v3's in RUN_DIR_v3_semantic, RUN_DIR_v3; v4 in RUN_DIR_v4)
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${1:-data/demo_corpus}
RUN=${2:-runs/codec_demo}
PY=${PYTHON:-.venv/bin/python}

"$PY" -m engine demo corpus --out "$CORPUS" --resume
"$PY" -m engine train-codec --corpus "$CORPUS" --out "$RUN" --threads 1 --resume
"$PY" -m engine train-codec --corpus "$CORPUS" --out "${RUN}_v2" --config assets/configs/train/codec_demo_v2.yaml \
    --train-set "init_from=$RUN/final" --threads 2 --resume
"$PY" -m engine train-codec --corpus "$CORPUS" --out "${RUN}_v2_decoder" --config assets/configs/train/codec_demo_v2_decoder.yaml \
    --train-set "init_from=${RUN}_v2/final" --threads 2 --resume
"$PY" -m engine train-codec --corpus "$CORPUS" --out "${RUN}_v3_semantic" --config assets/configs/train/codec_demo_v3_semantic.yaml \
    --train-set "init_from=${RUN}_v2_decoder/final" --threads 2 --resume
"$PY" -m engine train-codec --corpus "$CORPUS" --out "${RUN}_v3" --config assets/configs/train/codec_demo_v3_acoustic.yaml \
    --train-set "init_from=${RUN}_v3_semantic/final" --threads 2 --resume
"$PY" -m engine train-codec --corpus "$CORPUS" --out "${RUN}_v4" --config assets/configs/train/codec_demo_v4_wave.yaml \
    --train-set "init_from=${RUN}_v3/final" --threads 2 --resume
FINAL="${RUN}_v4/final"
"$PY" -m engine eval codec --profile demo --set "codec.path=$FINAL" --set codec.name=demo-v3 --corpus "$CORPUS" --out reports/codec_demo \
    --asr tiny --speaker resemblyzer --phoneme-probe 30
mkdir -p assets/models/demo/codec
cp "$FINAL/config.json" "$FINAL/model.safetensors" assets/models/demo/codec/
echo "demo codec copied to assets/models/demo/codec/ (update its README.md with reports/codec_demo/summary.md)"
