"""ConvLSTM (Shi et al. 2015): parameter counts, shapes, gradients, causality, unfold, export."""
import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn, ops

from src.kernels.plan import set_kernels
from src.models.convlstm import ConvLSTM, ConvLSTMCell, convert_legacy_params, count_parameters


@pytest.fixture(autouse=True)
def pynative():
    ms.set_context(mode=ms.PYNATIVE_MODE)
    yield


# Table 1 of the paper: (input-to-state kernel, state-to-state kernel, hidden channels, params).
TABLE_1 = [
    (5, 5, (256,), 13_524_496),
    (5, 5, (128, 128), 10_042_896),
    (5, 5, (128, 64, 64), 7_585_296),
    (9, 1, (128, 128), 11_550_224),
    (9, 1, (128, 64, 64), 8_830_480),
]


def tiny(**kw):
    args = dict(hidden_channels=(8, 8), input_kernel=3, state_kernel=3, input_frames=3,
                output_frames=4)
    args.update(kw)
    return ConvLSTM(**args)


def rand_frames(n=2, t=3, h=16, w=16, seed=0):
    return np.random.default_rng(seed).random((n, t, 1, h, w), dtype=np.float32)


def copy_weights(src, dst):
    ms.load_param_into_net(dst, {p.name: ms.Parameter(p.asnumpy(), name=p.name)
                                for p in src.get_parameters()},
                           strict_load=True)


@pytest.mark.parametrize("kx,kh,hidden,expected", TABLE_1)
def test_table1_parameter_counts(kx, kh, hidden, expected):
    net = ConvLSTM(in_channels=1, patch_size=4, hidden_channels=hidden, input_kernel=kx,
                   state_kernel=kh)
    assert count_parameters(net) == expected
    assert count_parameters(net, trainable_only=False) == expected


def test_parameter_names_and_peepholes_trainable():
    net = tiny()
    names = {p.name for p in net.trainable_params()}
    for name in ("encoder.0.conv_xh.weight", "encoder.0.conv_xh.bias", "encoder.1.w_ci",
                 "forecaster.0.conv_h.weight", "forecaster.0.conv_h.bias", "forecaster.0.w_co",
                 "forecaster.1.conv_xh.weight", "head.weight", "head.bias"):
        assert name in names
    # the first forecaster layer has no input-to-state weights and one bias set
    assert not any(n.startswith("forecaster.0.conv_x") for n in names)
    assert not any(".conv_x." in n or "encoder.0.conv_h" in n for n in names)
    cell = ConvLSTMCell(4, 6, 5, 3)  # different kernels: two convolutions, one bias set
    assert not cell.fused
    assert count_parameters(cell) == 4 * 4 * 6 * 25 + 4 * 6 * 6 * 9 + 4 * 6 + 3 * 6
    fused = ConvLSTMCell(4, 6, 3, 3)
    assert fused.fused and fused.conv_xh.weight.shape == (24, 10, 3, 3)
    assert count_parameters(fused) == 4 * 4 * 6 * 9 + 4 * 6 * 6 * 9 + 4 * 6 + 3 * 6
    unfused = tiny(fuse_gates=False)
    assert {"encoder.0.conv_x.weight", "encoder.0.conv_x.bias", "encoder.0.conv_h.weight"} <= \
        {p.name for p in unfused.trainable_params()}
    assert count_parameters(unfused) == count_parameters(net)


def test_patchify_layout_and_roundtrip():
    net = tiny()
    x = rand_frames(1, 2, 8, 12)
    xp = net.patchify(Tensor(x)).asnumpy()
    assert xp.shape == (1, 2, 16, 2, 3)
    # channel (a*4 + b) of patch (i, j) is pixel (4i + a, 4j + b)
    assert xp[0, 1, 4 * 2 + 3, 1, 2] == x[0, 1, 0, 4 + 2, 8 + 3]
    back = net.unpatchify(Tensor(xp[:, 1])).asnumpy()
    np.testing.assert_array_equal(back[:, 0], x[:, 1])


