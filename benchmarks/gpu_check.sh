#!/usr/bin/env bash
# The one command for a GPU machine (no TensorFlow needed):
#   bash benchmarks/gpu_check.sh
# builds approxtrain._core with its CUDA kernels (CMake only, no TF op
# library), runs the CUDA and core tests, then benchmarks the AM kernels
# against cuBLAS/cuDNN FP32.  Logs and JSON go to $OUT (default ./gpu-out):
#   env.txt, build.log, ptxas.txt (registers/spills per kernel), pytest.log,
#   pytest.xml, bench.log, cuda_bench.json.
# Exit status: that of the build, else that of pytest (the benchmark runs either way).
# Knobs: APPROXTRAIN_CUDA_ARCHS (default 90), PYTHON, BENCH_ARGS (e.g. "--quick").
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT="${OUT:-$ROOT/gpu-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
ARCHS="${APPROXTRAIN_CUDA_ARCHS:-90}"

{ date; nvidia-smi; nvcc --version; "$PY" --version; cmake --version | head -1; } > "$OUT/env.txt" 2>&1

generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
echo "== build (archs $ARCHS) -> $OUT/build.log"
if ! { cmake -S . -B build-gpu "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DAPPROXTRAIN_TF=OFF \
         -DAPPROXTRAIN_CUDA_ARCHS="$ARCHS" -DAPPROXTRAIN_OUTPUT_DIR="$ROOT/approxtrain" \
         -DAPPROXTRAIN_PTXAS_VERBOSE=ON -DPython_EXECUTABLE="$(command -v "$PY")" \
         -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" \
       && cmake --build build-gpu -j "$(nproc)"; } > "$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"
  echo "build failed: see $OUT/build.log"
  exit 1
fi
"$PY" benchmarks/ptxas_report.py "$OUT/build.log" > "$OUT/ptxas.txt" 2>&1 || true
cat "$OUT/ptxas.txt"

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import approxtrain._core as c; print(dict(c.build_info), 'cuda_available:', c.cuda_available(), c.cuda_device())" \
  | tee "$OUT/device.txt"

echo "== tests -> $OUT/pytest.log"
shopt -s nullglob
tests=(tests/cuda tests/test_core*.py)
"$PY" -m pytest "${tests[@]}" -q -rs -p no:cacheprovider --junitxml="$OUT/pytest.xml" 2>&1 | tee "$OUT/pytest.log"
status=${PIPESTATUS[0]}

echo "== benchmark -> $OUT/bench.log, $OUT/cuda_bench.json"
# shellcheck disable=SC2086
"$PY" benchmarks/cuda_bench.py --out "$OUT/cuda_bench.json" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log"
exit "$status"
