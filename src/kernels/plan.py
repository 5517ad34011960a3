"""The kernel choices of one run: found from the network, measured once, recorded, applied.

A network is built with plain sizes; every layer whose kernel can be chosen is a
:class:`src.kernels.layers.KernelSite` and starts native. :func:`configure` then, before the
first step:

1. **finds the sites** (:func:`trace_sites`): one forward pass at batch 1 in PyNative mode
   where every site reports its shape key and the convolutions compute nothing (zeros of the
   output's shape): the network describes itself, no hand-kept list of its layers;
2. **decides** (:func:`decide`) every site's kernel from the config keys (``conv_impl``,
   ``layer_impl`` for the fused BatchNorm + leaky ReLU and max-pools, ``gate_impl``; the
   ``ZOO_*`` variables override them): ``auto`` is measured on this machine, in one child
   process (:mod:`src.kernels.probe`) at the run's batch and ISA: each convolution shape in every
   implementation, and each fused kind over all of the network's layers of that kind against
   the native layers. The times are cached per machine (:mod:`src.kernels.tuning`), so later
   runs measure nothing. Every shape of the network is decided now; a shape the probe's budget
   does not reach is native, and cached as such (later runs agree);
3. **records** the choices with the measured times in the run folder
   (``<output_dir>/kernel_choices.json``, :data:`RECORD_NAME`): rank 0 decides and writes, the
   other ranks wait for the file and read it; ``--resume``, eval (the file beside the
   checkpoint) and the config key ``kernel_choices: FILE`` apply a recorded file instead of
   deciding, so a run, its resume, its evaluation and every rank use the same kernels;
4. **applies** them (:func:`apply`): ``cell.set_kernel(impl)`` per site, by cell name.

Exported networks are never configured: they hold native ops only.
"""
import hashlib
import json
import os
import time

from src.kernels import fused_layers, lstm_gates, onednn_conv
from src.kernels.build import compiler
from src.kernels.tuning import (CONV_IMPLS, NATIVE_1X1, PLAN_PROBE_BUDGET_S, applied_isa,
                                cache_path, conv_key, group_probe_batch, judge_conv, locked,
                                machine_info, machine_key, measure_plan, native_kxk_slow,
                                probe_batch, read_cache, update_cache, valid_ms)
from src.model_utils.errors import UserError, atomic_write_text

FUSED = ("native", "fused")
# kind -> (implementations, config key, environment override, availability of the C++ kernels)
KINDS = {
    "conv": (CONV_IMPLS, "conv_impl", "ZOO_CONV_IMPL", onednn_conv.availability),
    "bn_leaky": (FUSED, "layer_impl", "ZOO_LAYER_IMPL", fused_layers.availability),
    "max_pool": (FUSED, "layer_impl", "ZOO_LAYER_IMPL", fused_layers.availability),
    "lstm_gates": (FUSED, "gate_impl", "ZOO_GATE_IMPL", lstm_gates.availability),
}
GROUPS = ("bn_leaky", "max_pool", "lstm_gates")  # decided once per network, from summed times
GROUP_MARGIN = 0.95  # fused layers must beat the native ones by 5 % (timing noise)
GROUP_PROBE_VERSION = "g1"
RECORD_NAME = "kernel_choices.json"
RECORD_FORMAT = 1
RECORD_WAIT_S = 900.0  # how long ranks > 0 wait for rank 0's record
_STARTED = time.time()  # a record older than this process (minus a margin) is another run's


# ---------------------------------------------------------------- sites

