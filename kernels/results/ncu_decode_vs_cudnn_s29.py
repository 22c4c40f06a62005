# Prepared in session 29, run in session 30 (ncu_decode_vs_cudnn_s30.csv). Ours and cuDNN's dense
# decode at the four shapes main loses, one call each inside an NVTX range "prof", for ncu
# --nvtx-include prof/ (ncu flushes the caches before each kernel). Run by ncu_decode_vs_cudnn_s29.sh.
import ctypes
import sys
import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, "scripts")
import bench_attention as ba  # noqa: E402

lib = ba.load_lib(sys.argv[1])
HQ, HKV, D, BLK, G = ba.HQ, ba.HKV, ba.D, ba.BLK, ba.GROUP
stream = torch.cuda.current_stream().cuda_stream
for batch, ctx in [(64, 4096), (64, 32768), (16, 32768), (16, 131072)]:
    nblk = ctx // BLK
    q, k, v, pool, out = ba.decode_tensors(batch, ctx)
    indptr = np.arange(0, batch * HKV * nblk + 1, nblk, dtype=np.int32)
    d_indptr = torch.from_numpy(indptr).cuda()
    blocks = torch.from_numpy(np.tile(np.arange(nblk, dtype=np.int32), batch * HKV)).cuda()
    pages = torch.arange(batch * HKV * nblk, dtype=torch.int32, device="cuda")
    pos0 = torch.full((batch,), ctx - 1, dtype=torch.int32, device="cuda")
    tok0 = torch.arange(batch + 1, dtype=torch.int32, device="cuda")
    sh = torch.from_numpy(ba.shards_for("dense")).cuda()
    chunks = np.arange(batch, dtype=np.int32)
    lib.hs_set_variant(0, 0)
    h = lib.hs_decode_plan(ba.np_ptr(indptr), ba.np_ptr(chunks), batch, 1, HKV, BLK, G, D, 0, 0)
    assert h, "hs_decode_plan failed"
    a = ba.AttnArgs(q.data_ptr(), out.data_ptr(), pool.data_ptr(), d_indptr.data_ptr(), blocks.data_ptr(),
                    pages.data_ptr(), pos0.data_ptr(), tok0.data_ptr(), sh.data_ptr(), 0, 0, pool.shape[0], 1, 0,
                    HKV, G, D, BLK, 0, D ** -0.5)
    q4 = q.view(batch, HQ, 1, D)

    def ours():
        assert lib.hs_decode_run(h, ctypes.byref(a), ctypes.c_void_p(stream)) == 0

    def cudnn():
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            return F.scaled_dot_product_attention(q4, k, v, enable_gqa=True)

    ours()
    ref = cudnn()
    torch.cuda.synchronize()
    err = ((out.float() - ref.reshape(batch, -1).float()).norm() / ref.float().norm()).item()
    print(f"shape {batch} x {ctx}: rel err {err:.2e}", flush=True)
    for fn in (ours, cudnn):
        torch.cuda.nvtx.range_push("prof")
        fn()
        torch.cuda.nvtx.range_pop()
        torch.cuda.synchronize()
    lib.hs_decode_free(h)
    del q, k, v, pool, out
    torch.cuda.empty_cache()
