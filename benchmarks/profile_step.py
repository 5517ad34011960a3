"""Where the time of one training step goes: a MindSpore profiler trace of a benchmark row.

    python benchmarks/profile_step.py --row convlstm_cpu [--steps 5] [--warmup 3] [--out DIR]
    ZOO_GATE_IMPL=fused python benchmarks/profile_step.py --row convlstm_cpu

Runs the row's training step as ``benchmark.py`` does (``Model.train`` over in-memory batches,
built by ``src.trainer.build_training``), records ``--steps`` steps after ``--warmup`` with
``mindspore.profiler`` (CPU activity) and reads the per-kernel timestamps it writes
(``FRAMEWORK/cpu_op_execute_timestamp_0.txt``: kernel, start, duration). Prints the step's wall
time, the kernels' summed time, the time at least one kernel runs ("busy"), the time two or more
run at once ("overlap": kernels that MindSpore's runtime runs concurrently), the time no kernel
runs ("gaps": the runtime's own work between kernels), and the kernel types by total time.
The profiler itself slows kernels down a little: compare variants with the same tool.
"""
import glob
import os
import sys
import time
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from src.model_utils.errors import ArgumentParser, UserError, exit_on_user_error  # noqa: E402


def read_timestamps(path):
    """``[(kernel name, start_ns, end_ns)]`` from a ``cpu_op_execute_timestamp`` file."""
    spans = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.strip().split(";")
            if len(parts) < 3:
                continue
            for record in parts[2].split():
                start, duration_ms = record.split(",")[:2]
                start = int(start)
                spans.append((parts[0], start, start + int(float(duration_ms) * 1e6)))
    return spans


def summarize(spans, steps):
    """Per-step wall / summed / busy / overlap / gap milliseconds and the kernel types."""
    if not spans:
        raise ValueError("the trace holds no kernels")
    events = sorted([(s, 1) for _, s, _ in spans] + [(e, -1) for _, _, e in spans])
    busy = overlap = 0
    running, last = 0, events[0][0]
    for t, delta in events:
        if running >= 1:
            busy += t - last
        if running >= 2:
            overlap += t - last
        running += delta
        last = t
    wall = max(e for _, _, e in spans) - min(s for _, s, _ in spans)
    by_type = defaultdict(float)
    for name, s, e in spans:
        kind = name.rsplit("/", 1)[-1].split("-op")[0]
        by_type[kind] += (e - s) / 1e6 / steps
    ms_per_step = lambda ns: ns / 1e6 / steps  # noqa: E731
    return {"wall_ms": ms_per_step(wall), "kernel_sum_ms": ms_per_step(sum(e - s for _, s, e in spans)),
            "busy_ms": ms_per_step(busy), "overlap_ms": ms_per_step(overlap),
            "gap_ms": ms_per_step(wall - busy), "kernels_per_step": len(spans) / steps,
            "by_type": dict(sorted(by_type.items(), key=lambda kv: -kv[1]))}


def profile_row(row, warmup, steps, out_dir):
    import numpy as np
    import mindspore as ms
    import mindspore.dataset as ds
    from mindspore.profiler import ProfilerActivity
    from mindspore.train import Callback
    from benchmarks.benchmark import row_config
    from src.models import create_model_from_config
    from src.precision import precision_settings
    from src.tasks import create_task
    from src.trainer import build_training

    cfg = row_config(row, quick=False)
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    task = create_task(cfg)
    x, y = task.example_batch(cfg.batch_size, np.random.default_rng(0))
    data = ds.NumpySlicesDataset({"x": x, "y": y}, shuffle=False).batch(cfg.batch_size).repeat(warmup + steps)
    network = create_model_from_config(cfg)
    precision = precision_settings(cfg.device_target, cfg.amp_level, cfg.loss_scale)
    model, _, _, step_callbacks = build_training(cfg, network, network.trainable_params(),
                                                 task.create_loss(), warmup + steps, *precision)
    prof = ms.profiler.profile(activities=[ProfilerActivity.CPU],
                               on_trace_ready=ms.profiler.tensorboard_trace_handler(out_dir))

    class Window(Callback):
        def __init__(self):
            super().__init__()
            self.count, self.times = 0, []

        def on_train_step_begin(self, run_context):
            if self.count == warmup:
                prof.start()
            self.begin = time.perf_counter()

        def on_train_step_end(self, run_context):
            self.count += 1
            if self.count > warmup:
                self.times.append(time.perf_counter() - self.begin)
            if self.count == warmup + steps:
                prof.stop()

    window = Window()
    model.train(1, data, callbacks=step_callbacks + [window], dataset_sink_mode=False)
    return float(np.median(window.times)) * 1e3


@exit_on_user_error
def main(argv=None):
    from benchmarks.benchmark import TRAIN_ROWS
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--row", required=True, choices=sorted(TRAIN_ROWS))
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--out", default="", help="trace folder (default: a new one under /tmp)")
    parser.add_argument("--top", type=int, default=12, help="kernel types listed")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.warmup < 1:
        parser.error("--steps and --warmup must be >= 1")
    out = args.out or os.path.join("/tmp", f"profile_{args.row}_{os.getpid()}")
    from src.kernels.tuning import apply_onednn_isa
    from src.kernels import onednn_conv
    apply_onednn_isa(log=print, direct_kernel=onednn_conv.availability)
    step_ms = profile_row(args.row, args.warmup, args.steps, out)
    files = glob.glob(os.path.join(out, "*", "FRAMEWORK", "cpu_op_execute_timestamp_*.txt"))
    if not files:
        raise UserError(f"no kernel timestamps under {out}: the profiler wrote no CPU trace "
                        "(check that --out is writable and that this MindSpore build has the CPU "
                        "profiler)")
    result = summarize(read_timestamps(max(files, key=os.path.getmtime)), args.steps)
    print(f"{args.row}: step {step_ms:.1f} ms while profiled; per step: kernels "
          f"{result['kernels_per_step']:.0f}, wall {result['wall_ms']:.1f} ms, kernel time summed "
          f"{result['kernel_sum_ms']:.1f} ms, busy {result['busy_ms']:.1f} ms, overlap "
          f"{result['overlap_ms']:.1f} ms, gaps {result['gap_ms']:.1f} ms (trace: {out})")
    for kind, ms_ in list(result["by_type"].items())[:args.top]:
        print(f"  {kind:32s} {ms_:8.2f} ms/step")


if __name__ == "__main__":
    main()
