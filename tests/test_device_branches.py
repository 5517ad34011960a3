"""The GPU and Ascend branches, exercised on CPU.

No GPU or Ascend device is available to CI, so what only those users run is checked here as far as
a CPU allows:

* every GPU / Ascend YAML is resolved (inheritance, types, choices) and the values that matter on
  those devices are checked: device, mixed precision, loss scale, batch, and that the GPU file is
  the Ascend file with another device_target;
* every GPU / Ascend launcher is dry-run (DRY_RUN=1) with those configs: the command, the device,
  the environment of each process and the log folders they would use (also run_infer_310.sh);
* a device config started on the CPU wheel stops with one line;
* the training log's per-step time when the device sinks a whole epoch per report;
* the training step each device config builds on its device (mixed precision O2, fixed loss
  scale, the optimizer with the same scale) runs on CPU: the loss falls, BatchNorm and the loss
  stay fp32, the checkpoint is fp32 and evaluates / exports from a new fp32 network.

What cannot run here (HCCL / NCCL communication, real devices, mpirun itself) is only read.
"""
import glob
import math
import os
import shlex
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, TINY_CONVLSTM
from src.model_utils.config import get_config
from src.kernels.plan import decide
from src.models import KERNEL_KEYS
from test_launchers import commands, launch, option, rank_table

CONFIG_DIR = os.path.join(ROOT, "config")
# the configs a GPU or Ascend user starts from -> (family, device)
DEVICE_CONFIGS = {
    "cifar10_config.yaml": ("cifar10", "Ascend"),
    "cifar10_config_gpu.yaml": ("cifar10", "GPU"),
    "imagenet_config.yaml": ("imagenet", "Ascend"),
    "imagenet_config_gpu.yaml": ("imagenet", "GPU"),
    "mmnist_config.yaml": ("mmnist", "Ascend"),
    "mmnist_config_gpu.yaml": ("mmnist", "GPU"),
}
# values that set the device run: mixed precision level, loss scale, per-rank batch, optimizer
DEVICE_VALUES = {
    "cifar10": dict(model_name="tinydarknet", amp_level="O2", loss_scale=1024.0, batch_size=32,
                    optimizer="momentum", num_classes=10, image_size=32),
    "imagenet": dict(model_name="tinydarknet", amp_level="O2", loss_scale=1024.0, batch_size=128,
                     optimizer="momentum", num_classes=1000, image_size=224),
    "mmnist": dict(model_name="convlstm", amp_level="O0", loss_scale=1.0, batch_size=16,
                   optimizer="rmsprop", hidden_channels=[128, 64, 64], image_size=64),
}


def config_path(name):
    return os.path.join(CONFIG_DIR, name)


def resolved(name):
    return get_config([], default_config=config_path(name))


def test_the_device_configs_are_all_the_non_cpu_files():
    files = {os.path.basename(p) for p in glob.glob(os.path.join(CONFIG_DIR, "*.yaml"))}
    non_cpu = {f for f in files if resolved(f).device_target != "CPU"}
    assert non_cpu == set(DEVICE_CONFIGS), non_cpu ^ set(DEVICE_CONFIGS)


@pytest.mark.parametrize("name", sorted(DEVICE_CONFIGS))
def test_device_config_resolves_to_its_device_settings(name):
    family, device = DEVICE_CONFIGS[name]
    cfg = resolved(name)
    assert cfg.device_target == device and cfg.mode == "GRAPH"
    for key, value in DEVICE_VALUES[family].items():
        assert cfg[key] == value, (name, key, cfg[key])
    assert cfg.dataset_sink_mode is True and cfg.run_distribute is False
    # auto = native kernels on the device (the C++ kernels and im2col are CPU speed paths)
    sites = {"features.0.conv": ("conv", (3, 16, 3, 32, 32)), "head": ("conv", (8, 16, 1, 4, 4)),
             "features.0": ("bn_leaky", (16, 32, 32)), "stack.0": ("lstm_gates", (8, 4, 4))}
    record = decide(sites, cfg.batch_size, {k: cfg.get(k, "auto") for k in KERNEL_KEYS},
                    cfg.device_target, measure=lambda *a: pytest.fail("measured off CPU"))
    assert {site["impl"] for site in record["sites"].values()} == {"native"}


