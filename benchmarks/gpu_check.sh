#!/usr/bin/env bash
# The one command for a GPU machine (no TensorFlow needed):
#   bash benchmarks/gpu_check.sh
# 1. pre-flight (benchmarks/gpu_preflight.py, about a second): Python headers,
#    pybind11, cmake, nvcc, the driver and a visible device, else FAIL before
#    any configure;
# 2. builds approxtrain._core with its CUDA kernels in $BUILD_DIR (CMake only,
#    no TF op library; -DAPPROXTRAIN_REQUIRE_CUDA=ON, so no silent CPU stub),
#    the module itself into approxtrain/ of this checkout;
# 3. checks that the built _core reports CUDA and a usable device;
# 4. runs tests/cuda with APPROXTRAIN_REQUIRE_CUDA=1 (a skipped GPU test fails);
#    every GPU test compares against the CPU core bit for bit, so the CPU-only
#    tests/test_core*.py are left to CI;
# 5. benchmarks the AM kernels against cuBLAS/cuDNN FP32.
# Every stage runs under `timeout` inside a total budget, so a hung kernel
# still ends in a summary.  The last line is always one of
#   GPU CHECK: PASS (N passed, 0 failed, 0 skipped; bench ok)
#   GPU CHECK: FAIL (<what failed>)
# and the exit status is 0 for PASS, 1 for FAIL.  Eight files go to $OUT
# (default ./gpu-out; the device tool returns at most eight): env.txt (the
# pre-flight line, nvidia-smi, versions, the built module's device),
# build.log, ptxas.txt (registers/spills per kernel), pytest.log, pytest.xml,
# bench.log, cuda_bench.json, summary.txt.
# Knobs: PYTHON (default python3), APPROXTRAIN_CUDA_ARCHS (default 90),
# CUDACXX (the nvcc), PYTHON_INCLUDE_DIR (where Python.h is, when not under
# sysconfig's include path), BUILD_DIR (default build-gpu), BENCH_ARGS (e.g. "--quick"),
# GPU_CHECK_BUDGET (seconds for everything, default 540), BUILD_TIMEOUT (300),
# TESTS_TIMEOUT (240), TEST_TIMEOUT (per test with pytest-timeout, 120),
# BENCH_TIMEOUT (180).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT="${OUT:-$ROOT/gpu-out}"
BUILD_DIR="${BUILD_DIR:-$ROOT/build-gpu}"
PY="${PYTHON:-python3}"
ARCHS="${APPROXTRAIN_CUDA_ARCHS:-90}"
BUDGET="${GPU_CHECK_BUDGET:-540}"
BUILD_TIMEOUT="${BUILD_TIMEOUT:-300}"
TESTS_TIMEOUT="${TESTS_TIMEOUT:-240}"
TEST_TIMEOUT="${TEST_TIMEOUT:-120}"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-180}"
RESERVE=15  # seconds kept back from the budget for the summary
export PYTHONUNBUFFERED=1 APPROXTRAIN_CUDA_ARCHS="$ARCHS"

if ! mkdir -p "$OUT"; then
  echo "GPU CHECK: FAIL (cannot create OUT=$OUT)"
  exit 1
fi

# The summary line: last on stdout and in $OUT/summary.txt; exit 0 on PASS only.
finish() {
  echo "GPU CHECK: $1 ($2)" | tee "$OUT/summary.txt"
  [ "$1" = PASS ]
  exit $?
}

# Seconds a stage may take: its cap, or what is left of the budget.
limit_for() {
  local left=$((BUDGET - SECONDS - RESERVE))
  if ((left < $1)); then echo "$left"; else echo "$1"; fi
}

# bounded LIMIT LOG MODE CMD...: CMD under timeout, output to LOG (MODE tee:
# and to stdout); returns CMD's status, 124 or 137 when timed out (124 at
# once when the budget is spent: `timeout 0` would mean no limit at all).
bounded() {
  local limit=$1 log=$2 mode=$3
  shift 3
  if ((limit < 1)); then
    echo "not run: GPU_CHECK_BUDGET=${BUDGET}s spent" | tee -a "$log"
    return 124
  fi
  if [ "$mode" = tee ]; then
    timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$log"
  else
    timeout -k 10 "$limit" "$@" >> "$log" 2>&1
  fi
  return "${PIPESTATUS[0]}"
}

