"""CPU training-speed benchmark: matmul peak, training throughput + MFU, data pipelines, export latency.

One command measures everything on this machine and prints a table (and writes JSON)::

    python benchmarks/benchmark.py --markdown            # full sizes (~4-5 min on 2 cores)
    python benchmarks/benchmark.py --quick --out b.json  # tiny sizes, ~40 s (what the test runs)
    python benchmarks/benchmark.py --only train --rows convlstm_paper --conv_impl native

Sections (``--only peak,train,data,export``):

* ``peak``   fp32 matmul GFLOP/s of this machine: 4096x4096 @ 4096x4096 with numpy (OpenBLAS) and
  with MindSpore, best of a few; the higher one is the MFU denominator.
* ``train``  samples/s of a training step after warm-up, through the path ``src/trainer.py`` takes:
  ``mindspore.train.Model(network, loss_fn, optimizer).train(...)`` in GRAPH mode, non-sink, with
  the repo's network / loss / optimizer / LR schedule built from the config files. The data are
  in-memory synthetic tensors (so this is the step rate, not the data rate). Compile + first step
  is reported separately. MFU = model FLOPs/s (``benchmarks/flops.py``: conv/matmul FLOPs of the
  forward x 3) / measured peak. One row per convolution kernel (``--conv_impl``: native
  ``nn.Conv2d``, ``unfold`` = im2col + GEMM, ``small`` = native + im2col on 2x2 maps), each in a
  fresh process; ``cores busy`` = CPU seconds / wall seconds of the timed steps.
* ``data``   the repo's training pipelines (``src.data.create_dataset``) on synthetic files in
  the real formats: a 10,000-record CIFAR-10 binary file (through ``Cifar10Dataset``), an
  ImageFolder of ~500x375 JPEGs, and Moving MNIST generated from a synthetic MNIST idx file. The
  rate is compared with the training rate it feeds.
* ``export`` batch-1 latency of the exported MindIR (``ms.export`` + ``nn.GraphCell(ms.load())``)
  and of the exported ONNX under onnxruntime.

All data are synthetic. Timings on a shared machine are noisy: run when ``uptime`` shows a low
load, repeat, keep the best run.
"""
import json
import os
import platform
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("GLOG_v", "3")

import numpy as np  # noqa: E402

from benchmarks.flops import (FORWARD_FLOPS,  # noqa: E402
                              training_flops)
from src.model_utils.errors import ArgumentParser, exit_on_user_error  # noqa: E402

SECTIONS = ("peak", "train", "data", "export")


# --------------------------------------------------------------------------- machine
def cpu_model():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_mhz():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def cpu_flags():
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def machine_info():
    flags = cpu_flags()
    mhz = cpu_mhz()
    # FP32 FLOPs per cycle per core: 2 FMA pipes x (16 lanes AVX-512 | 8 AVX2 | 4 SSE) x 2
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags and "fma" in flags else 4
    info = {"cpu_model": cpu_model(), "cores": cores(), "cpu_mhz": mhz,
            "isa": "avx512" if lanes == 16 else "avx2+fma" if lanes == 8 else "sse",
            "python": platform.python_version(), "load_average": list(os.getloadavg())}
    if mhz:
        info["nominal_peak_gflops"] = round(cores() * mhz / 1e3 * 2 * lanes * 2, 1)
    try:
        import mindspore as ms
        info["mindspore"] = ms.__version__
    except ImportError:
        pass
    info["numpy"] = np.__version__
    return info


# --------------------------------------------------------------------------- peak
def matmul_peak(n, repeats):
    """Best fp32 GFLOP/s of an n x n matmul with numpy (OpenBLAS) and with MindSpore."""
    import mindspore as ms
    import mindspore.ops as ops
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flops = 2.0 * n ** 3
    out = {}
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    out["numpy_gflops"] = flops / best / 1e9
    ta, tb = ms.Tensor(a), ms.Tensor(b)
    ops.matmul(ta, tb).asnumpy()
    best = min(_timed(lambda: ops.matmul(ta, tb).asnumpy()) for _ in range(repeats))
    out["mindspore_gflops"] = flops / best / 1e9
    out["peak_gflops"] = max(out["numpy_gflops"], out["mindspore_gflops"])
    out["size"] = n
    return out


