"""This machine: its identity, the per-machine cache, and the oneDNN ISA cap.

* **Machine and cache.** :func:`machine_info` (CPU model, family / model number, usable cores,
  MindSpore version) keys everything measured here. The cache folder holds the compiled kernels
  (``src.kernels.build``) and ``cpu_tuning.json``, the measured times: the ISA probe's, every
  convolution shape's and every fused-layer group's (``src.kernels.plan``). It is
  ``$ZOO_KERNEL_CACHE`` if set, else ``$XDG_CACHE_HOME/mindspore-zoo-tdn-convlstm`` (``~/.cache``
  without ``XDG_CACHE_HOME``). The file is written atomically under a lock: processes starting
  together measure once.
* **oneDNN ISA cap** (:func:`apply_onednn_isa`). On CPUs with AVX-512 the bundled oneDNN 3.10
  runs a plain NCHW fp32 convolution through ``jit_uni_ncsp:conv+ref:any``, 10-100x slower than
  the ``x64:gemm:jit`` kernel it picks when capped with ``ONEDNN_MAX_CPU_ISA=AVX2``. The cap
  must be in the environment before MindSpore runs its first oneDNN kernel (oneDNN reads it
  once), so entry points call this function before importing mindspore. ``auto`` times one
  convolution per candidate (default, AVX2) in a child process through the bundled
  ``libdnnl.so.3`` (no MindSpore import: ~0.1-0.7 s each), on plain memory (what the native op
  runs) and on blocked memory (what the oneDNN custom op runs), and judges with
  :func:`choose_isa`: the cap that rescues the native op, or no cap where the uncapped blocked
  kernel is clearly faster still and the process may use the custom op (then the native k x k
  convolution is "slow" for this process: :func:`native_kxk_slow`, which ``src.kernels.plan``
  reads); CPUs without AVX-512 have nothing to choose.

Overrides: ``ZOO_ONEDNN_ISA`` (auto | default | a oneDNN ISA name) before the config key, or an
``ONEDNN_MAX_CPU_ISA`` already in the environment. Importing this module costs nothing:
standard library only (no MindSpore, no numpy).
"""
import contextlib
import ctypes
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
CACHE_ENV = "ZOO_KERNEL_CACHE"
CACHE_DIR_NAME = "mindspore-zoo-tdn-convlstm"
CACHE_FORMAT = 1
ISA_CANDIDATES = ("default", "AVX2")
# values oneDNN 3.10 accepts for ONEDNN_MAX_CPU_ISA
ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE",
               "AVX512_CORE_VNNI", "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16",
               "AVX10_1_512_AMX", "AVX512_CORE_AMX", "AVX10_1_512_AMX_FP16",
               "AVX512_CORE_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2")
