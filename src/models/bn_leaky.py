"""Training-mode BatchNorm + leaky ReLU as fused CPU kernels (``ops.Custom(func_type="aot")``).

``bn_leaky(x, gamma, beta, moving_mean, moving_variance, hyper) -> (y, mean, istd)`` computes
``leaky_relu(batch_norm(x), slope)`` with the batch statistics, in one kernel forward and one
backward (``bn_leaky.cc`` has the formulas), where MindSpore's graph runs BatchNorm and four
element-wise kernels each way. ``hyper`` is a (3,) tensor ``(eps, keep, slope)``; the moving
statistics are updated in place as MindSpore's BatchNorm does (``keep`` is
``nn.BatchNorm2d``'s momentum: ``moving = keep * moving + (1 - keep) * batch``, the variance
unbiased). ``ConvBNLeaky(norm_impl='fused')`` uses it in training mode only: evaluation and export
run the native BatchNorm and leaky ReLU on the same parameters.

Built once per machine like the other kernels (``src.models.custom_ops``); ``norm_impl: auto``
falls back to native where it cannot be built. Importing this module costs nothing.
"""
import os

from src.models.custom_ops import AotLibrary, fused_kernel_policy

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bn_leaky.cc")
THREAD_POOL = os.path.join(os.path.dirname(SOURCE), "thread_pool.h")
# no -ffast-math: a NaN must reach the loss (a diverging run has to show it)
CXX_FLAGS = ("-O3", "-march=native", "-fno-trapping-math", "-shared", "-fPIC", "-std=c++14",
             "-pthread")
LIBRARY = AotLibrary(SOURCE, CXX_FLAGS, headers=(THREAD_POOL,))

NORM_IMPLS = ("native", "fused")  # what a layer computes with
NORM_SETTINGS = ("auto",) + NORM_IMPLS  # what the config may say


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


def norm_impl_policy(setting, device_target, log=print):
    """``'native'`` or ``'fused'`` BatchNorm + leaky ReLU for a training network (``ZOO_NORM_IMPL``
    overrides ``setting``; see ``custom_ops.fused_kernel_policy``)."""
    return fused_kernel_policy(setting, device_target, key="norm_impl", env="ZOO_NORM_IMPL",
                               settings=NORM_SETTINGS, availability=availability,
                               what="training BatchNorm + leaky ReLU", log=log)
