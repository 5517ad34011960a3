"""Losses. ``create_loss`` is the one factory.

- ``ce``: softmax cross-entropy on logits with sparse int labels and optional label smoothing;
- ``bce``: per-pixel binary cross-entropy on logits (Shi et al. 2015, ConvLSTM), mean over pixels;
- ``mse``: mean squared error on sigmoid outputs (targets in [0, 1]).
"""
import mindspore.nn as nn
import mindspore.ops as ops

LOSSES = ("ce", "bce", "mse")


class SigmoidMSELoss(nn.Cell):
    """MSE between sigmoid(logits) and targets in [0, 1]."""

    def construct(self, logits, target):
        return ops.mean(ops.square(ops.sigmoid(logits) - target))


def create_loss(name, label_smoothing=0.0):
    if name == "ce":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if name == "bce":
        return nn.BCEWithLogitsLoss(reduction="mean")
    if name == "mse":
        return SigmoidMSELoss()
    raise ValueError(f"unknown loss '{name}': choose one of {', '.join(LOSSES)}")
