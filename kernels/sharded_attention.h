// Sharded paged attention on the GPU: the launch API (no engine types).
//
// The KV pool is bf16 with the CPU reference's layout (src/backend/cpu/paged_attention.h): page p
// starts at pool + p * 2*B*D elements and holds the K rows of its B slots ([B][D]) followed by the
// V rows ([B][D]); slot s of a page is token position (block * B + s).
//
// Page lists: list l = (chunk * n_layers + layer) * n_kv_heads + kv_head holds entries
// [indptr[l], list_end[l]) of blocks and pages, blocks ascending, with pages[e] the page of
// blocks[e]; without list_end, lists are KvStepMeta's flat ones and list l ends at indptr[l + 1].
// A list may hold blocks some queries no longer attend; the kernels apply the HCS rule
//     s <= t  and  (j < sink  or  i - j < local  or  (stride > 0 and (j + offset) % stride == 0))
// (t, s token positions, i = t / B, j = s / B) and the model window (window == 0 or t - s < window)
// token by token, and never read a slot that no query of theirs may see (such slots may hold
// anything, NaN included).
//
// Queries and outputs: bf16 rows [token][n_q_heads * D] (row strides in elements; 0 means
// n_q_heads * D); query head h uses KV head h / group. Chunk c's tokens are rows
// [chunk_tok0[c], chunk_tok0[c+1]) at positions chunk_pos0[c] + i. Softmax in fp32, bf16 out.
//
// Plan / run (as FlashInfer): plan_* runs on the host once per step from the host copy of the
// lists and returns work items for every layer; upload them once, then each layer's launch only
// reads them. Decode splits long lists across thread blocks (balanced by pages, so dense and
// sharded heads share a launch evenly) and merges the splits in the same launch.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

// Members the kernels and the host both call.
#if defined(__CUDACC__)
#define HS_HOST_DEVICE __host__ __device__
#else
#define HS_HOST_DEVICE
#endif

namespace hs::kernels {

// One KV head's shard (HeadShard's fields).
struct ShardParams {
  int32_t sink = 0, local = 1, stride = 1, offset = 0;
};

// What every attention launch reads. Device pointers unless said otherwise.
struct PagedAttentionArgs {
  const void* q = nullptr;    // bf16 [token][n_q_heads * head_dim]
  int64_t q_row_stride = 0;   // elements; 0: n_q_heads * head_dim
  void* out = nullptr;        // bf16, same shape as q
  int64_t out_row_stride = 0;
  const void* kv_pool = nullptr;  // bf16 pages, see above
  int64_t kv_pool_pages = 0;      // pages in the pool (0: unknown; decode then uses its cp.async kernel)
  const int32_t* indptr = nullptr;    // where each list begins
  const int32_t* list_end = nullptr;  // where each list ends (null: at the next list's indptr)
  const int32_t* blocks = nullptr;
  const int32_t* pages = nullptr;
  const int32_t* chunk_pos0 = nullptr;  // [n_chunks]
  const int32_t* chunk_tok0 = nullptr;  // [n_chunks + 1]
  const ShardParams* shards = nullptr;  // [n_kv_heads]: this layer's shards
  int32_t n_layers = 1, layer = 0, n_kv_heads = 1;
  int32_t group = 1;       // query heads per KV head (1..16 for decode)
  int32_t head_dim = 128;  // 64, 128 or 256
  int32_t block_size = 64; // B: a power of two, 16..128
  int32_t window = 0;      // model sliding window (0: none)
  float scale = 0.0f;      // softmax scale (usually 1/sqrt(head_dim))

