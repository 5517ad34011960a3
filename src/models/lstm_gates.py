"""The ConvLSTM gate math of one step as fused CPU kernels (``ops.Custom(func_type="aot")``).

``lstm_gates(z, c, w_ci, w_cf, w_co) -> (h', c')`` computes what ``ConvLSTMCell.construct`` does
after the gate convolution (``lstm_gates.cc`` has the formulas), forward in one pass over the
state and backward (its bprop) in another, where MindSpore's graph runs ~13 and ~25 element-wise
kernels, each a pass over memory and a dispatch to the thread pool. The peepholes are the cell's
(C,) parameters themselves: their gradients come back summed over the batch and the map.

The library is compiled once per machine with the C++ compiler on PATH (``$CXX`` or ``g++``)
into the cache folder of ``src.model_utils.cpu_tuning`` (the file name hashes the source, the
flags and the CPU's ISA flags). Without a compiler, :func:`availability` says why and
``gate_impl: fused`` is refused with that reason. Exported graphs never contain the custom op (export
builds the network with ``gate_impl: native``), so MindIR / ONNX run anywhere.

Importing this module costs nothing: MindSpore is imported on first use.
"""
import os

from src.models.custom_ops import AotLibrary, fused_kernel_policy

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lstm_gates.cc")
# no -ffast-math: inf / NaN must survive (a diverging run has to show a non-finite loss); the
# kernels' own exp vectorises without it
CXX_FLAGS = ("-O3", "-march=native", "-fno-trapping-math", "-shared", "-fPIC", "-std=c++14",
             "-pthread")
THREAD_POOL = os.path.join(os.path.dirname(SOURCE), "thread_pool.h")
LIBRARY = AotLibrary(SOURCE, CXX_FLAGS, headers=(THREAD_POOL,))


def availability():
    """``(True, library path)`` or ``(False, why not)``; built once per process."""
    return LIBRARY.availability()


def _make_op():
    path = LIBRARY.require("the fused LSTM gate kernels")
    import mindspore.ops as ops

    def like_state(z, c, *rest):  # h' and c': the state's shape and dtype
        return c, c

    def grads(z, c, w_ci, *rest):  # dz, dc, and the peepholes' (C,) gradients
        return z, c, w_ci, w_ci, w_ci

    backward = ops.Custom(f"{path}:LstmGatesBackward", out_shape=grads, out_dtype=grads,
                          func_type="aot")

    def bprop(z, c, w_ci, w_cf, w_co, out, dout):
        return backward(z, c, w_ci, w_cf, w_co, dout[0], dout[1])

    return ops.Custom(f"{path}:LstmGatesForward", out_shape=like_state, out_dtype=like_state,
                      func_type="aot", bprop=bprop)


def lstm_gates_op():
    """The fused forward op (a ``Custom`` primitive with its bprop); one per process."""
    return LIBRARY.cached_op("forward", _make_op)


GATE_IMPLS = ("native", "fused")  # what a cell computes with
GATE_SETTINGS = ("auto",) + GATE_IMPLS  # what the config may say


def gate_impl_policy(setting, device_target, log=print):
    """``'native'`` or ``'fused'`` for a training / evaluation network (export always builds
    native). ``ZOO_GATE_IMPL`` overrides ``setting`` (``custom_ops.fused_kernel_policy``).

    Measured (2-core Zen 4, AVX-512, training steps alternated in one process): with the gate
    convolutions in oneDNN's direct kernel (``conv_impl: auto`` there) the CPU config's step is
    13-14 % faster fused (145 against 166 ms median); with the native convolutions it was ~4 %
    (benchmarks/README.md)."""
    return fused_kernel_policy(setting, device_target, key="gate_impl", env="ZOO_GATE_IMPL",
                               settings=GATE_SETTINGS, availability=availability,
                               what="LSTM gate math", log=log)
