# Session 46, call M (run by .device/s46m.sh: ncu --nvtx --nvtx-include prof/ --section ... python3 this LIB).
# ncu: our decode v0 (bulk copies) and v1 (cp.async by every thread) at 64 x 4k, one launch each in NVTX range "prof".
import sys
import torch
sys.path.insert(0, "scripts")
import bench_attention as ba  # noqa: E402
lib = ba.load_lib(sys.argv[1])
q, k, v, pool, out = ba.decode_tensors(64, 4096)
for dv in (0, 1):
    dec = ba.DenseDecode(lib, q, pool, out, 64, 4096, variant=dv)
    dec(); torch.cuda.synchronize()
    print("variant", dv, "items", dec.items, "ms", ba.median_time_ms(dec, flush="read"), flush=True)
    torch.cuda.nvtx.range_push("prof")
    dec()
    torch.cuda.nvtx.range_pop()
    torch.cuda.synchronize()
    dec.free()
