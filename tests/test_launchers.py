"""The launchers in scripts/: argument checking, rank tables, path resolution, dry runs, and one
real CPU training + evaluation through run_train_cpu.sh / run_eval_cpu.sh.

No accelerator is needed: the Ascend/GPU launchers are checked with DRY_RUN=1, which prints the
commands ("+ cd DIR && CMD ...") and starts nothing.
"""
import json
import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT, write_cifar10_bin

SCRIPTS = os.path.join(ROOT, "scripts")
CPU_CONFIG = os.path.join(ROOT, "config", "cifar10_config_cpu.yaml")
ASCEND_CONFIG = os.path.join(ROOT, "config", "cifar10_config.yaml")
GPU_CONFIG = os.path.join(ROOT, "config", "cifar10_config_gpu.yaml")
PYTHON_DIR = os.path.dirname(os.path.abspath(sys.executable))

# script -> (positional arguments before CONFIG_PATH, device_target, entry script)
LAUNCHERS = {
    "run_standalone_train.sh": ([], "Ascend", "train.py"),
    "run_standalone_train_gpu.sh": ([], "GPU", "train.py"),
    "run_train_cpu.sh": ([], "CPU", "train.py"),
    "run_distribute_train.sh": (["RANK_TABLE"], "Ascend", "train.py"),
    "run_distribute_train_gpu.sh": (["2"], "GPU", "train.py"),
    "run_distribute_train_msrun.sh": (["CPU", "2"], "CPU", "train.py"),
    "run_eval.sh": ([], "Ascend", "eval.py"),
    "run_eval_gpu.sh": ([], "GPU", "eval.py"),
    "run_eval_cpu.sh": ([], "CPU", "eval.py"),
}


def launch(script, *args, cwd=None, dry=False, **env_extra):
    env = dict(os.environ)
    env["PATH"] = PYTHON_DIR + os.pathsep + env.get("PATH", "")
    env["GLOG_v"] = "3"
    for key in ("DRY_RUN", "RUN_DIR", "RANK_TABLE_FILE", "SERVER_ID", "MPIRUN", "MSRUN"):
        env.pop(key, None)
    if dry:
        env["DRY_RUN"] = "1"
    env.update({k: str(v) for k, v in env_extra.items()})
    return subprocess.run(["bash", os.path.join(SCRIPTS, script), *map(str, args)], cwd=cwd or ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def commands(stdout):
    """The '+ cd DIR && CMD ...' lines a launcher prints, as (DIR, [tokens after '&&'])."""
    found = []
    for line in stdout.splitlines():
        if line.startswith("+ cd "):
            tokens = shlex.split(line[2:])
            assert tokens[0] == "cd" and tokens[2] == "&&", line
            found.append((tokens[1], tokens[3:]))
    return found


def option(tokens, key):
    """Value of the last ``--key value`` / ``--key=value`` in tokens (None if absent)."""
    value = None
    for i, tok in enumerate(tokens):
        if tok == f"--{key}" and i + 1 < len(tokens):
            value = tokens[i + 1]
        elif tok.startswith(f"--{key}="):
            value = tok.split("=", 1)[1]
    return value


def rank_table(path, devices_per_server, first_device=0):
    """HCCL rank table: one server per entry of devices_per_server; rank ids run across servers."""
    servers, rank = [], 0
    for s, n in enumerate(devices_per_server):
        devices = [{"device_id": str(first_device + d), "device_ip": f"192.168.{s}.{d}",
                    "rank_id": str(rank + d)} for d in range(n)]
        servers.append({"server_id": f"10.0.0.{s + 1}", "device": devices, "host_nic_ip": "reserve"})
        rank += n
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"version": "1.0", "server_count": str(len(servers)), "server_list": servers,
                   "status": "completed"}, f)
    return str(path)


@pytest.fixture
def data_dir(tmp_path):
    folder = tmp_path / "my data"  # a space: paths must survive quoting
    write_cifar10_bin(str(folder / "data_batch_1.bin"), 16, seed=1)
    write_cifar10_bin(str(folder / "test_batch.bin"), 8, seed=2)
    return str(folder)


