"""src.kernels.plan and build: the network's kernel sites found from the network itself, every
choice decided before the first step (measured, cached, or native), recorded for the run and
read back by the other ranks, a resume or an evaluation; one compile per machine.

Measurements are injected (no timing is asserted); every cache is under tmp_path.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from src.kernels import build, plan, tuning
from src.model_utils.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MACHINE = {"cpu": "Test CPU (family 1 model 2)", "flags": {"avx2"}, "cores": 2, "mindspore": "2.10.0"}
SITES = {"features.0.conv": ("conv", (3, 16, 3, 32, 32)), "features.2.conv": ("conv", (16, 32, 3, 16, 16)),
         "classifier": ("conv", (32, 10, 1, 16, 16)), "features.0": ("bn_leaky", (16, 32, 32)),
         "features.2": ("bn_leaky", (32, 16, 16)), "features.1": ("max_pool", (16, 32, 32))}
AUTO = {"conv_impl": "auto", "layer_impl": "auto", "gate_impl": "auto"}


@pytest.fixture(autouse=True)
def kernels_here(monkeypatch, tmp_path):
    """A cache in tmp_path, no overrides, every C++ kernel 'available' (nothing is built)."""
    monkeypatch.setenv(tuning.CACHE_ENV, str(tmp_path / "cache"))
    for env in ("ZOO_CONV_IMPL", "ZOO_LAYER_IMPL", "ZOO_GATE_IMPL", tuning.ONEDNN_ENV):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setattr(tuning, "_APPLIED", {"isa": "default", "reason": "test", "direct": False})
    kinds = {kind: (impls, key, env, lambda: (True, "/cache/lib.so"))
             for kind, (impls, key, env, _) in plan.KINDS.items()}
    monkeypatch.setattr(plan, "KINDS", kinds)


class FakeMeasure:
    """measure(convs, impls, groups, budget): oneDNN faster on 16x16 maps, fused BatchNorm faster,
    fused pooling slower; ``reach`` convolutions timed, the rest not reached (None)."""

    def __init__(self, reach=None):
        self.calls, self.reach = [], reach

    def __call__(self, convs, impls, groups, budget_s):
        self.calls.append((list(convs), tuple(impls), dict(groups)))
        times = [[10.0, 12.0, 5.0] if s[4] == 16 else [10.0, 12.0, 11.0] for s in convs]
        if self.reach is not None:
            times = times[:self.reach] + [None] * (len(times) - self.reach)
        out = {"bn_leaky": {"native": 10.0, "fused": 6.0}, "max_pool": {"native": 4.0, "fused": 5.0}}
        return {"convs": times, "groups": {k: out[k] for k in groups}}


def decide(measure, settings=AUTO, **kw):
    return plan.decide(SITES, 32, settings, "CPU", measure=measure, machine=MACHINE, **kw)


def impls(record):
    return {name: site["impl"] for name, site in record["sites"].items()}


def test_every_site_decided_measured_then_cached():
    fake = FakeMeasure()
    record = decide(fake)
    assert impls(record) == {"features.0.conv": "native", "features.2.conv": "onednn",
                             "classifier": "onednn", "features.0": "fused", "features.2": "fused",
                             "features.1": "native"}
    (convs, conv_impls, groups), = fake.calls  # one probe for everything
    assert len(convs) == 3 and conv_impls == tuple(tuning.CONV_IMPLS)
    assert groups == {"bn_leaky": [[32, 16, 32, 32], [32, 32, 16, 16]], "max_pool": [[32, 16, 32, 32]]}
    assert record["times"]["bn_leaky"] == {"native": 10.0, "fused": 6.0}
    again = FakeMeasure()
    assert impls(decide(again)) == impls(record) and again.calls == []  # later runs: the cache
    assert decide(again)["measured_s"] == 0.0


def test_shapes_the_budget_missed_are_native_and_stay_so():
    """Nothing is left for "the next run": a shape the probe did not reach is native, and the
    next run reads that from the cache instead of probing it (so both runs agree)."""
    record = decide(FakeMeasure(reach=1))
    assert sorted(impls(record)[n] for n in ("features.0.conv", "features.2.conv", "classifier")) \
        .count("native") >= 2
    second = FakeMeasure()
    assert impls(decide(second)) == impls(record) and second.calls == []


def test_set_values_environment_overrides_and_errors(monkeypatch):
    never = lambda *a: pytest.fail("measured a set value")  # noqa: E731
    record = decide(never, settings=dict(AUTO, conv_impl="unfold", layer_impl="native"))
    assert impls(record)["features.0.conv"] == "unfold" and impls(record)["classifier"] == "native"
    assert impls(record)["features.0"] == "native" and impls(record)["features.1"] == "native"
    monkeypatch.setenv("ZOO_CONV_IMPL", "native")
    monkeypatch.setenv("ZOO_LAYER_IMPL", "fused")
    record = decide(never, settings=dict(AUTO, conv_impl="onednn", layer_impl="native"))
    assert set(impls(record).values()) == {"native", "fused"}
    assert record["settings"]["conv"] == "set (ZOO_CONV_IMPL)"
    monkeypatch.setenv("ZOO_CONV_IMPL", "fast")
    with pytest.raises(UserError, match="ZOO_CONV_IMPL must be one of auto, native, unfold, onednn"):
        decide(never)
    monkeypatch.delenv("ZOO_CONV_IMPL")
    monkeypatch.delenv("ZOO_LAYER_IMPL")
    with pytest.raises(UserError, match="layer_impl fused runs on CPU only"):
        plan.decide(SITES, 8, dict(AUTO, layer_impl="fused"), "GPU", measure=never, machine=MACHINE)
    record = plan.decide(SITES, 8, AUTO, "GPU", measure=never, machine=MACHINE)
    assert set(impls(record).values()) == {"native"}


def test_unavailable_kernels_are_native_with_the_reason(monkeypatch):
    kinds = dict(plan.KINDS)
    kinds["bn_leaky"] = kinds["bn_leaky"][:3] + (lambda: (False, "no C++ compiler (g++) on PATH"),)
    monkeypatch.setattr(plan, "KINDS", kinds)
    record = decide(FakeMeasure())
    assert impls(record)["features.0"] == "native"
    assert record["unavailable"] == {"bn_leaky": "no C++ compiler (g++) on PATH"}
    with pytest.raises(UserError, match="cannot be built here \\(no C\\+\\+ compiler"):
        decide(FakeMeasure(), settings=dict(AUTO, layer_impl="fused"))


class Sites:
    """Stands in for a network: cells_and_names over fake kernel sites."""

    def __init__(self):
        from src.kernels.layers import KernelSite

        class Site(KernelSite):
            def __init__(self, kind):
                self.kernel_kind = kind

            def set_kernel(self, impl):
                self.kernel_impl = impl

        self.cells = {name: Site(kind) for name, (kind, _) in SITES.items()}

    def cells_and_names(self):
        return list(self.cells.items())


def test_run_record_rank0_writes_others_resume_and_eval_read(tmp_path, monkeypatch):
    monkeypatch.setattr(plan, "trace_sites", lambda net, shape: dict(SITES))
    run = tmp_path / "run"
    lines = []
    net = Sites()
    record = plan.configure(net, (1, 3, 32, 32), 32, AUTO, out_dir=str(run), log=lines.append,
                            measure=FakeMeasure(), machine=MACHINE)
    path = run / plan.RECORD_NAME
    assert json.loads(path.read_text())["sites"] == record["sites"]
    assert {n: c.kernel_impl for n, c in net.cells.items()} == impls(record)
    assert "recorded in" in lines[-1] and "conv native x1, onednn x2" in lines[-1]
    # rank 1 of the same run: waits for rank 0's file, measures nothing
    rank1 = Sites()
    plan.configure(rank1, None, 32, AUTO, out_dir=str(run), rank=1, log=None,
                   measure=lambda *a: pytest.fail("rank 1 measured"))
    assert {n: c.kernel_impl for n, c in rank1.cells.items()} == impls(record)
    # resume / eval: the checkpoint's run folder holds the record; another machine's cache
    ckpt = run / "checkpoints" / "tinydarknet-1_3.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"")
    assert plan.find_record(str(ckpt)) == str(path) == plan.find_record(str(ckpt.parent))
    assert plan.find_record(str(tmp_path / "elsewhere.ckpt")) is None
    monkeypatch.setenv(tuning.CACHE_ENV, str(tmp_path / "other-cache"))
    resumed = Sites()
    plan.configure(resumed, None, 8, AUTO, pinned=str(path), out_dir=str(tmp_path / "run2"),
                   log=None, measure=lambda *a: pytest.fail("resume measured"))
    assert {n: c.kernel_impl for n, c in resumed.cells.items()} == impls(record)
    assert json.loads((tmp_path / "run2" / plan.RECORD_NAME).read_text())["sites"] == record["sites"]


def test_ranks_that_cannot_measure_decide_alone(tmp_path, monkeypatch):
    """GPU / Ascend, or every kind native: nothing is measured, so a rank > 0 (on another host,
    without the run folder) decides by itself at once instead of waiting for rank 0's record."""
    monkeypatch.setattr(plan, "trace_sites", lambda net, shape: dict(SITES))
    monkeypatch.setattr(plan, "wait_for_record", lambda *a, **k: pytest.fail("rank 1 waited"))
    native = {"conv_impl": "native", "layer_impl": "native", "gate_impl": "native"}
    for settings, device in ((AUTO, "GPU"), (native, "CPU")):
        assert not plan.measures(settings, device)
        rank1 = Sites()
        plan.configure(rank1, None, 32, settings, device_target=device, out_dir=str(tmp_path / device),
                       rank=1, log=None, measure=lambda *a: pytest.fail("measured"), machine=MACHINE)
        assert {c.kernel_impl for c in rank1.cells.values()} == {"native"}
    assert plan.measures(AUTO, "CPU") and plan.measures(dict(native, gate_impl="auto"), "CPU")