CONV_IMPLS = ("native", "unfold", "onednn")  # also the order of the times in a conv probe result
ISA_MARGIN = 0.9  # a cap must beat the default by 10% to be applied (timing noise)
# under an ISA whose plain-layout conv is this much slower than the best one, the native k x k
# convolution is not used (AVX-512 without a cap: jit_uni_ncsp, 10-100x slower)
NATIVE_SLOW_FACTOR = 3.0
ISA_PROBE_VERSION = 2  # 2: the blocked-layout (direct) kernel timed too; older records re-probe
NATIVE_1X1 = "native-1x1"  # in the conv probe's list instead of native: native on 1x1 kernels only
# im2col must beat the native op by 25% in the probe. The probe times one layer alone (PyNative);
# inside a compiled training graph im2col's extra memory traffic costs more: a layer the probe
# timed ~23% faster as im2col made the training step 10-20% slower than all-native (ConvLSTM's
# 48->128 3x3 layer on a 16x16 map; docs/history.md). Native is also the simpler, exportable op. The choice is re-judged from the cached times, so a change of this
# margin applies to existing caches.
CONV_MARGIN = 0.75
# oneDNN's direct kernel (src.kernels.onednn_conv) must beat the native op by 10%: it adds two
# layout reorders per call, which the probe times, and is not exportable (export builds native)
ONEDNN_MARGIN = 0.9
ISA_PROBE_BUDGET_S = 0.3  # per candidate, after the warm-up call
# timing budget of the one probe a run's choices need (plus the MindSpore import, ~2-3 s, and one
# small graph compile per timed shape and kernel): the first run on a machine stays under ~10 s
PLAN_PROBE_BUDGET_S = 6.0
PLAN_PROBE_TIMEOUT_S = 60.0
PROBE_WORK_FLOP = 3e8  # forward FLOPs per timed call above which large maps probe a smaller batch
# values per timed call of a fused kind's layers (all of them together) above which the kind
# probes a smaller batch: Tiny-DarkNet's 15 BatchNorm layers at 224x224 and batch 32 hold 90 M
# values per tensor, and their probe alone took ~15 s (at 32x32: 1.8 M, the real batch)
GROUP_PROBE_VALUES = 4e6
SMALL_MAP_POSITIONS = 16  # as src.kernels.layers: at or below, the batch changes the im2col GEMM


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


def cache_dir():
    """The per-user cache folder of this package (compiled kernels and measured times)."""
    if os.environ.get(CACHE_ENV):
        return os.path.abspath(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, CACHE_DIR_NAME)


def cache_path():
    return os.path.join(cache_dir(), "cpu_tuning.json")


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
def locked(path):
    """Exclusive lock ``PATH.lock`` (processes starting together probe or build once). Without a
    writable folder or ``fcntl`` there is no lock: at worst two processes do the work."""
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


def update_cache(path, key, section, values):
    """Merge ``values`` into ``machines[key][section]`` and write the file atomically."""
    data = read_cache(path)
    entry = _machine_entry(data, key)
    entry.setdefault(section, {})
    if not isinstance(entry[section], dict):
        entry[section] = {}
    entry[section].update(values)
    data["machines"][key] = entry
    _write_cache(path, data)


def forget_measurements(path=None, machine=None, sections=("conv_impl", "fused_layers")):
    """Remove this machine's measured convolution and fused-layer times (the next run measures
    them again, e.g. after the probe ran on a busy machine); returns how many were removed."""
    path = path or cache_path()
    key = machine_key(machine or machine_info())
    with locked(path):
        data = read_cache(path)
        entry = _machine_entry(data, key)
        removed = sum(len(entry.pop(section, None) or {}) for section in sections)
        if entry:
            data["machines"][key] = entry
        else:
            data["machines"].pop(key, None)
        _write_cache(path, data)
    return removed


def _write_cache(path, data):
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
    """Run ``python -m src.kernels.probe ARGS``; its last complete JSON line, or None. A probe
    that prints its results as it goes (``plan``) keeps what it printed when it runs out of
    time."""
    env = {k: v for k, v in os.environ.items() if k not in (ONEDNN_ENV, "ONEDNN_VERBOSE",
                                                            "DNNL_VERBOSE", "DNNL_MAX_CPU_ISA")}
    env.update(env_update)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_repo_root(), env.get("PYTHONPATH")) if p)
    try:
        stdout = subprocess.run([sys.executable, "-m", "src.kernels.probe", *args], env=env,
                                capture_output=True, text=True, timeout=timeout, check=False).stdout
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout or ""
        stdout = stdout.decode(errors="replace") if isinstance(stdout, bytes) else stdout
    for line in reversed(stdout.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue  # cut off by the timeout: the line before is complete
    return None


def onednn_library():
    """Path of MindSpore's bundled ``libdnnl.so.3`` (found without importing MindSpore), or None."""
    spec = importlib.util.find_spec("mindspore")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "lib", "libdnnl.so.3")
        if os.path.isfile(path):
            return path
    return None


