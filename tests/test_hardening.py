"""Every bad input is one line ``error: ...`` with exit code 2, nothing goes on silently wrong and
nothing is left half-written. One test per class of problem: YAML keys, value ranges, malformed
data files (train and eval), errors raised inside MindSpore's pipeline threads, read-only and
full output folders.

The entry scripts run in subprocesses: stderr must be exactly one line starting with
``error: `` and no traceback anywhere.
"""
import contextlib
import gzip
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, TINY_CONVLSTM, write_cifar10_bin, write_mmnist_dir
from entry_runner import run_commands
from src.model_utils.config import ConfigError, get_config
from src.model_utils.errors import (DataError, UserError, atomic_write_text, exit_on_user_error,
                                    user_message, writing)

CIFAR_CPU = os.path.join(ROOT, "config", "cifar10_config_cpu.yaml")
IMAGENET_CPU = os.path.join(ROOT, "config", "imagenet_config_cpu.yaml")
MMNIST_CPU = os.path.join(ROOT, "config", "mmnist_config_cpu.yaml")


def run_entry(script, *args):
    """One entry script's ``returncode``, ``stdout`` and ``stderr`` (by this test process's runner)."""
    return subprocess.CompletedProcess(script, *run_commands([*script.split(), *args], timeout=300)[0])


def assert_one_line(res, *words):
    """Exit code 2, stderr exactly one line ``error: ...`` holding ``words``, no traceback."""
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr[-2000:]
    assert "Traceback" not in res.stdout + res.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# --------------------------------------------------------------------------- YAML keys
def child_config(tmp_path, body, base=CIFAR_CPU, name="child.yaml"):
    path = tmp_path / name
    path.write_text(f"__base__: {base}\n{body}")
    return str(path)


@pytest.mark.parametrize("line, typo, meant", [("batch_sise: 8", "batch_sise", "batch_size"),
                                               ("lr_gama: 0.5", "lr_gama", "lr_gamma")])
def test_unknown_yaml_key_is_refused_with_the_closest_key(tmp_path, line, typo, meant):
    path = child_config(tmp_path, line + "\n")
    with pytest.raises(ConfigError) as err:
        get_config(["--config_path", path])
    msg = str(err.value)
    assert "\n" not in msg and path in msg and f"'{typo}'" in msg and f"did you mean {meant}" in msg


def test_unknown_yaml_key_through_train_py(tmp_path):
    res = run_entry("train.py", "--config_path", child_config(tmp_path, "batch_sise: 8\n"))
    assert_one_line(res, "unknown key 'batch_sise'", "did you mean batch_size")


def test_a_file_declares_a_new_key_with_a_help_string(tmp_path):
    path = child_config(tmp_path, "my_option: 3\n---\nmy_option: \"what it does\"\n---\n{}\n---\n"
                                  "my_option: \">= 1\"\n")
    cfg = get_config(["--config_path", path, "--my_option", "5"])
    assert cfg.my_option == 5
    with pytest.raises(ConfigError, match=r"'my_option' must be >= 1, got 0"):
        get_config(["--config_path", path, "--my_option", "0"])
    # a grandchild may set it: the chain declares it
    grandchild = child_config(tmp_path, "my_option: 4\n", base=path, name="grandchild.yaml")
    assert get_config(["--config_path", grandchild]).my_option == 4


@pytest.mark.parametrize("body, words", [
    ("---\nbatch_sise: \"typo in the help document\"\n", "help string for 'batch_sise'"),
    ("---\n{}\n---\nlr_gama: [0.1]\n", "choices for 'lr_gama'"),
    ("---\n{}\n---\n{}\n---\nbatch_sise: \">= 1\"\n", "range for 'batch_sise'"),
    ("---\n{}\n---\n{}\n---\nlr: \"positive\"\n", "cannot read the range clause 'positive'"),
    ("---\n{}\n---\n{}\n---\n{}\n---\n{}\n", "at most 4"),
])
def test_help_choices_and_ranges_of_unknown_keys_or_bad_grammar(tmp_path, body, words):
    with pytest.raises(ConfigError, match=words):
        get_config(["--config_path", child_config(tmp_path, "lr: 0.1\n" + body)])


