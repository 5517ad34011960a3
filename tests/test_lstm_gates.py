"""The fused ConvLSTM gate kernels (src/models/lstm_gates.*): same values and gradients as the
native gate math, NaN kept, the network's outputs unchanged, and the auto / native / fused choice."""
import os
import shutil

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from src.kernels import lstm_gates
from src.kernels.plan import set_kernels
from src.models.convlstm import ConvLSTM, ConvLSTMCell

needs_compiler = pytest.mark.skipif(not shutil.which(os.environ.get("CXX") or "g++"),
                                    reason="no C++ compiler to build the kernels")


def per_channel(w, c):
    """(C,) peephole weights shaped to broadcast against the state c (N, C, ...)."""
    return w.reshape((1, -1) + (1,) * (c.ndim - 2))


def native_gates(z, c, w_ci, w_cf, w_co):
    w_ci, w_cf, w_co = (per_channel(w, c) for w in (w_ci, w_cf, w_co))
    zi, zf, zg, zo = ops.split(z, z.shape[1] // 4, axis=1)
    i = ops.sigmoid(zi + w_ci * c)
    f = ops.sigmoid(zf + w_cf * c)
    c_new = f * c + i * ops.tanh(zg)
    o = ops.sigmoid(zo + w_co * c_new)
    return o * ops.tanh(c_new), c_new


def values_and_grads(gates, args, dh, dc):
    def loss(*a):
        h, c = gates(*a)
        return (h * dh).sum() + (c * dc).sum()
    out = gates(*args)
    grads = ms.grad(loss, grad_position=tuple(range(5)))(*args)
    return [o.asnumpy() for o in out] + [g.asnumpy() for g in grads]


def reference_gates(z, c, w_ci, w_cf, w_co):
    """The gate math in float64 numpy (peepholes (C,))."""
    w_ci, w_cf, w_co = (per_channel(w, c) for w in (w_ci, w_cf, w_co))
    zi, zf, zg, zo = np.split(z, 4, axis=1)
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    i, f = sig(zi + w_ci * c), sig(zf + w_cf * c)
    c_new = f * c + i * np.tanh(zg)
    return sig(zo + w_co * c_new) * np.tanh(c_new), c_new


def reference_grads(args, dh, dc, eps=1e-6):
    """Gradients of sum(h' dh + c' dc) by central differences of the float64 reference."""
    def loss(a):
        h, c = reference_gates(*a)
        return float((h * dh).sum() + (c * dc).sum())
    grads = []
    for k, arg in enumerate(args):
        grad = np.zeros_like(arg)
        for idx in np.ndindex(arg.shape):
            plus = [a.copy() for a in args]
            minus = [a.copy() for a in args]
            plus[k][idx] += eps
            minus[k][idx] -= eps
            grad[idx] = (loss(plus) - loss(minus)) / (2 * eps)
        grads.append(grad)
    return grads


@needs_compiler
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 8, 2, 2), (3, 5, 6)])
def test_fused_gates_match_the_float64_math_and_the_native_ops(shape):
    ms.set_context(mode=ms.PYNATIVE_MODE)
    rng = np.random.default_rng(sum(shape))
    n, ch, *rest = shape
    state = (n, ch, *rest)
    args = ([3 * rng.normal(size=(n, 4 * ch, *rest)), rng.normal(size=state)]
            + [rng.normal(size=ch) for _ in range(3)])
    dh, dc = rng.normal(size=state), rng.normal(size=state)
    want = list(reference_gates(*args)) + reference_grads(args, dh, dc)
    tensors = [ms.Tensor(a.astype(np.float32)) for a in args]
    dh32, dc32 = ms.Tensor(dh.astype(np.float32)), ms.Tensor(dc.astype(np.float32))
    op = lstm_gates.lstm_gates_op()
    fused = values_and_grads(lambda *a: op(*a), tensors, dh32, dc32)
    native = values_and_grads(native_gates, tensors, dh32, dc32)
    for got, ref, theirs in zip(fused, want, native):
        assert got.shape == ref.shape
        np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6)  # float32 rounding
        # MindSpore's CPU sigmoid / tanh approximate: ~1e-4 off the float64 values
        np.testing.assert_allclose(theirs, got, rtol=0, atol=1e-3)


