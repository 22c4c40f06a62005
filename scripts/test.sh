#!/usr/bin/env bash
# Sets up a fresh machine, fetches both models, builds, and runs every test; then builds the
# CPU code again with AddressSanitizer and UndefinedBehaviorSanitizer and runs the unit and
# end-to-end tests under them. GPU tests skip themselves where there is no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/fetch-model.sh --all
export HEADSHARD_REQUIRE_MODELS=1

echo "== build and test"
scripts/build.sh
(cd build && ctest --output-on-failure -j"$(nproc)")

echo "== AddressSanitizer + UndefinedBehaviorSanitizer"
# The golden-file comparisons are long model runs already covered above; everything else runs.
BUILD_DIR=build-asan BUILD_TYPE=RelWithDebInfo scripts/build.sh -DHEADSHARD_SANITIZE=ON -DHEADSHARD_CUDA=off
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
(cd build-asan && ctest --output-on-failure -j"$(nproc)" -E "Golden")

echo "== container image: build and smoke-test (HEADSHARD_SKIP_CONTAINER=1 skips)"
if [ "${HEADSHARD_SKIP_CONTAINER:-0}" = 1 ]; then
  echo "skipped: HEADSHARD_SKIP_CONTAINER=1"
else
  scripts/test-container.sh
fi