class _DnnlVersion(ctypes.Structure):
    _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("patch", ctypes.c_int),
                ("hash", ctypes.c_char_p), ("cpu_runtime", ctypes.c_uint),
                ("gpu_runtime", ctypes.c_uint)]


_ONEDNN_VERSIONS = {}


def onednn_version(lib_path):
    """``"3.10.1"``: the version of the oneDNN library at ``lib_path`` (``dnnl_version()``;
    loading it reads no setting, so the ISA cap can still be set), or ``"unknown"``."""
    if lib_path not in _ONEDNN_VERSIONS:
        try:
            lib = ctypes.CDLL(lib_path)
            lib.dnnl_version.restype = ctypes.POINTER(_DnnlVersion)
            v = lib.dnnl_version().contents
            _ONEDNN_VERSIONS[lib_path] = f"{v.major}.{v.minor}.{v.patch}"
        except (OSError, AttributeError, ValueError):
            _ONEDNN_VERSIONS[lib_path] = "unknown"
    return _ONEDNN_VERSIONS[lib_path]


def measure_isa(candidate, timeout=10.0):
    """{"ms", "impl", "direct_ms", "direct_impl"} of the probe convolution (plain and blocked
    layouts, see ``kernel_probe.time_onednn_conv``) with ``candidate`` as the cap; None on
    failure."""
    lib = onednn_library()
    if lib is None:
        return None
    env = {} if candidate == "default" else {ONEDNN_ENV: candidate}
    return _run_probe(["isa", lib, str(ISA_PROBE_BUDGET_S)], env, timeout)


def measure_plan(convs, conv_impls, groups, budget_s=None):
    """Times of what a run's kernel choices need, in one child process (``python -m
    src.kernels.probe plan``; the current environment, so the oneDNN cap applied here applies
    there): ``{"convs": [[native_ms, unfold_ms, onednn_ms] or None per [batch, in, out, k, h, w]
    shape], "groups": {kind: {"native": ms, "fused": ms}}}`` (``groups``: kind -> the [batch,
    *key] of each of the network's layers of that kind); None when the probe failed."""
    budget_s = PLAN_PROBE_BUDGET_S if budget_s is None else budget_s
    cap = {ONEDNN_ENV: os.environ[ONEDNN_ENV]} if ONEDNN_ENV in os.environ else {}
    request = {"convs": [list(s) for s in convs], "impls": list(conv_impls), "groups": groups}
    result = _run_probe(["plan", str(budget_s), json.dumps(request)], cap,
                        PLAN_PROBE_TIMEOUT_S + budget_s)
    if not isinstance(result, dict) or len(result.get("convs") or []) != len(convs):
        return None
    return result


# ---------------------------------------------------------------- oneDNN ISA

def _normalise_isa(value, source):
    value = str(value).strip()
    if value.lower() in ("auto", "default"):
        return value.lower()
    if value.upper() not in ONEDNN_ISAS:
        raise UserError(f"{source}={value!r} is not a oneDNN ISA: use auto, default or one of "
                        f"{', '.join(ONEDNN_ISAS)}")
    return value.upper()


def _valid_ms(result, field):
    return isinstance(result, dict) and valid_ms(result.get(field)) is not None


