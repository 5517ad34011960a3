"""Tiny-DarkNet, exactly as darknet's ``cfg/tiny.cfg`` (pjreddie).

16 convolutions, stride 1, "same" padding. Conv 1-15: BatchNorm + leaky ReLU (slope 0.1), no bias.
Conv 16 (the classifier, 1x1 -> ``num_classes``): bias, no BatchNorm, linear. Max-pool 2x2/2 after
convs 1, 2, 6 and 10, then global average pooling (a mean over H, W: exports to ONNX and MindIR,
unlike AdaptiveAvgPool2D). The network returns logits; softmax lives in the loss.
"""
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore import Tensor

from src.kernels.fused_layers import bn_leaky_op
from src.kernels.layers import Conv2d, KernelSite, LeakyReLU, MaxPool2d

# (out_channels, kernel) per conv; "M" = max-pool 2x2 stride 2. The last conv is the classifier.
TINY_DARKNET_CFG = (
    (16, 3), "M", (32, 3), "M",
    (16, 1), (128, 3), (16, 1), (128, 3), "M",
    (32, 1), (256, 3), (32, 1), (256, 3), "M",
    (64, 1), (512, 3), (64, 1), (512, 3), (128, 1),
)
LEAKY_SLOPE = 0.1
BN_MOMENTUM = 0.9  # moving statistics: 0.9 * moving + 0.1 * batch
BN_EPS = 1e-5


class ConvBNLeaky(KernelSite, nn.Cell):
    """Conv (no bias) + BatchNorm + LeakyReLU(0.1): darknet's ``batch_normalize=1, leaky``.

    Kernel ``fused`` (set by ``src.kernels``): in training mode BatchNorm and leaky ReLU run as
    one CPU kernel each way (``src.kernels.fused_layers``; same parameters, moving statistics
    and values to float rounding); evaluation, export and a BatchNorm told to use its stored
    statistics in training (``use_batch_statistics=False``: a frozen backbone) run the native
    layers. Shape key: ``(out_channels, h, w)`` of the BatchNorm's input.
    """

    kernel_kind = "bn_leaky"

    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, kernel_size)
        self.bn = nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM, eps=BN_EPS)
        self.act = LeakyReLU(alpha=LEAKY_SLOPE)  # nn.LeakyReLU with a cheap gradient (CPU speed)
        self.fused_op = None
        # eps, the moving statistics' keep factor (nn.BatchNorm2d stores 1 - momentum), slope
        self.hyper = Tensor([self.bn.eps, 1.0 - self.bn.momentum, LEAKY_SLOPE], ms.float32)

    def set_kernel(self, impl):
        if impl not in ("native", "fused"):
            raise ValueError(f"ConvBNLeaky: impl must be native or fused, got {impl!r}")
        self.kernel_impl = impl
        self.fused_op = bn_leaky_op() if impl == "fused" else None

    def construct(self, x):
        x = self.conv(x)
        if self.shape_trace is not None:
            self.shape_trace(self, tuple(x.shape[1:]))
        if self.training and self.fused_op is not None and self.bn.use_batch_statistics is not False:
            bn = self.bn
            return self.fused_op(x, bn.gamma, bn.beta, bn.moving_mean, bn.moving_variance,
                                 self.hyper)[0]
        return self.act(self.bn(x))


class TinyDarkNet(nn.Cell):
    """Tiny-DarkNet classifier.

    Args:
        num_classes (int): outputs of the final 1x1 convolution.
        in_channels (int): image channels (3 for RGB).

    Input (N, in_channels, H, W) float32, any H, W divisible by 16. Output (N, num_classes) logits.
    """

    def __init__(self, num_classes=1000, in_channels=3):
        super().__init__()
        layers = []
        channels = in_channels
        for item in TINY_DARKNET_CFG:
            if item == "M":
                layers.append(MaxPool2d(kernel_size=2, stride=2))  # nn.MaxPool2d, faster backward
            else:
                layers.append(ConvBNLeaky(channels, *item))
                channels = item[0]
        self.features = nn.SequentialCell(layers)
        self.classifier = Conv2d(channels, num_classes, 1, has_bias=True)
        self.num_classes = num_classes

    def construct(self, x):
        x = self.classifier(self.features(x))
        return ops.mean(x, (2, 3))  # global average pooling -> (N, num_classes)


def tinydarknet(num_classes=1000, in_channels=3):
    """Factory used by :func:`src.models.create_model`."""
    return TinyDarkNet(num_classes=num_classes, in_channels=in_channels)
