"""Transfer learning: 10-class checkpoint -> 3-class ImageFolder; loaded backbone, new head, frozen
weights that do not move, and one-line errors for useless checkpoints."""
import os

import numpy as np
import mindspore as ms
import mindspore.nn as nn
import pytest

from conftest import ROOT
from src.model_utils.config import get_config
from src.model_utils.errors import UserError
from src.models.tinydarknet import TinyDarkNet
from src.trainer import train
from src.transfer import apply_pretrained
from test_data_classification import _write_folder

FINETUNE = os.path.join(ROOT, "config", "imagefolder_finetune_cpu.yaml")


@pytest.fixture(scope="module")
def source_ckpt(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("src") / "ten.ckpt")
    net = TinyDarkNet(num_classes=10)
    for p in net.trainable_params():  # recognisable, non-default values
        p.set_data(ms.Tensor(np.random.default_rng(1).normal(0, 0.05, p.shape).astype(np.float32)))
    ms.save_checkpoint(net, path)
    return path, {p.name: p.asnumpy().copy() for p in net.get_parameters()}


@pytest.fixture
def folder(tmp_path):
    _write_folder(tmp_path / "data", ["cat", "dog", "fox"], 4, size=(40, 40))
    return str(tmp_path / "data")


def finetune(folder, out, ckpt, *extra):
    return train(get_config(["--config_path", FINETUNE, "--data_path", folder, "--output_dir", out,
                             "--pre_trained", ckpt, "--image_size", "32", "--batch_size", "4",
                             "--epoch_size", "1", "--lr", "0.1", "--log_interval", "0", *extra]))


def test_finetune_loads_backbone_and_keeps_new_head(source_ckpt, folder, tmp_path, capsys):
    ckpt, src = source_ckpt
    fresh = TinyDarkNet(num_classes=3)
    loaded, skipped = apply_pretrained(fresh, ckpt, "tinydarknet", log=print)
    assert sorted(n for n, _ in skipped) == ["classifier.bias", "classifier.weight"]
    assert "shape (10, 128, 1, 1) in the checkpoint, (3, 128, 1, 1) in the network" in dict(skipped)["classifier.weight"]
    assert all(np.array_equal(fresh.parameters_dict()[n].asnumpy(), src[n]) for n in loaded)
    assert "pre_trained: skipped classifier.weight" in capsys.readouterr().out


def test_freeze_backbone_trains_only_the_head(source_ckpt, folder, tmp_path):
    ckpt, src = source_ckpt
    result = finetune(folder, str(tmp_path / "frozen"), ckpt, "--freeze_backbone", "true")
    after = {p.name: p.asnumpy() for p in result["network"].get_parameters()}
    backbone = [n for n in after if not n.startswith("classifier.")]
    assert len(backbone) > 60  # conv weights, BN gamma/beta and moving statistics
    for name in backbone:
        assert np.array_equal(after[name], src[name]), name
    assert after["classifier.weight"].shape == (3, 128, 1, 1)
    assert not np.allclose(after["classifier.bias"], 0.0)  # the head (bias initialised at 0) trained
    saved = ms.load_checkpoint(os.path.join(result["checkpoint_dir"], "tinydarknet-1_3.ckpt"))
    assert saved["class_names"] == '["cat", "dog", "fox"]'


def test_unfrozen_finetune_moves_the_backbone(source_ckpt, folder, tmp_path):
    ckpt, src = source_ckpt
    result = finetune(folder, str(tmp_path / "free"), ckpt)
    after = result["network"].parameters_dict()
    assert not np.array_equal(after["features.0.conv.weight"].asnumpy(), src["features.0.conv.weight"])


def test_useless_checkpoints_are_one_line_errors(tmp_path, source_ckpt):
    other = tmp_path / "other.ckpt"
    ms.save_checkpoint(nn.Dense(3, 2), str(other))
    with pytest.raises(UserError, match="shares no parameter"):
        apply_pretrained(TinyDarkNet(3), str(other), "tinydarknet")
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    with pytest.raises(UserError, match="is not a MindSpore checkpoint"):
        apply_pretrained(TinyDarkNet(3), str(text), "tinydarknet")
    with pytest.raises(UserError, match="checkpoint not found"):
        apply_pretrained(TinyDarkNet(3), str(tmp_path / "none.ckpt"), "tinydarknet")


def test_class_count_mismatch_is_one_line_error(folder, tmp_path, source_ckpt):
    with pytest.raises(UserError, match="the data has 3 classes but num_classes is 5"):
        finetune(folder, str(tmp_path / "x"), source_ckpt[0], "--num_classes", "5")


def test_same_class_count_but_other_classes_gets_a_fresh_head(tmp_path, capsys):
    net = TinyDarkNet(num_classes=3)
    path = str(tmp_path / "abc.ckpt")
    ms.save_checkpoint(net, path, append_dict={"class_names": '["a", "b", "c"]'})
    fresh = TinyDarkNet(num_classes=3)
    loaded, skipped = apply_pretrained(fresh, path, "tinydarknet", class_names=["x", "y", "z"])
    assert sorted(n for n, _ in skipped) == ["classifier.bias", "classifier.weight"]
    assert "trained for classes [a, b, c], not [x, y, z]" in capsys.readouterr().out
    assert not np.array_equal(fresh.classifier.weight.asnumpy(), net.classifier.weight.asnumpy())
    again = TinyDarkNet(num_classes=3)
    loaded, skipped = apply_pretrained(again, path, "tinydarknet", class_names=["a", "b", "c"])
    assert not skipped and np.array_equal(again.classifier.weight.asnumpy(), net.classifier.weight.asnumpy())