@pytest.mark.parametrize("family", sorted(DEVICE_VALUES))
def test_gpu_config_is_the_ascend_config_with_another_device(family):
    ascend, gpu = (resolved(n) for n, (f, _) in sorted(DEVICE_CONFIGS.items()) if f == family)
    assert ascend.device_target == "Ascend" and gpu.device_target == "GPU"
    differ = {k for k in ascend if ascend[k] != gpu[k]}
    assert differ == {"device_target", "config_path"}, differ


@pytest.mark.parametrize("family", sorted(DEVICE_VALUES))
def test_cpu_config_of_a_family_has_the_same_keys_and_trains_in_fp32(family):
    device = [resolved(n) for n, (f, _) in DEVICE_CONFIGS.items() if f == family]
    cpu = resolved(f"{family}_config_cpu.yaml")
    assert cpu.device_target == "CPU" and cpu.amp_level == "O0" and cpu.loss_scale == 1.0
    for cfg in device:
        assert set(cfg) == set(cpu)


@pytest.mark.parametrize("path", sorted(p for p in glob.glob(os.path.join(CONFIG_DIR, "*.yaml"))
                                         if not p.endswith("default.yaml")))
def test_precision_and_schedule_keys_are_consistent(path):
    cfg = get_config([], default_config=path)
    # a loss scale only where fp16 runs; a power of two, so scaling and unscaling are exact
    assert cfg.loss_scale >= 1.0 and math.log2(cfg.loss_scale).is_integer(), cfg.loss_scale
    assert cfg.amp_level in ("O0", "O2", "O3"), "O1 fails on these networks (MindSpore's rewrite)"
    if cfg.amp_level == "O0":
        assert cfg.loss_scale == 1.0, "a loss scale without mixed precision only costs time"
    if cfg.device_target == "CPU":
        assert cfg.amp_level == "O0", "CPU configs train in fp32 (fp16 is slower on CPU)"
    # the schedule fits the run
    assert cfg.warmup_epochs < cfg.epoch_size
    if cfg.lr_scheduler in ("multistep", "exponential"):
        assert cfg.milestones == sorted(cfg.milestones) and cfg.milestones[-1] < cfg.epoch_size
    # shapes the networks accept
    if cfg.model_name == "tinydarknet":
        assert cfg.image_size % 16 == 0 and 0.0 <= cfg.label_smoothing < 1.0
        assert cfg.class_names == [] or len(cfg.class_names) == cfg.num_classes
    else:
        assert cfg.image_size % cfg.patch_size == 0 and cfg.loss == "bce"
        assert cfg.input_kernel % 2 == 1 and cfg.state_kernel % 2 == 1


def test_gpu_yaml_files_set_only_the_device():
    """A _gpu file holds __base__ and device_target only: every other value comes from the
    Ascend file, so the two cannot drift apart."""
    for name in DEVICE_CONFIGS:
        if name.endswith("_gpu.yaml"):
            with open(config_path(name), encoding="utf-8") as f:
                own = next(yaml.safe_load_all(f))
            assert set(own) == {"__base__", "device_target"}, (name, own)


