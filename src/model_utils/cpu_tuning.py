"""CPU kernel choices made by measurement on the machine at hand, cached per machine.

Two choices decide CPU speed with MindSpore 2.10 (README, "CPU tuning, measured per machine"):

* **oneDNN ISA cap** (:func:`apply_onednn_isa`). On CPUs with AVX-512 the bundled oneDNN 3.10
  runs a plain NCHW fp32 convolution through ``jit_uni_ncsp:conv+ref:any``, 10-100x slower than
  the ``x64:gemm:jit`` kernel it picks when capped with ``ONEDNN_MAX_CPU_ISA=AVX2``. The cap
  must be in the environment before MindSpore runs its first oneDNN kernel (oneDNN reads it
  once), so entry points call this function before importing mindspore. ``auto`` times one
  convolution per candidate (default, AVX2) in a child process through the bundled
  ``libdnnl.so.3`` (no MindSpore import: ~0.1 s each) and keeps the fastest; CPUs without
  AVX-512 have nothing to choose.
* **Convolution implementation per layer** (:func:`conv_impl_policy`): the native op or
  im2col + GEMM (``src.models.layers.Conv2d``). ``auto`` times forward + backward of both for
  every k x k layer shape of the network at the training batch, in one child process with
  MindSpore in GRAPH mode, and picks the faster per shape (im2col only when ``CONV_MARGIN``
  says it is clearly faster).

Both results are cached in ``$XDG_CACHE_HOME/mindspore-zoo-tdn-convlstm/cpu_tuning.json``
(``~/.cache/...`` without ``XDG_CACHE_HOME``), keyed by CPU model (name, family, model number),
usable cores and MindSpore version, so the first run pays the probe (a few seconds) and later runs
nothing. The file is written atomically under a lock (parallel workers probe once). Overrides:
``ZOO_ONEDNN_ISA`` (auto | default | AVX2 | any oneDNN ISA name) or an ``ONEDNN_MAX_CPU_ISA``
already set by the user; ``ZOO_CONV_IMPL`` (auto | native | unfold) before the config key.

Importing this module costs nothing: standard library only (no MindSpore, no numpy).
"""
import contextlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import time

from src.model_utils.errors import UserError

ONEDNN_ENV = "ONEDNN_MAX_CPU_ISA"
ISA_ENV = "ZOO_ONEDNN_ISA"
CONV_ENV = "ZOO_CONV_IMPL"
_APPLIED_ENV = "ZOO_ONEDNN_ISA_APPLIED"  # marks a cap this module set (inherited by children)
CACHE_DIR_NAME = "mindspore-zoo-tdn-convlstm"
CACHE_FORMAT = 1
ISA_CANDIDATES = ("default", "AVX2")
# values oneDNN 3.10 accepts for ONEDNN_MAX_CPU_ISA
ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
               "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16",
               "AVX10_1_512_AMX", "AVX512_CORE_AMX", "AVX10_1_512_AMX_FP16",
               "AVX512_CORE_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2")
CONV_IMPLS = ("native", "unfold")
ISA_MARGIN = 0.9  # a cap must beat the default by 10% to be applied (timing noise)
# im2col must beat the native op by 25% in the probe. The probe times one layer alone (PyNative);
# inside a compiled training graph im2col's extra memory traffic costs more: on a Zen 4 (AVX2 cap)
# the probe had ConvLSTM's 48->128 3x3 16x16 layer at 9.2 ms im2col vs 11.9 ms native, yet the
# training step with that layer as im2col was 10-20% slower than all-native. Native is also the
# simpler, exportable op. The choice is re-judged from the cached times, so a change of this
# margin applies to existing caches.
CONV_MARGIN = 0.75
ISA_PROBE_BUDGET_S = 0.3  # per candidate, after the warm-up call
CONV_PROBE_BUDGET_S = 2.5  # timing budget of one conv probe run (plus the MindSpore import)
CONV_PROBE_TIMEOUT_S = 40.0
PROBE_WORK_FLOP = 3e8  # forward FLOPs per timed call above which large maps probe a smaller batch
SMALL_MAP_POSITIONS = 16  # as src.models.layers: at or below, the batch changes the im2col GEMM


# ---------------------------------------------------------------- machine identity and cache

def machine_info(cpuinfo="/proc/cpuinfo"):
    """{"cpu", "model_name", "flags", "cores", "mhz", "mindspore"} of this machine (``cpu`` = model
    name with family and model number), read without importing MindSpore."""
    fields = {}
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                key = key.strip()
                if sep and key not in fields:
                    fields[key] = value.strip()
                if not line.strip() and "model name" in fields:
                    break  # the first processor's block is enough
    except OSError:
        pass
    cpu = fields.get("model name", "unknown CPU")
    if "cpu family" in fields:
        cpu += f" (family {fields['cpu family']} model {fields.get('model', '?')})"
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        version = importlib.metadata.version("mindspore")
    except importlib.metadata.PackageNotFoundError:
        version = "none"
    try:
        mhz = float(fields.get("cpu MHz", ""))
    except ValueError:
        mhz = None
    return {"cpu": cpu, "model_name": fields.get("model name", "unknown CPU"),
            "flags": set(fields.get("flags", "").split()), "cores": cores, "mhz": mhz,
            "mindspore": version}


