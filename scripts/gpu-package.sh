#!/usr/bin/env bash
# Prepares, on a build machine with the project's dependencies, what the GPU machine needs to run
# the engine's CUDA checks: that machine has the CUDA toolkit but not the C++ libraries this
# project links (spdlog, fmt, sentencepiece, cpp-httplib), so the programs are built here for
# sm_90 and travel with those libraries.
#   scripts/gpu-package.sh            -> .device/pkg (binaries + libraries; git-ignored), and the
#                                        same packed as .device/pkg.tar.xz (about 17 MiB) to carry
#   scripts/gpu-package.sh --model [FILE...]
#                                     -> also, for each model file (default: the default model's),
#                                        .device/model-<name>-part00, -part01, ...: the file in parts of
#                                        PART_MIB (default 32) MiB, one to a call (a device call
#                                        carries 64 MiB at most, the package 17 of them), and
#                                        .device/model-<name>.sha256 (checksum and file name); <name>
#                                        is the file's name up to its first '.' or '-'
#   scripts/gpu-package.sh --deps     -> also .device/deps.tar.xz: this machine's Debian packages of
#                                        those libraries (headers, .so, CMake and pkg-config files),
#                                        for building from source there (gpu-engine-check.sh build-stage)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD_DIR:-build-cuda}
cmake -S . -B "$B" -DHEADSHARD_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90a -DCMAKE_BUILD_TYPE=Release >/dev/null
BINS=(headshard test_cuda_backend test_device_sampling test_gemm test_sharded_attention bench_generate bench_kv_step
      bench_gemv)
cmake --build "$B" -j"$(nproc)" --target "${BINS[@]}" hs_kernel_trace
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
rm -rf .device/pkg && mkdir -p .device/pkg/lib
for b in "${BINS[@]}"; do cp "$B/$b" .device/pkg/; done
cp "$B/libhs_kernel_trace.so" .device/pkg/lib/  # CUDA_INJECTION64_PATH=.device/pkg/lib/libhs_kernel_trace.so
# Every shared library they load except glibc's and the CUDA libraries the GPU machine has.
for b in "${BINS[@]}" lib/libhs_kernel_trace.so; do
  ldd ".device/pkg/$b" | awk '/=> \// {print $3}' | grep -v -E 'libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libgcc_s|libstdc\+\+|libcublas' \
    | xargs -r -I{} cp -L {} .device/pkg/lib/
done
for b in "${BINS[@]}"; do strip ".device/pkg/$b"; done
tar -C .device -cJf .device/pkg.tar.xz pkg
if [ "${1:-}" = "--deps" ]; then
  rm -rf .device/deps && mkdir -p .device/deps
  for p in nlohmann-json3-dev libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 libsentencepiece-dev libsentencepiece0 \
           libcpp-httplib-dev libcpp-httplib0.11 libbrotli1 libbrotli-dev libssl-dev libssl3 zlib1g-dev zlib1g; do
    dpkg -L "$p" | while read -r f; do
      if [ -f "$f" ] || [ -L "$f" ]; then mkdir -p ".device/deps$(dirname "$f")" && cp -a "$f" ".device/deps$f"; fi
    done
  done
  rm -rf .device/deps/usr/share/doc
  tar -C .device -cJf .device/deps.tar.xz deps
fi
if [ "${1:-}" = "--model" ]; then
  shift
  [ $# -eq 0 ] && set -- models/SmolLM2-135M-Instruct.Q4_1.gguf
  for f in "$@"; do
    name=$(basename "$f"); name=${name%%[.-]*}
    rm -f ".device/model-$name-part"* ".device/model-$name.sha256"
    split -b "${PART_MIB:-32}M" -d -a 2 "$f" ".device/model-$name-part"
    echo "$(sha256sum "$f" | cut -c1-64)  $(basename "$f")" > ".device/model-$name.sha256"
  done
fi
du -sh .device/*
