"""export.py / src.export: MindIR / ONNX / AIR export of Tiny-DarkNet and ConvLSTM.

A checkpoint with random weights (BatchNorm statistics and peepholes included, so every parameter
matters) is exported; onnxruntime and the reloaded MindIR (``nn.GraphCell(ms.load(f))``) must
reproduce the MindSpore network's output on the same input. The exported input shape must come
from the config with batch 1 by default.
"""
import json
import os

import numpy as np
import mindspore as ms
import mindspore.nn as nn
import pytest

import export  # the entry script, run in-process
from conftest import ROOT
from entry_runner import run_commands
from src.checkpoint import load_network
from src.export import AIR_ERROR, SCRIPT_DEFAULTS
from src.infer import mindir_io
from src.model_utils.config import get_config
from src.models import create_model_from_config, input_shape

CIFAR_CPU = os.path.join(ROOT, "config", "cifar10_config_cpu.yaml")
MMNIST_CPU = os.path.join(ROOT, "config", "mmnist_config_cpu.yaml")
TINY_CONVLSTM = ["--hidden_channels", "4,4", "--image_size", "16", "--patch_size", "4",
                 "--input_frames", "2", "--output_frames", "2", "--input_kernel", "3",
                 "--state_kernel", "3"]
ATOL = RTOL = 1e-4


@pytest.fixture(autouse=True)
def keep_execution_mode():
    """export.py switches to GRAPH mode; give the other test files back the mode they had."""
    mode = ms.get_context("mode")
    yield
    ms.set_context(mode=mode)


def random_checkpoint(cfg, path, seed=0):
    """Save a checkpoint of the configured network with every parameter random (as train.py
    would store it: model name and class names inside)."""
    rng = np.random.default_rng(seed)
    net = create_model_from_config(cfg)
    for p in net.get_parameters():
        shape = tuple(p.shape)
        if "moving_variance" in p.name:
            value = rng.uniform(0.5, 2.0, shape)
        elif "gamma" in p.name:
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0.0, 0.3 if p.name.endswith("weight") else 0.2, shape)
        p.set_data(ms.Tensor(value.astype(np.float32)))
    meta = {"model_name": cfg.model_name}
    if cfg.model_name == "tinydarknet":
        meta["class_names"] = json.dumps([str(i) for i in range(cfg.num_classes)])
    ms.save_checkpoint(net, path, append_dict=meta)
    return path


def export_cfg(config_path, *extra):
    return get_config(["--config_path", config_path, *extra], script_defaults=SCRIPT_DEFAULTS)


def run_export(capsys, argv):
    """export.main in-process; returns the printed path (last stdout line)."""
    assert export.main(argv) == 0
    out = capsys.readouterr().out.strip().splitlines()
    path = out[-1]
    assert os.path.isabs(path) and os.path.isfile(path), out
    return path


def check_formats(tmp_path, capsys, config_path, extra, expected_shape):
    """Export ONNX and MINDIR from one checkpoint; compare both with the MindSpore network."""
    import onnxruntime as ort
    cfg = export_cfg(config_path, *extra)
    ckpt = random_checkpoint(cfg, str(tmp_path / "model.ckpt"))
    assert input_shape(cfg, cfg.batch_size) == expected_shape
    base = ["--config_path", config_path, *extra, "--ckpt_file", ckpt]
    onnx_path = run_export(capsys, base + ["--file_format", "ONNX", "--file_name", str(tmp_path / "m")])
    mindir_path = run_export(capsys, base + ["--file_name", str(tmp_path / "m")])  # MINDIR: default
    assert onnx_path == str(tmp_path / "m.onnx") and mindir_path == str(tmp_path / "m.mindir")

    x = np.random.default_rng(1).uniform(0.0, 1.0, expected_shape).astype(np.float32)
    # the networks eval.py (im2col convs on CPU) and export (native convs) build from the checkpoint
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ref = load_network(cfg, ckpt)[0](ms.Tensor(x)).asnumpy()
    ref_native = load_network(cfg, ckpt, export=True)[0](ms.Tensor(x)).asnumpy()
    assert np.abs(ref).max() > 1e-3  # a non-trivial output
    np.testing.assert_allclose(ref_native, ref, rtol=RTOL, atol=ATOL)

    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    (onnx_input,) = session.get_inputs()
    assert tuple(onnx_input.shape) == expected_shape
    assert onnx_input.name == "input" and [o.name for o in session.get_outputs()] == ["output"]
    onnx_out = session.run(None, {onnx_input.name: x})[0]
    np.testing.assert_allclose(onnx_out, ref, rtol=RTOL, atol=ATOL)

    ((_, shape, dtype),), outputs = mindir_io(mindir_path)
    assert shape == expected_shape and dtype == np.float32
    assert outputs[0][1] == ref.shape
    graph = nn.GraphCell(ms.load(mindir_path))
    np.testing.assert_allclose(graph(ms.Tensor(x)).asnumpy(), ref, rtol=RTOL, atol=ATOL)
    return cfg, ckpt


def test_export_batch_defaults_to_1_and_cli_wins():
    assert get_config(["--config_path", CIFAR_CPU]).batch_size == 32  # the training batch
    assert export_cfg(CIFAR_CPU).batch_size == 1
    assert export_cfg(CIFAR_CPU, "--batch_size", "4").batch_size == 4


def test_tinydarknet_onnx_and_mindir_match_network(tmp_path, capsys):
    cfg, ckpt = check_formats(tmp_path, capsys, CIFAR_CPU, [], (1, 3, 32, 32))
    # the input size comes from the config, the batch from --batch_size
    path = run_export(capsys, ["--config_path", CIFAR_CPU, "--ckpt_file", ckpt, "--image_size", "48",
                               "--batch_size", "2", "--file_name", str(tmp_path / "b2")])
    assert mindir_io(path)[0][0][1] == (2, 3, 48, 48)


def test_convlstm_onnx_and_mindir_match_network(tmp_path, capsys):
    assert os.path.isfile(MMNIST_CPU), "config/mmnist_config_cpu.yaml is missing"
    check_formats(tmp_path, capsys, MMNIST_CPU, TINY_CONVLSTM, (1, 2, 1, 16, 16))


def test_checkpoint_must_fit_the_config(tmp_path, capsys):
    cfg = export_cfg(CIFAR_CPU, "--num_classes", "7")
    ckpt = random_checkpoint(cfg, str(tmp_path / "seven.ckpt"))
    with pytest.raises(SystemExit) as exc:
        export.main(["--config_path", CIFAR_CPU, "--ckpt_file", ckpt, "--file_name", str(tmp_path / "x")])
    assert exc.value.code == 2
    assert "does not fit" in capsys.readouterr().err
    assert not (tmp_path / "x.mindir").exists()


def test_air_needs_ascend(tmp_path):
    (code, _, stderr), = run_commands(["export.py", "--config_path", CIFAR_CPU, "--ckpt_file",
                                       tmp_path / "any.ckpt", "--file_format", "AIR", "--file_name",
                                       tmp_path / "net"], cwd=tmp_path)
    assert code == 2
    assert stderr.strip().splitlines() == ["error: " + AIR_ERROR]
    assert not list(tmp_path.iterdir())
