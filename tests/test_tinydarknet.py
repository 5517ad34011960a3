"""Tiny-DarkNet: darknet's tiny.cfg layer by layer, parameter counts, shapes, forward/backward."""
import numpy as np
import mindspore as ms
import mindspore.nn as nn
import pytest

from src.kernels.plan import set_kernels
from src.models import create_model
from src.models.tinydarknet import LEAKY_SLOPE, TinyDarkNet
from mindspore_hub_conf import create_network


def count(net):
    return sum(int(np.prod(p.shape)) for p in net.trainable_params())


@pytest.mark.parametrize("classes, expected", [(1000, 1_042_104), (10, 914_394)])
def test_trainable_parameter_count(classes, expected):
    assert count(TinyDarkNet(num_classes=classes)) == expected


def test_structure_matches_tiny_cfg():
    net = TinyDarkNet(num_classes=7)
    convs = [c for _, c in net.cells_and_names() if isinstance(c, nn.Conv2d)]
    assert len(convs) == 16
    assert [c.out_channels for c in convs] == [16, 32, 16, 128, 16, 128, 32, 256, 32, 256, 64, 512,
                                               64, 512, 128, 7]
    assert all(c.stride == (1, 1, 1, 1) or c.stride == (1, 1) for c in convs)
    assert not any(c.has_bias for c in convs[:-1]) and convs[-1].has_bias
    pools = [c for _, c in net.cells_and_names() if isinstance(c, nn.MaxPool2d)]
    assert len(pools) == 4
    bns = [c for _, c in net.cells_and_names() if isinstance(c, nn.BatchNorm2d)]
    assert len(bns) == 15  # none on the classifier
    leaky = [c for _, c in net.cells_and_names() if isinstance(c, nn.LeakyReLU)]
    assert len(leaky) == 15 and LEAKY_SLOPE == 0.1
    x = ms.Tensor(np.array([-10.0, 10.0], np.float32))
    assert np.allclose(leaky[0](x).asnumpy(), [-1.0, 10.0])


@pytest.mark.parametrize("size", [32, 64])
def test_output_shape_any_input_size(size):
    net = TinyDarkNet(num_classes=5)
    out = net(ms.Tensor(np.random.rand(2, 3, size, size).astype(np.float32)))
    assert out.shape == (2, 5)


def test_unfold_path_equals_native_with_same_checkpoint():
    native, fast = TinyDarkNet(10), set_kernels(TinyDarkNet(10), conv="unfold")
    assert [p.name for p in native.get_parameters()] == [p.name for p in fast.get_parameters()]
    ms.load_param_into_net(fast, native.parameters_dict())
    x = ms.Tensor(np.random.rand(2, 3, 32, 32).astype(np.float32))
    assert np.allclose(native(x).asnumpy(), fast(x).asnumpy(), atol=1e-4)


def test_forward_backward_tiny_input():
    net = set_kernels(TinyDarkNet(num_classes=4), conv="unfold")
    net.set_train(True)
    loss_fn = nn.CrossEntropyLoss()
    x = ms.Tensor(np.random.rand(2, 3, 32, 32).astype(np.float32))
    y = ms.Tensor(np.array([0, 3], np.int32))

    def forward(a, b):  # a def, not a lambda: GRAPH mode (set by earlier tests) parses it
        return loss_fn(net(a), b)

    grad_fn = ms.value_and_grad(forward, None, net.trainable_params())
    loss, grads = grad_fn(x, y)
    assert np.isfinite(loss.asnumpy())
    assert len(grads) == len(net.trainable_params())
    assert all(np.isfinite(g.asnumpy()).all() for g in grads)
    assert np.abs(grads[0].asnumpy()).sum() > 0


def test_factories():
    assert create_model("tinydarknet", num_classes=3).num_classes == 3
    assert create_network("tiny_darknet", num_classes=3).num_classes == 3
    with pytest.raises(NotImplementedError):
        create_network("resnet")
    with pytest.raises(ValueError, match="unknown model"):
        create_model("resnet")