def machine_key(machine):
    """Cache key: CPU model, usable cores and MindSpore version."""
    return f"{machine['cpu']} | {machine['cores']} cores | mindspore {machine['mindspore']}"


def cache_path():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, CACHE_DIR_NAME, "cpu_tuning.json")


def read_cache(path):
    """The cache's content, or an empty cache when the file is missing, unreadable or corrupt."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {"format": CACHE_FORMAT, "machines": {}}
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT \
            or not isinstance(data.get("machines"), dict):
        return {"format": CACHE_FORMAT, "machines": {}}
    return data


def _machine_entry(data, key):
    entry = data["machines"].get(key)
    return entry if isinstance(entry, dict) else {}


@contextlib.contextmanager
def _locked(path):
    """Exclusive lock next to the cache (processes starting together probe once). Without a
    writable cache folder or ``fcntl`` there is no lock: at worst two processes probe."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        lock = open(path + ".lock", "a", encoding="utf-8")
    except OSError:
        yield
        return
    with lock:
        try:
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX)
        except (ImportError, OSError):
            pass
        yield


def _update_cache(path, key, section, values):
    """Merge ``values`` into ``machines[key][section]`` and write the file atomically."""
    data = read_cache(path)
    entry = _machine_entry(data, key)
    entry.setdefault(section, {})
    if not isinstance(entry[section], dict):
        entry[section] = {}
    entry[section].update(values)
    data["machines"][key] = entry
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:  # a read-only or full cache folder: the choice holds for this run only
        with contextlib.suppress(OSError):
            os.remove(tmp)


# ---------------------------------------------------------------- child-process probes

def _repo_root():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run_probe(args, env_update, timeout):
    """Run ``python -m src.model_utils.kernel_probe ARGS``; its last JSON line, or None."""
    env = {k: v for k, v in os.environ.items() if k not in (ONEDNN_ENV, "ONEDNN_VERBOSE",
                                                            "DNNL_VERBOSE", "DNNL_MAX_CPU_ISA")}
    env.update(env_update)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_repo_root(), env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run([sys.executable, "-m", "src.model_utils.kernel_probe", *args],
                              env=env, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return None
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def onednn_library():
    """Path of MindSpore's bundled ``libdnnl.so.3`` (found without importing MindSpore), or None."""
    spec = importlib.util.find_spec("mindspore")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "lib", "libdnnl.so.3")
        if os.path.isfile(path):
            return path
    return None


def measure_isa(candidate, timeout=10.0):
    """{"ms", "impl"} of the probe convolution with ``candidate`` as the cap; None on failure."""
    lib = onednn_library()
    if lib is None:
        return None
    env = {} if candidate == "default" else {ONEDNN_ENV: candidate}
    return _run_probe(["isa", lib, str(ISA_PROBE_BUDGET_S)], env, timeout)


def measure_convs(shapes, budget_s=CONV_PROBE_BUDGET_S):
    """[[native_ms, unfold_ms] or None] for ``[batch, in, out, k, h, w]`` shapes (child process
    with the current environment, so the oneDNN cap applied here applies there)."""
    cap = {ONEDNN_ENV: os.environ[ONEDNN_ENV]} if ONEDNN_ENV in os.environ else {}
    result = _run_probe(["conv", str(budget_s), json.dumps([list(s) for s in shapes])], cap,
                        CONV_PROBE_TIMEOUT_S + budget_s)
    times = result.get("times") if isinstance(result, dict) else None
    return times if isinstance(times, list) and len(times) == len(shapes) else [None] * len(shapes)


# ---------------------------------------------------------------- oneDNN ISA

def _normalise_isa(value, source):
    value = str(value).strip()
    if value.lower() in ("auto", "default"):
        return value.lower()
    if value.upper() not in ONEDNN_ISAS:
        raise UserError(f"{source}={value!r} is not a oneDNN ISA: use auto, default or one of "
                        f"{', '.join(ONEDNN_ISAS)}")
    return value.upper()