def test_rank1_ignores_an_older_runs_record_and_times_out(tmp_path, monkeypatch):
    run = tmp_path / "run"
    plan.write_record(str(run / plan.RECORD_NAME), {"format": 1, "sites": {}, "decided_at": 1.0})
    with pytest.raises(UserError, match="rank 0 wrote no kernel choices.*--kernel_choices FILE"):
        plan.wait_for_record(str(run / plan.RECORD_NAME), timeout_s=0.3, poll_s=0.1)


def test_a_bad_record_is_one_clear_error(tmp_path):
    bad = tmp_path / "kernel_choices.json"
    bad.write_text("{}")
    with pytest.raises(UserError, match="is not a kernel choices file"):
        plan.read_record(str(bad))
    with pytest.raises(UserError, match="cannot read it"):
        plan.read_record(str(tmp_path / "missing.json"))


def test_sites_come_from_the_network():
    """No hand-kept list: the shape walk finds every convolution, BatchNorm + leaky ReLU,
    max-pool and LSTM cell with its map size, and leaves the network as it was."""
    import mindspore as ms
    from src.models.convlstm import ConvLSTM
    from src.models.tinydarknet import TinyDarkNet
    sites = plan.trace_sites(TinyDarkNet(num_classes=10), (1, 3, 32, 32))
    convs = [key for kind, key in sites.values() if kind == "conv"]
    assert len(convs) == 16 and convs[0] == (3, 16, 3, 32, 32) and convs[-1] == (128, 10, 1, 2, 2)
    assert sites["features.1"] == ("max_pool", (16, 32, 32))
    assert sites["features.0"] == ("bn_leaky", (16, 32, 32))
    net = ConvLSTM(1, 4, (8, 4), 3, 3, input_frames=2, output_frames=2,
                   forecaster_input="prediction", structure="stack", head_kernel=3)
    mode = ms.get_context("mode")
    sites = plan.trace_sites(net, (1, 2, 1, 16, 16))
    assert ms.get_context("mode") == mode and net.stack[0].shape_trace is None
    assert sites == {"stack.0": ("lstm_gates", (8, 4, 4)), "stack.0.conv_xh": ("conv", (24, 32, 3, 4, 4)),
                     "stack.1": ("lstm_gates", (4, 4, 4)), "stack.1.conv_xh": ("conv", (12, 16, 3, 4, 4)),
                     "head": ("conv", (12, 16, 3, 4, 4))}