def test_output_shapes_logits_and_predict():
    net = tiny()
    out = net(Tensor(rand_frames())).asnumpy()
    assert out.shape == (2, 4, 1, 16, 16) and out.dtype == np.float32
    prob = net.predict(Tensor(rand_frames())).asnumpy()
    np.testing.assert_allclose(prob, 1 / (1 + np.exp(-out)), rtol=1e-5, atol=1e-6)
    # spatial size is not hard-coded; single layer works
    out = tiny(hidden_channels=(4,), output_frames=2)(Tensor(rand_frames(1, 2, 8, 12))).asnumpy()
    assert out.shape == (1, 2, 1, 8, 12)
    with pytest.raises(ValueError, match="divisible"):
        net(Tensor(rand_frames(1, 2, 10, 16)))


def test_forward_backward_gradients_finite_nonzero():
    net = tiny()
    x = Tensor(rand_frames())
    y = Tensor((rand_frames(2, 4, seed=1) > 0.5).astype(np.float32))
    loss_fn = nn.BCEWithLogitsLoss()
    grad_fn = ms.value_and_grad(lambda a, b: loss_fn(net(a), b), None, net.trainable_params())
    loss, grads = grad_fn(x, y)
    assert np.isfinite(float(loss))
    assert len(grads) == len(net.trainable_params())
    for param, grad in zip(net.trainable_params(), grads):
        g = grad.asnumpy()
        assert np.all(np.isfinite(g)), param.name
        assert np.abs(g).max() > 0, param.name


def test_encoder_is_causal_and_forecast_uses_last_frame():
    net = tiny()
    x = rand_frames(1, 3)
    x2 = x.copy()
    x2[:, 1] = 1.0 - x2[:, 1]
    _, _, seq = net.encode(Tensor(x), return_sequence=True)
    _, _, seq2 = net.encode(Tensor(x2), return_sequence=True)
    seq, seq2 = seq.asnumpy(), seq2.asnumpy()
    assert seq.shape == (1, 3, 8, 4, 4)
    np.testing.assert_array_equal(seq[:, 0], seq2[:, 0])  # step 0 does not see frame 1
    assert np.abs(seq[:, 1] - seq2[:, 1]).max() > 1e-6  # step 1 does
    x3 = x.copy()
    x3[:, -1] = 0.0
    assert np.abs(net(Tensor(x)).asnumpy() - net(Tensor(x3)).asnumpy()).max() > 1e-6


def test_unfold_matches_native_convolution():
    ref = tiny(input_kernel=5, state_kernel=3)
    fast = set_kernels(tiny(input_kernel=5, state_kernel=3), conv="unfold")
    copy_weights(ref, fast)
    x = Tensor(rand_frames())
    np.testing.assert_allclose(fast(x).asnumpy(), ref(x).asnumpy(), atol=1e-5, rtol=0)


VARIANTS = [dict(), dict(forecaster_input="prediction"),
            dict(forecaster_input="prediction", structure="stack"),
            dict(forecaster_input="prediction", structure="stack", head_kernel=3)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_graph_mode_matches_pynative(variant):
    net = tiny(hidden_channels=(4, 4), output_frames=2, **variant)
    x = Tensor(rand_frames(1, 2, 8, 8))
    expected = net(x).asnumpy()
    ms.set_context(mode=ms.GRAPH_MODE)
    try:
        np.testing.assert_allclose(net(x).asnumpy(), expected, atol=1e-5, rtol=0)
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)


@pytest.mark.parametrize("variant", VARIANTS)
def test_export_mindir_and_onnx(tmp_path, variant):
    ort = pytest.importorskip("onnxruntime")
    x = Tensor(rand_frames(1, 2, 8, 8))
    net = tiny(hidden_channels=(4, 4), output_frames=2, **variant)
    expected = net(x).asnumpy()
    ms.export(net, x, file_name=str(tmp_path / "convlstm"), file_format="MINDIR")
    graph = nn.GraphCell(ms.load(str(tmp_path / "convlstm.mindir")))
    np.testing.assert_allclose(graph(x).asnumpy(), expected, atol=1e-6)
    onnx_net = tiny(hidden_channels=(4, 4), output_frames=2, **variant)  # one export per Cell
    copy_weights(net, onnx_net)
    ms.export(onnx_net, x, file_name=str(tmp_path / "convlstm"), file_format="ONNX")
    session = ort.InferenceSession(str(tmp_path / "convlstm.onnx"))
    out = session.run(None, {session.get_inputs()[0].name: x.asnumpy()})[0]
    np.testing.assert_allclose(out, expected, atol=1e-5)


