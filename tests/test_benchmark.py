"""``benchmarks/benchmark.py --quick`` runs end to end and reports every row with positive numbers
(with ``--peer torch`` when PyTorch is installed: the same rows in PyTorch, equal parameter counts).

No timing assertions: the machine is shared and the numbers are noisy; only the structure of the
JSON (and that every measured quantity is a positive number) is checked.
"""
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TRAIN_ROWS = ("tinydarknet_32", "tinydarknet_224", "convlstm_paper", "convlstm_cpu")
DATA_ROWS = ("cifar10_train_32", "imagefolder_train_224", "moving_mnist_train")
EXPORT_ROWS = ("tinydarknet_224", "tinydarknet_32", "convlstm_paper")
CONV_IMPLS = ("auto", "native", "unfold", "onednn")  # the benchmark's default --conv_impl
# the kernels the quick run asks for: the measured choice and one forced C++ kernel (forcing
# native / unfold goes the same way, a config value per row; tests/test_kernel_plan.py covers the
# forced settings): each MindSpore row is a training-graph compile, the bulk of this test's time
QUICK_IMPLS = ("auto", "onednn")


def _positive(row, *keys):
    for key in keys:
        value = row.get(key)
        assert isinstance(value, (int, float)) and math.isfinite(value) and value > 0, \
            f"{row.get('name')}: {key} = {value!r}"


def test_benchmark_quick(tmp_path):
    out = tmp_path / "bench.json"
    try:
        import torch  # noqa: F401  (not a requirement: the peer rows run when it is installed)
        peer = ["--peer", "torch"]
    except ImportError:
        peer = []
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "benchmark.py"), "--quick",
                           "--conv_impl", ",".join(QUICK_IMPLS), "--out", str(out)] + peer,
                          cwd=str(tmp_path), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["quick"] is True and result["synthetic_data"] is True
    machine = result["machine"]
    assert machine["cores"] >= 1 and machine["cpu_model"] and machine["onednn_isa"]
    assert machine["onednn_conv_kernel"]  # what oneDNN ran under the applied ISA setting

    _positive(result["peak"], "numpy_gflops", "mindspore_gflops", "peak_gflops")

    # one row per model and convolution kernel asked for [+ the torch peer]
    assert result["conv_impl"] == list(QUICK_IMPLS)
    train = {(r["name"], r["conv_impl"]): r for r in result["train"]}
    expected = {(n, c) for n in TRAIN_ROWS for c in QUICK_IMPLS + (("eager",) if peer else ())}
    assert set(train) == expected, train.keys()
    for (name, impl), row in train.items():
        assert "error" not in row, row
        _positive(row, "samples_per_s", "first_step_s", "step_s_median", "train_gflop_per_sample",
                  "cpu_cores_busy", "achieved_gflops", "mfu", "params")
        assert row["mfu"] < 1.5  # model FLOPs cannot beat the machine by much (sanity of the count)
        if peer and impl != "eager":
            torch_row = train[(name, "eager")]
            assert torch_row["framework"] == "torch" and torch_row["params"] == row["params"]
            assert row["ratio_to_peer"] == row["samples_per_s"] / torch_row["samples_per_s"]

    data = {r["name"]: r for r in result["data"]}
    assert set(data) == set(DATA_ROWS), data.keys()
    for row in data.values():
        _positive(row, "samples_per_s", "batches", "train_samples_per_s", "ratio_to_train")
        assert row["train_conv_impl"] in CONV_IMPLS

    export = {r["name"]: r for r in result["export"]}
    assert set(export) == set(EXPORT_ROWS), export.keys()
    for row in export.values():
        assert "onnx_error" not in row, row
        _positive(row, "mindir_latency_ms_median", "onnx_latency_ms_median")
        assert row["onnx_max_abs_diff"] < 1e-3

    # the table went to stdout
    assert "samples/s" in proc.stdout and "MFU" in proc.stdout
    assert "vs torch" in proc.stdout


def test_default_rows_are_every_kernel():
    """Without --conv_impl a benchmark row runs in every kernel (the quick test asks for two)."""
    from benchmarks import benchmark
    assert benchmark.CONV_IMPLS == CONV_IMPLS