def _cpu_seconds():
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --------------------------------------------------------------------------- configs / rows
def load_cfg(config_file, overrides):
    from src.model_utils.config import get_config
    argv = ["--config_path", os.path.join(ROOT, "config", config_file)]
    for key, value in overrides.items():
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        argv += [f"--{key}", str(value)]
    return get_config(argv)


def train_rows(quick):
    """(name, config file, overrides, what) of the training rows. ``--quick`` shrinks them."""
    cpu = {"device_target": "CPU", "amp_level": "O0", "loss_scale": 1.0}
    if quick:
        return [
            ("tinydarknet_32", "cifar10_config_cpu.yaml", dict(cpu, batch_size=4, image_size=32),
             "Tiny-DarkNet CIFAR-10 32x32 (quick: batch 4)"),
            ("tinydarknet_224", "imagenet_config_cpu.yaml",
             dict(cpu, batch_size=2, image_size=32, num_classes=10),
             "Tiny-DarkNet ImageNet (quick: 32x32, batch 2)"),
            ("convlstm_paper", "mmnist_config.yaml",
             dict(cpu, batch_size=1, hidden_channels=[8, 8], input_frames=2, output_frames=2,
                  image_size=16), "ConvLSTM paper structure (quick: 8-8, 2+2 frames, 16x16)"),
            ("convlstm_cpu", "mmnist_config_cpu.yaml",
             dict(cpu, batch_size=1, hidden_channels=[4], input_frames=2, output_frames=2,
                  image_size=16), "ConvLSTM CPU config (quick: 4, 2+2 frames, 16x16)"),
        ]
    return [
        ("tinydarknet_32", "cifar10_config_cpu.yaml", dict(cpu, batch_size=32, image_size=32),
         "Tiny-DarkNet, CIFAR-10 32x32, 10 classes, batch 32"),
        ("tinydarknet_224", "imagenet_config_cpu.yaml", dict(cpu, batch_size=32, image_size=224),
         "Tiny-DarkNet, ImageNet 224x224, 1000 classes, batch 32"),
        ("convlstm_paper", "mmnist_config.yaml", dict(cpu, batch_size=4),
         "ConvLSTM 5x5 128-64-64, 16x16x16 patches, 10+10 frames, batch 4"),
        ("convlstm_cpu", "mmnist_config_cpu.yaml", dict(cpu),
         "ConvLSTM CPU config (config/mmnist_config_cpu.yaml)"),
    ]


def forward_flops_per_sample(cfg):
    return FORWARD_FLOPS[cfg.model_name](cfg)


def synthetic_batch(cfg, rng):
    """One batch of (input, label/target) in the shapes and dtypes the training pipeline yields."""
    from src.tasks import create_task
    return create_task(cfg).example_batch(cfg.batch_size, rng)


CONV_IMPLS = ("auto", "native", "unfold", "small")


def use_unfold_arg(conv_impl, device_target="CPU"):
    """``use_unfold`` for the networks: auto/native/unfold as the configs' ``conv_impl``;
    ``small`` = native convolutions except im2col + one GEMM on maps of <= 16 positions."""
    from src.models import use_unfold_for
    return "small" if conv_impl == "small" else use_unfold_for(conv_impl, device_target)


def build_model(cfg, steps, conv_impl):
    """Network, loss, LR schedule, optimizer and ``Model`` exactly as ``src.trainer.train`` builds
    them (only the convolution kernel is chosen here, ``conv_impl``)."""
    import mindspore as ms
    from mindspore.train import Model
    from src.tasks import create_task
    from src.lr_scheduler import create_lr
    from src.models import create_model, model_kwargs
    from src.optimizer import create_optimizer
    kwargs = dict(model_kwargs(cfg), use_unfold=use_unfold_arg(conv_impl, cfg.device_target))
    network = create_model(cfg.model_name, **kwargs)
    lr = create_lr(cfg.lr_scheduler, cfg.lr, steps, 1, warmup_epochs=0,
                   warmup_init_lr=cfg.warmup_init_lr, milestones=[], gamma=cfg.lr_gamma,
                   end_lr=cfg.end_lr, power=cfg.poly_power)
    optimizer = create_optimizer(cfg.optimizer, network.trainable_params(), ms.Tensor(lr),
                                 weight_decay=cfg.weight_decay, momentum=cfg.momentum, loss_scale=1.0,
                                 filter_bias_and_bn=cfg.filter_bias_and_bn,
                                 rmsprop_decay=cfg.rmsprop_decay, eps=cfg.opt_eps)
    loss_fn = create_task(cfg).create_loss()
    return network, Model(network, loss_fn=loss_fn, optimizer=optimizer, amp_level="O0")