# ----------------------------------------------------------------------------------- dry runs
@pytest.fixture
def data_dir(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    return str(folder)


def _output_dir(name):
    return os.path.join(ROOT, resolved(name).output_dir)


def _normalised(path):
    return os.path.normpath(path)


@pytest.mark.parametrize("name", sorted(DEVICE_CONFIGS))
def test_standalone_train_and_eval_dry_run_with_each_device_config(name, tmp_path, data_dir):
    _, device = DEVICE_CONFIGS[name]
    suffix = "_gpu" if device == "GPU" else ""
    (tmp_path / "ck").mkdir()
    for script, extra in ((f"run_standalone_train{suffix}.sh", []),
                          (f"run_eval{suffix}.sh", [str(tmp_path / "ck")])):
        res = launch(script, config_path(name), data_dir, *extra, "5", cwd=str(tmp_path), dry=True)
        assert res.returncode == 0, (script, res.stderr)
        (workdir, tokens), = commands(res.stdout)
        kind = "train" if "train" in script else "eval"
        # default log folder: under the config's own output_dir, relative to the repository
        assert _normalised(workdir) == os.path.join(_normalised(_output_dir(name)), "logs",
                                                    f"{kind}_{device.lower()}")
        assert tokens[:4] == ["env", "DEVICE_ID=5", "RANK_ID=0", "RANK_SIZE=1"]
        assert option(tokens, "device_target") == device and option(tokens, "device_id") == "5"
        assert option(tokens, "config_path") == config_path(name)
        assert option(tokens, "eval_data_path" if kind == "eval" else "data_path") == data_dir
        assert option(tokens, "run_distribute") is None
        # the process runs inside the log folder: it gets the output_dir the launcher reports
        assert _normalised(option(tokens, "output_dir")) == _normalised(_output_dir(name))


@pytest.mark.parametrize("name", [n for n, (_, d) in sorted(DEVICE_CONFIGS.items()) if d == "Ascend"])
def test_ascend_rank_table_of_8_devices_dry_run(name, tmp_path, data_dir):
    table = rank_table(tmp_path / "hccl_8p.json", [8])
    res = launch("run_distribute_train.sh", table, config_path(name), data_dir, dry=True)
    assert res.returncode == 0, res.stderr
    found = commands(res.stdout)
    assert len(found) == 8
    log_root = os.path.join(_normalised(_output_dir(name)), "logs", "train_parallel_ascend")
    for rank, (workdir, tokens) in enumerate(found):
        env = dict(t.split("=", 1) for t in tokens[1:5])
        assert env == {"RANK_TABLE_FILE": table, "RANK_SIZE": "8", "RANK_ID": str(rank),
                       "DEVICE_ID": str(rank)}
        assert _normalised(workdir) == os.path.join(log_root, f"rank_{rank}")
        assert option(tokens, "device_target") == "Ascend" and option(tokens, "run_distribute") == "true"
        assert option(tokens, "config_path") == config_path(name)
        assert option(tokens, "device_id") is None  # each process takes DEVICE_ID from its env
        assert _normalised(option(tokens, "output_dir")) == _normalised(_output_dir(name))


@pytest.mark.parametrize("name", [n for n, (_, d) in sorted(DEVICE_CONFIGS.items()) if d == "GPU"])
def test_gpu_mpirun_dry_run(name, tmp_path, data_dir):
    res = launch("run_distribute_train_gpu.sh", "8", config_path(name), data_dir, dry=True,
                 MPIRUN="no-such-mpirun-needed-for-a-dry-run")
    assert res.returncode == 0, res.stderr
    (workdir, tokens), = commands(res.stdout)
    log_dir = os.path.join(_normalised(_output_dir(name)), "logs", "train_parallel_gpu")
    assert _normalised(workdir) == log_dir
    assert tokens[:3] == ["no-such-mpirun-needed-for-a-dry-run", "-n", "8"]
    assert _normalised(option(tokens, "output-filename")) == os.path.join(log_dir, "mpi_log")
    assert tokens[tokens.index("--merge-stderr-to-stdout") + 2] == os.path.join(ROOT, "train.py")
    assert option(tokens, "device_target") == "GPU" and option(tokens, "run_distribute") == "true"
    assert option(tokens, "config_path") == config_path(name) and option(tokens, "device_id") is None
    assert _normalised(option(tokens, "output_dir")) == _normalised(_output_dir(name))


@pytest.mark.parametrize("name", sorted(DEVICE_CONFIGS))
@pytest.mark.parametrize("workers", [1, 8])
def test_msrun_dry_run_on_the_configs_device(name, workers, tmp_path, data_dir):
    _, device = DEVICE_CONFIGS[name]
    res = launch("run_distribute_train_msrun.sh", device, workers, config_path(name), data_dir,
                 dry=True, MASTER_PORT=9123)
    assert res.returncode == 0, res.stderr
    (workdir, tokens), = commands(res.stdout)
    log_dir = os.path.join(_normalised(_output_dir(name)), "logs", f"train_msrun_{device.lower()}")
    assert _normalised(workdir) == log_dir
    assert tokens[:4] == ["env", "-u", "RANK_TABLE_FILE", "msrun"]
    assert f"--worker_num={workers}" in tokens and f"--local_worker_num={workers}" in tokens
    assert "--master_port=9123" in tokens and "--join=True" in tokens
    assert option(tokens, "device_target") == device and option(tokens, "run_distribute") == "true"
    assert _normalised(option(tokens, "output_dir")) == _normalised(_output_dir(name))


def test_a_device_config_the_parser_rejects_stops_every_device_launcher(tmp_path, data_dir):
    bad = tmp_path / "bad_gpu.yaml"
    bad.write_text(f"__base__: {config_path('cifar10_config_gpu.yaml')}\namp_level: O4\n")
    table = rank_table(tmp_path / "hccl.json", [2])
    for script, before in (("run_standalone_train_gpu.sh", []), ("run_distribute_train_gpu.sh", ["2"]),
                           ("run_distribute_train.sh", [table]),
                           ("run_distribute_train_msrun.sh", ["GPU", "2"])):
        res = launch(script, *before, str(bad), data_dir, dry=True, MPIRUN="true")
        assert res.returncode == 2, (script, res.stdout, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "'amp_level' must be one of" in lines[0], (script, res.stderr)
        assert "+ cd" not in res.stdout



HAS_ACCELERATOR = bool(shutil.which("nvidia-smi")) or os.path.exists("/dev/davinci0")


@pytest.mark.skipif(HAS_ACCELERATOR, reason="a GPU or Ascend device is present: the config would train")
@pytest.mark.parametrize("name", ["cifar10_config_gpu.yaml", "mmnist_config.yaml"])
def test_device_config_on_a_machine_without_the_device_is_one_line_error(name, tmp_path):
    """What a user of the CPU wheel sees when starting a GPU / Ascend config as it is."""
    (tmp_path / "data").mkdir()
    out = tmp_path / "out"
    res = subprocess.run([sys.executable, os.path.join(ROOT, "train.py"), "--config_path", config_path(name),
                          "--data_path", str(tmp_path / "data"), "--output_dir", str(out)],
                         cwd=str(tmp_path), capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, GLOG_v="3"))
    device = DEVICE_CONFIGS[name][1]
    assert res.returncode == 2, res.stderr[-1000:]
    last = res.stderr.strip().splitlines()[-1]  # MindSpore's own loader may log lines before it
    assert last.startswith(f"error: cannot use device_target={device}: ") and last.endswith(
        "(install the MindSpore build for that device, or pass --device_target CPU)"), last
    assert not out.exists()

# ------------------------------------------------------------------- Ascend 310 inference (dry run)
@pytest.mark.parametrize("dataset, config, labels", [
    ("cifar10", "cifar10_config_cpu.yaml", "label.npy"),
    ("imagenet", "imagenet_config_cpu.yaml", "label.npy"),
    ("moving_mnist", "mmnist_config_cpu.yaml", "01_target"),
])
def test_infer_310_dry_run_prints_its_four_stages(dataset, config, labels, tmp_path, data_dir):
    (tmp_path / "net.mindir").write_bytes(b"")
    (tmp_path / "classes.txt").write_text("a\nb\n")
    label_file = "classes.txt" if dataset == "imagenet" else "-"
    res = launch("run_infer_310.sh", "net.mindir", dataset, data_dir, label_file, "6",
                 cwd=str(tmp_path), dry=True)
    assert res.returncode == 0, res.stderr
    stages = [shlex.split(line[2:]) for line in res.stdout.splitlines() if line.startswith("+ ")]
    assert len(stages) == 4, res.stdout
    build, pre, infer, post = stages
    assert build[-2:] == ["bash", os.path.join(ROOT, "ascend310_infer", "build.sh")]
    assert pre[1] == os.path.join(ROOT, "preprocess.py") and option(pre, "config_path") == config_path(config)
    assert option(pre, "data_path") == data_dir
    assert option(pre, "class_names_file") == (str(tmp_path / "classes.txt") if dataset == "imagenet" else None)
    assert infer[0] == os.path.join(ROOT, "ascend310_infer", "out", "main")
    assert option(infer, "mindir_path") == str(tmp_path / "net.mindir") and option(infer, "device_id") == "6"
    assert option(post, "label_path") == f"./preprocess_Result/{labels}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.txt", "data", "net.mindir"]


