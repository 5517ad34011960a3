"""Timing probes run in a child process by :mod:`src.kernels.tuning` (never imported by it).

    python -m src.kernels.probe isa LIBDNNL BUDGET_S
    python -m src.kernels.probe plan BUDGET_S REQUEST_JSON

``isa``: times one fp32 3x3 convolution (batch 4, 64 -> 128 channels, 16x16, forward) with
the oneDNN library MindSpore bundles (``mindspore/lib/libdnnl.so.3``), called directly through
ctypes, so no MindSpore import (~2 s) is paid: the child costs ~0.1 s plus the convolutions. The
parent sets ``ONEDNN_MAX_CPU_ISA`` in the child's environment; one process per candidate, because
oneDNN reads that variable once. The convolution is timed twice: on plain NCHW memory (what
MindSpore's native ``Conv2D`` runs) and with the layouts oneDNN prefers (its direct kernels on
blocked memory, what ``src.kernels.onednn_conv`` runs). Prints one JSON line: best times (ms),
implementation names (as ``ONEDNN_VERBOSE`` shows them) and the ISA oneDNN used. The library is
MindSpore's threadpool build called without a threadpool, so the probe runs on one thread: it
compares kernels, not machines.

``plan``: what a run's kernel choices need (``src.kernels.plan``), in GRAPH mode, forward +
backward, best of a few repetitions after a warm-up, the implementations timed in alternation
(a load that comes and goes then slows all alike):

* ``groups`` first (``{kind: [[batch, *key], ...]}``): per fused kind, all of the network's
  layers of that kind in one graph, native against fused (two compiles per kind);
* then ``convs`` (``[[batch, in, out, k, h, w], ...]``, the heaviest first) with each of
  ``impls`` (``native``, ``unfold``, ``onednn``; ``native-1x1``: native on 1x1 kernels only),
  one small graph per shape and implementation, until the budget is spent (a shape not reached
  gets ``null``).

Prints ``{"convs": [[native_ms, unfold_ms, onednn_ms] or null, ...], "groups": {kind: {"native":
ms, "fused": ms}}}`` after the groups and again after every convolution (the parent keeps the last
complete line, also when it stops the child for taking too long).
"""
import argparse
import ctypes
import json
import sys
import time

from src.kernels import fused_layers, lstm_gates
from src.kernels.tuning import CONV_IMPLS, NATIVE_1X1
from src.model_utils.errors import ArgumentParser, exit_on_user_error

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
REPS = 5  # timed repetitions per kernel (after one warm-up)


class _ExecArg(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_int), ("memory", ctypes.c_void_p)]


def _check(status, what):
    if status != 0:
        raise RuntimeError(f"oneDNN {what} failed with status {status}")


