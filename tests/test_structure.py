"""The code's structure: no import cycles in src/, every module importable on its own, no model-name
branches outside the registry, a read-only config, and the task layer's shared evaluators."""
import ast
import os
import subprocess
import sys

import numpy as np
import pytest

from src.model_utils.config import get_config
from src.models import MODELS, get_model_spec
from src.tasks import TASKS, create_task
from src.tasks.classification import ClassificationTask
from src.tasks.video_prediction import VideoPredictionTask
from src.metrics import video_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY_SCRIPTS = ("train.py", "eval.py", "export.py", "preprocess.py", "postprocess.py")


def src_modules():
    """{module name: file} of every module under src/."""
    modules = {}
    for folder, _, files in os.walk(os.path.join(ROOT, "src")):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, name), ROOT)[:-3].replace(os.sep, ".")
                modules[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = \
                    os.path.join(folder, name)
    return modules


def imported_src_modules(path, known):
    """The src modules a file imports anywhere (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def find_cycle(graph):
    """One import cycle of ``graph`` ({module: {imported}}) as a list, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                cycle = visit(nxt, path + [nxt])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_find_cycle_detects_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def module_graph():
    """{src module: {src modules it imports}}; a package imports its parents implicitly, so an
    edge to its own package is left out."""
    modules = src_modules()
    return {m: {d for d in imported_src_modules(f, modules) if d != m and not m.startswith(d + ".")}
            for m, f in modules.items()}


def package_of(module):
    """``src.models.convlstm`` -> ``src.models``; a module directly in src/ is its own node."""
    parts = module.split(".")
    return ".".join(parts[:2])


def package_graph(graph):
    """The module graph collapsed to packages (``src.models``, ``src.kernels``, ...): an edge
    A -> B when a module of A imports one of B (A != B)."""
    packages = {}
    for module, deps in graph.items():
        edges = packages.setdefault(package_of(module), set())
        edges.update(package_of(d) for d in deps if package_of(d) != package_of(module))
    return packages


def test_find_cycle_detects_a_package_cycle_between_acyclic_modules():
    """Module imports without a cycle can still tie two packages together (what function-local
    imports used to hide between src.models and src.model_utils): the package graph sees it."""
    graph = {"src.models.layers": {"src.kernels.tuning"}, "src.kernels.tuning": set(),
             "src.kernels.probe": {"src.models.layers"}, "src.models": set()}
    assert find_cycle(graph) is None
    cycle = find_cycle(package_graph(graph))
    assert cycle and set(cycle) == {"src.models", "src.kernels"}


def test_src_has_no_import_cycle():
    graph = module_graph()
    assert "src.checkpoint" in graph and "src.tasks" in graph
    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_src_packages_have_no_import_cycle():
    """No cycle between packages (src.models, src.kernels, src.tasks, ...), counting every import,
    also those inside functions."""
    packages = package_graph(module_graph())
    assert "src.kernels" in packages and "src.models" in packages["src.tasks"]
    cycle = find_cycle(packages)
    assert cycle is None, f"package import cycle: {' -> '.join(cycle)}"


def test_kernels_import_no_network_task_or_trainer():
    """The kernel package is used by the networks, never the other way round."""
    graph = module_graph()
    offenders = {m: sorted(d for d in deps if package_of(d) in ("src.models", "src.tasks")
                           or d in ("src.trainer", "src.checkpoint", "src.evaluate"))
                 for m, deps in graph.items() if package_of(m) == "src.kernels"}
    assert not {m: d for m, d in offenders.items() if d}


def test_parameter_names_unchanged():
    """Every config's network has the parameter names and shapes of tests/data/parameter_names.json
    (collected before the kernels left the networks): checkpoints of running trainings load."""
    import json
    from src.models import create_model
    expected = json.load(open(os.path.join(ROOT, "tests", "data", "parameter_names.json")))
    for config, names in expected.items():
        cfg = get_config(["--config_path", os.path.join("config", config)])
        spec = get_model_spec(cfg.model_name)
        net = create_model(cfg.model_name, **spec.kwargs_from_config(cfg))
        got = [[p.name, list(p.shape)] for p in net.get_parameters()]
        assert got == names, config


def test_every_module_imports_on_its_own():
    """Each src module (and each entry script) imports in a fresh module table, in any order."""
    names = sorted(src_modules()) + [s[:-3] for s in ENTRY_SCRIPTS]
    code = ("import importlib, sys\nfailed = []\n"
            f"for name in {names!r}:\n"
            "    for m in [m for m in sys.modules if m == 'src' or m.startswith('src.')\n"
            f"              or m in {[s[:-3] for s in ENTRY_SCRIPTS]!r}]:\n"
            "        del sys.modules[m]\n"
            "    try:\n        importlib.import_module(name)\n"
            "    except Exception as exc:\n        failed.append(f'{name}: {exc!r}')\n"
            "print('\\n'.join(failed))\nsys.exit(1 if failed else 0)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, GLOG_v="3"))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def test_no_model_name_branches_outside_the_registry():
    """Only src/models/__init__.py maps a model name to what differs; nothing else compares it."""
    offenders = []
    files = [os.path.join(ROOT, s) for s in ENTRY_SCRIPTS] + [
        f for m, f in src_modules().items() if m != "src.models"]
    bench = os.path.join(ROOT, "benchmarks", "benchmark.py")
    files += [bench] if os.path.isfile(bench) else []
    for path in files:
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, ast.Compare):
                names = [n for n in [node.left] + node.comparators if isinstance(n, ast.Attribute)]
                consts = [n.value for n in [node.left] + node.comparators if isinstance(n, ast.Constant)]
                if any(n.attr == "model_name" for n in names) and any(c in MODELS for c in consts):
                    offenders.append(f"{os.path.relpath(path, ROOT)}:{node.lineno}")
    assert not offenders, f"model_name branches: {offenders}"


def test_config_is_read_only_and_replace_makes_a_new_one():
    cfg = get_config(["--config_path", "config/cifar10_config_cpu.yaml"])
    with pytest.raises(TypeError, match="read-only"):
        cfg.batch_size = 4
    with pytest.raises(TypeError, match="read-only"):
        cfg["batch_size"] = 4
    with pytest.raises(TypeError):
        cfg.update(batch_size=4)
    other = cfg.replace(batch_size=4)
    assert other.batch_size == 4 and cfg.batch_size != 4
    with pytest.raises(KeyError):
        cfg.replace(batch_sise=4)


def test_every_model_has_a_task_and_head():
    for name, spec in MODELS.items():
        assert spec.task in TASKS, name
        assert spec.head_prefixes and all(p.endswith(".") for p in spec.head_prefixes)
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        get_model_spec("resnet")


@pytest.mark.parametrize("config, task_cls, shape", [
    ("config/cifar10_config_cpu.yaml", ClassificationTask, (2, 3, 32, 32)),
    ("config/mmnist_config_cpu.yaml", VideoPredictionTask, (2, 10, 1, 64, 64)),
])
def test_create_task_from_config(config, task_cls, shape):
    task = create_task(get_config(["--config_path", config]))
    assert isinstance(task, task_cls)
    assert task.input_shape(2) == shape
    inputs, targets = task.example_batch(2, np.random.default_rng(0))
    assert inputs.shape == shape and inputs.dtype == np.float32
    assert len(targets) == 2


def test_task_refuses_a_loss_of_another_family():
    from src.model_utils.errors import UserError
    with pytest.raises(UserError, match="--loss ce"):
        create_task(get_config(["--config_path", "config/cifar10_config_cpu.yaml", "--loss", "bce"]))
    with pytest.raises(UserError, match="--loss bce or --loss mse"):
        create_task(get_config(["--config_path", "config/mmnist_config_cpu.yaml", "--loss", "ce"]))


def test_ssim_loss_needs_frames_as_large_as_its_window():
    from src.model_utils.errors import UserError
    small = ["--config_path", "config/mmnist_config_cpu.yaml", "--image_size", "4", "--patch_size", "2"]
    with pytest.raises(UserError, match="at least 7x7"):
        create_task(get_config(small + ["--ssim_loss_weight", "0.5"])).create_loss()
    assert create_task(get_config(small)).create_loss() is not None  # no SSIM term: any size
    assert create_task(get_config(small[:2] + ["--ssim_loss_weight", "0.5"])).create_loss() is not None


def test_classification_evaluator_counts_over_batches():
    task = ClassificationTask(num_classes=3, sample_shape=(1, 4, 4))
    ev = task.new_evaluator()
    logits = np.array([[3.0, 1, 0], [0, 2, 1], [1, 0, 5], [0, 1, 0]])
    ev.update(None, logits[:2], np.array([0, 2]))
    ev.update(None, logits[2:], np.array([2, 0]))
    result = ev.result()
    assert result["num_samples"] == 4 and result["top_1_correct"] == 2
    assert result["top_1_accuracy"] == 0.5 and result["top_3_accuracy"] == 1.0
    assert "result: {'top_1_accuracy': 0.5000, 'top_3_accuracy': 1.0000}" in task.format_result(result)


def test_video_evaluator_matches_the_metrics_and_baselines():
    rng = np.random.default_rng(1)
    task = VideoPredictionTask(2, 3, (1, 8, 8), num_pictures=1)
    inputs = rng.random((4, 2, 1, 8, 8))
    logits = rng.normal(size=(4, 3, 1, 8, 8))
    targets = rng.random((4, 3, 1, 8, 8))
    ev = task.new_evaluator()
    ev.update(inputs[:2], logits[:2], targets[:2])
    ev.update(inputs[2:], logits[2:], targets[2:])
    result = ev.result()
    expected = video_metrics(1 / (1 + np.exp(-logits)), targets)
    assert result["model"]["mse"] == pytest.approx(expected["mse"])
    assert result["model"]["ssim"] == pytest.approx(expected["ssim"])
    copy_last = video_metrics(np.repeat(inputs[:, -1:], 3, axis=1), targets)
    assert result["copy_last_frame"]["mse"] == pytest.approx(copy_last["mse"])
    assert result["blank_frames"]["mse"] == pytest.approx(video_metrics(0 * targets, targets)["mse"])
    assert len(ev.pictures) == 1 and result["num_samples"] == 4
    # without inputs (offline results lacking 00_data) there is no copy-last-frame baseline
    ev = task.new_evaluator()
    ev.update(None, logits, targets)
    assert "copy_last_frame" not in ev.result() and "copy_last_frame" not in task.format_result(ev.result())


def test_the_test_session_never_uses_the_users_cache():
    """tests/conftest.py points the kernel cache at the temp folder, for this process and every
    entry script the tests start (they inherit the environment)."""
    home_cache = os.path.join(os.path.expanduser("~"), ".cache")
    assert not os.path.abspath(os.environ["ZOO_KERNEL_CACHE"]).startswith(home_cache)
    out = subprocess.run([sys.executable, "-c", "from src.kernels.tuning import cache_dir; print(cache_dir())"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == os.path.abspath(os.environ["ZOO_KERNEL_CACHE"])


def test_the_suite_runs_with_and_without_pytest_xdist():
    """The README runs the tests with ``-n auto``; a user without pytest-xdist (or with -p no:xdist)
    must still be able to run them: conftest's xdist hook is optional."""
    for plugin in (["-p", "no:xdist"], ["-n", "0"]):
        out = subprocess.run([sys.executable, "-m", "pytest", *plugin, "-q", "--collect-only",
                              "-p", "no:cacheprovider", os.path.join("tests", "test_run_guard.py")],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
        assert "INTERNALERROR" not in out.stdout + out.stderr


def test_the_long_files_go_first_and_exist():
    """conftest orders the test files it names as long first (pytest-xdist then starts them at
    once): a file renamed or removed there would silently lose its place, so each must exist,
    and a collection of two of them plus a short one puts the long ones first, in that order."""
    from conftest import LONG_FILES
    tests = os.path.join(ROOT, "tests")
    assert [f for f in LONG_FILES if not os.path.isfile(os.path.join(tests, f))] == []
    files = [os.path.join("tests", f) for f in ("test_readme.py", LONG_FILES[2], LONG_FILES[0])]
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:xdist", "-q", "--collect-only",
                          "-p", "no:cacheprovider", *files], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    order = [line.split("::")[0] for line in out.stdout.splitlines() if "::" in line]
    assert order and list(dict.fromkeys(order)) == [files[2], files[1], files[0]], out.stdout[-1500:]
