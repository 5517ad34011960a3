"""``src.kernels.layers``: the im2col Conv2d equals ``nn.Conv2d`` (outputs and gradients w.r.t. the
input, the weight and the bias) and loads the same checkpoints; the fast LeakyReLU equals
``nn.LeakyReLU`` and the fast MaxPool2d equals ``nn.MaxPool2d``. Both code paths of the im2col
Conv2d are covered (maps above and below ``SMALL_MAP_POSITIONS``), in GRAPH and PYNATIVE mode.
"""
import numpy as np
import pytest
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops

from src.kernels.layers import SMALL_MAP_POSITIONS, Conv2d, LeakyReLU, MaxPool2d

RTOL = 1e-5

# (batch, in_channels, out_channels, kernel, height, width, stride, has_bias)
SHAPES = [
    (2, 3, 8, 3, 12, 12, 1, False),   # 144 positions: per-image GEMM path
    (2, 5, 6, 3, 10, 7, 1, True),     # non-square map, bias
    (3, 4, 8, 5, 9, 9, 1, True),      # 5x5
    (4, 8, 16, 3, 4, 4, 1, False),    # 16 positions: batch folded into one GEMM
    (3, 6, 5, 5, 2, 3, 1, True),      # tiny map, 5x5 kernel larger than the map
    (4, 16, 8, 3, 2, 2, 1, True),     # 2x2 map
    (2, 4, 8, 1, 6, 6, 1, True),      # 1x1: the native op either way
    (2, 3, 4, 3, 9, 9, 2, True),      # stride 2
]


@pytest.fixture(params=["GRAPH", "PYNATIVE"])
def mode(request):
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE if request.param == "GRAPH" else ms.PYNATIVE_MODE)
    yield request.param
    ms.set_context(mode=previous)


