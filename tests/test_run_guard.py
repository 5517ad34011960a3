"""One live training per output folder (src.run_guard.RunLock) and Ctrl-C ending with the command
that resumes (src.run_guard.resume_hint_on_stop), the latter for real: train.py in its own
process group (as a terminal runs it) gets SIGINT after its first checkpoint."""
import glob
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from src import run_guard
from src.model_utils.errors import UserError
from src.run_guard import LOCK_FILE, RunLock, holds_run_lock, stop_message

CPU = os.path.join(ROOT, "config", "cifar10_config_cpu.yaml")
# one line of Python: take the lock of folder argv[1] and hold it until stdin closes
HOLDER = ("import sys; from src.model_utils.errors import exit_on_user_error; "
          "from src.run_guard import RunLock; "
          "exit_on_user_error(lambda: RunLock(sys.argv[1], log=None).acquire())(); "
          "print('held', flush=True); sys.stdin.read()")


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(folder, pid, host=None):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, LOCK_FILE), "w", encoding="utf-8") as f:
        json.dump({"pid": pid, "host": host or socket.gethostname(), "started": "earlier"}, f)


def test_lock_holds_pid_and_host_and_stops_a_second_process(tmp_path):
    folder = str(tmp_path / "run")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, folder], cwd=ROOT, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == "held", holder.stderr.read()
        info = json.load(open(os.path.join(folder, LOCK_FILE)))
        assert info["pid"] == holder.pid and info["host"] == socket.gethostname()
        with pytest.raises(UserError) as exc:
            RunLock(folder).acquire()
        msg = str(exc.value)
        assert f"is in use by another training (pid {holder.pid} on {socket.gethostname()}" in msg
        assert "--output_dir" in msg and "\n" not in msg
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert not os.path.exists(os.path.join(folder, LOCK_FILE))  # released on exit
    with RunLock(folder, log=None):
        assert json.load(open(os.path.join(folder, LOCK_FILE)))["pid"] == os.getpid()
    assert not os.path.exists(os.path.join(folder, LOCK_FILE))


def test_a_stale_lock_is_taken_over(tmp_path):
    folder = str(tmp_path / "run")
    pid = dead_pid()
    write_lock(folder, pid)
    said = []
    lock = RunLock(folder, log=said.append).acquire()
    try:
        assert json.load(open(lock.path))["pid"] == os.getpid()
        assert said == [f"{lock.path}: taking over the lock of a run that ended without releasing "
                        f"it (pid {pid} on {socket.gethostname()})"]
    finally:
        lock.release()


def test_without_flock_the_pid_and_host_decide(tmp_path, monkeypatch):
    monkeypatch.setattr(run_guard, "_flock", lambda fd: None)  # a file system without flock
    live = str(tmp_path / "live")
    write_lock(live, os.getppid())
    with pytest.raises(UserError, match=f"pid {os.getppid()} on"):
        RunLock(live).acquire()
    elsewhere = str(tmp_path / "elsewhere")
    write_lock(elsewhere, dead_pid(), host="another-host")
    with pytest.raises(UserError, match="on another-host"):
        RunLock(elsewhere).acquire()
    stale = str(tmp_path / "stale")
    write_lock(stale, dead_pid())
    RunLock(stale, log=None).acquire().release()


def test_locks_taken_inside_a_call_are_released_when_it_raises(tmp_path):
    folder = str(tmp_path / "run")

    @holds_run_lock
    def failing_training(write):
        RunLock(folder, log=None).acquire()
        if write:
            open(os.path.join(folder, "config.yaml"), "w").close()
        raise ValueError("boom")

    with pytest.raises(ValueError):
        failing_training(write=False)
    assert not os.path.exists(folder)  # the lock made the folder: a run that wrote nothing leaves none
    with pytest.raises(ValueError):
        failing_training(write=True)
    assert os.listdir(folder) == ["config.yaml"]  # what the run wrote stays, the lock goes


def test_stop_message_before_the_first_checkpoint(tmp_path):
    assert stop_message(str(tmp_path)).startswith("training stopped before its first checkpoint")


def test_ctrl_c_names_the_resume_command_and_a_second_run_is_refused(cifar_dir, tmp_path):
    out = str(tmp_path / "run")
    args = ["--config_path", CPU, "--data_path", cifar_dir, "--output_dir", out, "--batch_size",
            "16", "--log_interval", "0", "--conv_impl", "native", "--warmup_epochs", "0"]
    first = subprocess.Popen([sys.executable, "train.py", *args, "--epoch_size", "500"], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)  # its own process group, as in a terminal
    try:
        deadline = time.time() + 600
        while not glob.glob(os.path.join(out, "checkpoints", "*.ckpt")):
            assert first.poll() is None, first.communicate()
            assert time.time() < deadline, "no checkpoint within 10 minutes"
            time.sleep(0.2)
        # a second training into the same folder: one line naming the live run, exit 2
        second = subprocess.run([sys.executable, "train.py", *args, "--epoch_size", "1"], cwd=ROOT,
                                capture_output=True, text=True, timeout=600)
        assert second.returncode == 2, second.stderr[-2000:]
        assert second.stderr.strip().splitlines() == [second.stderr.strip()]
        assert second.stderr.startswith(f"error: {out} is in use by another training (pid "
                                        f"{first.pid} on {socket.gethostname()}")
        os.killpg(first.pid, signal.SIGINT)  # Ctrl-C
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert first.returncode == 130, stderr[-2000:]
    newest = max(glob.glob(os.path.join(out, "checkpoints", "*.ckpt")), key=os.path.getmtime)
    command = (f"python train.py --config_path {os.path.join(out, 'config.yaml')} "
               f"--resume {newest}")
    assert stderr.strip().splitlines() == [f"training stopped; newest checkpoint {newest}; "
                                           f"resume with: {command}"]
    assert not os.path.exists(os.path.join(out, LOCK_FILE))
    assert "training done" not in stdout

    # the printed command resumes (one more epoch than the checkpoint holds)
    epoch = int(os.path.basename(newest).split("-")[-1].split("_")[0])
    resumed = subprocess.run([sys.executable] + shlex.split(command)[1:] + ["--epoch_size", str(epoch + 1)],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"epoch: {epoch + 1} step: 6," in resumed.stdout and f"epoch: {epoch} step" not in resumed.stdout