def choose_isa(results, direct_allowed):
    """``(isa, direct)`` from probe results ``{candidate: {"ms", "direct_ms"}}``.

    ``ms`` is the plain-layout convolution MindSpore's native ``Conv2D`` runs, ``direct_ms`` the
    blocked-layout kernel of ``src.kernels.onednn_conv``. The plain choice: the fastest ``ms``,
    a cap only when ``ISA_MARGIN`` faster than the default. When the direct kernel may be used
    (``direct_allowed``: the custom op builds and ``conv_impl`` is auto or onednn), a candidate
    whose ``direct_ms`` is ``ISA_MARGIN`` faster than the best kernel of the plain choice wins
    instead, and ``direct`` is True when the native k x k op is slow under it (more than
    ``NATIVE_SLOW_FACTOR`` x the plain choice's ``ms``): the conv policy then never picks it."""
    plain = {c: r["ms"] for c, r in results.items() if _valid_ms(r, "ms")}
    if not plain:
        return "default", False
    best = min(plain, key=plain.get)
    if "default" in plain and plain[best] > ISA_MARGIN * plain["default"]:
        best = "default"
    direct = {c: r["direct_ms"] for c, r in results.items() if _valid_ms(r, "direct_ms")}
    if not direct_allowed or not direct:
        return best, False
    fastest = min(direct, key=direct.get)
    baseline = min(plain[best], direct.get(best, float("inf")))
    if fastest == best or direct[fastest] >= ISA_MARGIN * baseline:
        return best, False
    return fastest, plain.get(fastest, float("inf")) > NATIVE_SLOW_FACTOR * plain[best]


CONV_ENV = "ZOO_CONV_IMPL"
# what this process applied (apply_onednn_isa): src.kernels.plan reads it, no environment variable
_APPLIED = {"isa": None, "reason": "not decided in this process", "direct": False}


def applied_isa():
    """``{"isa", "reason", "direct"}`` as :func:`apply_onednn_isa` decided in this process (isa
    None when it was not called: then ``ONEDNN_MAX_CPU_ISA`` or oneDNN's default holds)."""
    return dict(_APPLIED, isa=_APPLIED["isa"] or os.environ.get(ONEDNN_ENV, "default"))


def native_kxk_slow():
    """Whether this process's ISA choice made the native k x k convolution slow (AVX-512
    without a cap, where oneDNN's direct kernel serves the k x k layers instead)."""
    return bool(_APPLIED["direct"])


def has_avx512(machine):
    """Whether ``machine`` (:func:`machine_info`) has AVX-512, the CPUs where MindSpore's default
    oneDNN ISA can be slow and the ISA cap is a choice to make."""
    return any(flag.startswith("avx512") for flag in machine["flags"])


def unset_isa_warning(device_target="CPU", machine=None, path=None):
    """One line for a process that builds a network on CPU without the ISA step of the entry
    scripts (:func:`apply_onednn_isa`, through ``src.entry.entry_config``; e.g. a script or a
    notebook that imports ``src.models`` directly), on a CPU with AVX-512, where MindSpore's
    default oneDNN ISA can make convolutions two orders of magnitude slower; None otherwise."""
    if device_target != "CPU" or _APPLIED["isa"] or os.environ.get(ONEDNN_ENV):
        return None
    machine = machine or machine_info()
    if not has_avx512(machine):
        return None
    record = onednn_isa_record(path, machine)
    choice, times = record.get("choice"), record.get("ms") or {}
    if choice == "default":
        return None
    measured = (f" (measured here: default {times['default']:.0f} ms, {choice} {times[choice]:.1f} ms "
                "per probe convolution)") if valid_ms(times.get("default")) and valid_ms(times.get(choice)) else ""
    return (f"oneDNN ISA not set in this process: MindSpore's default holds on this AVX-512 CPU, "
            f"which can run convolutions many times slower{measured}; call "
            "src.entry.entry_config(...) before importing mindspore, or start Python with "
            f"{ONEDNN_ENV}={choice or 'AVX2'}")


NO_DIRECT_KERNEL = (False, "oneDNN conv kernel not offered by this entry point")


def _direct_allowed(conv_impl, direct_kernel):
    """(allowed, why not): oneDNN's direct kernel can serve the convolutions of this process.
    ``direct_kernel() -> (available, detail)`` is the kernel's availability
    (``src.kernels.onednn_conv.availability``)."""
    setting = os.environ.get(CONV_ENV) or conv_impl
    if setting not in ("auto", "onednn"):
        return False, f"conv_impl {setting}"
    ok, detail = direct_kernel() if direct_kernel else NO_DIRECT_KERNEL
    return ok, None if ok else detail


