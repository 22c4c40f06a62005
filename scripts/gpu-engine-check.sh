#!/usr/bin/env bash
# The engine's checks on the GPU machine, from what scripts/gpu-package.sh staged under .device/
# (programs built elsewhere for sm_90 and their libraries, packed in pkg.tar.xz, and model files
# in parts, model-<name>-part00, -part01, ..., each carried by its own call, with
# model-<name>.sha256, the calls made back to back so that the machine still holds the parts
# earlier calls brought: a model is put together under models/, and its real-model tests run, in
# the call that brings its last part):
#   kernels   test_sharded_attention (every kernel against the CPU reference), and memcheck on its
#             small-shape tests
#   tests     test_gemm (the linear layers, exact), test_device_sampling (the GPU sampler against
#             the CPU Sampler), test_cuda_backend (GPU against the CPU backend, synthetic and real
#             models, and the engine on both)
#   memcheck  compute-sanitizer memcheck on a subset of test_device_sampling and test_cuda_backend
#   bench     with synthetic Llama-3.1-8B weights: bench-4k (decode at 4k, batch 1 and 8, linear
#             layers on the streaming kernel and on cuBLAS, decode attention on the copy-engine
#             and the cp.async kernel; then bench_gemv, the single-row linear layers alone),
#             bench-engine-4k (batch 1 at 4k through the Engine, steps in flight, dense and
#             strided: the rate `serve` gets), bench-32k (dense and strided plans at 32k),
#             bench-throughput (decode at 64 and 256 sequences, 1k prompt, 1k output), bench-engine
#             (the same through the Engine, steps in flight on and off, 512 tokens), bench-kv-step
#             (the host's KV bookkeeping per decode step) and kv-report (32k-token sequences in a
#             64 GiB KV budget, dense and strided).
#             ATTENTION_4K=sharded,simple adds the simple attention kernel to bench-4k; REPS_32K=1,
#             THROUGHPUT_GEN and THROUGHPUT_PLANS shorten the others; BATCH_32K (default 1,16) sets
#             bench-32k's batches (16 x 32k dense needs 64.5 GiB of KV beside 16 GB of weights: on
#             an 80 GB H100, BATCH_32K=1,4).
#             The engine logs where each 100 steps' time goes (HEADSHARD_CUDA_TIMING=1).
#   gemv-block  with POWER_LOG=1 (set by this stage): batch-1 decode at 4k through the Engine, the
#             block GEMV on the small matrices against the per-warp kernel, in turns (GEMV_BLOCK_RUNS,
#             G:MiB or 0 for none; default 0 2:64 0 2:64) (not in the default stages)
#   fold-norm with POWER_LOG=1 (set by this stage): batch-1 decode at 4k through the Engine, the
#             pre-norms applied by the projections that read them (HEADSHARD_CUDA_FOLD_NORM) and as
#             kernels, a process each (FOLD_NORM_RUNS of HEADSHARD_CUDA_FOLD_NORM values, default qkv 0
#             0 qkv) (not in the default stages)
#   fuse-act  with POWER_LOG=1 (set by this stage): batch-1 decode at 4k through the Engine, the
#             gate/up projection applying the activation (HEADSHARD_CUDA_FUSE_ACT) on and off, in two
#             processes of opposite orders (not in the default stages)
#   trace-4k  the timeline of batch-1 decode steps at 4k (synthetic Llama-3.1-8B; PLAN_4K, default
#             dense; TRACE_DRIVER runner or engine, default runner; TRACE_REPS, default 1): every
#             kernel's and copy's start and end on the GPU, recorded by the CUPTI injection library
#             of tests/bench/kernel_trace.cpp, summed per kernel (and per rep, with several) by
#             scripts/kernel_timeline.py (not in the default stages)
#   power     with POWER_LOG=1 (set by this stage): batch-1 decode at 4k through the Engine with the
#             streaming GEMV, then cuBLAS, then each streaming configuration of GEMV_CONFIGS (default
#             1:2:4 1:2 1:4 1:8 2:4) alone at the gate/up shape for several seconds, then the Engine's
#             configuration at each other shape of GEMV_SHAPES (MxK:calls), so that power_log.py
#             gives each its watts and clock (not in the default stages)
#   serve     `headshard serve --device cuda` on the default model under scripts/loadtest.py
#   build-stage  docker/build-stage.sh --flavour cuda: the container image's compile stage
#   scripts/gpu-engine-check.sh [STAGE...]   (none named: kernels tests memcheck bench serve)
# Logs and JSON go to $OUT (default build-cuda/engine-check-out). POWER_LOG=1 also logs the board's
# power and SM clock every 100 ms (nvidia-smi) and prints them per run at the end
# (scripts/power_log.py; power.json): at its 700 W limit an H200 lowers the SM clock, and the
# batch-1 decode with it (kernels/NOTES.md, session 31).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PKG=.device/pkg
OUT=${OUT:-$ROOT/build-cuda/engine-check-out}
mkdir -p "$OUT"
STAGES=("$@")
[ ${#STAGES[@]} -eq 0 ] && STAGES=(kernels tests memcheck bench serve)

# The programs were built in /work/main, whose path their tests use for goldens and models.
[ "$ROOT" = /work/main ] || { mkdir -p /work && ln -sfn "$ROOT" /work/main; }
[ -f .device/pkg.tar.xz ] && tar -C .device -xJf .device/pkg.tar.xz
export LD_LIBRARY_PATH=$ROOT/$PKG/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
MODEL=models/SmolLM2-135M-Instruct.Q4_1.gguf
for sum in .device/model-*.sha256; do
  [ -f "$sum" ] || continue
  parts=${sum%.sha256}-part
  file=models/$(awk '{print $2}' "$sum")
  [ -f "$file" ] && continue
  mkdir -p models && cat "$parts"* > "$file.parts"
  if [ "$(sha256sum "$file.parts" | cut -c1-64)" = "$(cut -c1-64 "$sum")" ]; then
    mv "$file.parts" "$file"
  else
    rm -f "$file.parts"
    echo "$file: parts so far: $(cd .device && echo "${parts#.device/}"*)"
  fi
done
for f in "$MODEL" models/gemma-3-270m-q4_k_m.gguf; do
  [ -f "$f" ] && echo "model: $f $(sha256sum "$f" | cut -c1-16)..." || echo "model: $f absent (its real-model tests skip)"
done
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader

M8B=synthetic:llama-3.1-8b
export HEADSHARD_CUDA_TIMING=1
STRIDED=s2:stride=8,local=16,sink=1
status=0
[[ " ${STAGES[*]} " =~ \ (power|gemv-block|fuse-act|fold-norm)\  ]] && POWER_LOG=1
if [ "${POWER_LOG:-0}" = 1 ]; then
  rm -f "$OUT/power_marks.tsv"
  nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_event_reasons.sw_power_cap --format=csv,noheader \
    -lms 100 >"$OUT/power.csv" 2>&1 &
  POWER_PID=$!
fi
mark() { [ -n "${POWER_PID:-}" ] && echo "$(date +%s.%N) $1 $2" >>"$OUT/power_marks.tsv"; }
run() {  # run NAME TIMEOUT command...: logs to $OUT/NAME.log, prints its tail
  local name=$1 limit=$2
  shift 2
  echo "=== $name: $*"
  local t0=$SECONDS
  mark start "$name"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  mark end "$name"
  tail -n "${TAIL:-25}" "$OUT/$name.log"
  echo "=== $name: exit $rc after $((SECONDS - t0)) s"
  [ $rc -eq 0 ] || status=1
}
# engine_4k NAME ARGS...: batch-1 decode at 4k through the Engine (steps in flight, what `serve`
# runs), run as NAME with a 200 s limit, bench_generate's ARGS added, its JSON in $OUT/NAME.json.
engine_4k() {
  local name=$1
  shift
  run "$name" 200 "$PKG/bench_generate" --model $M8B --device cuda --driver engine --prompt 0 --context 4096 \
    --batch 1 --gen 512 --reps 3 --json "$OUT/$name.json" "$@"
}

i=0
while [ $i -lt ${#STAGES[@]} ]; do  # a stage may append stages
  stage=${STAGES[$i]}
  i=$((i + 1))
  case "$stage" in
    kernels)
      TAIL=4 run test_sharded_attention 300 "$PKG/test_sharded_attention"
      TAIL=4 run memcheck_kernels 300 compute-sanitizer --tool memcheck --error-exitcode 1 "$PKG/test_sharded_attention" \
        --gtest_filter='ShardedAttentionSmall.*:ShardedAttentionDecode.*:ShardedAttentionWindow.*'
      ;;
    tests)
      TAIL=4 run test_gemm 120 "$PKG/test_gemm"
      TAIL=6 run test_device_sampling 120 "$PKG/test_device_sampling"
      grep -E "differ at a boundary" "$OUT/test_device_sampling.log"
      TAIL=12 run test_cuda_backend 400 "$PKG/test_cuda_backend" --gtest_output=json:"$OUT/test_cuda_backend.json"
      grep -E "^\[  FAILED|teacher-forced" "$OUT/test_cuda_backend.log"
      grep -E "worst relative" "$OUT/test_cuda_backend.log" | sort | uniq -c | sort -rn | head -20
      ;;
    memcheck)
      TAIL=4 run memcheck_sampling 300 compute-sanitizer --tool memcheck --error-exitcode 1 "$PKG/test_device_sampling" \
        --gtest_filter='*Ties*:*Draws*'
      run memcheck 400 compute-sanitizer --tool memcheck --error-exitcode 1 "$PKG/test_cuda_backend" \
        --gtest_filter='*llama_d128_s2_graphs:*llama_d128_streaming_nographs:*gemma3_d256_dense_graphs:*gemma3_d256_s2_nographs:*RejectsBad*'
      ;;
    bench) STAGES+=(bench-4k bench-engine-4k bench-32k bench-throughput bench-engine bench-kv-step kv-report) ;;
    bench-4k)
      run bench_decode_4k 400 "$PKG/bench_generate" --model $M8B --device cuda --attention "${ATTENTION_4K:-sharded}" \
        --gemv on,off --fuse on,off --decode tma --plan dense --prompt 4096 --context 4096 --batch 1,8 --gen 64 --reps 3 \
        --json "$OUT/bench_decode_4k.json"
      TAIL=45 run bench_gemv 60 "$PKG/bench_gemv" --json "$OUT/bench_gemv.json"
      ;;
    bench-engine-4k)
      engine_4k bench_engine_4k --plan "dense|$STRIDED"
      ;;
    bench-32k)
      run bench_32k 500 "$PKG/bench_generate" --model $M8B --device cuda --plan "dense|$STRIDED" \
        --prompt 32768 --context 32768 --batch "${BATCH_32K:-1,16}" --gen 32 --reps "${REPS_32K:-2}" --json "$OUT/bench_32k.json"
      ;;
    bench-throughput)
      run bench_throughput 500 "$PKG/bench_generate" --model $M8B --device cuda --plan "${THROUGHPUT_PLANS:-dense|$STRIDED}" \
        --prompt 0 --context 1024 --batch 64,256 --gen "${THROUGHPUT_GEN:-1024}" --reps 1 --json "$OUT/bench_throughput.json"
      grep -E "CUDA steps" "$OUT/bench_throughput.log" | sed -n '1~4p' | cut -c1-200
      ;;
    bench-engine)
      # The same throughput through the Engine, steps in flight on and off (ENGINE_GEN shortens it).
      run bench_engine 500 "$PKG/bench_generate" --model $M8B --device cuda --plan "${THROUGHPUT_PLANS:-dense|$STRIDED}" \
        --driver engine --overlap on,off --prompt 0 --context 1024 --batch 64,256 --gen "${ENGINE_GEN:-512}" --reps 1 \
        --json "$OUT/bench_engine.json"
      ;;
    bench-kv-step)
      TAIL=9 run bench_kv_step 120 "$PKG/bench_kv_step" --context 1024 --seqs 64,256 --json "$OUT/bench_kv_step.json"
      ;;
    power)
      for g in on off; do
        engine_4k "power_engine_gemv_$g" --plan dense --gemv $g
      done
      for c in ${GEMV_CONFIGS:-1:2:4 1:2 1:4 1:8 2:4}; do
        TAIL=3 run "power_gemv_${c//:/_}" 120 "$PKG/bench_gemv" --shapes 28672x4096 --configs "$c" --calls 20000 --reps 3 --no-cublas \
          --json "$OUT/power_gemv_${c//:/_}.json"
      done
      # The Engine's configuration (1:2:4) at the model's other shapes, calls enough for about 3 s a rep.
      for sc in ${GEMV_SHAPES:-6144x4096:250000 4096x4096:375000 4096x14336:110000 128256x4096:12000}; do
        TAIL=3 run "power_gemv_shape_${sc%%:*}" 120 "$PKG/bench_gemv" --shapes "${sc%%:*}" --configs 1:2:4 --calls "${sc##*:}" \
          --reps 3 --no-cublas --json "$OUT/power_gemv_shape_${sc%%:*}.json"
      done
      ;;
    gemv-block)
      # Batch-1 decode at 4k through the Engine with the block GEMV (HEADSHARD_CUDA_GEMV_BLOCK=G on
      # weight matrices of at most M MiB) and without it (0), in the order of GEMV_BLOCK_RUNS (G:M).
      n=0
      for gm in ${GEMV_BLOCK_RUNS:-0 2:64 0 2:64}; do
        n=$((n + 1))
        HEADSHARD_CUDA_GEMV_BLOCK=${gm%%:*} HEADSHARD_CUDA_GEMV_BLOCK_MIB=${gm#*:} TAIL=3 engine_4k "gemv_block_${gm/:/_}_$n" \
          --plan dense
      done
      ;;
    fold-norm)
      # Batch-1 decode at 4k through the Engine with the attention pre-norm's weights folded into the
      # QKV matrix, whose single-row kernel then applies the norm (HEADSHARD_CUDA_FOLD_NORM=qkv, the
      # default; 1: the MLP's into gate/up too), and with the norm kernels (0): the weights differ,
      # so one process each, in the order of FOLD_NORM_RUNS.
      n=0
      for f in ${FOLD_NORM_RUNS:-qkv 0 0 qkv}; do
        n=$((n + 1))
        HEADSHARD_CUDA_FOLD_NORM=$f TAIL=3 engine_4k "fold_norm_${f}_$n" --plan dense
      done
      ;;
    fuse-act)
      # Batch-1 decode at 4k through the Engine with the gate/up projection applying the activation
      # (on) and apart (off), in two processes of opposite orders: on a capped H200 each rep tends to
      # run faster than the one before, so compare the two at the same places.
      TAIL=6 engine_4k fuse_act_1 --plan dense --fuse-act on,off,on,off
      TAIL=6 engine_4k fuse_act_2 --plan dense --fuse-act off,on,off,on
      ;;
    trace-4k)
      CUDA_INJECTION64_PATH=$ROOT/$PKG/lib/libhs_kernel_trace.so HS_KERNEL_TRACE=$OUT/trace_4k.tsv \
        run trace_4k 300 "$PKG/bench_generate" --model $M8B --device cuda --plan "${PLAN_4K:-dense}" --prompt 0 \
        --driver "${TRACE_DRIVER:-runner}" --context 4096 --batch 1 --gen 64 --reps "${TRACE_REPS:-1}" --json "$OUT/trace_4k_bench.json"
      TAIL=45 run trace_4k_timeline 60 python3 scripts/kernel_timeline.py "$OUT/trace_4k.tsv" --json "$OUT/trace_4k.json"
      ;;
    kv-report)
      for p in dense "$STRIDED"; do
        TAIL=4 run "kv_report_${p%%:*}" 60 "$PKG/headshard" kv-report --model $M8B --plan "$p" --context 32768 --budget 64G
      done
      ;;
    serve)
      "$PKG/headshard" serve --device cuda --model "$MODEL" --port 8090 --max-seqs 64 --max-queue 1024 \
        >"$OUT/serve.log" 2>&1 &
      pid=$!
      for _ in $(seq 120); do curl -sf localhost:8090/health >/dev/null && break; sleep 0.5; done
      TAIL=40 run loadtest 200 python3 scripts/loadtest.py --port 8090 --max-concurrency 32 --random-input-len 128 \
        --random-output-len 128 --ignore-eos --num-prompts 400 --duration 60 --save-result --result-dir "$OUT" \
        --result-filename loadtest.json
      kill -TERM $pid
      wait $pid
      echo "=== serve: exit $? after SIGTERM"
      grep -E "attention|error" "$OUT/serve.log" | head -5
      ;;
    build-stage)
      # The container image's CUDA compile stage on this machine's toolchain. Where the machine
      # lacks the Debian -dev packages of the C++ libraries, scripts/gpu-package.sh --deps packs
      # them (headers, .so, CMake and pkg-config files) into deps.tar.xz.
      if [ -f .device/deps.tar.xz ]; then
        tar -C .device -xJf .device/deps.tar.xz
        D=$ROOT/.device/deps
        export CMAKE_PREFIX_PATH=$D/usr PKG_CONFIG_SYSROOT_DIR=$D
        export PKG_CONFIG_PATH=$D/usr/lib/x86_64-linux-gnu/pkgconfig:$D/usr/share/pkgconfig
        export LD_LIBRARY_PATH=$D/usr/lib/x86_64-linux-gnu:$LD_LIBRARY_PATH
      fi
      TAIL=12 run build_stage 500 docker/build-stage.sh --flavour cuda --skip-apt --build-dir build-container/cuda \
        --prefix build-container/cuda-install
      ;;
    *) echo "unknown stage $stage" >&2; exit 2 ;;
  esac
done
if [ -n "${POWER_PID:-}" ]; then
  kill "$POWER_PID"
  echo "=== power and SM clock per run (samples over 250 W, every 100 ms)"
  python3 scripts/power_log.py "$OUT/power.csv" "$OUT/power_marks.tsv" --json "$OUT/power.json"
fi
exit $status
