"""The fused training layers (src/models/fused_layers.*): BatchNorm + leaky ReLU against the
float64 math and the native layers (values, gradients, moving statistics; PyNative and GRAPH),
the 2x2 max-pool against the native one (ties, odd sizes, NaN), a Tiny-DarkNet training step and
evaluation unchanged, and the auto / native / fused choice."""
import os
import shutil

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from src.kernels import fused_layers
from src.kernels.plan import set_kernels
from src.kernels.layers import MaxPool2d
# the sum(layer(x) * dy) objective, its gradients and the GRAPH / PyNative fixture of the layer tests
from test_layers import _forward_and_grads, _Objective, mode  # noqa: F401
from src.models.tinydarknet import BN_EPS, BN_MOMENTUM, LEAKY_SLOPE, ConvBNLeaky, TinyDarkNet

needs_compiler = pytest.mark.skipif(not shutil.which(os.environ.get("CXX") or "g++"),
                                    reason="no C++ compiler to build the kernels")


def reference(x, gamma, beta, dy):
    """Batch-statistics BatchNorm + leaky ReLU and its input / gamma / beta gradients (float64)."""
    axes = (0,) + tuple(range(2, x.ndim))
    view = (1, -1) + (1,) * (x.ndim - 2)
    mean, var = x.mean(axes), x.var(axes)
    xhat = (x - mean.reshape(view)) / np.sqrt(var.reshape(view) + BN_EPS)
    b = gamma.reshape(view) * xhat + beta.reshape(view)
    y = np.where(b > 0, b, LEAKY_SLOPE * b)
    g = dy * np.where(b > 0, 1.0, LEAKY_SLOPE)
    m = x.size // x.shape[1]
    dbeta, dgamma = g.sum(axes), (g * xhat).sum(axes)
    dx = (gamma / np.sqrt(var + BN_EPS)).reshape(view) * (
        g - dbeta.reshape(view) / m - xhat * dgamma.reshape(view) / m)
    return y, dx, dgamma, dbeta, mean, x.var(axes, ddof=1)


def layer_pair(rng, cin, cout):
    """A native and a fused ConvBNLeaky (1x1 convolution) with the same non-trivial parameters."""
    layers = [ConvBNLeaky(cin, cout, 1) for _ in range(2)]
    layers[1].set_kernel("fused")
    values = {"conv.weight": rng.normal(size=(cout, cin, 1, 1)), "bn.gamma": 1 + 0.3 * rng.normal(size=cout),
              "bn.beta": 0.3 * rng.normal(size=cout), "bn.moving_mean": rng.normal(size=cout),
              "bn.moving_variance": 1 + rng.random(cout)}
    for layer in layers:
        for name, param in layer.parameters_and_names():
            param.set_data(ms.Tensor(values[name].astype(np.float32)))
        layer.set_train(True)
    return layers


def run(layer, x, dy):
    """[output, input gradient, parameter gradients...] of ``sum(layer(x) * dy)``."""
    out, dx, dparams = _forward_and_grads(layer, x, dy)
    return [out, dx] + dparams


@needs_compiler
@pytest.mark.parametrize("shape", [(4, 3, 7, 7), (2, 5, 17, 19), (3, 6, 1, 1), (1, 2, 3, 1)])
def test_fused_layer_matches_the_native_one(mode, shape):
    """Values, every gradient and the moving statistics after two steps; odd map sizes (the
    kernels' vector and scalar loops, chunks of 256), a 1x1 map, one image."""
    rng = np.random.default_rng(sum(shape))
    n, c, h, w = shape
    native, fused = layer_pair(rng, 4, c)
    x = ms.Tensor((3 * rng.normal(size=(n, 4, h, w)) + 2).astype(np.float32))
    dy = ms.Tensor(rng.normal(size=(n, c, h, w)).astype(np.float32))
    want, got = run(native, x, dy), run(fused, x, dy)  # each layer runs forward twice
    for a, b in zip(got, want):
        scale = max(float(np.abs(b).max()), 1.0)
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * scale)
    for name in ("moving_mean", "moving_variance"):
        np.testing.assert_allclose(getattr(fused.bn, name).asnumpy(), getattr(native.bn, name).asnumpy(),
                                   rtol=1e-5, atol=1e-6)


