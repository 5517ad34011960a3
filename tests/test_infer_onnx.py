"""``python -m src.infer`` / scripts/run_infer_cpu.sh with an exported ONNX in onnxruntime.

The same checkpoint is exported to MindIR and ONNX; both runners read the same .bin inputs and
must write the same outputs (to float rounding), the same file names and a latency file that
names the runtime. The CPU script takes the .onnx like a .mindir, so postprocess.py gives the same
metrics.
"""
import os
import re

import numpy as np
import mindspore as ms
import pytest

from src.infer import TIME_FILE, create_runner, main, parse_latency_file, run_inference
from src.model_utils.errors import UserError
from test_export import CIFAR_CPU, MMNIST_CPU, export_cfg, random_checkpoint, run_export
from test_infer_pipeline import CPU_SCRIPT, check_latency, run_script

pytest.importorskip("onnxruntime")
TOL = 1e-5


@pytest.fixture(autouse=True)
def keep_execution_mode():
    mode = ms.get_context("mode")
    yield
    ms.set_context(mode=mode)


def export_both(tmp_path, capsys, config_path, extra=()):
    cfg = export_cfg(config_path, *extra)
    ckpt = random_checkpoint(cfg, str(tmp_path / "model.ckpt"))
    base = ["--config_path", config_path, *extra, "--ckpt_file", ckpt, "--file_name", str(tmp_path / "m")]
    onnx_path = run_export(capsys, base + ["--file_format", "ONNX"])
    mindir_path = run_export(capsys, base)
    return mindir_path, onnx_path


def test_onnxruntime_outputs_equal_mindir_runner(tmp_path, capsys):
    mindir_path, onnx_path = export_both(tmp_path, capsys, CIFAR_CPU)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        rng.normal(0, 1, (1, 3, 32, 32)).astype(np.float32).tofile(inputs / f"img_{i}.bin")
    runs = {}
    for name, path in (("mindir", mindir_path), ("onnx", onnx_path)):
        out = tmp_path / name
        result = run_inference(path, str(inputs), str(out / "result"), str(out / "time"), warmup=1, log=None)
        runs[name] = result
        assert sorted(os.listdir(out / "result")) == [f"img_{i}_0.bin" for i in range(3)]
        stats = check_latency(out / "time", 3)
        assert stats["mean"] == pytest.approx(result["latency"]["mean"], rel=1e-4)
        text = (out / "time" / TIME_FILE).read_text()
        assert result["runtime"] in text
    assert runs["onnx"]["runtime"].startswith("onnxruntime")
    assert runs["mindir"]["runtime"].startswith("MindSpore")
    for i in range(3):
        ref = np.fromfile(tmp_path / "mindir" / "result" / f"img_{i}_0.bin", np.float32)
        got = np.fromfile(tmp_path / "onnx" / "result" / f"img_{i}_0.bin", np.float32)
        assert ref.shape == (10,) and np.abs(ref).max() > 1e-3
        np.testing.assert_allclose(got, ref, rtol=TOL, atol=TOL * np.abs(ref).max())
    assert runs["onnx"]["input"][1:] == runs["mindir"]["input"][1:]


def test_backend_choice_and_errors(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(UserError, match="not an ONNX model"):
        create_runner(str(bad))
    with pytest.raises(UserError, match="runs on CPU"):
        create_runner(str(bad), device_target="GPU")
    with pytest.raises(UserError, match="not a MindIR"):
        create_runner(str(bad), backend="mindspore")
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "x.bin").write_bytes(b"\0" * 4)
    with pytest.raises(SystemExit) as exc:  # one-line error, exit code 2
        main(["--model_path", str(bad), "--input0_path", str(inputs)])
    assert exc.value.code == 2


def test_cpu_script_runs_onnx_like_mindir(tmp_path, capsys):
    from src.data.moving_mnist import write_mnist_test_seq
    test_file = str(tmp_path / "mnist_test_seq.npy")
    rng = np.random.default_rng(0)
    write_mnist_test_seq(test_file, rng.integers(0, 256, (20, 3, 16, 16)).astype(np.uint8))
    config = tmp_path / "tiny.yaml"
    config.write_text(f"__base__: {MMNIST_CPU}\nhidden_channels: [4, 4]\nimage_size: 16\npatch_size: 4\n"
                      "input_frames: 2\noutput_frames: 2\ninput_kernel: 3\nstate_kernel: 3\n")
    mindir_path, onnx_path = export_both(tmp_path, capsys, str(config))
    rows = {}
    for name, path in (("mindir", mindir_path), ("onnx", onnx_path)):
        work = tmp_path / f"work_{name}"
        work.mkdir()
        rc, stdout, stderr = run_script(CPU_SCRIPT, [path, "moving_mnist", test_file], work,
                                        env={"CONFIG_PATH": str(config)})
        assert rc == 0, stdout[-1500:] + stderr[-1500:]
        row = re.search(r"^model\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)", (work / "acc.log").read_text(), re.M)
        assert row, (work / "acc.log").read_text()
        rows[name] = [float(v) for v in row.groups()]
        assert parse_latency_file(str(work / "time_Result" / TIME_FILE))["count"] == 3
    assert "onnxruntime" in (tmp_path / "work_onnx" / "time_Result" / TIME_FILE).read_text()
    np.testing.assert_allclose(rows["onnx"], rows["mindir"], rtol=1e-4, atol=1e-4)


def test_ascend_script_refuses_onnx(tmp_path):
    (tmp_path / "m.onnx").write_bytes(b"x")
    script = os.path.join(os.path.dirname(CPU_SCRIPT), "run_infer_310.sh")
    rc, _, stderr = run_script(script, ["m.onnx", "cifar10", str(tmp_path)], tmp_path)
    assert rc == 2 and "run_infer_cpu.sh" in stderr
