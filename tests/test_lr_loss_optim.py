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
    logits = ms.Tensor(np.zeros((2, 2, 1, 2, 2), np.float32))
    target = ms.Tensor(np.ones((2, 2, 1, 2, 2), np.float32))
    assert float(create_loss("bce")(logits, target).asnumpy()) == pytest.approx(np.log(2), rel=1e-5)
    assert float(create_loss("mse")(logits, target).asnumpy()) == pytest.approx(0.25, rel=1e-5)
    # the paper's reduction: summed over the 2 frames x 4 pixels of a sequence, mean over the batch
    per_seq = create_loss("bce", reduction="sequence_sum")(logits, target)
    assert float(per_seq.asnumpy()) == pytest.approx(8 * np.log(2), rel=1e-5)
    assert float(create_loss("mse", reduction="sequence_sum")(logits, target).asnumpy()) == \
        pytest.approx(8 * 0.25, rel=1e-5)
    with pytest.raises(ValueError, match="unknown loss"):
        create_loss("hinge")
    with pytest.raises(ValueError, match="unknown loss reduction"):
        create_loss("bce", reduction="sum")


def test_sequence_sum_bce_matches_numpy_per_sequence_cross_entropy():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 4, (3, 2, 1, 4, 4)).astype(np.float32)
    t = rng.random((3, 2, 1, 4, 4)).astype(np.float32)
    p = 1 / (1 + np.exp(-z.astype(np.float64)))
    expected = -(t * np.log(p) + (1 - t) * np.log(1 - p)).sum() / 3
    got = float(create_loss("bce", reduction="sequence_sum")(ms.Tensor(z), ms.Tensor(t)).asnumpy())
    assert got == pytest.approx(expected, rel=1e-5)


# ---------------------------------------------------------------- RMSProp on the paper config
def _paper_rmsprop_setup(reduction):
    """Gradients of a tiny ConvLSTM (32x32 bouncing blobs) under ``reduction`` and the repo's
    optimizer built with the paper config's optimizer settings (config/mmnist_config.yaml)."""
    from src.data.moving_mnist import MovingMNISTGenerator
    from src.model_utils.config import REPO_ROOT, load_yaml
    from src.models.convlstm import ConvLSTM
    cfg, _, _ = load_yaml(f"{REPO_ROOT}/config/mmnist_config.yaml")
    assert (cfg["optimizer"], cfg["lr"], cfg["rmsprop_decay"], cfg["opt_eps"]) == \
        ("rmsprop", 1e-3, 0.9, 1e-6)
    assert cfg["loss_reduction"] == "sequence_sum"
    rng = np.random.default_rng(0)
    blobs = np.zeros((10, 28, 28), np.uint8)
    for blob in blobs:
        r, c = rng.integers(4, 14, 2)
        blob[r:r + 12, c:c + 6] = 255
    gen = MovingMNISTGenerator(blobs, 4, seq_len=7, image_size=32, input_frames=3, output_frames=4)
    x = ms.Tensor(np.stack([gen[i][0] for i in range(4)]))
    y = ms.Tensor(np.stack([gen[i][1] for i in range(4)]))
    ms.set_seed(0)
    net = ConvLSTM(hidden_channels=(8, 8), input_kernel=3, state_kernel=3, input_frames=3,
                   output_frames=4)
    loss_fn = create_loss(cfg["loss"], reduction=reduction)
    params = net.trainable_params()
    _, grads = ms.value_and_grad(lambda a, b: loss_fn(net(a), b), None, params)(x, y)
    opt = create_optimizer(cfg["optimizer"], params, cfg["lr"], rmsprop_decay=cfg["rmsprop_decay"],
                           eps=cfg["opt_eps"])
    return cfg, params, grads, opt


def _textbook_step(grad, mean_square, cfg):
    """Textbook RMSProp (Tieleman & Hinton): returns (weight decrement, new mean square)."""
    mean_square = cfg["rmsprop_decay"] * mean_square + (1 - cfg["rmsprop_decay"]) * grad ** 2
    return cfg["lr"] * grad / (np.sqrt(mean_square) + cfg["opt_eps"]), mean_square


