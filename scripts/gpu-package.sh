#!/usr/bin/env bash
# Prepares, on a build machine with the project's dependencies, what the GPU machine needs to run
# the engine's CUDA checks: that machine has the CUDA toolkit but not the C++ libraries this
# project links (spdlog, fmt, sentencepiece, cpp-httplib), so the programs are built here for
# sm_90 and travel with those libraries.
#   scripts/gpu-package.sh            -> .device/pkg (binaries + libraries; git-ignored)
#   scripts/gpu-package.sh --model    -> also .device/model-a and .device/model-b: the default
#                                        model in two halves (a device call carries 64 MiB at most)
set -euo pipefail
cd "$(dirname "$0")/.."
B=${BUILD_DIR:-build-cuda}
cmake -S . -B "$B" -DHEADSHARD_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$B" -j"$(nproc)" --target headshard test_cuda_backend bench_generate
grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >> .git/info/exclude
rm -rf .device/pkg && mkdir -p .device/pkg/lib
cp "$B/headshard" "$B/test_cuda_backend" "$B/bench_generate" .device/pkg/
# Every shared library they load except glibc's and the CUDA libraries the GPU machine has.
for bin in .device/pkg/headshard .device/pkg/test_cuda_backend .device/pkg/bench_generate; do
  ldd "$bin" | awk '/=> \// {print $3}' | grep -v -E 'libc\.so|libm\.so|libpthread|libdl\.so|librt\.so|libgcc_s|libstdc\+\+|libcublas' \
    | xargs -r -I{} cp -L {} .device/pkg/lib/
done
if [ "${1:-}" = "--model" ]; then
  f=models/SmolLM2-135M-Instruct.Q4_1.gguf
  half=$(( ($(stat -c %s "$f") + 1) / 2 ))
  head -c "$half" "$f" > .device/model-a
  tail -c +"$((half + 1))" "$f" > .device/model-b
fi
du -sh .device/*
