"""oneDNN's direct convolution as a custom op (src/kernels/onednn_conv.py, csrc/onednn_conv.cc): the same values and
gradients as the native Conv2D for every shape class it takes (1x1, 3x3, 5x5, odd channel counts,
bias), the shapes it refuses, the build's failure report, and a training run that uses it."""
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from src.kernels import onednn_conv
from src.kernels.layers import Conv2d
from src.kernels.plan import set_kernels

needs_kernel = pytest.mark.skipif(not onednn_conv.availability()[0],
                                  reason=f"oneDNN conv kernel: {onednn_conv.availability()[1]}")


def make_conv(impl, *args, **kwargs):
    conv = Conv2d(*args, **kwargs)
    conv.set_kernel(impl)
    return conv


def values_and_grads(impl, shape, seed=0):
    n, c, h, w, o, k = shape
    rng = np.random.default_rng(seed)
    conv = make_conv(impl, c, o, k, has_bias=True)
    conv.weight.set_data(ms.Tensor(rng.standard_normal(conv.weight.shape).astype(np.float32) * 0.2))
    conv.bias.set_data(ms.Tensor(rng.standard_normal(o).astype(np.float32)))
    x = ms.Tensor(rng.standard_normal((n, c, h, w)).astype(np.float32))
    dy = ms.Tensor(rng.standard_normal((n, o, h, w)).astype(np.float32))
    weighted = nn.WithLossCell(conv, lambda y, t: (y * t).sum())  # gradient dy flows in
    grad = ms.grad(weighted, grad_position=0, weights=conv.trainable_params())
    dx, (dw, db) = grad(x, dy)
    return [conv(x).asnumpy(), dx.asnumpy(), dw.asnumpy(), db.asnumpy()]


@needs_kernel
@pytest.mark.parametrize("shape", [(2, 16, 8, 8, 32, 3), (1, 3, 9, 7, 5, 3), (2, 8, 6, 6, 24, 5),
                                   (3, 32, 4, 4, 16, 1), (2, 20, 2, 2, 12, 3)])
def test_same_values_and_gradients_as_native(shape):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    native, onednn = values_and_grads("native", shape), values_and_grads("onednn", shape)
    for name, a, b in zip(("y", "dx", "dw", "db"), native, onednn):
        assert a.shape == b.shape, name
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max(), err_msg=name)


def concat_values_and_grads(impl, parts, o, k, bias, seed=0):
    """y, every part's gradient, dw (and db) of the convolution of concat(parts)."""
    rng = np.random.default_rng(seed)
    conv = make_conv(impl, sum(p[1] for p in parts), o, k, has_bias=bias, input_parts=len(parts))
    for p in conv.trainable_params():
        p.set_data(ms.Tensor(rng.standard_normal(p.shape).astype(np.float32) * 0.2))
    xs = tuple(ms.Tensor(rng.standard_normal(p).astype(np.float32)) for p in parts)
    n, _, h, w = parts[0]
    dy = ms.Tensor(rng.standard_normal((n, o, h, w)).astype(np.float32))

    def loss(*xs_dy):
        return (conv.concat_construct(xs_dy[:-1]) * xs_dy[-1]).sum()

    grads = ms.grad(loss, grad_position=tuple(range(len(parts))),
                    weights=conv.trainable_params())(*xs, dy)
    return ([conv.concat_construct(xs).asnumpy()] + [g.asnumpy() for g in grads[0]]
            + [g.asnumpy() for g in grads[1]])


@needs_kernel
@pytest.mark.parametrize("mode", ["pynative", "graph"])
@pytest.mark.parametrize("parts,o,k,bias", [
    (((2, 16, 8, 8), (2, 48, 8, 8)), 64, 3, True),      # a ConvLSTM gate convolution, [x | h]
    (((1, 5, 6, 7), (1, 3, 6, 7), (1, 8, 6, 7)), 4, 3, True),  # three uneven parts, the head
    (((3, 8, 4, 4), (3, 8, 4, 4)), 12, 1, False),       # 1x1, no bias
])
def test_concatenated_input_parts_match_native(mode, parts, o, k, bias):
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    try:
        native = concat_values_and_grads("native", parts, o, k, bias)
        onednn = concat_values_and_grads("onednn", parts, o, k, bias)
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    assert len(onednn) == 1 + len(parts) + 1 + bias
    for i, (a, b) in enumerate(zip(native, onednn)):
        assert a.shape == b.shape, i
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * np.abs(a).max(), err_msg=str(i))