def test_saved_config_is_itself_a_valid_config(tmp_path):
    from src.model_utils.config import save_config
    cfg = get_config(["--lr", "0.02"] + TINY_CONVLSTM, default_config=MMNIST_CPU)
    path = save_config(cfg, str(tmp_path))
    again = get_config(["--config_path", path])
    assert {k: v for k, v in again.items() if k != "config_path"} == \
        {k: v for k, v in cfg.items() if k != "config_path"}
    with pytest.raises(ConfigError, match="multiple of patch_size"):  # its ranges came along
        get_config(["--config_path", path, "--image_size", "30"])
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


# --------------------------------------------------------------------------- value ranges
@pytest.mark.parametrize("config, key, value, allowed", [
    (CIFAR_CPU, "batch_size", "0", ">= 1"),
    (CIFAR_CPU, "batch_size", "-4", ">= 1"),
    (CIFAR_CPU, "eval_batch_size", "-1", ">= 0"),
    (CIFAR_CPU, "epoch_size", "0", ">= 1"),
    (CIFAR_CPU, "lr", "-1", "> 0"),
    (CIFAR_CPU, "lr", "0", "> 0"),
    (CIFAR_CPU, "momentum", "1", "[0, 1)"),
    (CIFAR_CPU, "label_smoothing", "1.0", "[0, 1)"),
    (CIFAR_CPU, "weight_decay", "-0.1", ">= 0"),
    (CIFAR_CPU, "lr_gamma", "0", "(0, 1]"),
    (CIFAR_CPU, "milestones", "10,0", ">= 1"),
    (CIFAR_CPU, "keep_checkpoint_max", "0", ">= 1"),
    (CIFAR_CPU, "loss_scale", "0.5", ">= 1"),
    (CIFAR_CPU, "num_parallel_workers", "-1", ">= 0"),
    (CIFAR_CPU, "seed", "4294967296", "[0, 4294967295]"),
    (CIFAR_CPU, "num_classes", "0", ">= 1"),
    (CIFAR_CPU, "image_size", "8", ">= 16"),
    (IMAGENET_CPU, "min_crop_scale", "0", "(0, 1]"),
    (IMAGENET_CPU, "min_crop_scale", "1.5", "(0, 1]"),
    (MMNIST_CPU, "image_size", "30", ">= 1 and multiple of patch_size, patch_size = 8"),
    (MMNIST_CPU, "input_kernel", "4", ">= 1 and odd"),
    (MMNIST_CPU, "state_kernel", "0", ">= 1 and odd"),
    (MMNIST_CPU, "hidden_channels", "8,0", ">= 1"),
    (MMNIST_CPU, "output_frames", "0", ">= 1"),
])
def test_values_outside_their_range_are_refused(config, key, value, allowed):
    with pytest.raises(ConfigError) as err:
        get_config(["--config_path", config, f"--{key}", value])
    msg = str(err.value)
    assert "\n" not in msg and f"'{key}' must be {allowed}" in msg and f"--{key}" in msg, msg


def test_every_numeric_key_of_every_config_has_a_range():
    import glob
    from src.model_utils.config import load_layers

    def numeric(v):
        if isinstance(v, list):
            return bool(v) and all(numeric(i) for i in v)
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    for path in glob.glob(os.path.join(ROOT, "config", "*.yaml")):
        layers = load_layers(path)
        assert not [k for k, v in layers["values"].items() if numeric(v) and k not in layers["ranges"]], path


def test_ranges_are_checked_after_the_command_line(tmp_path):
    path = child_config(tmp_path, "lr: -1.0\n")
    with pytest.raises(ConfigError, match="'lr' must be > 0, got -1.0"):
        get_config(["--config_path", path])
    assert get_config(["--config_path", path, "--lr", "0.1"]).lr == 0.1
    # the other key of "multiple of" is taken after the command line too
    assert get_config(["--config_path", MMNIST_CPU, "--image_size", "30", "--patch_size", "5"]).image_size == 30


