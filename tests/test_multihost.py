"""Training on several hosts, simulated on one machine: scripts/run_distribute_train_multihost.sh.

Two separate launcher invocations are host 0 and host 1 of a 2-host x 1-rank job; they share only
MASTER_ADDR:PORT (127.0.0.1 and a free port) and the output folder (as on shared storage: rank 0
writes the kernel choices the other ranks read and the checkpoints every host resumes from there);
each host has its own log folder. A tiny ConvLSTM trains 3 epochs; its generated Moving MNIST
sequences depend only on the seed and the epoch, so a resumed run sees the data an uninterrupted
run sees.

  1. host 1's worker is killed (SIGKILL) in epoch 2: host 0 stops within the cluster timeout with
     one line naming the lost rank, and no half-written checkpoint is left;
  2. both hosts restart with --resume <host 0's newest checkpoint> and finish epoch 3: global
     ranks 0 and 1, disjoint shards, identical trainable weights on both ranks, checkpoints from
     global rank 0 only, and the same final weights as an uninterrupted one-host 2-rank msrun run
     (scripts/run_distribute_train_msrun.sh) of the same config and seed.

The workers run under a test-only hook (a `python` on PATH that wraps train.py) which records what
each rank read of its shard and whether it made a checkpoint writer, and saves its trainable
weights; the training itself is train.py's.
The launcher's input checks (host index, master unreachable, port in use) and dry runs need no
MindSpore.
"""
import glob
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from conftest import ROOT

LAUNCHER = os.path.join(ROOT, "scripts", "run_distribute_train_multihost.sh")
MSRUN_LAUNCHER = os.path.join(ROOT, "scripts", "run_distribute_train_msrun.sh")
CONFIG = os.path.join(ROOT, "config", "mmnist_config_cpu.yaml")
PYTHON_DIR = os.path.dirname(os.path.abspath(sys.executable))
HAS_MSRUN = os.path.isfile(os.path.join(PYTHON_DIR, "msrun")) or shutil.which("msrun") is not None
CLUSTER_TIME_OUT = 240  # generous: a loaded 2-core machine takes a minute to start a rank
RUN_TIMEOUT = 600       # seconds per launcher invocation before the test gives up
NODE_TIMEOUT = 10       # heartbeat timeout of the killed run (MS_NODE_TIMEOUT; MindSpore: 30 s)
EPOCHS = 3
STEPS = 2               # per epoch and rank: 8 sequences / 2 ranks / batch 2
TRAIN_ARGS = ["--hidden_channels", "4,4", "--image_size", "16", "--input_frames", "2",
              "--output_frames", "2", "--train_sequences", "8", "--batch_size", "2",
              "--epoch_size", str(EPOCHS), "--time_budget_minutes", "0", "--eval_interval", "0",
              "--scheduled_sampling_steps", "0", "--patience", "0", "--conv_impl", "unfold",
              "--gate_impl", "native", "--lr_scheduler", "constant", "--warmup_epochs", "0",
              "--num_parallel_workers", "1", "--log_interval", "1", "--progress_bar", "off",
              "--keep_checkpoint_max", "5"]