def apply_onednn_isa(setting="auto", log=print, measure=None, path=None, machine=None,
                     mindspore_loaded=None):
    """Put the fastest oneDNN ISA cap for this CPU into ``ONEDNN_MAX_CPU_ISA`` (call before
    MindSpore is imported) and log one line saying what was applied and why.

    Priority: ``ONEDNN_MAX_CPU_ISA`` already set by the user (kept) > ``ZOO_ONEDNN_ISA`` >
    ``setting`` (the config key). ``auto``: the cached choice for this machine, else a probe
    (``measure(candidate) -> {"ms": ...} or None``, default :func:`measure_isa`) whose winner is
    cached. In a process that already imported MindSpore nothing is changed (oneDNN may have read
    the variable already, and the conv choices are keyed by it). Returns {"isa", "reason"}.
    """
    def done(isa, reason, apply=True):
        if apply and isa != "default":
            os.environ[ONEDNN_ENV] = isa
            os.environ[_APPLIED_ENV] = isa
        if log:
            log(f"oneDNN ISA: {isa} ({reason})")
        return {"isa": isa, "reason": reason}

    user = os.environ.get(ONEDNN_ENV)
    if user:
        inherited = os.environ.get(_APPLIED_ENV) == user
        return done(user, "inherited from the parent process" if inherited
                    else f"user-set: {ONEDNN_ENV}={user}")
    if "mindspore" in sys.modules if mindspore_loaded is None else mindspore_loaded:
        return done("default", "not applied: MindSpore was imported before the setting; set "
                               f"{ONEDNN_ENV} before starting Python to cap it", apply=False)
    if os.environ.get(ISA_ENV):
        source, value = ISA_ENV, os.environ[ISA_ENV]
    else:
        source, value = "onednn_isa", setting
    choice = _normalise_isa(value, source)
    if choice != "auto":
        return done(choice, f"user-set: {source}={value}")
    machine = machine or machine_info()
    if not any(flag.startswith("avx512") for flag in machine["flags"]):
        return done("default", "CPU without AVX-512: nothing to choose")
    path = path or cache_path()
    key = machine_key(machine)
    cached = _machine_entry(read_cache(path), key).get("onednn_isa", {}).get("choice")
    if cached in ISA_CANDIDATES:
        return done(cached, f"cached for {key}")
    measure = measure or measure_isa
    with _locked(path):
        cached = _machine_entry(read_cache(path), key).get("onednn_isa", {}).get("choice")
        if cached in ISA_CANDIDATES:  # another process probed while we waited for the lock
            return done(cached, f"cached for {key}")
        start = time.perf_counter()
        results = {}
        for candidate in ISA_CANDIDATES:
            result = measure(candidate)
            if isinstance(result, dict) and isinstance(result.get("ms"), (int, float)):
                results[candidate] = result
        if not results:
            return done("default", "probe failed (MindSpore's oneDNN library not usable); not cached")
        best = min(results, key=lambda c: results[c]["ms"])
        if "default" in results and results[best]["ms"] > ISA_MARGIN * results["default"]["ms"]:
            best = "default"
        _update_cache(path, key, "onednn_isa", {
            "choice": best, "ms": {c: round(r["ms"], 3) for c, r in results.items()},
            "impl": {c: r.get("impl", "?") for c, r in results.items()}})
        timing = ", ".join(f"{c} {r['ms']:.2f} ms ({r.get('impl', '?')})" for c, r in results.items())
        return done(best, f"probed in {time.perf_counter() - start:.1f} s: {timing}; cached in {path}")


def onednn_isa_record(path=None, machine=None):
    """What the ISA probe measured on this machine ({"choice", "ms", "impl"}), or {} if unknown."""
    machine = machine or machine_info()
    return dict(_machine_entry(read_cache(path or cache_path()), machine_key(machine))
                .get("onednn_isa", {}))


# ---------------------------------------------------------------- convolution implementation