def test_convlstm_flops_count_every_convolution_of_every_step():
    """The FLOP formula agrees with the network's list of convolutions: the paper's network runs
    the encoder's per input frame, the forecaster's and the head per predicted frame; the stack
    runs its own and the head at every one of T_in + T_out - 1 steps (training)."""
    from benchmarks.flops import conv_flops, convlstm_forward_flops
    from src.kernels.plan import trace_sites
    from src.models.convlstm import ConvLSTM
    args = dict(hidden_channels=(8, 6), input_kernel=3, state_kernel=3, patch_size=4, image_size=32)

    def conv_shapes(image_size, **kwargs):  # the network's convolutions, as src.kernels finds them
        sites = trace_sites(ConvLSTM(input_frames=2, output_frames=2, **kwargs),
                            (1, 2, 1, image_size, image_size))
        return [key for kind, key in sites.values() if kind == "conv"]

    def total(shapes):
        return sum(conv_flops(1, cin, cout, k, h, w) for cin, cout, k, h, w in shapes)

    for feed in ("none", "prediction"):
        shapes = conv_shapes(forecaster_input=feed, **args)
        encoder, forecaster, head = shapes[:2], shapes[2:-1], shapes[-1:]
        assert convlstm_forward_flops(input_frames=5, output_frames=3, forecaster_input=feed, **args) == \
            5 * total(encoder) + 3 * (total(forecaster) + total(head))
    shapes = conv_shapes(forecaster_input="prediction", structure="stack", **args)
    assert len(shapes) == 3
    assert convlstm_forward_flops(input_frames=5, output_frames=3, forecaster_input="prediction",
                                  structure="stack", **args) == 7 * total(shapes)
    shapes = conv_shapes(forecaster_input="prediction", structure="stack", head_kernel=3, **args)
    assert shapes[-1] == (14, 16, 3, 8, 8)
    assert convlstm_forward_flops(input_frames=5, output_frames=3, forecaster_input="prediction",
                                  structure="stack", head_kernel=3, **args) == 7 * total(shapes)


def test_profile_summary_counts_overlap_and_gaps(tmp_path):
    """Two kernels overlapping for 1 ms, then a 2 ms gap, then one more kernel (2 steps)."""
    from benchmarks.profile_step import read_timestamps, summarize
    trace = tmp_path / "cpu_op_execute_timestamp_0.txt"
    ms_ = 1_000_000
    trace.write_text(f"Default/a/Conv2D-op1;HostCpuOps;{0},3.0,0 {10 * ms_},1.0,0 \n"
                     f"Default/b/Mul-op7;HostCpuOps;{2 * ms_},2.0,0 \n")
    spans = read_timestamps(str(trace))
    assert len(spans) == 3
    r = summarize(spans, steps=2)
    # wall 0..11 ms; busy 0..4 and 10..11 = 5 ms; overlap 2..3 = 1 ms; gaps 6 ms; per step / 2
    assert r["wall_ms"] == 5.5 and r["busy_ms"] == 2.5 and r["overlap_ms"] == 0.5
    assert r["gap_ms"] == 3.0 and r["kernel_sum_ms"] == 3.0 and r["kernels_per_step"] == 1.5
    assert r["by_type"] == {"Conv2D": 2.0, "Mul": 1.0}


def test_direct_convolution_peak_from_the_isa_probe(monkeypatch):
    """The MFU denominator's convolution figure: the faster of the probe's two blocked-layout times
    (one thread) times the cores; None when neither probe ran (fake probe results, no timing)."""
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    import benchmark
    from src.kernels import tuning as cpu_tuning
    from src.kernels.probe import ISA_SHAPE
    n, c, o, k, h, w = ISA_SHAPE
    flop = 2.0 * n * o * c * k * k * h * w
    probes = {"default": {"ms": 190.0, "direct_ms": 0.5}, "AVX2": {"ms": 1.2, "direct_ms": 1.0}}
    monkeypatch.setattr(cpu_tuning, "measure_isa", lambda isa: probes[isa])
    monkeypatch.setattr(cpu_tuning, "machine_info", lambda: {"cores": 2})
    monkeypatch.setattr(benchmark, "_ISA_PROBES", {})  # the run's probe results
    assert math.isclose(benchmark._direct_conv_gflops(), flop / 0.5e-3 / 1e9 * 2)
    probes["default"] = None  # a probe that failed: the other one
    monkeypatch.setattr(benchmark, "_ISA_PROBES", {})
    assert math.isclose(benchmark._direct_conv_gflops(), flop / 1.0e-3 / 1e9 * 2)
    probes["AVX2"] = {"ms": 1.2, "direct_ms": None}
    monkeypatch.setattr(benchmark, "_ISA_PROBES", {})
    assert benchmark._direct_conv_gflops() is None