@pytest.mark.parametrize("text, words", [("lr: .inf\n", "'lr' must be > 0, got inf"),
                                         ("lr: .nan\n", "'lr' must be > 0, got nan")])
def test_non_finite_numbers_are_refused(tmp_path, text, words):
    with pytest.raises(ConfigError, match=words):
        get_config(["--config_path", child_config(tmp_path, text)])


def test_non_utf8_yaml(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("lr: 0.1 # d\xe9faut\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not a UTF-8 text file"):
        get_config(["--config_path", str(path)])


def test_out_of_range_value_through_a_launcher(cifar_dir):
    env = dict(os.environ, DRY_RUN="1", PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    res = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run_train_cpu.sh"), CIFAR_CPU, cifar_dir,
                          "--batch_size", "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert_one_line(res, "'batch_size' must be >= 1, got 0")


def test_negative_batch_size_through_train_py():
    assert_one_line(run_entry("train.py", "--batch_size", "-1"), "'batch_size' must be >= 1, got -1")


# --------------------------------------------------------------------------- malformed data files
def cut(path, keep):
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(data[:keep])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A freshly initialised checkpoint of the CIFAR config and of the tiny ConvLSTM config, so
    eval.py reaches its data."""
    import mindspore as ms
    from src.models import create_model_from_config
    folder = tmp_path_factory.mktemp("ckpt")
    out = {}
    for name, argv in (("cifar", ["--config_path", CIFAR_CPU]),
                       ("convlstm", ["--config_path", MMNIST_CPU] + TINY_CONVLSTM)):
        cfg = get_config(argv)
        out[name] = str(folder / f"{name}.ckpt")
        ms.save_checkpoint(create_model_from_config(cfg), out[name],
                           append_dict={"model_name": cfg.model_name})
    return out


def test_cifar_file_cut_mid_record_train_and_eval(cifar_dir, tmp_path, checkpoints):
    cut(os.path.join(cifar_dir, "data_batch_1.bin"), 3073 * 50 + 1000)
    cut(os.path.join(cifar_dir, "test_batch.bin"), 3073 * 10 - 1)
    trained, evaluated = run_commands(  # in one process: tests/entry_runner.py
        ["train.py", "--data_path", cifar_dir, "--output_dir", tmp_path / "out"],
        ["eval.py", "--data_path", cifar_dir, "--ckpt_file", checkpoints["cifar"],
         "--result_dir", tmp_path / "eval"])
    assert_one_line(subprocess.CompletedProcess("train.py", *trained),
                    "data_batch_1.bin is not a CIFAR-10 binary file", "record 51")
    assert not (tmp_path / "out").exists()
    assert_one_line(subprocess.CompletedProcess("eval.py", *evaluated),
                    "test_batch.bin is not a CIFAR-10 binary file")
    assert not (tmp_path / "eval").exists()


def test_cifar_labels_outside_num_classes(tmp_path):
    from src.data import create_dataset
    folder = tmp_path / "cifar"
    write_cifar10_bin(str(folder / "data_batch_1.bin"), 20, num_classes=10)
    with pytest.raises(DataError, match="outside the 3 classes .*pass --num_classes"):
        create_dataset("cifar10", str(folder), "train", 4, num_classes=3)
    records = np.fromfile(folder / "data_batch_1.bin", np.uint8).reshape(-1, 3073)
    records[7, 0] = 200  # not a CIFAR-10 label at all
    records.tofile(folder / "data_batch_1.bin")
    with pytest.raises(DataError, match="record 7 has label 200.*is this a CIFAR-10 binary file"):
        create_dataset("cifar10", str(folder), "train", 4)


def write_bad_idx(path, case):
    good = gzip.compress(b"\x00\x00\x08\x03" + np.array([20, 28, 28], ">i4").tobytes() + bytes(20 * 784))
    data = {"truncated_gz": good[: len(good) // 2], "garbled": b"\x1f\x8b" + os.urandom(500),
            "wrong_magic": gzip.compress(b"\x00\x00\x08\x01" + bytes(100)),
            "short_payload": gzip.compress(b"\x00\x00\x08\x03" + np.array([20, 28, 28], ">i4").tobytes()
                                           + bytes(784))}[case]
    with open(path, "wb") as f:
        f.write(data)


BAD_IDX = {"truncated_gz": "truncated or corrupt", "garbled": "truncated or corrupt",
           "wrong_magic": "bad idx magic number",
           "short_payload": "holds 784 data bytes, expected 15680"}
BAD_TEST_SEQ = {"truncated": "not a readable .npy file",
                "wrong_shape": "got uint8 (10, 5, 32, 32), expected uint8 (time=20",
                "float_above_one": "got float64 (20, 6, 32, 32)",
                "no_sequences": "holds no sequences (shape (20, 0, 32, 32))",
                "not_npy": "not a readable .npy file"}


def write_bad_test_seq(path, case):
    if case == "truncated":
        cut(path, os.path.getsize(path) - 1000)
    elif case == "wrong_shape":
        np.save(path, np.zeros((10, 5, 32, 32), np.uint8))
    elif case == "float_above_one":
        np.save(path, np.full((20, 6, 32, 32), 255.0))
    elif case == "no_sequences":
        np.save(path, np.zeros((20, 0, 32, 32), np.uint8))
    else:
        with open(path, "wb") as f:
            f.write(b"not an npy file at all" * 10)


@pytest.fixture(scope="module")
def bad_moving_mnist_runs(tmp_path_factory, checkpoints):
    """train.py on each bad idx file and eval.py on each bad mnist_test_seq.npy (a data folder per
    case), all in one process (tests/entry_runner.py): {(kind, case): (code, stdout, stderr)}."""
    commands, keys = [], []
    for case in BAD_IDX:
        tmp = tmp_path_factory.mktemp(f"idx_{case}")
        data = write_mmnist_dir(tmp / "mmnist")
        write_bad_idx(os.path.join(data, "train-images-idx3-ubyte.gz"), case)
        commands.append(["train.py", "--config_path", MMNIST_CPU, *TINY_CONVLSTM, "--data_path", data,
                         "--output_dir", tmp / "out"])
        keys.append(("idx", case))
    for case in BAD_TEST_SEQ:
        tmp = tmp_path_factory.mktemp(f"seq_{case}")
        data = write_mmnist_dir(tmp / "mmnist")
        write_bad_test_seq(os.path.join(data, "mnist_test_seq.npy"), case)
        commands.append(["eval.py", "--config_path", MMNIST_CPU, *TINY_CONVLSTM, "--data_path", data,
                         "--ckpt_file", checkpoints["convlstm"], "--result_dir", tmp / "eval"])
        keys.append(("test_seq", case))
    return dict(zip(keys, (subprocess.CompletedProcess(c, code, out, err) for c, (code, out, err)
                           in zip(commands, run_commands(*commands)))))


@pytest.mark.parametrize("case, words", sorted(BAD_IDX.items()))
def test_bad_idx_file_for_moving_mnist_training(bad_moving_mnist_runs, case, words):
    assert_one_line(bad_moving_mnist_runs["idx", case], "train-images-idx3-ubyte.gz", words)


@pytest.mark.parametrize("case, words", sorted(BAD_TEST_SEQ.items()))
def test_bad_mnist_test_seq_for_evaluation(bad_moving_mnist_runs, case, words):
    assert_one_line(bad_moving_mnist_runs["test_seq", case], "mnist_test_seq.npy", words)


def test_bad_image_folders(tmp_path):
    from src.data import create_dataset
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        create_dataset("imagefolder", str(tmp_path / "none"), "train", 2)
    (tmp_path / "empty" / "train" / "cat").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no images"):
        create_dataset("imagefolder", str(tmp_path / "empty"), "train", 2)
    res = run_entry("train.py", "--config_path", IMAGENET_CPU, "--data_path", tmp_path / "empty",
                    "--output_dir", tmp_path / "out")
    assert_one_line(res, "class folder", "holds no images")


def test_corrupt_image_inside_the_pipeline_is_one_line(tmp_path):
    """A corrupt JPEG is found only when MindSpore decodes it, in its own threads: the
    RuntimeError it raises is turned into one line naming the file."""
    from PIL import Image
    from src.data import create_dataset
    for name in ("a", "b"):
        (tmp_path / "train" / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(tmp_path / "train" / name / f"{i}.jpg")
    bad = tmp_path / "train" / "b" / "2.jpg"
    bad.write_bytes(b"not a jpeg" * 20)
    dataset = create_dataset("imagefolder", str(tmp_path), "train", 5, image_size=16, shuffle=False)
    with pytest.raises(RuntimeError) as err:
        for _ in dataset.create_tuple_iterator(num_epochs=1):
            pass
    msg = user_message(err.value)
    assert msg and msg.startswith(f"{bad}: ") and "\n" not in msg and "remove or replace it" in msg


def test_user_error_raised_in_a_pipeline_worker_comes_back_as_one_line():
    import mindspore.dataset as ds

    class Source:
        def __len__(self):
            return 4

        def __getitem__(self, index):
            if index == 2:
                raise DataError("sample 2 is broken: fix the file")
            return (np.zeros(3, np.float32),)

    dataset = ds.GeneratorDataset(Source(), ["x"], shuffle=False, num_parallel_workers=2).batch(2)
    with pytest.raises(RuntimeError) as err:
        for _ in dataset.create_tuple_iterator(num_epochs=1):
            pass
    assert user_message(err.value) == "sample 2 is broken: fix the file"


def test_environment_errors_are_one_line(cifar_dir, tmp_path):
    assert user_message(FileExistsError(17, "File exists", "/x/out")) == \
        "/x/out: a file is in the way (EEXIST): remove it or pass another folder"
    assert "/x: read-only file system (EROFS)" in user_message(OSError(30, "Read-only file system", "/x"))
    assert user_message(FileNotFoundError("no data here: pass --data_path")) == "no data here: pass --data_path"
    res = run_entry("train.py", "--data_path", cifar_dir, "--output_dir", tmp_path / "out",
                    "--run_distribute", "true")
    assert_one_line(res, "run_distribute needs a launcher")


def test_bugs_keep_their_traceback():
    assert user_message(KeyError("x")) is None and user_message(RuntimeError("kernel crashed")) is None
    assert user_message(OSError(5, "Input/output error")) is None  # EIO: the machine, not the user

    @exit_on_user_error
    def buggy():
        raise TypeError("a bug")

    with pytest.raises(TypeError):
        buggy()


# --------------------------------------------------------------------------- read-only / full output
@contextlib.contextmanager
def mounted_tmpfs(path, options):
    """A tmpfs at ``path`` (root only); skips the test when it cannot be mounted."""
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a tmpfs (a small or read-only file system)")
    os.makedirs(path, exist_ok=True)
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield str(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def read_only_folder(path):
    """A read-only folder: chmod 555 for a normal user; root ignores modes, so a read-only tmpfs."""
    if os.geteuid() != 0:
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o555)
        try:
            yield str(path)
        finally:
            os.chmod(path, 0o755)
    else:
        with mounted_tmpfs(path, "size=1m,ro") as folder:
            yield folder


def no_tmp_left(folder):
    found = [os.path.join(d, f) for d, _, files in os.walk(folder) for f in files if ".tmp" in f]
    assert not found, found


def test_export_to_a_read_only_folder(tmp_path, checkpoints):
    with read_only_folder(tmp_path / "ro") as folder:
        res = run_entry("export.py", "--ckpt_file", checkpoints["cifar"], "--file_name",
                        os.path.join(folder, "net"))
        assert_one_line(res, folder, "read-only file system" if os.geteuid() == 0 else "permission denied")
        no_tmp_left(folder)


def test_export_to_a_full_disk_leaves_nothing(tmp_path, checkpoints):
    with mounted_tmpfs(tmp_path / "full", "size=64k") as folder:
        res = run_entry("export.py", "--ckpt_file", checkpoints["cifar"], "--file_name",
                        os.path.join(folder, "net"))
        assert_one_line(res, os.path.join(folder, "net.mindir"), "no space left on the device")
        assert os.listdir(folder) == []


def test_training_output_on_a_read_only_folder(cifar_dir, tmp_path):
    with read_only_folder(tmp_path / "ro") as folder:
        res = run_entry("train.py", "--data_path", cifar_dir, "--output_dir", os.path.join(folder, "run"),
                        "--batch_size", "16")
        assert_one_line(res, folder)


def test_writers_name_the_file_and_leave_nothing_on_a_full_disk(tmp_path):
    with mounted_tmpfs(tmp_path / "full", "size=64k") as folder:
        path = os.path.join(folder, "metrics.json")
        with pytest.raises(UserError, match=f"{path}: no space left on the device"):
            atomic_write_text(path, "x" * 200_000)
        assert os.listdir(folder) == []
        out = os.path.join(folder, "out.bin")
        with pytest.raises(UserError, match=f"{out}: cannot be written .*check the free space"):
            with writing(out, partial=[out]):
                np.zeros(100_000).tofile(out)  # numpy: an OSError without errno
        assert os.listdir(folder) == []


# --------------------------------------------------------------------------- checkpoints: CRC
def tiny_checkpoint(path, crc=True, **meta):
    """A Tiny-DarkNet checkpoint of a fresh network (with or without MindSpore's CRC32)."""
    import mindspore as ms
    from src.checkpoint import save_checkpoint_atomic
    from src.models import create_model_from_config
    net = create_model_from_config(get_config(["--config_path", CIFAR_CPU]))
    append = dict({"model_name": "tinydarknet"}, **meta)
    if crc:
        save_checkpoint_atomic(net, str(path), append_dict=append)
    else:
        ms.save_checkpoint(net, str(path), append_dict=append)
    return str(path)


def flip_byte(path, offset):
    data = bytearray(open(path, "rb").read())
    data[offset] ^= 0x10
    os.chmod(path, 0o644)  # MindSpore saves checkpoints read-only
    with open(path, "wb") as f:
        f.write(data)


def test_crc_is_saved_and_a_flipped_bit_is_refused(tmp_path, capfd):
    from src.checkpoint import crc_status, read_checkpoint
    path = tiny_checkpoint(tmp_path / "a.ckpt")
    assert crc_status(path) == "ok" and "model_name" in read_checkpoint(path)
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]
    flip_byte(path, os.path.getsize(path) // 2)  # inside a weight: the protobuf still parses
    assert crc_status(path) == "bad"
    with pytest.raises(UserError, match="is corrupt: its content does not match the CRC32"):
        read_checkpoint(path)
    res = run_entry("eval.py", "--ckpt_file", path)
    assert_one_line(res, path, "is corrupt")
    cut_copy = tmp_path / "cut.ckpt"
    cut_copy.write_bytes(open(tiny_checkpoint(tmp_path / "b.ckpt"), "rb").read()[:5000])  # copy interrupted
    with pytest.raises(UserError, match="is not a MindSpore checkpoint"):
        read_checkpoint(str(cut_copy))
    # a checkpoint written without a CRC (an older run) still loads, without a warning
    old = tiny_checkpoint(tmp_path / "old.ckpt", crc=False)
    capfd.readouterr()
    assert crc_status(old) == "none" and "model_name" in read_checkpoint(old)
    assert "crc" not in capfd.readouterr().err.lower()


# --------------------------------------------------------------------------- resume
def cifar_args(cifar_dir, out, *extra):
    return ["--config_path", CIFAR_CPU, "--data_path", cifar_dir, "--output_dir", str(out),
            "--batch_size", "16", "--augment", "false", "--warmup_epochs", "0", "--lr", "0.05",
            "--log_interval", "0", "--progress_bar", "off", *map(str, extra)]


def train_cli(args):
    """train.py in the command runner (training in this process would fix MindSpore's data seed
    for the tests that run after this file); returns its stdout."""
    res = run_entry("train.py", *args)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory):
    """A 2-epoch Tiny-DarkNet run (6 steps per epoch) on a tiny CIFAR-10 set."""
    from conftest import write_cifar10_bin as write
    root = tmp_path_factory.mktemp("resume")
    data = root / "cifar"
    write(str(data / "data_batch_1.bin"), 96, seed=1)
    write(str(data / "test_batch.bin"), 40, seed=2)
    train_cli(cifar_args(str(data), root / "run", "--epoch_size", 2))
    ckpts = root / "run" / "checkpoints"
    return {"data": str(data), "run": root / "run", "epoch1": str(ckpts / "tinydarknet-1_6.ckpt"),
            "epoch2": str(ckpts / "tinydarknet-2_6.ckpt")}


def test_saved_checkpoints_carry_crc_and_optimizer(two_epochs):
    from src.checkpoint import crc_status, read_checkpoint, stored_meta
    assert crc_status(two_epochs["epoch1"]) == "ok"
    meta = stored_meta(read_checkpoint(two_epochs["epoch1"]))
    assert meta["model_name"] == "tinydarknet" and meta["optimizer"] == "momentum"


@pytest.fixture(scope="module")
def resumed(two_epochs, tmp_path_factory):
    """The resumed runs of the tests below, in ONE train.py process (tests/entry_runner.py; not in
    this process, see train_cli): {"root": folder, name: CompletedProcess}.

    * "model": a ConvLSTM config resuming the Tiny-DarkNet checkpoint (epoch_size 1: "already
      finished epoch 1" would be true too, but the model comes first);
    * "kill": a copy of the run as a kill during epoch 2 leaves it (its history holds half of
      epoch 2 and a cut line, the epoch-2 checkpoint is missing, two temporary checkpoint files
      are the newest files) resumed from epoch 1;
    * "batch": resumed from epoch 2 with batch 32 and a cosine schedule over 3 epochs;
    * "optimizer": resumed from epoch 1 with Adam (the checkpoint holds momentum state)."""
    import shutil
    from src.checkpoint import latest_checkpoint
    root = tmp_path_factory.mktemp("resumed")
    run = root / "kill"
    shutil.copytree(two_epochs["run"], run)
    history = run / "loss_history.jsonl"
    lines = history.read_text().splitlines(keepends=True)
    assert len(lines) == 12
    history.write_text("".join(lines[:9]) + '{"epoch": 2, "step": 4, "glo')  # killed mid-write
    ckpts = run / "checkpoints"
    os.remove(ckpts / "tinydarknet-2_6.ckpt")
    for orphan in ("tinydarknet-2_6.tmp", "converted.ckpt.tmp.ckpt"):
        (ckpts / orphan).write_bytes(b"half a checkpoint")
        os.utime(ckpts / orphan)  # the newest files of the folder
    assert latest_checkpoint(str(ckpts)).endswith("tinydarknet-1_6.ckpt")
    commands = {
        "model": ["train.py", "--config_path", MMNIST_CPU, *TINY_CONVLSTM, "--data_path", root,
                  "--output_dir", root / "model", "--epoch_size", "1", "--resume", two_epochs["epoch1"]],
        "kill": ["train.py", *cifar_args(two_epochs["data"], run, "--epoch_size", 2, "--resume",
                                         ckpts / "tinydarknet-1_6.ckpt")],
        "batch": ["train.py", *cifar_args(two_epochs["data"], root / "batch", "--epoch_size", 3,
                                          "--batch_size", 32, "--lr_scheduler", "cosine", "--resume",
                                          two_epochs["epoch2"])],
        "optimizer": ["train.py", *cifar_args(two_epochs["data"], root / "optimizer", "--epoch_size", 2,
                                              "--optimizer", "adam", "--lr", "0.001", "--resume",
                                              two_epochs["epoch1"])],
    }
    results = run_commands(*commands.values())
    return dict(root=root, **{name: subprocess.CompletedProcess(cmd, *result)
                              for (name, cmd), result in zip(commands.items(), results)})


def trained_stdout(res):
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_resume_with_another_model_names_the_model_first(resumed):
    assert_one_line(resumed["model"], "holds a tinydarknet model but the config builds convlstm")


def test_resume_with_other_shapes_is_one_line(mmnist_dir, tmp_path):
    import mindspore as ms
    from src.checkpoint import save_checkpoint_atomic
    from src.models import create_model_from_config
    net = create_model_from_config(get_config(["--config_path", MMNIST_CPU] + TINY_CONVLSTM))
    ckpt = save_checkpoint_atomic(net, str(tmp_path / "convlstm-1_2.ckpt"),
                                  append_dict={"model_name": "convlstm", "epoch_num": ms.Tensor(1)})
    other = TINY_CONVLSTM[:3] + ["4,8"] + TINY_CONVLSTM[4:]  # hidden_channels 4,4 -> 4,8
    res = run_entry("train.py", "--config_path", MMNIST_CPU, *other, "--data_path", mmnist_dir,
                    "--output_dir", tmp_path / "out", "--epoch_size", "1", "--resume", ckpt)
    line = assert_one_line(res, "does not fit the network of mmnist_config_cpu.yaml", "shape (", "hidden_channels")
    assert "already finished" not in line and not (tmp_path / "out").exists()


def test_kill_and_resume_keeps_each_step_once_and_removes_orphans(resumed):
    """A run killed during epoch 2 (its history holds half of epoch 2, a cut line, a temporary
    checkpoint) resumes from epoch 1: every step is in the history once, the .tmp files are gone."""
    import json
    run = resumed["root"] / "kill"
    out = trained_stdout(resumed["kill"])
    assert "removed 2 unfinished checkpoint file(s)" in out and "dropped 4 records after epoch 1" in out
    records = [json.loads(l) for l in (run / "loss_history.jsonl").read_text().splitlines()]
    assert [r["global_step"] for r in records] == list(range(1, 13))
    assert not [f for f in os.listdir(run / "checkpoints") if ".tmp" in f]


def test_resume_with_another_batch_size_remaps_the_schedule(resumed):
    import json
    import mindspore as ms
    from src.lr_scheduler import create_lr
    run = resumed["root"] / "batch"
    out = trained_stdout(resumed["batch"])
    assert "was saved at step 12" in out and "continues at step 6" in out
    last = ms.load_checkpoint(str(run / "checkpoints" / "tinydarknet-3_3.ckpt"))
    assert int(last["global_step"].asnumpy().reshape(-1)[0]) == 9  # 3 epochs x 3 steps
    lrs = [json.loads(l)["lr"] for l in open(run / "loss_history.jsonl")]
    expected = create_lr("cosine", 0.05, 3, 3)[6:9]  # epoch 3 of the new schedule, not steps 12..
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)


def test_resume_with_another_optimizer_warns_in_one_line(resumed):
    import mindspore as ms
    out = trained_stdout(resumed["optimizer"])
    warnings = [l for l in out.splitlines() if l.startswith("warning:")]
    assert len(warnings) == 1 and "holds no adam state (trained with momentum)" in warnings[0]
    last = ms.load_checkpoint(str(resumed["root"] / "optimizer" / "checkpoints" / "tinydarknet-2_6.ckpt"))
    assert int(last["global_step"].asnumpy().reshape(-1)[0]) == 12  # the schedule went on at step 6


def test_full_disk_while_saving_a_checkpoint(two_epochs, tmp_path):
    with mounted_tmpfs(tmp_path / "full", "size=1m") as folder:
        res = run_entry("train.py", *cifar_args(two_epochs["data"], os.path.join(folder, "run"),
                                                "--epoch_size", 1))
        assert_one_line(res, "saving a checkpoint failed", "no space left on the device")
        no_tmp_left(folder)
        assert not [f for f in os.listdir(os.path.join(folder, "run", "checkpoints")) if f.endswith(".ckpt")]
