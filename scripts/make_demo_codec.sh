#!/usr/bin/env bash
# Rebuild the demo codec from scratch (docs/demo.md): corpus -> teacher features -> training ->
# evaluation on the held-out voices -> assets/models/demo/codec/. Resumable: run it again after an
# interruption and every step continues where it stopped.
#
#   bash scripts/make_demo_codec.sh [CORPUS_DIR] [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=${1:-data/demo_corpus}
RUN=${2:-runs/codec_demo}
PY=${PYTHON:-.venv/bin/python}

"$PY" -m engine demo corpus --out "$CORPUS" --resume
"$PY" -m engine train-codec --corpus "$CORPUS" --out "$RUN" --resume
"$PY" -m engine eval codec --profile demo --set "codec.path=$RUN/final" --corpus "$CORPUS" --out reports/codec_demo
mkdir -p assets/models/demo/codec
cp "$RUN/final/config.json" "$RUN/final/model.safetensors" assets/models/demo/codec/
echo "demo codec copied to assets/models/demo/codec/ (update its README.md with reports/codec_demo/summary.md)"
