"""Timing probes run in a child process by :mod:`src.model_utils.cpu_tuning` (never imported by it).

    python -m src.model_utils.kernel_probe isa LIBDNNL BUDGET_S
    python -m src.model_utils.kernel_probe conv BUDGET_S SHAPES_JSON

``isa``: times one NCHW fp32 3x3 convolution (batch 8, 16 -> 64 channels, 16x16, forward) with
the oneDNN library MindSpore bundles (``mindspore/lib/libdnnl.so.3``), called directly through
ctypes, so no MindSpore import (~2 s) is paid: the child costs ~0.1 s plus the convolutions. The
parent sets ``ONEDNN_MAX_CPU_ISA`` in the child's environment; one process per candidate, because
oneDNN reads that variable once. Prints one JSON line: best time (ms), implementation name (as
``ONEDNN_VERBOSE`` shows it) and the ISA oneDNN used. The library is MindSpore's threadpool build
called without a threadpool, so the probe runs on one thread: it compares kernels, not machines.

``conv``: for each shape ``[batch, in_ch, out_ch, kernel, h, w]`` times forward + backward (input
and weight gradients) of ``src.models.layers.Conv2d`` natively and as im2col + GEMM, in PyNative
mode (one small graph per shape and implementation, ~0.1-0.5 s to compile). Prints one JSON line
``{"times": [[native_ms, unfold_ms], ...]}``; a shape not reached within the budget gets
``null``. The two are timed in alternation, best of ``reps`` each after a warm-up; a pair where
one is clearly slower (3x) is not repeated.
"""
import ctypes
import json
import sys
import time

# oneDNN 3.x C API enum values (dnnl_types.h)
_CPU_ENGINE, _F32, _TAG_ABCD = 1, 3, 5
_FORWARD_TRAINING, _CONV_DIRECT = 64, 1
_ARG_SRC, _ARG_DST, _ARG_WEIGHTS = 1, 17, 33
_QUERY_IMPL_INFO_STR = 8
_DIMS = ctypes.c_int64 * 12
ISA_SHAPE = (8, 16, 64, 3, 16, 16)  # batch, in_ch, out_ch, kernel, h, w


class _ExecArg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", ctypes.c_void_p)]


def _check(status, what):
    if status != 0:
        raise RuntimeError(f"oneDNN {what} failed with status {status}")


def time_onednn_conv(lib_path, budget_s, shape=ISA_SHAPE, reps=5):
    """Best forward time (ms) of one NCHW fp32 convolution in oneDNN, and its implementation."""
    lib = ctypes.CDLL(lib_path)
    n, cin, cout, k, h, w = shape
    engine, stream = ctypes.c_void_p(), ctypes.c_void_p()
    _check(lib.dnnl_engine_create(ctypes.byref(engine), _CPU_ENGINE, ctypes.c_size_t(0)), "engine")
    _check(lib.dnnl_stream_create(ctypes.byref(stream), engine, ctypes.c_uint(1)), "stream")

    def desc(dims):
        md = ctypes.c_void_p()
        _check(lib.dnnl_memory_desc_create_with_tag(ctypes.byref(md), len(dims), _DIMS(*dims),
                                                    _F32, _TAG_ABCD), "memory desc")
        return md

    src, wei, dst = desc((n, cin, h, w)), desc((cout, cin, k, k)), desc((n, cout, h, w))
    pad = k // 2
    pd = ctypes.c_void_p()
    _check(lib.dnnl_convolution_forward_primitive_desc_create(
        ctypes.byref(pd), engine, _FORWARD_TRAINING, _CONV_DIRECT, src, wei, None, dst,
        _DIMS(1, 1), _DIMS(0, 0), _DIMS(pad, pad), _DIMS(pad, pad), None), "convolution desc")
    impl = ctypes.c_char_p()
    lib.dnnl_primitive_desc_query(pd, _QUERY_IMPL_INFO_STR, 0, ctypes.byref(impl))
    prim = ctypes.c_void_p()
    _check(lib.dnnl_primitive_create(ctypes.byref(prim), pd), "primitive")
    allocate = ctypes.c_void_p(ctypes.c_size_t(-1).value)  # DNNL_MEMORY_ALLOCATE
    args = (_ExecArg * 3)()
    for i, (arg, md) in enumerate(((_ARG_SRC, src), (_ARG_WEIGHTS, wei), (_ARG_DST, dst))):
        mem = ctypes.c_void_p()
        _check(lib.dnnl_memory_create(ctypes.byref(mem), md, engine, allocate), "memory")
        args[i] = _ExecArg(arg, mem.value)
    best, start = float("inf"), time.perf_counter()
    for rep in range(reps + 1):  # the first call is a warm-up
        t0 = time.perf_counter()
        _check(lib.dnnl_primitive_execute(prim, stream, 3, args), "execute")
        _check(lib.dnnl_stream_wait(stream), "stream wait")
        if rep:
            best = min(best, (time.perf_counter() - t0) * 1000.0)
        if rep and time.perf_counter() - start > budget_s:
            break
    lib.dnnl_get_effective_cpu_isa.restype = ctypes.c_int
    return {"ms": best, "impl": (impl.value or b"?").decode(), "isa": lib.dnnl_get_effective_cpu_isa()}


def time_conv_impls(shapes, budget_s, reps=5):
    """[[native_ms, unfold_ms] or None per shape]: forward + backward of the repo's Conv2d.

    The two implementations are timed in alternation (native, im2col, native, ...), best of
    ``reps`` each after a warm-up: a load that comes and goes during the probe then slows both
    alike instead of one (timed one after the other, a busy spell once made im2col look 33 %
    faster on a layer where it is 2x slower)."""
    import numpy as np
    import mindspore as ms
    import mindspore.nn as nn
    from src.models.layers import Conv2d

    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    start = time.perf_counter()
    results = []
    for batch, cin, cout, k, h, w in shapes:
        if time.perf_counter() - start > budget_s:
            results.append(None)
            continue
        x = ms.Tensor(np.random.default_rng(0).standard_normal((batch, cin, h, w), np.float32))
        steps = []
        for use_unfold in (False, True):
            conv = Conv2d(cin, cout, k, use_unfold=use_unfold)
            # loss = sum of the output: gradients for the input and the weight, as in training
            step = nn.ForwardValueAndGrad(conv, weights=conv.trainable_params(), get_all=True,
                                          get_by_list=True)
            step.compile(x)
            steps.append(step)
        best = [float("inf"), float("inf")]
        for rep in range(reps + 1):  # rep 0 is a warm-up
            for i, step in enumerate(steps):
                t0 = time.perf_counter()
                _, (_, weight_grads) = step(x)
                weight_grads[0].asnumpy()
                if rep:
                    best[i] = min(best[i], (time.perf_counter() - t0) * 1000.0)
            if rep and (time.perf_counter() - start > budget_s or max(best) > 3 * min(best)):
                break  # out of time, or one is clearly the slower
        results.append(best)
    return results


def main(argv):
    if len(argv) >= 3 and argv[0] == "isa":
        print(json.dumps(time_onednn_conv(argv[1], float(argv[2]))))
        return 0
    if len(argv) >= 3 and argv[0] == "conv":
        print(json.dumps({"times": time_conv_impls(json.loads(argv[2]), float(argv[1]))}))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
