"""The tables of ``benchmarks/benchmark.py``'s result (plain text or markdown)."""


def _f(value, spec, unit=""):
    return "-" if value is None else format(value, spec) + unit


def _train_cells(r):
    if "error" in r:
        return [r["name"], r["framework"], r["conv_impl"], "error: " + r["error"][:60]] + [""] * 9
    return [r["name"], r["framework"], r["conv_impl"], r.get("onednn_isa", "-"), str(r["batch_size"]),
            f"{r['samples_per_s']:.2f}",
            _f(r.get("ratio_to_peer"), ".2f", "x"), f"{r['achieved_gflops']:.1f}",
            _f(r["mfu"] and 100 * r["mfu"], ".1f", "%"), f"{r['step_s_median']:.3f}",
            f"{r['first_step_s']:.1f}", f"{r['cpu_cores_busy']:.2f}", str(r["params"])]


TABLES = [  # (result key, headers, cells of one row)
    ("train", ["training row", "framework", "conv", "oneDNN ISA", "batch", "samples/s", "vs torch", "GFLOP/s", "MFU",
               "step (s)", "1st step (s)", "cores busy", "params"], _train_cells),
    ("data", ["data pipeline (train split)", "samples/s", "feeds", "training samples/s", "ratio"],
     lambda r: [r["name"], f"{r['samples_per_s']:.1f}", r["feeds"], _f(r.get("train_samples_per_s"), ".2f"),
                _f(r.get("ratio_to_train"), ".1f", "x")]),
    ("export", ["batch-1 latency", "input", "MindIR in MindSpore (ms)", "ONNX in onnxruntime (ms)"],
     lambda r: [r["name"], "x".join(map(str, r["input_shape"])), f"{r['mindir_latency_ms_median']:.2f}",
                f"{r['onnx_latency_ms_median']:.2f}"]),
]


def render(result, markdown=False):
    m, peak = result["machine"], result.get("peak")
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores ({m['isa']}), MindSpore {m['mindspore']}; oneDNN "
             f"ISA {m['onednn_isa']} ({m['onednn_isa_reason']}), 3x3 conv kernel {m['onednn_conv_kernel']}; "
             f"threads {result.get('threads')}; load average at start {m['load_average'][0]:.2f}. "
             "All data synthetic."]
    if peak:
        conv = peak.get("onednn_conv_gflops")
        lines.append(f"fp32 peak: matmul {peak['size']}^3 numpy {peak['numpy_gflops']:.1f}, MindSpore "
                     f"{peak['mindspore_gflops']:.1f}; oneDNN direct convolution (1 thread x cores) "
                     f"{'-' if conv is None else format(conv, '.1f')} GFLOP/s (nominal "
                     f"{m.get('nominal_peak_gflops')}); MFU is against the highest")
    for key, headers, cells in TABLES:
        rows = [cells(r) for r in result.get(key) or []]
        if not rows:
            continue
        lines.append("")
        if markdown:
            lines += ["| " + " | ".join(headers) + " |", "|---" + "|---:" * (len(headers) - 1) + "|"]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
        else:
            widths = [max(len(x) for x in col) for col in zip(headers, *rows)]
            lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
                      for r in [headers] + rows]
    return "\n".join(lines)
