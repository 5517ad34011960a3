"""Layers shared by the networks: fast-on-CPU drop-ins for ``nn.Conv2d``, ``nn.LeakyReLU`` and
``nn.MaxPool2d`` (same parameters, values and gradients; checkpoints are interchangeable).

``Conv2d`` can compute k x k convolutions as im2col (``ops.unfold``) + GEMM. Which way is faster
depends on the CPU's oneDNN kernels. Measured with ``benchmarks/benchmark.py`` on a 2-core AMD
EPYC (Zen 2, AVX2/FMA), MindSpore 2.10: oneDNN runs ``nn.Conv2d`` as its jit im2col + sgemm
kernel (``x64:gemm:jit``), and the native op is the faster one for every map larger than 4x4
(ConvLSTM 5x5 128->512 layer, forward + backward: 157 GFLOP/s native, 90 with the im2col +
batched ``ops.matmul`` this layer used to have, 79 with the im2col path now); im2col + one GEMM
over the whole batch wins on tiny maps (2x2, batch 32: 48 vs 25-32 GFLOP/s), where oneDNN's
per-image GEMMs are too small. ``use_unfold='small'`` takes exactly those wins (native except on
maps of <= ``TINY_MAP_POSITIONS`` positions); ``use_unfold=True`` is im2col everywhere, for CPUs
whose oneDNN falls back to a reference convolution. See ``benchmarks/README.md``. ``impl='native'
| 'unfold'`` fixes one layer's implementation: the networks take a per-layer choice, measured on
the machine at hand by ``src.model_utils.cpu_tuning.conv_impl_policy``. ``impl='onednn'`` runs the
layer through oneDNN's direct kernels on blocked layouts (``src.models.onednn_conv``), the fastest
path on the AVX-512 CPUs measured (benchmarks/README.md).

``LeakyReLU``: MindSpore builds leaky ReLU as ``maximum(alpha * x, x)``, whose gradient costs three
``Select`` plus comparisons (15% of a Tiny-DarkNet training step on CPU);
``(1 - alpha) * relu(x) + alpha * x`` has the same values and a single ``ReluGrad``.

``MaxPool2d``: MindSpore's CPU ``MaxPoolGrad`` re-runs the pooling forward in a slow generic kernel;
in training mode this layer pools with ``MaxPoolWithArgmax`` (same values and gradients, faster).
"""
import mindspore.nn as nn
import mindspore.ops as ops

