"""Losses. ``create_loss`` is the one factory.

- ``ce``: softmax cross-entropy on logits with sparse int labels and optional label smoothing;
- ``bce``: per-pixel binary cross-entropy on logits (Shi et al. 2015, ConvLSTM);
- ``mse``: squared error of sigmoid outputs (targets in [0, 1]).

``bce`` and ``mse`` take a ``reduction``:

- ``sequence_sum`` (Shi et al.): summed over the pixels and frames of a sequence, averaged over
  the batch. The loss then reads in the paper's units (its Table 1 gives the cross-entropy per
  sequence, e.g. 3670.85), and weight gradients are O(0.1-1) instead of O(1e-4), which matters
  for MindSpore's RMSProp: its ``mean_square`` starts at 1 and decays by ``decay`` per step, so
  with pixel-mean gradients (g^2 ~ 1e-8) steps stay far below an RMSProp step for ~200 steps;
  and its documented update divides by ``sqrt(mean_square + eps)``, where eps 1e-6 then
  dominates for good (measured on CPU, MindSpore 2.10: the kernel's 8-wide vector lanes put eps
  outside the root, the remaining elements of a tensor inside).
- ``mean``: averaged over every pixel (1/(frames*pixels) of ``sequence_sum``).

``ssim_weight`` > 0 (``bce`` / ``mse``) adds ``ssim_weight x (1 - SSIM)`` per pixel of the
SSIM map, reduced as the pixel loss: :class:`SSIMLoss` computes the SSIM of the sigmoid outputs
exactly as ``skimage.metrics.structural_similarity(data_range=1)`` does (7x7 uniform window,
sample covariances, the border of 3 pixels left out), the metric this repository reports. A
per-pixel loss is minimised by the mean of what may come next, a grey haze where the model is
unsure; SSIM punishes that haze on the black background.
"""
import mindspore.nn as nn
import mindspore.ops as ops

LOSSES = ("ce", "bce", "mse")
REDUCTIONS = ("sequence_sum", "mean")


def _reduce(per_pixel, reduction):
    """``per_pixel`` (N, ...) -> scalar: sum over all but the batch axis then batch mean, or mean."""
    if reduction == "mean":
        return ops.mean(per_pixel)
    return ops.sum(per_pixel) / per_pixel.shape[0]


class PixelBCEWithLogits(nn.Cell):
    """Binary cross-entropy of sigmoid(logits) against targets in [0, 1], reduced per
    ``reduction`` (MindSpore's fused, numerically stable ``BCEWithLogitsLoss`` kernel)."""

    def __init__(self, reduction="sequence_sum"):
        super().__init__()
        self.per_batch = reduction != "mean"
        self.bce = nn.BCEWithLogitsLoss(reduction="sum" if self.per_batch else "mean")

    def construct(self, logits, target):
        loss = self.bce(logits, target)
        if self.per_batch:
            return loss / logits.shape[0]
        return loss


class SigmoidMSELoss(nn.Cell):
    """Squared error between sigmoid(logits) and targets in [0, 1], reduced per ``reduction``."""

    def __init__(self, reduction="sequence_sum"):
        super().__init__()
        self.reduction = reduction

    def construct(self, logits, target):
        return _reduce(ops.square(ops.sigmoid(logits) - target), self.reduction)


class SSIMLoss(nn.Cell):
    """``1 - SSIM`` of sigmoid(logits) against targets in [0, 1], per pixel of the SSIM map,
    reduced per ``reduction``. Frames are the last two axes; every other axis is a batch of
    frames (``(N, T, C, H, W)``: N*T*C frames of H x W, at least 7 x 7).

    The SSIM map is skimage's (``structural_similarity(data_range=1)``, its defaults): means,
    variances and covariance over a 7x7 uniform window, covariances with the sample normalisation
    49/48, K1 = 0.01, K2 = 0.03, only the windows inside the frame ("valid"), whose mean is the
    frame's SSIM.
    """

    WINDOW = 7

    def __init__(self, reduction="sequence_sum"):
        super().__init__()
        self.reduction = reduction
        k = self.WINDOW
        self.cov_norm = k * k / (k * k - 1.0)
        self.c1 = 0.01 ** 2
        self.c2 = 0.03 ** 2

    def ssim_map(self, x, y):
        """The SSIM map of frames ``x``, ``y`` (..., H, W) -> (M, 1, H - 6, W - 6)."""
        h, w = x.shape[-2], x.shape[-1]
        x = x.reshape(-1, 1, h, w)
        y = y.reshape(-1, 1, h, w)
        both = ops.cat((x, y, x * x, y * y, x * y), 0)  # one box filter for the five averages
        mu_x, mu_y, xx, yy, xy = ops.split(self.window_mean(both), x.shape[0], 0)
        var_x = self.cov_norm * (xx - mu_x * mu_x)
        var_y = self.cov_norm * (yy - mu_y * mu_y)
        cov = self.cov_norm * (xy - mu_x * mu_y)
        return ((2 * mu_x * mu_y + self.c1) * (2 * cov + self.c2)
                / ((mu_x * mu_x + mu_y * mu_y + self.c1) * (var_x + var_y + self.c2)))

    def window_mean(self, x):
        """Mean over every k x k window inside (M, 1, H, W) frames -> (M, 1, H-k+1, W-k+1), from
        cumulative sums along the rows then the columns (a 1-channel 7x7 convolution was ~20x
        slower on CPU, forward and backward)."""
        k = self.WINDOW
        rows = ops.cumsum(ops.pad(x, (0, 0, 1, 0)), 2)  # a zero row first: sums of rows < r
        rows = rows[:, :, k:] - rows[:, :, :-k]
        cols = ops.cumsum(ops.pad(rows, (1, 0)), 3)
        return (cols[:, :, :, k:] - cols[:, :, :, :-k]) / (k * k)

    def construct(self, logits, target):
        per_pixel = 1.0 - self.ssim_map(ops.sigmoid(logits), target)
        if self.reduction == "mean":
            return ops.mean(per_pixel)
        return ops.sum(per_pixel) / logits.shape[0]


class WithSSIMLoss(nn.Cell):
    """``pixel_loss(logits, target) + weight * SSIMLoss(logits, target)``."""

    def __init__(self, pixel_loss, weight, reduction):
        super().__init__()
        self.pixel_loss = pixel_loss
        self.ssim_loss = SSIMLoss(reduction)
        self.weight = float(weight)

    def construct(self, logits, target):
        return self.pixel_loss(logits, target) + self.weight * self.ssim_loss(logits, target)


def create_loss(name, label_smoothing=0.0, reduction="mean", ssim_weight=0.0):
    """The loss ``name``. ``reduction`` (bce / mse only): ``sequence_sum`` or ``mean`` (see the
    module docstring); ``ce`` is always the batch mean. ``ssim_weight`` > 0 (bce / mse only)
    adds that many times :class:`SSIMLoss`."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown loss reduction '{reduction}': choose one of {', '.join(REDUCTIONS)}")
    if ssim_weight < 0 or (ssim_weight and name == "ce"):
        raise ValueError(f"ssim_weight must be >= 0 and needs loss bce or mse, got {ssim_weight} with {name}")
    if name == "ce":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if name == "bce":
        loss = PixelBCEWithLogits(reduction)
    elif name == "mse":
        loss = SigmoidMSELoss(reduction)
    else:
        raise ValueError(f"unknown loss '{name}': choose one of {', '.join(LOSSES)}")
    return WithSSIMLoss(loss, ssim_weight, reduction) if ssim_weight else loss