@needs_compiler
def test_fused_gates_split_over_threads_match_the_native_ops():
    """A state large enough for the kernels to split the channels between the pool's threads
    (the per-channel peephole sums included)."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    rng = np.random.default_rng(5)
    n, ch, size = 4, 32, 16
    state = (n, ch, size, size)
    args = [ms.Tensor(a.astype(np.float32)) for a in
            [3 * rng.normal(size=(n, 4 * ch, size, size)), rng.normal(size=state)]
            + [rng.normal(size=ch) for _ in range(3)]]
    dh, dc = (ms.Tensor(rng.normal(size=state).astype(np.float32)) for _ in range(2))
    op = lstm_gates.lstm_gates_op()
    fused = values_and_grads(lambda *a: op(*a), args, dh, dc)
    native = values_and_grads(native_gates, args, dh, dc)
    for got, want in zip(fused, native):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * max(1.0, np.abs(want).max() / 100))


@needs_compiler
def test_fused_gates_keep_nan_and_saturate_without_overflow():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    z = np.zeros((1, 4, 1, 3), np.float32)
    z[0, :, 0, 0] = np.nan
    z[0, :, 0, 1] = 1e30
    z[0, :, 0, 2] = -1e30
    c = np.ones((1, 1, 1, 3), np.float32)
    w = ms.Tensor(np.zeros(1, np.float32))
    h, c_new = lstm_gates.lstm_gates_op()(ms.Tensor(z), ms.Tensor(c), w, w, w)
    h = h.asnumpy().ravel()
    assert np.isnan(h[0])  # a diverged run must still show it
    # all gates open: c' = 1 + 1, h' = tanh(2); all shut: c' = 0, h' = 0
    np.testing.assert_allclose(h[1:], [np.tanh(2.0), 0.0], atol=1e-6)
    np.testing.assert_allclose(c_new.asnumpy().ravel()[1:], [2.0, 0.0], atol=1e-6)


class MeanSquare(nn.Cell):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def construct(self, x):
        return (self.net(x) ** 2).mean()


@needs_compiler
def test_a_fused_network_trains_like_the_native_one():
    """Same parameters, outputs and parameter gradients in GRAPH mode (a stack with peepholes,
    fused gate convolution and a cell without input in the encoder-forecaster)."""
    ms.set_context(mode=ms.GRAPH_MODE)
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.random((2, 3, 1, 16, 16)).astype(np.float32))
    for kwargs in (dict(structure="stack", forecaster_input="prediction"),
                   dict(structure="encoder_forecaster")):
        nets = []
        for impl in ("native", "fused"):
            ms.set_seed(3)
            nets.append(set_kernels(ConvLSTM(1, 4, (6, 5), 3, 3, input_frames=3, output_frames=2,
                                             **kwargs), lstm_gates=impl))
        native, fused = nets
        fused_params = {p.name: p for p in fused.trainable_params()}
        assert sorted(fused_params) == sorted(p.name for p in native.trainable_params())
        for p in native.trainable_params():  # peepholes too: non-zero, so they are exercised
            value = rng.normal(scale=0.3, size=p.shape).astype(np.float32)
            p.set_data(ms.Tensor(value))
            fused_params[p.name].set_data(ms.Tensor(value))
        results = []
        for net in (native, fused):
            grads = ms.grad(MeanSquare(net), grad_position=None, weights=net.trainable_params())(x)
            results.append((net(x).asnumpy(), [g.asnumpy() for g in grads]))
        np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-4, atol=1e-5)
        for got, want in zip(results[1][1], results[0][1]):
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)


def test_no_compiler_is_reported_and_export_builds_native(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-compiler"))
    assert lstm_gates.LIBRARY.build() == (None, f"no C++ compiler ({tmp_path / 'no-such-compiler'}) on PATH")
    from src.model_utils.config import get_config
    from src.models import create_model_from_config
    cfg = get_config(["--config_path", "config/mmnist_config_cpu.yaml"])
    net = create_model_from_config(cfg, export=True)  # exported graphs: native ops
    assert all(cell.gate_op is None for cell in net.stack)
    with pytest.raises(ValueError, match="impl must be native or fused"):
        ConvLSTMCell(4, 4, 3, 3).set_kernel("fast")


@needs_compiler
def test_train_py_with_fused_gates(mmnist_dir, tmp_path):
    from conftest import ROOT, TINY_CONVLSTM
    from entry_runner import run_commands
    (code, stdout, stderr), = run_commands(
        ["train.py", "--config_path", os.path.join(ROOT, "config", "mmnist_config_cpu.yaml"), "--data_path",
         mmnist_dir, "--output_dir", tmp_path / "run", *TINY_CONVLSTM, "--epoch_size", "1",
         "--gate_impl", "fused"])
    assert code == 0, stderr[-2000:]
    assert "lstm_gates fused x2" in stdout and "kernel_choices.json" in stdout
    assert '"impl": "fused"' in (tmp_path / "run" / "kernel_choices.json").read_text()
    assert "epoch: 1 step: 2, loss is" in stdout
