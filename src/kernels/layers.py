"""Layers shared by the networks, with the kernel choices of this package as a switch.

Same parameters, values and gradients as ``nn.Conv2d``, ``nn.LeakyReLU`` and ``nn.MaxPool2d``
(checkpoints are interchangeable). A network builds them with plain sizes; which kernel a layer
runs is set afterwards by :mod:`src.kernels.plan` through :meth:`KernelSite.set_kernel` (one
decision per layer and run, see the package docstring). Every layer starts native.

* ``Conv2d``: ``native`` (MindSpore's op), ``unfold`` (im2col + GEMM: faster than oneDNN's
  per-image GEMMs on tiny maps of some CPUs) or ``onednn`` (oneDNN's direct convolution on
  blocked layouts as a custom op, :mod:`src.kernels.onednn_conv`).
* ``MaxPool2d``: ``native`` (``MaxPoolWithArgmax`` in training: MindSpore's ``MaxPoolGrad``
  re-runs the forward in a slow generic kernel) or ``fused`` (2x2 / stride 2 in C++,
  :mod:`src.kernels.fused_layers`).
* ``LeakyReLU``: ``(1 - alpha) * relu(x) + alpha * x``: one ``ReluGrad`` instead of
  ``Maximum``'s select-based gradient (15 % of a Tiny-DarkNet step on CPU).

Exported graphs never hold a custom op: export builds the network and sets no kernel.
"""
import mindspore.nn as nn
import mindspore.ops as ops

from src.kernels import fused_layers, onednn_conv
from src.kernels.tuning import CONV_IMPLS, SMALL_MAP_POSITIONS


class KernelSite:
    """A layer whose kernel is chosen per run (mixed into an ``nn.Cell``).

    ``kernel_kind``: what the choice is about (``conv``, ``bn_leaky``, ``max_pool``,
    ``lstm_gates``; :data:`src.kernels.plan.KINDS` lists the implementations of each).
    ``shape_trace``: None, or while :func:`src.kernels.plan.trace_sites` walks the network in
    PyNative mode, a callable ``(cell, key)`` the layer reports its shape key to.
    """

    kernel_kind = None
    kernel_impl = "native"
    shape_trace = None

    def set_kernel(self, impl):
        raise NotImplementedError


