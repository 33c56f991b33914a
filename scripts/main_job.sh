#!/usr/bin/env bash
# The main job: LeNet-5 on Fashion-MNIST trained with fp32 (native), bf16, mbm7 and
# mitchell7, same data, seed and settings; writes runs/main/convergence.png,
# runs/main/comparison.md and runs/main/summary.json (one run per multiplier in
# runs/main/<multiplier>/). Re-running continues: finished runs are skipped.
#
# About 7 minutes on 2 CPU cores (after setup): EPOCHS epochs on the first
# SUBSET training images, evaluated on the full 10,000-image test set after every epoch.
# Override with environment variables or extra arguments, e.g.
#   EPOCHS=10 OUT=runs/long scripts/main_job.sh
#   SUBSET=20000 scripts/main_job.sh          # a shorter version
#   scripts/main_job.sh --multipliers fp32,bf16,mbm5,mitchell5
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
EPOCHS="${EPOCHS:-6}"
SUBSET="${SUBSET:-60000}"
OUT="${OUT:-runs/main}"
MULTIPLIERS="${MULTIPLIERS:-fp32,bf16,mbm7,mitchell7}"
# Set up on a fresh machine (dataset, TensorFlow, build); quick when already done.
# SKIP_SETUP=1 skips it (the package must then be built already).
if [ "${SKIP_SETUP:-0}" != 1 ]; then
    bash scripts/setup.sh
fi
# shellcheck source=scripts/python_env.sh
source scripts/python_env.sh  # the environment setup.sh installed into

exec "$PYTHON" -m approxtrain compare \
    --model lenet5 --dataset fashion_mnist \
    --multipliers "$MULTIPLIERS" \
    --epochs "$EPOCHS" --subset "$SUBSET" --batch-size 64 \
    --optimizer sgd --lr 0.05 --momentum 0.9 --lr-schedule cosine \
    --seed 0 --out "$OUT" "$@"
