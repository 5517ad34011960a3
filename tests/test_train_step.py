"""Gradient clipping by global norm in the training step."""
import numpy as np
import mindspore as ms
import pytest
from mindspore import nn

from src.train_step import ClipGradTrainOneStepCell


class Linear(nn.Cell):
    def __init__(self):
        super().__init__()
        self.w = ms.Parameter(ms.Tensor(np.zeros((3,), np.float32)), name="w")

    def construct(self, x):
        return (self.w * x).sum(axis=1)


class SumLoss(nn.Cell):
    def construct(self, pred, target):
        return (pred - target).sum()


def step_delta(x, clip_norm, loss_scale=1.0, mode=ms.PYNATIVE_MODE):
    """Weight change of one SGD (lr 1) step; the gradient of sum(w . x_i) is sum_i x_i."""
    ms.set_context(mode=mode)
    net = Linear()
    opt = nn.SGD(net.trainable_params(), learning_rate=1.0, loss_scale=loss_scale)
    cell = ClipGradTrainOneStepCell(nn.WithLossCell(net, SumLoss()), opt, clip_norm, loss_scale)
    loss = cell(ms.Tensor(x), ms.Tensor(np.zeros(len(x), np.float32)))
    assert np.isfinite(float(loss.asnumpy()))
    return -net.w.asnumpy()


@pytest.mark.parametrize("mode", [ms.PYNATIVE_MODE, ms.GRAPH_MODE])
def test_large_gradients_are_scaled_to_the_clip_norm(mode):
    x = np.array([[3.0, 4.0, 0.0]], np.float32)  # gradient (3, 4, 0): norm 5
    np.testing.assert_allclose(step_delta(x, 1.0, mode=mode), [0.6, 0.8, 0.0], rtol=1e-5)
    np.testing.assert_allclose(step_delta(x, 10.0, mode=mode), [3.0, 4.0, 0.0], rtol=1e-5)


def test_clipping_applies_to_the_unscaled_gradient():
    x = np.array([[3.0, 4.0, 0.0]], np.float32)
    np.testing.assert_allclose(step_delta(x, 1.0, loss_scale=128.0), [0.6, 0.8, 0.0], rtol=1e-5)
    np.testing.assert_allclose(step_delta(x, 10.0, loss_scale=128.0), [3.0, 4.0, 0.0], rtol=1e-5)
    with pytest.raises(ValueError, match="clip_norm must be > 0"):
        ClipGradTrainOneStepCell(Linear(), nn.SGD(Linear().trainable_params()), 0.0)
