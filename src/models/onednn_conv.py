"""Stride-1 "same" convolutions on CPU through oneDNN's direct (blocked-layout) kernels.

MindSpore 2.10's CPU ``Conv2D`` hands oneDNN plain NCHW tensors, so oneDNN can only run its
im2col + GEMM kernel (``x64:gemm:jit``) or, on AVX-512 CPUs without the ISA cap, a plain-layout
kernel 10-100x slower. ``onednn_conv.cc`` creates the same convolution in the same library
(``mindspore/lib/libdnnl.so.3``, the instance MindSpore already loaded) with "any" memory formats,
so oneDNN picks its direct convolutions on nChw8c / nChw16c layouts (what PyTorch gets from
oneDNN), and reorders the plain tensors around each call. Forward, input gradient and weight
gradient are three AOT custom ops; :func:`conv2d_op` returns the forward op with its bprop.

Scope: float32, stride 1, odd square kernels with "same" zero padding (``k // 2``), no dilation,
one group; the bias is added outside (``ops.bias_add``). ``src.models.layers.Conv2d(impl="onednn")``
uses it; which layers do is measured per machine by ``src.model_utils.cpu_tuning``. Exported
graphs never contain it (export builds native convolutions).

The library is compiled on first use (``src.models.custom_ops``) and linked against MindSpore's
own ``libdnnl.so.3``. ``ZOO_ONEDNN_THREADS`` sets its thread count (default: the usable cores).

Importing this module costs nothing: MindSpore is imported on first use.
"""
import os

from src.models.custom_ops import AotLibrary

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "onednn_conv.cc")
CXX_FLAGS = ("-O2", "-shared", "-fPIC", "-std=c++14", "-pthread")


def _link_args():
    from src.model_utils.cpu_tuning import onednn_library
    lib = onednn_library()
    if lib is None:
        return None, "MindSpore's bundled libdnnl.so.3 was not found"
    folder = os.path.dirname(lib)
    return ("-L" + folder, "-l:" + os.path.basename(lib), "-Wl,-rpath," + folder), None


LIBRARY = AotLibrary(SOURCE, CXX_FLAGS, link_args=_link_args)


def availability():
    """``(True, library path)`` or ``(False, why not)``; built once per process."""
    return LIBRARY.availability()


def supports(kernel_size, stride=1, padding=None, dilation=1, group=1):
    """Whether a convolution is one the oneDNN op computes (odd k, stride 1, "same" padding)."""
    padding = kernel_size // 2 if padding is None else padding
    return (kernel_size % 2 == 1 and stride == 1 and padding == kernel_size // 2
            and dilation == 1 and group == 1)


def _make_op():
    path = LIBRARY.require("the oneDNN convolution kernels")
    import mindspore.ops as ops

    backward_data = ops.Custom(f"{path}:ConvBackwardData", out_shape=lambda dy, w, x: x,
                               out_dtype=lambda dy, w, x: x, func_type="aot")
    backward_weights = ops.Custom(f"{path}:ConvBackwardWeights", out_shape=lambda x, dy, w: w,
                                  out_dtype=lambda x, dy, w: w, func_type="aot")

    def bprop(x, w, out, dout):
        # the third input of each gradient op only gives the shape of its output
        return backward_data(dout, w, x), backward_weights(x, dout, w)

    return ops.Custom(f"{path}:ConvForward", out_shape=lambda x, w: [x[0], w[0], x[2], x[3]],
                      out_dtype=lambda x, w: x, func_type="aot", bprop=bprop)


def conv2d_op():
    """``op(x (N, C, H, W), w (O, C, k, k)) -> (N, O, H, W)``, with its bprop; one per process."""
    return LIBRARY.cached_op("conv2d", _make_op)
