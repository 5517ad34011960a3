"""darknet tiny.cfg .weights <-> checkpoint, on files written here by hand from the format (the
real tiny.weights cannot be downloaded on this machine): every field lands where it should, round
trips are bit-exact, bad files are one-line errors, the network computes darknet's formula, and
the converted checkpoint works with eval.py and train.py --pre_trained unchanged."""
import json
import os
import struct

import numpy as np
import mindspore as ms
import pytest

from conftest import ROOT
from src import darknet_weights as dw
from src.model_utils.errors import UserError
from src.models.tinydarknet import TinyDarkNet

# tiny.cfg written out here independently of the module: (filters, input channels, size) per
# batch-normalised convolution, and this repo's cell index of each
TINY_CFG = [(16, 3, 3), (32, 16, 3), (16, 32, 1), (128, 16, 3), (16, 128, 1), (128, 16, 3),
            (32, 128, 1), (256, 32, 3), (32, 256, 1), (256, 32, 3), (64, 256, 1), (512, 64, 3),
            (64, 512, 1), (512, 64, 3), (128, 512, 1)]
CELLS = (0, 2, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17, 18)


def fields(num_classes):
    """(name, shape) in file order: biases (beta), scales, rolling mean, rolling variance, weights."""
    out = []
    for cell, (n, c, k) in zip(CELLS, TINY_CFG):
        bn = f"features.{cell}.bn."
        out += [(bn + "beta", (n,)), (bn + "gamma", (n,)), (bn + "moving_mean", (n,)),
                (bn + "moving_variance", (n,)), (f"features.{cell}.conv.weight", (n, c, k, k))]
    return out + [("classifier.bias", (num_classes,)), ("classifier.weight", (num_classes, 128, 1, 1))]


def write_weights(path, flat, version=(0, 2, 0), seen=123456):
    major, minor, _ = version
    header = struct.pack("<3i", *version) + struct.pack("<q" if major * 10 + minor >= 2 else "<i", seen)
    with open(path, "wb") as f:
        f.write(header + np.asarray(flat, "<f4").tobytes())
    return str(path)


def split(flat, num_classes):
    params, pos = {}, 0
    for name, shape in fields(num_classes):
        size = int(np.prod(shape))
        params[name] = np.asarray(flat[pos:pos + size], np.float32).reshape(shape)
        pos += size
    return params


def join(params, num_classes):
    return np.concatenate([params[name].ravel() for name, _ in fields(num_classes)])


def count(num_classes):
    return sum(int(np.prod(s)) for _, s in fields(num_classes))