@needs_compiler
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_op_matches_float64_math(offset):
    """The op against float64 numpy, also where the mean is far larger than the spread (the
    kernel sums shifted values; E[x^2] - E[x]^2 in float would lose every digit there)."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    rng = np.random.default_rng(1)
    x = offset + rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    gamma, beta = 1 + 0.3 * rng.normal(size=4), 0.3 * rng.normal(size=4)
    dy = rng.normal(size=x.shape)
    y_ref, dx_ref, dgamma_ref, dbeta_ref, mean, unbiased = reference(x.astype(np.float64), gamma, beta, dy)
    f32 = lambda a: ms.Tensor(np.asarray(a, np.float32))  # noqa: E731
    moving_mean, moving_var = ms.Parameter(f32(np.zeros(4)), "mm"), ms.Parameter(f32(np.ones(4)), "mv")
    hyper = f32([BN_EPS, BN_MOMENTUM, LEAKY_SLOPE])
    op = fused_layers.bn_leaky_op()
    y, batch_mean, istd = op(f32(x), f32(gamma), f32(beta), moving_mean, moving_var, hyper)
    # float32 holds the mean to half a unit in its last place: that much times gamma / std
    atol = 2e-5 + np.spacing(np.float32(offset)) * np.abs(gamma).max()
    np.testing.assert_allclose(y.asnumpy(), y_ref, rtol=0, atol=atol)
    np.testing.assert_allclose(batch_mean.asnumpy(), mean, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(moving_mean.asnumpy(), (1 - BN_MOMENTUM) * mean, rtol=1e-6)
    np.testing.assert_allclose(moving_var.asnumpy(), BN_MOMENTUM + (1 - BN_MOMENTUM) * unbiased, rtol=1e-5)
    grads = ms.grad(lambda *a: (op(*a)[0] * f32(dy)).sum(), grad_position=(0, 1, 2))(
        f32(x), f32(gamma), f32(beta), moving_mean, moving_var, hyper)
    for got, want in zip(grads, (dx_ref, dgamma_ref, dbeta_ref)):
        np.testing.assert_allclose(got.asnumpy(), want, rtol=0, atol=5e-5 * max(np.abs(want).max(), 1))


@needs_compiler
def test_nan_reaches_the_output_and_only_its_channel():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    x = np.random.default_rng(2).normal(size=(2, 3, 4, 4)).astype(np.float32)
    x[1, 1, 2, 3] = np.nan
    f32 = lambda a: ms.Tensor(np.asarray(a, np.float32))  # noqa: E731
    y = fused_layers.bn_leaky_op()(f32(x), f32(np.ones(3)), f32(np.zeros(3)), ms.Parameter(f32(np.zeros(3)), "mm"),
                               ms.Parameter(f32(np.ones(3)), "mv"), f32([BN_EPS, BN_MOMENTUM, LEAKY_SLOPE]))[0]
    y = y.asnumpy()
    assert np.isnan(y[:, 1]).all()  # a diverged batch must show in the loss
    assert np.isfinite(y[:, [0, 2]]).all()


@needs_compiler
def test_tinydarknet_trains_and_evaluates_like_the_native_one():
    """GRAPH mode: one momentum step of each network from the same parameters gives the same
    loss, parameters and moving statistics; evaluation (native layers in both) the same logits."""
    ms.set_context(mode=ms.GRAPH_MODE)
    rng = np.random.default_rng(3)
    x = ms.Tensor(rng.random((4, 3, 32, 32)).astype(np.float32))
    labels = ms.Tensor(rng.integers(0, 10, 4).astype(np.int32))
    nets = []
    for impl in ("native", "fused"):
        ms.set_seed(5)
        nets.append(set_kernels(TinyDarkNet(num_classes=10), bn_leaky=impl, max_pool=impl))
    params = {p.name: p.asnumpy() for p in nets[0].get_parameters()}
    losses = []
    for net in nets:
        for p in net.get_parameters():
            p.set_data(ms.Tensor(params[p.name]))
        step = nn.TrainOneStepCell(nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean")),
                                   nn.Momentum(net.trainable_params(), 0.01, 0.9))
        step.set_train(True)
        losses.append(float(step(x, labels).asnumpy()))
    assert abs(losses[0] - losses[1]) < 1e-5 * max(1.0, abs(losses[0]))
    fused_params = {p.name: p.asnumpy() for p in nets[1].get_parameters()}
    moved = 0
    for p in nets[0].get_parameters():
        np.testing.assert_allclose(fused_params[p.name], p.asnumpy(), rtol=1e-4, atol=1e-5, err_msg=p.name)
        moved += not np.array_equal(fused_params[p.name], params[p.name])
    assert moved == len(params)  # every weight, gamma, beta and moving statistic changed
    for net in nets:
        net.set_train(False)
    np.testing.assert_allclose(nets[1](x).asnumpy(), nets[0](x).asnumpy(), rtol=1e-4, atol=1e-4)


@needs_compiler
@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (2, 3, 7, 9), (1, 2, 2, 2), (4, 64, 16, 16)])
def test_fused_max_pool_matches_the_native_one(mode, shape):
    """Values and input gradients of MaxPool2d(2, 2) training mode, on small integers (ties in
    most windows: the gradient goes to the first maximum in both), odd sizes (the last row /
    column is dropped) and a map large enough for both threads."""
    rng = np.random.default_rng(sum(shape))
    x = ms.Tensor(rng.integers(0, 3, size=shape).astype(np.float32))
    dy = ms.Tensor(rng.normal(size=shape[:2] + (shape[2] // 2, shape[3] // 2)).astype(np.float32))
    results = []
    for impl in ("native", "fused"):
        pool = MaxPool2d(2, 2)
        pool.set_kernel(impl)
        pool.set_train(True)
        grad = ms.grad(_Objective(pool), grad_position=0)(x, dy)
        results.append((pool(x).asnumpy(), grad.asnumpy()))
    (want_y, want_dx), (got_y, got_dx) = results
    np.testing.assert_array_equal(got_y, want_y)
    np.testing.assert_array_equal(got_dx, want_dx)
    assert np.count_nonzero(got_dx) == dy.size  # every window passes its gradient on once


@needs_compiler
def test_fused_max_pool_keeps_nan_and_refuses_other_windows():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    y = fused_layers.max_pool_op()(ms.Tensor(x)).asnumpy()
    assert np.isnan(y[0, 0, 0, 0]) and np.array_equal(y[0, 0, 1], [13.0, 15.0])
    with pytest.raises(ValueError, match="pools 2x2 windows with stride 2"):
        MaxPool2d(3, 2).set_kernel("fused")
    with pytest.raises(ValueError, match="impl must be native or fused"):
        MaxPool2d(2, 2).set_kernel("fast")


def test_layer_kernel_names():
    with pytest.raises(ValueError, match="impl must be native or fused"):
        ConvBNLeaky(3, 4, 3).set_kernel("fast")


def test_export_builds_native_layers():
    """Exported graphs hold native ops: export builds the network without kernel choices."""
    from src.kernels.layers import KernelSite
    from src.model_utils.config import get_config
    from src.models import create_model_from_config
    cfg = get_config(["--config_path", "config/cifar10_config_cpu.yaml"])
    net = create_model_from_config(cfg, export=True)
    assert all(c.kernel_impl == "native" for _, c in net.cells_and_names() if isinstance(c, KernelSite))
