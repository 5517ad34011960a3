"""ConvLSTM end to end on tiny files in the real formats: train -> checkpoint -> resume -> eval
(metrics JSON with both baselines, PNG strips)."""
import json
import os
import subprocess
import sys

import mindspore as ms

from conftest import ROOT, TINY_CONVLSTM

CPU = os.path.join(ROOT, "config", "mmnist_config_cpu.yaml")


def run(script, *args):
    out = subprocess.run([sys.executable, script, *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    return out.returncode, out.stdout, out.stderr


def test_train_resume_eval(mmnist_dir, tmp_path):
    out = str(tmp_path / "run")
    common = ["--config_path", CPU, "--data_path", mmnist_dir, "--output_dir", out,
              "--log_interval", "1", *TINY_CONVLSTM]
    rc, stdout, stderr = run("train.py", *common, "--epoch_size", "1")
    assert rc == 0, stderr[-2000:]
    assert "epoch: 1 step: 2, loss is" in stdout
    ckpt = os.path.join(out, "checkpoints", "convlstm-1_2.ckpt")
    params = ms.load_checkpoint(ckpt)
    assert params["model_name"] == "convlstm" and "head.weight" in params and "encoder.0.w_ci" in params

    rc, stdout, stderr = run("train.py", *common, "--epoch_size", "2", "--resume", ckpt)
    assert rc == 0, stderr[-2000:]
    assert "epoch: 2 step: 2, loss is" in stdout and "epoch: 1 step" not in stdout

    rc, stdout, stderr = run("eval.py", "--config_path", CPU, "--data_path", mmnist_dir,
                             "--ckpt_file", os.path.join(out, "checkpoints"), *TINY_CONVLSTM)
    assert rc == 0, stderr[-2000:]
    for row in ("model", "copy_last_frame", "blank_frames"):
        assert any(line.startswith(row) for line in stdout.splitlines()), stdout
    metrics = json.load(open(os.path.join(out, "eval", "metrics.json")))
    assert metrics["num_samples"] == 6
    for key in ("mse", "mae", "ssim", "psnr", "cross_entropy"):
        assert metrics["model"][key] > 0 and metrics["copy_last_frame"][key] >= 0
    pictures = metrics["pictures"]
    assert len(pictures) == 4 and all(os.path.getsize(p) > 1000 for p in pictures)
    with open(pictures[0], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_missing_moving_mnist_files_are_one_line_errors(tmp_path):
    rc, _, stderr = run("train.py", "--config_path", CPU, "--data_path", str(tmp_path))
    assert rc == 2 and "train-images-idx3-ubyte" in stderr and len(stderr.strip().splitlines()) == 1
    ckpt = tmp_path / "x.ckpt"
    rc, _, stderr = run("eval.py", "--config_path", CPU, "--data_path", str(tmp_path),
                        "--ckpt_file", str(ckpt))
    assert rc == 2 and "checkpoint not found" in stderr