# Test-only wrapper of train.py in the worker processes: records the samples of this rank's shard
# (a hash per sample of the first epoch it trains) and saves the trainable weights at the end.
HOOK = textwrap.dedent('''
    import hashlib
    import importlib.abc
    import importlib.util
    import json
    import os
    import runpy
    import sys
    import time

    import numpy as np

    OUT = os.environ["HOOK_OUT"]


    def patch(trainer):
        create, train = trainer.create_dataset_from_config, trainer.train
        seen = {"checkpoint_writers": 0}

        class CountedCheckpoint(trainer.SafeModelCheckpoint):
            def __init__(self, *args, **kwargs):
                seen["checkpoint_writers"] += 1
                super().__init__(*args, **kwargs)

        def recording(cfg, split, shard_id=None, num_shards=None, start_epoch=0, **kwargs):
            if split == "train":
                probe = create(cfg, split, shard_id=shard_id, num_shards=num_shards,
                               start_epoch=start_epoch, **kwargs)
                hashes = []
                for columns in probe.create_tuple_iterator(num_epochs=1, output_numpy=True):
                    for i in range(len(columns[0])):
                        hashes.append(hashlib.sha1(b"".join(c[i].tobytes() for c in columns)).hexdigest())
                seen.update(epoch=start_epoch + 1, samples=hashes)
            return create(cfg, split, shard_id=shard_id, num_shards=num_shards,
                          start_epoch=start_epoch, **kwargs)

        def train_and_save(cfg):
            result = train(cfg)
            rank = result["rank"]
            np.savez(os.path.join(OUT, f"rank{rank}.npz"),
                     **{p.name: p.asnumpy() for p in result["network"].trainable_params()})
            with open(os.path.join(OUT, f"rank{rank}.json"), "w") as f:
                json.dump(dict(seen, rank=rank, group_size=result["group_size"]), f)
            return result

        class HeldMonitor(trainer.TrainMonitor):  # HOOK_HOLD_EPOCH: wait there to be killed
            def on_train_epoch_begin(self, run_context):
                super().on_train_epoch_begin(run_context)
                if run_context.original_args().cur_epoch_num == int(os.environ.get("HOOK_HOLD_EPOCH", 0)):
                    open(os.path.join(OUT, "held"), "w").close()
                    time.sleep(3600)

        trainer.create_dataset_from_config, trainer.train = recording, train_and_save
        trainer.SafeModelCheckpoint, trainer.TrainMonitor = CountedCheckpoint, HeldMonitor


    class PatchTrainer(importlib.abc.MetaPathFinder):  # after train.py's own start-up order
        def find_spec(self, name, path, target=None):
            if name != "src.trainer":
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            run = spec.loader.exec_module
            spec.loader.exec_module = lambda module: (run(module), patch(module))
            return spec


    sys.meta_path.insert(0, PatchTrainer())
    sys.argv = sys.argv[1:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
    runpy.run_path(sys.argv[0], run_name="__main__")
''')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def hooked_path(tmp):
    """A folder with a `python` that runs train.py workers under HOOK (everything else as is)."""
    folder = os.path.join(tmp, "bin")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(tmp, "hook.py"), "w", encoding="utf-8") as f:
        f.write(HOOK)
    wrapper = os.path.join(folder, "python")
    with open(wrapper, "w", encoding="utf-8") as f:
        f.write(f'#!/bin/bash\nif [ "${{MS_ROLE:-}}" = MS_WORKER ] && [[ "${{1:-}}" == */train.py ]]; then\n'
                f'    exec {shlex.quote(sys.executable)} {shlex.quote(os.path.join(tmp, "hook.py"))} "$@"\n'
                f'fi\nexec {shlex.quote(sys.executable)} "$@"\n')
    os.chmod(wrapper, os.stat(wrapper).st_mode | stat.S_IXUSR)
    return folder