# ---------------------------------------------------------------- forecaster_input='prediction'
def test_feeding_predictions_adds_one_input_convolution():
    base = ConvLSTM(hidden_channels=(128, 64, 64), input_kernel=5, state_kernel=5)
    fed = ConvLSTM(hidden_channels=(128, 64, 64), input_kernel=5, state_kernel=5,
                   forecaster_input="prediction")
    assert count_parameters(base) == 7_585_296  # the default stays the paper's network
    assert count_parameters(fed) - count_parameters(base) == 4 * 16 * 128 * 5 * 5
    assert fed.forecaster[0].has_input and not base.forecaster[0].has_input
    with pytest.raises(ValueError, match="forecaster_input"):
        ConvLSTM(forecaster_input="ground_truth")


def forecast_written_out(net, x, frames=None):
    """The forecaster loop written out frame by frame (head and un-patching per frame).

    ``frames``: None (the paper: no input), ``"own"`` (the last input frame, then the sigmoid of
    each prediction) or a list of the patched frames each step reads."""
    hs, cs = net.encode(Tensor(x))
    frame = net.patchify(Tensor(x))[:, -1]
    expected = []
    for step in range(net.output_frames):
        inp = frames[step] if isinstance(frames, list) else (frame if frames == "own" else None)
        for layer, cell in enumerate(net.forecaster):
            hs[layer], cs[layer] = cell(inp, hs[layer], cs[layer])
            inp = hs[layer]
        logits = net.head(ms.ops.cat(hs, 1))
        expected.append(net.unpatchify(logits).asnumpy())
        frame = ms.ops.sigmoid(logits)
    return np.concatenate(expected, 1)


def test_feeding_predictions_is_the_autoregressive_loop():
    """net(x) equals the loop written out: the first forecaster layer reads the last input frame,
    then the sigmoid of its previous prediction."""
    net = tiny(forecaster_input="prediction")
    x = rand_frames()
    np.testing.assert_allclose(net(Tensor(x)).asnumpy(), forecast_written_out(net, x, "own"),
                               atol=1e-5)


def test_paper_forecaster_equals_the_per_frame_head():
    """The batched 1x1 head over all predicted frames equals the head applied frame by frame."""
    net = tiny()
    x = rand_frames()
    np.testing.assert_allclose(net(Tensor(x)).asnumpy(), forecast_written_out(net, x), atol=1e-5)


# ---------------------------------------------------------------- fused gates and old checkpoints
def test_fused_gate_init_keeps_the_two_part_distribution():
    cell = ConvLSTMCell(16, 8, 3, 3)
    w = cell.conv_xh.weight.asnumpy()
    bound_x, bound_h = np.sqrt(6 / (16 * 9)), np.sqrt(6 / (8 * 9))  # He-uniform of Wx and of Wh
    assert np.abs(w[:, :16]).max() <= bound_x and np.abs(w[:, :16]).max() > 0.9 * bound_x
    assert np.abs(w[:, 16:]).max() <= bound_h and np.abs(w[:, 16:]).max() > 0.9 * bound_x
    bias = cell.conv_xh.bias.asnumpy()
    np.testing.assert_array_equal(bias, np.repeat([0.0, 1.0, 0.0, 0.0], 8))  # forget bias 1