def measure_training(cfg, warmup, steps, conv_impl):
    """Model.train over ``warmup + steps`` in-memory batches; per-step wall times from a callback."""
    import mindspore.dataset as ds
    from mindspore.train import Callback

    class StepTimer(Callback):
        def __init__(self):
            super().__init__()
            self.ends = []
            self.cpu = []

        def on_train_step_end(self, run_context):
            self.ends.append(time.perf_counter())
            self.cpu.append(_cpu_seconds())

    x, y = synthetic_batch(cfg, np.random.default_rng(0))
    total = warmup + steps
    data = ds.NumpySlicesDataset({"x": x, "y": y}, shuffle=False).batch(cfg.batch_size).repeat(total)
    network, model = build_model(cfg, total, conv_impl)
    timer = StepTimer()
    start = time.perf_counter()
    model.train(1, data, callbacks=[timer], dataset_sink_mode=False)
    ends = [start] + timer.ends
    step_times = np.diff(ends)
    measured = step_times[warmup:] if len(step_times) > warmup else step_times[-1:]
    median = float(np.median(measured))
    # cores kept busy by this process over the timed steps (2.0 = both cores of a 2-core machine;
    # lower = serial kernels, or other processes taking cores)
    first = max(0, min(warmup - 1, len(timer.ends) - 2))
    busy = (timer.cpu[-1] - timer.cpu[first]) / max(timer.ends[-1] - timer.ends[first], 1e-9)
    return {"first_step_s": float(step_times[0]), "cpu_cores_busy": busy,
            "warmup_steps": warmup, "measured_steps": len(measured),
            "step_s_median": median, "step_s_best": float(np.min(measured)),
            "samples_per_s": cfg.batch_size / median,
            "samples_per_s_best": cfg.batch_size / float(np.min(measured)),
            "params": int(sum(p.size for p in network.trainable_params()))}


def measured_steps(cfg, steps):
    """More timed steps for cheap steps (so each row times a few seconds), fewer for slow ones."""
    step_flops = training_flops(forward_flops_per_sample(cfg)) * cfg.batch_size
    scale = 8 if step_flops < 5e9 else 3 if step_flops < 50e9 else 1 if step_flops < 200e9 else 0.5
    return max(2, int(steps * scale))


def run_training(args, peak):
    rows = []
    for name, config_file, overrides, what in train_rows(args.quick):
        if args.rows and name not in args.rows:
            continue
        for conv_impl in args.conv_impl:
            if args.isolate:
                row = train_row_subprocess(args, name, conv_impl)
            else:
                row = train_row(args, name, config_file, overrides, what, conv_impl)
            if "error" not in row:
                row["mfu"] = row["achieved_gflops"] / peak if peak else None
                _log(f"  {row['samples_per_s']:.2f} samples/s, {row['achieved_gflops']:.1f} GFLOP/s, "
                     + (f"MFU {100 * row['mfu']:.1f}%, " if peak else "")
                     + f"first step {row['first_step_s']:.1f} s")
            rows.append(row)
    return rows


def train_row_subprocess(args, name, conv_impl):
    """One training row in a fresh process: compiled graphs, allocator pools and thread pools of
    the rows before cannot slow it down (in one all-in-one-process run the last row was 40% slower
    than alone)."""
    import subprocess
    fd, out = tempfile.mkstemp(suffix=".json", prefix="bench_row_")
    os.close(fd)
    try:
        cmd = [sys.executable, os.path.abspath(__file__), "--only", "train", "--no_isolate",
               "--rows", name, "--conv_impl", conv_impl, "--warmup", str(args.warmup),
               "--steps", str(args.steps), "--threads", str(args.threads), "--out", out]
        if args.quick:
            cmd.append("--quick")
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return {"name": name, "conv_impl": conv_impl,
                    "error": f"row process failed (rc {proc.returncode}): {proc.stderr.strip()[-300:]}"}
        with open(out, encoding="utf-8") as f:
            return json.load(f)["train"][0]
    finally:
        os.remove(out)


