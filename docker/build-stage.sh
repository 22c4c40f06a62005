#!/usr/bin/env bash
# The compile stage of docker/Dockerfile, also runnable on any Debian 12 / Ubuntu 24.04 machine
# (or a CUDA devel image) outside a container:
#
#   docker/build-stage.sh [--flavour cpu|cuda] [--skip-apt] [--deps-only] [--src DIR]
#                         [--build-dir DIR] [--prefix DIR] [--cuda-arch 90a] [--server on|auto]
#                         [--jobs N]
#
# Installs the build dependencies with apt-get (unless --skip-apt, for a machine that has them),
# configures headshard with only what the server needs (-DHEADSHARD_TESTS=OFF, CUDA on or off by
# flavour), builds the `headshard` target and installs it under --prefix:
#   PREFIX/bin/headshard                        the server (stripped)
#   PREFIX/share/headshard/configs/             shard plans and model presets (HEADSHARD_CONFIGS_DIR)
#   PREFIX/share/headshard/runtime-packages.txt the packages of the shared libraries it links
#                                               (from ldd and dpkg -S), for the runtime stage
# Example on a GPU machine whose toolchain is already set up:
#   docker/build-stage.sh --flavour cuda --skip-apt --build-dir build-container/cuda \
#       --prefix build-container/cuda-install
set -euo pipefail

FLAVOUR=cpu
SKIP_APT=${HEADSHARD_SKIP_APT:-0}
DEPS_ONLY=0
SRC=""
BUILD_DIR=""
PREFIX=""
CUDA_ARCH=90a
SERVER=on
JOBS=$(nproc)

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --flavour|--flavor) FLAVOUR=$2; shift 2 ;;
    --skip-apt) SKIP_APT=1; shift ;;
    --deps-only) DEPS_ONLY=1; shift ;;
    --src) SRC=$2; shift 2 ;;
    --build-dir) BUILD_DIR=$2; shift 2 ;;
    --prefix) PREFIX=$2; shift 2 ;;
    --cuda-arch) CUDA_ARCH=$2; shift 2 ;;
    --server) SERVER=$2; shift 2 ;;
    --jobs|-j) JOBS=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build-stage: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done
case "$FLAVOUR" in cpu|cuda) ;; *) echo "build-stage: --flavour must be cpu or cuda, got '$FLAVOUR'" >&2; exit 2 ;; esac

SRC=${SRC:-$(cd "$(dirname "$0")/.." && pwd)}
SRC=$(cd "$SRC" && pwd)
BUILD_DIR=${BUILD_DIR:-$SRC/build-container/$FLAVOUR}
PREFIX=${PREFIX:-$SRC/build-container/$FLAVOUR-install}
log() { echo "build-stage: $*"; }

# ---- dependencies: the libraries headshard links and the tools to build it (CUDA comes with
# the devel image or the machine's toolkit, never from here).
PACKAGES=(build-essential cmake pkg-config
          nlohmann-json3-dev libspdlog-dev libfmt-dev libsentencepiece-dev libcpp-httplib-dev)
if [ "$SKIP_APT" != 1 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  log "apt-get install ${PACKAGES[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
else
  log "skipping apt-get (--skip-apt)"
fi
if [ "$DEPS_ONLY" = 1 ]; then
  log "dependencies done (--deps-only)"
  exit 0
fi

# ---- configure and build the server only.
CMAKE_ARGS=(-DCMAKE_BUILD_TYPE=Release -DHEADSHARD_TESTS=OFF -DHEADSHARD_SANITIZE=OFF -DHEADSHARD_SERVER="$SERVER")
if [ "$FLAVOUR" = cuda ]; then
  if ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then export PATH=/usr/local/cuda/bin:$PATH; fi
  command -v nvcc >/dev/null || { echo "build-stage: --flavour cuda needs nvcc (a CUDA devel image or toolkit)" >&2; exit 1; }
  log "$(nvcc --version | tail -1)"
  CMAKE_ARGS+=(-DHEADSHARD_CUDA=on -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH")
else
  CMAKE_ARGS+=(-DHEADSHARD_CUDA=off)
fi
log "cmake -S $SRC -B $BUILD_DIR ${CMAKE_ARGS[*]}"
mkdir -p "$BUILD_DIR"
CONFIGURE_LOG=$BUILD_DIR/configure.log
cmake -S "$SRC" -B "$BUILD_DIR" "${CMAKE_ARGS[@]}" >"$CONFIGURE_LOG" 2>&1 || { cat "$CONFIGURE_LOG" >&2; exit 1; }
grep -E "headshard: (HTTP server|CUDA backend)" "$CONFIGURE_LOG" || true
if [ "$SERVER" = on ] && ! grep -q "headshard: HTTP server 1" "$CONFIGURE_LOG"; then
  echo "build-stage: the HTTP server is not part of this build" >&2; exit 1
fi
if [ "$FLAVOUR" = cuda ] && ! grep -q "headshard: CUDA backend ON" "$CONFIGURE_LOG"; then
  echo "build-stage: the CUDA backend is not part of this build" >&2; exit 1
fi
start=$(date +%s)
cmake --build "$BUILD_DIR" --target headshard -j"$JOBS"
log "built headshard in $(( $(date +%s) - start )) s"

# ---- install: the binary, the configs it reads at run time, and its runtime packages.
mkdir -p "$PREFIX/bin" "$PREFIX/share/headshard"
install -m 0755 "$BUILD_DIR/headshard" "$PREFIX/bin/headshard"
strip --strip-unneeded "$PREFIX/bin/headshard" 2>/dev/null || true
rm -rf "$PREFIX/share/headshard/configs"
cp -r "$SRC/configs" "$PREFIX/share/headshard/configs"

if ldd "$PREFIX/bin/headshard" | grep -q "not found"; then
  ldd "$PREFIX/bin/headshard" >&2
  echo "build-stage: unresolved shared libraries" >&2; exit 1
fi
# The package of each shared library (directly linked or pulled in); the runtime stage
# installs those it lacks. Libraries outside any package (a toolkit unpacked by hand) are named.
: >"$PREFIX/share/headshard/runtime-packages.txt"
ldd "$PREFIX/bin/headshard" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | while read -r lib; do
  pkg=""
  # ldd may name /lib/... where dpkg recorded /usr/lib/... (merged /usr), or a symlink.
  for path in "$lib" "/usr$lib" "$(readlink -f "$lib")"; do
    pkg=$(dpkg -S "$path" 2>/dev/null | head -1 || true)
    [ -n "$pkg" ] && break
  done
  if [ -n "$pkg" ]; then
    pkg=${pkg%%:*}
    echo "${pkg%%,*}" >>"$PREFIX/share/headshard/runtime-packages.txt"
  else
    echo "build-stage: note: $lib belongs to no package" >&2
  fi
done
sort -u -o "$PREFIX/share/headshard/runtime-packages.txt" "$PREFIX/share/headshard/runtime-packages.txt"
log "runtime packages: $(tr '\n' ' ' <"$PREFIX/share/headshard/runtime-packages.txt")"
"$PREFIX/bin/headshard" serve --help >/dev/null
log "installed $PREFIX/bin/headshard ($(du -h "$PREFIX/bin/headshard" | cut -f1))"