# ----------------------------------------------------------------------------------- usage
@pytest.mark.parametrize("script", sorted(LAUNCHERS))
def test_missing_arguments_print_usage_and_fail(script, tmp_path):
    for args in ([], ["only_one_argument"]):
        res = launch(script, *args, cwd=str(tmp_path), RUN_DIR=tmp_path / "logs")
        assert res.returncode == 2, (script, args, res.stdout)
        assert res.stderr.startswith(f"usage: bash scripts/{script} "), res.stderr
        assert "CONFIG_PATH DATA_PATH" in res.stderr.splitlines()[0]
        assert "+ cd" not in res.stdout
    assert not (tmp_path / "logs").exists()
    res = launch(script, "--help")
    assert res.returncode == 0 and res.stdout.startswith(f"usage: bash scripts/{script} ")


@pytest.mark.parametrize("script", sorted(LAUNCHERS))
def test_missing_config_or_data_is_one_line_error(script, tmp_path, data_dir):
    before, _, _ = LAUNCHERS[script]
    before = [rank_table(tmp_path / "rt.json", [2]) if b == "RANK_TABLE" else b for b in before]
    after = ["ckpt.ckpt"] if script.startswith("run_eval") else []
    (tmp_path / "ckpt.ckpt").write_bytes(b"")
    cases = [(["no_such.yaml", data_dir], "config file not found"),
             ([CPU_CONFIG, "no_such_data"], "data path not found"),
             ([CPU_CONFIG, data_dir, "--batch_size", "4", "--no_such_key", "1"], "unknown option --no_such_key")]
    for positional, message in cases:
        args = before + positional[:2] + after + positional[2:]
        res = launch(script, *args, cwd=str(tmp_path), RUN_DIR=tmp_path / "logs", MPIRUN="true",
                     MSRUN="true")
        assert res.returncode == 2, (script, args, res.stdout, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], res.stderr
        assert "+ cd" not in res.stdout
        assert not (tmp_path / "logs").exists()


def test_bad_device_arguments_are_rejected(data_dir):
    res = launch("run_distribute_train_msrun.sh", "TPU", "2", CPU_CONFIG, data_dir, dry=True)
    assert res.returncode == 2 and "DEVICE_TARGET must be CPU, GPU or Ascend" in res.stderr
    res = launch("run_distribute_train_msrun.sh", "CPU", "0", CPU_CONFIG, data_dir, dry=True)
    assert res.returncode == 2 and "RANK_SIZE must be a positive number" in res.stderr
    res = launch("run_distribute_train_gpu.sh", "two", GPU_CONFIG, data_dir, dry=True)
    assert res.returncode == 2 and "RANK_SIZE must be a positive number" in res.stderr
    res = launch("run_standalone_train.sh", ASCEND_CONFIG, data_dir, "dev1", dry=True)
    assert res.returncode == 2 and "DEVICE_ID must be a device number" in res.stderr
    res = launch("run_distribute_train_msrun.sh", "CPU", "2", CPU_CONFIG, data_dir, dry=True,
                 MASTER_PORT="80")
    assert res.returncode == 2 and "MASTER_PORT must be a port number" in res.stderr
    res = launch("run_train_cpu.sh", CPU_CONFIG, data_dir, "stray", dry=True)
    assert res.returncode == 2 and "unexpected argument 'stray'" in res.stderr


def test_missing_mpirun_or_msrun_says_what_to_do(tmp_path, data_dir):
    res = launch("run_distribute_train_gpu.sh", "2", GPU_CONFIG, data_dir, RUN_DIR=tmp_path / "logs",
                 MPIRUN="no-such-mpirun")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert "install OpenMPI" in res.stderr and "run_distribute_train_msrun.sh" in res.stderr
    res = launch("run_distribute_train_msrun.sh", "GPU", "2", GPU_CONFIG, data_dir,
                 RUN_DIR=tmp_path / "logs", MSRUN="no-such-msrun")
    assert res.returncode == 2 and "msrun" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "logs").exists() and res.stdout == ""


