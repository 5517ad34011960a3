"""CPU tuning: oneDNN ISA choice and per-layer conv implementation, with injected measurements.

No timing is asserted: the probes are replaced by fake measurement functions, and the tests check
the choice logic, the cache (hit, miss, keys, corrupt file), the overrides and the one log line.
"""
import json
import os
import subprocess
import sys
import time

import pytest

from src.model_utils import cpu_tuning as ct
from src.model_utils.errors import UserError

AVX512 = {"cpu": "Test CPU (family 1 model 2)", "flags": {"avx2", "avx512f"}, "cores": 2,
          "mindspore": "2.10.0"}
AVX2_ONLY = dict(AVX512, flags={"avx2", "fma"})


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in (ct.ONEDNN_ENV, ct.ISA_ENV, ct.CONV_ENV, ct._APPLIED_ENV, ct.NATIVE_SLOW_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    yield


class FakeIsa:
    """measure(candidate): fixed times per candidate, counting calls."""

    def __init__(self, times, direct=None):
        self.times, self.direct, self.calls = times, direct or {}, []

    def __call__(self, candidate):
        self.calls.append(candidate)
        ms = self.times.get(candidate)
        return None if ms is None else {"ms": ms, "impl": f"impl-{candidate}",
                                        "direct_ms": self.direct.get(candidate)}


def apply(measure, machine=AVX512, **kw):
    lines = []
    kw.setdefault("mindspore_loaded", False)
    kw.setdefault("direct", (False, "not built in this test"))
    result = ct.apply_onednn_isa(log=lines.append, measure=measure, machine=machine, **kw)
    return result, lines


def test_cache_path_follows_xdg(tmp_path):
    assert ct.cache_path() == str(tmp_path / "cache" / ct.CACHE_DIR_NAME / "cpu_tuning.json")


def test_isa_probe_picks_fastest_and_caches():
    fake = FakeIsa({"default": 90.0, "AVX2": 3.0})
    result, lines = apply(fake)
    assert result["isa"] == "AVX2" and os.environ[ct.ONEDNN_ENV] == "AVX2"
    assert fake.calls == list(ct.ISA_CANDIDATES)
    assert len(lines) == 1 and "AVX2" in lines[0] and "probed" in lines[0]
    data = json.load(open(ct.cache_path()))
    entry = data["machines"][ct.machine_key(AVX512)]["onednn_isa"]
    assert entry["choice"] == "AVX2" and entry["impl"]["default"] == "impl-default"


def test_isa_cache_hit_measures_nothing(monkeypatch):
    apply(FakeIsa({"default": 90.0, "AVX2": 3.0}))
    monkeypatch.delenv(ct.ONEDNN_ENV)
    fake = FakeIsa({"default": 1.0, "AVX2": 3.0})
    result, lines = apply(fake)
    assert fake.calls == [] and result["isa"] == "AVX2"
    assert len(lines) == 1 and "cached" in lines[0]


@pytest.mark.parametrize("change", [{"cpu": "Other CPU"}, {"cores": 4}, {"mindspore": "2.11.0"}])
def test_isa_cache_keyed_by_cpu_cores_version(monkeypatch, change):
    apply(FakeIsa({"default": 90.0, "AVX2": 3.0}))
    monkeypatch.delenv(ct.ONEDNN_ENV)
    fake = FakeIsa({"default": 1.0, "AVX2": 3.0})
    result, _ = apply(fake, machine=dict(AVX512, **change))
    assert fake.calls == list(ct.ISA_CANDIDATES) and result["isa"] == "default"
    machines = json.load(open(ct.cache_path()))["machines"]
    assert len(machines) == 2  # both machines kept


def test_default_kept_unless_clearly_slower():
    result, _ = apply(FakeIsa({"default": 10.0, "AVX2": 9.5}))  # within the noise margin
    assert result["isa"] == "default" and ct.ONEDNN_ENV not in os.environ


def test_failed_candidate_is_skipped():
    result, _ = apply(FakeIsa({"default": None, "AVX2": 3.0}))
    assert result["isa"] == "AVX2"


def test_all_probes_failed_not_cached():
    result, lines = apply(FakeIsa({}))
    assert result["isa"] == "default" and "not cached" in lines[0]
    assert not os.path.exists(ct.cache_path())


def test_no_avx512_nothing_to_choose():
    fake = FakeIsa({"default": 90.0, "AVX2": 3.0})
    result, lines = apply(fake, machine=AVX2_ONLY)
    assert fake.calls == [] and result["isa"] == "default" and "AVX-512" in lines[0]


def test_corrupted_cache_ignored_and_rewritten():
    path = ct.cache_path()
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        f.write("{not json")
    result, _ = apply(FakeIsa({"default": 90.0, "AVX2": 3.0}))
    assert result["isa"] == "AVX2"
    assert json.load(open(path))["format"] == ct.CACHE_FORMAT
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")]


def test_unwritable_cache_folder_still_applies(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")  # the cache folder cannot be created under a file
    path = str(blocker / "cpu_tuning.json")
    result, lines = apply(FakeIsa({"default": 90.0, "AVX2": 3.0}), path=path)
    assert result["isa"] == "AVX2" and os.environ[ct.ONEDNN_ENV] == "AVX2" and len(lines) == 1


def test_user_onednn_env_wins(monkeypatch):
    monkeypatch.setenv(ct.ONEDNN_ENV, "AVX512_CORE")
    monkeypatch.setenv(ct.ISA_ENV, "AVX2")
    fake = FakeIsa({"default": 90.0, "AVX2": 3.0})
    result, lines = apply(fake)
    assert fake.calls == [] and os.environ[ct.ONEDNN_ENV] == "AVX512_CORE"
    assert len(lines) == 1 and "user-set" in lines[0]


def test_zoo_env_beats_config_setting(monkeypatch):
    monkeypatch.setenv(ct.ISA_ENV, "avx2_vnni")
    fake = FakeIsa({"default": 1.0, "AVX2": 3.0})
    result, lines = apply(fake, setting="default")
    assert fake.calls == [] and result["isa"] == "AVX2_VNNI"
    assert os.environ[ct.ONEDNN_ENV] == "AVX2_VNNI" and "ZOO_ONEDNN_ISA" in lines[0]


def test_config_default_applies_nothing():
    result, lines = apply(FakeIsa({"default": 90.0, "AVX2": 3.0}), setting="default")
    assert result["isa"] == "default" and ct.ONEDNN_ENV not in os.environ
    assert "user-set" in lines[0]


def test_bad_isa_name_is_user_error():
    with pytest.raises(UserError, match="not a oneDNN ISA"):
        apply(FakeIsa({}), setting="AVX3")


def test_nothing_changed_once_mindspore_is_imported():
    fake = FakeIsa({"default": 90.0, "AVX2": 3.0})
    result, lines = apply(fake, mindspore_loaded=True)
    assert fake.calls == [] and ct.ONEDNN_ENV not in os.environ
    assert result["isa"] == "default" and "not applied" in lines[0]


def test_child_inherits_applied_cap():
    apply(FakeIsa({"default": 90.0, "AVX2": 3.0}))
    result, lines = apply(FakeIsa({}))  # a child process sees the variable the parent set
    assert result["isa"] == "AVX2" and "inherited" in lines[0]


ZEN4 = {"default": 90.0, "AVX2": 0.7}  # plain-layout conv: jit_uni_ncsp uncapped, gemm capped


def test_isa_direct_kernel_lifts_the_cap_when_clearly_faster():
    fake = FakeIsa(ZEN4, direct={"default": 0.3, "AVX2": 0.5})
    result, lines = apply(fake, direct=(True, "/cache/onednn_conv-x.so"))
    assert result == {"isa": "default", "reason": result["reason"], "direct": True}
    assert ct.ONEDNN_ENV not in os.environ and os.environ[ct.NATIVE_SLOW_ENV] == "1"
    assert "direct kernel for the k x k convolutions" in lines[0] and "blocked 0.30 ms" in lines[0]
    # the same cached times, for a process that runs native convolutions (export, inference)
    result, lines = apply(FakeIsa({}), direct=(False, "conv_impl native"))
    assert result["isa"] == "AVX2" and ct.NATIVE_SLOW_ENV not in os.environ
    assert "cached" in lines[0] and "direct kernel not used: conv_impl native" in lines[0]


def test_isa_direct_kernel_within_the_margin_keeps_the_plain_choice():
    fake = FakeIsa(ZEN4, direct={"default": 0.47, "AVX2": 0.5})
    result, _ = apply(fake, direct=(True, "lib"))
    assert result["isa"] == "AVX2" and not result["direct"]
    assert ct.NATIVE_SLOW_ENV not in os.environ


def test_isa_record_of_an_older_probe_is_measured_again():
    apply(FakeIsa(ZEN4))
    path = ct.cache_path()
    data = json.load(open(path))
    data["machines"][ct.machine_key(AVX512)]["onednn_isa"].pop("probe")
    json.dump(data, open(path, "w"))
    fake = FakeIsa(ZEN4)
    os.environ.pop(ct.ONEDNN_ENV)
    apply(fake)
    assert fake.calls == list(ct.ISA_CANDIDATES)


@pytest.mark.parametrize("conv_impl, allowed", [("auto", True), ("onednn", True),
                                                ("native", False), ("unfold", False)])
def test_direct_kernel_allowed_only_for_auto_and_onednn(monkeypatch, conv_impl, allowed):
    kernel = lambda: (True, "lib")  # noqa: E731
    assert ct._direct_allowed(conv_impl, kernel)[0] is allowed
    not_offered = ct.NO_DIRECT_KERNEL if allowed else (False, f"conv_impl {conv_impl}")
    assert ct._direct_allowed(conv_impl, None) == not_offered
    monkeypatch.setenv(ct.CONV_ENV, "native")  # the environment overrides the config
    assert ct._direct_allowed(conv_impl, kernel)[0] is False
    monkeypatch.delenv(ct.CONV_ENV)
    assert ct._direct_allowed(conv_impl, lambda: (False, "no C++ compiler")) == (
        False, "no C++ compiler" if allowed else f"conv_impl {conv_impl}")


# ------------------------------------------------------------------ conv implementation

SHAPES = [(3, 16, 3, 32, 32), (16, 32, 3, 16, 16), (64, 512, 3, 2, 2), (128, 10, 1, 2, 2)]


class FakeConv:
    """measure(probe_shapes): unfold faster on maps of <= 4 positions; records the calls."""

    def __init__(self, reach=None):
        self.calls, self.reach = [], reach

    def __call__(self, probe_shapes, impls):
        assert impls == ("native", "unfold")  # policy() passes onednn=(False, ...)
        self.calls.append(list(probe_shapes))
        out = [[10.0, 5.0] if s[4] * s[5] <= 4 else [5.0, 10.0] for s in probe_shapes]
        if self.reach is not None:
            out = out[:self.reach] + [None] * (len(out) - self.reach)
        return out


def policy(measure, setting="auto", machine=AVX512, **kw):
    lines = []
    kw.setdefault("onednn", (False, "not built in this test"))
    pol = ct.conv_impl_policy(SHAPES, 32, setting=setting, log=lines.append, measure=measure,
                              machine=machine, **kw)
    return pol, lines


def test_conv_choice_per_shape_and_cache():
    fake = FakeConv()
    pol, lines = policy(fake)
    assert [pol(*s) for s in SHAPES] == ["native", "native", "unfold", "native"]
    assert len(fake.calls) == 1 and len(fake.calls[0]) == 3  # 1x1 not probed
    assert len(lines) == 1 and "unfold x1 (unfold: 64->512 3x3 @2x2)" in lines[0] and "probed" in lines[0]
    again = FakeConv()
    pol2, lines2 = policy(again)
    assert again.calls == [] and "cached" in lines2[0]
    assert [pol2(*s) for s in SHAPES] == [pol(*s) for s in SHAPES]


def test_conv_native_kept_unless_unfold_clearly_faster():
    pol = ct.conv_impl_policy([(16, 32, 3, 8, 8), (16, 64, 3, 8, 8)], 4, log=None, machine=AVX512,
                              measure=lambda shapes, impls: [[10.0, 8.0], [10.0, 7.0]],
                              onednn=(False, ""))
    assert pol(16, 32, 3, 8, 8) == "native" and pol(16, 64, 3, 8, 8) == "unfold"


def test_conv_cached_times_rejudged_with_the_current_margin(tmp_path, monkeypatch):
    """A cache written with another margin (its "choice" field) is re-judged from its times."""
    path = str(tmp_path / "cache.json")
    ct.conv_impl_policy([(16, 32, 3, 8, 8)], 4, log=None, machine=AVX512, path=path,
                        measure=lambda shapes, impls: [[10.0, 7.0]], onednn=(False, ""))
    monkeypatch.setattr(ct, "CONV_MARGIN", 0.5)
    never = lambda shapes, impls: pytest.fail("re-probed a cached shape")  # noqa: E731
    pol = ct.conv_impl_policy([(16, 32, 3, 8, 8)], 4, log=None, machine=AVX512, path=path,
                              measure=never, onednn=(False, ""))
    assert pol(16, 32, 3, 8, 8) == "native"


def test_conv_cache_keyed_by_isa_and_batch(monkeypatch):
    policy(FakeConv())
    monkeypatch.setenv(ct.ONEDNN_ENV, "AVX2")
    fake = FakeConv()
    policy(fake)
    assert len(fake.calls) == 1
    fake = FakeConv()
    ct.conv_impl_policy(SHAPES, 8, log=None, measure=fake, machine=AVX512, onednn=(False, ""))
    assert len(fake.calls) == 1


def test_conv_probe_batch_reduced_only_on_large_maps():
    fake = FakeConv()
    ct.conv_impl_policy([(512, 512, 5, 64, 64), (64, 512, 3, 2, 2)], 32, log=None,
                        measure=fake, machine=AVX512, onednn=(False, ""))
    batches = {tuple(s[1:]): s[0] for s in fake.calls[0]}
    assert batches[(64, 512, 3, 2, 2)] == 32
    assert batches[(512, 512, 5, 64, 64)] == AVX512["cores"]  # heavy layer: one image per core


def test_conv_unreached_shapes_probed_next_run():
    first = FakeConv(reach=1)
    pol, lines = policy(first)
    assert "not reached" in lines[0] and pol(64, 512, 3, 2, 2) == "native"
    second = FakeConv()
    pol, _ = policy(second)
    assert len(second.calls[0]) == 2 and pol(64, 512, 3, 2, 2) == "unfold"


@pytest.mark.parametrize("value", ["native", "unfold"])
def test_conv_env_overrides_config(monkeypatch, value):
    monkeypatch.setenv(ct.CONV_ENV, value)
    fake = FakeConv()
    pol, lines = policy(fake, setting="auto")
    assert fake.calls == [] and "user-set: ZOO_CONV_IMPL" in lines[0]
    assert pol(16, 32, 3, 16, 16) == value and pol(128, 10, 1, 2, 2) == "native"


class FakeThree:
    """measure(probe_shapes, impls) with the oneDNN kernel: given times per (k, h) of a shape."""

    def __init__(self, times):
        self.times, self.calls = times, []

    def __call__(self, probe_shapes, impls):
        assert impls == ct.CONV_IMPLS
        self.calls.append(list(probe_shapes))
        return [list(self.times[(s[3], s[4])]) for s in probe_shapes]


def test_conv_onednn_chosen_per_shape_with_its_margin():
    fake = FakeThree({(3, 32): [10.0, 12.0, 8.0],    # oneDNN clearly faster
                      (3, 16): [10.0, 12.0, 9.5],    # within its margin: native kept
                      (3, 2): [10.0, 5.0, 6.0],      # im2col the fastest
                      (1, 2): [10.0, None, 4.0]})    # 1x1: native or oneDNN (no im2col)
    pol, lines = policy(fake, onednn=(True, "/cache/onednn_conv-x.so"))
    assert len(fake.calls) == 1 and len(fake.calls[0]) == 4  # the 1x1 layer probed too
    assert [pol(*s) for s in SHAPES] == ["onednn", "native", "unfold", "onednn"]
    assert "native x1, unfold x1, onednn x2 (unfold: 64->512 3x3 @2x2)" in lines[0]
    # the same cache without the kernel (e.g. ZOO_NO_CUSTOM_OPS): re-judged, never oneDNN
    never = lambda shapes, impls: pytest.fail("re-probed")  # noqa: E731
    pol, lines = policy(never, onednn=(False, "ZOO_NO_CUSTOM_OPS is set"))
    assert [pol(*s) for s in SHAPES] == ["native", "native", "unfold", "native"]
    assert "onednn" not in lines[0] and "cached" in lines[0]


def test_conv_native_kxk_never_timed_nor_chosen_where_slow(monkeypatch):
    """Under an ISA where apply_onednn_isa found the native k x k op slow, the k x k layers get
    oneDNN's kernel or im2col (im2col only when clearly faster than oneDNN); 1x1 stays free."""
    monkeypatch.setenv(ct.NATIVE_SLOW_ENV, "1")
    seen = []

    def measure(probe_shapes, impls):
        seen.append(impls)
        return [[None, 12.0, 8.0], [None, 9.0, 10.0], [None, 5.0, 10.0], [4.0, None, 6.0]][:len(probe_shapes)]
    pol, lines = policy(measure, onednn=(True, "lib"))
    assert seen == [(ct.NATIVE_1X1, "unfold", "onednn")]
    assert [pol(*s) for s in SHAPES] == ["onednn", "onednn", "unfold", "native"]
    assert pol(7, 7, 5, 9, 9) == "onednn"  # a shape not probed: the direct kernel, not native


def test_conv_onednn_setting_needs_cpu_and_the_kernel(monkeypatch):
    with pytest.raises(UserError, match="onednn runs on CPU only.*use auto or native"):
        policy(FakeConv(), setting="onednn", device_target="GPU", onednn=(True, "lib"))
    with pytest.raises(UserError, match="cannot be built here \\(no C\\+\\+ compiler\\); install g\\+\\+"):
        policy(FakeConv(), setting="onednn", onednn=(False, "no C++ compiler"))
    pol, lines = policy(FakeConv(), setting="onednn", onednn=(True, "lib"))
    assert all(pol(*s) == "onednn" for s in SHAPES)  # 1x1 included
    assert "onednn x4" in lines[0] and "user-set: conv_impl=onednn" in lines[0]
    monkeypatch.setenv(ct.CONV_ENV, "unfold")
    pol, _ = policy(FakeConv(), setting="onednn", onednn=(False, "not needed"))
    assert pol(64, 512, 3, 2, 2) == "unfold" and pol(128, 10, 1, 2, 2) == "native"


def test_conv_auto_off_cpu_is_native():
    fake = FakeConv()
    pol, lines = policy(fake, device_target="GPU")
    assert fake.calls == [] and all(pol(*s) == "native" for s in SHAPES) and "GPU" in lines[0]


def test_conv_bad_setting_is_user_error():
    with pytest.raises(UserError, match="conv_impl"):
        policy(FakeConv(), setting="fast")


def test_import_needs_no_mindspore():
    code = ("import sys; import src.model_utils.cpu_tuning; "
            "assert 'mindspore' not in sys.modules and 'numpy' not in sys.modules")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


# ------------------------------------------------------------------ networks take the choice

def _record(shapes):
    def choose(*shape):
        shapes.append(shape)
        return "unfold" if shape[3] * shape[4] <= 4 else "native"
    return choose


def test_tinydarknet_conv_impl_per_layer():
    import mindspore.nn as nn
    from src.models.tinydarknet import TinyDarkNet, conv_shapes
    seen = []
    net = TinyDarkNet(num_classes=10, conv_impl=_record(seen), image_size=32)
    assert seen == conv_shapes(10, 3, 32)  # every layer, the 1x1 classifier last
    convs = [c for _, c in net.cells_and_names() if isinstance(c, nn.Conv2d)]
    assert [c.use_unfold for c in convs] == [k > 1 and h * w <= 4 for _, _, k, h, w in
                                             conv_shapes(10, 3, 32)]
    with pytest.raises(ValueError, match="image_size"):
        TinyDarkNet(num_classes=10, conv_impl=_record([]))


def test_convlstm_conv_impl_per_layer():
    from src.models.convlstm import ConvLSTM, conv_shapes
    seen = []
    args = dict(hidden_channels=(8, 4), input_kernel=3, state_kernel=5, patch_size=4)
    net = ConvLSTM(conv_impl=lambda *s: seen.append(s) or "unfold", image_size=16, **args)
    assert sorted(seen) == sorted(conv_shapes(image_size=16, **args)[:-1])
    assert net.encoder[0].conv_x.use_unfold and net.forecaster[1].conv_h.use_unfold
    assert not hasattr(net.forecaster[0], "conv_x")  # first forecaster layer: no input


def test_convlstm_stack_probes_only_its_own_convolutions():
    from src.models.convlstm import ConvLSTM, conv_shapes
    seen = []
    args = dict(hidden_channels=(8, 4), input_kernel=3, state_kernel=3, patch_size=4,
                forecaster_input="prediction", structure="stack")
    net = ConvLSTM(conv_impl=lambda *s: seen.append(s) or "unfold", image_size=16, **args)
    assert sorted(seen) == sorted(conv_shapes(image_size=16, **args)[:-1]) == [(12, 16, 3, 4, 4),
                                                                               (24, 32, 3, 4, 4)]
    assert net.stack[0].conv_xh.use_unfold and not hasattr(net, "forecaster")


def test_conv_probe_times_the_two_implementations_in_alternation(monkeypatch):
    """The conv probe runs native and im2col one after the other, rep by rep, so a passing load
    slows both alike; each gets its best time; a cache written by an older probe is not reused."""
    import mindspore as ms
    import mindspore.nn as nn
    from src.model_utils import cpu_tuning, kernel_probe
    calls = []

    class FakeStep:
        def __init__(self, conv, **kwargs):
            self.unfold = bool(conv.use_unfold)

        def compile(self, x):
            pass

        def __call__(self, x):
            calls.append("unfold" if self.unfold else "native")
            time.sleep(0.002)  # equal times: neither is "clearly slower", every rep runs
            return None, (None, [ms.Tensor(0.0)])

    monkeypatch.setattr(nn, "ForwardValueAndGrad", FakeStep)
    monkeypatch.setattr(ms, "set_device", lambda *a, **k: None)  # the probe's own process sets it
    monkeypatch.setattr(ms, "set_context", lambda *a, **k: None)
    times = kernel_probe.time_conv_impls([(2, 4, 8, 3, 8, 8), (2, 4, 8, 1, 8, 8)], budget_s=60,
                                         reps=3, impls=("native", "unfold"))
    # a warm-up and 3 timed reps of each, alternating; no im2col for the 1x1 kernel
    assert calls == ["native", "unfold"] * 4 + ["native"] * 4
    assert len(times) == 2 and times[0][2] is None and all(t > 0 for t in times[0][:2])
    assert times[1][0] > 0 and times[1][1:] == [None, None]
    assert cpu_tuning._conv_key("AVX2", 32, (16, 128, 3, 8, 8)).startswith(
        f"probe {cpu_tuning.CONV_PROBE_VERSION} | ")


def test_real_isa_probe_times_both_layouts():
    """The probe child against MindSpore's bundled oneDNN: both layouts timed, kernels named (no
    timing asserted: which is faster depends on the CPU)."""
    result = ct.measure_isa("AVX2")
    if result is None:
        pytest.skip("MindSpore's libdnnl.so.3 not found or the probe failed")
    assert result["ms"] > 0 and result["direct_ms"] > 0
    assert result["impl"] and result["direct_impl"] and result["isa"] > 0
