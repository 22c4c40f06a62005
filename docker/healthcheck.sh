#!/bin/bash
# The image's HEALTHCHECK: GET /health answers 200 when the model is loaded and the server
# ready, 503 while it loads or drains (wget then exits non-zero). The entrypoint records where
# the server listens; without that record, HEADSHARD_HOST/HEADSHARD_PORT or 127.0.0.1:8080.
read -r host port 2>/dev/null </tmp/headshard-health || true
host=${host:-${HEADSHARD_HOST:-127.0.0.1}}
port=${port:-${HEADSHARD_PORT:-8080}}
case "$host" in 0.0.0.0|::|"[::]") host=127.0.0.1 ;; *:*) host="[${host#[}"; host="${host%]}]" ;; esac
exec wget -q --no-proxy -T "${HEADSHARD_HEALTH_TIMEOUT:-3}" -t 1 -O /dev/null "http://$host:$port/health"
