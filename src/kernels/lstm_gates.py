"""The ConvLSTM gate math of one step as fused CPU kernels (``ops.Custom(func_type="aot")``).

``lstm_gates(z, c, w_ci, w_cf, w_co) -> (h', c')`` computes what ``ConvLSTMCell.construct`` does
after the gate convolution (``lstm_gates.cc`` has the formulas), forward in one pass over the
state and backward (its bprop) in another, where MindSpore's graph runs ~13 and ~25 element-wise
kernels, each a pass over memory and a dispatch to the thread pool. The peepholes are the cell's
(C,) parameters themselves: their gradients come back summed over the batch and the map.

The library is compiled once per machine with the C++ compiler on PATH (``$CXX`` or ``g++``)
into the cache folder of ``src.kernels.tuning`` (the file name hashes the source, the
flags and the CPU's ISA flags). Without a compiler, :func:`availability` says why and
the cells stay native. Exported graphs never contain the custom op (export
builds the network with ``gate_impl: native``), so MindIR / ONNX run anywhere.

The gate math is measured against ``src.kernels.layers.reference_lstm_gates`` (the native kernel) on the
machine at hand by ``src.kernels.plan``.
"""
import os

from src.kernels.build import CSRC, AotLibrary

SOURCE = os.path.join(CSRC, "lstm_gates.cc")
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
