"""Deployment pipeline on CPU: checkpoint -> export MINDIR -> scripts/run_infer_cpu.sh (preprocess.py,
``python -m src.infer``, postprocess.py) must reproduce eval.py exactly. The checkpoints hold random
weights, BatchNorm statistics and peepholes included (test_export's ``random_checkpoint``): the
pipeline must reproduce whatever network it is given; training is test_train_e2e's.

Preprocessing is the evaluation pipeline of src/data, so the classifier's count of correct images
must be *equal* to the classification task's ``evaluate`` on the same checkpoint and data, and ConvLSTM's MSE
the same as the video task's. The latency file must exist and parse.
"""
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import mindspore as ms
import pytest

import export  # the entry script, run in-process
from conftest import ROOT
from src.preprocess import preprocess
from src.data import create_dataset_from_config
from src.data.moving_mnist import write_mnist_test_seq
from src.checkpoint import load_network
from src.evaluate import predict_batches
from src.tasks import create_task
from src.infer import TIME_FILE, parse_latency_file, run_inference
from src.model_utils.config import get_config
from test_export import MMNIST_CPU, random_checkpoint

CIFAR_CPU = os.path.join(ROOT, "config", "cifar10_config_cpu.yaml")
CPU_SCRIPT = os.path.join(ROOT, "scripts", "run_infer_cpu.sh")
ASCEND_SCRIPT = os.path.join(ROOT, "scripts", "run_infer_310.sh")
HEADERS = os.path.join(ROOT, "ascend310_infer", "third_party", "mindspore_headers")


@pytest.fixture(autouse=True)
def keep_execution_mode():
    mode = ms.get_context("mode")
    yield
    ms.set_context(mode=mode)


def run_script(script, args, cwd, env=None):
    result = subprocess.run(["bash", script, *args], cwd=str(cwd), capture_output=True, text=True,
                            timeout=300, env=dict(os.environ, PYTHON=sys.executable, **(env or {})))
    return result.returncode, result.stdout, result.stderr


def check_latency(time_dir, count):
    stats = parse_latency_file(os.path.join(str(time_dir), TIME_FILE))
    assert stats["count"] == count
    assert 0 < stats["p50"] <= stats["p90"] and stats["mean"] > 0
    return stats


def test_classifier_cpu_pipeline_equals_eval(cifar_dir, tmp_path, capsys):
    common = ["--config_path", CIFAR_CPU, "--data_path", cifar_dir]
    ckpt = random_checkpoint(get_config(common), str(tmp_path / "tinydarknet.ckpt"))

    # eval.py's way: the CPU network (im2col convs), the eval pipeline at batch 8
    eval_cfg = get_config(common + ["--eval_batch_size", "8"])
    net = load_network(eval_cfg, ckpt)[0]
    expected = create_task(eval_cfg).evaluate(net, create_dataset_from_config(eval_cfg, "eval"), log=None)
    total = expected["num_samples"]
    correct = int(round(expected["top_1_accuracy"] * total))
    logits = np.concatenate([out for out, _ in predict_batches(net, create_dataset_from_config(eval_cfg, "eval"))])

    assert export.main(common + ["--ckpt_file", ckpt, "--file_name", str(tmp_path / "tdn")]) == 0
    mindir = capsys.readouterr().out.strip().splitlines()[-1]

    work = tmp_path / "work"  # the script writes into the current directory, whatever it is
    work.mkdir()
    rc, stdout, stderr = run_script(CPU_SCRIPT, [os.path.relpath(mindir, work), "cifar10",
                                                 os.path.relpath(cifar_dir, work)], work)
    assert rc == 0, stdout[-1500:] + stderr[-1500:]
    acc_log = (work / "acc.log").read_text()
    match = re.search(r"top1_correct=(\d+), tot=(\d+)", acc_log)
    assert match, acc_log
    assert (int(match.group(1)), int(match.group(2))) == (correct, total) == (correct, 40)
    # the outputs themselves are the network's logits, sample by sample
    outs = [np.fromfile(work / "result_Files" / f"cifar10_{i:05d}_0.bin", np.float32) for i in range(total)]
    np.testing.assert_allclose(np.stack(outs), logits, rtol=1e-4, atol=1e-4)
    assert sorted(os.listdir(work / "result_Files")) == [f"cifar10_{i:05d}_0.bin" for i in range(total)]
    labels = np.load(work / "preprocess_Result" / "label.npy")
    assert labels.tolist() == np.fromfile(os.path.join(cifar_dir, "test_batch.bin"), np.uint8
                                          ).reshape(-1, 3073)[:, 0].tolist()
    check_latency(work / "time_Result", total)
    assert "NN inference cost average time:" in stdout