@pytest.mark.parametrize("conv", ["native", "unfold"])
def test_old_checkpoint_loads_into_fused_network(tmp_path, conv):
    """A checkpoint of the two-convolution layout (saved with optimizer state, as train.py does)
    loads into the fused network through convert_legacy_params and gives the same outputs."""
    old = tiny(input_kernel=5, state_kernel=5, fuse_gates=False)
    opt = nn.Adam(old.trainable_params(), learning_rate=1e-3)
    path = str(tmp_path / "old.ckpt")
    ms.save_checkpoint([{"name": p.name, "data": p} for p in old.get_parameters()] +
                       [{"name": m.name, "data": m} for m in opt.moment1], path,
                       append_dict={"model_name": "convlstm"})
    x = Tensor(rand_frames())
    expected = old(x).asnumpy()
    fused = set_kernels(tiny(input_kernel=5, state_kernel=5), conv=conv)
    params = convert_legacy_params(ms.load_checkpoint(path), fused)
    assert "encoder.1.conv_xh.weight" in params and "encoder.1.conv_x.weight" not in params
    assert "moment1.encoder.1.conv_xh.weight" in params  # optimizer state follows
    assert params["model_name"] == "convlstm"  # other entries pass through
    tensors = {k: v for k, v in params.items() if isinstance(v, ms.Parameter)}
    missing, unused = ms.load_param_into_net(fused, tensors, strict_load=True)
    assert not missing and unused and all(n.startswith("moment1.") for n in unused), unused
    np.testing.assert_allclose(fused(x).asnumpy(), expected, atol=1e-5, rtol=0)


def test_fused_checkpoint_loads_into_unfused_network_and_back(tmp_path):
    fused = tiny()
    path = str(tmp_path / "fused.ckpt")
    ms.save_checkpoint(fused, path)
    x = Tensor(rand_frames())
    expected = fused(x).asnumpy()
    split = tiny(fuse_gates=False)
    params = convert_legacy_params(ms.load_checkpoint(path), split)
    missing, unused = ms.load_param_into_net(split, params, strict_load=True)
    assert not missing and not unused
    np.testing.assert_allclose(split(x).asnumpy(), expected, atol=1e-5, rtol=0)
    # the round trip restores the fused weights exactly; a matching layout passes through
    again = convert_legacy_params({p.name: p for p in split.get_parameters()}, tiny())
    for p in fused.get_parameters():
        np.testing.assert_array_equal(again[p.name].asnumpy(), p.asnumpy())
    same = ms.load_checkpoint(path)
    assert convert_legacy_params(same, tiny()).keys() == same.keys()


def test_unequal_kernels_are_not_fused_and_need_no_conversion():
    net = tiny(input_kernel=5, state_kernel=1)
    assert not any(cell.fused for cell in net.encoder)
    params = {p.name: p for p in net.get_parameters()}
    assert convert_legacy_params(params, net).keys() == params.keys()


def test_checkpoint_loader_converts_old_layouts_through_the_model_hook():
    from src.checkpoint import adapt_params
    old = tiny(fuse_gates=False)
    params = {p.name: p for p in old.get_parameters()}
    adapted = adapt_params(params, tiny(), "convlstm")
    assert "encoder.0.conv_xh.weight" in adapted and "encoder.0.conv_x.weight" not in adapted


# ---------------------------------------------------------------- scheduled sampling
def test_truth_prob_one_reads_the_true_frames_and_zero_its_predictions():
    net = tiny(forecaster_input="prediction")
    x, y = rand_frames(), rand_frames(2, 4, seed=3)
    free = net(Tensor(x)).asnumpy()
    np.testing.assert_allclose(net(Tensor(x), Tensor(y), Tensor(0.0, ms.float32)).asnumpy(), free,
                               atol=1e-6)
    frames = [net.patchify(Tensor(x))[:, -1]] + [net.patchify(Tensor(y))[:, t] for t in range(3)]
    expected = forecast_written_out(net, x, frames)  # teacher forcing: step t reads true frame t-1
    forced = net(Tensor(x), Tensor(y), Tensor(1.0, ms.float32)).asnumpy()
    np.testing.assert_allclose(forced, expected, atol=1e-5)
    assert np.abs(forced[:, 1:] - free[:, 1:]).max() > 1e-4
    np.testing.assert_allclose(forced[:, 0], free[:, 0], atol=1e-6)  # step 0 reads the input frame


