"""Tiny-DarkNet's training-mode layers as fused CPU kernels (``ops.Custom(func_type="aot")``).

* ``bn_leaky(x, gamma, beta, moving_mean, moving_variance, hyper) -> (y, mean, istd)``:
  ``leaky_relu(batch_norm(x), slope)`` with the batch statistics, one kernel forward and one
  backward, where MindSpore's graph runs BatchNorm and four element-wise kernels each way.
  ``hyper`` is a (3,) tensor ``(eps, keep, slope)``; the moving statistics are updated in place
  as MindSpore's BatchNorm does (``moving = keep * moving + (1 - keep) * batch``, the variance
  unbiased; ``keep`` = ``nn.BatchNorm2d``'s momentum).
* ``max_pool(x)``: 2x2 max-pool with stride 2 whose backward recomputes each window's first
  maximum from x and the output, instead of MindSpore's ``MaxPoolWithArgmax`` and its gradient.

``csrc/fused_layers.cc`` has the formulas. ``ConvBNLeaky`` and ``layers.MaxPool2d`` with the
``fused`` kernel use them in training mode only: evaluation and export run the native layers on
the same parameters. Built once per machine like the other kernels (``src.kernels.build``);
``src.kernels.plan`` measures them against the native layers (``layer_impl: auto``).
"""
import os

from src.kernels.build import CSRC, AotLibrary

SOURCE = os.path.join(CSRC, "fused_layers.cc")
THREAD_POOL = os.path.join(os.path.dirname(SOURCE), "thread_pool.h")
# no -ffast-math: a NaN must reach the loss (a diverging run has to show it)
CXX_FLAGS = ("-O3", "-march=native", "-fno-trapping-math", "-shared", "-fPIC", "-std=c++14",
             "-pthread")
LIBRARY = AotLibrary(SOURCE, CXX_FLAGS, headers=(THREAD_POOL,))



def availability():
    """``(True, library path)`` or ``(False, why not)``; built once per process."""
    return LIBRARY.availability()


def _make_op():
    path = LIBRARY.require("the fused BatchNorm + leaky ReLU kernels")
    import mindspore.ops as ops

    def outputs(x, gamma, *rest):  # y like x; the batch mean and 1/std like gamma
        return x, gamma, gamma

    backward = ops.Custom(f"{path}:BnLeakyBackward",
                          out_shape=lambda x, g, b, m, s, hyper, dy: (x, g, g, g, g, hyper),
                          out_dtype=lambda x, g, b, m, s, hyper, dy: (x, g, g, g, g, hyper),
                          func_type="aot")

    def bprop(x, gamma, beta, moving_mean, moving_var, hyper, out, dout):
        return backward(x, gamma, beta, out[1], out[2], hyper, dout[0])

    return ops.Custom(f"{path}:BnLeakyForward", out_shape=outputs, out_dtype=outputs,
                      func_type="aot", bprop=bprop)


def bn_leaky_op():
    """The fused forward op (a ``Custom`` primitive with its bprop); one per process."""
    return LIBRARY.cached_op("forward", _make_op)


def _make_pool():
    path = LIBRARY.require("the fused max-pool kernels")
    import mindspore.ops as ops

    backward = ops.Custom(f"{path}:MaxPool2x2Backward", out_shape=lambda x, y, dy: x,
                          out_dtype=lambda x, y, dy: x, func_type="aot")

    def bprop(x, out, dout):
        return (backward(x, out, dout),)

    return ops.Custom(f"{path}:MaxPool2x2Forward",
                      out_shape=lambda x: [x[0], x[1], x[2] // 2, x[3] // 2],
                      out_dtype=lambda x: x, func_type="aot", bprop=bprop)


def max_pool_op():
    """2x2 / stride 2 max-pool (a ``Custom`` primitive with its bprop); one per process."""
    return LIBRARY.cached_op("max_pool", _make_pool)
