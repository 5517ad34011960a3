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

from src.models.fused_layers import LAYER_IMPLS
from src.models.layers import Conv2d, LeakyReLU, MaxPool2d

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


class ConvBNLeaky(nn.Cell):
    """Conv (no bias) + BatchNorm + LeakyReLU(0.1): darknet's ``batch_normalize=1, leaky``.

    ``layer_impl='fused'``: in training mode BatchNorm and leaky ReLU run as one CPU kernel each
    way (``src.models.fused_layers``; same parameters, moving statistics and values to float
    rounding); evaluation, export and a BatchNorm told to use its stored statistics in training
    (``use_batch_statistics=False``: a frozen backbone) run the native layers.
    """

    def __init__(self, in_channels, out_channels, kernel_size, use_unfold=False, impl=None,
                 layer_impl="native"):
        super().__init__()
        if layer_impl not in LAYER_IMPLS:
            raise ValueError(f"ConvBNLeaky: layer_impl must be one of {', '.join(LAYER_IMPLS)}, "
                             f"got {layer_impl!r}")
        self.conv = Conv2d(in_channels, out_channels, kernel_size, use_unfold=use_unfold, impl=impl)
        self.bn = nn.BatchNorm2d(out_channels, momentum=BN_MOMENTUM, eps=BN_EPS)
        self.act = LeakyReLU(alpha=LEAKY_SLOPE)  # nn.LeakyReLU with a cheap gradient (CPU speed)
        self.fused_op = None
        if layer_impl == "fused":
            from src.models.fused_layers import bn_leaky_op
            self.fused_op = bn_leaky_op()
            # eps, the moving statistics' keep factor (nn.BatchNorm2d stores 1 - momentum), slope
            self.hyper = Tensor([self.bn.eps, 1.0 - self.bn.momentum, LEAKY_SLOPE], ms.float32)

    def construct(self, x):
        x = self.conv(x)
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
        use_unfold (bool): compute 3x3 convolutions as im2col + GEMM (same weights).
        conv_impl (callable or None): ``conv_impl(in_ch, out_ch, k, h, w) -> "native" | "unfold"``
            per convolution (e.g. ``src.model_utils.cpu_tuning.conv_impl_policy``); replaces
            ``use_unfold``. Needs ``image_size``.
        image_size (int or None): input height = width, to give ``conv_impl`` each layer's map
            size (the network itself accepts any size divisible by 16).
        layer_impl (str): ``'native'`` or ``'fused'`` BatchNorm + leaky ReLU and max-pools in
            training (``ConvBNLeaky``, ``layers.MaxPool2d``; CPU only).

    Input (N, in_channels, H, W) float32, any H, W divisible by 16. Output (N, num_classes) logits.
    """

    def __init__(self, num_classes=1000, in_channels=3, use_unfold=False, conv_impl=None,
                 image_size=None, layer_impl="native"):
        super().__init__()
        if conv_impl is not None and not image_size:
            raise ValueError("TinyDarkNet: conv_impl needs image_size (the input height/width)")
        layers = []
        for item in _plan(in_channels, image_size or 0):
            if item == "M":
                # nn.MaxPool2d with a faster backward
                layers.append(MaxPool2d(kernel_size=2, stride=2, impl=layer_impl))
            else:
                channels, out_channels, kernel, size = item
                impl = conv_impl(channels, out_channels, kernel, size, size) if conv_impl else None
                layers.append(ConvBNLeaky(channels, out_channels, kernel, use_unfold=use_unfold,
                                          impl=impl, layer_impl=layer_impl))
        self.features = nn.SequentialCell(layers)
        head = (TINY_DARKNET_CFG[-1][0], num_classes, 1, (image_size or 0) // 16)
        self.classifier = Conv2d(*head[:3], has_bias=True,
                                 impl=conv_impl(*head, head[3]) if conv_impl else None)
        self.num_classes = num_classes

    def construct(self, x):
        x = self.classifier(self.features(x))
        return ops.mean(x, (2, 3))  # global average pooling -> (N, num_classes)


def _plan(in_channels, image_size):
    """The features in order: ``"M"`` per max-pool, ``(in_ch, out_ch, kernel, map size)`` per conv."""
    channels, size = in_channels, image_size
    for item in TINY_DARKNET_CFG:
        if item == "M":
            size //= 2
            yield "M"
        else:
            yield (channels, item[0], item[1], size)
            channels = item[0]


def conv_shapes(num_classes=1000, in_channels=3, image_size=224):
    """``(in_ch, out_ch, kernel, h, w)`` of every convolution, classifier last (for the probes)."""
    convs = [(c, o, k, s, s) for c, o, k, s in (i for i in _plan(in_channels, image_size) if i != "M")]
    size = image_size // 16
    return convs + [(TINY_DARKNET_CFG[-1][0], num_classes, 1, size, size)]


def tinydarknet(num_classes=1000, in_channels=3, use_unfold=False, conv_impl=None, image_size=None,
                layer_impl="native"):
    """Factory used by :func:`src.models.create_model`."""
    return TinyDarkNet(num_classes=num_classes, in_channels=in_channels, use_unfold=use_unfold,
                       conv_impl=conv_impl, image_size=image_size, layer_impl=layer_impl)