@pytest.mark.parametrize("mode", ["PYNATIVE", "GRAPH"])
@pytest.mark.parametrize("structure", ["encoder_forecaster", "stack"])
def test_truth_prob_half_draws_per_sequence_and_step(mode, structure):
    # each sequence's second prediction depends only on the frame its first step fed back: the
    # true frame (as with truth_prob 1) or its own prediction (as with 0); with 1/2 both occur
    net = tiny(forecaster_input="prediction", structure=structure)
    x, y = rand_frames(16), rand_frames(16, 4, seed=3)
    ms.set_context(mode=ms.GRAPH_MODE if mode == "GRAPH" else ms.PYNATIVE_MODE)
    try:
        ms.set_seed(5)
        outs = [net(Tensor(x), Tensor(y), Tensor(p, ms.float32)).asnumpy() for p in (1.0, 0.0, 0.5)]
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    step = 1 if structure == "encoder_forecaster" else x.shape[1]  # stack: after the input frames
    forced, free, mixed = (o[:, step] for o in outs)
    read_truth = [np.allclose(m, f, atol=1e-5) for m, f in zip(mixed, forced)]
    read_own = [np.allclose(m, f, atol=1e-5) for m, f in zip(mixed, free)]
    assert all(a != b for a, b in zip(read_truth, read_own))  # exactly one of the two, per sequence
    assert 0 < sum(read_truth) < len(x)


def test_scheduled_sampling_probability_and_callback():
    from types import SimpleNamespace
    from src.train_step import ScheduledSamplingLoss
    cell = ScheduledSamplingLoss(tiny(forecaster_input="prediction"), nn.BCEWithLogitsLoss(), 100)
    assert [cell.prob_at(s) for s in (0, 25, 100, 250)] == [1.0, 0.75, 0.0, 0.0]
    callback = cell.callback()
    # (epoch, cur_step_num, expected): 10 steps per epoch; cur_step_num counts from 1 and restarts
    # at 1 in a run resumed at epoch 3 (Model.train(initial_epoch=2)), the schedule does not
    for epoch, step, expected in ((1, 1, 1.0), (6, 51, 0.5), (31, 301, 0.0), (3, 1, 0.8), (3, 5, 0.76)):
        params = SimpleNamespace(cur_epoch_num=epoch, cur_step_num=step, batch_num=10)
        callback.on_train_step_begin(SimpleNamespace(original_args=lambda p=params: p))
        assert float(cell.truth_prob.asnumpy()) == pytest.approx(expected)
    assert not cell.truth_prob.requires_grad
    with pytest.raises(ValueError, match="steps"):
        ScheduledSamplingLoss(tiny(), nn.BCEWithLogitsLoss(), -1)
    never = ScheduledSamplingLoss(tiny(forecaster_input="prediction"), nn.BCEWithLogitsLoss(), 0)
    assert never.prob_at(0) == 0.0 and float(never.truth_prob.asnumpy()) == 0.0
    x, y = Tensor(rand_frames()), Tensor((rand_frames(2, 4, seed=1) > 0.5).astype(np.float32))
    assert np.isfinite(float(cell(x, y).asnumpy()))


# ---------------------------------------------------------------- structure='stack'
def stack(**kw):
    return tiny(forecaster_input="prediction", structure="stack", **kw)


def per_layer_parameters(cin, hid, kx, kh):
    """The module docstring's count for one layer."""
    return 4 * cin * hid * kx ** 2 * (cin > 0) + 4 * hid * hid * kh ** 2 + 4 * hid + 3 * hid


