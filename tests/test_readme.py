"""Keep the READMEs honest: every script, config and flag they name exists and is accepted, every
config key is documented, no placeholder is left, and the test command is the one CI runs."""
import glob
import importlib
import os
import re
import shlex

import pytest

from conftest import ROOT
from src.model_utils.config import ConfigError, get_config, load_yaml

READMES = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "README_CN.md")]
ENTRY_SCRIPTS = {"train.py": {}, "eval.py": {}, "export.py": {},
                 "preprocess.py": None, "postprocess.py": None}


def text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def code_lines(path):
    """Command lines of the README's code blocks, with backslash continuations joined."""
    blocks = re.findall(r"```(?:bash|text|yaml)?\n(.*?)```", text(path), flags=re.S)
    lines = []
    for block in blocks:
        lines += block.replace("\\\n", " ").splitlines()
    return [l.split("#")[0].strip() for l in lines]


def all_config_keys():
    keys = set()
    for path in glob.glob(os.path.join(ROOT, "config", "*.yaml")):
        keys |= set(load_yaml(path)[0])
    return keys


def script_keys(module):
    mod = importlib.import_module(module)
    return set(getattr(mod, "SCRIPT_DEFAULTS", {}))


@pytest.mark.parametrize("readme", READMES)
def test_named_files_exist(readme):
    content = text(readme)
    named = set(re.findall(r"(?:scripts|config|ascend310_infer|src|tests)/[\w./-]+\.(?:sh|yaml|py|cc|h|txt)", content))
    named |= set(re.findall(r"\b(\w+\.py)\b", content)) & set(ENTRY_SCRIPTS)
    assert len(named) > 20
    missing = sorted(n for n in named if not os.path.exists(os.path.join(ROOT, n))
                     and not os.path.exists(os.path.join(ROOT, "ascend310_infer", n)))  # its tree
    assert not missing, missing


def argparse_flags(path):
    """The ``--flags`` a script declares with ``add_argument("--flag", ...)``."""
    with open(path, encoding="utf-8") as f:
        return set(re.findall(r'add_argument\(\s*"--([a-z][a-z0-9_]*)"', f.read()))


@pytest.mark.parametrize("readme", READMES)
def test_every_flag_is_accepted(readme):
    known = all_config_keys() | {"config_path", "help"}
    known |= script_keys("preprocess") | script_keys("postprocess")
    known |= {"mindir_path", "model_path", "backend", "input0_path", "output_path", "time_path",
              "warmup",  # src.infer
              "out_dir", "test_sequences", "seed",  # src.data.demo_data
              "raw"}  # src.darknet_weights (its other flags are config keys)
    known |= argparse_flags(os.path.join(ROOT, "benchmarks", "benchmark.py"))
    flags = set(re.findall(r"(?<![\w-])--([a-z][a-z0-9_]*)", text(readme)))
    flags -= {"key", "bogus"}  # the README's syntax example (--key value) and its error example
    assert len(flags) > 10
    assert not sorted(flags - known)


@pytest.mark.parametrize("readme", READMES)
def test_python_commands_parse(readme):
    """Each `python train.py|eval.py|export.py ...` line of the README passes the config parser."""
    checked = 0
    for line in code_lines(readme):
        match = re.match(r"python (train|eval|export)\.py (.*)", line)
        if not match:
            continue
        args = re.sub(r"\[[^\]]*\]", "", match.group(2))  # optional parts
        argv = shlex.split(args)
        try:
            cfg = get_config(argv, default_config=os.path.join(ROOT, "config", "cifar10_config_cpu.yaml"))
        except ConfigError as exc:
            pytest.fail(f"README command does not parse: {line}\n{exc}")
        assert os.path.isfile(cfg.config_path)
        checked += 1
    assert checked >= 6


@pytest.mark.parametrize("readme", READMES)
def test_bash_commands_name_real_scripts_with_enough_arguments(readme):
    checked = 0
    for line in code_lines(readme):
        match = re.search(r"bash (scripts/\w+\.sh)(.*)", line)
        if not match:
            continue
        script = os.path.join(ROOT, match.group(1))
        assert os.path.isfile(script), line
        usage = re.search(r"[Uu]sage:.*?" + re.escape(os.path.basename(script)) + r"(.*)", text(script))
        if usage:
            required = [a for a in usage.group(1).split() if not a.startswith("[") and a.isupper()]
            given = [a for a in shlex.split(re.sub(r"\[[^\]]*\]", "", match.group(2))) if not a.startswith("--")]
            assert len(given) >= len(required), f"{line}: needs {required}"
        checked += 1
    assert checked >= 8


@pytest.mark.parametrize("readme", READMES)
def test_every_config_key_is_documented_and_no_placeholder_is_left(readme):
    content = text(readme)
    undocumented = sorted(k for k in all_config_keys() if f"`{k}`" not in content)
    assert not undocumented
    assert not re.search(r"^[A-Z_]{8,}$", content, flags=re.M), "unfilled placeholder"


def test_readme_names_the_ci_test_command():
    ci = text(os.path.join(ROOT, ".ci", "run"))
    command = re.findall(r"^python -m pytest.*$", ci, flags=re.M)[-1]
    assert command in text(READMES[0]) and command in text(READMES[1])
    assert "requirements-test.txt" in ci