def trace_sites(network, input_shape):
    """``{cell name: (kind, shape key)}`` of every kernel site ``network`` runs for an input of
    ``input_shape`` (its batch dimension is irrelevant: pass 1). Runs the network once in
    PyNative mode in inference mode, the convolutions computing nothing; restores the mode."""
    import numpy as np
    import mindspore as ms
    from src.kernels.layers import KernelSite  # imports MindSpore: not before the ISA cap is set
    cells = [(name, cell) for name, cell in network.cells_and_names() if isinstance(cell, KernelSite)]
    names = {id(cell): name for name, cell in cells}
    sites = {}

    def report(cell, key):
        sites.setdefault(names[id(cell)], (cell.kernel_kind, tuple(int(v) for v in key)))

    mode, training = ms.get_context("mode"), network.training
    try:
        ms.set_context(mode=ms.PYNATIVE_MODE)
        network.set_train(False)
        for _, cell in cells:
            cell.shape_trace = report
        network(ms.Tensor(np.zeros(input_shape, np.float32)))
    finally:
        for _, cell in cells:
            cell.shape_trace = None
        network.set_train(training)
        ms.set_context(mode=mode)
    return {name: sites[name] for name, _ in cells if name in sites}


def _setting(kind, settings):
    """``(value, source)`` of a kind's setting: the environment override, else the config key."""
    impls, key, env, _ = KINDS[kind]
    if os.environ.get(env):
        source, value = env, os.environ[env]
    else:
        source, value = key, settings.get(key, "auto") or "auto"
    if value not in ("auto",) + impls:
        raise UserError(f"{source} must be one of {', '.join(('auto',) + impls)}, got {value!r}")
    return value, source


# ---------------------------------------------------------------- decide

def decide(sites, batch, settings, device_target="CPU", measure=None, machine=None, path=None,
           budget_s=PLAN_PROBE_BUDGET_S):
    """The record of the kernel choices for ``sites`` (:func:`trace_sites`) at ``batch``.

    ``settings``: the config's ``conv_impl`` / ``layer_impl`` / ``gate_impl``. ``measure(convs,
    conv_impls, groups) -> {"convs": [[native_ms, unfold_ms, onednn_ms] or None], "groups":
    {kind: {"native": ms, "fused": ms} or None}}`` times what the cache lacks (default
    :func:`src.kernels.tuning.measure_plan`, a child process). Raises UserError for a setting
    that cannot be honoured here (``onednn`` / ``fused`` off CPU or without the kernels)."""
    machine = machine or machine_info()
    path = path or cache_path()
    key = machine_key(machine)
    isa = applied_isa()["isa"]
    kinds = sorted({kind for kind, _ in sites.values()})
    plan, how, unavailable = {}, {}, {}
    for kind in kinds:
        value, source = _setting(kind, settings)
        needs_kernels = value in ("auto", "onednn", "fused") and device_target == "CPU"
        ok, detail = KINDS[kind][3]() if needs_kernels else (False, "")
        if value in ("onednn", "fused"):
            if device_target != "CPU":
                raise UserError(f"{source} {value} runs on CPU only (device_target "
                                f"{device_target}): use auto or native")
            if not ok:
                raise UserError(f"{source} {value}: the C++ kernels cannot be built here "
                                f"({detail}); install g++ or use auto / native")
        if value == "auto" and device_target != "CPU":
            value, source = "native", f"auto on {device_target}"
        if value == "auto" and kind != "conv" and not ok:
            unavailable[kind] = detail
            value, source = "native", "auto: kernels not available"
        plan[kind] = value
        how[kind] = f"{'measured' if value == 'auto' else 'set'} ({source})"
    onednn_ok = plan.get("conv") == "auto" and KINDS["conv"][3]()[0]
    if plan.get("conv") == "auto" and not onednn_ok:
        unavailable["conv"] = KINDS["conv"][3]()[1]
    native_kxk = not (onednn_ok and native_kxk_slow())
    conv_shapes = sorted({k for kind, k in sites.values() if kind == "conv"})
    groups = {kind: sorted(k for kd, k in sites.values() if kd == kind)
              for kind in GROUPS if plan.get(kind) == "auto"}
    todo_convs = [s for s in conv_shapes if plan.get("conv") == "auto" and (s[2] > 1 or onednn_ok)]
    times, measured_s = _measured(todo_convs, groups, batch, isa, onednn_ok, native_kxk, measure,
                                  machine, key, path, budget_s)

    def choose(kind, shape):
        value = plan[kind]
        if kind == "conv":
            if value == "auto":
                t = times["convs"].get(shape)
                choice = judge_conv(t, onednn_ok, native=native_kxk or shape[2] == 1) if t else None
                fallback = "native" if native_kxk or shape[2] == 1 else \
                    "onednn" if onednn_ok else "unfold"
                return choice or fallback
            return "native" if value == "unfold" and shape[2] == 1 else value
        if value == "auto":
            t = times["groups"].get(kind) or {}
            fused, native = valid_ms(t.get("fused")), valid_ms(t.get("native"))
            return "fused" if fused and native and fused < GROUP_MARGIN * native else "native"
        return value

    record_sites = {name: {"kind": kind, "key": list(shape), "impl": choose(kind, shape)}
                    for name, (kind, shape) in sites.items()}
    return {
        "format": RECORD_FORMAT, "decided_at": time.time(),
        "decided": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": key,
        "isa": applied_isa(), "batch": int(batch), "device_target": device_target,
        "compiler": " ".join(v for v in compiler() if v), "cache": path,
        "settings": how, "unavailable": unavailable, "measured_s": measured_s,
        "sites": record_sites,
        "times": {"conv": {_shape_text(s): dict(zip(CONV_IMPLS, t or []))
                           for s, t in sorted(times["convs"].items())},
                  **{kind: times["groups"].get(kind) for kind in groups}},
    }