def test_rmsprop_step_on_paper_config_is_a_textbook_step():
    """One step of create_optimizer's RMSProp with the paper's settings on sequence-summed
    cross-entropy gradients moves every weight within 2x of textbook RMSProp from the same
    mean square (MindSpore 2.10 initialises ``mean_square`` to ones)."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg, params, grads, opt = _paper_rmsprop_setup("sequence_sum")
    before = [p.asnumpy().astype(np.float64) for p in params]
    initial = [m.asnumpy().copy() for m in opt.ms]
    assert all(np.all(m == 1.0) for m in initial)  # MindSpore's RMSProp starts mean_square at 1
    opt(grads)
    checked = total = 0
    for param, w0, g, m0 in zip(params, before, grads, initial):
        moved = w0 - param.asnumpy().astype(np.float64)
        textbook, _ = _textbook_step(g.asnumpy().astype(np.float64), m0.astype(np.float64), cfg)
        # a float32 weight cannot show a step below a few units in its last place
        visible = np.abs(textbook) > 8 * np.spacing(np.abs(w0).astype(np.float32))
        ratio = moved[visible] / textbook[visible]
        assert np.all((ratio > 0.5) & (ratio < 2.0)), (param.name, ratio.min(), ratio.max())
        checked += int(visible.sum())
        total += moved.size
    assert checked > 0.99 * total


def _warmed_up_fraction(reduction, steps=50):
    """Fraction of weights whose step of the repo's RMSProp (same gradients every step) reaches
    half of a textbook RMSProp step at its fixed point (mean square = g^2: lr * g / (|g| + eps))
    at step ``steps``."""
    ms.set_context(mode=ms.PYNATIVE_MODE)
    cfg, params, grads, opt = _paper_rmsprop_setup(reduction)
    for _ in range(steps - 1):
        opt(grads)
    before = [p.asnumpy().astype(np.float64) for p in params]
    opt(grads)
    reached = total = 0
    for param, w0, g in zip(params, before, grads):
        moved = w0 - param.asnumpy().astype(np.float64)
        g = g.asnumpy().astype(np.float64)
        textbook, _ = _textbook_step(g, g ** 2, cfg)
        reached += int(np.sum(moved / textbook > 0.5))
        total += moved.size
    return reached / total


def test_rmsprop_warms_up_with_the_sequence_sum_not_with_a_pixel_mean():
    """Why the reduction matters: MindSpore's mean_square starts at 1 and decays by 0.9 a step;
    steps stay far below an RMSProp step until it has decayed to ~g^2. Pixel-mean gradients
    (g^2 ~ 1e-8) need ~200 steps; sequence-summed ones (g^2 ~ 1e-2) a few dozen. Measured on
    this tiny problem at step 50: 77 % of weights vs 0 %."""
    assert _warmed_up_fraction("sequence_sum") > 0.6
    assert _warmed_up_fraction("mean") < 0.05


def test_ssim_loss_is_one_minus_skimage_ssim():
    """SSIMLoss's map is skimage's structural_similarity(data_range=1) (the reported metric):
    its mean over a frame equals skimage's SSIM, and the added term is weight x sum(1 - map)."""
    from skimage.metrics import structural_similarity
    from src.loss import SSIMLoss
    rng = np.random.default_rng(0)
    probs = rng.uniform(0.02, 0.98, (2, 3, 1, 12, 16)).astype(np.float32)
    target = (rng.random(probs.shape) > 0.7).astype(np.float32)
    logits = np.log(probs / (1 - probs))
    ssim_map = SSIMLoss().ssim_map(ms.Tensor(probs), ms.Tensor(target)).asnumpy()
    assert ssim_map.shape == (6, 1, 6, 10)
    frames = zip(probs.reshape(6, 12, 16), target.reshape(6, 12, 16))
    expected = [structural_similarity(p, t, data_range=1) for p, t in frames]
    np.testing.assert_allclose(ssim_map.reshape(6, -1).mean(1), expected, atol=1e-5)
    seven = rng.random((2, 7, 7)).astype(np.float32)  # the smallest frame: one window
    one = SSIMLoss().ssim_map(ms.Tensor(seven[:1]), ms.Tensor(seven[1:])).asnumpy()
    assert one.shape == (1, 1, 1, 1)
    assert one.item() == pytest.approx(structural_similarity(seven[0], seven[1], data_range=1), abs=1e-5)
    bce = create_loss("bce", reduction="sequence_sum")
    both = create_loss("bce", reduction="sequence_sum", ssim_weight=0.5)
    x, y = ms.Tensor(logits), ms.Tensor(target)
    assert float(both(x, y).asnumpy()) == pytest.approx(
        float(bce(x, y).asnumpy()) + 0.5 * (1 - ssim_map).sum() / 2, rel=1e-5)
    mean = create_loss("mse", reduction="mean", ssim_weight=2.0)
    assert float(mean(x, y).asnumpy()) == pytest.approx(
        float(create_loss("mse", reduction="mean")(x, y).asnumpy()) + 2 * (1 - ssim_map).mean(), rel=1e-5)
    perfect = SSIMLoss()(ms.Tensor(np.where(target > 0, 30.0, -30.0).astype(np.float32)), y)
    assert float(perfect.asnumpy()) == pytest.approx(0.0, abs=1e-3)
    for bad in (dict(name="ce", ssim_weight=1.0), dict(name="bce", ssim_weight=-1.0)):
        with pytest.raises(ValueError, match="ssim_weight"):
            create_loss(**bad)