def train_row(args, name, config_file, overrides, what, conv_impl):
    try:
        cfg = load_cfg(config_file, overrides)
    except Exception as exc:  # a config not there yet (another model still being written)
        return {"name": name, "conv_impl": conv_impl, "error": f"{type(exc).__name__}: {exc}"}
    warmup, steps = (1, 2) if args.quick else (args.warmup, measured_steps(cfg, args.steps))
    _log(f"train {name} ({conv_impl} conv): {what} ...")
    res = measure_training(cfg, warmup, steps, conv_impl)
    flops_sample = training_flops(forward_flops_per_sample(cfg))
    gflops = flops_sample * res["samples_per_s"] / 1e9
    row = {"name": name, "what": what, "model": cfg.model_name, "config": config_file,
           "batch_size": cfg.batch_size, "image_size": cfg.image_size,
           "conv_impl": conv_impl, "optimizer": cfg.optimizer, "loss": cfg.loss,
           "train_gflop_per_sample": flops_sample / 1e9, "achieved_gflops": gflops, "mfu": None, **res}
    if "hidden_channels" in cfg:  # a recurrent model: record its layer sizes
        row.update(hidden_channels=list(cfg.hidden_channels), kernels=[cfg.input_kernel, cfg.state_kernel],
                   frames=[cfg.input_frames, cfg.output_frames])
    return row


