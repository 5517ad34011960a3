"""CPU inference runner for an exported model: the Python twin of ``ascend310_infer/out/main``.

    python -m src.infer --mindir_path tinydarknet.mindir --input0_path preprocess_Result/00_data \\
        [--output_path ./result_Files] [--time_path ./time_Result] [--warmup 3] [--device_target CPU]
    python -m src.infer --model_path tinydarknet.onnx --input0_path preprocess_Result/00_data

Two runtimes, chosen by the file's extension (or ``--backend``): a ``.mindir`` runs in MindSpore
(``nn.GraphCell``; also on GPU / Ascend with ``--device_target``), a ``.onnx`` (export.py
``--file_format ONNX``, the same weights) in onnxruntime on CPU, which is the faster CPU runtime
for these networks (see the README's inference section). ``--model_path`` is another name for
``--mindir_path``.

Same flags, same files as the C++ program: every ``*.bin`` of ``--input0_path`` (name order) holds
one raw network input whose size must match the model's input (shape and dtype are read from the
model file itself); output k of ``x.bin`` goes to ``<output_path>/x_k.bin`` (raw bytes, e.g.
float32); the latency summary goes to ``<time_path>/test_perform_static.txt``, whose first line
has the C++ program's wording (``NN inference cost average time: X ms of infer_count N``). The
runner adds the median, the 90th percentile and the runtime on a second line. Times are per
predict call (network + copy of the outputs to the host), measured after ``--warmup`` untimed
calls on the first input (the first call compiles the graph or plans the session).
"""
import os
import sys
import time

import numpy as np

from src.kernels.tuning import apply_onednn_isa
from src.model_utils.errors import (ArgumentParser, UserError, atomic_write_text, exit_on_user_error,
                                    writing)

TIME_FILE = "test_perform_static.txt"
BACKENDS = ("mindspore", "onnxruntime")
ONNX_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
              "tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(uint8)": np.uint8,
              "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


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


def backend_for(path, backend="auto"):
    """``mindspore`` or ``onnxruntime``: ``backend`` if given, else from the extension (.onnx)."""
    if backend not in ("auto",) + BACKENDS:
        raise UserError(f"--backend must be auto, {' or '.join(BACKENDS)}, got '{backend}'")
    if backend != "auto":
        return backend
    return "onnxruntime" if str(path).lower().endswith(".onnx") else "mindspore"


def onnx_session(path, threads=0):
    """An onnxruntime CPU session for ``path`` (``threads`` 0 = onnxruntime's default)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UserError("the onnxruntime backend needs onnxruntime: pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    try:
        return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not an ONNX model onnxruntime can load: {first}") from None


def onnx_io(session):
    """[(name, shape tuple, numpy dtype)] of an onnxruntime session's inputs and outputs."""
    def describe(values):
        out = []
        for value in values:
            if value.type not in ONNX_TYPES:
                raise UserError(f"ONNX input/output {value.name} has type {value.type}, which this "
                                "runner cannot feed")
            if not all(isinstance(d, int) for d in value.shape):
                raise UserError(f"ONNX {value.name} has a dynamic shape {value.shape}: export with a "
                                "fixed batch (export.py --batch_size 1)")
            out.append((value.name, tuple(value.shape), np.dtype(ONNX_TYPES[value.type])))
        return out

    return describe(session.get_inputs()), describe(session.get_outputs())


class _MindSporeRunner:
    """A MindIR in ``nn.GraphCell``: ``prepare`` makes the Tensor (untimed), ``predict`` runs."""

    def __init__(self, path, device_target, device_id):
        self.inputs = mindir_io(path)[0]
        import mindspore as ms
        import mindspore.nn as nn
        from src.model_utils.device import setup_device
        setup_device(device_target, device_id, "GRAPH")
        self.ms = ms
        self.net = nn.GraphCell(ms.load(path))
        self.name = f"MindSpore {ms.__version__} on {device_target}"

    def prepare(self, array):
        return self.ms.Tensor(array)

    def predict(self, tensor):
        out = self.net(tensor)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return [o.asnumpy() for o in out]


class _OnnxRuntimeRunner:
    """An ONNX model in an onnxruntime CPU session."""

    def __init__(self, path, device_target):
        if device_target != "CPU":
            raise UserError(f"the onnxruntime backend runs on CPU, not {device_target}: pass "
                            "--device_target CPU or a .mindir model")
        self.session = onnx_session(path)  # a missing onnxruntime is reported here
        import onnxruntime as ort
        self.inputs = onnx_io(self.session)[0]
        self.name = f"onnxruntime {ort.__version__} on CPU"

    def prepare(self, array):
        return array

    def predict(self, array):
        return self.session.run(None, {self.inputs[0][0]: array})


