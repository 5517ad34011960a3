"""src.kernels.tuning: the oneDNN ISA choice and the per-machine cache, with injected measurements.

No timing is asserted: the probes are replaced by fake measurement functions, and the tests check
the choice logic, the cache (hit, miss, keys, corrupt file), the overrides and the one log line.
The per-run kernel choices (convolutions, fused layers): tests/test_kernel_plan.py.
"""
import json
import os
import subprocess
import sys
import pytest

from src.kernels import tuning as ct
from src.model_utils.errors import UserError

AVX512 = {"cpu": "Test CPU (family 1 model 2)", "flags": {"avx2", "avx512f"}, "cores": 2,
          "mindspore": "2.10.0"}
AVX2_ONLY = dict(AVX512, flags={"avx2", "fma"})


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in (ct.ONEDNN_ENV, ct.ISA_ENV, ct.CONV_ENV, ct.CACHE_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(ct, "_APPLIED", dict(ct._APPLIED))
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


def test_cache_path_follows_xdg_and_the_override(tmp_path, monkeypatch):
    assert ct.cache_path() == str(tmp_path / "cache" / ct.CACHE_DIR_NAME / "cpu_tuning.json")
    monkeypatch.setenv(ct.CACHE_ENV, str(tmp_path / "mine"))
    assert ct.cache_path() == str(tmp_path / "mine" / "cpu_tuning.json")


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
    assert len(lines) == 1 and "set in the environment" in lines[0]


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


def test_child_keeps_the_cap_in_its_environment():
    apply(FakeIsa({"default": 90.0, "AVX2": 3.0}))
    result, lines = apply(FakeIsa({}))  # a child process sees the variable the parent set
    assert result["isa"] == "AVX2" and "set in the environment" in lines[0]
    assert ct.applied_isa()["isa"] == "AVX2"


def test_a_recorded_isa_is_applied_with_its_source():
    fake = FakeIsa({"default": 90.0, "AVX2": 3.0})
    result, lines = apply(fake, setting="AVX2", source="recorded in run/kernel_choices.json")
    assert fake.calls == [] and result["isa"] == "AVX2"
    assert lines == ["oneDNN ISA: AVX2 (recorded in run/kernel_choices.json)"]


ZEN4 = {"default": 90.0, "AVX2": 0.7}  # plain-layout conv: jit_uni_ncsp uncapped, gemm capped


def test_isa_direct_kernel_lifts_the_cap_when_clearly_faster():
    fake = FakeIsa(ZEN4, direct={"default": 0.3, "AVX2": 0.5})
    result, lines = apply(fake, direct=(True, "/cache/onednn_conv-x.so"))
    assert result == {"isa": "default", "reason": result["reason"], "direct": True}
    assert ct.ONEDNN_ENV not in os.environ and ct.native_kxk_slow()
    assert "direct kernel for the k x k convolutions" in lines[0] and "blocked 0.30 ms" in lines[0]
    # the same cached times, for a process that runs native convolutions (export, inference)
    result, lines = apply(FakeIsa({}), direct=(False, "conv_impl native"))
    assert result["isa"] == "AVX2" and not ct.native_kxk_slow()
    assert "cached" in lines[0] and "direct kernel not used: conv_impl native" in lines[0]


def test_isa_direct_kernel_within_the_margin_keeps_the_plain_choice():
    fake = FakeIsa(ZEN4, direct={"default": 0.47, "AVX2": 0.5})
    result, _ = apply(fake, direct=(True, "lib"))
    assert result["isa"] == "AVX2" and not result["direct"] and not ct.native_kxk_slow()


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


def test_unset_isa_warning_only_where_the_default_is_slow(monkeypatch, tmp_path):
    """A network built on an AVX-512 CPU without the ISA step gets one line naming the fix and the
    measured times; none on other devices, CPUs without AVX-512, where the probe kept the default,
    or once the cap is set."""
    def unset():  # as in a process that never called apply_onednn_isa
        monkeypatch.delenv(ct.ONEDNN_ENV, raising=False)
        monkeypatch.setattr(ct, "_APPLIED", dict(ct._APPLIED, isa=None))

    unset()
    assert ct.unset_isa_warning(machine=AVX2_ONLY) is None
    unprobed = ct.unset_isa_warning(machine=AVX512)
    assert "entry_config" in unprobed and f"{ct.ONEDNN_ENV}=AVX2" in unprobed and "measured" not in unprobed
    apply(FakeIsa({"default": 300.0, "AVX2": 2.0}))
    assert ct.unset_isa_warning(machine=AVX512) is None  # applied in this process
    unset()
    line = ct.unset_isa_warning(machine=AVX512)
    assert "default 300 ms, AVX2 2.0 ms" in line and line.endswith(f"{ct.ONEDNN_ENV}=AVX2")
    assert ct.unset_isa_warning("GPU", machine=AVX512) is None
    monkeypatch.setenv(ct.ONEDNN_ENV, "AVX2")
    assert ct.unset_isa_warning(machine=AVX512) is None
    monkeypatch.setenv(ct.CACHE_ENV, str(tmp_path / "other"))
    unset()
    apply(FakeIsa({"default": 3.0, "AVX2": 3.0}))
    unset()
    assert ct.unset_isa_warning(machine=AVX512) is None  # the probe kept the default


def test_import_needs_no_mindspore():
    code = ("import sys; import src.kernels.tuning, src.kernels.plan, src.kernels.build; "
            "assert 'mindspore' not in sys.modules and 'numpy' not in sys.modules")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], cwd=root, check=True)


def test_real_isa_probe_times_both_layouts():
    """The probe child against MindSpore's bundled oneDNN: both layouts timed, kernels named (no
    timing asserted: which is faster depends on the CPU)."""
    result = ct.measure_isa("AVX2")
    if result is None:
        pytest.skip("MindSpore's libdnnl.so.3 not found or the probe failed")
    assert result["ms"] > 0 and result["direct_ms"] > 0
    assert result["impl"] and result["direct_impl"] and result["isa"] > 0
