"""Data-parallel training for real: 2 CPU worker processes under msrun on loopback.

For each model a tiny run is trained twice with the same seed and steps:
  * 2 ranks under msrun (``--run_distribute true``): each rank saves its final trainable weights;
  * 1 process that reads only rank 0's shard, without gradient averaging.
Then: both ranks end with identical weights (gradients are averaged), the ranks saw different data
(their first-step losses differ), the single-shard run saw rank 0's data (same first-step loss as
rank 0) and still ends with different weights (so rank 1's gradients took part in the updates).
The weights are saved by a test-only entry script written to tmp (it calls ``src.trainer.train``).
Finally ``scripts/run_distribute_train_msrun.sh CPU 2`` is run end-to-end once.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import ROOT, write_cifar10_bin

PYTHON_DIR = os.path.dirname(os.path.abspath(sys.executable))
MSRUN = (os.path.join(PYTHON_DIR, "msrun") if os.path.isfile(os.path.join(PYTHON_DIR, "msrun"))
         else shutil.which("msrun"))
pytestmark = pytest.mark.skipif(MSRUN is None, reason="msrun not found (comes with MindSpore >= 2.3)")

LOSS_LINE = re.compile(r"^epoch: (\d+) step: (\d+), loss is ([-+0-9.eE]+|nan|inf)", re.M)
TIMEOUT = 300  # seconds per process tree; a healthy 2-rank run takes ~20-40 s here

# Test-only entry: train with src.trainer.train and save the final trainable weights per rank.
# "shard0" mode: one plain process that reads only shard 0 of --num_shards (no gradient averaging).
ENTRY = textwrap.dedent('''
    import os
    import sys

    import numpy as np

    root, out_dir, mode, num_shards = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    sys.path.insert(0, root)
    from src.model_utils.config import get_config
    import src.trainer as trainer

    cfg = get_config(sys.argv[5:])
    if mode == "shard0":
        real_setup = trainer.setup_device

        def setup_shard0(target, device_id=0, run_mode="GRAPH", distribute=False):
            real_setup(target, device_id, run_mode, False)
            return 0, num_shards  # rank 0 of num_shards for the data; no communication

        trainer.setup_device = setup_shard0
        cfg = cfg.replace(run_distribute=False)
    result = trainer.train(cfg)
    weights = {p.name: p.asnumpy() for p in result["network"].trainable_params()}
    np.savez(os.path.join(out_dir, f"{mode}_rank{result['rank']}.npz"), **weights)
    print(f"saved {len(weights)} trainable parameters of rank {result['rank']}/{result['group_size']}",
          flush=True)
''')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_env(**extra):
    env = dict(os.environ)
    # msrun starts the workers with the `python` on PATH: make it this interpreter
    env["PATH"] = PYTHON_DIR + os.pathsep + env.get("PATH", "")
    env["GLOG_v"] = "3"
    env.pop("RANK_TABLE_FILE", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(cmd, cwd=None, env=None, timeout=TIMEOUT):
    """Run a process tree; on timeout kill the whole group (msrun's workers too) and fail."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env or child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(map(str, cmd[:4]))} ... timed out after {timeout} s:\n{out[-3000:]}")
    return proc.returncode, out


def losses(text):
    """{(epoch, step): loss} from the train monitor's lines."""
    return {(int(e), int(s)): float(v) for e, s, v in LOSS_LINE.findall(text)}


def read_log(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def train_both_ways(tmp, train_args, steps):
    """Train on 2 ranks under msrun and on shard 0 alone; returns a dict of weights and losses."""
    entry = os.path.join(tmp, "entry.py")
    with open(entry, "w", encoding="utf-8") as f:
        f.write(ENTRY)
    logs = os.path.join(tmp, "msrun_logs")
    dp_args = [entry, ROOT, tmp, "dp", "2", *train_args, "--output_dir", os.path.join(tmp, "dp"),
               "--run_distribute", "true"]
    cmd = [MSRUN, "--worker_num=2", "--local_worker_num=2", f"--master_port={free_port()}",
           f"--log_dir={logs}", "--join=True", "--cluster_time_out=120", *dp_args]
    rc, out = run(cmd, cwd=tmp)
    worker_logs = [read_log(os.path.join(logs, f"worker_{r}.log"))
                   if os.path.exists(os.path.join(logs, f"worker_{r}.log")) else "" for r in (0, 1)]
    assert rc == 0, f"msrun failed ({rc}):\n{out[-2000:]}\n--- worker 1:\n{worker_logs[1][-2000:]}"
    for r in (0, 1):
        assert "saved" in worker_logs[r] and f"of rank {r}/2" in worker_logs[r], worker_logs[r][-2000:]

    rc, single_out = run([sys.executable, entry, ROOT, tmp, "shard0", "2", *train_args,
                          "--output_dir", os.path.join(tmp, "shard0")], cwd=tmp)
    assert rc == 0, single_out[-3000:]

    result = {"rank_losses": [losses(t) for t in worker_logs], "single_losses": losses(single_out),
              "kernel_choices": [kernel_choices(t) for t in worker_logs]}
    for name in ("dp_rank0", "dp_rank1", "shard0_rank0"):
        with np.load(os.path.join(tmp, f"{name}.npz")) as data:
            result[name] = {k: data[k] for k in data.files}
    for key in ("rank_losses", "single_losses"):
        got = result[key] if key == "single_losses" else result[key][0]
        assert sorted(got) == [(1, s) for s in range(1, steps + 1)], f"{key}: {got}"
    assert sorted(result["rank_losses"][1]) == sorted(result["rank_losses"][0])
    return result


def kernel_choices(log):
    """The kernels a rank's log says it runs (``kernel choices (how): summary``)."""
    lines = [l for l in log.splitlines() if l.startswith("kernel choices (")]
    assert len(lines) == 1, log[-2000:]
    return lines[0].split("(", 1)[1].split("): ", 1)


def check_data_parallel(result):
    # rank 0 decided and recorded the kernels, rank 1 read them: the same kernels on both
    (how0, kernels0), (how1, kernels1) = result["kernel_choices"]
    assert kernels0 == kernels1 and "recorded in" in how0 and how1.startswith("rank 0's, from")
    w0, w1, single = result["dp_rank0"], result["dp_rank1"], result["shard0_rank0"]
    assert w0 and sorted(w0) == sorted(w1) == sorted(single)
    # (a) gradients are averaged: every trainable weight is the same on both ranks
    for name in w0:
        np.testing.assert_allclose(w0[name], w1[name], rtol=0, atol=1e-6, err_msg=name)
    # the ranks read different shards: same initial weights, different first-step losses
    loss0, loss1, loss_single = result["rank_losses"][0], result["rank_losses"][1], result["single_losses"]
    assert abs(loss0[(1, 1)] - loss1[(1, 1)]) > 1e-4, (loss0, loss1)
    # the single-process run read exactly rank 0's shard from the same initial weights ...
    assert loss_single[(1, 1)] == pytest.approx(loss0[(1, 1)], rel=1e-4, abs=1e-5), (loss_single, loss0)
    # (b) ... yet ends elsewhere: rank 1's gradients took part in every update
    diff = max(float(np.max(np.abs(w0[n] - single[n]))) for n in w0)
    assert diff > 1e-4, f"2-rank weights equal the single-shard run's (max diff {diff})"
    assert loss0[(1, 2)] != pytest.approx(loss_single[(1, 2)], rel=1e-5, abs=1e-6)


# ----------------------------------------------------------------------------------- Tiny-DarkNet
STEPS = 2
BATCH = 4
CIFAR_ARGS = ["--config_path", os.path.join(ROOT, "config", "cifar10_config_cpu.yaml"),
              "--batch_size", str(BATCH), "--epoch_size", "1", "--num_samples", "0",
              "--lr", "0.05", "--lr_scheduler", "constant", "--warmup_epochs", "0",
              "--augment", "false", "--num_parallel_workers", "1", "--log_interval", "1",
              "--progress_bar", "off", "--keep_checkpoint_max", "1"]


@pytest.fixture(scope="module")
def cifar_tiny(tmp_path_factory):
    """2 ranks x STEPS steps x BATCH images (not 10,000 records: the repo's own reader shards it)."""
    folder = tmp_path_factory.mktemp("dp_data") / "cifar-10-batches-bin"
    write_cifar10_bin(str(folder / "data_batch_1.bin"), 2 * STEPS * BATCH, seed=3)
    write_cifar10_bin(str(folder / "test_batch.bin"), 8, seed=4)
    return str(folder)


@pytest.fixture(scope="module")
def darknet_runs(tmp_path_factory, cifar_tiny):
    tmp = str(tmp_path_factory.mktemp("dp_darknet"))
    return train_both_ways(tmp, CIFAR_ARGS + ["--data_path", cifar_tiny], STEPS)


def test_tinydarknet_two_ranks_end_identical_and_differ_from_one_shard(darknet_runs):
    check_data_parallel(darknet_runs)


def test_msrun_launcher_end_to_end(tmp_path, cifar_tiny):
    out, logs = tmp_path / "out", tmp_path / "logs"
    cmd = ["bash", os.path.join(ROOT, "scripts", "run_distribute_train_msrun.sh"), "CPU", "2",
           os.path.join(ROOT, "config", "cifar10_config_cpu.yaml"), cifar_tiny,
           "--output_dir", str(out), *CIFAR_ARGS[2:]]
    rc, text = run(cmd, cwd=str(tmp_path),
                   env=child_env(RUN_DIR=str(logs), MASTER_PORT=free_port(), CLUSTER_TIME_OUT=120))
    assert rc == 0, text[-3000:]
    assert f"logs: {logs}/worker_N.log" in text
    for rank in (0, 1):
        log = read_log(logs / f"worker_{rank}.log")
        assert sorted(losses(log)) == [(1, 1), (1, 2)], log[-2000:]
    assert "epoch: 1 step: 2, loss is" in read_log(logs / "msrun.log")  # rank 0 shown on the console
    # only rank 0 writes outputs: one checkpoint, the config and the loss history (its 2 steps)
    assert [f for f in os.listdir(out / "checkpoints") if f.endswith(".ckpt")] == ["tinydarknet-1_2.ckpt"]
    assert (out / "config.yaml").is_file()
    assert len(read_log(out / "loss_history.jsonl").splitlines()) == STEPS


# ----------------------------------------------------------------------------------- ConvLSTM
MMNIST_CONFIG = os.path.join(ROOT, "config", "mmnist_config_cpu.yaml")
HAS_CONVLSTM = os.path.isfile(MMNIST_CONFIG) and os.path.isfile(os.path.join(ROOT, "src", "models", "convlstm.py"))


@pytest.mark.skipif(not HAS_CONVLSTM, reason="ConvLSTM (config/mmnist_config_cpu.yaml) not in this tree")
def test_convlstm_two_ranks_end_identical_and_differ_from_one_shard(tmp_path):
    from src.data.mnist_idx import write_idx_images

    rng = np.random.default_rng(0)
    digits = (rng.random((10, 8, 8)) * 255).astype(np.uint8)  # small "digits" for a 16x16 canvas
    data = tmp_path / "mnist"
    data.mkdir()
    write_idx_images(str(data / "train-images-idx3-ubyte"), digits)
    args = ["--config_path", MMNIST_CONFIG, "--data_path", str(data), "--hidden_channels", "4,4",
            "--image_size", "16", "--input_frames", "2", "--output_frames", "2",
            "--train_sequences", str(2 * STEPS * 2), "--batch_size", "2", "--epoch_size", "1",
            "--lr_scheduler", "constant", "--warmup_epochs", "0", "--num_parallel_workers", "1",
            "--log_interval", "1", "--progress_bar", "off", "--keep_checkpoint_max", "1"]
    check_data_parallel(train_both_ways(str(tmp_path), args, STEPS))
