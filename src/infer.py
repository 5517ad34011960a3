"""CPU inference runner for an exported MindIR: the Python twin of ``ascend310_infer/out/main``.

    python -m src.infer --mindir_path tinydarknet.mindir --input0_path preprocess_Result/00_data \\
        [--output_path ./result_Files] [--time_path ./time_Result] [--warmup 3] [--device_target CPU]

Same flags, same files as the C++ program: every ``*.bin`` of ``--input0_path`` (name order) holds
one raw network input whose size must match the MindIR's input (shape and dtype are read from the
MindIR itself); output k of ``x.bin`` goes to ``<output_path>/x_k.bin`` (raw bytes, e.g. float32);
the latency summary goes to ``<time_path>/test_perform_static.txt``, whose first line has the C++
program's wording (``NN inference cost average time: X ms of infer_count N``). The runner adds the
median and 90th percentile on a second line. Times are per ``Predict`` call (network + copy of the
outputs to the host), measured after ``--warmup`` untimed calls on the first input (the first call
compiles the graph). ``--device_target GPU|Ascend`` runs the same MindIR there (``--device_id``).
"""
import os
import sys
import time

import numpy as np

from src.model_utils.errors import ArgumentParser, UserError, atomic_write_text, exit_on_user_error, writing

TIME_FILE = "test_perform_static.txt"


def mindir_io(path):
    """[(name, shape tuple, numpy dtype)] of the inputs and of the outputs declared in a MindIR."""
    from mindspore.train import mind_ir_pb2
    model = mind_ir_pb2.ModelProto()
    try:
        with open(path, "rb") as f:
            model.ParseFromString(f.read())
    except Exception as exc:  # protobuf DecodeError and friends
        raise UserError(f"{path} is not a MindIR file: {str(exc).splitlines()[0] if str(exc) else exc}") \
            from None
    type_enum = mind_ir_pb2.TensorProto.DataType

    def describe(values):
        out = []
        for value in values:
            for tensor in value.tensor:
                name = type_enum.Name(tensor.data_type).lower()
                try:
                    dtype = {"float": np.float32, "double": np.float64}.get(name) or np.dtype(name)
                except TypeError:
                    raise UserError(f"{path}: {value.name} has data type {name}, which this runner "
                                    "cannot feed") from None
                out.append((value.name, tuple(int(d) for d in tensor.dims), np.dtype(dtype)))
        return out

    return describe(model.graph.input), describe(model.graph.output)


def list_bin_files(directory):
    """``*.bin`` regular files of a folder, sorted by name (as the C++ program does)."""
    if not os.path.isdir(directory):
        raise UserError(f"input directory not found: --input0_path='{directory}'")
    names = sorted(n for n in os.listdir(directory)
                   if n.endswith(".bin") and len(n) > 4 and os.path.isfile(os.path.join(directory, n)))
    if not names:
        raise UserError(f"no .bin files in {directory}")
    return [os.path.join(directory, n) for n in names]


def file_stem(path):
    name = os.path.basename(path)
    dot = name.rfind(".")
    return name[:dot] if dot > 0 else name


def latency_summary(times_ms):
    """mean / p50 / p90 (ms) of a list of per-call times."""
    arr = np.asarray(times_ms, dtype=np.float64)
    if arr.size == 0:
        return {"mean": 0.0, "p50": 0.0, "p90": 0.0, "count": 0}
    return {"mean": float(arr.mean()), "p50": float(np.percentile(arr, 50)),
            "p90": float(np.percentile(arr, 90)), "count": int(arr.size)}


def format_latency(stats, warmup, batch=1):
    """The lines of ``test_perform_static.txt``; the first is the C++ program's (``%g``)."""
    return [f"NN inference cost average time: {stats['mean']:g} ms of infer_count {stats['count']}",
            f"NN inference latency p50: {stats['p50']:g} ms, p90: {stats['p90']:g} ms "
            f"(batch {batch}, {warmup} warm-up call(s) excluded)"]