def probe_batch(batch, in_ch, out_ch, k, h, w, cores):
    """Batch the conv probe runs at. Maps above ``SMALL_MAP_POSITIONS`` run one GEMM per image in
    both implementations, so their relative speed does not depend on the batch: large layers are
    timed at a batch giving ~``PROBE_WORK_FLOP`` forward FLOPs (at least one image per core).
    Small maps, where im2col folds the batch into one GEMM, are timed at the real batch."""
    if h * w <= SMALL_MAP_POSITIONS:
        return batch
    per_image = 2.0 * in_ch * out_ch * k * k * h * w
    return max(min(batch, cores), min(batch, int(PROBE_WORK_FLOP // per_image)))


class ConvImplPolicy:
    """``policy(in_ch, out_ch, k, h, w) -> "native" | "unfold"`` for the network builders.

    ``choices`` maps ``(in_ch, out_ch, k, h, w)`` to the implementation; shapes not in it (and
    every 1x1 kernel) get ``default``.
    """

    def __init__(self, choices=None, default="native"):
        self.choices = dict(choices or {})
        self.default = default

    def __call__(self, in_ch, out_ch, k, h, w):
        if k == 1:
            return "native"
        return self.choices.get((in_ch, out_ch, k, h, w), self.default)

    def summary(self, shapes):
        """``"native x12, unfold x2 (64->512 3x3 @2x2)"`` over the given layer shapes."""
        picks = [(s, self(*s)) for s in shapes]
        native = sum(1 for _, impl in picks if impl == "native")
        unfold = [s for s, impl in picks if impl == "unfold"]
        text = f"native x{native}, unfold x{len(unfold)}"
        if unfold:
            names = sorted({f"{i}->{o} {k}x{k} @{h}x{w}" for i, o, k, h, w in unfold})
            text += f" ({', '.join(names)})"
        return text


# in every conv cache key: probes of an older method are not reused (v2: the two implementations
# timed in alternation, see kernel_probe.time_conv_impls)
CONV_PROBE_VERSION = "v2"


def _conv_key(isa, batch, shape):
    in_ch, out_ch, k, h, w = shape
    return f"probe {CONV_PROBE_VERSION} | isa {isa} | batch {batch} | {in_ch}->{out_ch} k{k} {h}x{w}"


def conv_impl_policy(shapes, batch, setting="auto", device_target="CPU", log=print, measure=None,
                     path=None, machine=None, budget_s=CONV_PROBE_BUDGET_S):
    """Choose native or im2col per convolution layer shape and log one line.

    Args:
        shapes: the network's layers as ``(in_ch, out_ch, kernel, h, w)`` (input map size).
        batch: the batch the network will run at.
        setting: ``auto`` | ``native`` | ``unfold`` (the config's ``conv_impl``);
            ``ZOO_CONV_IMPL`` overrides it.
        measure: ``measure(probe_shapes) -> [[native_ms, unfold_ms] or None]`` with
            ``[batch, in, out, k, h, w]`` shapes (default :func:`measure_convs`, a child process).
    ``auto`` off CPU is native. Shapes the probe did not reach within ``budget_s`` stay native
    for this run and are probed by the next one. Returns a :class:`ConvImplPolicy`.
    """
    shapes = [tuple(int(v) for v in s) for s in shapes]
    source, value = (CONV_ENV, os.environ[CONV_ENV]) if os.environ.get(CONV_ENV) \
        else ("conv_impl", setting)
    if value not in ("auto",) + CONV_IMPLS:
        raise UserError(f"{source} must be auto, native or unfold, got {value!r}")
    if value != "auto":
        policy, reason = ConvImplPolicy(default=value), f"user-set: {source}={value}"
    elif device_target != "CPU":
        policy, reason = ConvImplPolicy(), f"native on {device_target}"
    else:
        policy, reason = _probe_policy(shapes, batch, measure, path, machine, budget_s)
    if log:
        log(f"conv_impl {value}, batch {batch}: {policy.summary(shapes)} ({reason})")
    return policy


def _judge(pair):
    """``"unfold"`` / ``"native"`` from probed ``[native_ms, unfold_ms]``; None if not a pair."""
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(
            isinstance(t, (int, float)) and not isinstance(t, bool) and t > 0 for t in pair)):
        return None
    return "unfold" if pair[1] < CONV_MARGIN * pair[0] else "native"


def _probe_policy(shapes, batch, measure, path, machine, budget_s):
    machine = machine or machine_info()
    path = path or cache_path()
    key = machine_key(machine)
    isa = os.environ.get(ONEDNN_ENV, "default")
    todo = sorted({s for s in shapes if s[2] > 1})

    def lookup():
        cached = _machine_entry(read_cache(path), key).get("conv_impl", {})
        found = {s: _judge(cached[_conv_key(isa, batch, s)].get("ms"))
                 for s in todo if isinstance(cached.get(_conv_key(isa, batch, s)), dict)}
        return {s: c for s, c in found.items() if c in CONV_IMPLS}

    choices = lookup()
    if len(choices) == len(todo):
        return ConvImplPolicy(choices), "cached"
    with _locked(path):
        choices = lookup()
        missing = [s for s in todo if s not in choices]
        if not missing:
            return ConvImplPolicy(choices), "cached"
        start = time.perf_counter()
        probe_shapes = [(probe_batch(batch, *s, machine["cores"]),) + s for s in missing]
        times = (measure or (lambda p: measure_convs(p, budget_s)))(probe_shapes)
        new = {}
        for shape, probe_shape, pair in zip(missing, probe_shapes, times):
            choice = _judge(pair)
            if choice:
                new[_conv_key(isa, batch, shape)] = {
                    "choice": choice, "ms": [round(float(t), 3) for t in pair],
                    "probe_batch": probe_shape[0]}
                choices[shape] = choice
        if new:
            _update_cache(path, key, "conv_impl", new)
    reason = f"probed {len(new)} shape(s) in {time.perf_counter() - start:.1f} s"
    if len(new) < len(missing):
        reason += f", {len(missing) - len(new)} not reached (native now, probed next run)"
    return ConvImplPolicy(choices), reason
