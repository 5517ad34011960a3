"""CPU benchmark: matmul peak, training throughput + MFU (beside PyTorch on request), data
pipelines and batch-1 inference latency, on synthetic data; one table (and JSON)::

    python benchmarks/benchmark.py --markdown --peer torch --rounds 2   # full sizes
    python benchmarks/benchmark.py --quick --out b.json                 # tiny sizes (the test)

* ``peak``: fp32 4096^3 matmul GFLOP/s (numpy, MindSpore) and oneDNN's direct convolution (one
  thread x cores); the highest is the MFU denominator.
* ``train``: samples/s after warm-up of what train.py builds (``create_model_from_config``,
  ``src.trainer.build_training``: the task's loss, the config's optimizer and LR) in GRAPH mode on
  an in-memory ``example_batch``; one row per ``--conv_impl`` (auto = each layer's faster kernel
  as measured by ``src/kernels/plan.py``, native, unfold), each in a fresh process.
  ``--peer torch``: the same rows with the PyTorch eager peer (``benchmarks/torch_peer.py``, same
  architecture, optimizer, loss, batch; parameter counts asserted equal; run without MindSpore's
  oneDNN cap), interleaved, with the ratio; ``--rounds N`` keeps the best of N rounds.
* ``data``: the training pipelines on synthetic files in the real formats vs the rate they feed.
* ``export``: batch-1 latency of the MindIR (MindSpore) and ONNX (onnxruntime), by src.infer.

Recorded: CPU, oneDNN ISA cap applied (before MindSpore is imported) and the 3x3 conv kernel under
it, threads, load average. Publish only runs on an idle machine.
"""
import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("GLOG_v", "3")

import numpy as np  # noqa: E402

from benchmarks.data_pipelines import run_data  # noqa: E402
from benchmarks.flops import FORWARD_FLOPS, training_flops  # noqa: E402
from benchmarks.report import render  # noqa: E402
from src.kernels import tuning as cpu_tuning  # noqa: E402
from src.model_utils.errors import ArgumentParser, exit_on_user_error  # noqa: E402

SECTIONS = ("peak", "train", "data", "export")
CONV_IMPLS = ("auto", "native", "unfold", "onednn")
EXPORT_ROWS = ("tinydarknet_224", "tinydarknet_32", "convlstm_paper")


def _log(msg):
    print(msg, file=sys.stderr, flush=True)


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --------------------------------------------------------------------------- machine and peak
_ISA_PROBES = {}  # candidate -> cpu_tuning.measure_isa's result, once per run (a child process each)
_USER_CAP = os.environ.get(cpu_tuning.ONEDNN_ENV)  # a cap set before this process (kept for rows)


def _isa_probe(candidate):
    if candidate not in _ISA_PROBES:
        _ISA_PROBES[candidate] = cpu_tuning.measure_isa(candidate)
    return _ISA_PROBES[candidate]


def machine_info(applied_isa):
    """CPU (from cpu_tuning), nominal peak, the oneDNN ISA applied and the kernel it gives."""
    m = cpu_tuning.machine_info()
    lanes = 16 if "avx512f" in m["flags"] else 8 if {"avx2", "fma"} <= m["flags"] else 4
    seen = _isa_probe(os.environ.get(cpu_tuning.ONEDNN_ENV, "default")) or {}
    info = {"cpu_model": m["model_name"], "cpu": m["cpu"], "cores": m["cores"], "cpu_mhz": m["mhz"],
            "isa": {16: "avx512", 8: "avx2+fma", 4: "sse"}[lanes], "mindspore": m["mindspore"],
            "onednn_isa": applied_isa["isa"], "onednn_isa_reason": applied_isa["reason"],
            "onednn_conv_kernel": seen.get("impl"), "python": platform.python_version(),
            "numpy": np.__version__, "load_average": list(os.getloadavg())}
    if m["mhz"]:  # 2 FMA pipes x lanes x 2 FLOPs per cycle per core
        info["nominal_peak_gflops"] = round(m["cores"] * m["mhz"] / 1e3 * 4 * lanes, 1)
    return info