@needs_kernel
def test_graph_mode_training_step_matches_native():
    ms.set_context(mode=ms.GRAPH_MODE)
    losses = {}
    for impl in ("native", "onednn"):
        ms.set_seed(1)
        net = nn.SequentialCell([make_conv(impl, 3, 8, 3, has_bias=True), nn.ReLU(),
                                 make_conv(impl, 8, 4, 1)])
        for p in net.trainable_params():  # the same start for both
            p.set_data(ms.Tensor(np.random.default_rng(p.size).standard_normal(p.shape)
                                 .astype(np.float32) * 0.3))
        step = nn.TrainOneStepCell(nn.WithLossCell(net, nn.MSELoss()), nn.SGD(net.trainable_params(), 0.1))
        x = ms.Tensor(np.random.default_rng(2).standard_normal((4, 3, 6, 6)).astype(np.float32))
        y = ms.Tensor(np.zeros((4, 4, 6, 6), np.float32))
        losses[impl] = [float(step(x, y).asnumpy()) for _ in range(3)]
    ms.set_context(mode=ms.PYNATIVE_MODE)
    np.testing.assert_allclose(losses["onednn"], losses["native"], rtol=1e-4)
    assert losses["native"][2] < losses["native"][0]  # it trains


def test_shapes_it_does_not_take_are_refused():
    assert onednn_conv.supports(3) and onednn_conv.supports(1) and onednn_conv.supports(5, padding=2)
    for kwargs in (dict(kernel_size=2), dict(kernel_size=3, stride=2), dict(kernel_size=3, padding=0),
                   dict(kernel_size=3, dilation=2), dict(kernel_size=3, group=2)):
        assert not onednn_conv.supports(**kwargs)
    with pytest.raises(ValueError, match="impl 'onednn' needs stride 1"):
        Conv2d(4, 4, 3, stride=2).set_kernel("onednn")
    with pytest.raises(ValueError, match="impl must be one of native, unfold, onednn"):
        Conv2d(4, 4, 3).set_kernel("fast")


def test_build_failure_is_reported(monkeypatch, tmp_path):
    lib = onednn_conv.AotLibrary(onednn_conv.SOURCE, onednn_conv.CXX_FLAGS,
                                 link_args=lambda: (None, "MindSpore's bundled libdnnl.so.3 was not found"))
    assert lib.build() == (None, "MindSpore's bundled libdnnl.so.3 was not found")
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    assert onednn_conv.LIBRARY.build()[1] == f"no C++ compiler ({tmp_path / 'no-such-compiler'}) on PATH"
    monkeypatch.setenv("ZOO_NO_CUSTOM_OPS", "1")
    fresh = onednn_conv.AotLibrary(onednn_conv.SOURCE, onednn_conv.CXX_FLAGS)
    assert fresh.availability() == (False, "ZOO_NO_CUSTOM_OPS is set")
    with pytest.raises(RuntimeError, match="not available here: ZOO_NO_CUSTOM_OPS is set"):
        fresh.require("the oneDNN convolution kernels")


@needs_kernel
def test_train_py_with_onednn_convolutions(cifar_dir, tmp_path):
    from conftest import ROOT
    from entry_runner import run_commands
    (code, stdout, stderr), = run_commands(
        ["train.py", "--config_path", os.path.join(ROOT, "config", "cifar10_config_cpu.yaml"), "--data_path",
         cifar_dir, "--output_dir", tmp_path / "run", "--epoch_size", "1", "--conv_impl", "onednn",
         "--batch_size", "48", "--log_interval", "1"])
    assert code == 0, stderr[-2000:]
    assert "; conv onednn x16;" in stdout  # every convolution, the 1x1 ones too
    assert "epoch: 1 step: 2, loss is" in stdout


class ThreeCalls(nn.Cell):
    """y <- tanh(conv(y))[:, :C] three times, the weights prepared once (None: not prepared)."""

    def __init__(self, conv, channels):
        super().__init__()
        self.conv = conv
        self.channels = channels

    def construct(self, x, t):
        prepared = self.conv.prepare(x)
        y = x
        for _ in range(3):
            y = ops.tanh(self.conv(y, prepared))[:, :self.channels]
        return (y * t).sum()


