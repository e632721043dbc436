#!/usr/bin/env bash
# bench/gpu.sh: the GPU session's one command. Builds tl with CUDA, runs every
# CUDA test (tests/cuda, against the CPU kernels), then times each kernel and a
# BERT-base training step, and prints a markdown table for bench/RESULTS.md (also
# written to bench/gpu-latest.md). Budget: 8 minutes in all. Without a GPU it
# prints "skipped: no GPU" and exits 0.
#
#   bash bench/gpu.sh            # from the repository root, on a machine with a GPU
#   BUILD=build-x bash bench/gpu.sh
#
# Exit status: non-zero when the build or any CUDA test fails (the timings still
# run after a test failure, so a session learns as much as possible per try).
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
BUILD=${BUILD:-build-gpu}
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "skipped: no GPU"
  exit 0
fi
if ! command -v nvcc >/dev/null 2>&1; then
  echo "gpu.sh: a GPU is present but nvcc is not on PATH (tried /usr/local/cuda/bin)" >&2
  exit 1
fi
nvidia-smi -L

# 1. Build: the CUDA library, the CUDA tests and the bench (not the whole tree).
echo "== build ($BUILD) at $(elapsed)s"
jobs=$(nproc)
timeout 240 cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_CUDA_COMPILER="$(command -v nvcc)" >"$BUILD.configure.log" 2>&1 ||
  { tail -30 "$BUILD.configure.log"; echo "gpu.sh: configure failed" >&2; exit 1; }
tests=$(cd tests/cuda && ls test_cuda_*.c | sed 's/\.c$//')
# shellcheck disable=SC2086
timeout 300 cmake --build "$BUILD" -j"$jobs" --target tl_cuda bench-gpu $tests ||
  { echo "gpu.sh: build failed" >&2; exit 1; }

# 2. Tests: every CUDA test (each prints its mismatches).
echo "== CUDA tests at $(elapsed)s"
status=0
for t in $tests; do
  if timeout 120 "$BUILD/$t" --jobs 1 --short-filename 2>&1 | tail -25; then
    echo "ok: $t"
  else
    echo "FAILED: $t"
    status=1
  fi
done

# 3. Kernel timings and the BERT-base step (a separate process: it needs the ops'
#    CUDA dispatch and must not take the kernel table down with it).
echo "== bench at $(elapsed)s"
out=bench/gpu-latest.md
timeout 180 "$BUILD/bench-gpu" | tee "$out" || { echo "gpu.sh: bench-gpu failed" >&2; status=1; }
left=$(( 470 - $(elapsed) ))
if (( left > 30 )); then
  if ! timeout "$left" "$BUILD/bench-gpu" --bert 2>"$BUILD.bert.log" | tail -1 | tee -a "$out"; then
    :
  fi
  if ! grep -q "BERT-base" "$out"; then
    echo "| BERT-base pre-training step | not available: $(tail -1 "$BUILD.bert.log") |" |
      tee -a "$out"
  fi
else
  echo "| BERT-base pre-training step | skipped: time budget spent |" | tee -a "$out"
fi
echo "== done in $(elapsed)s (tests: $([ $status = 0 ] && echo pass || echo FAIL)); table in $out"
exit $status
