// A CUDA injection library that records when every kernel, copy and memset ran on the GPU (CUPTI's activity
// records, which profilers read; Nsight Systems does not run on the GPU machine, CUPTI does:
// PyTorch's profiler works there). Kernels launched from CUDA graphs are recorded too, so a decode
// step's timeline (each kernel's start and end, the gaps and overlaps between them) can be read
// without changing the program:
//   CUDA_INJECTION64_PATH=$PWD/libhs_kernel_trace.so HS_KERNEL_TRACE=trace.tsv bench_generate ...
// At exit it writes one tab-separated line per kernel: start and end (ns, the GPU's timestamps),
// stream, graph node (0 outside graphs), grid, block, registers, shared memory and the demangled
// name; copies and memsets as lines named "[memcpy HtoD]" (the direction) or "[memset]", their
// bytes in the grid column. scripts/kernel_timeline.py turns it into a table.
// HS_KERNEL_TRACE_MAX caps the records kept (default 4,000,000).
#include <cupti.h>
#include <cxxabi.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

namespace {

struct Record {
  uint64_t start, end, graph_node;
  uint32_t stream;
  int32_t grid[3], block;
  uint16_t registers;
  int32_t shared;
  std::string name;
  uint64_t bytes;  // copies and memsets (their grid is written as the bytes)
};

const char* copy_kind(uint8_t kind) {
  switch (kind) {
    case CUPTI_ACTIVITY_MEMCPY_KIND_HTOD: return "[memcpy HtoD]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOH: return "[memcpy DtoH]";
    case CUPTI_ACTIVITY_MEMCPY_KIND_DTOD: return "[memcpy DtoD]";
    default: return "[memcpy]";
  }
}

std::mutex g_mutex;
std::vector<Record> g_records;
size_t g_max = 4000000, g_dropped = 0;

void CUPTIAPI buffer_requested(uint8_t** buffer, size_t* size, size_t* max_records) {
  constexpr size_t kBytes = size_t{8} << 20;
  *buffer = static_cast<uint8_t*>(std::aligned_alloc(8, kBytes));
  *size = *buffer ? kBytes : 0;
  *max_records = 0;  // as many as fit
}

void CUPTIAPI buffer_completed(CUcontext, uint32_t, uint8_t* buffer, size_t, size_t valid) {
  CUpti_Activity* r = nullptr;
  std::lock_guard<std::mutex> lock(g_mutex);
  while (cuptiActivityGetNextRecord(buffer, valid, &r) == CUPTI_SUCCESS) {
    if (r->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL && r->kind != CUPTI_ACTIVITY_KIND_MEMCPY &&
        r->kind != CUPTI_ACTIVITY_KIND_MEMSET)
      continue;
    if (g_records.size() >= g_max) {
      ++g_dropped;
      continue;
    }
    if (r->kind == CUPTI_ACTIVITY_KIND_MEMCPY) {
      const auto* c = reinterpret_cast<const CUpti_ActivityMemcpy6*>(r);
      g_records.push_back(Record{c->start, c->end, c->graphNodeId, c->streamId, {}, 0, 0, 0, copy_kind(c->copyKind), c->bytes});
    } else if (r->kind == CUPTI_ACTIVITY_KIND_MEMSET) {
      const auto* m = reinterpret_cast<const CUpti_ActivityMemset4*>(r);
      g_records.push_back(Record{m->start, m->end, m->graphNodeId, m->streamId, {}, 0, 0, 0, "[memset]", m->bytes});
    } else {
      const auto* k = reinterpret_cast<const CUpti_ActivityKernel10*>(r);
      g_records.push_back(Record{k->start, k->end, k->graphNodeId, k->streamId, {k->gridX, k->gridY, k->gridZ},
                                 k->blockX, k->registersPerThread, k->staticSharedMemory + k->dynamicSharedMemory,
                                 k->name ? k->name : "?", 0});
    }
  }
  std::free(buffer);
}

std::string demangle(const std::string& name) {
  int status = 0;
  char* d = abi::__cxa_demangle(name.c_str(), nullptr, nullptr, &status);
  std::string out = status == 0 && d ? d : name;
  std::free(d);
  for (char& c : out)
    if (c == '\t' || c == '\n') c = ' ';
  return out;
}

void write_records() {
  cuptiActivityFlushAll(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
  const char* path = std::getenv("HS_KERNEL_TRACE");
  std::FILE* f = std::fopen(path && *path ? path : "kernel_trace.tsv", "w");
  if (!f) {
    std::fprintf(stderr, "hs_kernel_trace: cannot write %s\n", path ? path : "kernel_trace.tsv");
    return;
  }
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(f, "start_ns\tend_ns\tstream\tgraph_node\tgrid\tblock\tregisters\tshared\tname\n");
  for (const Record& r : g_records) {
    const std::string grid = r.name[0] == '['
                                 ? std::to_string(r.bytes) + "B"
                                 : std::to_string(r.grid[0]) + "x" + std::to_string(r.grid[1]) + "x" + std::to_string(r.grid[2]);
    std::fprintf(f, "%llu\t%llu\t%u\t%llu\t%s\t%d\t%u\t%d\t%s\n", static_cast<unsigned long long>(r.start),
                 static_cast<unsigned long long>(r.end), r.stream, static_cast<unsigned long long>(r.graph_node),
                 grid.c_str(), r.block, static_cast<unsigned>(r.registers), r.shared,
                 r.name[0] == '[' ? r.name.c_str() : demangle(r.name).c_str());
  }
  std::fclose(f);
  std::fprintf(stderr, "hs_kernel_trace: %zu records written, %zu dropped\n", g_records.size(), g_dropped);
}

}  // namespace

// Called by the CUDA driver when it loads the library named by CUDA_INJECTION64_PATH.
extern "C" int InitializeInjection() {
  if (const char* m = std::getenv("HS_KERNEL_TRACE_MAX")) g_max = std::strtoull(m, nullptr, 10);
  if (cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS ||
      cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) {
    std::fprintf(stderr, "hs_kernel_trace: CUPTI refused the kernel activity records\n");
    return 0;
  }
  if (cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMCPY) != CUPTI_SUCCESS ||
      cuptiActivityEnable(CUPTI_ACTIVITY_KIND_MEMSET) != CUPTI_SUCCESS)
    std::fprintf(stderr, "hs_kernel_trace: CUPTI refused the copy records; kernels only\n");
  std::atexit(write_records);
  return 1;
}