FAKE_CXX = """#!/bin/sh
echo "fake-c++ 1.0"
[ "$1" = "--version" ] && exit 0
echo x >> "{count}"
sleep 0.5
{action}
"""


def fake_compiler(tmp_path, fail=False):
    count = tmp_path / "compiles"
    out_arg = 'for a; do [ "$prev" = "-o" ] && touch "$a"; prev="$a"; done'
    action = 'echo "error: no good" >&2; exit 1' if fail else out_arg
    script = tmp_path / ("bad-cxx" if fail else "cxx")
    script.write_text(FAKE_CXX.format(count=count, action=action))
    script.chmod(0o755)
    return str(script), count


def test_processes_starting_together_compile_once(tmp_path, monkeypatch):
    cxx, count = fake_compiler(tmp_path)
    monkeypatch.setenv("CXX", cxx)
    monkeypatch.setattr(build, "_COMPILERS", {})
    source = tmp_path / "k.cc"
    source.write_text("// kernel")
    code = ("import sys; from src.kernels.build import AotLibrary; "
            f"print(AotLibrary({str(source)!r}, ('-shared',)).build())")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert count.read_text().count("x") == 1, outs  # one compile, three waited and loaded it
    assert len({o.strip() for o in outs}) == 1 and ".so', None)" in outs[0]