def test_infer_310_bad_input_is_exit_2_and_runs_nothing(tmp_path, data_dir):
    (tmp_path / "net.mindir").write_bytes(b"")
    cases = [(["net.mindir", "coco", data_dir], "DATASET must be cifar10, imagenet or moving_mnist"),
             (["none.mindir", "cifar10", data_dir], "is not a file"),
             (["net.mindir", "cifar10", "no_data"], "does not exist"),
             (["net.mindir", "cifar10", data_dir, "-", "gpu0"], "DEVICE_ID must be a number")]
    for args, message in cases:
        res = launch("run_infer_310.sh", *args, cwd=str(tmp_path))
        assert res.returncode == 2 and res.stderr.startswith("error: ") and message in res.stderr, args
        assert "+ " not in res.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "net.mindir"]


# ----------------------------------------------------------------------------------- data sinking
class _FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _report(monitor, clock, epoch, step_num, seconds, loss=0.5):
    """One on_train_step_begin/end pair as MindSpore makes it, covering ``seconds``."""
    import types
    import mindspore as ms
    ctx = types.SimpleNamespace(original_args=lambda: types.SimpleNamespace(
        cur_epoch_num=epoch, cur_step_num=step_num, net_outputs=ms.Tensor(loss, ms.float32)))
    monitor.on_train_step_begin(ctx)
    clock.now += seconds
    monitor.on_train_step_end(ctx)
    return ctx