  // The row strides (elements), 0 resolved.
  HS_HOST_DEVICE int64_t q_stride() const { return q_row_stride ? q_row_stride : packed_row(); }
  HS_HOST_DEVICE int64_t out_stride() const { return out_row_stride ? out_row_stride : packed_row(); }
  HS_HOST_DEVICE int64_t packed_row() const { return int64_t(n_kv_heads) * group * head_dim; }
};

// ---- decode: one new token per chunk -------------------------------------------------------
struct DecodeWorkItem {
  int32_t chunk, kv_head;
  int32_t e_begin, e_end;  // entries of the list (absolute indices into blocks/pages)
  int32_t split, n_splits; // this item's part of its (chunk, kv_head) list
  int32_t partial0;        // first workspace slot of the (chunk, kv_head) group (when n_splits > 1)
  int32_t group_id;        // merge counter of the group
};

struct DecodePlan {
  std::vector<DecodeWorkItem> items;  // layer l: [layer_begin[l], layer_begin[l+1])
  std::vector<int32_t> layer_begin;   // n_layers + 1
  int32_t max_partials = 0;           // workspace slots any one layer needs
  int32_t n_groups = 0;               // merge counters (n_decode_chunks * n_kv_heads)
  // Planned for lone_slots: every layer's grid runs one block per multiprocessor, however many
  // items it has (DecodeParams::lone).
  bool lone = false;
  // Not lone, and its grids run the two-stage instance, two blocks per multiprocessor
  // (DecodeParams::two_stage; see DecodePlanOptions::two_stage_min_item_tokens).
  bool two_stage = false;
};

struct DecodePlanOptions {
  int32_t slots = 264;             // thread blocks resident at once (decode_slots())
  // Grids of at most this many blocks run one block per multiprocessor, each streaming about as
  // fast as two shared blocks (decode_lone_slots(); 0: never).
  int32_t lone_slots = 0;
  int32_t min_split_tokens = 256;  // no split shorter than this (rounded to whole pages)
  // In a grid of at most lone_slots blocks, splits may be as short as this instead: at batch 1 and
  // 4k, strided (eight lists of about 23 pages), 96 items of 2 pages ran 0.8% more tokens/s
  // through the Engine than 48 of 4 (kernels/NOTES.md, session 26). Shared grids of such short
  // items were slower (dense, 264 items of 2 pages: 3.4% fewer tokens/s than 104 lone items of 5).
  int32_t min_lone_split_tokens = 128;
  // Splits shorter than this (rounded to whole pages) only where the live items fit one wave of the
  // slots: a plan of more items cuts lists into splits of at most P entries with P at least this, so
  // a list of fewer pages stays whole and one of up to twice as many is halved at most. On the H200
  // (kernels/NOTES.md, session 42) every plan this changed (12 to 40 sequences at 1k to 8k tokens,
  // dense and strided) took 3-19% less time than its splits of a few pages in two to four waves,
  // each of which paid a block's start; the plans it left alone took the same time.
  int32_t min_wave_split_tokens = 1024;
  int32_t max_splits = 256;        // per list
  // Grids of more than one and at most three waves whose lists were split, or whose last wave is
  // less than 90% full: the first wave's items give up a growing share of their entries, up to this
  // fraction, to items of their own, so that its blocks end at spread times and the last waves fill
  // up (0: never). On the H200 (kernels/NOTES.md, session 37) the decode of 24, 48 and 56 sequences
  // at 4k took 1.9-3.4% less time dense, and 2.4-4.4% strided at 56 x 4k, 24 x 32k and 48 x 32k;
  // whole lists in a nearly full last wave (64 sequences) took up to 0.4% more, so they are left alone.
  double stagger = 0.5;
  // Lists of at least lone_min_tokens on average in more than one wave of the shared grid, which a
  // plan for lone_slots cuts into more than one wave of items of at least lone_min_item_tokens on
  // average: that plan is taken, and every grid runs lone, whatever its size (DecodePlan::lone).
  // Empty lists (the engine's padding chunks) count nowhere in the plan's costs, waves and averages,
  // so that a padded batch is planned as the batch alone (session 39). Long items stream faster
  // one block per multiprocessor, where two shared blocks split some multiprocessors' bandwidth
  // unevenly; short ones lose each block's start, which no second block covers (kernels/NOTES.md,
  // session 38, dense: 24 to 128 sequences at 32k and 48 at 128k took 0.3-1.7% less time, 64 x 32k
  // 1.1%, 256 x 32k about the same; 20 sequences at 32k, whose lone plan has 1120 items of 73
  // pages, took 2.8% more, and 40 (1920 items of 85 and 86) 0.6% more).
  int32_t lone_min_tokens = 32768, lone_min_item_tokens = 8192;
  // A plan that is not lone, of more than one and at most two_stage_max_waves waves of the shared
  // slots, of items averaging at least two_stage_min_item_tokens, runs every grid on the two-stage
  // instance (DecodePlan::two_stage; head_dim 128, else ignored; with pages of 64 only under decode
  // variants 4 and 10, as the 128-token-tile kernel runs those grids otherwise). On the H200 such
  // items streamed faster with two stages a block than with three, or than three blocks a
  // multiprocessor (80 sequences at 4k, dense, 5.5% less time; 128 at 4k 1.2%); short items (strided
  // lists at 4k) and grids of more waves (256 sequences at 4k) were slower (kernels/NOTES.md,
  // session 41).
  int32_t two_stage_min_item_tokens = 1024, two_stage_max_waves = 5;
  // Runs fn(begin, end) over [0, n) in chunks of `grain`, possibly on several threads: the
  // planner lays out the layers' items with it. Null: one call on the calling thread.
  std::function<void(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn)> parallel_for;
};

// Thread blocks of the decode kernel resident on the current device at once for head_dim.
int32_t decode_slots(int32_t head_dim);
// The largest decode grid that runs one block per multiprocessor (the multiprocessor count), or 0.
int32_t decode_lone_slots(int32_t head_dim);

// Plans the decode of `decode_chunks` (chunk ids whose lists are read; one query token each) for
// layers [0, n_layers) from the host copies of indptr and list_end (null: flat lists). Work items
// are ordered largest first.
void plan_decode(const int32_t* indptr_host, const int32_t* list_end_host, const int32_t* decode_chunks,
                 int32_t n_decode_chunks, int32_t n_layers, int32_t n_kv_heads, int32_t block_size,
                 const DecodePlanOptions& options, DecodePlan& plan);

// Workspace for one decode launch: partial outputs and LSEs, then merge counters. The counters
// must be zero before the first launch (cudaMemset once); launches leave them zero.
size_t decode_workspace_bytes(const DecodePlan& plan, int32_t group, int32_t head_dim);

struct DecodeParams {
  PagedAttentionArgs a;
  const DecodeWorkItem* items = nullptr;  // device: this layer's items
  int32_t n_items = 0;
  // Optional (device, [2]): when set, the items are items[item_range[0] .. item_range[1]) and
  // n_items is only the grid size, at least their count (blocks past the end do nothing). A
  // CUDA graph captures the launch once and each step rewrites the range (e.g. a plan's
  // layer_begin + layer on the device).
  const int32_t* item_range = nullptr;
  void* workspace = nullptr;  // decode_workspace_bytes(plan, ...), counters zeroed once
  int32_t max_partials = 0;   // plan.max_partials
  bool lone = false;          // plan.lone: one block per multiprocessor, whatever n_items
  bool two_stage = false;     // plan.two_stage: grids that are not lone run the two-stage instance
};

cudaError_t decode_attention(const DecodeParams& p, cudaStream_t stream);

// ---- prefill / chunked prefill --------------------------------------------------------------
// A tile of at most prefill_block_m(head_dim) query rows of a chunk. It carries the tile's own
// position, token row and row count (from the host copies of chunk_pos0 / chunk_tok0), so that a
// block's first loads do not wait on the item to read the chunk's.
struct alignas(16) PrefillWorkItem {
  int32_t chunk;
  int32_t pos;     // position of the tile's first query
  int32_t tok;     // its token row
  int32_t n_rows;  // query rows in the tile
};

// Query rows per thread block for head_dim.
int32_t prefill_block_m(int32_t head_dim);

// Tiles of the chunks `chunk_ids` (host copies of chunk_pos0 / chunk_tok0), largest work first.
void plan_prefill(const int32_t* chunk_ids, int32_t n_ids, const int32_t* chunk_pos0_host,
                  const int32_t* chunk_tok0_host, int32_t head_dim, std::vector<PrefillWorkItem>& items);

struct PrefillParams {
  PagedAttentionArgs a;
  const PrefillWorkItem* items = nullptr;  // device
  int32_t n_items = 0;
  // The warpgroup-MMA kernel's grid order: groups of this many KV heads (a divisor of n_kv_heads;
  // anything else counts as 1), then the items, then the group's query heads. 1 keeps the blocks in
  // flight on one KV head's keys, which long contexts need to stay in the L2; n_kv_heads keeps the
  // items' largest-first order across the grid. Session 34 timed both and the ones between
  // (kernels/NOTES.md): no rule by the lists' bytes beat 1 across chunk and context lengths.
  int32_t kv_heads_together = 1;
};

// Every query row of every item, for every query head (a block per query head, or two, and item).
cudaError_t prefill_attention(const PrefillParams& p, cudaStream_t stream);

// ---- K/V write ------------------------------------------------------------------------------
// Row i of k and v (bf16 [token][n_kv_heads * D], strides in elements; 0 means n_kv_heads * D),
// head h, goes to write_slots[h * n_tokens + i] = page * B + slot (this layer's slice of
// KvStepMeta::write_slots).
struct KvWriteParams {
  const void* k = nullptr;
  const void* v = nullptr;
  int64_t k_row_stride = 0, v_row_stride = 0;
  void* kv_pool = nullptr;
  const int32_t* write_slots = nullptr;
  int32_t n_tokens = 0, n_kv_heads = 1, head_dim = 128, block_size = 64;
};

cudaError_t write_kv(const KvWriteParams& p, cudaStream_t stream);

// ---- tuning ---------------------------------------------------------------------------------
// Benchmark knob (not thread-safe; process-wide): kernel variants. Decode (every head_dim) 0: pages
// streamed by the copy engine (bulk tensor copies, needs kv_pool_pages; default); 1: cp.async by
// every thread; 2: as 0 but two blocks per multiprocessor for every grid; 3: as 0 but three blocks
// per multiprocessor for every grid that is not lone (head_dim 128; elsewhere as 0); 4: as 0 but a
// lone grid copies every item's rows in address order, not only long items' (head_dim 128 and
// 256); 5: as 0, but plan_decode does not stagger (DecodePlanOptions::stagger); 6: as 0, but
// plan_decode makes no lone plans of long lists (DecodePlanOptions::lone_min_tokens); 7: as 0, but
// plan_decode makes no two-stage plans (DecodePlanOptions::two_stage_min_item_tokens); 8: as 0, but
// plan_decode cuts short splits in plans of more than one wave too (DecodePlanOptions::
// min_wave_split_tokens); 9: every grid at head_dim 128 and pages of 64 on the 128-token-tile kernel
// (cp.async; elsewhere as 2); 10: as 0, but the copy engine's instances where 0 runs the
// 128-token-tile kernel; 11: as 0, but plan_decode's estimate of a grid of more than four waves
// counts whole waves of the largest item (not the balanced bound and half an item). Variants 0, 5
// to 8 and 11 run every grid that is not lone on the 128-token-tile kernel at head_dim 128 and pages
// of 64; variants 4 and 10 keep the copy engine there.
// Prefill (head_dim 128) 0: warpgroup MMA (wgmma) with pages streamed by the copy engine
// where it runs (default; else as 2), 1: mma.sync with 32 keys per tile, 2: mma.sync with 64. Plan
// decode after changing it (decode_slots() and decode_lone_slots() depend on it).
void set_kernel_variant(int32_t decode, int32_t prefill);

// Whether this build and GPU run the warpgroup-MMA prefill kernel (device code built for sm_90a,
// a GPU of compute capability 9).
bool wgmma_prefill_available();

// Process-wide (not thread-safe): whether the decode kernels here and the model's kernels
// (src/backend/cuda) are launched as programmatic dependent launches (pdl.cuh), so that each is
// scheduled while the one before it still runs. Off by default; the CUDA backend turns it on.
// The copy-engine decode kernel then reads its items, lists and every page but that of each
// query's own block before the kernel before it has finished: that kernel may write the queries
// and the new tokens' K/V (as the CUDA backend's qkv_prep does), nothing else the decode reads.
void set_programmatic_launch(bool on);
bool programmatic_launch();

}  // namespace hs::kernels
