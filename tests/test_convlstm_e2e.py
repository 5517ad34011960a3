"""ConvLSTM end to end on tiny files in the real formats: train -> checkpoint -> resume -> eval
(metrics JSON with both baselines, PNG strips)."""
import json
import os

import mindspore as ms
import pytest

from conftest import ROOT, TINY_CONVLSTM
from entry_runner import run_commands
from src.model_utils.errors import UserError

CPU = os.path.join(ROOT, "config", "mmnist_config_cpu.yaml")


def run(script, *args):
    """``(exit code, stdout, stderr)`` of one entry script (by this test process's runner)."""
    return run_commands([script, *args])[0]


def test_train_resume_eval(mmnist_dir, tmp_path):
    out = str(tmp_path / "run")
    common = ["--config_path", CPU, "--data_path", mmnist_dir, "--output_dir", out,
              "--log_interval", "1", *TINY_CONVLSTM]
    ckpt = os.path.join(out, "checkpoints", "convlstm-1_2.ckpt")
    first, resumed, evaluated = run_commands(  # in one process: tests/entry_runner.py
        ["train.py", *common, "--epoch_size", "1"],
        ["train.py", *common, "--epoch_size", "2", "--resume", ckpt],
        ["eval.py", "--config_path", CPU, "--data_path", mmnist_dir,
         "--ckpt_file", os.path.join(out, "checkpoints"), *TINY_CONVLSTM])
    rc, stdout, stderr = first
    assert rc == 0, stderr[-2000:]
    assert "epoch: 1 step: 2, loss is" in stdout
    params = ms.load_checkpoint(ckpt)
    # the CPU config's network: one stack (structure: stack)
    assert params["model_name"] == "convlstm" and "head.weight" in params and "stack.0.w_ci" in params

    rc, stdout, stderr = resumed
    assert rc == 0, stderr[-2000:]
    assert "epoch: 2 step: 2, loss is" in stdout and "epoch: 1 step" not in stdout

    rc, stdout, stderr = evaluated
    assert rc == 0, stderr[-2000:]
    for row in ("model", "copy_last_frame", "blank_frames"):
        assert any(line.startswith(row) for line in stdout.splitlines()), stdout
    metrics = json.load(open(os.path.join(out, "eval", "metrics.json")))
    assert metrics["num_samples"] == 6
    for key in ("mse", "mae", "ssim", "psnr", "cross_entropy"):
        assert metrics["model"][key] > 0 and metrics["copy_last_frame"][key] >= 0
    pictures = metrics["pictures"]
    assert len(pictures) == 4 and all(os.path.getsize(p) > 1000 for p in pictures)
    # per predicted frame: MSE and SSIM for the model and both baselines, printed and drawn
    frames = int(TINY_CONVLSTM[TINY_CONVLSTM.index("--output_frames") + 1])
    for row in ("model", "copy_last_frame", "blank_frames"):
        assert len(metrics[row]["mse_per_frame"]) == len(metrics[row]["ssim_per_frame"]) == frames
    table = stdout[stdout.index("per predicted frame:"):].splitlines()
    assert table[1].split()[:2] == ["frame", "MSE"] and [l.split()[0] for l in table[2:2 + frames]] \
        == [str(j + 1) for j in range(frames)]
    assert f"{metrics['model']['mse_per_frame'][-1]:.2f}" in table[1 + frames]
    assert os.path.getsize(metrics["frame_metrics_plot"]) > 1000
    with open(pictures[0], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_validation_keep_best_learning_curve_and_clipping(mmnist_dir, tmp_path):
    """Validation every epoch (learning_curve.jsonl + .png, best.ckpt), gradient clipping on."""
    out = str(tmp_path / "run")
    trained, evaluated = run_commands(  # in one process: tests/entry_runner.py
        ["train.py", "--config_path", CPU, "--data_path", mmnist_dir, "--output_dir", out,
         *TINY_CONVLSTM, "--epoch_size", "3", "--eval_interval", "1", "--patience", "0",
         "--grad_clip_norm", "1.0"],
        ["eval.py", "--config_path", CPU, "--data_path", mmnist_dir,
         "--ckpt_file", os.path.join(out, "best.ckpt"), *TINY_CONVLSTM,
         "--result_dir", tmp_path / "eval"])
    rc, stdout, stderr = trained
    assert rc == 0, stderr[-2000:]
    assert "epoch: 3 validation loss" in stdout
    with open(os.path.join(out, "learning_curve.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert all(r["num_samples"] == 4 for r in records)
    minutes = [r["minutes"] for r in records]
    assert minutes == sorted(minutes) and minutes[0] > 0
    for key in ("mse", "ssim", "ssim_openstl", "val_loss"):
        assert all(r[key] > 0 for r in records)
    assert all(r["copy_last_frame"]["mse"] > 0 and "ssim" in r["blank_frames"] for r in records)
    best = min(records, key=lambda r: r["val_loss"])
    assert best["best"] and records[0]["best"]
    stored = ms.load_checkpoint(os.path.join(out, "best.ckpt"))
    assert int(stored["epoch_num"].asnumpy()) == best["epoch"]
    assert float(stored["val_loss"]) == best["val_loss"]
    assert os.path.getsize(os.path.join(out, "learning_curve.png")) > 1000
    assert not [f for f in os.listdir(out) if f.endswith(".tmp.ckpt")]
    rc, stdout, stderr = evaluated
    assert rc == 0, stderr[-2000:]

    # the run as a shipped checkpoint (python -m src.pretrained pack): network weights only, a
    # manifest with the run's steps and held-out figures, loaded back checksum-verified
    from src.checkpoint import load_network
    from src.model_utils.config import get_config
    from src.pretrained import load_pretrained, pack
    folder, run_config = str(tmp_path / "pretrained"), os.path.join(out, "config.yaml")
    shipped, manifest = pack(out, "tiny", run_config, str(tmp_path / "eval"), "test blobs",
                             folder=folder)
    assert manifest["training"]["best_step"] == best["epoch"] * 2
    assert manifest["training"]["steps"] == 6 and manifest["held_out"]["sequences"] == 6
    assert "stages" not in manifest["training"]
    # a run that continued it (--pre_trained): steps and minutes add up, each stage listed
    _, again = pack(out, "tiny2", run_config, str(tmp_path / "eval"), "test blobs", folder=folder,
                    continues=os.path.join(folder, "tiny.json"), note="second stage", commit="abc1234")
    stages = again["training"]["stages"]
    assert [s["steps"] for s in stages] == [6, 6] and again["training"]["steps"] == 12
    assert again["training"]["minutes"] == 2 * manifest["training"]["minutes"] > 0
    assert stages[1]["note"] == again["training"]["note"] == "second stage" and "note" not in stages[0]
    assert stages[1]["commit"] == again["training"]["commit"] == "abc1234"
    with pytest.raises(UserError, match="no such manifest"):
        pack(out, "tiny3", run_config, str(tmp_path / "eval"), "", folder=folder,
             continues=os.path.join(folder, "nothing.json"))
    assert len(manifest["held_out"]["copy_last_frame"]["ssim_per_frame"]) == 3
    net, _ = load_pretrained("tiny", folder=folder)
    trained, _ = load_network(get_config(["--config_path", run_config]), os.path.join(out, "best.ckpt"),
                              export=True)
    weights = trained.parameters_dict()
    assert sorted(ms.load_checkpoint(shipped)) == sorted(list(weights) + ["model_name"])
    for name, value in net.parameters_dict().items():
        assert (value.asnumpy() == weights[name].asnumpy()).all(), name


def test_time_budget_stops_validates_and_keeps_best(mmnist_dir, tmp_path):
    """A budget far below one step: training stops after the first step and validates there."""
    out = str(tmp_path / "run")
    rc, stdout, stderr = run("train.py", "--config_path", CPU, "--data_path", mmnist_dir,
                             "--output_dir", out, *TINY_CONVLSTM, "--epoch_size", "4",
                             "--eval_interval", "3", "--log_interval", "1",
                             "--time_budget_minutes", "0.00001")
    assert rc == 0, stderr[-2000:]
    assert "time budget: at most 1e-05 minutes" in stdout
    assert "minutes of training used at epoch 1, step 1 of 8; stopping" in stdout
    assert "epoch: 1 step: 2" not in stdout and "epoch: 2 step" not in stdout
    with open(os.path.join(out, "learning_curve.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert [r["epoch"] for r in records] == [1]  # validated where it stopped, not at epoch 3
    assert os.path.exists(os.path.join(out, "best.ckpt"))
    with open(os.path.join(out, "loss_history.jsonl"), encoding="utf-8") as f:
        history = [json.loads(line) for line in f]
    # the minutes, not the one step, set the LR: the first step (index 0 of the 8-step cosine,
    # 0.004) already runs at a later step's rate (how much later depends on how many of the
    # 0.6 ms passed before it began)
    assert len(history) == 1 and history[0]["lr"] < 0.0039


def test_validation_needs_sequences(mmnist_dir, tmp_path):
    rc, _, stderr = run("train.py", "--config_path", CPU, "--data_path", mmnist_dir,
                        "--output_dir", str(tmp_path), *TINY_CONVLSTM, "--val_sequences", "0")
    assert rc == 2 and "--val_sequences N" in stderr and len(stderr.strip().splitlines()) == 1


def test_missing_moving_mnist_files_are_one_line_errors(tmp_path):
    trained, evaluated = run_commands(  # in one process: tests/entry_runner.py
        ["train.py", "--config_path", CPU, "--data_path", tmp_path],
        ["eval.py", "--config_path", CPU, "--data_path", tmp_path, "--ckpt_file", tmp_path / "x.ckpt"])
    rc, _, stderr = trained
    assert rc == 2 and "train-images-idx3-ubyte" in stderr and len(stderr.strip().splitlines()) == 1
    rc, _, stderr = evaluated
    assert rc == 2 and "checkpoint not found" in stderr


def test_scheduled_sampling_trains_and_needs_the_fed_forecaster(mmnist_dir, tmp_path):
    out = str(tmp_path / "run")
    common = ["--config_path", CPU, "--data_path", mmnist_dir, "--output_dir", out, *TINY_CONVLSTM,
              "--epoch_size", "1", "--scheduled_sampling_steps", "2", "--structure", "encoder_forecaster"]
    refused, trained, evaluated = run_commands(  # in one process: tests/entry_runner.py
        ["train.py", *common, "--forecaster_input", "none"],
        ["train.py", *common, "--forecaster_input", "prediction", "--log_interval", "1"],
        ["eval.py", "--config_path", CPU, "--data_path", mmnist_dir,
         "--ckpt_file", os.path.join(out, "checkpoints"), *TINY_CONVLSTM,
         "--forecaster_input", "prediction", "--structure", "encoder_forecaster"])
    rc, stdout, stderr = refused
    assert rc == 2 and "forecaster_input: prediction" in stderr.strip().splitlines()[-1]
    rc, stdout, stderr = trained
    assert rc == 0, stderr[-2000:]
    assert "epoch: 1 step: 2, loss is" in stdout
    params = ms.load_checkpoint(os.path.join(out, "checkpoints", "convlstm-1_2.ckpt"))
    assert "forecaster.0.conv_xh.weight" in params  # the fed first forecaster layer
    rc, stdout, stderr = evaluated
    assert rc == 0, stderr[-2000:]


def test_stack_trains_evaluates_exports_and_is_told_apart(mmnist_dir, tmp_path):
    """structure: stack end to end: train (no scheduled sampling: it still trains on every next
    frame; with the SSIM term in the loss), eval, export; a checkpoint of the other structure is
    a one-line error."""
    out = str(tmp_path / "run")
    stack = [*TINY_CONVLSTM, "--structure", "stack", "--forecaster_input", "prediction"]
    common = ["--config_path", CPU, "--data_path", mmnist_dir, *stack]
    ckpt = os.path.join(out, "checkpoints", "convlstm-1_2.ckpt")
    results = run_commands(  # in one process: tests/entry_runner.py
        ["train.py", *common, "--output_dir", out, "--epoch_size", "1",
         "--scheduled_sampling_steps", "0", "--log_interval", "1", "--ssim_loss_weight", "1.0"],
        ["eval.py", *common, "--ckpt_file", ckpt, "--result_dir", tmp_path / "eval"],
        ["export.py", *common, "--ckpt_file", ckpt, "--file_format", "ONNX",
         "--file_name", tmp_path / "stack"],
        ["eval.py", "--config_path", CPU, "--data_path", mmnist_dir, *TINY_CONVLSTM,
         "--structure", "encoder_forecaster", "--ckpt_file", ckpt],
        ["eval.py", "--config_path", CPU, "--data_path", mmnist_dir, *TINY_CONVLSTM,
         "--structure", "stack", "--forecaster_input", "prediction", "--head_kernel", "1",
         "--ckpt_file", ckpt],
        ["train.py", *common, "--forecaster_input", "none", "--output_dir", out])
    trained, evaluated, exported, other_structure, other_head, refused = results
    rc, stdout, stderr = trained
    assert rc == 0, stderr[-2000:]
    assert "epoch: 1 step: 2, loss is" in stdout
    assert "stack.0.conv_xh.weight" in ms.load_checkpoint(ckpt)
    rc, stdout, stderr = evaluated
    assert rc == 0, stderr[-2000:]
    metrics = json.load(open(tmp_path / "eval" / "metrics.json"))
    assert metrics["num_samples"] == 6 and metrics["model"]["mse"] > 0
    rc, stdout, stderr = exported
    assert rc == 0, stderr[-2000:]
    assert os.path.getsize(tmp_path / "stack.onnx") > 1000
    rc, _, stderr = other_structure
    assert rc == 2 and len(stderr.strip().splitlines()) == 1, stderr[-2000:]
    assert "does not fit the network" in stderr and "structure, forecaster_input" in stderr
    rc, _, stderr = other_head
    assert rc == 2 and len(stderr.strip().splitlines()) == 1, stderr[-2000:]
    assert "head.weight" in stderr and "head_kernel" in stderr
    rc, _, stderr = refused
    assert rc == 2 and "forecaster_input: prediction" in stderr.strip().splitlines()[-1]