@pytest.mark.parametrize("sink", [False, True])
def test_train_monitor_per_step_time_with_and_without_data_sinking(sink, monkeypatch, tmp_path):
    """GPU/Ascend sink a whole epoch per call (Model.train reports once, cur_step_num jumps by the
    epoch's steps): the per-step time is the epoch time over its 5 steps, as without sinking."""
    import io
    import json
    import src.callbacks as callbacks
    clock = _FakeClock()
    monkeypatch.setattr(callbacks.time, "time", clock)
    out = io.StringIO()
    history = tmp_path / "history.jsonl"
    monitor = callbacks.TrainMonitor(5, log_interval=2, history_file=str(history), progress=False,
                                     lr_per_step=[0.1] * 10, stream=out)
    for epoch in (1, 2):
        monitor.on_train_epoch_begin(None)
        if sink:
            ctx = _report(monitor, clock, epoch, 5 * epoch, 1.0)
        else:
            for step in range(1, 6):
                ctx = _report(monitor, clock, epoch, 5 * (epoch - 1) + step, 0.2)
        monitor.on_train_epoch_end(ctx)
    text = out.getvalue()
    assert text.count("per step time: 200.0 ms, steps: 5,") == 2, text
    assert "epoch: 2 step: 5, loss is 0.5, lr 0.1" in text
    records = [json.loads(line) for line in history.read_text().splitlines()]
    assert [r["global_step"] for r in records][-1] == 10
    assert len(records) == (2 if sink else 10)


# ----------------------------------------------------------------------------------- precision
@pytest.fixture
def graph_mode():
    import mindspore as ms
    before = ms.get_context("mode")
    ms.set_context(mode=ms.GRAPH_MODE)
    yield
    ms.set_context(mode=before)