def _shape_text(shape):
    i, o, k, h, w = shape
    return f"{i}->{o} {k}x{k} @{h}x{w}"


def _group_key(isa, batch, kind, keys):
    digest = hashlib.sha1(json.dumps(sorted(list(k) for k in keys)).encode()).hexdigest()[:12]
    return f"probe {GROUP_PROBE_VERSION} | isa {isa} | batch {batch} | {kind} {len(keys)} layers {digest}"


def _measured(convs, groups, batch, isa, onednn_ok, native_kxk, measure, machine, key, path,
              budget_s):
    """``({"convs": {shape: times}, "groups": {kind: times}}, seconds measured)``: from the
    cache, the rest measured now (under the cache's lock: processes starting together measure
    once) and cached, also what the budget did not reach (as not measured: native)."""
    def lookup():
        entry = read_cache(path)["machines"].get(key, {})
        conv_cache, group_cache = entry.get("conv_impl", {}), entry.get("fused_layers", {})
        found = {"convs": {}, "groups": {}}
        for s in convs:
            rec = conv_cache.get(conv_key(isa, batch, s))
            if isinstance(rec, dict) and "ms" in rec:
                found["convs"][s] = rec["ms"]
        for kind, keys in groups.items():
            rec = group_cache.get(_group_key(isa, batch, kind, keys))
            if isinstance(rec, dict) and "ms" in rec:
                found["groups"][kind] = rec["ms"]
        return found

    found = lookup()
    if len(found["convs"]) == len(convs) and len(found["groups"]) == len(groups):
        return found, 0.0
    with locked(path):
        found = lookup()
        missing_convs = [s for s in convs if s not in found["convs"]]
        missing_groups = {k: v for k, v in groups.items() if k not in found["groups"]}
        if not missing_convs and not missing_groups:
            return found, 0.0
        start = time.perf_counter()
        impls = (CONV_IMPLS[0] if native_kxk else NATIVE_1X1,) + CONV_IMPLS[1:(3 if onednn_ok else 2)]
        probe_convs = [(probe_batch(batch, *s, machine["cores"]),) + s for s in missing_convs]
        group_batch = {kind: group_probe_batch(batch, keys, machine["cores"])
                       for kind, keys in missing_groups.items()}
        probe_groups = {kind: [[group_batch[kind]] + list(k) for k in keys]
                        for kind, keys in missing_groups.items()}
        result = (measure or measure_plan)(probe_convs, impls, probe_groups, budget_s)
        conv_times = (result or {}).get("convs") or [None] * len(missing_convs)
        group_times = (result or {}).get("groups") or {}
        new_convs, new_groups = {}, {}
        for shape, probe_shape, t in zip(missing_convs, probe_convs, conv_times):
            t = [round(float(v), 3) if valid_ms(v) else None for v in t] if t else None
            found["convs"][shape] = t
            new_convs[conv_key(isa, batch, shape)] = {"probe_batch": probe_shape[0], "ms": t}
        for kind, keys in missing_groups.items():
            t = group_times.get(kind)
            t = {impl: round(float(v), 3) for impl, v in t.items() if valid_ms(v)} if t else None
            found["groups"][kind] = t
            new_groups[_group_key(isa, batch, kind, keys)] = {"probe_batch": group_batch[kind], "ms": t}
        if result is not None:  # a probe that failed as a whole is not cached: tried next time
            update_cache(path, key, "conv_impl", new_convs)
            update_cache(path, key, "fused_layers", new_groups)
        return found, round(time.perf_counter() - start, 2)


