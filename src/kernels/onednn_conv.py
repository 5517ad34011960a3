"""Stride-1 "same" convolutions on CPU through oneDNN's direct (blocked-layout) kernels.

MindSpore 2.10's CPU ``Conv2D`` hands oneDNN plain NCHW tensors, so oneDNN can only run its
im2col + GEMM kernel (``x64:gemm:jit``) or, on AVX-512 CPUs without the ISA cap, a plain-layout
kernel 10-100x slower. ``onednn_conv.cc`` creates the same convolution in the same library
(``mindspore/lib/libdnnl.so.3``, the instance MindSpore already loaded) with "any" memory formats,
so oneDNN picks its direct convolutions on nChw8c / nChw16c layouts (what PyTorch gets from
oneDNN), and reorders the plain tensors around each call. Forward, input gradient and weight
gradient are AOT custom ops; :func:`conv2d_op` returns the forward op with its bprop. The op adds
the bias and takes its input in parts (concatenated along the channels, as a ConvLSTM gate
convolution over ``concat([x, h])``): no Concat, BiasAdd or their gradient kernels around it.

Scope: float32, stride 1, odd square kernels with "same" zero padding (``k // 2``), no dilation,
one group. ``src.kernels.layers.Conv2d`` with the ``onednn`` kernel uses it; which layers do
is measured per machine by ``src.kernels.plan``. Exported graphs never contain it (export
builds native convolutions).

The library is compiled on first use (``src.kernels.build``) and linked against MindSpore's
own ``libdnnl.so.3``; its build is keyed by that library's version, and when it loads it checks
that the oneDNN loaded has the major version its declarations were written for.
``ZOO_ONEDNN_THREADS`` sets its thread count (default: the usable cores).
"""
import ctypes
import os

from src.kernels.build import CSRC, AotLibrary
from src.kernels.tuning import onednn_library, onednn_version

SOURCE = os.path.join(CSRC, "onednn_conv.cc")
THREAD_POOL = os.path.join(os.path.dirname(SOURCE), "thread_pool.h")
CXX_FLAGS = ("-O2", "-shared", "-fPIC", "-std=c++14", "-pthread")


def _link_args():
    lib = onednn_library()
    if lib is None:
        return None, "MindSpore's bundled libdnnl.so.3 was not found"
    folder = os.path.dirname(lib)
    return ("-L" + folder, "-l:" + os.path.basename(lib), "-Wl,-rpath," + folder), None


def _onednn_key():
    lib = onednn_library()
    return f"oneDNN {onednn_version(lib) if lib else 'none'}"


def _check_version(path):
    """None when the oneDNN loaded here has the major version ``onednn_conv.cc`` declares its C
    API for, else the reason (the layers then stay native; one log line per run)."""
    try:
        lib = ctypes.CDLL(path)
        major, minor, patch = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        lib.ZooOnednnVersion(ctypes.byref(major), ctypes.byref(minor), ctypes.byref(patch))
        expected = lib.ZooOnednnApiMajor()
    except (OSError, AttributeError) as err:
        return f"cannot load {os.path.basename(path)}: {err}"
    if major.value != expected:
        return (f"oneDNN {major.value}.{minor.value}.{patch.value} is loaded but onednn_conv.cc "
                f"declares the C API of oneDNN {expected}.x")
    return None


LIBRARY = AotLibrary(SOURCE, CXX_FLAGS, link_args=_link_args, headers=(THREAD_POOL,),
                     key_extra=_onednn_key, check=_check_version)


def availability():
    """``(True, library path)`` or ``(False, why not)``; built once per process."""
    return LIBRARY.availability()


def supports(kernel_size, stride=1, padding=None, dilation=1, group=1):
    """Whether a convolution is one the oneDNN op computes (odd k, stride 1, "same" padding)."""
    padding = kernel_size // 2 if padding is None else padding
    return (kernel_size % 2 == 1 and stride == 1 and padding == kernel_size // 2
            and dilation == 1 and group == 1)