def test_stack_has_one_set_of_layers_and_the_head():
    net = stack(hidden_channels=(8, 6))
    names = {p.name for p in net.trainable_params()}
    assert "stack.1.conv_xh.weight" in names and not any(n.startswith(("encoder.", "forecaster."))
                                                        for n in names)
    expected = (per_layer_parameters(16, 8, 3, 3) + per_layer_parameters(8, 6, 3, 3)
                + (8 + 6) * 16 + 16)
    assert count_parameters(net) == expected
    # a k x k head: (8 + 6) * 16 * k^2 weights and the 16 biases
    assert count_parameters(stack(hidden_channels=(8, 6), head_kernel=3)) == \
        expected + (8 + 6) * 16 * 8
    for bad in (0, 2):
        with pytest.raises(ValueError, match="head_kernel must be odd"):
            stack(head_kernel=bad)
    with pytest.raises(ValueError, match="forecaster_input: prediction"):
        tiny(structure="stack")
    with pytest.raises(ValueError, match="structure"):
        tiny(structure="seq2seq")


def stack_written_out(net, x, reads):
    """The stack loop written out: every step reads ``reads[t]`` (patched frames), the head
    predicts after every step; returns all logits as frames."""
    n = x.shape[0]
    hs = [ms.ops.zeros((n, h, 4, 4), ms.float32) for h in net.hidden_channels]
    cs = [ms.ops.zeros((n, h, 4, 4), ms.float32) for h in net.hidden_channels]
    out = []
    for frame in reads:
        inp = frame
        for layer, cell in enumerate(net.stack):
            hs[layer], cs[layer] = cell(inp, hs[layer], cs[layer])
            inp = hs[layer]
        out.append(net.head(ms.ops.cat(hs, 1)))
    return out


def test_stack_reads_the_inputs_then_its_predictions():
    net = stack()
    x, y = rand_frames(), rand_frames(2, 4, seed=5)
    xp, yp = net.patchify(Tensor(x)), net.patchify(Tensor(y))
    # evaluation: inputs, then the sigmoid of each prediction; the forecast is the last 4 logits
    reads = [xp[:, t] for t in range(3)]
    logits = stack_written_out(net, x, reads)
    for _ in range(3):
        reads.append(ms.ops.sigmoid(logits[-1]))
        logits = stack_written_out(net, x, reads)
    expected = np.concatenate([net.unpatchify(z).asnumpy() for z in logits[2:]], 1)
    np.testing.assert_allclose(net(Tensor(x)).asnumpy(), expected, atol=1e-5)
    # training with truth_prob 1: every step reads the true previous frame, and every next frame
    # of the sequence is predicted (2 from the inputs, then the 4 forecasts)
    teacher = stack_written_out(net, x, [xp[:, t] for t in range(3)] + [yp[:, t] for t in range(3)])
    forced = net(Tensor(x), Tensor(y), Tensor(1.0, ms.float32)).asnumpy()
    assert forced.shape == (2, 6, 1, 16, 16)
    np.testing.assert_allclose(forced, np.concatenate([net.unpatchify(z).asnumpy() for z in teacher], 1),
                               atol=1e-5)
    free = net(Tensor(x), Tensor(y), Tensor(0.0, ms.float32)).asnumpy()
    np.testing.assert_allclose(free[:, 2:], expected, atol=1e-5)
    np.testing.assert_allclose(free[:, :2], forced[:, :2], atol=1e-6)  # the input phase reads x
    targets = net.training_targets(Tensor(x), Tensor(y)).asnumpy()
    np.testing.assert_array_equal(targets, np.concatenate([x[:, 1:], y], 1))


def test_stack_with_one_input_or_one_output_frame():
    net = stack(output_frames=1)
    x, y = rand_frames(t=1), rand_frames(t=1, seed=2)
    assert net(Tensor(x)).shape == (2, 1, 1, 16, 16)
    assert net(Tensor(x), Tensor(y), Tensor(0.5, ms.float32)).shape == (2, 1, 1, 16, 16)
    np.testing.assert_array_equal(net.training_targets(Tensor(x), Tensor(y)).asnumpy(), y)


