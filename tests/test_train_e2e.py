"""End to end on a tiny CIFAR-10-format set: train -> checkpoint -> resume (exact) -> eval."""
import json
import os

import numpy as np
import mindspore as ms

from conftest import ROOT
from entry_runner import run_commands
from src.model_utils.config import get_config
from src.trainer import train

CPU = os.path.join(ROOT, "config", "cifar10_config_cpu.yaml")


def weights(path):
    return {k: v.asnumpy() for k, v in ms.load_checkpoint(path).items()
            if isinstance(v, ms.Parameter) and not k.startswith(("moments", "learning_rate"))
            and k not in ("epoch_num", "step_num")}


def test_train_resume_eval_cli(cifar_dir, tmp_path):
    out = str(tmp_path / "run")
    common = ["--config_path", CPU, "--data_path", cifar_dir, "--output_dir", out,
              "--batch_size", "16", "--log_interval", "2", "--warmup_epochs", "0", "--lr", "0.05"]
    (rc, stdout, stderr), = run_commands(["train.py", *common, "--epoch_size", "1"])
    assert rc == 0, stderr[-2000:]
    assert "epoch: 1 step: 2, loss is" in stdout and "per step time:" in stdout
    ckpt1 = os.path.join(out, "checkpoints", "tinydarknet-1_6.ckpt")
    assert os.path.isfile(ckpt1)
    assert get_config(["--config_path", os.path.join(out, "config.yaml")]).batch_size == 16
    history = [json.loads(l) for l in open(os.path.join(out, "loss_history.jsonl"))]
    assert [h["global_step"] for h in history] == [1, 2, 3, 4, 5, 6]

    # --resume takes the run folder too: its newest checkpoint (the file itself: test_run_guard);
    # resume and eval in one process (tests/entry_runner.py)
    (rc, stdout, stderr), evaluated = run_commands(
        ["train.py", *common, "--epoch_size", "2", "--resume", out],
        ["eval.py", "--config_path", CPU, "--data_path", cifar_dir, "--ckpt_file", ckpt1,
         "--batch_size", "16"])
    assert rc == 0, stderr[-2000:]
    assert f"--resume {out}: its newest checkpoint is {ckpt1}" in stdout
    assert "epoch: 2 step: 6, loss is" in stdout and "epoch: 1 step" not in stdout
    params = ms.load_checkpoint(sorted(
        [os.path.join(out, "checkpoints", f) for f in os.listdir(os.path.join(out, "checkpoints"))
         if f.endswith(".ckpt")], key=os.path.getmtime)[-1])
    assert int(params["epoch_num"].asnumpy()) == 2 and int(params["global_step"].asnumpy().item()) == 12

    rc, stdout, stderr = evaluated
    assert rc == 0, stderr[-2000:]
    assert "'top_1_accuracy':" in stdout and "'top_5_accuracy':" in stdout and "40 images" in stdout
    metrics = json.load(open(os.path.join(out, "eval", "metrics.json")))
    assert 0.0 <= metrics["top_1_accuracy"] <= metrics["top_5_accuracy"] <= 1.0


def test_resume_continues_exactly(cifar_dir, tmp_path):
    """2 epochs straight == its epoch-1 checkpoint + resume for 1 (3 shuffled batches per epoch, no
    augmentation): weights, moments, the LR position and the data order all come back."""
    base = ["--config_path", CPU, "--data_path", cifar_dir, "--batch_size", "32", "--augment",
            "false", "--warmup_epochs", "1", "--lr", "0.02", "--log_interval", "0",
            # one kernel per layer in both runs (auto may change its choice between runs as
            # its probe completes: other kernels, other float rounding)
            "--conv_impl", "native"]
    straight = train(get_config(base + ["--epoch_size", "2", "--output_dir", str(tmp_path / "a")]))
    # the straight run's epoch-1 checkpoint is what a run stopped after epoch 1 leaves
    first = os.path.join(straight["checkpoint_dir"], "tinydarknet-1_3.ckpt")
    train(get_config(base + ["--epoch_size", "2", "--output_dir", str(tmp_path / "c"),
                             "--resume", first]))
    a = weights(os.path.join(straight["checkpoint_dir"], "tinydarknet-2_3.ckpt"))
    c = weights(os.path.join(tmp_path, "c", "checkpoints", "tinydarknet-2_3.ckpt"))
    b = weights(first)
    assert a.keys() == c.keys()
    moved = max(np.abs(a[k] - b[k]).max() for k in a if k.endswith("weight"))
    assert moved > 1e-4  # the second epoch changed the weights ...
    for k in a:  # ... identically with and without the interruption
        assert np.allclose(a[k], c[k], rtol=1e-4, atol=1e-5), k


def test_bad_data_and_checkpoint_are_one_line_errors(tmp_path, cifar_dir):
    junk = tmp_path / "junk.ckpt"
    junk.write_text("not a checkpoint")
    nowhere, small, bad_ckpt, no_ckpt = run_commands(  # in one process: tests/entry_runner.py
        ["train.py", "--data_path", tmp_path / "nowhere"],
        ["train.py", "--data_path", cifar_dir, "--batch_size", "500"],
        ["eval.py", "--data_path", cifar_dir, "--ckpt_file", junk],
        ["eval.py", "--data_path", cifar_dir])
    rc, _, stderr = nowhere
    assert rc == 2 and stderr.strip().startswith("error: CIFAR-10 folder not found")
    rc, _, stderr = small
    assert rc == 2 and "fewer samples per rank than one batch" in stderr
    rc, _, stderr = bad_ckpt
    assert rc == 2 and "is not a MindSpore checkpoint" in stderr
    rc, _, stderr = no_ckpt
    assert rc == 2 and "pass --ckpt_file" in stderr