def env_for(bin_dir=None, **extra):
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(p for p in (bin_dir, PYTHON_DIR, env.get("PATH", "")) if p)
    env["GLOG_v"] = "3"
    for key in ("DRY_RUN", "RUN_DIR", "RANK_TABLE_FILE", "MASTER_PORT", "MS_ROLE", "MS_NODE_TIMEOUT",
                "MS_CPU_COMM_OP_TIMEOUT", "HOSTFILE"):
        env.pop(key, None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_launcher(*args, **env):
    """A launcher that starts nothing (dry run or bad input): (status, stdout, stderr)."""
    res = subprocess.run(["bash", LAUNCHER, *map(str, args)], env=env_for(**env), cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    return res.returncode, res.stdout, res.stderr


class Host:
    """One launcher invocation in the background: stdout/stderr in files, its process tree
    stopped at the end whatever happened."""

    def __init__(self, tmp, name, cmd, env):
        self.name, self.dir = name, os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.out_path, self.err_path = os.path.join(self.dir, "stdout"), os.path.join(self.dir, "stderr")
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=out, stderr=err,
                                         start_new_session=True)
        self.ended = None

    def poll(self):
        if self.ended is None and self.proc.poll() is not None:
            self.ended = time.monotonic()
        return self.proc.returncode if self.ended is not None else None

    def wait(self, timeout=RUN_TIMEOUT):
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"{self.name}: no end after {timeout} s:\n{self.stdout[-3000:]}")
            time.sleep(0.5)
        return self.proc.returncode

    def descendants(self):
        import psutil
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self):
        kids = self.descendants()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the launcher stops its process groups
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        for kid in kids:
            try:
                kid.kill()
            except Exception:  # pylint: disable=broad-except
                pass

    @property
    def stdout(self):
        return read(self.out_path)

    @property
    def stderr(self):
        return read(self.err_path)


def read(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def wait_for(path, pattern, hosts, timeout=RUN_TIMEOUT):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path) and re.search(pattern, read(path), re.M):
            return
        ended = [h for h in hosts if h.poll() is not None]
        if ended:
            pytest.fail(f"{ended[0].name} ended ({ended[0].proc.returncode}) before {pattern!r} "
                        f"appeared in {path}:\n{ended[0].stderr[-2000:]}")
        time.sleep(0.5)
    pytest.fail(f"{pattern!r} did not appear in {path} within {timeout} s")


