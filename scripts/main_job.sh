#!/usr/bin/env bash
# The main job: LeNet-5 on Fashion-MNIST trained with fp32 (native), bf16, mbm7 and
# mitchell7, same data, seed and settings; writes runs/main/convergence.png,
# runs/main/comparison.md and runs/main/summary.json (one run per multiplier in
# runs/main/<multiplier>/). Re-running continues: finished runs are skipped.
#
# Sized to finish in about 15 minutes on 2 CPU cores: EPOCHS epochs on the first
# SUBSET training images, evaluated on the full 10,000-image test set after every epoch.
# Override with environment variables or extra arguments, e.g.
#   EPOCHS=10 SUBSET=60000 OUT=runs/full scripts/main_job.sh
#   scripts/main_job.sh --multipliers fp32,bf16,mbm5,mitchell5
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
EPOCHS="${EPOCHS:-6}"
SUBSET="${SUBSET:-20000}"
OUT="${OUT:-runs/main}"
MULTIPLIERS="${MULTIPLIERS:-fp32,bf16,mbm7,mitchell7}"
PYTHON="${PYTHON:-python3}"

# Build the native parts once if this checkout lacks them (the TF op library is what AM layers need).
if ! "$PYTHON" -c "import approxtrain._core, approxtrain.ops" 2>/dev/null; then
    echo "main_job: building approxtrain (python setup.py build_ext --inplace) ..."
    CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" "$PYTHON" setup.py build_ext --inplace
fi

exec "$PYTHON" -m approxtrain compare \
    --model lenet5 --dataset fashion_mnist \
    --multipliers "$MULTIPLIERS" \
    --epochs "$EPOCHS" --subset "$SUBSET" --batch-size 64 \
    --optimizer sgd --lr 0.05 --momentum 0.9 --lr-schedule cosine \
    --seed 0 --out "$OUT" "$@"
