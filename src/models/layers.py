"""Layers shared by the networks.

``Conv2d`` is a drop-in ``nn.Conv2d`` (same parameter names ``weight``/``bias``, same shapes, so
checkpoints are interchangeable) that can compute k x k convolutions as ``unfold`` + ``matmul``.
MindSpore 2.10 on CPU runs k > 1 convolutions on a slow reference oneDNN kernel; im2col + GEMM is
20-50x faster there. GPU/Ascend keep the native op, and so does export (ONNX has no Im2Col).
"""
import mindspore.nn as nn
import mindspore.ops as ops


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` with ``pad_mode='pad'`` and an optional im2col + GEMM path.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, has_bias: as ``nn.Conv2d``.
        use_unfold (bool): compute with ``ops.unfold`` + ``ops.matmul`` (fast on CPU). Ignored
            for 1x1 kernels, where the native op is already fast.
        weight_init: as ``nn.Conv2d``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=None,
                 has_bias=False, use_unfold=False, weight_init="he_uniform", bias_init="zeros"):
        if padding is None:
            padding = kernel_size // 2
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, pad_mode="pad",
                         padding=padding, has_bias=has_bias, weight_init=weight_init,
                         bias_init=bias_init)
        self.k = kernel_size
        self.conv_stride = stride
        self.conv_padding = padding
        self.use_unfold = bool(use_unfold) and kernel_size > 1

    def construct(self, x):
        if not self.use_unfold:
            return super().construct(x)
        n, _, h, w = x.shape
        k, s, p = self.k, self.conv_stride, self.conv_padding
        out_h = (h + 2 * p - k) // s + 1
        out_w = (w + 2 * p - k) // s + 1
        cols = ops.unfold(x, kernel_size=k, dilation=1, padding=p, stride=s)  # (N, C*k*k, L)
        weight = self.weight.reshape(self.out_channels, -1)  # (O, C*k*k)
        out = ops.matmul(weight, cols)  # (N, O, L)
        if self.has_bias:
            out = out + self.bias.reshape(1, -1, 1)
        return out.reshape(n, self.out_channels, out_h, out_w)
