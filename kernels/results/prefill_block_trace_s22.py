# s22: per-block clock64 trace of the wgmma prefill at 8k, one array per plan (dense, strided 8, strided 16).
# Needs a library built with prefill_block_trace_s22.patch (it adds hs_prefill_trace); run from the repo root:
#   python3 kernels/results/prefill_block_trace_s22.py LIB OUTDIR [COLUMNS]
# COLUMNS: the patch's counters per block, 12 (default); 16 for prefill_block_trace_s23.patch.
import ctypes, runpy, sys, numpy as np
LIB, OUT = sys.argv[1], sys.argv[2]
COLS = int(sys.argv[3]) if len(sys.argv) > 3 else 12
g = runpy.run_path('scripts/bench_attention.py', run_name='bench')
orig_load = g['load_lib']
traces, state = {}, {'key': None}  # the last launch's arguments: a new plan's are new
plans = ['dense', 'strided8', 'strided16']
def load_lib(path):
    lib = orig_load(path)
    run = lib.hs_prefill_run
    def dump(lib=lib):
        buf = np.zeros((8192, COLS), dtype=np.int64)
        lib.hs_prefill_trace(buf.ctypes.data_as(ctypes.c_void_p))
        traces[plans[len(traces)]] = buf.copy()
    def wrapped(h, ab, s):
        key = id(ab._obj)
        if state['key'] is not None and key != state['key']:
            dump()
        state['key'] = key
        return run(h, ab, s)
    lib.hs_prefill_run = wrapped
    lib._dump = dump
    g['_lib'] = lib
    return lib
g['main'].__globals__['load_lib'] = load_lib  # run_path returned a copy of the module's globals
sys.argv = ['bench', '--lib', LIB, '--skip-decode', '--ours-only', '--variants', '0,0', '--prefill-tokens', '8192', '--out', OUT]
g['main']()
g['_lib']._dump()
np.savez(OUT + '/ptrace.npz', **traces)
print('saved', list(traces))