def test_cpu_script_usage_and_argument_errors(tmp_path):
    rc, _, stderr = run_script(CPU_SCRIPT, ["only_one"], tmp_path)
    assert rc == 2 and "Usage: bash run_infer_cpu.sh MINDIR_PATH DATASET DATA_PATH" in stderr
    (tmp_path / "m.mindir").write_bytes(b"x")
    rc, _, stderr = run_script(CPU_SCRIPT, ["m.mindir", "mnist", str(tmp_path)], tmp_path)
    assert rc == 2 and "DATASET must be cifar10, imagenet or moving_mnist" in stderr
    rc, _, stderr = run_script(CPU_SCRIPT, ["missing.mindir", "cifar10", str(tmp_path)], tmp_path)
    assert rc == 2 and "is not a file" in stderr
    rc, _, stderr = run_script(os.path.join(ROOT, "scripts", "run_infer_310.sh"), ["a", "b"], tmp_path)
    assert rc == 2 and "Usage: bash run_infer_310.sh" in stderr
    assert not (tmp_path / "preprocess_Result").exists()


def test_convlstm_cpu_pipeline_equals_eval(tmp_path, capsys):
    assert os.path.isfile(MMNIST_CPU), "config/mmnist_config_cpu.yaml is missing"
    rng = np.random.default_rng(0)
    test_file = str(tmp_path / "mnist_test_seq.npy")
    write_mnist_test_seq(test_file, rng.integers(0, 256, (20, 6, 16, 16)).astype(np.uint8))
    config = tmp_path / "tiny.yaml"  # a config file, as run_infer_cpu.sh takes one (CONFIG_PATH)
    config.write_text(f"__base__: {MMNIST_CPU}\nhidden_channels: [4, 4]\nimage_size: 16\npatch_size: 4\n"
                      "input_frames: 2\noutput_frames: 2\ninput_kernel: 3\nstate_kernel: 3\n")
    cfg = get_config(["--config_path", str(config), "--data_path", test_file, "--eval_data_path",
                      test_file, "--eval_batch_size", "4"])
    ckpt = random_checkpoint(cfg, str(tmp_path / "convlstm.ckpt"))
    ms.set_context(mode=ms.PYNATIVE_MODE)
    expected = create_task(cfg).evaluate(load_network(cfg, ckpt)[0], create_dataset_from_config(cfg, "eval"),
                                         log=None)
    assert expected["num_samples"] == 6

    assert export.main(["--config_path", str(config), "--ckpt_file", ckpt,
                        "--file_name", str(tmp_path / "convlstm")]) == 0
    mindir = capsys.readouterr().out.strip().splitlines()[-1]

    # the stages in Python ...
    pre = preprocess(cfg, str(tmp_path / "pre"), log=None)
    assert pre["num_samples"] == 6 and pre["input_shape"] == (1, 2, 1, 16, 16)
    run_inference(mindir, pre["data_dir"], str(tmp_path / "result_Files"), str(tmp_path / "time_Result"),
                  warmup=1, log=None)
    got = create_task(cfg).postprocess(str(tmp_path / "result_Files"), pre["target_dir"], log=None)
    for key in ("mse", "mae", "ssim", "cross_entropy"):
        np.testing.assert_allclose(got["model"][key], expected["model"][key], rtol=1e-5, err_msg=key)
    for baseline in ("copy_last_frame", "blank_frames"):
        np.testing.assert_allclose(got[baseline]["mse"], expected[baseline]["mse"], rtol=1e-6)
    assert got["num_samples"] == 6
    check_latency(tmp_path / "time_Result", 6)

    # ... and through the script (DEVICE_ID given after a "-" LABEL_FILE)
    work = tmp_path / "work"
    work.mkdir()
    rc, stdout, stderr = run_script(CPU_SCRIPT, [mindir, "moving_mnist", test_file, "-", "0"], work,
                                    env={"CONFIG_PATH": str(config)})
    assert rc == 0, stdout[-1500:] + stderr[-1500:]
    row = re.search(r"^model\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)", (work / "acc.log").read_text(), re.M)
    assert row, (work / "acc.log").read_text()
    assert float(row.group(1)) == pytest.approx(expected["model"]["mse"], abs=0.006)
    check_latency(work / "time_Result", 6)