def create_runner(path, backend="auto", device_target="CPU", device_id=0):
    """The runner for a model file: ``.inputs``, ``.name``, ``prepare(array)``, ``predict(x)``."""
    if backend_for(path, backend) == "onnxruntime":
        return _OnnxRuntimeRunner(path, device_target)
    return _MindSporeRunner(path, device_target, device_id)


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


def format_latency(stats, warmup, batch=1, runtime=None):
    """The lines of ``test_perform_static.txt``; the first is the C++ program's (``%g``)."""
    where = f", {runtime}" if runtime else ""
    return [f"NN inference cost average time: {stats['mean']:g} ms of infer_count {stats['count']}",
            f"NN inference latency p50: {stats['p50']:g} ms, p90: {stats['p90']:g} ms "
            f"(batch {batch}, {warmup} warm-up call(s) excluded{where})"]


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


def run_inference(model_path, input_dir, output_path="./result_Files", time_path="./time_Result",
                  warmup=3, device_target="CPU", device_id=0, log=print, backend="auto"):
    """Run every ``.bin`` of ``input_dir`` through the model (.mindir in MindSpore, .onnx in
    onnxruntime, or as ``backend`` says); write the outputs and the latency file.

    Returns {"outputs": [written files], "latency": {"mean", "p50", "p90", "count"},
    "time_file": path, "input": (name, shape, dtype), "runtime": str}.
    """
    if not model_path or not os.path.isfile(model_path):
        raise UserError(f"model file not found: --mindir_path='{model_path}'")
    files = list_bin_files(input_dir)
    runner = create_runner(model_path, backend, device_target, device_id)
    if len(runner.inputs) != 1:
        raise UserError(f"expected a single-input model, got {len(runner.inputs)} inputs")
    name, shape, dtype = runner.inputs[0]
    nbytes = int(np.prod(shape)) * dtype.itemsize
    if log:
        log(f"model input '{name}' shape ({','.join(map(str, shape))}), {nbytes} bytes; "
            f"runtime {runner.name}")
    os.makedirs(output_path, exist_ok=True)
    os.makedirs(time_path, exist_ok=True)

    def load(path):
        data = np.fromfile(path, dtype=np.uint8)
        if data.size != nbytes:
            raise UserError(f"{path} has {data.size} bytes but model input '{name}' "
                            f"({','.join(map(str, shape))}) needs {nbytes}")
        return runner.prepare(data.view(dtype).reshape(shape))

    first = load(files[0])
    for _ in range(max(0, int(warmup))):
        runner.predict(first)
    times, written = [], []
    for path in files:
        model_input = load(path)
        start = time.perf_counter()
        outputs = runner.predict(model_input)
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
    lines = format_latency(stats, warmup, shape[0] if shape else 1, runner.name)
    time_file = os.path.join(time_path, TIME_FILE)
    atomic_write_text(time_file, "\n".join(lines) + "\n")
    if log:
        for line in lines:
            log(line)
    return {"outputs": written, "latency": stats, "time_file": time_file,
            "input": (name, shape, dtype), "runtime": runner.name}


def build_parser():
    parser = ArgumentParser(
        prog="python -m src.infer",
        description="Run an exported model (.mindir in MindSpore, .onnx in onnxruntime) over "
                    "preprocessed .bin inputs (flags as ascend310_infer/out/main).")
    parser.add_argument("--mindir_path", "--model_path", dest="mindir_path", required=True,
                        help="path of the exported model: .mindir (MindSpore) or .onnx (onnxruntime)")
    parser.add_argument("--backend", default="auto", choices=("auto",) + BACKENDS,
                        help="runtime; auto: onnxruntime for .onnx files, MindSpore otherwise")
    parser.add_argument("--input0_path", required=True, help="directory of preprocessed input .bin files")
    parser.add_argument("--output_path", default="./result_Files", help="directory for the output .bin files")
    parser.add_argument("--time_path", default="./time_Result", help="directory for the latency summary")
    parser.add_argument("--device_id", type=int, default=0, help="device index (ignored on CPU)")
    parser.add_argument("--device_target", default="CPU", choices=["CPU", "GPU", "Ascend"],
                        help="MindSpore backend that runs the graph")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls before timing")
    parser.add_argument("--onednn_isa", default="auto",
                        help="oneDNN ISA cap for the MindSpore backend: auto (measured once per "
                             "machine and cached), default, or a oneDNN ISA name such as AVX2")
    return parser


@exit_on_user_error
def main(argv=None):
    args = build_parser().parse_args(argv)
    if backend_for(args.mindir_path, args.backend) == "mindspore":
        # before MindSpore runs a oneDNN kernel; an exported graph has native convolutions
        apply_onednn_isa(args.onednn_isa, conv_impl="native")
    run_inference(args.mindir_path, args.input0_path, args.output_path, args.time_path,
                  warmup=args.warmup, device_target=args.device_target, device_id=args.device_id,
                  backend=args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