def test_precision_settings_device_decides_the_default():
    from src.model_utils.errors import UserError
    from src.precision import precision_settings
    for name in DEVICE_CONFIGS:
        cfg = resolved(name)
        assert precision_settings(cfg.device_target, cfg.amp_level, cfg.loss_scale) == (
            cfg.amp_level, cfg.loss_scale)
        # the same config with --device_target CPU trains in fp32
        assert precision_settings("CPU", cfg.amp_level, cfg.loss_scale) == ("O0", 1.0)
        assert precision_settings("CPU", cfg.amp_level, cfg.loss_scale, allow_on_cpu=True) == (
            cfg.amp_level, cfg.loss_scale)
    for amp, scale, words in (("O1", 1024.0, "O1 fails"), ("O2", 0.5, "loss_scale must be >= 1")):
        with pytest.raises(UserError, match=words):
            precision_settings("GPU", amp, scale)


def loss_recorder():
    """A callback keeping every step's loss value and dtype."""
    from mindspore.train import Callback

    class LossRecorder(Callback):
        def __init__(self):
            super().__init__()
            self.losses, self.dtypes = [], set()

        def on_train_step_end(self, run_context):
            out = run_context.original_args().net_outputs
            loss = out[0] if isinstance(out, (tuple, list)) else out
            self.losses.append(float(loss.asnumpy()))
            self.dtypes.add(str(loss.dtype))

    return LossRecorder()


TINY_DARKNET = ["--batch_size", "16", "--num_samples", "32", "--augment", "false", "--epoch_size", "4",
                "--lr", "0.05", "--warmup_epochs", "0", "--num_parallel_workers", "1"]
# 2 frames in, 2 out: the smallest unrolled graph with an encoder and a forecaster step each
# (GRAPH compile time grows with the frames; precision and the falling loss do not need more)
TINY_VIDEO = TINY_CONVLSTM + ["--input_frames", "2", "--output_frames", "2", "--epoch_size", "4",
                              "--lr", "0.02", "--num_parallel_workers", "1"]
# (config, command-line overrides, amp level and loss scale the device trains with, eval+export?)
DEVICE_STEPS = [
    ("cifar10_config_gpu.yaml", TINY_DARKNET, ("O2", 1024.0), True),
    ("cifar10_config.yaml", TINY_DARKNET, ("O2", 1024.0), False),
    ("mmnist_config_gpu.yaml", TINY_VIDEO, ("O0", 1.0), False),
    ("mmnist_config.yaml", TINY_VIDEO, ("O0", 1.0), False),
    # the ConvLSTM configs with mixed precision switched on, as a GPU/Ascend user may: RMSProp
    # (the paper's optimizer) on the paper's sequence-summed loss, whose gradients are large
    # already (a small loss scale), and Adam on a pixel-mean loss (tiny gradients: a large scale)
    ("mmnist_config_gpu.yaml", TINY_VIDEO + ["--amp_level", "O2", "--loss_scale", "8"],
     ("O2", 8.0), True),
    ("mmnist_config.yaml", TINY_VIDEO + ["--amp_level", "O2", "--loss_scale", "512", "--optimizer",
                                         "adam", "--lr", "0.004", "--loss_reduction", "mean"],
     ("O2", 512.0), False),
]


def _float_dtypes(params):
    return {str(v.dtype) for v in params.values()
            if hasattr(v, "dtype") and "Float" in str(v.dtype)}


@pytest.mark.parametrize("name, overrides, precision, check_eval", DEVICE_STEPS,
                         ids=[f"{n}-{p[0]}-{p[1]:g}" for n, _, p, _ in DEVICE_STEPS])