def matmul_peak(n, repeats):
    """Best fp32 GFLOP/s of an n x n matmul with numpy (OpenBLAS) and with MindSpore."""
    import mindspore as ms
    import mindspore.ops as ops
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    ta, tb = ms.Tensor(a), ms.Tensor(b)
    out = {"size": n}
    for key, fn in (("numpy_gflops", lambda: a @ b),
                    ("mindspore_gflops", lambda: ops.matmul(ta, tb).asnumpy())):
        fn()
        out[key] = 2.0 * n ** 3 / min(_timed(fn) for _ in range(repeats)) / 1e9
    out["onednn_conv_gflops"] = _direct_conv_gflops()
    out["peak_gflops"] = max(v for k, v in out.items() if k.endswith("_gflops") and v)
    return out


def _direct_conv_gflops():
    """GFLOP/s of oneDNN's direct (blocked-layout) convolution on this machine: the ISA probe's
    3x3 convolution (``kernel_probe.ISA_SHAPE``), timed on one thread in a child process, the
    faster of uncapped and capped at AVX2, times the usable cores; None where the probe cannot
    run. On AVX-512 CPUs it is about twice the matmul (benchmarks/README.md), and the ConvLSTM
    rows, ~95 % of whose step are such convolutions, would otherwise show an MFU above 100 %."""
    from src.kernels.probe import ISA_SHAPE
    times = [r.get("direct_ms") for r in map(_isa_probe, ("default", "AVX2")) if r]
    times = [t for t in times if t]
    if not times:
        return None
    n, c, o, k, h, w = ISA_SHAPE
    return 2.0 * n * o * c * k * k * h * w / (min(times) / 1e3) / 1e9 * cpu_tuning.machine_info()["cores"]


# --------------------------------------------------------------------------- training rows
# name: (config file, overrides, --quick overrides, description)
TRAIN_ROWS = {
    "tinydarknet_32": ("cifar10_config_cpu.yaml", dict(batch_size=32, image_size=32), dict(batch_size=4),
                       "Tiny-DarkNet, CIFAR-10 32x32, 10 classes, batch 32"),
    "tinydarknet_224": ("imagenet_config_cpu.yaml", dict(batch_size=32, image_size=224),
                        dict(batch_size=2, image_size=32, num_classes=10),
                        "Tiny-DarkNet, ImageNet 224x224, 1000 classes, batch 32"),
    "convlstm_paper": ("mmnist_config.yaml", dict(batch_size=4),
                       dict(batch_size=1, hidden_channels=[8, 8], input_frames=2, output_frames=2,
                            image_size=16),
                       "ConvLSTM 5x5 128-64-64, 16x16x16 patches, 10+10 frames, batch 4"),
    "convlstm_cpu": ("mmnist_config_cpu.yaml", {},
                     dict(batch_size=1, hidden_channels=[4], input_frames=2, output_frames=2, image_size=16),
                     "ConvLSTM CPU config (config/mmnist_config_cpu.yaml), batch 8"),
}
CPU_RUN = dict(device_target="CPU", epoch_size=1, warmup_epochs=0)


def row_config(name, quick, **changes):
    """The config of a training row (``--quick``: tiny sizes)."""
    from src.model_utils.config import get_config
    config_file, overrides, quick_overrides, _ = TRAIN_ROWS[name]
    argv = ["--config_path", os.path.join(ROOT, "config", config_file)]
    values = {**CPU_RUN, **overrides, **(quick_overrides if quick else {}), **changes}
    for key, value in values.items():
        argv += [f"--{key}", ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)]
    return get_config(argv)


def _rates(batch, step_times, warmup):
    measured = step_times[warmup:] if len(step_times) > warmup else step_times[-1:]
    median, best = float(np.median(measured)), float(np.min(measured))
    return {"first_step_s": float(step_times[0]), "warmup_steps": warmup, "measured_steps": len(measured),
            "step_s_median": median, "step_s_best": best, "samples_per_s": batch / median,
            "samples_per_s_best": batch / best}


