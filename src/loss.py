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


def create_loss(name, label_smoothing=0.0, reduction="mean"):
    """The loss ``name``. ``reduction`` (bce / mse only): ``sequence_sum`` or ``mean`` (see the
    module docstring); ``ce`` is always the batch mean."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown loss reduction '{reduction}': choose one of {', '.join(REDUCTIONS)}")
    if name == "ce":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if name == "bce":
        return PixelBCEWithLogits(reduction)
    if name == "mse":
        return SigmoidMSELoss(reduction)
    raise ValueError(f"unknown loss '{name}': choose one of {', '.join(LOSSES)}")