# ---------------------------------------------------------------- apply, record

def apply(network, record, log=print):
    """Set every kernel site of ``network`` to its recorded kernel (by cell name). A site the
    record does not name, or whose kernel cannot run here, stays native (one log line)."""
    from src.kernels.layers import KernelSite  # imports MindSpore (this module must not)
    sites = record.get("sites", {})
    missing, fallback = [], {}
    for name, cell in network.cells_and_names():
        if not isinstance(cell, KernelSite):
            continue
        site = sites.get(name)
        impl = site.get("impl") if isinstance(site, dict) and site.get("kind") == cell.kernel_kind \
            else None
        if impl is None:
            missing.append(name)
            impl = "native"
        if impl != "native":
            ok, detail = KINDS[cell.kernel_kind][3]()
            if not ok:
                fallback[detail] = fallback.get(detail, 0) + 1
                impl = "native"
        cell.set_kernel(impl)
    if log and missing:
        log(f"kernel choices: {len(missing)} layer(s) not in the record (native): "
            f"{', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}")
    if log:
        for detail, count in fallback.items():
            log(f"kernel choices: {count} layer(s) native, their kernels are not available "
                f"here: {detail}")


def summary(record):
    """``conv onednn x9, native x7; bn_leaky fused x15; ...``: the kernels per kind."""
    counts = {}
    for site in record.get("sites", {}).values():
        kind = counts.setdefault(site["kind"], {})
        kind[site["impl"]] = kind.get(site["impl"], 0) + 1
    return "; ".join(f"{kind} " + ", ".join(f"{impl} x{n}" for impl, n in sorted(c.items()))
                     for kind, c in sorted(counts.items())) or "no kernel sites"