def calibrated(num_classes, x01, seed=0):
    """darknet values of a random tiny.cfg whose rolling statistics are the true statistics of
    ``x01`` (as training leaves them), so BatchNorm sees realistic variances."""
    rng = np.random.default_rng(seed)
    params, x = {}, np.asarray(x01, np.float64)
    for cell, (n, c, k) in zip(CELLS, TINY_CFG):
        w = rng.normal(0, np.sqrt(2.0 / (c * k * k)), (n, c, k, k)).astype(np.float32)
        y = dw._conv(x, w)
        bn = f"features.{cell}.bn."
        params[f"features.{cell}.conv.weight"] = w
        params[bn + "moving_mean"] = y.mean(axis=(0, 2, 3)).astype(np.float32)
        params[bn + "moving_variance"] = y.var(axis=(0, 2, 3)).astype(np.float32)
        params[bn + "gamma"] = rng.uniform(0.5, 1.5, n).astype(np.float32)
        params[bn + "beta"] = rng.normal(0, 0.1, n).astype(np.float32)
        x = (y - params[bn + "moving_mean"][:, None, None]) / np.sqrt(params[bn + "moving_variance"][:, None, None] + 1e-5)
        x = x * params[bn + "gamma"][:, None, None] + params[bn + "beta"][:, None, None]
        x = np.where(x > 0, x, 0.1 * x)
        if cell + 1 in (1, 3, 8, 13):  # the max-pools of tiny.cfg
            b, ch, h, wd = x.shape
            x = x.reshape(b, ch, h // 2, 2, wd // 2, 2).max(axis=(3, 5))
    params["classifier.weight"] = rng.normal(0, np.sqrt(1 / 128), (num_classes, 128, 1, 1)).astype(np.float32)
    params["classifier.bias"] = rng.normal(0, 0.1, num_classes).astype(np.float32)
    return params


def load_ckpt(path):
    loaded = ms.load_checkpoint(path)
    return ({k: v.asnumpy() for k, v in loaded.items() if isinstance(v, ms.Parameter)},
            {k: v for k, v in loaded.items() if isinstance(v, str)})


def quiet(*_):
    pass


def test_layout_is_the_networks_parameters():
    net = {p.name: tuple(p.shape) for p in TinyDarkNet(num_classes=10).get_parameters()}
    assert dict(dw.file_layout(10)) == net == dict(fields(10))
    assert [n for n, _ in dw.file_layout(10)] == [n for n, _ in fields(10)]  # file order
    assert dw.value_count(1000) == count(1000) == sum(int(np.prod(s)) for s in
                                                      (p.shape for p in TinyDarkNet(1000).get_parameters()))


@pytest.mark.parametrize("version", [(0, 2, 0), (0, 1, 0)])
def test_hand_made_file_loads_every_field(tmp_path, version):
    flat = np.arange(count(10), dtype=np.float32)  # every value is its own position in the file
    path = write_weights(tmp_path / "tiny10.weights", flat, version, seen=987654)
    params, got_version, seen = dw.read_darknet(path, 10)
    assert got_version == version and seen == 987654
    expected = split(flat, 10)
    assert set(params) == set(expected)
    for name, value in expected.items():
        assert params[name].dtype == np.float32 and np.array_equal(params[name], value), name
    # spot checks straight from the format: first field of the file, first weight of layer 1
    assert params["features.0.bn.beta"][0] == 0 and params["features.0.bn.gamma"][0] == 16
    assert params["features.0.conv.weight"][0, 0, 0, 0] == 64 and params["features.2.bn.beta"][0] == 64 + 432


def test_1000_classes_header_and_size(tmp_path):
    flat = np.arange(count(1000), dtype=np.float32)
    old = write_weights(tmp_path / "old.weights", flat, (0, 1, 0), seen=5)
    new = write_weights(tmp_path / "new.weights", flat, (0, 2, 0), seen=2 ** 40)
    assert os.path.getsize(old) == 16 + 4 * count(1000) and os.path.getsize(new) == 20 + 4 * count(1000)
    for path, seen in ((old, 5), (new, 2 ** 40)):
        params, _, got = dw.read_darknet(path, 1000)
        assert got == seen and params["classifier.weight"].shape == (1000, 128, 1, 1)
        assert params["classifier.weight"][-1, -1, 0, 0] == count(1000) - 1


def test_round_trips_are_bit_exact(tmp_path):
    params = split(np.random.default_rng(0).normal(0, 1, count(10)), 10)
    for name in params:
        if name.endswith("moving_variance"):
            params[name] = params[name] ** 2
    flat = join(params, 10)
    src = write_weights(tmp_path / "a.weights", flat)
    for raw in (False, True):
        ckpt, back = str(tmp_path / f"a{raw}.ckpt"), str(tmp_path / f"b{raw}.weights")
        dw.to_checkpoint(src, ckpt, 10, raw=raw, log=quiet)
        dw.to_darknet(ckpt, back, log=quiet)
        assert open(back, "rb").read() == open(src, "rb").read()  # darknet -> ckpt -> darknet
        again = str(tmp_path / f"c{raw}.ckpt")
        dw.to_checkpoint(back, again, 10, raw=raw, log=quiet)
        (p1, m1), (p2, m2) = load_ckpt(ckpt), load_ckpt(again)  # ckpt -> darknet -> ckpt
        assert m1 == m2 and set(p1) == set(p2)
        assert all(np.array_equal(p1[k], p2[k]) for k in p1)
        assert ("darknet_raw.features.0.conv.weight" in p1) is (not raw)
        if not raw:  # the folded checkpoint differs from darknet exactly in conv 1 and its mean
            assert not np.array_equal(p1["features.0.conv.weight"], split(flat, 10)["features.0.conv.weight"])
        assert np.array_equal(p1["features.2.conv.weight"], split(flat, 10)["features.2.conv.weight"])


def test_checkpoint_trained_here_round_trips(tmp_path):
    """A train.py-style checkpoint (no darknet originals): bit-exact with --raw; unfolded, conv 1
    and its rolling mean come back to float32 rounding and every other value bit-exact."""
    net = TinyDarkNet(num_classes=10)
    rng = np.random.default_rng(2)
    for p in net.get_parameters():
        p.set_data(ms.Tensor(np.abs(rng.normal(0, 0.2, p.shape)).astype(np.float32)))
    ckpt = str(tmp_path / "trained.ckpt")
    ms.save_checkpoint(net, ckpt, append_dict={"model_name": "tinydarknet", "class_names": json.dumps(list("abcdefghij"))})
    original, _ = load_ckpt(ckpt)
    for raw in (True, False):
        weights, again = str(tmp_path / f"t{raw}.weights"), str(tmp_path / f"t{raw}.ckpt")
        dw.to_darknet(ckpt, weights, raw=raw, log=quiet)
        dw.to_checkpoint(weights, again, 10, raw=raw, log=quiet)
        back, meta = load_ckpt(again)
        darknet, _, _ = dw.read_darknet(weights, 10)
        for name, value in original.items():
            if raw or name not in (dw.CONV1, dw.BN1_MEAN):
                assert np.array_equal(back[name], value), name
            else:  # two float32 roundings, of the darknet-side value and of the result
                ulp = np.spacing(np.maximum(np.abs(darknet[name]), np.abs(value)))
                assert (np.abs(back[name] - value) <= 2 * ulp).all(), name
        assert meta["model_name"] == "tinydarknet" and "class_names" not in meta  # darknet has none


@pytest.mark.parametrize("case, message", [
    ("short", "too short"),
    ("version", "header version 3.0.0 is not one darknet writes"),
    ("seen", "images were seen"),
    ("truncated", f"holds {count(1000) - 1} float32 values after its header, expected {count(1000)} "
                  "for tiny.cfg with 1000 classes; it is a file for another cfg, or a truncated one"),
    ("ragged", "not a whole number of float32 values"),
    ("other_classes", f"expected {count(1000)} for tiny.cfg with 1000 classes; that is the size for "
                      "tiny.cfg with 10 classes: pass --num_classes 10"),
    ("nan", "features.0.bn.gamma holds NaN"),
    ("variance", "features.0.bn.moving_variance (a rolling variance) has negative values"),
])
def test_bad_files_are_one_line_errors(tmp_path, case, message):
    n = 10 if case in ("other_classes", "nan", "variance") else 1000
    flat = np.ones(count(n), np.float32)
    path = tmp_path / "bad.weights"
    if case == "short":
        path.write_bytes(b"\0" * 12)
    elif case == "version":
        write_weights(path, flat, (3, 0, 0))
    elif case == "seen":
        write_weights(path, flat, seen=-7)
    elif case == "truncated":
        write_weights(path, flat[:-1])
    elif case == "ragged":
        write_weights(path, flat)
        path.write_bytes(path.read_bytes() + b"\0")
    else:
        if case == "nan":
            flat[16] = np.nan
        if case == "variance":
            flat[48] = -1.0
        write_weights(path, flat)
    with pytest.raises(UserError) as err:
        dw.read_darknet(str(path), 10 if case in ("nan", "variance") else 1000)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_cli_bad_file_exits_2(tmp_path, capsys):
    bad = write_weights(tmp_path / "x.weights", np.ones(100, np.float32))
    with pytest.raises(SystemExit) as exit_info:
        dw.main(["to-ckpt", bad, str(tmp_path / "x.ckpt")])
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and err.startswith("error: ") and len(err.splitlines()) == 1
    assert f"expected {count(1000)} for tiny.cfg with 1000 classes" in err
    with pytest.raises(SystemExit) as exit_info:
        dw.main(["to-darknet", str(tmp_path / "missing.ckpt"), str(tmp_path / "y.weights")])
    assert exit_info.value.code == 2 and "checkpoint not found" in capsys.readouterr().err


def test_network_computes_darknets_formula(tmp_path):
    """The MindSpore network vs a numpy float64 reference of darknet's inference (tolerances are
    float32 rounding; the border line is the one effect of folding, measured, not hidden)."""
    rng = np.random.default_rng(1)
    params = calibrated(10, rng.integers(0, 256, (4, 3, 32, 32)) / 255.0)
    x01 = rng.integers(0, 256, (2, 3, 32, 32)) / 255.0
    mean, std = dw._input_norm()
    raw_net = dw.network_logits(params, x01)  # --raw: darknet's input, values unchanged
    assert np.abs(raw_net - dw.darknet_forward(params, x01, "gpu")).max() < 1e-4
    assert np.abs(raw_net - dw.darknet_forward(params, x01, "cpu")).max() < 1e-2  # variances 0.06-3
    folded = dw.network_logits(dw.darknet_to_repo(params), (x01 - mean[:, None, None]) / std[:, None, None])
    assert np.abs(folded - dw.darknet_forward(params, x01, "gpu", first_pad=mean)).max() < 1e-4
    border = np.abs(folded - dw.darknet_forward(params, x01, "gpu")).max()
    assert border > 1e-3  # conv 1's padding is the mean colour here, black in darknet
    print(f"32x32 border effect of folding: {border:.3g}")


def test_class_names(tmp_path):
    flat = np.ones(count(1000), np.float32)
    ckpt = str(tmp_path / "in1k.ckpt")
    dw.to_checkpoint(write_weights(tmp_path / "in1k.weights", flat), ckpt, log=quiet)
    _, meta = load_ckpt(ckpt)
    names = json.loads(meta["class_names"])
    assert meta["model_name"] == "tinydarknet" and len(set(names)) == 1000
    assert names[:3] == ["n02119789", "n02100735", "n02110185"] and names[-1] == "n03255030"
    assert meta["darknet_seen"] == "123456" and meta["darknet_input"] == "imagenet_mean_std"
    small = write_weights(tmp_path / "ten.weights", np.ones(count(10), np.float32))
    listing = tmp_path / "ten.names"
    listing.write_text("# my classes\n" + "\n".join(f"c{i}" for i in range(10)) + "\n")
    dw.to_checkpoint(small, ckpt, 10, str(listing), log=quiet)
    assert json.loads(load_ckpt(ckpt)[1]["class_names"]) == [f"c{i}" for i in range(10)]
    with pytest.raises(UserError, match="lists 10 class names, expected 1000"):
        dw.to_checkpoint(write_weights(tmp_path / "in1k.weights", flat), ckpt, 1000, str(listing), log=quiet)


def test_eval_uses_darknets_label_order(tmp_path, capsys):
    """eval.py unchanged: the stored synset order labels val/<wnid>/ folders as darknet does.
    The hand-made network always predicts output 0 (= n02119789 in darknet's order, while sorted
    folder names would make n01440764 label 0): 2 of 3 images are right only in darknet's order."""
    import eval as eval_script
    from test_data_classification import _write_folder
    params = split(np.random.default_rng(0).normal(0, 0.1, count(1000)), 1000)
    for name in params:
        if name.endswith("moving_variance"):
            params[name] = np.ones_like(params[name])
    params["classifier.weight"][:] = 0
    params["classifier.bias"][:] = 0
    params["classifier.bias"][0] = 10
    ckpt = str(tmp_path / "in1k.ckpt")
    dw.to_checkpoint(write_weights(tmp_path / "in1k.weights", join(params, 1000)), ckpt, log=quiet)
    _write_folder(tmp_path / "imagenet", ["n02119789", "n01440764"], 1, size=(40, 40))
    extra = tmp_path / "imagenet" / "val" / "n02119789" / "1.JPEG"
    extra.write_bytes((tmp_path / "imagenet" / "val" / "n02119789" / "0.JPEG").read_bytes())
    eval_script.main(["--config_path", os.path.join(ROOT, "config", "imagenet_config_cpu.yaml"),
                      "--data_path", str(tmp_path / "imagenet"), "--ckpt_file", ckpt,
                      "--image_size", "32", "--batch_size", "4", "--output_dir", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert "'top_1_accuracy': 0.6667" in out and "(3 images)" in out


def test_finetune_from_converted_checkpoint(tmp_path, cifar_dir, capsys):
    """train.py --pre_trained with a converted checkpoint: backbone loaded, head fresh for other
    class names; with the same names the head is loaded too."""
    import train as train_script
    from src.transfer import apply_pretrained
    listing = tmp_path / "darknet10.names"
    listing.write_text("\n".join(f"thing{i}" for i in range(10)) + "\n")
    ckpt = str(tmp_path / "converted.ckpt")
    params = calibrated(10, np.random.default_rng(3).integers(0, 256, (2, 3, 32, 32)) / 255.0)
    dw.to_checkpoint(write_weights(tmp_path / "c10.weights", join(params, 10)), ckpt, 10, str(listing), log=quiet)
    train_script.main(["--config_path", os.path.join(ROOT, "config", "cifar10_config_cpu.yaml"),
                       "--data_path", cifar_dir, "--output_dir", str(tmp_path / "run"),
                       "--pre_trained", ckpt, "--epoch_size", "1", "--batch_size", "32",
                       "--warmup_epochs", "0", "--log_interval", "0"])
    out = capsys.readouterr().out
    assert f"pre_trained: loaded 75 parameters from {ckpt}" in out
    assert "pre_trained: skipped classifier.weight: not loaded from the checkpoint's head" in out
    assert "training done" in out
    same = TinyDarkNet(10)
    loaded, skipped = apply_pretrained(same, ckpt, "tinydarknet", log=None,
                                       class_names=[f"thing{i}" for i in range(10)])
    assert len(loaded) == 77 and not skipped
    assert np.array_equal(same.parameters_dict()["features.0.bn.moving_variance"].asnumpy(),
                          params["features.0.bn.moving_variance"])