# output positions per image at or below which the im2col path uses one 2-D GEMM over the whole
# batch, (O, C*k*k) @ (C*k*k, N*L), instead of N per-image GEMMs (O, C*k*k) @ (C*k*k, L): the
# transposes cost less than the small GEMMs lose there (measured: 2x2 and 4x4 maps, batch 32)
SMALL_MAP_POSITIONS = 16
# use_unfold='small': output positions at or below which that batched im2col GEMM replaces the
# native op (measured, batch 32: faster on 2x2 maps, slower than oneDNN from 4x4 up)
TINY_MAP_POSITIONS = 4
# Conv2d(impl=...): one layer's implementation (onednn: src.models.onednn_conv, CPU only)
CONV_IMPLS = ("native", "unfold", "onednn")


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with ``pad_mode='pad'`` and an optional im2col + GEMM path.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, has_bias: as ``nn.Conv2d``
            (padding defaults to ``kernel_size // 2``: "same" output size at stride 1).
        use_unfold (bool or 'small'): True: compute every k x k convolution as ``ops.unfold``
            + GEMM; ``'small'``: only those whose output map has at most ``TINY_MAP_POSITIONS``
            positions, the native op elsewhere (the fastest mix where oneDNN's jit convolution
            is available); False: the native op. Ignored for 1x1 kernels (a 1x1 convolution
            already is a GEMM in oneDNN). Same parameters, same results (to float rounding) and
            the same gradients as the native op in every mode.
        impl (str or None): ``'native'``, ``'unfold'`` (im2col + GEMM; 1x1 kernels stay
            native) or ``'onednn'`` (oneDNN's direct convolution on blocked layouts,
            ``src.models.onednn_conv``: CPU, float32, stride 1, "same" padding, odd kernels) for
            this layer; when given it replaces ``use_unfold``.
        weight_init, bias_init: as ``nn.Conv2d``.
        input_parts (int): in how many parts :meth:`concat_construct` gets the input (only the
            ``'onednn'`` op uses it: it reads the parts without a Concat kernel).

    The im2col path: ``cols = unfold(x)`` is (N, C*k*k, L) with L = out_h * out_w; the weight
    reshaped to (O, C*k*k) multiplies it. For maps with more than ``SMALL_MAP_POSITIONS`` output
    positions that is one GEMM per image, ``W @ cols_n`` -> (N, O, L), already NCHW (no
    transpose), executed as a 1x1 convolution over the columns; for tiny maps the batch is folded
    into the GEMM: one (O, CKK) @ (CKK, N*L) ``ops.matmul`` after a (cheap, small) transpose.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=None,
                 has_bias=False, use_unfold=False, weight_init="he_uniform", bias_init="zeros",
                 impl=None, input_parts=1):
        if padding is None:
            padding = kernel_size // 2
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, pad_mode="pad",
                         padding=padding, has_bias=has_bias, weight_init=weight_init,
                         bias_init=bias_init)
        self.k = kernel_size
        self.conv_stride = stride
        self.conv_padding = padding
        self.onednn_op = None
        self.onednn_concat_op = None
        self.prepare_op = self.prepared_op = self.prepared_concat_op = None  # see prepare()
        self.input_parts = int(input_parts)
        if impl is not None:
            if impl not in CONV_IMPLS:
                raise ValueError(f"impl must be one of {', '.join(CONV_IMPLS)}, got {impl!r}")
            use_unfold = impl == "unfold"
            if impl == "onednn":
                from src.models import onednn_conv
                if not onednn_conv.supports(kernel_size, stride, padding):
                    raise ValueError("impl 'onednn' needs stride 1, an odd kernel and padding "
                                     f"kernel_size // 2, got kernel {kernel_size}, stride "
                                     f"{stride}, padding {padding}")
                self.onednn_op = onednn_conv.conv2d_op(bias=has_bias)
                if 1 < input_parts <= onednn_conv.MAX_PARTS:  # more: one Concat, then the op
                    self.onednn_concat_op = onednn_conv.conv2d_op(input_parts, has_bias)
                if has_bias:
                    self.prepare_op, self.prepared_op = onednn_conv.prepared_ops(1)
                    if self.onednn_concat_op is not None:
                        self.prepared_concat_op = onednn_conv.prepared_ops(input_parts)[1]
        if isinstance(use_unfold, str):
            if use_unfold != "small":
                raise ValueError(f"use_unfold must be True, False or 'small', got {use_unfold!r}")
            everywhere, small_maps = False, True
        else:
            everywhere = small_maps = bool(use_unfold)
        self.use_unfold = everywhere and kernel_size > 1  # im2col on every map
        self.unfold_small_maps = small_maps and kernel_size > 1  # im2col on tiny maps

    def prepare(self, x_like):
        """The weights of this layer prepared for many calls in one step, or None.

        With ``impl='onednn'`` and a bias: the weights reordered once into oneDNN's layout
        (``src.models.onednn_conv.prepared_ops``; ``x_like``: any (N, *, H, W) tensor of the
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
        if self.onednn_op is not None:  # the bias is added inside the op
            if prepared is not None:
                return self.prepared_op(x, prepared, self.bias)
            return self.onednn_op(x, weight, self.bias) if self.has_bias else self.onednn_op(x, weight)
        if not self.unfold_small_maps:
            out = self.conv2d(x, weight)
            return self.bias_add(out, self.bias) if self.has_bias else out
        n, _, h, w = x.shape
        k, s, p = self.k, self.conv_stride, self.conv_padding
        out_h = (h + 2 * p - k) // s + 1
        out_w = (w + 2 * p - k) // s + 1
        positions = out_h * out_w
        if positions > TINY_MAP_POSITIONS and not self.use_unfold:
            out = self.conv2d(x, weight)
            return self.bias_add(out, self.bias) if self.has_bias else out
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


def _argmax_pool(kernel_size, stride):
    """``ops.MaxPoolWithArgmax``, without MindSpore's deprecation warning.

    The op is deprecated since MindSpore 2.0 in favour of ``MaxPoolWithArgmaxV2``, whose CPU
    backward is ~20x slower (batch 32, 64 channels, 32x32, forward + backward: 21.6 ms vs 436 ms
    on a 2-core AMD EPYC Zen 4, identical gradients). The one-time warning would otherwise be the
    first line of every training run's stderr, ahead of e.g. a one-line user error.
    """
    try:
        from mindspore.common import _decorator
        _decorator.DEPRECATE_SET.add("MaxPoolWithArgmax2.0")  # the key the warning is logged once by
    except (ImportError, AttributeError):  # another MindSpore: then the warning shows, nothing else
        pass
    return ops.MaxPoolWithArgmax(kernel_size=kernel_size, strides=stride, pad_mode="valid")


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d`` (``pad_mode='valid'``) whose training-mode backward is ~1.8x faster on CPU.

    MindSpore's ``MaxPoolGrad`` on CPU re-runs the pooling forward inside oneDNN with its generic
    ``simple_nchw`` kernel (no jit kernel for plain NCHW) to find the maxima: that re-run alone was
    24% of a Tiny-DarkNet 224x224 training step. In training mode this layer pools with
    ``MaxPoolWithArgmax`` instead, whose backward scatters through the saved argmax; the values
    and gradients are identical to ``nn.MaxPool2d`` (ties go to the first maximum in both). In
    inference mode (``set_train(False)``: evaluation, export to MindIR / ONNX) it is the plain
    ``MaxPool`` op.

    ``impl='fused'`` (2x2 windows with stride 2 only; CPU): training pools with the C++ kernel of
    ``src.models.fused_layers`` instead (same values and gradients, ~2x faster forward +
    backward on Tiny-DarkNet's maps).
    """

    def __init__(self, kernel_size=1, stride=1, impl="native"):
        super().__init__(kernel_size=kernel_size, stride=stride, pad_mode="valid")
        if impl not in ("native", "fused"):
            raise ValueError(f"MaxPool2d: impl must be native or fused, got {impl!r}")
        self.argmax_pool = _argmax_pool(kernel_size, stride)
        self.fused_pool = None
        if impl == "fused":
            pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
            if pair(kernel_size) != (2, 2) or pair(stride) != (2, 2):
                raise ValueError("MaxPool2d: impl 'fused' pools 2x2 windows with stride 2, got "
                                 f"kernel_size {kernel_size}, stride {stride}")
            from src.models.fused_layers import max_pool_op
            self.fused_pool = max_pool_op()

    def construct(self, x):
        if self.training:
            if self.fused_pool is not None:
                return self.fused_pool(x)
            return self.argmax_pool(x)[0]
        return super().construct(x)
