#!/usr/bin/env bash
# One command for the GPU machine: builds the attention kernels (kernels/CMakeLists.txt, or uses a
# prebuilt folder), runs the CUDA tests, runs compute-sanitizer's memcheck on all of them (about a
# minute on an H200) and, with --racecheck, racecheck on a cross-section (every plan kind at head
# dims 64, 128 and 256, the split decode's merge; about two minutes; HS_RACECHECK_FILTER, a gtest
# filter, picks others: the whole suite ran past 330 s), runs the attention benchmark and prints
# its tables. Logs and JSON go to $OUT.
#
#   scripts/gpu-check.sh [--quick] [--no-tests] [--no-sanitizer] [--racecheck] [--no-bench] [-- bench args...]
#   scripts/gpu-check.sh prep     # on a machine with GoogleTest + nlohmann_json installed: copies
#                                 # their sources/headers into .gpu-deps/ (git-ignored) so that the
#                                 # GPU machine, which has neither, can build the test (carry .gpu-deps)
# Environment: HS_KERNEL_BUILD (default build-kern; reused when it already holds the binaries),
# OUT (default build-kern/gpu-check-out, git-ignored), time limits in seconds HS_TEST_TIMEOUT (300),
# HS_SANITIZER_TIMEOUT (240), HS_BENCH_TIMEOUT (540).
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "prep" ]; then
  mkdir -p .gpu-deps/include
  cp -r /usr/src/googletest .gpu-deps/googletest
  cp -r "$(dirname "$(find /usr/include /usr/local/include -name json_fwd.hpp -path '*nlohmann*' | head -1)")" .gpu-deps/include/
  grep -qx '/.gpu-deps/' .git/info/exclude 2>/dev/null || echo '/.gpu-deps/' >> .git/info/exclude
  echo "prepared .gpu-deps ($(du -sh .gpu-deps | cut -f1)); name it in the run's carry"
  exit 0
fi

QUICK="" TESTS=1 SAN=1 RACE=0 BENCH=1 BENCH_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=--quick ;;
    --no-tests) TESTS=0 ;;
    --no-sanitizer) SAN=0 ;;
    --racecheck) RACE=1 ;;
    --no-bench) BENCH=0 ;;
    --) shift; BENCH_ARGS=("$@"); break ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

BUILD=${HS_KERNEL_BUILD:-build-kern}
OUT=${OUT:-$PWD/$BUILD/gpu-check-out}
mkdir -p "$OUT"
status=0
step() { echo; echo "== $*"; }

step "device"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw,memory.used \
  --format=csv 2>&1 | tee "$OUT/device.txt"

if [ ! -x "$BUILD/test_sharded_attention" ] || [ ! -f "$BUILD/libheadshard_kernels.so" ]; then
  step "build ($BUILD)"
  extra=()
  [ -d .gpu-deps/googletest ] && extra+=("-DHS_GTEST_SRC=$PWD/.gpu-deps/googletest")
  [ -d .gpu-deps/include/nlohmann ] && extra+=("-DHS_JSON_INCLUDE=$PWD/.gpu-deps/include")
  t=$(date +%s)
  if ! { cmake -S kernels -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "${extra[@]}" >"$OUT/build.log" 2>&1 &&
         cmake --build "$BUILD" -j"$(nproc)" >>"$OUT/build.log" 2>&1; }; then
    tail -40 "$OUT/build.log"
    echo "build failed"
    exit 1
  fi
  echo "built in $(( $(date +%s) - t )) s"
else
  step "using prebuilt $BUILD"
fi

if [ $TESTS = 1 ]; then
  step "CUDA tests"
  t=$(date +%s)
  timeout "${HS_TEST_TIMEOUT:-300}" "$BUILD/test_sharded_attention" --gtest_brief=1 >"$OUT/test.log" 2>&1
  rc=$?
  grep -E "FAILED|Failure|error|PASSED|tests ran|SKIPPED \]" "$OUT/test.log" | head -60
  echo "tests: exit $rc ($(( $(date +%s) - t )) s)"
  [ $rc = 0 ] || status=1
fi

if [ $SAN = 1 ]; then
  SANITIZER=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  tools=(memcheck)
  RACE_FILTER='ShardedAttentionSmall*:ShardedAttentionDecode*:All/*D64_B16_G3*:All/*D128_B64_G4*:All/*D256_B16_G8*'
  [ $RACE = 1 ] && tools+=(racecheck)
  for tool in "${tools[@]}"; do
    filter='*'
    [ $tool = racecheck ] && filter=${HS_RACECHECK_FILTER:-$RACE_FILTER}
    step "compute-sanitizer $tool ($filter)"
    t=$(date +%s)
    timeout "${HS_SANITIZER_TIMEOUT:-240}" "$SANITIZER" --tool $tool --error-exitcode 9 "$BUILD/test_sharded_attention" \
      --gtest_filter="$filter" --gtest_brief=1 >"$OUT/sanitizer-$tool.log" 2>&1
    rc=$?
    grep -E "ERROR SUMMARY|RACECHECK SUMMARY|Invalid|Race|FAILED|PASSED" "$OUT/sanitizer-$tool.log" | head -20
    echo "$tool: exit $rc ($(( $(date +%s) - t )) s)"
    [ $rc = 0 ] || status=1
  done
fi

if [ $BENCH = 1 ]; then
  step "attention benchmark"
  PYTHONUNBUFFERED=1 timeout "${HS_BENCH_TIMEOUT:-540}" python3 scripts/bench_attention.py --lib "$BUILD/libheadshard_kernels.so" --out "$OUT" \
    $QUICK "${BENCH_ARGS[@]}" 2>&1 | tee "$OUT/bench.log" | grep -v "^decode batch\|^prefill n\|^  ("
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
echo
echo "gpu-check: $([ $status = 0 ] && echo OK || echo FAILED)"
exit $status
