"""Every argument that takes a checkpoint takes a file or a folder alike (src.checkpoint's
``resolve_checkpoint``): ``--ckpt_file`` (eval, export), ``--pre_trained``, ``--resume`` (see
test_train_e2e and test_run_guard), preprocess's ``--class_names_file`` and the darknet converter."""
import json
import os

import numpy as np
import mindspore as ms
import pytest

from src import darknet_weights as dw
from src.checkpoint import latest_checkpoint, load_network, resolve_checkpoint
from src.model_utils.config import get_config
from src.model_utils.errors import UserError
from src.models.tinydarknet import TinyDarkNet
from src.preprocess import read_class_names
from src.transfer import apply_pretrained

from conftest import ROOT

CIFAR_CPU = os.path.join(ROOT, "config", "cifar10_config_cpu.yaml")
NAMES = [f"class{i}" for i in range(10)]


def touch(path, mtime):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x")
    os.utime(path, (mtime, mtime))
    return str(path)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A train.py output folder: checkpoints/ with an older and a newer Tiny-DarkNet checkpoint
    (different weights), a best.ckpt older than both; returns (folder, newest, its weights)."""
    folder = tmp_path_factory.mktemp("run")
    os.makedirs(folder / "checkpoints")
    net = TinyDarkNet(num_classes=10)
    meta = {"model_name": "tinydarknet", "class_names": json.dumps(NAMES)}
    files = []
    for i, name in enumerate(["best.ckpt", "checkpoints/tinydarknet-1_6.ckpt",
                              "checkpoints/tinydarknet-2_6.ckpt"]):
        for p in net.trainable_params():
            p.set_data(ms.Tensor(np.full(p.shape, 0.01 * (i + 1), np.float32)))
        path = str(folder / name)
        ms.save_checkpoint(net, path, append_dict=meta)
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
        files.append(path)
    return str(folder), files[-1], {p.name: p.asnumpy().copy() for p in net.trainable_params()}


def test_a_file_is_itself_and_a_folder_its_newest_checkpoint(tmp_path):
    old = touch(tmp_path / "a" / "net-1_2.ckpt", 1000)
    new = touch(tmp_path / "a" / "net-2_2.ckpt", 2000)
    touch(tmp_path / "a" / "net-3_2.tmp.ckpt", 3000)  # an unfinished save: never picked
    touch(tmp_path / "a" / "notes.txt", 4000)
    assert resolve_checkpoint(old) == old
    assert resolve_checkpoint(str(tmp_path / "a")) == new
    assert resolve_checkpoint("") == ""
    # a run folder: its own best.ckpt and its checkpoints/ compete by age
    best = touch(tmp_path / "run" / "best.ckpt", 1500)
    epoch = touch(tmp_path / "run" / "checkpoints" / "net-2_2.ckpt", 2500)
    assert resolve_checkpoint(str(tmp_path / "run")) == epoch
    os.utime(best, (3500, 3500))
    assert latest_checkpoint(str(tmp_path / "run")) == best
    said = []
    assert resolve_checkpoint(str(tmp_path / "a"), "--resume", log=said.append) == new
    assert said == [f"--resume {tmp_path / 'a'}: its newest checkpoint is {new}"]


def test_missing_or_empty_is_one_line_naming_the_option(tmp_path):
    with pytest.raises(UserError, match=r"^--resume: checkpoint not found: .*none") as exc:
        resolve_checkpoint(str(tmp_path / "none"), "--resume")
    assert "\n" not in str(exc.value)
    os.makedirs(tmp_path / "empty")
    with pytest.raises(UserError, match="no .ckpt file in .*empty"):
        resolve_checkpoint(str(tmp_path / "empty"), "--pre_trained")


def test_ckpt_file_takes_a_run_folder(run_folder):
    folder, newest, weights = run_folder
    cfg = get_config(["--config_path", CIFAR_CPU, "--ckpt_file", folder, "--conv_impl", "native"])
    net, meta = load_network(cfg, cfg.ckpt_file)
    assert meta["ckpt_file"] == newest
    for p in net.trainable_params():
        assert np.array_equal(p.asnumpy(), weights[p.name]), p.name


def test_pre_trained_takes_a_folder(run_folder, capsys):
    folder, newest, weights = run_folder
    net = TinyDarkNet(num_classes=10)
    apply_pretrained(net, os.path.join(folder, "checkpoints"), "tinydarknet", class_names=NAMES)
    assert f"loaded {len(list(net.get_parameters()))} parameters from {newest}" in capsys.readouterr().out
    for p in net.trainable_params():
        assert np.array_equal(p.asnumpy(), weights[p.name]), p.name


def test_class_names_file_takes_a_folder(run_folder, tmp_path):
    folder, _, _ = run_folder
    assert read_class_names(folder) == NAMES
    (tmp_path / "names.txt").write_text("b\na\n")
    assert read_class_names(str(tmp_path / "names.txt")) == ["b", "a"]


def test_darknet_converter_takes_a_folder(run_folder, tmp_path):
    folder, newest, _ = run_folder
    from_folder, from_file = str(tmp_path / "f.weights"), str(tmp_path / "n.weights")
    dw.to_darknet(folder, from_folder, raw=True, log=lambda *_: None)
    dw.to_darknet(newest, from_file, raw=True, log=lambda *_: None)
    with open(from_folder, "rb") as a, open(from_file, "rb") as b:
        assert a.read() == b.read()
