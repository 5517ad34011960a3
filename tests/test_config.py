"""Config system: YAML inheritance, CLI overrides, type checks, one-line errors, every file loads."""
import glob
import os
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT
from src.model_utils.config import ConfigError, get_config, load_saved_config, save_config

CPU = os.path.join(ROOT, "config", "cifar10_config_cpu.yaml")


def test_every_yaml_in_config_loads():
    files = sorted(glob.glob(os.path.join(ROOT, "config", "*.yaml")))
    assert len(files) >= 7
    for path in files:
        cfg = get_config([], default_config=path)
        assert cfg.model_name in ("tinydarknet", "convlstm"), path
        assert cfg.batch_size > 0 and cfg.epoch_size > 0, path


def test_every_key_has_a_help_string():
    from src.model_utils.config import load_yaml
    for path in glob.glob(os.path.join(ROOT, "config", "*.yaml")):
        values, helps, _ = load_yaml(path)
        assert not [k for k in values if not helps.get(k)], path


def test_inheritance_and_priority():
    cfg = get_config([], default_config=CPU)
    assert cfg.device_target == "CPU" and cfg.loss_scale == 1.0  # own value
    assert cfg.num_classes == 10 and cfg.label_smoothing == 0.1  # from cifar10_config.yaml
    assert cfg.momentum == 0.9  # from default.yaml
    cfg = get_config(["--config_path", CPU, "--lr", "0.05", "--milestones", "3,7", "--hflip=false",
                      "--class_names", "[a, b]"])
    assert cfg.lr == 0.05 and cfg.milestones == [3, 7] and cfg.hflip is False
    assert cfg.class_names == ["a", "b"]
    assert get_config(["--milestones", "[1, 2]"], default_config=CPU).milestones == [1, 2]
    assert isinstance(get_config(["--lr", "1"], default_config=CPU).lr, float)


@pytest.mark.parametrize("argv, words", [
    (["--no_such_key", "1"], "unknown option --no_such_key"),
    (["--batch_size", "big"], "'batch_size' must be int"),
    (["--milestones", "a,b"], "'milestones' must be int"),
    (["--hflip", "maybe"], "'hflip' must be bool"),
    (["--optimizer", "lion"], "'optimizer' must be one of"),
    (["--lr"], "needs a value"),
    (["positional"], "unexpected argument"),
])
def test_bad_overrides_are_one_line_errors(argv, words):
    with pytest.raises(ConfigError) as err:
        get_config(argv, default_config=CPU)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        get_config(["--config_path", str(tmp_path / "none.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        get_config(["--config_path", str(bad)])
    child = tmp_path / "child.yaml"
    child.write_text(f"__base__: {CPU}\nbatch_size: many\n")
    with pytest.raises(ConfigError, match="'batch_size' must be int"):
        get_config(["--config_path", str(child)])
    loop = tmp_path / "loop.yaml"
    loop.write_text("__base__: loop.yaml\n")
    with pytest.raises(ConfigError, match="inheritance loop"):
        get_config(["--config_path", str(loop)])


def test_a_whole_number_in_a_file_keeps_the_declared_float_type(tmp_path):
    # time_budget_minutes is a float in default.yaml; "122" in a child file must not make the
    # command line refuse "--time_budget_minutes 0.5" as "must be int"
    child = tmp_path / "child.yaml"
    child.write_text(f"__base__: {CPU}\ntime_budget_minutes: 122\nlr: 1\n")
    cfg = get_config(["--config_path", str(child)])
    assert isinstance(cfg.time_budget_minutes, float) and isinstance(cfg.lr, float)
    assert get_config(["--config_path", str(child), "--time_budget_minutes", "0.5"]).time_budget_minutes == 0.5
    with pytest.raises(ConfigError, match="'batch_size' must be int"):
        get_config(["--config_path", str(child), "--batch_size", "2.5"])


def test_child_config_of_a_few_lines(tmp_path):
    child = tmp_path / "mine.yaml"
    child.write_text(f"__base__: {CPU}\nnum_classes: 3\ndata_path: /data/mine\n")
    cfg = get_config(["--config_path", str(child)])
    assert cfg.num_classes == 3 and cfg.data_path == "/data/mine" and cfg.device_target == "CPU"


def test_saved_config_round_trip(tmp_path):
    cfg = get_config(["--lr", "0.2"], default_config=CPU)
    path = save_config(cfg, str(tmp_path))
    again = load_saved_config(path)
    assert again == cfg
    assert next(yaml.safe_load_all(open(path)))["lr"] == 0.2


def test_no_argv_parsing_at_import():
    code = "import sys; sys.argv=['x','--bogus']; import src.model_utils.config, src.trainer, src.evaluate"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-500:]


def test_entry_script_prints_one_line_error_and_help():
    out = subprocess.run([sys.executable, "train.py", "--bogus", "1"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: unknown option --bogus: not a key of cifar10_config_cpu.yaml"
    out = subprocess.run([sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "--label_smoothing" in out.stdout and "label smoothing" in out.stdout