# --------------------------------------------------------------------------- data pipelines
def write_cifar10(folder, records=10000, seed=0):
    """One CIFAR-10 binary file in the real format (1 label byte + R, G, B planes)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    rec = rng.integers(0, 256, (records, 1 + 3 * 32 * 32), dtype=np.uint8)
    rec[:, 0] = rng.integers(0, 10, records)
    rec.tofile(os.path.join(folder, "data_batch_1.bin"))
    return folder


def write_jpeg_folder(root, classes, per_class, size=(500, 375), seed=0):
    """ImageFolder ``root/train/<class>/*.JPEG`` of photo-like synthetic JPEGs (smooth + texture)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for c in range(classes):
        folder = os.path.join(root, "train", f"n{c:08d}")
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            f = rng.uniform(0.005, 0.05, 3)
            img = np.stack([127 + 100 * np.sin(xx * f[k] + yy * f[(k + 1) % 3] + rng.uniform(0, 6))
                            for k in range(3)], -1)
            img += rng.normal(0, 12, img.shape)
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                os.path.join(folder, f"img_{i:05d}.JPEG"), quality=90)
    return root


def write_mnist_idx(folder, count=2000, seed=0):
    from src.data.mnist_idx import write_idx_images
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    digits = np.zeros((count, 28, 28), np.uint8)
    digits[:, 6:22, 10:18] = rng.integers(100, 256, (count, 16, 8), dtype=np.uint8)
    write_idx_images(os.path.join(folder, "train-images-idx3-ubyte"), digits)
    return folder


def pipeline_rate(dataset, batch_size, max_batches=None):
    """Samples/s of iterating a batched pipeline (after its first batch: start-up reported apart)."""
    it = dataset.create_tuple_iterator(output_numpy=True, num_epochs=1)
    start = time.perf_counter()
    next(it)
    first = time.perf_counter()
    n = 0
    for _ in it:
        n += 1
        if max_batches and n >= max_batches:
            break
    end = time.perf_counter()
    return {"startup_s": first - start, "batches": n, "samples_per_s": n * batch_size / max(end - first, 1e-9)}


def run_data(args, train_by_name):
    from src.data import create_dataset
    tmp = tempfile.mkdtemp(prefix="bench_data_")
    rows = []
    try:
        bs = 32
        # CIFAR-10: one full 10,000-record file (Cifar10Dataset insists on that) -> 32x32 train pipeline
        folder = write_cifar10(os.path.join(tmp, "cifar-10-batches-bin"))
        n = 640 if args.quick else 10000
        _log(f"data cifar10: {n} records ...")
        dset = create_dataset("cifar10", folder, "train", bs, image_size=32, num_samples=n)
        rows.append(dict(name="cifar10_train_32", feeds="tinydarknet_32", batch_size=bs,
                         workers=_workers(), **pipeline_rate(dset, bs)))
        # ImageFolder of ~500x375 JPEGs -> RandomCropDecodeResize(224) ... train pipeline
        classes, per_class = (2, 40) if args.quick else (8, 80)
        _log(f"data imagefolder: writing {classes * per_class} JPEGs 500x375 ...")
        root = write_jpeg_folder(os.path.join(tmp, "imagenet"), classes, per_class)
        image_size = 224
        dset = create_dataset("imagefolder", root, "train", bs, image_size=image_size)
        rows.append(dict(name="imagefolder_train_224", feeds="tinydarknet_224", batch_size=bs,
                         workers=_workers(), **pipeline_rate(dset, bs)))
        # Moving MNIST sequences generated from (synthetic) MNIST digits
        folder = write_mnist_idx(os.path.join(tmp, "mnist"))
        seqs, mbs = (32, 4) if args.quick else (400, 8)
        _log(f"data moving_mnist: {seqs} sequences ...")
        dset = create_dataset("moving_mnist", folder, "train", mbs, num_sequences=seqs)
        rows.append(dict(name="moving_mnist_train", feeds="convlstm_cpu", batch_size=mbs,
                         workers=1, **pipeline_rate(dset, mbs)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for row in rows:
        fed = train_by_name.get(row["feeds"])
        if fed and fed.get("samples_per_s"):
            row["train_samples_per_s"] = fed["samples_per_s"]
            row["train_conv_impl"] = fed["conv_impl"]
            row["ratio_to_train"] = row["samples_per_s"] / fed["samples_per_s"]
    return rows


def _workers():
    from src.data.classification import default_workers
    return default_workers()


# --------------------------------------------------------------------------- export latency
def export_rows(quick):
    from src.models.tinydarknet import tinydarknet
    from src.models.convlstm import ConvLSTM
    if quick:
        return [("tinydarknet_224", lambda: tinydarknet(10), (1, 3, 64, 64)),
                ("tinydarknet_32", lambda: tinydarknet(10), (1, 3, 32, 32)),
                ("convlstm_paper", lambda: ConvLSTM(hidden_channels=(8, 8), input_frames=2, output_frames=2),
                 (1, 2, 1, 16, 16))]
    return [("tinydarknet_224", lambda: tinydarknet(1000), (1, 3, 224, 224)),
            ("tinydarknet_32", lambda: tinydarknet(10), (1, 3, 32, 32)),
            ("convlstm_paper", lambda: ConvLSTM(hidden_channels=(128, 64, 64)), (1, 10, 1, 64, 64))]


def latency(fn, repeats, warmup=2):
    for _ in range(warmup):
        fn()
    times = [_timed(fn) for _ in range(repeats)]
    return {"latency_ms_median": 1e3 * float(np.median(times)), "latency_ms_best": 1e3 * float(np.min(times))}


def run_export(args):
    import mindspore as ms
    import mindspore.nn as nn
    tmp = tempfile.mkdtemp(prefix="bench_export_")
    rows = []
    try:
        for name, make, shape in export_rows(args.quick):
            x = np.random.default_rng(0).random(shape, dtype=np.float32)
            repeats = 3 if args.quick else (10 if name.startswith("convlstm") else 50)
            _log(f"export {name} {shape} ...")
            path = os.path.join(tmp, name)
            net = make()
            net.set_train(False)
            ms.export(net, ms.Tensor(x), file_name=path, file_format="MINDIR")
            graph = nn.GraphCell(ms.load(path + ".mindir"))
            tx = ms.Tensor(x)
            row = {"name": name, "input_shape": list(shape)}
            res = latency(lambda: graph(tx).asnumpy(), repeats)
            row.update({f"mindir_{k}": v for k, v in res.items()})
            try:
                import onnxruntime as ort
                from mindspore.onnx import export as onnx_export
                net2 = make()  # exporting the same Cell instance twice in one process fails
                net2.set_train(False)
                ms.load_param_into_net(net2, net.parameters_dict())
                onnx_export(net2, ms.Tensor(x), file_name=path + ".onnx", input_names=["input"],
                            output_names=["output"])
                opts = ort.SessionOptions()
                sess = ort.InferenceSession(path + ".onnx", opts, providers=["CPUExecutionProvider"])
                res = latency(lambda: sess.run(None, {"input": x}), repeats)
                row.update({f"onnx_{k}": v for k, v in res.items()})
                ref = graph(tx).asnumpy()
                row["onnx_max_abs_diff"] = float(np.abs(sess.run(None, {"input": x})[0] - ref).max())
            except Exception as exc:  # keep the MindIR numbers when ONNX export is not possible
                row["onnx_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            rows.append(row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


# --------------------------------------------------------------------------- output
def _log(msg):
    if msg:
        print(msg, file=sys.stderr, flush=True)


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_table(result):
    m = result["machine"]
    print(f"\nmachine: {m['cpu_model']}, {m['cores']} cores, {m.get('isa')}, MindSpore "
          f"{m.get('mindspore')}, load {m['load_average'][0]:.2f}; synthetic data")
    peak = result.get("peak")
    if peak:
        print(f"fp32 matmul {peak['size']}^3: numpy {peak['numpy_gflops']:.1f} GFLOP/s, MindSpore "
              f"{peak['mindspore_gflops']:.1f} GFLOP/s -> peak {peak['peak_gflops']:.1f} GFLOP/s "
              f"(nominal {m.get('nominal_peak_gflops')})")
    if result.get("train"):
        print(f"\n{'training':26s} {'conv':>7s} {'batch':>5s} {'samples/s':>10s} "
              f"{'GFLOP/s':>8s} {'MFU':>6s} {'step s':>8s} {'first s':>8s} {'cores':>5s}")
        for r in result["train"]:
            if "error" in r:
                print(f"{r['name']:26s} {r['conv_impl']:>7s} error: {r['error'][:80]}")
                continue
            print(f"{r['name']:26s} {r['conv_impl']:>7s} {r['batch_size']:5d} {r['samples_per_s']:10.2f} "
                  f"{r['achieved_gflops']:8.1f} {_fmt(100 * r['mfu'] if r['mfu'] else None, '5.1f')}% "
                  f"{r['step_s_median']:8.3f} {r['first_step_s']:8.1f} {r['cpu_cores_busy']:5.2f}")
    if result.get("data"):
        print(f"\n{'data pipeline (train split)':34s} {'samples/s':>10s} {'feeds':>16s} {'train/s':>8s} {'ratio':>6s}")
        for r in result["data"]:
            print(f"{r['name']:34s} {r['samples_per_s']:10.1f} {r['feeds']:>16s} "
                  f"{_fmt(r.get('train_samples_per_s'), '8.2f')} {_fmt(r.get('ratio_to_train'), '6.1f')}")
    if result.get("export"):
        print(f"\n{'batch-1 latency (ms)':34s} {'MindIR':>10s} {'ONNX-RT':>10s}")
        for r in result["export"]:
            onnx = _fmt(r.get("onnx_latency_ms_median"), "10.2f") if "onnx_error" not in r else "     error"
            print(f"{r['name'] + ' ' + 'x'.join(map(str, r['input_shape'])):34s} "
                  f"{r['mindir_latency_ms_median']:10.2f} {onnx}")


def markdown_table(result):
    """The results as markdown tables (what benchmarks/README.md shows)."""
    m, peak = result["machine"], result.get("peak") or {}
    lines = [f"Machine: {m['cpu_model']}, {m['cores']} cores ({m.get('isa')}), MindSpore "
             f"{m.get('mindspore')}, numpy {m.get('numpy')}; load average at start "
             f"{m['load_average'][0]:.2f}. All data synthetic.", ""]
    if peak:
        lines += [f"fp32 matmul peak ({peak['size']}^3): numpy/OpenBLAS {peak['numpy_gflops']:.1f} "
                  f"GFLOP/s, MindSpore {peak['mindspore_gflops']:.1f} GFLOP/s; MFU below is "
                  f"relative to {peak['peak_gflops']:.1f} GFLOP/s.", ""]
    if result.get("train"):
        lines += ["| training row | conv | batch | samples/s | GFLOP/s | MFU | step (s) "
                  "| compile + 1st step (s) | cores busy |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in result["train"]:
            if "error" in r:
                lines.append(f"| {r['name']} | {r['conv_impl']} | error: {r['error'][:60]} |||||||")
                continue
            mfu = f"{100 * r['mfu']:.1f}%" if r.get("mfu") else "-"
            lines.append(f"| {r['name']} | {r['conv_impl']} | {r['batch_size']} | {r['samples_per_s']:.2f} | "
                         f"{r['achieved_gflops']:.1f} | {mfu} | {r['step_s_median']:.3f} | "
                         f"{r['first_step_s']:.1f} | {r['cpu_cores_busy']:.2f} |")
        lines.append("")
    if result.get("data"):
        lines += ["| data pipeline (train split) | samples/s | feeds | training samples/s | ratio |",
                  "|---|---:|---|---:|---:|"]
        for r in result["data"]:
            lines.append(f"| {r['name']} | {r['samples_per_s']:.1f} | {r['feeds']} | "
                         f"{_fmt(r.get('train_samples_per_s'), '.2f')} | {_fmt(r.get('ratio_to_train'), '.1f')}x |")
        lines.append("")
    if result.get("export"):
        lines += ["| batch-1 latency | input | MindIR (ms) | ONNX Runtime (ms) |", "|---|---|---:|---:|"]
        for r in result["export"]:
            onnx = _fmt(r.get("onnx_latency_ms_median"), ".2f") if "onnx_error" not in r else "error"
            lines.append(f"| {r['name']} | {'x'.join(map(str, r['input_shape']))} | "
                         f"{r['mindir_latency_ms_median']:.2f} | {onnx} |")
        lines.append("")
    return "\n".join(lines)


@exit_on_user_error
def main(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (for the test), ~30 s")
    parser.add_argument("--out", default="", help="write the results as JSON to this file")
    parser.add_argument("--markdown", action="store_true", help="also print the tables as markdown")
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections: " + ",".join(SECTIONS))
    parser.add_argument("--rows", default="", help="training rows to run (comma list; default all)")
    parser.add_argument("--conv_impl", default="unfold,native,small",
                        help="convolution kernel(s) of the training rows, comma list of auto | native | "
                             "unfold (as the configs' conv_impl) | small (native, im2col on maps of <= 16 "
                             "positions); one row per kernel")
    parser.add_argument("--warmup", type=int, default=2, help="training steps not timed (after the first)")
    parser.add_argument("--steps", type=int, default=6,
                        help="timed training steps per row (x8 for steps under 5 GFLOP, x3 under 50, "
                             "x0.5 over 200)")
    parser.add_argument("--peak_size", type=int, default=4096)
    parser.add_argument("--no_isolate", dest="isolate", action="store_false",
                        help="run the training rows in this process (default: one process per row, "
                             "except with --quick)")
    parser.add_argument("--threads", type=int, default=0,
                        help="ms.set_context(runtime_num_threads=N) (0 = MindSpore's default)")
    args = parser.parse_args(argv)
    sections = [s for s in args.only.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s) {sorted(unknown)}: choose from {','.join(SECTIONS)}")
    args.rows = [r for r in args.rows.split(",") if r]
    args.isolate = args.isolate and not args.quick
    args.conv_impl = [c for c in args.conv_impl.split(",") if c]
    if not args.conv_impl or set(args.conv_impl) - set(CONV_IMPLS):
        parser.error(f"--conv_impl: a comma list of {', '.join(CONV_IMPLS)}")

    import mindspore as ms
    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    if args.threads:
        ms.set_context(runtime_num_threads=args.threads)

    result = {"quick": args.quick, "conv_impl": args.conv_impl, "machine": machine_info(),
              "synthetic_data": True, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    peak_gflops = None
    if "peak" in sections:
        n = 512 if args.quick else args.peak_size
        _log(f"peak: {n}x{n} fp32 matmul ...")
        result["peak"] = matmul_peak(n, 3 if args.quick else 4)
        peak_gflops = result["peak"]["peak_gflops"]
    if "train" in sections:
        result["train"] = run_training(args, peak_gflops)
    if "data" in sections:
        by_name = {}  # the fastest training row of each model: the rate its pipeline must sustain
        for r in result.get("train", []):
            if "error" not in r and r["samples_per_s"] > by_name.get(r["name"], {}).get("samples_per_s", 0):
                by_name[r["name"]] = r
        result["data"] = run_data(args, by_name)
    if "export" in sections:
        result["export"] = run_export(args)
    result["machine"]["load_average_end"] = list(os.getloadavg())
    print_table(result)
    if args.markdown:
        print("\n" + markdown_table(result))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
        print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