def apply_onednn_isa(setting="auto", log=print, measure=None, path=None, machine=None,
                     mindspore_loaded=None, conv_impl="auto", direct_kernel=None, direct=None,
                     source="onednn_isa"):
    """Put the fastest oneDNN ISA cap for this CPU into ``ONEDNN_MAX_CPU_ISA`` (call before
    MindSpore is imported) and log one line saying what was applied and why.

    Priority: ``ONEDNN_MAX_CPU_ISA`` already in the environment (kept) > ``ZOO_ONEDNN_ISA`` >
    ``setting`` (the config key, or a run's recorded ISA; ``source`` names it in the log).
    ``auto``: a probe (``measure(candidate) -> {"ms", "direct_ms"} or None``, default
    :func:`measure_isa`), cached for this machine, judged by :func:`choose_isa`. ``conv_impl``
    is the process's convolution setting: only ``auto`` / ``onednn`` let the choice rely on
    oneDNN's direct kernel (entry points that run exported graphs pass ``native``).
    ``direct_kernel() -> (available, detail)``: that kernel's availability
    (``src.kernels.onednn_conv.availability``; None: not offered); ``direct`` replaces the
    whole test with a given ``(allowed, why not)``. The result is kept for this process
    (:func:`applied_isa`, :func:`native_kxk_slow`). In a process that already imported MindSpore
    nothing is changed (oneDNN may have read the variable already). Returns {"isa", "reason",
    "direct"}.
    """
    def done(isa, reason, apply=True, native_slow=False):
        if apply and isa != "default":
            os.environ[ONEDNN_ENV] = isa
        if apply:
            _APPLIED.update(isa=isa, reason=reason, direct=native_slow)
        if log:
            log(f"oneDNN ISA: {isa} ({reason})")
        return {"isa": isa, "reason": reason, "direct": native_slow}

    user = os.environ.get(ONEDNN_ENV)
    if user:
        return done(user, f"set in the environment: {ONEDNN_ENV}={user}")
    if "mindspore" in sys.modules if mindspore_loaded is None else mindspore_loaded:
        return done("default", "not applied: MindSpore was imported before the setting; set "
                               f"{ONEDNN_ENV} before starting Python to cap it", apply=False)
    if os.environ.get(ISA_ENV):
        source, value = ISA_ENV, os.environ[ISA_ENV]
    else:
        value = setting
    choice = _normalise_isa(value, source)
    if choice != "auto":
        return done(choice, f"user-set: {source}={value}" if source in (ISA_ENV, "onednn_isa")
                    else source)
    machine = machine or machine_info()
    if not has_avx512(machine):
        return done("default", "CPU without AVX-512: nothing to choose")
    allowed, why_not = direct if direct is not None else _direct_allowed(conv_impl, direct_kernel)
    path = path or cache_path()
    key = machine_key(machine)

    def cached():  # the times of a complete probe of this method (ISA_PROBE_VERSION), or None
        record = _machine_entry(read_cache(path), key).get("onednn_isa", {})
        if record.get("probe") != ISA_PROBE_VERSION:
            return None
        results = {c: {"ms": (record.get("ms") or {}).get(c),
                       "direct_ms": (record.get("direct_ms") or {}).get(c)}
                   for c in ISA_CANDIDATES}
        return results if all(_valid_ms(r, "ms") for r in results.values()) else None

    def decide(results, how):
        isa, native_slow = choose_isa(results, allowed)
        timing = "; ".join(
            f"{c} {r['ms']:.2f} ms" + (f" (blocked {r['direct_ms']:.2f} ms)"
                                       if _valid_ms(r, "direct_ms") else "")
            for c, r in results.items())
        mode = ("oneDNN's direct kernel for the k x k convolutions" if native_slow else
                "native convolutions" + ("" if allowed else f"; direct kernel not used: {why_not}"))
        return done(isa, f"{how}: conv {timing}; {mode}", native_slow=native_slow)

    results = cached()
    if results:
        return decide(results, f"cached for {key}")
    measure = measure or measure_isa
    with locked(path):
        results = cached()  # another process may have probed while we waited for the lock
        if results:
            return decide(results, f"cached for {key}")
        start = time.perf_counter()
        results = {}
        for candidate in ISA_CANDIDATES:
            result = measure(candidate)
            if _valid_ms(result, "ms"):
                results[candidate] = result
        if not results:
            return done("default", "probe failed (MindSpore's oneDNN library not usable); not cached")
        isa, _ = choose_isa(results, allowed)
        update_cache(path, key, "onednn_isa", {
            "probe": ISA_PROBE_VERSION, "choice": isa,
            "ms": {c: round(r["ms"], 3) for c, r in results.items()},
            "direct_ms": {c: round(r["direct_ms"], 3) for c, r in results.items()
                          if _valid_ms(r, "direct_ms")},
            "impl": {c: r.get("impl", "?") for c, r in results.items()},
            "direct_impl": {c: r.get("direct_impl", "?") for c, r in results.items()}})
        return decide(results, f"probed in {time.perf_counter() - start:.1f} s, cached in {path}")


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
    return _batch_within(batch, 2.0 * in_ch * out_ch * k * k * h * w, PROBE_WORK_FLOP, cores)