class Conv2d(KernelSite, nn.Conv2d):
    """``nn.Conv2d`` with ``pad_mode='pad'``; its kernel is ``native``, ``unfold`` or ``onednn``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, has_bias: as ``nn.Conv2d``
            (padding defaults to ``kernel_size // 2``: "same" output size at stride 1).
        weight_init, bias_init: as ``nn.Conv2d``.
        input_parts (int): in how many parts :meth:`concat_construct` gets the input (only the
            ``onednn`` op uses it: it reads the parts without a Concat kernel).

    Shape key: ``(in_channels, out_channels, kernel, h, w)`` of the input map.

    The im2col path: ``cols = unfold(x)`` is (N, C*k*k, L) with L = out_h * out_w; the weight
    reshaped to (O, C*k*k) multiplies it. For maps with more than ``SMALL_MAP_POSITIONS`` output
    positions that is one GEMM per image, ``W @ cols_n`` -> (N, O, L), already NCHW (no
    transpose), executed as a 1x1 convolution over the columns; for tiny maps the batch is folded
    into the GEMM: one (O, CKK) @ (CKK, N*L) ``ops.matmul`` after a (cheap, small) transpose.
    1x1 kernels have no im2col (``unfold`` runs them native).
    """

    kernel_kind = "conv"

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=None,
                 has_bias=False, weight_init="he_uniform", bias_init="zeros", input_parts=1):
        if padding is None:
            padding = kernel_size // 2
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, pad_mode="pad",
                         padding=padding, has_bias=has_bias, weight_init=weight_init,
                         bias_init=bias_init)
        self.k = kernel_size
        self.conv_stride = stride
        self.conv_padding = padding
        self.input_parts = int(input_parts)
        self.use_unfold = False
        self.onednn_op = self.onednn_concat_op = None
        self.prepare_op = self.prepared_op = self.prepared_concat_op = None  # see prepare()

    def set_kernel(self, impl):
        """Run this layer with ``impl`` (one of ``CONV_IMPLS``) from now on."""
        if impl not in CONV_IMPLS:
            raise ValueError(f"impl must be one of {', '.join(CONV_IMPLS)}, got {impl!r}")
        self.kernel_impl = impl
        self.use_unfold = impl == "unfold" and self.k > 1
        self.onednn_op = self.onednn_concat_op = None
        self.prepare_op = self.prepared_op = self.prepared_concat_op = None
        if impl != "onednn":
            return
        if not onednn_conv.supports(self.k, self.conv_stride, self.conv_padding):
            raise ValueError("impl 'onednn' needs stride 1, an odd kernel and padding "
                             f"kernel_size // 2, got kernel {self.k}, stride "
                             f"{self.conv_stride}, padding {self.conv_padding}")
        parts, bias = self.input_parts, self.has_bias
        self.onednn_op = onednn_conv.conv2d_op(bias=bias)
        if 1 < parts <= onednn_conv.MAX_PARTS:  # more: one Concat, then the op
            self.onednn_concat_op = onednn_conv.conv2d_op(parts, bias)
        if bias:
            self.prepare_op, self.prepared_op = onednn_conv.prepared_ops(1)
            if self.onednn_concat_op is not None:
                self.prepared_concat_op = onednn_conv.prepared_ops(parts)[1]

    def prepare(self, x_like):
        """The weights of this layer prepared for many calls in one step, or None.

        With ``impl='onednn'`` and a bias: the weights reordered once into oneDNN's layout
        (``src.kernels.onednn_conv.prepared_ops``; ``x_like``: any (N, *, H, W) tensor of the
        input's batch and map size); pass them to every call of the step (``construct(x,
        prepared)``) and the per-call weight reorders, forward and in the weight gradient, go
        away. Otherwise None, which the calls accept as well.
        """
        if self.prepare_op is None:
            return None
        return self.prepare_op(x_like, self.weight)

    def concat_construct(self, parts, prepared=None):
        """The convolution of ``ops.cat(parts, 1)``, a tuple of (N, C_i, H, W) tensors whose
        channels add up to ``in_channels``. With ``impl='onednn'`` and ``input_parts=len(parts)``
        the op reads the parts itself and splits the input gradient: no Concat kernel, no slicing
        in the backward pass. ``prepared``: from :meth:`prepare` (or None)."""
        if self.onednn_concat_op is not None and len(parts) == self.input_parts:
            if prepared is not None:
                return self.prepared_concat_op(*parts, prepared, self.bias)
            if self.has_bias:
                return self.onednn_concat_op(*parts, self.weight, self.bias)
            return self.onednn_concat_op(*parts, self.weight)
        return self.construct(ops.cat(parts, 1), prepared)

    def construct(self, x, prepared=None):
        return self._convolve(x, self.weight, prepared)

    def prefix_construct(self, x):
        """The convolution of ``ops.cat([x, zeros], 1)`` (``x``: the first C_x of the
        ``in_channels`` input channels, the rest zero, as a ConvLSTM gate convolution over
        ``concat([x, h])`` at its first step, h = 0): computed from the weights of those C_x
        channels only, which skips the zeros' share of the work in every direction."""
        return self._convolve(x, self.weight[:, :x.shape[1]])

    def _convolve(self, x, weight, prepared=None):
        """This layer's convolution of ``x`` with ``weight`` (``self.weight`` or its first input
        channels) and the bias; ``prepared``: the weights from :meth:`prepare`."""
        if self.shape_trace is not None:  # the shape walk: the output's shape, nothing computed
            self.shape_trace(self, (self.in_channels, self.out_channels, self.k) + tuple(x.shape[2:]))
            n, _, h, w = x.shape
            p, k, st = self.conv_padding, self.k, self.conv_stride
            return ops.zeros((n, self.out_channels, (h + 2 * p - k) // st + 1,
                              (w + 2 * p - k) // st + 1), x.dtype)
        if self.onednn_op is not None:  # the bias is added inside the op
            if prepared is not None:
                return self.prepared_op(x, prepared, self.bias)
            return self.onednn_op(x, weight, self.bias) if self.has_bias else self.onednn_op(x, weight)
        if not self.use_unfold:
            out = self.conv2d(x, weight)
            return self.bias_add(out, self.bias) if self.has_bias else out
        n, _, h, w = x.shape
        k, s, p = self.k, self.conv_stride, self.conv_padding
        out_h = (h + 2 * p - k) // s + 1
        out_w = (w + 2 * p - k) // s + 1
        positions = out_h * out_w
        cols = ops.unfold(x, kernel_size=k, dilation=1, padding=p, stride=s)  # (N, C*k*k, L)
        if positions > SMALL_MAP_POSITIONS:
            # the GEMM W (O, CKK) x cols_n (CKK, L) for every image, run as a 1x1 convolution of
            # the (N, CKK, 1, L) columns: oneDNN's GEMM, and its backward is two plain GEMMs
            # (ops.matmul would broadcast W to (N, O, CKK) and reduce dW over N: ~25% slower)
            out = ops.conv2d(cols.reshape(n, cols.shape[1], 1, positions),
                             weight.reshape(self.out_channels, cols.shape[1], 1, 1))
            if self.has_bias:
                out = out + self.bias.reshape(1, -1, 1, 1)
            return out.reshape(n, self.out_channels, out_h, out_w)
        weight = weight.reshape(self.out_channels, -1)  # (O, C*k*k)
        cols = cols.transpose(1, 0, 2).reshape(cols.shape[1], n * positions)  # (C*k*k, N*L)
        out = ops.matmul(weight, cols)  # (O, N*L): one GEMM over the whole batch
        if self.has_bias:
            out = out + self.bias.reshape(-1, 1)
        return out.reshape(self.out_channels, n, out_h, out_w).transpose(1, 0, 2, 3)


class LeakyReLU(nn.LeakyReLU):
    """``nn.LeakyReLU`` (``max(x, alpha * x)``, 0 <= alpha <= 1) computed as
    ``(1 - alpha) * relu(x) + alpha * x``.

    Same values as ``nn.LeakyReLU(alpha)`` (to one float rounding on the positive side) and the
    same gradient (1 or alpha), but the backward pass is one ``ReluGrad`` and two multiplies
    instead of ``Maximum``'s select-based gradient: ~5x faster forward + backward on CPU.
    A subclass, so ``isinstance(cell, nn.LeakyReLU)`` holds. Exports to MindIR and ONNX
    (Relu, Mul, Add).
    """

    def __init__(self, alpha=0.2):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"LeakyReLU alpha must be in [0, 1], got {alpha}")
        super().__init__(alpha=alpha)
        self.slope = float(alpha)
        self.relu_scale = 1.0 - float(alpha)

    def construct(self, x):
        return self.relu_scale * ops.relu(x) + self.slope * x


def reference_lstm_gates(z, c, w_ci, w_cf, w_co):
    """``(h', c')`` of a ConvLSTM step from the gate convolution's output ``z`` (N, 4*Ch, H, W;
    gates i, f, c~, o) and the state ``c`` as MindSpore ops: the ``native`` kernel of
    ``ConvLSTMCell`` and what :mod:`src.kernels.lstm_gates` computes fused. The peepholes
    broadcast against ``c``."""
    zi, zf, zg, zo = ops.split(z, c.shape[1], axis=1)
    i = ops.sigmoid(zi + w_ci * c)
    f = ops.sigmoid(zf + w_cf * c)
    c_new = f * c + i * ops.tanh(zg)
    o = ops.sigmoid(zo + w_co * c_new)
    h_new = o * ops.tanh(c_new)
    return h_new, c_new


def _argmax_pool(kernel_size, stride):
    """``ops.MaxPoolWithArgmax``, without MindSpore's deprecation warning.

    The op is deprecated since MindSpore 2.0 in favour of ``MaxPoolWithArgmaxV2``, whose CPU
    backward is about 20x slower for the same gradients (forward + backward of a 32x32 map of 64
    channels at batch 32; docs/history.md has the timing). The one-time warning would otherwise
    be the first line of every training run's stderr, ahead of e.g. a one-line user error.
    """
    try:
        from mindspore.common import _decorator
        _decorator.DEPRECATE_SET.add("MaxPoolWithArgmax2.0")  # the key the warning is logged once by
    except (ImportError, AttributeError):  # another MindSpore: then the warning shows, nothing else
        pass
    return ops.MaxPoolWithArgmax(kernel_size=kernel_size, strides=stride, pad_mode="valid")


class MaxPool2d(KernelSite, nn.MaxPool2d):
    """``nn.MaxPool2d`` (``pad_mode='valid'``) whose training-mode backward is ~1.8x faster on CPU.

    MindSpore's ``MaxPoolGrad`` on CPU re-runs the pooling forward inside oneDNN with its generic
    ``simple_nchw`` kernel (no jit kernel for plain NCHW) to find the maxima: that re-run alone was
    24% of a Tiny-DarkNet 224x224 training step. In training mode this layer pools with
    ``MaxPoolWithArgmax`` instead, whose backward scatters through the saved argmax; the values
    and gradients are identical to ``nn.MaxPool2d`` (ties go to the first maximum in both). In
    inference mode (``set_train(False)``: evaluation, export to MindIR / ONNX) it is the plain
    ``MaxPool`` op.

    Kernel ``fused`` (2x2 windows with stride 2 only; CPU): training pools with the C++ kernel of
    :mod:`src.kernels.fused_layers` instead (same values and gradients, ~2x faster forward +
    backward on Tiny-DarkNet's maps). Shape key: ``(channels, h, w)`` of the input.
    """

    kernel_kind = "max_pool"

    def __init__(self, kernel_size=1, stride=1):
        super().__init__(kernel_size=kernel_size, stride=stride, pad_mode="valid")
        self.argmax_pool = _argmax_pool(kernel_size, stride)
        self.fused_pool = None
        pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
        self.fusable = pair(kernel_size) == (2, 2) and pair(stride) == (2, 2)

    def set_kernel(self, impl):
        if impl not in ("native", "fused"):
            raise ValueError(f"MaxPool2d: impl must be native or fused, got {impl!r}")
        if impl == "fused" and not self.fusable:
            raise ValueError("MaxPool2d: impl 'fused' pools 2x2 windows with stride 2")
        self.kernel_impl = impl
        self.fused_pool = fused_layers.max_pool_op() if impl == "fused" else None

    def construct(self, x):
        if self.shape_trace is not None:
            self.shape_trace(self, tuple(x.shape[1:]))
        if self.training:
            if self.fused_pool is not None:
                return self.fused_pool(x)
            return self.argmax_pool(x)[0]
        return super().construct(x)
