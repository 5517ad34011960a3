"""Timing probes run in a child process by :mod:`src.model_utils.cpu_tuning` (never imported by it).

    python -m src.model_utils.kernel_probe isa LIBDNNL BUDGET_S
    python -m src.model_utils.kernel_probe conv BUDGET_S SHAPES_JSON [IMPLS]

``isa``: times one fp32 3x3 convolution (batch 4, 64 -> 128 channels, 16x16, forward) with
the oneDNN library MindSpore bundles (``mindspore/lib/libdnnl.so.3``), called directly through
ctypes, so no MindSpore import (~2 s) is paid: the child costs ~0.1 s plus the convolutions. The
parent sets ``ONEDNN_MAX_CPU_ISA`` in the child's environment; one process per candidate, because
oneDNN reads that variable once. The convolution is timed twice: on plain NCHW memory (what
MindSpore's native ``Conv2D`` runs) and with the layouts oneDNN prefers (its direct kernels on
blocked memory, what ``src.models.onednn_conv`` runs). Prints one JSON line: best times (ms),
implementation names (as ``ONEDNN_VERBOSE`` shows them) and the ISA oneDNN used. The library is MindSpore's threadpool build
called without a threadpool, so the probe runs on one thread: it compares kernels, not machines.

``conv``: for each shape ``[batch, in_ch, out_ch, kernel, h, w]`` times forward + backward (input
and weight gradients) of ``src.models.layers.Conv2d`` with each implementation of IMPLS (comma
list, default ``native,unfold,onednn``: the native op, im2col + GEMM, oneDNN's direct kernel of
``src.models.onednn_conv``; ``native-1x1`` instead of ``native``: the native op on 1x1 kernels
only, where oneDNN's plain-layout k x k kernel is known to be slow), in GRAPH mode (one small
graph per shape and implementation, ~0.1-0.5 s to compile). Prints one JSON line ``{"times": [[native_ms, unfold_ms, onednn_ms],
...]}`` (null for an implementation not timed); a shape not reached within the budget gets
``null``. They are timed in alternation, best of ``reps`` each after a warm-up; a shape where
one is clearly slower (3x) is not repeated.
"""
import ctypes
import json
import sys
import time

from src.model_utils.cpu_tuning import CONV_IMPLS, NATIVE_1X1

# oneDNN 3.x C API enum values (dnnl_types.h)
_CPU_ENGINE, _F32, _TAG_ANY, _TAG_ABCD = 1, 3, 1, 5
_FORWARD_TRAINING, _CONV_DIRECT = 64, 1
_ARG_SRC, _ARG_DST, _ARG_WEIGHTS = 1, 17, 33
_QUERY_IMPL_INFO_STR = 8
_QUERY_SRC_MD, _QUERY_WEIGHTS_MD, _QUERY_DST_MD = 129, 131, 133
_DIMS = ctypes.c_int64 * 12
# batch, in_ch, out_ch, kernel, h, w: enough channels for the blocked kernels to show their ISA
# (with 16 input channels AVX-512's 16-channel blocks gained nothing over AVX2's 8-channel ones)
ISA_SHAPE = (4, 64, 128, 3, 16, 16)


class _ExecArg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", ctypes.c_void_p)]


def _check(status, what):
    if status != 0:
        raise RuntimeError(f"oneDNN {what} failed with status {status}")