def mindspore_steps(cfg, warmup, steps):
    """``Model.train`` over ``warmup + steps`` in-memory batches, as train.py builds it."""
    import mindspore as ms
    import mindspore.dataset as ds
    from mindspore.train import Callback
    from src.models import create_model_from_config
    from src.precision import precision_settings
    from src.tasks import create_task
    from src.trainer import build_training

    class StepTimer(Callback):
        def __init__(self):
            super().__init__()
            self.ends, self.cpu = [], []

        def on_train_step_end(self, run_context):
            self.ends.append(time.perf_counter())
            self.cpu.append(time.process_time())

    task = create_task(cfg)
    x, y = task.example_batch(cfg.batch_size, np.random.default_rng(0))
    data = ds.NumpySlicesDataset({"x": x, "y": y}, shuffle=False).batch(cfg.batch_size).repeat(warmup + steps)
    network = create_model_from_config(cfg, log=_log)
    precision = precision_settings(cfg.device_target, cfg.amp_level, cfg.loss_scale)
    model, _, _, step_callbacks = build_training(cfg, network, network.trainable_params(),
                                                 task.create_loss(), warmup + steps, *precision)
    timer = StepTimer()
    start = time.perf_counter()
    # the step's own callbacks too (scheduled sampling's probability), as train.py runs them
    model.train(1, data, callbacks=step_callbacks + [timer], dataset_sink_mode=False)
    first = max(0, min(warmup - 1, len(timer.ends) - 2))  # cores busy over the timed steps
    busy = (timer.cpu[-1] - timer.cpu[first]) / max(timer.ends[-1] - timer.ends[first], 1e-9)
    return dict(_rates(cfg.batch_size, np.diff([start] + timer.ends), warmup), cpu_cores_busy=busy,
                params=int(sum(p.size for p in network.trainable_params())),
                threads=ms.get_context("runtime_num_threads"))


def torch_steps(cfg, warmup, steps, threads):
    """The same steps with the PyTorch eager peer: same architecture, optimizer, loss, batch."""
    from benchmarks import torch_peer
    from src.models import get_model_spec
    from src.tasks import create_task
    x, y = create_task(cfg).example_batch(cfg.batch_size, np.random.default_rng(0))
    peer = torch_peer.create_peer(cfg.model_name, **get_model_spec(cfg.model_name).kwargs_from_config(cfg))
    cpu, start = time.process_time(), time.perf_counter()
    res = torch_peer.train_step_rate(
        peer, x, y, optimizer=cfg.optimizer, lr=cfg.lr, loss=cfg.loss, warmup=warmup, steps=steps,
        threads=threads, label_smoothing=cfg.label_smoothing,
        # the timed steps are the first ones: scheduled sampling (if any) still reads true frames
        truth_prob=1.0 if getattr(cfg, "scheduled_sampling_steps", 0) else None,
        weight_decay=cfg.weight_decay,
        momentum=cfg.momentum, rmsprop_decay=cfg.rmsprop_decay, eps=cfg.opt_eps,
        filter_bias_and_bn=cfg.filter_bias_and_bn)
    res["cpu_cores_busy"] = (time.process_time() - cpu) / (time.perf_counter() - start)  # all steps
    return res


def train_row(args, name, framework, conv_impl):
    """One training row in this process."""
    cfg = row_config(name, args.quick, conv_impl=conv_impl if framework == "mindspore" else "native")
    flops = training_flops(FORWARD_FLOPS[cfg.model_name](cfg))
    scale = 8 if flops * cfg.batch_size < 5e9 else 3 if flops * cfg.batch_size < 50e9 else 1
    warmup, steps = (1, 2) if args.quick else (args.warmup, max(2, args.steps * scale))
    what = TRAIN_ROWS[name][3] + (" (--quick sizes)" if args.quick else "")
    _log(f"train {name} ({framework}, {conv_impl}): {what} ...")
    res = mindspore_steps(cfg, warmup, steps) if framework == "mindspore" else \
        torch_steps(cfg, warmup, steps, args.threads)
    _log(f"  {res['samples_per_s']:.2f} samples/s, first step {res['first_step_s']:.1f} s")
    return {"name": name, "what": what, "framework": framework, "conv_impl": conv_impl,
            "model": cfg.model_name, "config": TRAIN_ROWS[name][0], "batch_size": cfg.batch_size,
            "image_size": cfg.image_size, "optimizer": cfg.optimizer, "loss": cfg.loss,
            "train_gflop_per_sample": flops / 1e9, "achieved_gflops": flops * res["samples_per_s"] / 1e9,
            "mfu": None, **res}


