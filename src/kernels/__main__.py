"""``python -m src.kernels``: this machine's kernel choices, their measured times, the compiler
and where the cache is.

    python -m src.kernels                 # the summary
    python -m src.kernels --shapes        # also every measured convolution shape
    python -m src.kernels --record FILE   # a run's kernel_choices.json, per layer
    python -m src.kernels --rebuild       # forget remembered build failures (build again)
    python -m src.kernels --remeasure     # forget the measured times (the next run measures)
"""
import json
import sys

from src.kernels import build, fused_layers, lstm_gates, onednn_conv, plan, tuning
from src.model_utils.errors import ArgumentParser, exit_on_user_error


def _fmt(ms):
    return f"{ms:.2f} ms" if isinstance(ms, (int, float)) else "-"


def machine_report(show_shapes=False, out=print):
    machine = tuning.machine_info()
    key = tuning.machine_key(machine)
    cxx, version = build.compiler()
    out(f"machine: {key}")
    out(f"compiler: {cxx} ({version or 'not found'})")
    lib = tuning.onednn_library()
    out(f"oneDNN: {lib or 'not found'}" + (f" (version {tuning.onednn_version(lib)})" if lib else ""))
    out(f"cache: {tuning.cache_dir()}")
    for name, module in (("onednn_conv", onednn_conv), ("fused_layers", fused_layers),
                         ("lstm_gates", lstm_gates)):
        ok, detail = module.availability()
        out(f"  {name}: {'built ' + detail if ok else 'not available: ' + detail}")
    entry = tuning.read_cache(tuning.cache_path())["machines"].get(key, {})
    isa = entry.get("onednn_isa") or {}
    if isa:
        results = {c: {"ms": isa.get("ms", {}).get(c), "direct_ms": isa.get("direct_ms", {}).get(c)}
                   for c in tuning.ISA_CANDIDATES}
        times = ", ".join(f"{c} {_fmt(r['ms'])} (blocked {_fmt(r['direct_ms'])})"
                          for c, r in results.items())
        choice, direct = tuning.choose_isa(results, onednn_conv.availability()[0])
        out(f"oneDNN ISA: {choice} for conv_impl auto"
            + (" (oneDNN's direct kernel for the k x k convolutions)" if direct else "")
            + f", {tuning.choose_isa(results, False)[0]} for native convolutions (3x3 conv probe: "
            f"{times})")
    else:
        out("oneDNN ISA: not measured here yet (a CPU without AVX-512 has nothing to choose)")
    convs = entry.get("conv_impl") or {}
    measured = sum(1 for rec in convs.values() if isinstance(rec, dict) and rec.get("ms"))
    out(f"convolution shapes in the cache: {len(convs)} ({measured} measured, the others native; "
        "--shapes lists them)")
    if show_shapes:
        for conv_key, rec in sorted(convs.items()):
            ms = rec.get("ms") if isinstance(rec, dict) else None
            choice = tuning.judge_conv(ms) if ms else "not measured (native)"
            times = ", ".join(f"{i} {_fmt(t)}" for i, t in zip(tuning.CONV_IMPLS, ms or []))
            out(f"  {conv_key}: {choice} ({times})")
    for group_key, rec in sorted((entry.get("fused_layers") or {}).items()):
        ms = rec.get("ms") or {}
        out(f"fused {group_key}: native {_fmt(ms.get('native'))}, fused {_fmt(ms.get('fused'))}")


def record_report(path, out=print):
    record = plan.read_record(path, what="--record")
    out(f"{path}: decided {record.get('decided')} on {record.get('machine')}, batch "
        f"{record.get('batch')}, ISA {record.get('isa', {}).get('isa')}")
    out(f"  {plan.summary(record)}")
    for name, site in sorted(record["sites"].items()):
        out(f"  {name}: {site['kind']} {site['impl']} {site['key']}")
    for kind, times in sorted((record.get("times") or {}).items()):
        if kind != "conv" and times:
            out(f"  {kind} (all layers): " + ", ".join(f"{i} {_fmt(t)}" for i, t in times.items()))


@exit_on_user_error
def main(argv=None):
    parser = ArgumentParser(prog="python -m src.kernels", description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", action="store_true", help="list every measured convolution")
    parser.add_argument("--record", metavar="FILE", help="print a run's kernel_choices.json")
    parser.add_argument("--rebuild", action="store_true",
                        help="forget remembered build failures, then build")
    parser.add_argument("--remeasure", action="store_true",
                        help="forget this machine's measured convolution / fused-layer times")
    parser.add_argument("--json", action="store_true", help="the cache entry of this machine as JSON")
    args = parser.parse_args(argv)
    if args.remeasure:
        print(f"forgot {tuning.forget_measurements()} measured time(s) in {tuning.cache_path()}")
    if args.rebuild:
        for name in build.forget_failures():
            print(f"forgot the failed build {name}")
    if args.json:
        key = tuning.machine_key(tuning.machine_info())
        print(json.dumps(tuning.read_cache(tuning.cache_path())["machines"].get(key, {}), indent=1))
        return 0
    if args.record:
        record_report(args.record)
        return 0
    machine_report(args.shapes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