timed_out() { [ "$1" = 124 ] || [ "$1" = 137 ]; }

# 1. pre-flight: fails in about a second, before anything is configured or built.
echo "== pre-flight -> $OUT/env.txt"
if ! command -v "$PY" > /dev/null; then
  finish FAIL "pre-flight: no Python interpreter '$PY' (set PYTHON)"
fi
preflight=$(timeout -k 5 30 "$PY" benchmarks/gpu_preflight.py 2>&1)
preflight_status=$?
printf '%s\n' "$preflight" | tee "$OUT/env.txt"
if ((preflight_status != 0)); then
  reason=$(printf '%s\n' "$preflight" | sed -n 's/^FAIL: //p' | tail -1)
  [ -n "$reason" ] || reason="gpu_preflight.py exited $preflight_status: $(printf '%s\n' "$preflight" | tail -1)"
  finish FAIL "pre-flight: $reason"
fi

{ date; timeout 20 nvidia-smi; timeout 20 nvcc --version; "$PY" --version; cmake --version | head -1; } \
  >> "$OUT/env.txt" 2>&1

# 2. build, CUDA required.
NVCC="${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}"
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
echo "== build (archs $ARCHS, $NVCC) in $BUILD_DIR -> $OUT/build.log"
: > "$OUT/build.log"
build_started=$SECONDS
limit=$(limit_for "$BUILD_TIMEOUT")
((limit < 1)) && finish FAIL "build not run: GPU_CHECK_BUDGET=${BUDGET}s spent"
bounded "$limit" "$OUT/build.log" log cmake -S . -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DAPPROXTRAIN_TF=OFF -DAPPROXTRAIN_REQUIRE_CUDA=ON -DCMAKE_CUDA_COMPILER="$NVCC" \
  -DAPPROXTRAIN_CUDA_ARCHS="$ARCHS" -DAPPROXTRAIN_OUTPUT_DIR="$ROOT/approxtrain" \
  -DAPPROXTRAIN_PTXAS_VERBOSE=ON -DPython_EXECUTABLE="$(command -v "$PY")" \
  -Dpybind11_DIR="$("$PY" -m pybind11 --cmakedir)" ${PYTHON_INCLUDE_DIR:+-DPython_INCLUDE_DIR="$PYTHON_INCLUDE_DIR"}
status=$?
if ((status == 0)); then
  limit=$(limit_for $((BUILD_TIMEOUT - (SECONDS - build_started))))
  bounded "$limit" "$OUT/build.log" log cmake --build "$BUILD_DIR" -j "$(nproc)"
  status=$?
fi
if ((status != 0)); then
  tail -40 "$OUT/build.log"
  if timed_out "$status"; then
    finish FAIL "build: timed out (limit ${limit}s), see $OUT/build.log"
  fi
  finish FAIL "build: configure or compile failed (exit $status), see $OUT/build.log"
fi
"$PY" benchmarks/ptxas_report.py "$OUT/build.log" > "$OUT/ptxas.txt" 2>&1 || true
cat "$OUT/ptxas.txt"

# 3. the built module must report CUDA and a usable device.
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
echo "== device -> $OUT/env.txt"
device=$(timeout -k 5 60 "$PY" - 2>&1 <<'EOF'
import sys
import approxtrain._core as c
info = dict(c.build_info)
print("module:", c.__file__)
print("build_info:", info)
if not info["cuda"]:
    sys.exit("FAIL: _core was built without its CUDA kernels (build_info cuda=False)")
print("cuda_available:", c.cuda_available(), "cuda_device:", c.cuda_device())
if not c.cuda_available():
    sys.exit("FAIL: no usable CUDA device: _core.cuda_available() is False")
EOF
)
status=$?
printf '%s\n' "$device" | tee -a "$OUT/env.txt"
if ((status != 0)); then
  reason=$(printf '%s\n' "$device" | sed -n 's/^FAIL: //p' | tail -1)
  [ -n "$reason" ] || reason="importing approxtrain._core failed (exit $status): $(printf '%s\n' "$device" | tail -1)"
  finish FAIL "$reason"
