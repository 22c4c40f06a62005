#!/usr/bin/env bash
# From a fresh machine to a running server: installs dependencies, fetches the default model,
# builds, and starts the OpenAI-compatible server on it (127.0.0.1:8080 unless --host/--port say
# otherwise). Extra arguments go to `headshard serve`, e.g. scripts/serve.sh --port 9000.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/fetch-model.sh
scripts/build.sh
exec build/headshard serve "$@"