def test_stack_loss_cell_trains_on_every_next_frame():
    from src.train_step import ScheduledSamplingLoss
    net = stack()
    x, y = rand_frames(), (rand_frames(2, 4, seed=1) > 0.5).astype(np.float32)
    loss = nn.BCEWithLogitsLoss(reduction="sum")
    cell = ScheduledSamplingLoss(net, loss, 0)
    logits = net(Tensor(x), Tensor(y), Tensor(0.0, ms.float32))
    expected = loss(logits, Tensor(np.concatenate([x[:, 1:], y], 1))).asnumpy()
    np.testing.assert_allclose(cell(Tensor(x), Tensor(y)).asnumpy(), expected, rtol=1e-5)


def test_stack_checkpoint_layouts_convert():
    fused = stack()
    split = stack(fuse_gates=False)
    params = convert_legacy_params({p.name: p for p in fused.get_parameters()}, split)
    missing, unused = ms.load_param_into_net(split, params, strict_load=True)
    assert not missing and not unused
    x = Tensor(rand_frames())
    np.testing.assert_allclose(split(x).asnumpy(), fused(x).asnumpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mode", ["pynative", "graph"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_training_mode_reads_the_same_frames(mode, variant):
    """Training mode reads the input frames through one Unstack (inference and export slice them
    per step): the same weights give the same logits in both modes, in both execution modes."""
    net = tiny(hidden_channels=(4, 4), output_frames=2, **variant)
    x = Tensor(rand_frames(2, 3, 8, 8, seed=3))
    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    try:
        net.set_train(False)
        sliced = net(x).asnumpy()
        net.set_train(True)
        unstacked = net(x).asnumpy()
    finally:
        net.set_train(False)
        ms.set_context(mode=ms.PYNATIVE_MODE)
    assert np.abs(sliced).max() > 0
    np.testing.assert_allclose(unstacked, sliced, atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["pynative", "graph"])
@pytest.mark.parametrize("impl", ["native", "unfold", "onednn"])
@pytest.mark.parametrize("fuse_gates", [True, False])
def test_zero_state_step_skips_the_state_convolution(mode, impl, fuse_gates):
    """``h=None`` (the first step of a sequence) gives the values and gradients (input, weights,
    bias, peepholes) of a step from a zero h, computed without the state-to-state convolution:
    the fused cell convolves x with its input channels' weights only."""
    if impl == "onednn":
        from src.kernels import onednn_conv
        if not onednn_conv.availability()[0]:
            pytest.skip("the oneDNN kernels cannot be built here")
    cell = set_kernels(ConvLSTMCell(3, 4, 3, 3, fuse_gates=fuse_gates), conv=impl)
    rng = np.random.default_rng(7)
    for p in cell.trainable_params():  # peepholes and biases too: non-zero, so they count
        p.set_data(Tensor(rng.normal(scale=0.3, size=p.shape).astype(np.float32)))
    x = Tensor(rng.random((2, 3, 6, 6)).astype(np.float32))
    c = Tensor(np.zeros((2, 4, 6, 6), np.float32))
    dh, dc = (Tensor(rng.normal(size=(2, 4, 6, 6)).astype(np.float32)) for _ in range(2))

    class Weighted(nn.Cell):
        def __init__(self, zero_h):
            super().__init__()
            self.cell, self.zero_h = cell, zero_h

        def construct(self, x, c):
            h_new, c_new = self.cell(x, ops.zeros_like(c) if self.zero_h else None, c)
            return (h_new * dh).sum() + (c_new * dc).sum()

    if mode == "graph":
        ms.set_context(mode=ms.GRAPH_MODE)
    try:
        results = []
        for zero_h in (True, False):
            loss = Weighted(zero_h)
            grads = ms.grad(loss, grad_position=0, weights=cell.trainable_params())(x, c)
            results.append([loss(x, c).asnumpy(), grads[0].asnumpy()] + [g.asnumpy() for g in grads[1]])
    finally:
        ms.set_context(mode=ms.PYNATIVE_MODE)
    assert len(results[1]) == len(cell.trainable_params()) + 2
    # all but the peepholes of i and f, which read c = 0, and W_h (unfused), which reads h = 0
    assert sum(np.abs(want).max() > 0 for want in results[0]) == len(results[0]) - 2 - (not fuse_gates)
    for got, want in zip(results[1], results[0]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