def test_310_script_end_to_end_with_stand_in_library(cifar_dir, tmp_path):
    """run_infer_310.sh's stages (build.sh, preprocess, out/main, postprocess) against the test-only
    libmindspore.so of ascend310_infer/tests, whose Predict() returns the input as output 0: with a
    config of num_classes = 3*16*16 the "logits" are the preprocessed image itself."""
    cxx = os.environ.get("CXX", "g++")
    if not os.path.isfile(os.path.join(HEADERS, "include", "api", "model.h")):
        pytest.skip("MindSpore C++ headers not fetched (ascend310_infer/fetch_headers.sh)")
    if not all(shutil.which(t) for t in (cxx, "cmake", "make")):
        pytest.skip("C++ toolchain (g++, cmake, make) not found")
    probe = subprocess.run([cxx, "-x", "c++", "-fsyntax-only", "-"], input="#include <gflags/gflags.h>\n",
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("gflags headers not found")
    fake = tmp_path / "mindspore"
    (fake / "lib").mkdir(parents=True)
    (fake / "include").symlink_to(os.path.join(HEADERS, "include"))
    lib = subprocess.run([cxx, "-std=c++17", "-shared", "-fPIC", "-O1", f"-I{HEADERS}",
                          f"-I{os.path.join(HEADERS, 'include')}",
                          os.path.join(ROOT, "ascend310_infer", "tests", "fake_mindspore.cc"),
                          "-o", str(fake / "lib" / "libmindspore.so")], capture_output=True, text=True)
    assert lib.returncode == 0, lib.stderr
    config = tmp_path / "pixels.yaml"
    config.write_text(f"__base__: {CIFAR_CPU}\nimage_size: 16\nnum_classes: 768\n")
    model = tmp_path / "net.mindir"
    model.write_text("FAKE_MINDIR 1 3 16 16")
    work = tmp_path / "work"
    work.mkdir()
    env = {"MINDSPORE_PATH": str(fake), "BUILD_DIR": str(tmp_path / "build"),
           "OUTPUT_DIR": str(tmp_path / "out"), "CONFIG_PATH": str(config)}
    rc, stdout, stderr = run_script(ASCEND_SCRIPT, [str(model), "cifar10", cifar_dir, "-", "3"], work, env)
    assert rc == 0, stdout[-1500:] + stderr[-1500:]
    inputs = np.stack([np.fromfile(work / "preprocess_Result" / "00_data" / f"cifar10_{i:05d}.bin", np.float32)
                       for i in range(40)])
    labels = np.load(work / "preprocess_Result" / "label.npy")
    correct = int((inputs.argmax(axis=1) == labels).sum())
    assert f"top1_correct={correct}, tot=40," in (work / "acc.log").read_text()
    assert len(list((work / "result_Files").glob("*_1.bin"))) == 40  # the stand-in's second output
    stats = parse_latency_file(str(work / "time_Result" / TIME_FILE))  # the C++ program's wording
    assert stats["count"] == 40 and "p50" not in stats
