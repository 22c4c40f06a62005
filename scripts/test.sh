#!/usr/bin/env bash
# Sets up a fresh machine, fetches both models, builds, and runs every test.
# GPU tests skip themselves where there is no GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/fetch-model.sh --all
scripts/build.sh
export HEADSHARD_REQUIRE_MODELS=1
cd "${BUILD_DIR:-build}"
ctest --output-on-failure -j"$(nproc)"