def read_record(path, what="kernel_choices"):
    """A record written by :func:`write_record`; UserError naming the file otherwise."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except OSError as err:
        raise UserError(f"{what} {path}: cannot read it ({err.strerror or err}): pass the "
                        f"{RECORD_NAME} of a training run's output folder") from None
    except ValueError:
        record = None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT \
            or not isinstance(record.get("sites"), dict):
        raise UserError(f"{what} {path} is not a kernel choices file (format {RECORD_FORMAT}): "
                        f"pass the {RECORD_NAME} of a training run's output folder")
    return record


def write_record(path, record):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True) + "\n")


def find_record(checkpoint):
    """The :data:`RECORD_NAME` of the run a checkpoint (file or folder) belongs to: beside it or
    in the folder above (``<run>/checkpoints/x.ckpt``); None when there is none."""
    if not checkpoint:
        return None
    folder = os.path.abspath(checkpoint if os.path.isdir(checkpoint) else os.path.dirname(checkpoint))
    for candidate in (folder, os.path.dirname(folder)):
        path = os.path.join(candidate, RECORD_NAME)
        if os.path.isfile(path):
            return path
    return None


def wait_for_record(path, timeout_s=RECORD_WAIT_S, poll_s=0.2):
    """The record rank 0 writes at ``path`` for this run (not an older run's file)."""
    deadline = time.time() + timeout_s
    while True:
        try:
            record = read_record(path)
            if record.get("decided_at", 0) >= _STARTED - 60:
                return record
        except UserError:
            pass  # not written yet (or half-way: written atomically, so only "missing")
        if time.time() > deadline:
            raise UserError(f"rank 0 wrote no kernel choices to {path} within {timeout_s:.0f} s: "
                            "every rank needs to see output_dir (a shared folder), or pin "
                            "them with --kernel_choices FILE")
        time.sleep(poll_s)


def measures(settings, device_target):
    """Whether deciding may measure (and so may differ between processes): some kind is auto /
    onednn / fused on CPU. Otherwise every kernel is native, and every rank decides alone, with
    no wait for rank 0's record (hosts of a GPU / Ascend run need no shared folder)."""
    return device_target == "CPU" and any(_setting(kind, settings)[0] != "native" for kind in KINDS)


def record_run(record):
    """Write a record that :func:`configure` left for the run folder (``pending_target``), once;
    a no-op for a record read from elsewhere or already written."""
    target = record.pop("pending_target", None)
    if target:
        write_record(target, record)


def configure(network, input_shape, batch, settings, device_target="CPU", pinned=None,
              out_dir=None, rank=0, log=print, write=True, **decide_kw):
    """Decide (or read) and apply the kernel choices of ``network`` for a run; returns the record.

    ``pinned``: a record file to apply (``kernel_choices``; a resumed run's or an evaluated
    checkpoint's). Else rank 0 (or a process without ``out_dir``) decides from ``settings`` at
    ``batch`` for inputs of ``input_shape`` (batch 1), and ranks > 0 wait for rank 0's file when
    deciding may measure (:func:`measures`), else decide alike by themselves.
    With ``out_dir`` rank 0 writes the record there (``write=False``: later, by
    :func:`record_run`, e.g. once the run's data proved readable, so a run that fails before
    training leaves no folder behind). One log line."""
    target = os.path.join(out_dir, RECORD_NAME) if out_dir else None
    if pinned:
        record, how = read_record(pinned), f"from {pinned}"
    elif target and rank != 0 and measures(settings, device_target):
        record, how = wait_for_record(target), f"rank 0's, from {target}"
    else:
        record = decide(trace_sites(network, input_shape), batch, settings, device_target,
                        **decide_kw)
        how = (f"measured in {record['measured_s']:.1f} s" if record["measured_s"]
               else "from the machine cache") + f", batch {batch}"
        if record.get("unavailable") and log:
            for kind, detail in sorted(record["unavailable"].items()):
                log(f"kernel choices: {kind} C++ kernels not available ({detail})")
    if target and rank == 0 and (not pinned or os.path.abspath(pinned) != os.path.abspath(target)):
        record = dict(record, pending_target=target)
        if write:
            record_run(record)
        how += f"; recorded in {target}"
    apply(network, record, log)
    if log:
        log(f"kernel choices ({how}): {summary(record)}")
    return record


def set_kernels(network, **impls):
    """Set every kernel site of the kinds given (``conv="onednn"``, ``lstm_gates="fused"``, ...)
    to that kernel, without measuring (1x1 convolutions have no im2col: native); returns the
    network. For tests and experiments: runs go through :func:`configure`."""
    from src.kernels.layers import KernelSite  # imports MindSpore (this module must not)
    for _, cell in network.cells_and_names():
        impl = impls.get(cell.kernel_kind) if isinstance(cell, KernelSite) else None
        if impl:
            cell.set_kernel("native" if impl == "unfold" and getattr(cell, "k", 0) == 1 else impl)
    return network