fi

# 4. the GPU tests, skips turned into failures.
echo "== tests/cuda -> $OUT/pytest.log, $OUT/pytest.xml"
: > "$OUT/pytest.log"
rm -f "$OUT/pytest.xml"
limit=$(limit_for "$TESTS_TIMEOUT")
((limit < 1)) && finish FAIL "tests not run: GPU_CHECK_BUDGET=${BUDGET}s spent by the build"
pytest_args=(tests/cuda -q -rfEs -p no:cacheprovider --junitxml="$OUT/pytest.xml")
if "$PY" -c "import pytest_timeout" 2> /dev/null; then
  pytest_args+=(--timeout="$TEST_TIMEOUT" --timeout-method=thread)
  echo "pytest-timeout: ${TEST_TIMEOUT}s per test (thread method), ${limit}s for all" | tee -a "$OUT/pytest.log"
else
  # faulthandler still dumps the stacks of a test that runs too long.
  pytest_args+=(-o faulthandler_timeout="$TEST_TIMEOUT")
  echo "pytest-timeout not installed: no per-test limit; stacks dumped after ${TEST_TIMEOUT}s," \
    "the outer timeout (${limit}s) alone stops the tests" | tee -a "$OUT/pytest.log"
fi
APPROXTRAIN_REQUIRE_CUDA=1 bounded "$limit" "$OUT/pytest.log" tee "$PY" -m pytest "${pytest_args[@]}"
status=$?
tests_ok=0
if timed_out "$status"; then
  tests="tests timed out after ${limit}s, see $OUT/pytest.log"
elif [ ! -s "$OUT/pytest.xml" ]; then
  tests="pytest exited $status without writing pytest.xml (a per-test timeout ends the run), see $OUT/pytest.log"
else
  counts=$("$PY" - "$OUT/pytest.xml" <<'EOF'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
n = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
failed = n["failures"] + n["errors"]
print(n["tests"] - failed - n["skipped"], failed, n["skipped"])
EOF
  )
  read -r passed failed skipped <<< "$counts"
  tests="${passed:-?} passed, ${failed:-?} failed, ${skipped:-?} skipped"
  if ((status == 0)) && [ "${passed:-0}" -gt 0 ] && [ "$failed" = 0 ] && [ "$skipped" = 0 ]; then
    tests_ok=1
  elif ((status != 0)); then
    tests="$tests, pytest exit $status"
  fi
fi

# 5. the benchmark, whatever the tests said.
echo "== benchmark -> $OUT/bench.log, $OUT/cuda_bench.json"
: > "$OUT/bench.log"
rm -f "$OUT/cuda_bench.json"
limit=$(limit_for "$BENCH_TIMEOUT")
if ((limit < 10)); then
  bench="bench not run: GPU_CHECK_BUDGET=${BUDGET}s spent"
else
  # shellcheck disable=SC2086
  bounded "$limit" "$OUT/bench.log" tee "$PY" benchmarks/cuda_bench.py --out "$OUT/cuda_bench.json" ${BENCH_ARGS:-}
  status=$?
  if ((status == 0)) && [ -s "$OUT/cuda_bench.json" ]; then
    bench="bench ok"
  elif ((status == 0)); then
    bench="bench wrote no $OUT/cuda_bench.json"
  elif ((status == 2)); then
    bench="bench: no usable CUDA device (exit 2)"
  elif timed_out "$status"; then
    bench="bench timed out after ${limit}s"
  else
    bench="bench failed (exit $status), see $OUT/bench.log"
  fi
fi

if ((tests_ok)) && [ "$bench" = "bench ok" ]; then
  finish PASS "$tests; $bench"
fi
finish FAIL "$tests; $bench"