def time_onednn_conv(lib_path, budget_s, shape=ISA_SHAPE, reps=5):
    """Best forward time (ms) and implementation of one fp32 convolution in oneDNN, twice: on
    plain NCHW memory (what MindSpore's native ``Conv2D`` gives oneDNN: ``ms``, ``impl``) and
    with the memory formats oneDNN prefers (``format_tag_any``: the direct kernels on blocked
    layouts that ``src.kernels.onednn_conv`` uses: ``direct_ms``, ``direct_impl``; reorders not
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




def _alternate(steps, inputs, budget_end, reps=REPS):
    """Best time (ms) of each ``steps[i](*inputs[i])`` (a ``ForwardValueAndGrad``), timed in
    alternation, best of ``reps`` after a warm-up; stops early when out of time or when one is
    clearly (3x) the slower."""
    best = [float("inf")] * len(steps)
    for rep in range(reps + 1):  # rep 0 is a warm-up
        for i, (step, args) in enumerate(zip(steps, inputs)):
            t0 = time.perf_counter()
            leaf = step(*args)[1]
            while isinstance(leaf, (tuple, list)):  # wait for the last gradient
                leaf = leaf[-1]
            leaf.asnumpy()
            if rep:
                best[i] = min(best[i], (time.perf_counter() - t0) * 1000.0)
        if rep and (time.perf_counter() > budget_end or max(best) > 3 * min(best)):
            break
    return best


def time_conv_impls(shapes, budget_s, reps=REPS, impls=CONV_IMPLS, progress=None):
    """[[native_ms, unfold_ms, onednn_ms] or None per shape]: forward + backward (input and
    weight gradients) of the package's Conv2d with each implementation in ``impls`` (the others
    and im2col of a 1x1 kernel: None); a shape not reached within ``budget_s`` is None."""
    import numpy as np
    import mindspore as ms
    import mindspore.nn as nn
    from src.kernels.layers import Conv2d  # MindSpore: the isa probe must not import it

    end = time.perf_counter() + budget_s
    results = []
    for batch, cin, cout, k, h, w in shapes:
        if time.perf_counter() > end:
            results.append(None)
            continue
        x = ms.Tensor(np.random.default_rng(0).standard_normal((batch, cin, h, w), np.float32))
        timed = [i for i in CONV_IMPLS if not (i == "unfold" and k == 1) and (
            i in impls or (i == "native" and k == 1 and NATIVE_1X1 in impls))]
        steps = []
        for impl in timed:
            conv = Conv2d(cin, cout, k)
            conv.set_kernel(impl)
            # loss = sum of the output: gradients for the input and the weight, as in training
            step = nn.ForwardValueAndGrad(conv, weights=conv.trainable_params(), get_all=True,
                                          get_by_list=True)
            step.compile(x)
            steps.append(step)
        by_impl = dict(zip(timed, _alternate(steps, [(x,)] * len(steps), end, reps)))
        results.append([by_impl.get(i) for i in CONV_IMPLS])
        if progress:
            progress(results)
    return results


def _group_cell(kind, keys, fused):
    """One cell running every layer of a fused kind (each on its own input), native or fused,
    as the training step runs them: ``bn_leaky`` as ``ConvBNLeaky`` after its convolution,
    ``max_pool`` as ``layers.MaxPool2d``, ``lstm_gates`` as ``ConvLSTMCell`` after its gate
    convolution. The output: the sum of every layer's output."""
    import numpy as np
    import mindspore as ms
    import mindspore.nn as nn
    import mindspore.ops as ops
    from mindspore import Parameter, Tensor
    from src.kernels.layers import LeakyReLU, MaxPool2d, reference_lstm_gates

    class BnLeaky(nn.Cell):
        def __init__(self, channels):
            super().__init__()
            self.bn = nn.BatchNorm2d(channels, momentum=0.9, eps=1e-5)
            self.act = LeakyReLU(0.1)
            self.op = fused_layers.bn_leaky_op() if fused else None
            self.hyper = Tensor([1e-5, 0.1, 0.1], ms.float32)

        def construct(self, x):
            if self.op is not None:
                bn = self.bn
                return self.op(x, bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance,
                               self.hyper)[0]
            return self.act(self.bn(x))

    class Gates(nn.Cell):
        def __init__(self, channels):
            super().__init__()
            self.w_ci, self.w_cf, self.w_co = (
                Parameter(Tensor(np.zeros(channels, np.float32)), name=n) for n in ("ci", "cf", "co"))
            self.op = lstm_gates.lstm_gates_op() if fused else None

        def construct(self, z, c):
            if self.op is not None:
                return self.op(z, c, self.w_ci, self.w_cf, self.w_co)[0]
            peep = [ops.broadcast_to(w.reshape(1, -1, 1, 1), c.shape)
                    for w in (self.w_ci, self.w_cf, self.w_co)]
            return reference_lstm_gates(z, c, peep[0], peep[1], peep[2])[0]

    class Group(nn.Cell):
        def __init__(self):
            super().__init__()
            layers = []
            for key in keys:
                if kind == "bn_leaky":
                    layers.append(BnLeaky(key[1]))
                elif kind == "max_pool":
                    layers.append(MaxPool2d(2, 2))
                    layers[-1].set_kernel("fused" if fused else "native")
                else:
                    layers.append(Gates(key[1]))
            self.layers = nn.CellList(layers)
            self.two_inputs = kind == "lstm_gates"

        def construct(self, *xs):
            total = 0.0
            step = 2 if self.two_inputs else 1
            for i, layer in enumerate(self.layers):
                if self.two_inputs:
                    out = layer(xs[step * i], xs[step * i + 1])
                else:
                    out = layer(xs[i])
                total = total + out.sum()
            return total

    return Group()


