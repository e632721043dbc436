#!/usr/bin/env bash
# Builds tl and runs every test twice: a normal build, then an ASan+UBSan build.
# CUDA sources are compiled whenever nvcc is on PATH; their tests skip without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=$(nproc)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

echo "== release build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTL_WERROR=ON >/dev/null
cmake --build build -j"$JOBS"
(cd build && ctest --output-on-failure)

echo "== sanitizer build (ASan + UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTL_SANITIZE=ON -DTL_CUDA=OFF >/dev/null
cmake --build build-asan -j"$JOBS"
# Leaks count as failures too.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest --output-on-failure)