def group_probe_batch(batch, keys, cores):
    """Batch the probe of a fused kind runs at (``keys``: the (channels, height, width) of each of
    its layers). These layers work value by value (BatchNorm's statistics per channel over the
    batch and the map), so their relative speed does not depend on the batch once the maps are
    large: a kind above ``GROUP_PROBE_VALUES`` values per call is timed at a batch giving about
    that many (at least one image per core); smaller ones at the real batch."""
    return _batch_within(batch, sum(c * h * w for c, h, w in keys), GROUP_PROBE_VALUES, cores)


def _batch_within(batch, per_image, limit, cores):
    """The largest batch up to ``batch`` whose work (``per_image`` each) stays within ``limit``,
    but at least one image per core (and never more than ``batch``)."""
    return max(min(batch, cores), min(batch, int(limit // per_image)))


# in every conv cache key: probes of an older method are not reused (v2: the two implementations
# timed in alternation, see kernel_probe.time_conv_impls)
CONV_PROBE_VERSION = "v3"  # v3: oneDNN's direct kernel timed too, 1x1 kernels probed


def conv_key(isa, batch, shape):
    in_ch, out_ch, k, h, w = shape
    return f"probe {CONV_PROBE_VERSION} | isa {isa} | batch {batch} | {in_ch}->{out_ch} k{k} {h}x{w}"


def valid_ms(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) \
        and value > 0 else None


def judge_conv(times, onednn=True, native=True):
    """The implementation to use from probed ``[native_ms, unfold_ms(, onednn_ms)]`` (an entry
    may be None: not timed). The reference is the native op (oneDNN's kernel where the native
    one is not timed or not to be used: ``native=False``); another wins only when faster than
    its margin times the reference, then the fastest such. None without a reference time."""
    if not isinstance(times, (list, tuple)) or len(times) not in (2, 3):
        return None
    t = {impl: valid_ms(v) for impl, v in zip(CONV_IMPLS, times)}
    t["native"] = t["native"] if native else None
    t["onednn"] = t.get("onednn") if onednn else None
    base = "native" if t["native"] else "onednn" if t["onednn"] else None
    if base is None:
        return None
    margins = {"native": 1.0, "unfold": CONV_MARGIN, "onednn": ONEDNN_MARGIN}
    wins = {impl: v for impl, v in t.items() if v and impl != base and v < margins[impl] * t[base]}
    return min(wins, key=wins.get) if wins else base