def parse_latency_file(path):
    """Read a ``test_perform_static.txt`` (C++ or Python runner) -> {"mean", "count"[, "p50", "p90"]}."""
    import re
    with open(path, encoding="utf-8") as f:
        text = f.read()
    match = re.search(r"NN inference cost average time: ([0-9.eE+-]+) ms of infer_count (\d+)", text)
    if not match:
        raise ValueError(f"{path}: no 'NN inference cost average time: X ms of infer_count N' line")
    result = {"mean": float(match.group(1)), "count": int(match.group(2))}
    match = re.search(r"p50: ([0-9.eE+-]+) ms, p90: ([0-9.eE+-]+) ms", text)
    if match:
        result.update(p50=float(match.group(1)), p90=float(match.group(2)))
    return result


def run_inference(mindir_path, input_dir, output_path="./result_Files", time_path="./time_Result",
                  warmup=3, device_target="CPU", device_id=0, log=print):
    """Run every ``.bin`` of ``input_dir`` through the MindIR; write outputs and the latency file.

    Returns {"outputs": [written files], "latency": {"mean", "p50", "p90", "count"},
    "time_file": path, "input": (name, shape, dtype)}.
    """
    if not mindir_path or not os.path.isfile(mindir_path):
        raise UserError(f"MindIR file not found: --mindir_path='{mindir_path}'")
    files = list_bin_files(input_dir)
    inputs, _ = mindir_io(mindir_path)
    if len(inputs) != 1:
        raise UserError(f"expected a single-input model, got {len(inputs)} inputs")
    name, shape, dtype = inputs[0]
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if log:
        log(f"model input '{name}' shape ({','.join(map(str, shape))}), {nbytes} bytes")

    import mindspore as ms
    import mindspore.nn as nn
    from src.model_utils.device import setup_device
    setup_device(device_target, device_id, "GRAPH")
    net = nn.GraphCell(ms.load(mindir_path))
    os.makedirs(output_path, exist_ok=True)
    os.makedirs(time_path, exist_ok=True)

    def load(path):
        data = np.fromfile(path, dtype=np.uint8)
        if data.size != nbytes:
            raise UserError(f"{path} has {data.size} bytes but model input '{name}' "
                            f"({','.join(map(str, shape))}) needs {nbytes}")
        return ms.Tensor(data.view(dtype).reshape(shape))

    def predict(tensor):
        out = net(tensor)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return [o.asnumpy() for o in out]

    first = load(files[0])
    for _ in range(max(0, int(warmup))):
        predict(first)
    times, written = [], []
    for path in files:
        tensor = load(path)
        start = time.perf_counter()
        outputs = predict(tensor)
        times.append((time.perf_counter() - start) * 1000.0)
        stem = file_stem(path)
        for k, out in enumerate(outputs):
            out_file = os.path.join(output_path, f"{stem}_{k}.bin")
            with writing(out_file, partial=[out_file]):  # no half-written output on a full disk
                np.ascontiguousarray(out).tofile(out_file)
            written.append(out_file)
        if log:
            log(f"inferred {path} -> {len(outputs)} output(s)")
    stats = latency_summary(times)
    lines = format_latency(stats, warmup, shape[0] if shape else 1)
    time_file = os.path.join(time_path, TIME_FILE)
    atomic_write_text(time_file, "\n".join(lines) + "\n")
    if log:
        for line in lines:
            log(line)
    return {"outputs": written, "latency": stats, "time_file": time_file,
            "input": (name, shape, dtype)}


def build_parser():
    parser = ArgumentParser(
        prog="python -m src.infer",
        description="Run a MindIR over preprocessed .bin inputs on CPU (flags as ascend310_infer/out/main).")
    parser.add_argument("--mindir_path", required=True, help="path of the exported MindIR model")
    parser.add_argument("--input0_path", required=True, help="directory of preprocessed input .bin files")
    parser.add_argument("--output_path", default="./result_Files", help="directory for the output .bin files")
    parser.add_argument("--time_path", default="./time_Result", help="directory for the latency summary")
    parser.add_argument("--device_id", type=int, default=0, help="device index (ignored on CPU)")
    parser.add_argument("--device_target", default="CPU", choices=["CPU", "GPU", "Ascend"],
                        help="MindSpore backend that runs the graph")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before timing")
    return parser


@exit_on_user_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    run_inference(args.mindir_path, args.input0_path, args.output_path, args.time_path,
                  warmup=args.warmup, device_target=args.device_target, device_id=args.device_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
