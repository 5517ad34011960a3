"""Every command of the repository shares one argument style: ``--help`` prints the usage and exits 0;
a bad argument is one ``error: ...`` line on stderr (no usage dump, no traceback) and exit code 2.

The commands are discovered, not listed: every module under ``src/`` and ``benchmarks/`` with a
``__main__`` block (run as ``python -m <module>``) and every entry script at the repository root
(``python <script>.py``), so a new tool is covered as soon as it exists. One child process runs
them all (``runpy``, as ``-m`` and ``python file.py`` do), each with its stdout / stderr file
descriptors captured (tests/entry_runner.py), so output written below Python counts too.
The launchers ``scripts/run_*.sh`` answer ``--help`` with their usage and exit 0 as well.
"""
import glob
import os
import re
import subprocess

import pytest

from conftest import ROOT
from entry_runner import run_commands

MAIN_GUARD = re.compile(r"^if __name__ == [\"']__main__[\"']:", re.M)
CASES = {"help": ["--help"], "bogus": ["--bogus_flag_xyz", "1"]}


def has_main(path):
    with open(path, encoding="utf-8") as f:
        return bool(MAIN_GUARD.search(f.read()))


def discover_commands():
    """``[(name, kind, target)]``: ``("src.infer", "module", "src.infer")``, ``("train.py",
    "script", "/repo/train.py")``."""
    commands = []
    for folder in ("src", "benchmarks"):
        for path in sorted(glob.glob(os.path.join(ROOT, folder, "**", "*.py"), recursive=True)):
            if has_main(path):
                module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                module = module[: -len(".__main__")] if module.endswith(".__main__") else module
                commands.append((module, "module", module))
    for path in sorted(glob.glob(os.path.join(ROOT, "*.py"))):
        if has_main(path):
            commands.append((os.path.basename(path), "script", path))
    return commands


COMMANDS = discover_commands()


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """{"<command> <case>": (exit code, stdout, stderr)} of every command, from one child process
    (tests/entry_runner.py) with a temporary HOME."""
    argvs, keys = [], []
    for name, kind, target in COMMANDS:
        for case, args in CASES.items():
            argvs.append((["-m", target] if kind == "module" else [os.path.basename(target)]) + args)
            keys.append(f"{name} {case}")
    results = run_commands(*argvs, cwd=tmp_path_factory.mktemp("cwd"), timeout=600,
                           env={"GLOG_v": "3", "HOME": str(tmp_path_factory.mktemp("home"))})
    return dict(zip(keys, results))


def test_discovery_finds_the_known_commands():
    names = {name for name, _, _ in COMMANDS}
    assert {"train.py", "eval.py", "export.py", "preprocess.py", "postprocess.py", "src.infer",
            "src.darknet_weights", "src.data.demo_data", "src.demo",
            "benchmarks.benchmark"} <= names, names


@pytest.mark.parametrize("name", [name for name, _, _ in COMMANDS])
def test_help_prints_usage_and_exits_0(outcomes, name):
    code, out, err = outcomes[f"{name} help"]
    assert code == 0, err[-2000:]
    assert out.lstrip().startswith("usage:"), out[:500]
    assert "Traceback" not in err and "error:" not in err, err[-2000:]


@pytest.mark.parametrize("name", [name for name, _, _ in COMMANDS])
def test_bad_argument_is_one_error_line_and_exit_2(outcomes, name):
    code, out, err = outcomes[f"{name} bogus"]
    lines = err.strip().splitlines()
    assert code == 2, err[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    assert "usage:" not in out + err


LAUNCHERS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "scripts", "run_*.sh")))


def test_launchers_are_found():
    assert {"run_train_cpu.sh", "run_eval_cpu.sh", "run_infer_cpu.sh", "run_demo.sh"} <= set(LAUNCHERS)


@pytest.mark.parametrize("script", LAUNCHERS)
def test_launcher_help_prints_usage_and_exits_0(script, tmp_path):
    proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", script), "--help"], cwd=str(tmp_path),
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, HOME=str(tmp_path)))
    assert proc.returncode == 0, proc.stdout[-500:] + proc.stderr[-1000:]
    assert proc.stdout.lower().startswith("usage: bash "), proc.stdout[:500]
    assert proc.stderr == "" and not os.listdir(tmp_path)  # nothing started, nothing written
