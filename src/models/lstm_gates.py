"""The ConvLSTM gate math of one step as fused CPU kernels (``ops.Custom(func_type="aot")``).

``lstm_gates(z, c, w_ci, w_cf, w_co) -> (h', c')`` computes what ``ConvLSTMCell.construct`` does
after the gate convolution (``lstm_gates.cc`` has the formulas), forward in one pass over the
state and backward (its bprop) in another, where MindSpore's graph runs ~13 and ~25 element-wise
kernels, each a pass over memory and a dispatch to the thread pool.

The library is compiled once per machine with the C++ compiler on PATH (``$CXX`` or ``g++``)
into the cache folder of ``src.model_utils.cpu_tuning`` (the file name hashes the source, the
flags and the CPU's ISA flags). Without a compiler, :func:`availability` says why and
``gate_impl: fused`` is refused with that reason. Exported graphs never contain the custom op (export
builds the network with ``gate_impl: native``), so MindIR / ONNX run anywhere.

Importing this module costs nothing: MindSpore is imported on first use.
"""
import hashlib
import os
import shutil
import subprocess
import sys
import threading

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lstm_gates.cc")
# no -ffast-math: inf / NaN must survive (a diverging run has to show a non-finite loss); the
# kernels' own exp vectorises without it
CXX_FLAGS = ("-O3", "-march=native", "-fno-trapping-math", "-shared", "-fPIC", "-std=c++14")
BUILD_TIMEOUT_S = 120

_lock = threading.Lock()
_state = {}


def library_path(cxx):
    from src.model_utils.cpu_tuning import cache_path, machine_info
    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read())
    digest.update("|".join((cxx,) + CXX_FLAGS).encode())
    digest.update(" ".join(sorted(machine_info()["flags"])).encode())  # -march=native: per ISA
    return os.path.join(os.path.dirname(cache_path()), f"lstm_gates-{digest.hexdigest()[:16]}.so")


def build():
    """``(path of the compiled library, None)`` (built now if needed) or ``(None, reason)``."""
    if sys.platform != "linux":
        return None, "needs Linux (MindSpore's CPU custom ops)"
    cxx = os.environ.get("CXX") or "g++"
    if not shutil.which(cxx):
        return None, f"no C++ compiler ({cxx}) on PATH"
    out = library_path(cxx)
    if os.path.exists(out):
        return out, None
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tmp = f"{out}.{os.getpid()}.tmp"
    try:
        proc = subprocess.run([cxx, *CXX_FLAGS, "-o", tmp, SOURCE], capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return None, f"{cxx} failed: {err}"
    if proc.returncode != 0:
        return None, f"{cxx} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}"
    os.replace(tmp, out)
    return out, None


def availability():
    """``(True, library path)`` or ``(False, why not)``; built once per process."""
    with _lock:
        if "available" not in _state:
            if os.environ.get("ZOO_NO_CUSTOM_OPS"):
                _state["available"] = (False, "ZOO_NO_CUSTOM_OPS is set")
            else:
                path, reason = build()
                _state["available"] = (path is not None, path or reason)
        return _state["available"]


def _make_op():
    ok, path = availability()
    if not ok:
        raise RuntimeError(f"the fused LSTM gate kernels are not available here: {path}")
    import mindspore.ops as ops

    def like_state(z, c, *rest):  # h' and c': the state's shape and dtype
        return c, c

    backward = ops.Custom(f"{path}:LstmGatesBackward",
                          out_shape=lambda z, c, *rest: (z, c, c, c, c),
                          out_dtype=lambda z, c, *rest: (z, c, c, c, c), func_type="aot")

    def bprop(z, c, w_ci, w_cf, w_co, out, dout):
        return backward(z, c, w_ci, w_cf, w_co, dout[0], dout[1])

    return ops.Custom(f"{path}:LstmGatesForward", out_shape=like_state, out_dtype=like_state,
                      func_type="aot", bprop=bprop)


def lstm_gates_op():
    """The fused forward op (a ``Custom`` primitive with its bprop); one per process."""
    with _lock:
        if "op" in _state:
            return _state["op"]
    op = _make_op()
    with _lock:
        _state.setdefault("op", op)
        return _state["op"]


GATE_IMPLS = ("native", "fused")


def gate_impl_policy(setting, device_target, log=print):
    """``'native'`` or ``'fused'`` for a training / evaluation network (export always builds
    native). ``ZOO_GATE_IMPL`` overrides ``setting``. fused on another device or without a
    compiler is a one-line error naming the fix; logs one line when fused.

    Not the default: timed alone (forward + backward of one cell step, 2-core Zen 4) the fused
    kernels are 5-7x faster than the native gate math, but the training step of the CPU config
    gains only ~4 % (median 247 against 258 ms, both steps alternated in one process), although
    the step runs 1,320 kernels instead of 3,504 (benchmarks/README.md)."""
    from src.model_utils.errors import UserError
    source = "ZOO_GATE_IMPL" if os.environ.get("ZOO_GATE_IMPL") else "gate_impl"
    setting = os.environ.get("ZOO_GATE_IMPL") or setting
    if setting not in GATE_IMPLS:
        raise UserError(f"{source} must be one of {', '.join(GATE_IMPLS)}, got {setting!r}")
    if setting == "native":
        return "native"
    if device_target != "CPU":
        raise UserError(f"{source} fused runs on CPU only (device_target {device_target}): "
                        "pass --gate_impl native")
    ok, detail = availability()
    if not ok:
        raise UserError(f"{source} fused: the gate kernels cannot be built here ({detail}); "
                        "install g++ or pass --gate_impl native")
    if log:
        log(f"gate_impl fused: LSTM gate math in {os.path.basename(detail)}")
    return "fused"
