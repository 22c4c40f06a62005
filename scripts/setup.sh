#!/usr/bin/env bash
# Installs everything headshard needs to build and test on Debian 12 (or Ubuntu 24.04):
# compilers, CMake, the libraries it links, and Python with pip. Safe to run again: it installs
# only what is missing. Needs root (or sudo) for apt-get.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config git ca-certificates
  libgtest-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libsentencepiece-dev libcpp-httplib-dev
  python3 python3-pip python3-venv
)

"$(dirname "$0")/apt-ensure.sh" "${PACKAGES[@]}"

# pip is used to fetch the model packages; a pyenv or other python3 first on PATH is fine too.
if ! python3 -m pip --version >/dev/null 2>&1; then
  echo "setup: python3 has no pip; install python3-pip" >&2
  exit 1
fi

# Python packages for the end-to-end tests and scripts/loadtest.py, in .venv (git-ignored).
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
if "$ROOT/.venv/bin/python" -c "import openai, pytest, requests" >/dev/null 2>&1; then
  echo "setup: .venv present"
else
  echo "setup: creating .venv (openai, pytest, requests)"
  python3 -m venv "$ROOT/.venv"
  "$ROOT/.venv/bin/pip" install -q openai pytest requests
fi
echo "setup: done"
