"""benchmarks/torch_peer.py: the PyTorch peers have the repo networks' parameter counts and, with
the same weights, compute the same outputs (so ``--peer torch`` compares like with like).
Skipped when PyTorch is not installed (it is not a requirement)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import mindspore as ms  # noqa: E402

from benchmarks import torch_peer  # noqa: E402
from src.models import create_model  # noqa: E402
from src.models.convlstm import count_parameters  # noqa: E402

TINY_CONVLSTM = dict(in_channels=1, patch_size=4, hidden_channels=(8, 4), input_kernel=3,
                     state_kernel=5, input_frames=2, output_frames=3)
STACK = dict(TINY_CONVLSTM, state_kernel=3, forecaster_input="prediction", structure="stack")


@pytest.fixture(autouse=True)
def pynative():
    mode = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield
    ms.set_context(mode=mode)


def ms_params(net, seed=0):
    """Random values for every parameter (BN statistics and peepholes too), set in ``net``."""
    rng = np.random.default_rng(seed)
    values = {}
    for p in net.get_parameters():
        positive = "variance" in p.name or "gamma" in p.name
        low, high = (0.5, 1.5) if positive else (-0.3, 0.3)
        values[p.name] = rng.uniform(low, high, p.shape).astype(np.float32)
        p.set_data(ms.Tensor(values[p.name]))
    return values


@pytest.mark.parametrize("name, kwargs", [
    ("tinydarknet", dict(num_classes=10, in_channels=3)),
    ("tinydarknet", dict(num_classes=1000, in_channels=1)),
    ("convlstm", TINY_CONVLSTM),
    ("convlstm", dict(TINY_CONVLSTM, hidden_channels=(6,), input_kernel=5)),
    ("convlstm", dict(TINY_CONVLSTM, forecaster_input="prediction")),
    ("convlstm", STACK),
    ("convlstm", dict(STACK, head_kernel=3)),
])
def test_parameter_counts_equal(name, kwargs):
    ms_net = create_model(name, **kwargs)
    peer = torch_peer.create_peer(name, **kwargs)
    assert torch_peer.count_parameters(peer) == count_parameters(ms_net) > 0


@pytest.mark.parametrize("name, kwargs, shape", [
    ("tinydarknet", dict(num_classes=5), (2, 3, 32, 32)),
    ("convlstm", TINY_CONVLSTM, (2, 2, 1, 16, 16)),
    ("convlstm", dict(TINY_CONVLSTM, state_kernel=3), (2, 2, 1, 16, 16)),  # fused gate convolutions
    ("convlstm", dict(TINY_CONVLSTM, forecaster_input="prediction"), (2, 2, 1, 16, 16)),
    ("convlstm", STACK, (2, 2, 1, 16, 16)),
    ("convlstm", dict(STACK, head_kernel=3), (2, 2, 1, 16, 16)),
])
def test_same_weights_same_outputs(name, kwargs, shape):
    ms_net = create_model(name, **kwargs)
    ms_net.set_train(False)
    values = ms_params(ms_net)
    peer = torch_peer.load_mindspore_params(torch_peer.create_peer(name, **kwargs), values).eval()
    x = np.random.default_rng(1).uniform(0, 1, shape).astype(np.float32)
    ref = ms_net(ms.Tensor(x)).asnumpy()
    with torch.no_grad():
        got = peer(torch.as_tensor(x)).numpy()
    assert got.shape == ref.shape and np.abs(ref).max() > 1e-3
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.mark.parametrize("kwargs", [dict(TINY_CONVLSTM, forecaster_input="prediction"), STACK])
@pytest.mark.parametrize("truth_prob", [0.0, 1.0])
def test_same_training_forward(kwargs, truth_prob):
    """The training forward (scheduled sampling at probability 0 or 1, every next frame for the
    stack) and its targets are the MindSpore network's."""
    ms_net = create_model("convlstm", **kwargs)
    peer = torch_peer.load_mindspore_params(torch_peer.create_peer("convlstm", **kwargs),
                                            ms_params(ms_net)).eval()
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (2, 2, 1, 16, 16)).astype(np.float32)
    y = rng.uniform(0, 1, (2, 3, 1, 16, 16)).astype(np.float32)
    ref = ms_net(ms.Tensor(x), ms.Tensor(y), ms.Tensor(truth_prob, ms.float32)).asnumpy()
    with torch.no_grad():
        tx, ty = torch.as_tensor(x), torch.as_tensor(y)
        got = peer(tx, ty, truth_prob).numpy()
        targets = peer.training_targets(tx, ty).numpy()
    assert got.shape == ref.shape == (2, 4 if "structure" in kwargs else 3, 1, 16, 16)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    np.testing.assert_array_equal(targets, ms_net.training_targets(ms.Tensor(x), ms.Tensor(y)).asnumpy())


def test_load_rejects_a_wrong_shape():
    peer = torch_peer.create_peer("tinydarknet", num_classes=4)
    with pytest.raises(KeyError, match="classifier.weight"):
        torch_peer.load_mindspore_params(peer, {"classifier.weight": np.zeros((3, 128, 1, 1))})


@pytest.mark.parametrize("optimizer, loss, convlstm", [("momentum", "ce", None),
                                                      ("rmsprop", "bce", TINY_CONVLSTM),
                                                      ("adam", "mse", TINY_CONVLSTM),
                                                      ("adam", "bce", STACK)])
def test_train_step_rate_runs_and_learns(optimizer, loss, convlstm):
    if loss == "ce":
        peer = torch_peer.create_peer("tinydarknet", num_classes=3)
        x = np.random.default_rng(0).normal(size=(2, 3, 32, 32)).astype(np.float32)
        y = np.array([0, 2])
    else:
        peer = torch_peer.create_peer("convlstm", **convlstm)
        x = np.random.default_rng(0).uniform(size=(2, 2, 1, 16, 16)).astype(np.float32)
        y = (x[:, :1].repeat(3, axis=1) > 0.5).astype(np.float32)
    before = [p.detach().clone() for p in peer.parameters()]
    res = torch_peer.train_step_rate(peer, x, y, optimizer=optimizer, lr=1e-3, loss=loss, warmup=1,
                                     steps=2, weight_decay=1e-4)
    assert res["measured_steps"] == 2 and res["samples_per_s"] > 0
    assert res["params"] == torch_peer.count_parameters(peer)
    assert any(not torch.equal(a, b) for a, b in zip(before, peer.parameters()))  # steps were taken