def _group_inputs(kind, keys):
    import numpy as np
    import mindspore as ms
    rng = np.random.default_rng(0)
    xs = []
    for n, c, h, w in keys:
        if kind == "lstm_gates":  # z (4 * Ch channels), then the state c
            xs.append(ms.Tensor(rng.standard_normal((n, 4 * c, h, w), np.float32)))
        xs.append(ms.Tensor(rng.standard_normal((n, c, h, w), np.float32)))
    return tuple(xs)


def time_groups(groups, budget_end, reps=REPS):
    """``{kind: {"native": ms, "fused": ms}}``: per kind, forward + backward of all its layers
    (``groups``: kind -> ``[[batch, *key], ...]``)."""
    import mindspore.nn as nn
    out = {}
    for kind, keys in groups.items():
        keys = [tuple(int(v) for v in k) for k in keys]
        xs = _group_inputs(kind, keys)
        steps = []
        for fused in (False, True):
            cell = _group_cell(kind, keys, fused)
            cell.set_train(True)
            step = nn.ForwardValueAndGrad(cell, get_all=True)
            step.compile(*xs)
            steps.append(step)
        native, fused = _alternate(steps, [xs, xs], budget_end, reps)
        out[kind] = {"native": native, "fused": fused}
    return out


def plan(budget_s, request):
    """The ``plan`` command: the fused groups first (two compiles per kind), then the
    convolutions, the heaviest first, within ``budget_s``."""
    import mindspore as ms
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    end = time.perf_counter() + budget_s
    convs = [tuple(s) for s in request.get("convs") or []]
    order = sorted(range(len(convs)), key=lambda i: -_flops(convs[i]))
    result = {"convs": [None] * len(convs), "groups": {}}

    def report(times):  # the results so far, one JSON line (the parent keeps the last one)
        for i, t in zip(order, times):
            result["convs"][i] = t
        print(json.dumps(result), flush=True)

    # the groups' repetitions stop at a third of the budget (their compiles cannot be cut short);
    # the convolutions then get what is left, at least half the budget
    result["groups"] = time_groups(request.get("groups") or {}, end - budget_s * 2 / 3)
    report([])
    time_conv_impls([convs[i] for i in order], max(end - time.perf_counter(), budget_s / 2),
                    impls=tuple(request.get("impls") or CONV_IMPLS), progress=report)
    return result


def _flops(shape):
    n, cin, cout, k, h, w = shape
    return n * cin * cout * k * k * h * w


def _request(text):
    try:
        request = json.loads(text)
    except ValueError:
        request = None
    if not isinstance(request, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object {{convs, impls, groups}}: {text[:60]!r}")
    return request


def build_parser():
    parser = ArgumentParser(prog="python -m src.kernels.probe",
                            description="timing probes of src.kernels (one JSON line out)")
    sub = parser.add_subparsers(dest="probe", required=True)
    isa = sub.add_parser("isa", help="one oneDNN convolution, plain and blocked layouts")
    isa.add_argument("libdnnl", help="path of MindSpore's libdnnl.so.3")
    isa.add_argument("budget_s", type=float)
    what = sub.add_parser("plan", help="the convolutions and fused layers of a run's choices")
    what.add_argument("budget_s", type=float)
    what.add_argument("request", type=_request,
                      help='JSON {"convs": [[batch, in, out, k, h, w]], "impls": [...], '
                           '"groups": {kind: [[batch, *key]]}}')
    return parser


@exit_on_user_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.probe == "isa":
        print(json.dumps(time_onednn_conv(args.libdnnl, args.budget_s)))
    else:
        plan(args.budget_s, args.request)  # prints its results as it goes
    return 0


if __name__ == "__main__":
    sys.exit(main())