def load_npz(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def checkpoints(folder):
    return sorted(glob.glob(os.path.join(folder, "checkpoints", "*.ckpt")))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """The killed two-host run, its resumed run and the one-host reference, started here."""
    pytest.importorskip("psutil")
    if not HAS_MSRUN:
        pytest.skip("msrun not found (comes with MindSpore >= 2.3)")
    from src.data.mnist_idx import write_idx_images

    tmp = str(tmp_path_factory.mktemp("multihost"))
    digits = (np.random.default_rng(0).random((10, 8, 8)) * 255).astype(np.uint8)
    os.makedirs(os.path.join(tmp, "mnist"))
    write_idx_images(os.path.join(tmp, "mnist", "train-images-idx3-ubyte"), digits)
    bin_dir = hooked_path(tmp)
    started, result = [], {"tmp": tmp}

    def host(name, index, port, *extra, **env):
        hook_out = os.path.join(tmp, name, "hook")
        os.makedirs(hook_out, exist_ok=True)
        cmd = ["bash", LAUNCHER, "CPU", "2", str(index), f"127.0.0.1:{port}", "1", CONFIG,
               os.path.join(tmp, "mnist"), *TRAIN_ARGS, "--output_dir", os.path.join(tmp, "out"), *extra]
        h = Host(tmp, name, cmd, env_for(bin_dir, RUN_DIR=os.path.join(tmp, name, "logs"),
                                         CLUSTER_TIME_OUT=CLUSTER_TIME_OUT, HOOK_OUT=hook_out,
                                         ZOO_KERNEL_CACHE=os.path.join(tmp, "kernel_cache"), **env))
        started.append(h)
        return h

    try:
        # the one-host reference: 2 ranks under msrun, uninterrupted, alongside the two hosts
        os.makedirs(os.path.join(tmp, "one_host", "hook"))
        reference = Host(tmp, "one_host", ["bash", MSRUN_LAUNCHER, "CPU", "2", CONFIG, os.path.join(tmp, "mnist"),
                                           *TRAIN_ARGS, "--output_dir", os.path.join(tmp, "one_host_out")],
                         env_for(bin_dir, RUN_DIR=os.path.join(tmp, "one_host", "logs"),
                                 MASTER_PORT=free_port(), CLUSTER_TIME_OUT=CLUSTER_TIME_OUT,
                                 HOOK_OUT=os.path.join(tmp, "one_host", "hook"),
                                 ZOO_KERNEL_CACHE=os.path.join(tmp, "kernel_cache")))
        started.append(reference)

        # 1. two hosts; host 1's worker dies at the start of epoch 2 (rank 0 saved epoch 1; the
        # hook holds rank 1 there, so the kill does not race with the end of this short run)
        # MS_NODE_TIMEOUT 10 s instead of MindSpore's 30: the same heartbeat path, 20 s sooner
        port = free_port()
        host0 = host("killed_host0", 0, port, MS_NODE_TIMEOUT=NODE_TIMEOUT)
        host1 = host("killed_host1", 1, port, HOOK_HOLD_EPOCH=2, MS_NODE_TIMEOUT=NODE_TIMEOUT)
        wait_for(os.path.join(tmp, "killed_host1", "hook", "held"), "", [host0, host1])
        (worker,) = [p for p in host1.descendants()
                     if "train.py" in " ".join(p.cmdline()) and p.environ().get("MS_ROLE") == "MS_WORKER"]
        worker.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        result["killed"] = {"host0_status": host0.wait(), "host1_status": host1.wait(),
                            "stop_seconds": host0.ended - killed_at,
                            "host0_stderr": host0.stderr, "host1_stderr": host1.stderr,
                            "host0_stdout": host0.stdout,
                            "checkpoints": checkpoints(os.path.join(tmp, "out")),
                            "tmp_files": glob.glob(os.path.join(tmp, "out", "**", "*.tmp*"), recursive=True)}

        # 2. both hosts again with --resume <host 0's newest checkpoint>
        newest = max(result["killed"]["checkpoints"], key=os.path.getmtime, default=None)
        assert newest, f"no checkpoint before the kill:\n{host0.stdout[-2000:]}"
        result["resumed_from"] = newest
        port = free_port()
        host0, host1 = host("resumed_host0", 0, port, "--resume", newest), host("resumed_host1", 1, port, "--resume", newest)
        result["resumed"] = {"host0_status": host0.wait(), "host1_status": host1.wait(),
                             "host0_stdout": host0.stdout, "host0_stderr": host0.stderr,
                             "host1_stdout": host1.stdout, "host1_stderr": host1.stderr}
        result["reference_status"] = reference.wait()
        result["reference_stdout"] = reference.stdout
        yield result
    finally:
        for h in started:
            h.stop()


def test_dead_host_stops_the_survivor_with_one_line_and_no_broken_checkpoint(cluster):
    from src.checkpoint import crc_status

    killed = cluster["killed"]
    assert killed["host1_status"] == 1 and killed["host0_status"] == 1, killed
    for side in ("host0_stderr", "host1_stderr"):
        lines = killed[side].strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (side, killed[side])
    assert "lost rank 1" in killed["host0_stderr"], killed["host0_stderr"]
    assert "rank 1 was stopped by SIGKILL" in killed["host1_stderr"], killed["host1_stderr"]
    assert "Traceback" not in killed["host0_stdout"] + killed["host0_stderr"]
    # within the cluster timeout (the heartbeat timeout, NODE_TIMEOUT, plus the way down)
    assert killed["stop_seconds"] < CLUSTER_TIME_OUT, killed["stop_seconds"]
    print(f"\nthe surviving host stopped {killed['stop_seconds']:.1f} s after host 1's worker was killed")
    # no half-written checkpoint: no temporary file, every checkpoint passes its CRC32
    assert killed["tmp_files"] == [] and killed["checkpoints"], killed
    assert all(crc_status(c) == "ok" for c in killed["checkpoints"]), killed["checkpoints"]
    assert f"--resume {cluster['resumed_from']}" in killed["host0_stderr"]


def test_two_hosts_resume_and_match_the_one_host_run(cluster):
    tmp, resumed = cluster["tmp"], cluster["resumed"]
    assert resumed["host0_status"] == 0, resumed["host0_stdout"][-3000:] + resumed["host0_stderr"]
    assert resumed["host1_status"] == 0, resumed["host1_stdout"][-3000:] + resumed["host1_stderr"]
    assert cluster["reference_status"] == 0, cluster["reference_stdout"][-3000:]
    # continued from the checkpoint of epoch 1 to the same final epoch
    assert re.search(r"-1_\d+\.ckpt$", cluster["resumed_from"]), cluster["resumed_from"]
    # (one checkpoint per epoch: the resumed run's writer names its files convlstm_1-E_S.ckpt, as
    # MindSpore does beside an earlier run's files; a second writer would add another set)
    saved = checkpoints(os.path.join(tmp, "out"))
    epochs = sorted(int(re.search(r"-(\d+)_\d+\.ckpt$", c).group(1)) for c in saved)
    assert epochs == list(range(1, EPOCHS + 1)), saved
    assert re.search(rf"-{EPOCHS}_{STEPS}\.ckpt$", max(saved, key=os.path.getmtime))
    log0 = read(os.path.join(tmp, "resumed_host0", "logs", "worker_0.log"))
    assert not re.search(r"^epoch: 1 step", log0, re.M) and re.search(rf"^epoch: {EPOCHS} step: {STEPS},", log0, re.M)
    # global ranks 0 and 1 of 2, one per host
    info = [json.load(open(os.path.join(tmp, f"resumed_host{r}", "hook", f"rank{r}.json"))) for r in (0, 1)]
    assert [(i["rank"], i["group_size"]) for i in info] == [(0, 2), (1, 2)]
    # disjoint shards of the same epoch, together the whole training set of that epoch
    assert info[0]["epoch"] == info[1]["epoch"] == 2
    shard0, shard1 = set(info[0]["samples"]), set(info[1]["samples"])
    assert len(shard0) == len(shard1) == STEPS * 2 and not shard0 & shard1
    # checkpoints from global rank 0 (host 0) only: one writer, one file per epoch (a second writer
    # with the same prefix in the folder would make MindSpore write "convlstm_1-..." files)
    assert [i["checkpoint_writers"] for i in info] == [1, 0]
    # identical trainable weights on both ranks, and equal to the uninterrupted one-host run
    w0, w1 = (load_npz(os.path.join(tmp, f"resumed_host{r}", "hook", f"rank{r}.npz")) for r in (0, 1))
    ref = load_npz(os.path.join(tmp, "one_host", "hook", "rank0.npz"))
    assert w0 and sorted(w0) == sorted(w1) == sorted(ref)
    across = max(float(np.max(np.abs(w0[k] - w1[k]))) for k in w0)
    vs_one_host = max(float(np.max(np.abs(w0[k] - ref[k]))) for k in w0)
    print(f"\nmax |w| difference: rank 0 vs rank 1 {across:.3g}; two hosts (killed, resumed) vs one "
          f"host uninterrupted {vs_one_host:.3g} over {sum(v.size for v in w0.values())} weights")
    assert across == 0.0
    assert vs_one_host <= 1e-6


# ----------------------------------------------------------------------------------- input
DATA_ARGS = ["--train_sequences", "8"]


@pytest.fixture
def mnist(tmp_path):
    from src.data.mnist_idx import write_idx_images
    write_idx_images(str(tmp_path / "train-images-idx3-ubyte"), np.zeros((4, 8, 8), np.uint8))
    return str(tmp_path)


def test_dry_run_2_hosts_x_8_devices(mnist, tmp_path):
    for index in (0, 1):
        status, out, err = run_launcher("GPU", 2, index, "10.0.0.1:9123", 8, CONFIG, mnist, "--seed", "7",
                                        DRY_RUN=1, RUN_DIR=tmp_path / "logs")
        assert status == 0, err
        lines = [shlex.split(line[2:]) for line in out.splitlines() if line.startswith("+ cd ")]
        roles = [dict(t.split("=", 1) for t in tokens if re.match(r"^(MS_|RANK_|DEVICE_ID)[A-Z_]*=", t))
                 for tokens in lines]
        workers = [r for r in roles if r["MS_ROLE"] == "MS_WORKER"]
        assert [r["MS_ROLE"] for r in roles if r["MS_ROLE"] == "MS_SCHED"] == (["MS_SCHED"] if index == 0 else [])
        assert [(r["MS_NODE_ID"], r["RANK_ID"], r["DEVICE_ID"]) for r in workers] == [
            (str(8 * index + d), str(8 * index + d), str(d)) for d in range(8)]
        for r in roles:
            assert (r["MS_SCHED_HOST"], r["MS_SCHED_PORT"], r["MS_WORKER_NUM"], r["RANK_SIZE"]) == (
                "10.0.0.1", "9123", "16", "16")
        assert all("--seed" in tokens and "--run_distribute" in tokens for tokens in lines)
    assert not (tmp_path / "logs").exists()


def one_line_error(status, out, err, message):
    lines = err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (status, err)
    assert "+ cd" not in out


def test_host_index_out_of_range(mnist):
    one_line_error(*run_launcher("CPU", 2, 2, "127.0.0.1", 1, CONFIG, mnist, DRY_RUN=1),
                   "HOST_INDEX must be this host's index, 0..1")


def test_master_unreachable_within_cluster_time_out(mnist, tmp_path):
    start = time.monotonic()
    result = run_launcher("CPU", 2, 1, f"127.0.0.1:{free_port()}", 1, CONFIG, mnist, *DATA_ARGS,
                          CLUSTER_TIME_OUT=2, RUN_DIR=tmp_path / "logs")
    one_line_error(*result, "did not answer within 2 s (CLUSTER_TIME_OUT)")
    assert time.monotonic() - start < 60 and not (tmp_path / "logs").exists()


def test_master_port_in_use_or_not_this_hosts_address(mnist, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        one_line_error(*run_launcher("CPU", 2, 0, f"127.0.0.1:{port}", 1, CONFIG, mnist,
                                     RUN_DIR=tmp_path / "logs"), f"port {port} on 127.0.0.1 is in use")
    one_line_error(*run_launcher("CPU", 2, 0, "198.51.100.7", 1, CONFIG, mnist, RUN_DIR=tmp_path / "logs"),
                   "is not an address of this host")
    assert not (tmp_path / "logs").exists()


# ----------------------------------------------------------------------------------- GPU mpirun
def run_gpu_launcher(hostfile, rank_size, data, **env):
    res = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run_distribute_train_gpu.sh"), str(rank_size),
                          os.path.join(ROOT, "config", "cifar10_config_gpu.yaml"), data],
                         env=env_for(HOSTFILE=hostfile, **env), cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    return res.returncode, res.stdout, res.stderr


def test_gpu_mpirun_hostfile_2_hosts_x_8_gpus(tmp_path):
    hostfile = tmp_path / "hostfile"
    hostfile.write_text("# two GPU servers\n10.0.0.1 slots=8\n10.0.0.2 slots=8\n")
    (tmp_path / "cifar").mkdir()
    status, out, err = run_gpu_launcher(hostfile, 16, str(tmp_path / "cifar"), DRY_RUN=1,
                                        RUN_DIR=tmp_path / "logs")
    assert status == 0, err
    (tokens,) = [shlex.split(line[2:])[3:] for line in out.splitlines() if line.startswith("+ cd ")]
    assert tokens[:7] == ["mpirun", "-n", "16", "--hostfile", str(hostfile), "-x", "PATH"]
    one_line_error(*run_gpu_launcher(hostfile, 17, str(tmp_path / "cifar"), DRY_RUN=1),
                   "has 16 slot(s) on 2 host(s), fewer than RANK_SIZE=17")
    hostfile.write_text("# nothing\n")
    one_line_error(*run_gpu_launcher(hostfile, 2, str(tmp_path / "cifar"), DRY_RUN=1), "lists no host")
