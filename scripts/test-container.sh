#!/usr/bin/env bash
# Builds the CPU server image from docker/Dockerfile and smoke-tests it, on a machine without a
# Docker engine or a reachable container registry (CI: a clean clone on a 2-core Debian 12
# machine, as root). Uses Debian's podman and buildah with the runc runtime, cgroupfs, the
# `file` events backend and explicit ulimits, under a configuration that lives in
# build-container/podman (CONTAINERS_CONF, CONTAINERS_STORAGE_CONF; /etc is not touched). The
# base image debian:bookworm-slim is made locally with `debootstrap --variant=minbase bookworm`
# and `podman import` (its tarball is cached in build-container/), so nothing is pulled.
#
# Steps: install podman & co. with apt-get; build the image; start it with models/ mounted at
# /models (scripts/fetch-model.sh fills it when the file is missing); wait until its HEALTHCHECK
# passes (timed); one completion with curl; one streaming chat completion with the openai
# client (.venv, made by scripts/setup.sh); a short scripts/loadtest.py run; then `podman stop`
# while a request is in flight, which must drain it and exit 0 by itself within the grace
# period (timed). Prints a table and writes build-container/container-report.json.
#
# Settings (environment): HEADSHARD_CONTAINER_DIR (scratch, default build-container),
# HEADSHARD_IMAGE (default localhost/headshard:cpu), HEADSHARD_SMOKE_PORT (host port, default
# a free one), HEADSHARD_BUILD_NETWORK (podman build --network, default host),
# HEADSHARD_RUN_NETWORK (bridge, the default, publishes 127.0.0.1:PORT; host runs the server on
# the host's loopback), HEADSHARD_LOADTEST_SECONDS (default 15), HEADSHARD_GRACE_SECONDS
# (default 30), HEADSHARD_STORAGE_DRIVER (overlay, the default, or vfs), HEADSHARD_DEBIAN_MIRROR
# (for debootstrap, default http://deb.debian.org/debian).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
T_SCRIPT=$(date +%s.%N)

WORK=$(mkdir -p "${HEADSHARD_CONTAINER_DIR:-build-container}" && cd "${HEADSHARD_CONTAINER_DIR:-build-container}" && pwd)
IMAGE=${HEADSHARD_IMAGE:-localhost/headshard:cpu}
PORT=${HEADSHARD_SMOKE_PORT:-}
BUILD_NETWORK=${HEADSHARD_BUILD_NETWORK:-host}
RUN_NETWORK=${HEADSHARD_RUN_NETWORK:-bridge}
LOAD_SECONDS=${HEADSHARD_LOADTEST_SECONDS:-15}
GRACE=${HEADSHARD_GRACE_SECONDS:-30}
DRIVER=${HEADSHARD_STORAGE_DRIVER:-overlay}
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
# The exact names docker/Dockerfile's FROM uses: made here, never pulled.
BASE_IMAGES=(docker.io/library/debian:bookworm-slim docker.io/library/debian:bookworm)
BASE_TAR=$WORK/debian-bookworm-minbase.tar
NAME=headshard-smoke-$$
REPORT=$WORK/container-report.json