class _Objective(nn.Cell):
    """sum(cell(x) * dy): its gradients are the cell's backward for the cotangent dy."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv

    def construct(self, x, dy):
        return (self.conv(x) * dy).sum()


def _forward_and_grads(conv, x, dy):
    objective = _Objective(conv)
    params = conv.trainable_params()
    grad_fn = ms.grad(objective, grad_position=0, weights=params)
    dx, dparams = grad_fn(x, dy)
    return conv(x).asnumpy(), dx.asnumpy(), [g.asnumpy() for g in dparams]


def _assert_close(actual, expected, what):
    scale = max(float(np.abs(expected).max()), 1e-12)
    err = float(np.abs(actual - expected).max()) / scale
    assert actual.shape == expected.shape, what
    assert err <= RTOL, f"{what}: max error {err:.2e} of the largest value (> {RTOL})"


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "n{}c{}o{}k{}_{}x{}_s{}_{}".format(
    *s[:7], "bias" if s[7] else "nobias"))
def test_unfold_conv_equals_native(mode, shape):
    n, c, o, k, h, w, stride, bias = shape
    rng = np.random.default_rng(sum(shape))
    native = nn.Conv2d(c, o, k, stride=stride, pad_mode="pad", padding=k // 2, has_bias=bias,
                       weight_init="he_uniform", bias_init="zeros")
    fast = Conv2d(c, o, k, stride=stride, has_bias=bias)
    fast.set_kernel("unfold")
    # same parameter names and shapes: a checkpoint of one loads strictly into the other
    assert [(p.name, p.shape) for p in fast.get_parameters()] == \
        [(p.name, p.shape) for p in native.get_parameters()]
    weights = {"weight": ms.Parameter(ms.Tensor(rng.standard_normal((o, c, k, k)).astype(np.float32)),
                                      name="weight")}
    if bias:
        weights["bias"] = ms.Parameter(ms.Tensor(rng.standard_normal(o).astype(np.float32)), name="bias")
    for net in (native, fast):
        missing, _ = ms.load_param_into_net(net, dict(weights), strict_load=True)
        assert not missing
    x = ms.Tensor(rng.standard_normal((n, c, h, w)).astype(np.float32))
    out_h, out_w = (h + 2 * (k // 2) - k) // stride + 1, (w + 2 * (k // 2) - k) // stride + 1
    dy = ms.Tensor(rng.standard_normal((n, o, out_h, out_w)).astype(np.float32))

    ref_out, ref_dx, ref_dparams = _forward_and_grads(native, x, dy)
    out, dx, dparams = _forward_and_grads(fast, x, dy)
    _assert_close(out, ref_out, "output")
    _assert_close(dx, ref_dx, "gradient w.r.t. the input")
    assert len(dparams) == len(ref_dparams) == (2 if bias else 1)
    _assert_close(dparams[0], ref_dparams[0], "gradient w.r.t. the weight")
    if bias:
        _assert_close(dparams[1], ref_dparams[1], "gradient w.r.t. the bias")


def test_both_unfold_paths_are_tested():
    positions = [((h + 2 * (k // 2) - k) // s + 1) * ((w + 2 * (k // 2) - k) // s + 1)
                 for _, _, _, k, h, w, s, _ in SHAPES if k > 1]
    assert any(p > SMALL_MAP_POSITIONS for p in positions)
    assert any(p <= SMALL_MAP_POSITIONS for p in positions)


def test_unfold_ignored_for_1x1_and_default_padding():
    one = Conv2d(4, 8, 1)
    one.set_kernel("unfold")
    assert not one.use_unfold and one.kernel_impl == "unfold"
    conv = Conv2d(4, 8, 5)
    assert not conv.use_unfold and conv.kernel_impl == "native"  # every layer starts native
    conv.set_kernel("unfold")
    assert conv.use_unfold
    assert conv.conv_padding == 2 and conv.pad_mode == "pad"
    conv.set_kernel("native")
    assert not conv.use_unfold
    with pytest.raises(ValueError):
        conv.set_kernel("yes")


def test_fast_leaky_relu_equals_native(mode):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5, 5)).astype(np.float32)
    x[0, 0, 0, :3] = [0.0, -0.0, 1e-30]
    dy = ms.Tensor(rng.standard_normal(x.shape).astype(np.float32))
    for alpha in (0.1, 0.2, 0.01):
        fast, ref = LeakyReLU(alpha), nn.LeakyReLU(alpha)
        assert isinstance(fast, nn.LeakyReLU)
        tx = ms.Tensor(x)
        out, ref_out = fast(tx).asnumpy(), ref(tx).asnumpy()
        np.testing.assert_allclose(out, ref_out, rtol=1e-6, atol=1e-30)
        gx = ms.grad(_Objective(fast))(tx, dy).asnumpy()
        gref = ms.grad(_Objective(ref))(tx, dy).asnumpy()
        nonzero = x != 0  # at exactly 0 the two formulations may pick different one-sided slopes
        np.testing.assert_allclose(gx[nonzero], gref[nonzero], rtol=1e-6)


def test_fast_leaky_relu_rejects_bad_slope():
    with pytest.raises(ValueError):
        LeakyReLU(1.5)


def test_unfold_conv_exports_like_native(tmp_path):
    """The im2col path is a training-speed detail: a native network (what export builds) loads
    the im2col network's weights."""
    fast = Conv2d(3, 4, 3, has_bias=True)
    fast.set_kernel("unfold")
    native = Conv2d(3, 4, 3, has_bias=True)
    ms.load_param_into_net(native, fast.parameters_dict(), strict_load=True)
    x = ms.Tensor(np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32))
    np.testing.assert_allclose(native(x).asnumpy(), fast(x).asnumpy(), rtol=1e-5, atol=1e-5)
    assert ops.isfinite(native(x)).all()


def test_fast_max_pool_equals_native(mode):
    """Training mode (argmax pooling) and inference mode both equal nn.MaxPool2d, gradients too,
    also with ties (the gradient goes to the first maximum of a window in both)."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, (2, 3, 8, 6)).astype(np.float32)  # many ties
    x[0, 0] = 1.0
    tx = ms.Tensor(x)
    dy = ms.Tensor(rng.standard_normal((2, 3, 4, 3)).astype(np.float32))
    ref = nn.MaxPool2d(kernel_size=2, stride=2)
    fast = MaxPool2d(kernel_size=2, stride=2)
    assert isinstance(fast, nn.MaxPool2d)
    for training in (True, False):
        fast.set_train(training)
        ref.set_train(training)
        np.testing.assert_array_equal(fast(tx).asnumpy(), ref(tx).asnumpy())
        g = ms.grad(_Objective(fast))(tx, dy).asnumpy()
        gref = ms.grad(_Objective(ref))(tx, dy).asnumpy()
        np.testing.assert_array_equal(g, gref)


def test_maxpool_prints_no_deprecation_warning():
    """MaxPool2d keeps the fast (deprecated) argmax op without its warning on stderr."""
    import os
    import subprocess
    import sys
    code = "from src.kernels.layers import MaxPool2d; MaxPool2d(2, 2); print('built')"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "built" in out.stdout
    assert "deprecated" not in out.stderr, out.stderr[-500:]