# ----------------------------------------------------------------------------------- rank tables
BAD_TABLES = {
    "missing": (None, "rank table not found"),
    "not_json": ("{'server_list': oops", "not valid JSON"),
    "not_an_object": ("[1, 2]", "no servers in server_list"),
    "empty_server_list": ('{"server_list": []}', "no servers in server_list"),
    "server_without_devices": ('{"server_list": [{"server_id": "10.0.0.1", "device": []}]}',
                               "server_list[0] has no device list"),
    "device_without_rank_id": ('{"server_list": [{"server_id": "1", "device": [{"device_id": "0"}]}]}',
                               "needs integer device_id and rank_id"),
    "ranks_not_0_to_n": ('{"server_list": [{"device": [{"device_id": "0", "rank_id": "1"}, '
                         '{"device_id": "1", "rank_id": "2"}]}]}', "rank_id values must be 0..1"),
    "rank_twice_across_servers": ('{"server_list": [{"server_id": "a", "device": [{"device_id": "0", '
                                  '"rank_id": "0"}]}, {"server_id": "b", "device": [{"device_id": "0", '
                                  '"rank_id": "0"}]}]}', "rank_id values must be 0..1, each once"),
    "device_twice_on_a_server": ('{"server_list": [{"device": [{"device_id": "3", "rank_id": "0"}, '
                                 '{"device_id": "3", "rank_id": "1"}]}]}', "lists a device_id twice"),
    "negative_device_id": ('{"server_list": [{"device": [{"device_id": "-1", "rank_id": "0"}]}]}',
                           "needs integer device_id and rank_id >= 0"),
    "server_count_mismatch": ('{"server_count": "2", "server_list": [{"device": [{"device_id": "0", '
                              '"rank_id": "0"}]}]}', "server_count is 2 but server_list has 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_TABLES))
def test_bad_rank_table_is_one_line_error_and_starts_nothing(case, tmp_path, data_dir):
    content, message = BAD_TABLES[case]
    table = tmp_path / "hccl.json"
    if content is not None:
        table.write_text(content)
    # relative table path from another directory: the error names the absolute path
    res = launch("run_distribute_train.sh", "hccl.json", ASCEND_CONFIG, data_dir, cwd=str(tmp_path),
                 RUN_DIR=tmp_path / "logs")
    assert res.returncode == 2, res.stdout
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: ") and message in lines[0] and str(table) in lines[0], lines[0]
    assert res.stdout == "" and not (tmp_path / "logs").exists()


@pytest.mark.parametrize("num_devices", [2, 4])
def test_rank_table_dry_run_starts_one_process_per_device(num_devices, tmp_path, data_dir):
    table = rank_table(tmp_path / f"hccl_{num_devices}p.json", [num_devices], first_device=4)
    logs = tmp_path / "logs"
    res = launch("run_distribute_train.sh", os.path.basename(table), ASCEND_CONFIG, data_dir,
                 "--epoch_size", "3", cwd=str(tmp_path), dry=True, RUN_DIR="logs")
    assert res.returncode == 0, res.stderr
    found = commands(res.stdout)
    assert len(found) == num_devices, res.stdout
    for rank, (workdir, tokens) in enumerate(found):
        assert workdir == str(logs / f"rank_{rank}")
        assert tokens[0] == "env"
        env = dict(t.split("=", 1) for t in tokens[1:5])
        assert env == {"RANK_TABLE_FILE": table, "RANK_SIZE": str(num_devices),
                       "RANK_ID": str(rank), "DEVICE_ID": str(4 + rank)}
        assert tokens[6] == os.path.join(ROOT, "train.py")
        assert option(tokens, "run_distribute") == "true" and option(tokens, "device_target") == "Ascend"
        assert option(tokens, "config_path") == ASCEND_CONFIG and option(tokens, "data_path") == data_dir
        assert option(tokens, "epoch_size") == "3"
        assert tokens[-4:] == [">", str(logs / f"rank_{rank}" / "log.txt"), "2>&1", "&"]
    assert f"RANK_SIZE={num_devices}" in res.stdout
    assert not logs.exists()  # a dry run creates nothing


def test_rank_table_of_8_devices_on_2_servers_gives_each_server_its_ranks(tmp_path, data_dir):
    table = rank_table(tmp_path / "hccl_2x4.json", [4, 4])
    for server, ranks in (("10.0.0.1", range(0, 4)), ("10.0.0.2", range(4, 8))):
        res = launch("run_distribute_train.sh", table, ASCEND_CONFIG, data_dir, dry=True,
                     RUN_DIR=tmp_path / "logs", SERVER_ID=server)
        assert res.returncode == 0, res.stderr
        assert "RANK_SIZE=8, 4 device(s) on this server" in res.stdout
        found = commands(res.stdout)
        envs = [dict(t.split("=", 1) for t in tokens[1:5]) for _, tokens in found]
        assert [(e["RANK_SIZE"], e["RANK_ID"], e["DEVICE_ID"]) for e in envs] == [
            ("8", str(rank), str(device)) for device, rank in enumerate(ranks)]
        assert [w for w, _ in found] == [str(tmp_path / "logs" / f"rank_{r}") for r in ranks]


def test_rank_table_device_ids_and_rank_order_come_from_the_table(tmp_path, data_dir):
    # devices 1, 3, 5, 7 (not 0..N-1), listed in an order where rank ids do not follow the devices
    devices = [("7", "0"), ("1", "3"), ("5", "1"), ("3", "2")]
    table = tmp_path / "hccl_odd.json"
    table.write_text(json.dumps({"server_count": "1", "server_list": [{"server_id": "10.0.0.1", "device": [
        {"device_id": d, "device_ip": "192.168.1.1", "rank_id": r} for d, r in devices]}]}))
    res = launch("run_distribute_train.sh", str(table), ASCEND_CONFIG, data_dir, dry=True,
                 RUN_DIR=tmp_path / "logs", SERVER_ID="ignored-with-one-server")
    assert res.returncode == 0, res.stderr
    found = commands(res.stdout)
    pairs = {(dict(t.split("=", 1) for t in tokens[1:5])["DEVICE_ID"],
              dict(t.split("=", 1) for t in tokens[1:5])["RANK_ID"], workdir) for workdir, tokens in found}
    assert pairs == {(d, r, str(tmp_path / "logs" / f"rank_{r}")) for d, r in devices}


def test_rank_table_with_two_servers_uses_this_servers_devices(tmp_path, data_dir):
    table = rank_table(tmp_path / "hccl_2x2.json", [2, 2])
    res = launch("run_distribute_train.sh", table, ASCEND_CONFIG, data_dir, dry=True,
                 RUN_DIR=tmp_path / "logs", SERVER_ID="10.0.0.2")
    assert res.returncode == 0, res.stderr
    envs = [dict(t.split("=", 1) for t in tokens[1:5]) for _, tokens in commands(res.stdout)]
    assert [(e["RANK_SIZE"], e["RANK_ID"], e["DEVICE_ID"]) for e in envs] == [("4", "2", "0"), ("4", "3", "1")]
    res = launch("run_distribute_train.sh", table, ASCEND_CONFIG, data_dir, dry=True,
                 RUN_DIR=tmp_path / "logs", SERVER_ID="10.9.9.9")
    assert res.returncode == 2 and "export SERVER_ID" in res.stderr and "+ cd" not in res.stdout


# ----------------------------------------------------------------------------------- dry runs
@pytest.mark.parametrize("script", sorted(set(LAUNCHERS) - {"run_distribute_train.sh"}))
def test_relative_paths_become_absolute_and_extras_pass_through(script, tmp_path, data_dir):
    before, target, entry = LAUNCHERS[script]
    work = tmp_path / "elsewhere"
    work.mkdir()
    (tmp_path / "ckpt").mkdir()
    rel = lambda p: os.path.relpath(p, str(work))  # noqa: E731
    is_eval = script.startswith("run_eval")
    args = before + [rel(CPU_CONFIG), rel(data_dir)] + ([rel(str(tmp_path / "ckpt"))] if is_eval else [])
    args += ["--batch_size", "8", "--pre_trained", "../init.ckpt", "--output_dir=../out"]
    res = launch(script, *args, cwd=str(work), dry=True, RUN_DIR="../logs")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("DRY_RUN=1: printing the commands only")
    found = commands(res.stdout)
    assert len(found) == 1, res.stdout
    workdir, tokens = found[0]
    logs = str(tmp_path / "logs")
    assert workdir == logs
    assert os.path.join(ROOT, entry) in tokens
    assert option(tokens, "config_path") == CPU_CONFIG
    assert option(tokens, "eval_data_path" if is_eval else "data_path") == data_dir
    if is_eval:
        assert option(tokens, "ckpt_file") == str(tmp_path / "ckpt")
    assert option(tokens, "device_target") == target
    assert option(tokens, "batch_size") == "8"
    assert option(tokens, "pre_trained") == str(tmp_path / "init.ckpt")
    assert option(tokens, "output_dir") == str(tmp_path / "out")
    joined = " ".join(tokens)
    if script == "run_distribute_train_msrun.sh":
        assert tokens[:3] == ["env", "-u", "RANK_TABLE_FILE"] and tokens[3] == "msrun"
        assert "--worker_num=2" in tokens and "--local_worker_num=2" in tokens
        assert "--master_port=8118" in tokens and f"--log_dir={logs}" in tokens and "--join=True" in tokens
        assert option(tokens, "run_distribute") == "true"
    elif script == "run_distribute_train_gpu.sh":
        assert tokens[:3] == ["mpirun", "-n", "2"] and "--allow-run-as-root" in tokens
        assert option(tokens, "output-filename") == os.path.join(logs, "mpi_log")
        assert option(tokens, "run_distribute") == "true"
    elif target != "CPU":
        assert tokens[:4] == ["env", "DEVICE_ID=0", "RANK_ID=0", "RANK_SIZE=1"]
        assert option(tokens, "device_id") == "0"
    else:
        assert tokens[0] == "python" and "--device_id" not in joined
    background = not is_eval and target != "CPU"
    log_name = "msrun.log" if script == "run_distribute_train_msrun.sh" else "log.txt"
    if background:
        assert tokens[-4:] == [">", os.path.join(logs, log_name), "2>&1", "&"]
    else:
        assert tokens[-4:] == ["2>&1", "|", "tee", os.path.join(logs, log_name)]
    assert not os.path.exists(logs) and not (tmp_path / "out").exists()


@pytest.mark.parametrize("script", ["run_standalone_train.sh", "run_eval_gpu.sh"])
def test_device_id_argument(script, tmp_path, data_dir):
    args = [ASCEND_CONFIG, data_dir] + ([str(tmp_path)] if "eval" in script else []) + ["3", "--seed", "7"]
    res = launch(script, *args, dry=True, RUN_DIR=tmp_path / "logs")
    assert res.returncode == 0, res.stderr
    (_, tokens), = commands(res.stdout)
    assert tokens[1] == "DEVICE_ID=3" and option(tokens, "device_id") == "3" and option(tokens, "seed") == "7"


def test_default_log_folder_is_under_the_configs_output_dir(tmp_path, data_dir):
    # output_dir of the config is relative: relative to the repository root, whatever the cwd
    res = launch("run_train_cpu.sh", CPU_CONFIG, data_dir, cwd=str(tmp_path), dry=True)
    assert res.returncode == 0, res.stderr
    (workdir, tokens), = commands(res.stdout)
    assert workdir == os.path.join(ROOT, "output", "tinydarknet_cifar10", "logs", "train_cpu")
    # train.py runs inside that folder: it gets the absolute output_dir, not the config's relative one
    assert option(tokens, "output_dir") == os.path.join(ROOT, "output", "tinydarknet_cifar10")
    res = launch("run_distribute_train_msrun.sh", "Ascend", "8", CPU_CONFIG, data_dir, "--output_dir",
                 "runs/a", cwd=str(tmp_path), dry=True, MASTER_PORT=9000)
    (workdir, tokens), = commands(res.stdout)
    assert workdir == str(tmp_path / "runs" / "a" / "logs" / "train_msrun_ascend")
    assert option(tokens, "output_dir") == str(tmp_path / "runs" / "a")
    assert "--worker_num=8" in tokens and "--master_port=9000" in tokens
    assert option(tokens, "device_target") == "Ascend"


# ----------------------------------------------------------------------------------- real CPU run
@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """run_train_cpu.sh for real: 1 epoch of 4 steps, called from another directory with relative paths."""
    tmp = tmp_path_factory.mktemp("cpu_launcher")
    write_cifar10_bin(str(tmp / "data" / "data_batch_1.bin"), 16, seed=1)
    write_cifar10_bin(str(tmp / "data" / "test_batch.bin"), 8, seed=2)
    (tmp / "cwd").mkdir()
    res = launch("run_train_cpu.sh", os.path.relpath(CPU_CONFIG, str(tmp / "cwd")), "../data",
                 "--output_dir", "../out", "--batch_size", "4", "--epoch_size", "1",
                 "--warmup_epochs", "0", "--log_interval", "2", "--progress_bar", "off",
                 "--num_parallel_workers", "1", cwd=str(tmp / "cwd"), RUN_DIR="../logs")
    return tmp, res


def test_run_train_cpu_trains_for_real(cpu_run):
    tmp, res = cpu_run
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    log = (tmp / "logs" / "log.txt").read_text()
    assert re.search(r"^epoch: 1 step: 4, loss is \d", log, re.M), log
    assert re.search(r"^epoch: 1 step: 4, loss is \d", res.stdout, re.M)  # also on the terminal
    assert f"outputs in {tmp / 'out'}" in log
    assert f"log: {tmp / 'logs' / 'log.txt'}" in res.stdout
    assert (tmp / "out" / "checkpoints" / "tinydarknet-1_4.ckpt").is_file()
    assert len((tmp / "out" / "loss_history.jsonl").read_text().splitlines()) == 4


def test_run_eval_cpu_evaluates_the_checkpoint(cpu_run):
    tmp, res = cpu_run
    assert res.returncode == 0
    ckpt = tmp / "out" / "checkpoints" / "tinydarknet-1_4.ckpt"
    res = launch("run_eval_cpu.sh", CPU_CONFIG, "data", "out/checkpoints", "--eval_batch_size", "4",
                 cwd=str(tmp), RUN_DIR=tmp / "eval_logs")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert re.search(r"top_1_accuracy': [01]\.\d+", res.stdout) and f"ckpt={ckpt}" in res.stdout
    assert "(8 images)" in (tmp / "eval_logs" / "log.txt").read_text()
    metrics = json.loads((tmp / "out" / "eval" / "metrics.json").read_text())
    assert metrics["ckpt_file"] == str(ckpt)


def test_failed_training_is_reported_with_its_log(tmp_path):
    # a data folder without CIFAR files: train.py fails after the launcher started it
    (tmp_path / "empty").mkdir()
    res = launch("run_train_cpu.sh", CPU_CONFIG, str(tmp_path / "empty"), cwd=str(tmp_path),
                 RUN_DIR=tmp_path / "logs")
    assert res.returncode == 1
    assert "no CIFAR-10 train file" in (tmp_path / "logs" / "log.txt").read_text()
    assert res.stderr.strip().splitlines()[-1] == (
        f"error: training failed (exit status 2): see {tmp_path / 'logs' / 'log.txt'}")