def test_a_failed_build_is_remembered_with_its_reason(tmp_path, monkeypatch):
    cxx, count = fake_compiler(tmp_path, fail=True)
    monkeypatch.setenv("CXX", cxx)
    monkeypatch.setattr(build, "_COMPILERS", {})
    source = tmp_path / "k.cc"
    source.write_text("// kernel")
    first = build.AotLibrary(str(source), ("-shared",)).build()
    assert first[0] is None and "failed: error: no good" in first[1] and "fake-c++ 1.0" in first[1]
    again = build.AotLibrary(str(source), ("-shared",)).build()
    assert again == first and count.read_text().count("x") == 1  # not retried
    assert build.forget_failures() and build.AotLibrary(str(source), ("-shared",)).build() == first
    assert count.read_text().count("x") == 2  # forgotten: tried again
    # another compiler version is another key: tried again
    monkeypatch.setattr(build, "_COMPILERS", {cxx: "fake-c++ 2.0"})
    build.AotLibrary(str(source), ("-shared",)).build()
    assert count.read_text().count("x") == 3


def test_onednn_library_checks_its_major_version():
    from src.kernels import onednn_conv
    ok, detail = onednn_conv.LIBRARY.availability()
    if not ok:
        pytest.skip(detail)
    assert onednn_conv._check_version(detail) is None
    lib = tuning.onednn_library()
    assert tuning.onednn_version(lib).startswith("3.")


def test_cli_prints_the_machine_and_rejects_bad_arguments(tmp_path):
    env = dict(os.environ, ZOO_KERNEL_CACHE=str(tmp_path / "cache"), ZOO_NO_CUSTOM_OPS="1")
    run = lambda *a: subprocess.run([sys.executable, "-m", "src.kernels", *a], cwd=ROOT, env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    out = run()
    assert out.returncode == 0, out.stderr
    for text in ("machine: ", "compiler: ", f"cache: {tmp_path / 'cache'}", "ZOO_NO_CUSTOM_OPS is set"):
        assert text in out.stdout
    assert run("--help").returncode == 0
    bad = run("--bogus")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert bad.stderr.startswith("error: unrecognized arguments: --bogus")


def test_remeasure_forgets_the_times():
    decide(FakeMeasure())
    assert tuning.forget_measurements(machine=MACHINE) == 5  # 3 convolutions, 2 fused kinds
    again = FakeMeasure()
    decide(again)
    assert len(again.calls) == 1


def test_a_probe_stopped_for_time_keeps_what_it_printed(monkeypatch):
    """The plan probe prints its results as it goes: when the parent stops it, the last complete
    line counts (a line cut off by the kill does not)."""
    done = json.dumps({"convs": [[1.0, 2.0, None], None], "groups": {}})

    def too_slow(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], 1, output=f'{{"convs": []}}\n{done}\n{{"convs": [[1.')
    monkeypatch.setattr(tuning.subprocess, "run", too_slow)
    assert tuning.measure_plan([(2, 3, 4, 3, 8, 8), (2, 3, 4, 3, 4, 4)], ("native",), {}) == \
        json.loads(done)