def time_onednn_conv(lib_path, budget_s, shape=ISA_SHAPE, reps=5):
    """Best forward time (ms) and implementation of one fp32 convolution in oneDNN, twice: on
    plain NCHW memory (what MindSpore's native ``Conv2D`` gives oneDNN: ``ms``, ``impl``) and
    with the memory formats oneDNN prefers (``format_tag_any``: the direct kernels on blocked
    layouts that ``src.models.onednn_conv`` uses: ``direct_ms``, ``direct_impl``; reorders not
    timed). Each gets about half the budget."""
    lib = ctypes.CDLL(lib_path)
    lib.dnnl_primitive_desc_query_md.restype = ctypes.c_void_p
    lib.dnnl_get_effective_cpu_isa.restype = ctypes.c_int
    n, cin, cout, k, h, w = shape
    engine, stream = ctypes.c_void_p(), ctypes.c_void_p()
    _check(lib.dnnl_engine_create(ctypes.byref(engine), _CPU_ENGINE, ctypes.c_size_t(0)), "engine")
    _check(lib.dnnl_stream_create(ctypes.byref(stream), engine, ctypes.c_uint(1)), "stream")

    def desc(dims, tag):
        md = ctypes.c_void_p()
        _check(lib.dnnl_memory_desc_create_with_tag(ctypes.byref(md), len(dims), _DIMS(*dims),
                                                    _F32, tag), "memory desc")
        return md

    def best_time(tag, budget):
        src, wei, dst = desc((n, cin, h, w), tag), desc((cout, cin, k, k), tag), \
            desc((n, cout, h, w), tag)
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
        for i, (arg, query) in enumerate(((_ARG_SRC, _QUERY_SRC_MD), (_ARG_WEIGHTS, _QUERY_WEIGHTS_MD),
                                          (_ARG_DST, _QUERY_DST_MD))):
            md = lib.dnnl_primitive_desc_query_md(pd, query, 0)  # the layout it was created for
            mem = ctypes.c_void_p()
            _check(lib.dnnl_memory_create(ctypes.byref(mem), ctypes.c_void_p(md), engine,
                                          allocate), "memory")
            args[i] = _ExecArg(arg, mem.value)
        best, start = float("inf"), time.perf_counter()
        for rep in range(reps + 1):  # the first call is a warm-up
            t0 = time.perf_counter()
            _check(lib.dnnl_primitive_execute(prim, stream, 3, args), "execute")
            _check(lib.dnnl_stream_wait(stream), "stream wait")
            if rep:
                best = min(best, (time.perf_counter() - t0) * 1000.0)
            if rep and time.perf_counter() - start > budget:
                break
        return best, (impl.value or b"?").decode()

    plain_ms, plain_impl = best_time(_TAG_ABCD, budget_s / 2)
    direct_ms, direct_impl = best_time(_TAG_ANY, budget_s / 2)
    return {"ms": plain_ms, "impl": plain_impl, "direct_ms": direct_ms, "direct_impl": direct_impl,
            "isa": lib.dnnl_get_effective_cpu_isa()}




def time_conv_impls(shapes, budget_s, reps=5, impls=CONV_IMPLS):
    """[[native_ms, unfold_ms, onednn_ms] or None per shape]: forward + backward of the repo's
    Conv2d with each implementation in ``impls`` (the others and im2col of a 1x1 kernel: None).

    The implementations are timed in alternation (native, im2col, oneDNN, native, ...), best of
    ``reps`` each after a warm-up: a load that comes and goes during the probe then slows all
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
        timed = [i for i in CONV_IMPLS if not (i == "unfold" and k == 1) and (
            i in impls or (i == "native" and k == 1 and NATIVE_1X1 in impls))]
        steps = []
        for impl in timed:
            conv = Conv2d(cin, cout, k, impl=impl)
            # loss = sum of the output: gradients for the input and the weight, as in training
            step = nn.ForwardValueAndGrad(conv, weights=conv.trainable_params(), get_all=True,
                                          get_by_list=True)
            step.compile(x)
            steps.append(step)
        best = [float("inf")] * len(timed)
        for rep in range(reps + 1):  # rep 0 is a warm-up
            for i, step in enumerate(steps):
                t0 = time.perf_counter()
                _, (_, weight_grads) = step(x)
                weight_grads[0].asnumpy()
                if rep:
                    best[i] = min(best[i], (time.perf_counter() - t0) * 1000.0)
            if rep and (time.perf_counter() - start > budget_s or max(best) > 3 * min(best)):
                break  # out of time, or one is clearly the slower
        by_impl = dict(zip(timed, best))
        results.append([by_impl.get(i) for i in CONV_IMPLS])
    return results


def main(argv):
    if len(argv) >= 3 and argv[0] == "isa":
        print(json.dumps(time_onednn_conv(argv[1], float(argv[2]))))
        return 0
    if len(argv) >= 3 and argv[0] == "conv":
        impls = argv[3].split(",") if len(argv) > 3 else CONV_IMPLS
        print(json.dumps({"times": time_conv_impls(json.loads(argv[2]), float(argv[1]),
                                                   impls=impls)}))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