def _make_op(parts, bias, prepared=False):
    path = LIBRARY.require("the oneDNN convolution kernels")
    import mindspore.ops as ops
    suffix = f"Prepared{parts}" if prepared else str(parts)

    def listed(values):  # one output: its shape / dtype; several: their list
        return values[0] if parts == 1 else list(values)

    backward_data = ops.Custom(f"{path}:ConvBackwardData{suffix}",
                               out_shape=lambda dy, w, *xs: listed(xs),
                               out_dtype=lambda dy, w, *xs: listed(xs), func_type="aot")
    if bias:
        name = f"ConvBackwardWeightsPrepared{parts}" if prepared else f"ConvBackwardWeightsBias{parts}"
        backward_weights = ops.Custom(f"{path}:{name}",
                                      out_shape=lambda *a: [a[-2], a[-1]],
                                      out_dtype=lambda *a: [a[-2], a[-1]], func_type="aot")
    else:
        backward_weights = ops.Custom(f"{path}:ConvBackwardWeights{parts}", out_shape=lambda *a: a[-1],
                                      out_dtype=lambda *a: a[-1], func_type="aot")

    def grads(xs, w, b, dout):
        dxs = backward_data(dout, w, *xs)
        dxs = (dxs,) if parts == 1 else tuple(dxs)
        # the trailing inputs of each gradient op only give the shapes of its outputs
        if bias:
            dw, db = backward_weights(*xs, dout, w, b)
            return dxs + (dw, db)
        return dxs + (backward_weights(*xs, dout, w),)

    # GRAPH mode parses a bprop with the op's exact inputs (x_1..x_m, w, [b]), then out, dout
    def bprop_1(x1, w, out, dout):
        return grads((x1,), w, None, dout)

    def bprop_1b(x1, w, b, out, dout):
        return grads((x1,), w, b, dout)

    def bprop_2(x1, x2, w, out, dout):
        return grads((x1, x2), w, None, dout)

    def bprop_2b(x1, x2, w, b, out, dout):
        return grads((x1, x2), w, b, dout)

    def bprop_3(x1, x2, x3, w, out, dout):
        return grads((x1, x2, x3), w, None, dout)

    def bprop_3b(x1, x2, x3, w, b, out, dout):
        return grads((x1, x2, x3), w, b, dout)

    def bprop_4(x1, x2, x3, x4, w, out, dout):
        return grads((x1, x2, x3, x4), w, None, dout)

    def bprop_4b(x1, x2, x3, x4, w, b, out, dout):
        return grads((x1, x2, x3, x4), w, b, dout)

    bprops = {(1, False): bprop_1, (1, True): bprop_1b, (2, False): bprop_2, (2, True): bprop_2b,
              (3, False): bprop_3, (3, True): bprop_3b, (4, False): bprop_4, (4, True): bprop_4b}
    bprop = bprops[(parts, bias)]

    def out_shape(*shapes):  # prepared weights may be padded: O from the bias
        x, o = shapes[0], shapes[parts + 1][0] if prepared else shapes[parts][0]
        return [x[0], o, x[2], x[3]]

    forward = "ConvForwardPrepared" if prepared else "ConvForwardBias" if bias else "ConvForward"
    return ops.Custom(f"{path}:{forward}{parts if prepared else suffix}",
                      out_shape=out_shape, out_dtype=lambda *dtypes: dtypes[0], func_type="aot",
                      bprop=bprop)


MAX_PARTS = 4  # the most input parts an op takes (a ConvLSTM head reads one per layer; the C++
# entry points exist for 1..4)


def conv2d_op(parts=1, bias=False):
    """``op(x_1, .., x_m, w (O, C, k, k)[, b (O,)]) -> (N, O, H, W)`` with its bprop, where the
    ``parts`` inputs ``x_i`` (N, C_i, H, W) are the convolution's input concatenated along the
    channels (``sum C_i = C``, ``1 <= parts <= MAX_PARTS``) and ``b`` (``bias=True``) is added;
    one per process and kind."""
    if not 1 <= parts <= MAX_PARTS:
        raise ValueError(f"the oneDNN convolution takes 1 to {MAX_PARTS} input parts, got {parts}")
    return LIBRARY.cached_op(("conv2d", parts, bias), lambda: _make_op(parts, bias))


# the largest block of oneDNN's f32 direct-convolution layouts (16 channels on AVX-512, 8 on
# AVX2): prepared weights are (O, C) rounded up to it, so any of its layouts fits
PREPARED_BLOCK = 16


def prepared_shape(weight_shape):
    """The shape of prepared weights for weights ``(O, C, k, k)``: O and C padded to the block."""
    o, c, kh, kw = weight_shape
    pad = lambda v: -(-v // PREPARED_BLOCK) * PREPARED_BLOCK  # noqa: E731
    return [pad(o), pad(c), kh, kw]


def _make_prepare():
    path = LIBRARY.require("the oneDNN convolution kernels")
    import mindspore.ops as ops

    grad = ops.Custom(f"{path}:WeightsPrepareGrad", out_shape=lambda x, w, dwp: w,
                      out_dtype=lambda x, w, dwp: w, func_type="aot")

    def bprop(x, w, out, dout):  # x only gives N, H, W
        return ops.zeros_like(x), grad(x, w, dout)

    return ops.Custom(f"{path}:WeightsPrepare", out_shape=lambda x, w: prepared_shape(w),
                      out_dtype=lambda x, w: w, func_type="aot", bprop=bprop)


def prepared_ops(parts=1):
    """``(prepare, conv)`` for a convolution with a bias whose weights serve many calls in one
    step (the time steps of a recurrent network): ``wp = prepare(x_like, w)`` reorders the
    weights once into the layout oneDNN's forward kernel reads (``x_like``: any (N, *, H, W)
    tensor of the input's batch and map size); ``conv(x_1, .., x_m, wp, b)`` is then
    ``conv2d_op(parts, True)`` without the weight reorder of every call, and its weight gradient
    stays in oneDNN's layout until ``prepare``'s bprop turns the summed gradient back, once."""
    if not 1 <= parts <= MAX_PARTS:
        raise ValueError(f"the oneDNN convolution takes 1 to {MAX_PARTS} input parts, got {parts}")
    return (LIBRARY.cached_op("prepare", _make_prepare),
            LIBRARY.cached_op(("conv2d_prepared", parts), lambda: _make_op(parts, True, True)))