def test_large_fused_groups_are_probed_at_a_smaller_batch(tmp_path):
    """A fused kind whose layers hold more than GROUP_PROBE_VALUES values per call is timed at a
    smaller batch (at least one image per core), cached under the run's batch with the batch it
    ran at; small ones (the sites above) run at the real batch."""
    small = FakeMeasure()
    decide(small)
    assert {kind: [k[0] for k in keys] for kind, keys in small.calls[0][2].items()} == \
        {"bn_leaky": [32, 32], "max_pool": [32]}
    big = {"features.0": ("bn_leaky", (16, 224, 224)), "features.2": ("bn_leaky", (32, 112, 112))}
    fake = FakeMeasure()
    path = str(tmp_path / "big_cache")
    plan.decide(big, 32, AUTO, "CPU", measure=fake, machine=MACHINE, path=path)
    (keys,) = fake.calls[0][2].values()
    per_image = 16 * 224 * 224 + 32 * 112 * 112
    assert [k[0] for k in keys] == [int(tuning.GROUP_PROBE_VALUES // per_image)] * 2 == [3, 3]
    cached = tuning.read_cache(path)["machines"][tuning.machine_key(MACHINE)]
    (entry,) = cached["fused_layers"].values()
    assert entry["probe_batch"] == 3
    assert tuning.group_probe_batch(32, [(512, 224, 224)], cores=2) == 2  # >= one image per core
    assert tuning.group_probe_batch(1, [(512, 224, 224)], cores=2) == 1  # never above the batch


def test_entry_reads_the_record_of_the_evaluated_or_resumed_run(tmp_path, monkeypatch):
    from src.entry import entry_config
    monkeypatch.setenv(tuning.ONEDNN_ENV, "AVX2")  # this test process's oneDNN stays as it is
    run = tmp_path / "run"
    plan.write_record(str(run / plan.RECORD_NAME), {"format": 1, "sites": {}, "decided_at": 1.0,
                                                    "isa": {"isa": "AVX2"}})
    ckpt = run / "checkpoints" / "tinydarknet-1_2.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"")
    base = ["--config_path", "config/cifar10_config_cpu.yaml"]
    lines = []
    for extra in (["--ckpt_file", str(ckpt)], ["--resume", str(ckpt.parent)]):
        cfg = entry_config(base + extra, log=lines.append)
        assert cfg.kernel_choices == str(run / plan.RECORD_NAME)
    assert entry_config(base, log=None).kernel_choices == ""  # a new run decides
    with pytest.raises(UserError, match="no such file: pass the kernel_choices.json"):
        entry_config(base + ["--kernel_choices", str(tmp_path / "none.json")], log=None)



@pytest.mark.skipif(not shutil.which(os.environ.get("CXX") or "g++"), reason="no C++ compiler")
def test_another_onednn_major_version_is_refused_at_load(tmp_path):
    """A library whose loaded oneDNN is not the major version its declarations are for: the
    layers stay native, with the versions in the reason."""
    from src.kernels import onednn_conv
    source = tmp_path / "fake.cc"
    source.write_text('extern "C" int ZooOnednnApiMajor() { return 3; }\n'
                      'extern "C" int ZooOnednnVersion(int *a, int *b, int *c) '
                      '{ *a = 4; *b = 1; *c = 0; return 0; }\n')
    lib = tmp_path / "fake.so"
    subprocess.run([os.environ.get("CXX") or "g++", "-shared", "-fPIC", "-o", str(lib), str(source)],
                   check=True)
    assert onednn_conv._check_version(str(lib)) == (
        "oneDNN 4.1.0 is loaded but onednn_conv.cc declares the C API of oneDNN 3.x")
    library = build.AotLibrary(str(source), ("-shared", "-fPIC"), check=onednn_conv._check_version)
    ok, reason = library.availability()
    assert not ok and reason.startswith("oneDNN 4.1.0 is loaded")