@needs_kernel
@pytest.mark.parametrize("mode", ["pynative", "graph"])
@pytest.mark.parametrize("c,o,k", [(16, 32, 3), (5, 12, 3), (8, 20, 1)])  # padded to the block too
def test_prepared_weights_over_several_calls_match_native(mode, c, o, k):
    """Weights prepared once and used by three calls (as by the time steps of a recurrent
    network): the same outputs and the same summed weight, bias and input gradients."""
    ms.set_context(mode=ms.GRAPH_MODE if mode == "graph" else ms.PYNATIVE_MODE)
    rng = np.random.default_rng(3)
    x = ms.Tensor(rng.standard_normal((2, c, 5, 5)).astype(np.float32))
    t = ms.Tensor(rng.standard_normal((2, c, 5, 5)).astype(np.float32))
    results = {}
    try:
        for impl in ("native", "onednn"):
            conv = make_conv(impl, c, o, k, has_bias=True)
            for p in conv.trainable_params():
                p.set_data(ms.Tensor(np.random.default_rng(p.size).standard_normal(p.shape)
                                     .astype(np.float32) * 0.2))
            net = ThreeCalls(conv, c)
            dx, dparams = ms.grad(net, grad_position=0, weights=conv.trainable_params())(x, t)
            results[impl] = [net(x, t).asnumpy(), dx.asnumpy()] + [g.asnumpy() for g in dparams]
            assert (conv.prepare(x) is None) == (impl == "native")
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    assert len(results["onednn"]) == 4
    for i, (a, b) in enumerate(zip(results["native"], results["onednn"])):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * max(np.abs(a).max(), 1e-3),
                                   err_msg=str(i))
    assert onednn_conv.prepared_shape((o, c, k, k)) == [-(-o // 16) * 16, -(-c // 16) * 16, k, k]


def weighted_sum(y, t):  # a loss whose gradient with respect to y is t
    return (y * t).sum()


@needs_kernel
def test_convlstm_on_onednn_matches_native():
    """Every ConvLSTM convolution through the op (gate convolutions over [x | h], a head over
    three layers' states, both with the bias inside): the same logits and weight gradients."""
    from src.models.convlstm import ConvLSTM
    ms.set_context(mode=ms.GRAPH_MODE)
    results = {}
    try:
        for impl in ("native", "onednn"):
            net = set_kernels(ConvLSTM(patch_size=2, hidden_channels=(8, 16, 8), input_kernel=3,
                                       state_kernel=3, input_frames=3, output_frames=2,
                                       forecaster_input="prediction", structure="stack",
                                       head_kernel=3), conv=impl)
            for p in net.trainable_params():  # the same weights for both (names match)
                p.set_data(ms.Tensor(np.random.default_rng(p.size).standard_normal(p.shape)
                                     .astype(np.float32) * 0.3))
            x = ms.Tensor(np.random.default_rng(0).random((2, 3, 1, 8, 8)).astype(np.float32))
            loss = nn.WithLossCell(net, weighted_sum)
            t = ms.Tensor(np.random.default_rng(1).standard_normal((2, 2, 1, 8, 8)).astype(np.float32))
            grads = ms.grad(loss, grad_position=None, weights=net.trainable_params())(x, t)
            results[impl] = [net(x).asnumpy()] + [g.asnumpy() for g in grads]
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    assert len(results["onednn"]) == len(results["native"]) > 10
    for i, (a, b) in enumerate(zip(results["native"], results["onednn"])):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4 * max(np.abs(a).max(), 1e-3),
                                   err_msg=str(i))


POOL_STRESS = r"""
import numpy as np, mindspore as ms
from mindspore import ops
from src.kernels.layers import Conv2d
ms.set_context(mode=ms.PYNATIVE_MODE)
rng = np.random.default_rng(0)
x = ms.Tensor(rng.standard_normal((8, 32, 12, 12)).astype(np.float32))
native, onednn = Conv2d(32, 48, 3), Conv2d(32, 48, 3)
onednn.set_kernel("onednn")
onednn.weight.set_data(native.weight.data.copy())
want = native(x).asnumpy()
first = onednn(x).asnumpy()
np.testing.assert_allclose(first, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
for i in range(150):
    # MindSpore kernels between the calls: its threads busy the cores the pool's helpers wait for
    ops.tanh(x * float(i)).asnumpy()
    got = onednn(x).asnumpy()
    assert np.array_equal(got, first), f"call {i} differs from the first by {np.abs(got - first).max()}"
print("ok", 150)
"""


@needs_kernel
def test_thread_pool_survives_oversubscription():
    """More pool threads than cores, MindSpore kernels in between (helpers woken late, or kept
    off the CPU, after the call they were woken for has ended): every call computes every task
    of its own parallel sections once, so 150 calls give bit-identical outputs equal to native."""
    import subprocess
    import sys
    from conftest import ROOT
    env = dict(os.environ, ZOO_ONEDNN_THREADS=str(2 * (os.cpu_count() or 1) + 1))
    out = subprocess.run([sys.executable, "-c", POOL_STRESS], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "ok 150" in out.stdout, out.stderr[-2000:]
