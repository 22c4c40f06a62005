#!/usr/bin/env bash
# From a fresh machine to an answer: installs dependencies, fetches the default model, builds,
# and asks the model (chat template applied). Usage: scripts/quickstart.sh ["your question"]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/fetch-model.sh
scripts/build.sh
exec build/headshard generate --chat --prompt "${1:-What is the capital of France? Answer in one sentence.}" --max-tokens 128