PASSED=0
log() { echo "test-container: $*"; }
ok() { PASSED=$((PASSED + 1)); log "ok: $*"; }
# podman run/stop/rm try to add or remove systemd timers for the HEALTHCHECK and log an error
# when there is no systemd (as here); the check itself is run by hand below. Drop that line.
pod() { podman "$@" 2> >(grep -v "unable to get systemd connection" >&2); }
die() { echo "test-container: FAIL: $*" >&2; echo "container: $PASSED passed, 1 failed"; exit 1; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(date +%s.%N)"; }

# ---- 1. tools
PACKAGES=(podman buildah runc conmon debootstrap uidmap slirp4netns fuse-overlayfs
          containernetworking-plugins iptables curl ca-certificates python3)
scripts/apt-ensure.sh "${PACKAGES[@]}" >"$WORK/apt.log" 2>&1 || { tail -20 "$WORK/apt.log" >&2; die "apt-get install failed"; }
[ "$(id -u)" -eq 0 ] || die "run as root (rootful podman: cgroupfs, CNI bridge, overlay storage)"
if ! .venv/bin/python -c "import openai, requests" >/dev/null 2>&1; then scripts/setup.sh; fi
[ -f "models/$MODEL_FILE" ] || scripts/fetch-model.sh
log "$(podman --version), $(buildah --version | cut -d' ' -f1-3), runc $(runc --version | head -1 | cut -d' ' -f3)"

# ---- 2. podman configuration, owned by this script
# Podman's default open-files limit (1048576) is above this machine's hard limit (20000), and
# runc then cannot start anything: ask for what the hard limits allow.
limit() { local h; h=$(ulimit -H "$1"); if [ "$h" = unlimited ] || [ "$h" -gt "$2" ]; then echo "$2"; else echo "$h"; fi; }
NOFILE=$(limit -n 16384)
NPROC=$(limit -u 8192)
write_config() {
  mkdir -p "$WORK/podman"
  cat >"$WORK/podman/containers.conf" <<EOF
# Written by scripts/test-container.sh.
[containers]
default_ulimits = ["nofile=$NOFILE:$NOFILE", "nproc=$NPROC:$NPROC"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$WORK/podman/events.log"
EOF
  cat >"$WORK/podman/storage.conf" <<EOF
# Written by scripts/test-container.sh.
[storage]
driver = "$DRIVER"
graphroot = "$WORK/storage-$DRIVER"
runroot = "$WORK/run-$DRIVER"
EOF
}
export CONTAINERS_CONF=$WORK/podman/containers.conf
export CONTAINERS_STORAGE_CONF=$WORK/podman/storage.conf
write_config
# Overlay works on this machine's ext4; where the kernel or filesystem refuses it, use vfs
# (slower, more disk) unless HEADSHARD_STORAGE_DRIVER asked for overlay.
if ! podman info >"$WORK/podman/info.txt" 2>&1 && [ "$DRIVER" = overlay ] && [ -z "${HEADSHARD_STORAGE_DRIVER:-}" ]; then
  log "podman with overlay storage failed: $(grep -m1 -i error "$WORK/podman/info.txt" || true); trying vfs"
  DRIVER=vfs
  write_config
fi
podman info >"$WORK/podman/info.txt" 2>&1 || { cat "$WORK/podman/info.txt" >&2; die "podman info failed"; }
log "storage driver $DRIVER, ulimits nofile=$NOFILE nproc=$NPROC"
# A free loopback port for the server, unless HEADSHARD_SMOKE_PORT names one.
[ -n "$PORT" ] || PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

cleanup() {
  local rc=$?
  if podman container exists "$NAME" 2>/dev/null; then
    [ $rc -ne 0 ] && { echo "--- container log (last 40 lines)"; podman logs --tail 40 "$NAME" 2>&1 || true; }
    podman rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
  fi
  if [ -n "${STREAM_PID:-}" ]; then kill "$STREAM_PID" 2>/dev/null || true; fi
  exit $rc
}
trap cleanup EXIT

# ---- 3. the base image, from debootstrap (cached as a tarball)
T_BASE=$(date +%s.%N)
if ! podman image exists "${BASE_IMAGES[0]}"; then
  if [ ! -s "$BASE_TAR" ]; then
    log "debootstrap --variant=minbase bookworm (cached in $BASE_TAR afterwards)"
    rootfs=$WORK/rootfs.tmp
    rm -rf "$rootfs" "$BASE_TAR.tmp"
    debootstrap --variant=minbase bookworm "$rootfs" "${HEADSHARD_DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$WORK/debootstrap.log" 2>&1 \
      || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    # Like Debian's official slim image: the same three suites, no docs or translations, no
    # package lists or caches in the layer.
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    echo 'APT::Keep-Downloaded-Packages "false";' >"$rootfs/etc/apt/apt.conf.d/docker-clean"
    find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
      "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
      "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/* "$rootfs"/root/.cache 2>/dev/null || true
    tar --numeric-owner --xattrs -C "$rootfs" -cf "$BASE_TAR.tmp" .
    mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf "$rootfs"
  fi
  log "podman import $BASE_TAR as ${BASE_IMAGES[*]}"
  podman import --quiet --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' "$BASE_TAR" "${BASE_IMAGES[0]}" >/dev/null
  for tag in "${BASE_IMAGES[@]:1}"; do podman tag "${BASE_IMAGES[0]}" "$tag"; done
fi
BASE_SECONDS=$(since "$T_BASE")

# ---- 4. build (no pull; docker format keeps HEALTHCHECK and STOPSIGNAL)
T_BUILD=$(date +%s.%N)
log "podman build -f docker/Dockerfile -t $IMAGE (CPU flavour; log: $WORK/build.log)"
# Buildah 1.28 skips the stage that `FROM build-${FLAVOUR}` names as unused, then cannot find
# it: build every stage, with the (unused) CUDA stages on the Debian image so nothing is pulled.
if ! podman build --pull=never --format docker --layers --network "$BUILD_NETWORK" \
       --skip-unused-stages=false --build-arg FLAVOUR=cpu \
       --build-arg CUDA_DEVEL_IMAGE="${BASE_IMAGES[0]}" --build-arg CUDA_RUNTIME_IMAGE="${BASE_IMAGES[0]}" \
       -f docker/Dockerfile -t "$IMAGE" . >"$WORK/build.log" 2>&1; then
  tail -40 "$WORK/build.log" >&2
  die "image build failed"
fi
BUILD_SECONDS=$(since "$T_BUILD")
IMAGE_BYTES=$(podman image inspect --format '{{.Size}}' "$IMAGE")
IMAGE_MB=$(python3 -c "print(round($IMAGE_BYTES / 1e6, 1))")
HEALTHCHECK=$(podman image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE")
USER_=$(podman image inspect --format '{{.Config.User}}' "$IMAGE")
{ [ "$HEALTHCHECK" != null ] && [ -n "$HEALTHCHECK" ]; } || die "the image has no HEALTHCHECK (built without --format docker?)"
{ [ -n "$USER_" ] && [ "$USER_" != root ] && [ "$USER_" != 0 ]; } || die "the image runs as root"
ok "image $IMAGE: $IMAGE_MB MB, user $USER_, HEALTHCHECK kept, built in ${BUILD_SECONDS}s"

# ---- 5. start and wait until healthy
podman rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
RUN_ARGS=(--name "$NAME" -d -v "$ROOT/models:/models:ro" -e HEADSHARD_GRACE_SECONDS="$GRACE")
if [ "$RUN_NETWORK" = host ]; then
  RUN_ARGS+=(--network host -e HEADSHARD_HOST=127.0.0.1 -e HEADSHARD_PORT="$PORT")
else
  RUN_ARGS+=(-p "127.0.0.1:$PORT:8080")
fi
BASE_URL=http://127.0.0.1:$PORT
T_START=$(date +%s.%N)
pod run "${RUN_ARGS[@]}" "$IMAGE" >/dev/null
# `podman healthcheck run` runs the image's own HEALTHCHECK command in the container (podman's
# periodic checks need systemd timers, which this machine lacks).
healthy=0
deadline=$(( $(date +%s) + 180 ))
while [ "$(date +%s)" -lt $deadline ]; do
  if podman healthcheck run "$NAME" >/dev/null 2>&1; then healthy=1; break; fi
  [ "$(podman inspect --format '{{.State.Running}}' "$NAME")" = true ] || die "the container exited while starting"
  sleep 0.2
done
[ $healthy = 1 ] || die "not healthy within 180 s"
HEALTHY_SECONDS=$(since "$T_START")
curl -sf "$BASE_URL/health" >/dev/null || die "GET $BASE_URL/health from the host failed"
ok "healthy ${HEALTHY_SECONDS}s after podman run"

# ---- 6. a completion (curl) and a streaming chat completion (openai client)
completion=$(curl -sf "$BASE_URL/v1/completions" -H 'Content-Type: application/json' \
  -d '{"prompt": "The capital of France is", "max_tokens": 12, "temperature": 0}') || die "POST /v1/completions failed"
COMPLETION_TEXT=$(python3 -c '
import json, sys
r = json.loads(sys.argv[1])
assert r["object"] == "text_completion" and r["usage"]["completion_tokens"] > 0, r
print(r["choices"][0]["text"])' "$completion") || die "bad completion: $completion"
ok "completion: The capital of France is|${COMPLETION_TEXT//$'\n'/ }|"

CHAT_TEXT=$(.venv/bin/python - "$BASE_URL" <<'PY'
import sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1] + "/v1", api_key="unused")
model = client.models.list().data[0].id
chunks, text, finish = 0, "", None
for chunk in client.chat.completions.create(model=model, max_tokens=24, temperature=0, stream=True,
                                            messages=[{"role": "user", "content": "Name three colors."}]):
    chunks += 1
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
assert chunks > 2 and text.strip() and finish in ("stop", "length"), (chunks, text, finish)
print(f"{chunks} chunks, finish {finish}: {text.strip()}".replace("\n", " "))
PY
) || die "streaming chat completion failed"
ok "streaming chat completion (openai client): $CHAT_TEXT"

# ---- 7. a short load test
log "load test: ${LOAD_SECONDS}s, at most 4 in flight, ~32 prompt and 16 output tokens"
.venv/bin/python scripts/loadtest.py --base-url "$BASE_URL" --duration "$LOAD_SECONDS" --num-prompts 32 \
  --max-concurrency 4 --random-input-len 32 --random-output-len 16 --seed 1 \
  --save-result --result-dir "$WORK" --result-filename loadtest.json >"$WORK/loadtest.log" 2>&1 \
  || { cat "$WORK/loadtest.log" >&2; die "load test failed"; }
sed -n '/Serving Benchmark Result/,$p' "$WORK/loadtest.log"
python3 - "$WORK/loadtest.json" <<'PY' || die "load test had failures"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["completed"] > 0 and r["failed"] == 0, (r["completed"], r["failed"], r["errors"])
PY
ok "load test: no failed requests"

# ---- 8. stop while a request is in flight: it must drain and exit 0 within the grace period
STREAM_OUT=$WORK/drain-stream.txt
: >"$STREAM_OUT"
curl -sN "$BASE_URL/v1/completions" -H 'Content-Type: application/json' \
  -d '{"prompt": "Once upon a time", "max_tokens": 64, "ignore_eos": true, "temperature": 0, "stream": true}' \
  >"$STREAM_OUT" 2>/dev/null &
STREAM_PID=$!
for _ in $(seq 1 100); do grep -q '^data: {' "$STREAM_OUT" && break; sleep 0.1; done
grep -q '^data: {' "$STREAM_OUT" || die "the in-flight request for the stop test did not start"
T_STOP=$(date +%s.%N)
pod stop -t $((GRACE + 15)) "$NAME" >/dev/null
STOP_SECONDS=$(since "$T_STOP")
EXIT_CODE=$(podman inspect --format '{{.State.ExitCode}}' "$NAME")
wait "$STREAM_PID" || true
STREAM_PID=""
DRAINED=false
grep -q '^data: \[DONE\]' "$STREAM_OUT" && ! grep -q '"error"' "$STREAM_OUT" && DRAINED=true
STOP_LOG=$(podman logs "$NAME" 2>&1 | grep -E "received|grace period|still running|stopped" | tr '\n' ' ' || true)
log "podman stop: ${STOP_SECONDS}s, exit code $EXIT_CODE, in-flight request completed: $DRAINED; log: $STOP_LOG"
pod rm "$NAME" >/dev/null

# ---- 9. report
TOTAL_SECONDS=$(since "$T_SCRIPT")
python3 - "$REPORT" "$WORK/loadtest.json" <<PY
import json, sys
lt = json.load(open(sys.argv[2]))
keys = ["duration", "completed", "failed", "total_input_tokens", "total_output_tokens", "request_throughput",
        "output_throughput", "mean_ttft_ms", "median_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "mean_itl_ms",
        "mean_e2el_ms", "p99_e2el_ms"]
report = {
    "image": "$IMAGE", "flavour": "cpu", "image_size_mb": $IMAGE_MB, "image_user": "$USER_",
    "base_image_seconds": $BASE_SECONDS, "build_seconds": $BUILD_SECONDS,
    "start_to_healthy_seconds": $HEALTHY_SECONDS,
    "stop_seconds": $STOP_SECONDS, "exit_code": int("$EXIT_CODE"), "grace_seconds": $GRACE,
    "in_flight_request_drained": "$DRAINED" == "true",
    "loadtest": {k: lt.get(k) for k in keys},
    "script_seconds": $TOTAL_SECONDS,
}
json.dump(report, open(sys.argv[1], "w"), indent=1)
rows = [("image", report["image"]), ("image size (MB)", report["image_size_mb"]),
        ("base image (s)", report["base_image_seconds"]), ("build (s)", report["build_seconds"]),
        ("start to healthy (s)", report["start_to_healthy_seconds"]), ("stop (s)", report["stop_seconds"]),
        ("exit code", report["exit_code"]), ("in-flight request drained", report["in_flight_request_drained"]),
        ("load: requests ok / failed", f"{lt['completed']} / {lt['failed']}"),
        ("load: requests/s", f"{lt['request_throughput']:.2f}"),
        ("load: output tokens/s", f"{lt['output_throughput']:.1f}"),
        ("load: median TTFT (ms)", f"{lt['median_ttft_ms']:.0f}"),
        ("load: mean TPOT (ms)", f"{lt['mean_tpot_ms']:.1f}"),
        ("load: p99 end-to-end (ms)", f"{lt['p99_e2el_ms']:.0f}"),
        ("script total (s)", report["script_seconds"])]
print("=" * 50)
for k, v in rows:
    print(f"{k:<30}{v}")
print("=" * 50)
PY
log "report: $REPORT"
[ "$EXIT_CODE" = 0 ] || die "the server exited with $EXIT_CODE on podman stop (137 = killed after the timeout)"
python3 -c "import sys; sys.exit(0 if float('$STOP_SECONDS') <= $GRACE + 5 else 1)" || die "stop took ${STOP_SECONDS}s, longer than the grace period"
[ "$DRAINED" = true ] || die "the request in flight at stop time did not complete (drain)"
ok "podman stop drained the request in flight and exited 0 in ${STOP_SECONDS}s"
echo "container: $PASSED passed, 0 failed"
