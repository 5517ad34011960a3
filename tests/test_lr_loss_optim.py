"""LR schedules (exact values), losses and the optimizer's weight-decay groups."""
import math

import numpy as np
import mindspore as ms
import pytest

from src.loss import create_loss
from src.lr_scheduler import create_lr
from src.models.tinydarknet import TinyDarkNet
from src.optimizer import create_optimizer, param_groups


def test_multistep_values():
    lr = create_lr("multistep", 0.1, steps_per_epoch=2, epochs=6, milestones=[2, 4], gamma=0.3)
    assert np.allclose(lr, [0.1] * 4 + [0.03] * 4 + [0.009] * 4)
    assert np.allclose(create_lr("exponential", 0.1, 2, 6, milestones=[2, 4], gamma=0.3), lr)


def test_warmup_then_cosine():
    lr = create_lr("cosine", 1.0, steps_per_epoch=4, epochs=3, warmup_epochs=1, end_lr=0.0)
    assert len(lr) == 12
    assert np.allclose(lr[:4], [0.25, 0.5, 0.75, 1.0])
    assert lr[4] == pytest.approx(1.0)
    assert lr[8] == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert np.all(np.diff(lr[4:]) < 0)


def test_poly_and_constant():
    lr = create_lr("poly", 0.1, 5, 2, power=4.0)
    assert lr[0] == pytest.approx(0.1) and lr[5] == pytest.approx(0.1 * 0.5 ** 4)
    assert np.all(create_lr("constant", 0.01, 3, 2) == np.float32(0.01))


def test_bad_schedule():
    with pytest.raises(ValueError, match="unknown lr_scheduler"):
        create_lr("step", 0.1, 1, 1)
    with pytest.raises(ValueError, match="at least one step"):
        create_lr("cosine", 0.1, 0, 1)


def test_no_weight_decay_on_bn_and_bias():
    net = TinyDarkNet(num_classes=10)
    decay, no_decay = param_groups(net.trainable_params(), 1e-4)
    assert all(len(p.shape) == 4 for p in decay["params"])
    names = {p.name for p in no_decay["params"]}
    assert "classifier.bias" in names and "features.0.bn.gamma" in names
    assert len(decay["params"]) == 16 and no_decay["weight_decay"] == 0.0
    opt = create_optimizer("momentum", net.trainable_params(), 0.1, weight_decay=1e-4)
    assert float(opt.momentum.asnumpy()) == pytest.approx(0.9)
    assert sorted(set(opt.group_weight_decay)) == [0.0, pytest.approx(1e-4)]
    for name in ("sgd", "rmsprop", "adam"):
        create_optimizer(name, TinyDarkNet(num_classes=2).trainable_params(), 0.01)
    with pytest.raises(ValueError, match="unknown optimizer"):
        create_optimizer("lion", net.trainable_params(), 0.1)


def test_label_smoothing_changes_the_loss():
    logits = ms.Tensor(np.array([[4.0, 0.0, 0.0]], np.float32))
    y = ms.Tensor(np.array([0], np.int32))
    plain = float(create_loss("ce")(logits, y).asnumpy())
    smooth = float(create_loss("ce", label_smoothing=0.3)(logits, y).asnumpy())
    p = np.exp([4.0, 0, 0]) / np.exp([4.0, 0, 0]).sum()
    assert plain == pytest.approx(-np.log(p[0]), rel=1e-5)
    target = np.array([0.8, 0.1, 0.1])
    assert smooth == pytest.approx(-(target * np.log(p)).sum(), rel=1e-5)


def test_pixel_losses():
    logits = ms.Tensor(np.zeros((1, 2, 1, 2, 2), np.float32))
    target = ms.Tensor(np.ones((1, 2, 1, 2, 2), np.float32))
    assert float(create_loss("bce")(logits, target).asnumpy()) == pytest.approx(np.log(2), rel=1e-5)
    assert float(create_loss("mse")(logits, target).asnumpy()) == pytest.approx(0.25, rel=1e-5)
    with pytest.raises(ValueError, match="unknown loss"):
        create_loss("hinge")
