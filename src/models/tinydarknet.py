"""Tiny-DarkNet, exactly as darknet's ``cfg/tiny.cfg`` (pjreddie).

16 convolutions, stride 1, "same" padding. Conv 1-15: BatchNorm + leaky ReLU (slope 0.1), no bias.
Conv 16 (the classifier, 1x1 -> ``num_classes``): bias, no BatchNorm, linear. Max-pool 2x2/2 after
convs 1, 2, 6 and 10, then global average pooling (a mean over H, W: exports to ONNX and MindIR,
unlike AdaptiveAvgPool2D). The network returns logits; softmax lives in the loss.
"""
import mindspore.nn as nn
import mindspore.ops as ops

from src.models.layers import Conv2d, LeakyReLU, MaxPool2d

# (out_channels, kernel) per conv; "M" = max-pool 2x2 stride 2. The last conv is the classifier.
TINY_DARKNET_CFG = (
    (16, 3), "M", (32, 3), "M",
    (16, 1), (128, 3), (16, 1), (128, 3), "M",
    (32, 1), (256, 3), (32, 1), (256, 3), "M",
    (64, 1), (512, 3), (64, 1), (512, 3), (128, 1),
)
LEAKY_SLOPE = 0.1


class ConvBNLeaky(nn.Cell):
    """Conv (no bias) + BatchNorm + LeakyReLU(0.1): darknet's ``batch_normalize=1, leaky``."""

    def __init__(self, in_channels, out_channels, kernel_size, use_unfold=False):
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, kernel_size, use_unfold=use_unfold)
        self.bn = nn.BatchNorm2d(out_channels, momentum=0.9, eps=1e-5)
        self.act = LeakyReLU(alpha=LEAKY_SLOPE)  # nn.LeakyReLU with a cheap gradient (CPU speed)

    def construct(self, x):
        return self.act(self.bn(self.conv(x)))


class TinyDarkNet(nn.Cell):
    """Tiny-DarkNet classifier.

    Args:
        num_classes (int): outputs of the final 1x1 convolution.
        in_channels (int): image channels (3 for RGB).
        use_unfold (bool): compute 3x3 convolutions as im2col + GEMM (fast on CPU; same weights).

    Input (N, in_channels, H, W) float32, any H, W divisible by 16. Output (N, num_classes) logits.
    """

    def __init__(self, num_classes=1000, in_channels=3, use_unfold=False):
        super().__init__()
        layers, channels = [], in_channels
        for item in TINY_DARKNET_CFG:
            if item == "M":
                layers.append(MaxPool2d(kernel_size=2, stride=2))  # nn.MaxPool2d, faster backward
            else:
                out_channels, kernel = item
                layers.append(ConvBNLeaky(channels, out_channels, kernel, use_unfold=use_unfold))
                channels = out_channels
        self.features = nn.SequentialCell(layers)
        self.classifier = Conv2d(channels, num_classes, 1, has_bias=True)
        self.num_classes = num_classes

    def construct(self, x):
        x = self.classifier(self.features(x))
        return ops.mean(x, (2, 3))  # global average pooling -> (N, num_classes)


def tinydarknet(num_classes=1000, in_channels=3, use_unfold=False):
    """Factory used by :func:`src.models.create_model`."""
    return TinyDarkNet(num_classes=num_classes, in_channels=in_channels, use_unfold=use_unfold)