def train_row_subprocess(args, names, framework, conv_impl):
    """A list of rows, one per name, run in a fresh process (earlier rows cannot slow them)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--row_process", "--rows", ",".join(names),
           "--conv_impl", conv_impl, "--framework", framework, "--warmup", str(args.warmup),
           "--steps", str(args.steps), "--threads", str(args.threads)] + (["--quick"] if args.quick else [])
    env = dict(os.environ)
    if framework == "torch" or not _USER_CAP:
        # PyTorch's own oneDNN runs as a PyTorch user gets it: no MindSpore cap; a MindSpore row
        # makes its own choice for its conv_impl (a cap the user set is kept)
        env.pop(cpu_tuning.ONEDNN_ENV, None)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or not proc.stdout.strip():
        return [{"name": name, "framework": framework, "conv_impl": conv_impl,
                 "error": f"row process failed (rc {proc.returncode}): {proc.stderr.strip()[-300:]}"}
                for name in names]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_training(args, peak):
    """Rows x frameworks x kernels, interleaved per round; the best round of each is kept."""
    names = [n for n in TRAIN_ROWS if not args.rows or n in args.rows]
    jobs = [(n, "mindspore", c) for n in names for c in args.conv_impl]
    if args.peer:
        jobs = [j for n in names for j in [x for x in jobs if x[0] == n] + [(n, "torch", "eager")]]
    best = {}
    for _ in range(args.rounds):
        # PyTorch rows always run apart: beside MindSpore's thread pool its threads crawl (~50x);
        # --quick runs all of them in one process (a start-up each would be most of its time)
        peer_rows = dict(zip(names, train_row_subprocess(args, names, "torch", "eager"))) \
            if args.quick and args.peer else {}
        for job in jobs:
            if job[1] == "torch" and job[0] in peer_rows:
                row = peer_rows[job[0]]
            elif args.isolate or job[1] == "torch":
                row = train_row_subprocess(args, [job[0]], *job[1:])[0]
            else:
                row = train_row(args, *job)
            old = best.get(job, {"error": ""})
            if "error" in old or ("error" not in row and row["samples_per_s"] > old["samples_per_s"]):
                best[job] = row
    rows = [best[j] for j in jobs]
    peers = {r["name"]: r for r in rows if r["framework"] == "torch" and "error" not in r}
    for row in rows:
        if "error" in row:
            continue
        row["mfu"] = row["achieved_gflops"] / peak if peak else None
        peer = peers.get(row["name"])
        if peer and row["framework"] == "mindspore":
            if peer["params"] != row["params"]:
                raise AssertionError(f"{row['name']}: PyTorch peer has {peer['params']} parameters, "
                                     f"MindSpore {row['params']}: not the same architecture")
            row["peer_samples_per_s"] = peer["samples_per_s"]
            row["ratio_to_peer"] = row["samples_per_s"] / peer["samples_per_s"]
    return rows


# --------------------------------------------------------------------------- inference latency
def run_export(args):
    """Export each row's network (batch 1) to MindIR and ONNX; time both with src.infer's runners."""
    import mindspore as ms
    from mindspore.onnx import export as onnx_export
    from src.infer import create_runner
    from src.models import create_model_from_config
    from src.tasks import create_task
    tmp = tempfile.mkdtemp(prefix="bench_export_")
    rows = []
    try:
        for name in EXPORT_ROWS:
            cfg = row_config(name, args.quick, batch_size=1)
            x = create_task(cfg).example_batch(1, np.random.default_rng(0))[0]
            _log(f"export {name} {x.shape} ...")
            path, row = os.path.join(tmp, name), {"name": name, "input_shape": list(x.shape)}
            nets = [create_model_from_config(cfg, export=True) for _ in range(2)]  # one Cell per export
            ms.load_param_into_net(nets[1], nets[0].parameters_dict())
            for net in nets:
                net.set_train(False)
            ms.export(nets[0], ms.Tensor(x), file_name=path, file_format="MINDIR")
            onnx_export(nets[1], ms.Tensor(x), file_name=path + ".onnx", input_names=["input"])
            outputs = {}
            for key, file in (("mindir", path + ".mindir"), ("onnx", path + ".onnx")):
                runner = create_runner(file)
                prepared = runner.prepare(x)
                outputs[key] = runner.predict(prepared)[0]
                times = [_timed(lambda: runner.predict(prepared)) for _ in range(3 if args.quick else 20)]
                row[f"{key}_latency_ms_median"] = 1e3 * float(np.median(times))
                row[f"{key}_latency_ms_best"] = 1e3 * float(np.min(times))
                row[f"{key}_runtime"] = runner.name
            row["onnx_max_abs_diff"] = float(np.abs(outputs["onnx"] - outputs["mindir"]).max())
            rows.append(row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


@exit_on_user_error
def main(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, in one process (the test)")
    parser.add_argument("--out", default="", help="write the results as JSON to this file")
    parser.add_argument("--markdown", action="store_true", help="also print the tables as markdown")
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections: " + ",".join(SECTIONS))
    parser.add_argument("--rows", default="", help="training rows to run (comma list; default all)")
    parser.add_argument("--conv_impl", default=",".join(CONV_IMPLS),
                        help="kernel(s) of the MindSpore rows: comma list of " + ",".join(CONV_IMPLS))
    parser.add_argument("--peer", default="", choices=("", "torch"), help="the rows also in PyTorch eager")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; the best is kept")
    parser.add_argument("--warmup", type=int, default=3, help="training steps not timed")
    parser.add_argument("--steps", type=int, default=6, help="timed steps (x8 < 5 GFLOP/step, x3 < 50)")
    parser.add_argument("--peak_size", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=0, help="threads of both frameworks (0: default)")
    parser.add_argument("--onednn_isa", default="auto", help="oneDNN ISA cap: auto | default | an ISA name")
    parser.add_argument("--framework", default="mindspore", choices=("mindspore", "torch"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--row_process", action="store_true", help=argparse.SUPPRESS)  # rows, JSON out
    args = parser.parse_args(argv)
    sections = [s for s in args.only.split(",") if s]
    if set(sections) - set(SECTIONS):
        parser.error(f"unknown section(s) in --only: choose from {','.join(SECTIONS)}")
    args.rows = [r for r in args.rows.split(",") if r]
    args.conv_impl = [c for c in args.conv_impl.split(",") if c]
    if args.framework == "mindspore" and (not args.conv_impl or set(args.conv_impl) - set(CONV_IMPLS)):
        parser.error(f"--conv_impl: a comma list of {', '.join(CONV_IMPLS)}")
    if args.peer == "torch" and importlib.util.find_spec("torch") is None:
        parser.error("--peer torch needs PyTorch (not a requirement of this repo): pip install torch")
    args.isolate = not (args.quick or args.row_process)  # --quick: every row in this process

    if not (args.row_process and args.framework == "torch"):
        # before MindSpore is imported; a training row chooses for its own conv_impl, this process
        # for the native convolutions of the exported graphs it times
        from src.kernels import onednn_conv
        applied = cpu_tuning.apply_onednn_isa(
            args.onednn_isa, log=_log, conv_impl=args.conv_impl[0] if args.row_process else "native",
            direct_kernel=onednn_conv.availability)
        import mindspore as ms
        ms.set_device("CPU")
        ms.set_context(mode=ms.GRAPH_MODE)
        if args.threads:
            ms.set_context(runtime_num_threads=args.threads)
    if args.row_process:  # the training rows, as a JSON list on the last line, for the parent
        rows = [train_row(args, name, args.framework, args.conv_impl[0]) for name in args.rows]
        for row in rows if args.framework == "mindspore" else []:
            row["onednn_isa"] = applied["isa"]
        print(json.dumps(rows))
        return None
    result = {"quick": args.quick, "conv_impl": args.conv_impl, "peer": args.peer or None,
              "rounds": args.rounds, "synthetic_data": True, "started": time.strftime("%Y-%m-%d %H:%M:%S"),
              "threads": args.threads or "default", "machine": machine_info(applied)}
    if "peak" in sections:
        result["peak"] = matmul_peak(512 if args.quick else args.peak_size, 3 if args.quick else 4)
    if "train" in sections:
        result["train"] = run_training(args, (result.get("peak") or {}).get("peak_gflops"))
    if "data" in sections:
        result["data"] = run_data(args.quick, result.get("train", []), log=_log)
    if "export" in sections:
        result["export"] = run_export(args)
    result["machine"]["load_average_end"] = list(os.getloadavg())
    print(render(result))
    if args.markdown:
        print("\n" + render(result, markdown=True))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=1)
        print(f"\nwrote {args.out}")
    return result


if __name__ == "__main__":
    main()