def test_device_training_step_runs_on_cpu(name, overrides, precision, check_eval, graph_mode,
                                          cifar_dir, mmnist_dir, tmp_path):
    """The training step a GPU / Ascend config builds on its device (amp level, loss scale, the
    optimizer with the matching loss scale), run for a few steps on CPU: the loss falls,
    BatchNorm and the loss stay fp32 under O2, the checkpoint is fp32 and evaluates and exports
    from a freshly built fp32 network."""
    import numpy as np
    import mindspore as ms
    import mindspore.nn as nn
    from mindspore.train import CheckpointConfig, ModelCheckpoint
    from src.data import create_dataset_from_config
    from src.models import create_model_from_config
    from src.precision import precision_settings
    from src.tasks import create_task
    from src.trainer import build_training, set_seed

    data = mmnist_dir if "mmnist" in name else cifar_dir
    cfg = get_config(["--config_path", config_path(name), "--data_path", data,
                      "--output_dir", str(tmp_path / "run"), *overrides])
    amp_level, loss_scale = precision_settings(cfg.device_target, cfg.amp_level, cfg.loss_scale)
    assert (amp_level, loss_scale) == precision and cfg.device_target != "CPU"

    set_seed(cfg.seed)
    task = create_task(cfg)
    dataset = create_dataset_from_config(cfg, "train")
    network = create_model_from_config(cfg)
    loss_fn = task.create_loss()
    model, optimizer, _, _ = build_training(cfg, network, network.trainable_params(), loss_fn,
                                         dataset.get_dataset_size(), amp_level, loss_scale)
    assert optimizer.loss_scale == loss_scale  # gradients are un-scaled by the same factor

    recorder = loss_recorder()
    ckpt_cfg = CheckpointConfig(save_checkpoint_steps=10 ** 6, keep_checkpoint_max=1)
    saver = ModelCheckpoint(prefix="dev", directory=str(tmp_path / "ckpt"), config=ckpt_cfg)
    model.train(cfg.epoch_size, dataset, callbacks=[recorder, saver], dataset_sink_mode=False)

    losses = recorder.losses
    assert len(losses) >= 6 and all(map(math.isfinite, losses)), losses
    assert sum(losses[-2:]) < sum(losses[:2]), losses
    assert recorder.dtypes == {"Float32"}  # the loss is computed and returned in fp32
    assert not loss_fn.get_flags().get("fp16")
    bns = [c for _, c in network.cells_and_names() if isinstance(c, nn.BatchNorm2d)]
    convs = [c for _, c in network.cells_and_names() if isinstance(c, nn.Conv2d)]
    if amp_level == "O2":
        assert all(c.get_flags().get("fp16") for c in convs)
        assert all(c.get_flags().get("fp32") and not c.get_flags().get("fp16") for c in bns)
    else:
        assert not any(c.get_flags().get("fp16") for c in convs)
    assert (len(bns) == 15) == (cfg.model_name == "tinydarknet")

    ckpt = str(tmp_path / "ckpt" / f"dev-{cfg.epoch_size}_{dataset.get_dataset_size()}.ckpt")
    params = ms.load_checkpoint(ckpt)
    assert _float_dtypes(params) == {"Float32"}
    assert {p.name for p in network.get_parameters()} <= set(params)
    if not check_eval:
        return

    # evaluate and export on CPU from a new fp32 network, as eval.py / export.py do
    from src.export import export_network
    from src.checkpoint import load_network
    from src.evaluate import run_eval
    eval_cfg = get_config(["--config_path", config_path(name), "--device_target", "CPU",
                           "--data_path", data, "--ckpt_file", ckpt, "--result_dir", str(tmp_path / "eval"),
                           "--file_name", str(tmp_path / "net"), *overrides])
    result = run_eval(eval_cfg, log=None)
    assert result["num_samples"] > 0
    fresh, _ = load_network(eval_cfg, ckpt, export=True)
    x = ms.Tensor(task.example_batch(1, np.random.default_rng(0))[0])
    expected = fresh(x)
    assert str(expected.dtype) == "Float32"
    path = export_network(eval_cfg.replace(batch_size=1), log=None)
    exported = nn.GraphCell(ms.load(path))(x)
    assert abs(exported.asnumpy() - expected.asnumpy()).max() < 1e-5
