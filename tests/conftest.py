"""Shared test set-up: the repo root on sys.path, fp32 CPU, small helpers to write data files."""
import os
import sys
import tempfile

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("GLOG_v", "3")  # MindSpore: errors only

# tests never write the user's kernel cache: theirs is in the temp folder (kept between sessions,
# so the C++ kernels build once); inherited by the entry scripts the tests start
os.environ.setdefault("ZOO_KERNEL_CACHE", os.path.join(
    tempfile.gettempdir(), f"mindspore-zoo-test-kernels-{os.getuid() if hasattr(os, 'getuid') else 0}"))
# nor anything else under $HOME: onnxruntime writes ~/.cache/Microsoft/... on import and
# matplotlib its font cache, unless these point elsewhere (a temp folder kept between sessions)
_TEST_CACHE = os.path.join(tempfile.gettempdir(),
                           f"mindspore-zoo-test-cache-{os.getuid() if hasattr(os, 'getuid') else 0}")
os.environ["XDG_CACHE_HOME"] = _TEST_CACHE
os.environ["MPLCONFIGDIR"] = os.path.join(_TEST_CACHE, "matplotlib")

from src.kernels.tuning import apply_onednn_isa, machine_info  # noqa: E402

apply_onednn_isa(log=None)  # the measured oneDNN ISA cap, before any test module imports MindSpore


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: without the plugin pytest still runs
def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (the README's test command): one worker per usable core, at most 4. Each worker
    starts MindSpore processes of its own (~1 GB each, several threads); on 2 cores two workers
    keep both busy, since one alone waits on process start-up and compilation half of the time."""
    return min(machine_info()["cores"], 4)  # the cores this process may use (affinity), >= 1


# The longest files (~45-105 s each on 2 cores), first. `--dist loadfile` hands whole files to
# the workers in collection order, so these start at once and the short files fill the gaps at
# the end, instead of one worker running a long file alone while the other has finished. The
# multi-host run comes first: it mostly waits (heartbeats, process start), the other worker computes.
LONG_FILES = ("test_multihost.py", "test_convlstm.py", "test_distributed.py",
              "test_convlstm_e2e.py", "test_benchmark.py", "test_device_branches.py",
              "test_hardening.py")


def pytest_collection_modifyitems(config, items):
    """The files of LONG_FILES first, in that order; the rest and every file's own tests keep
    their order (a stable sort)."""
    rank = {name: i for i, name in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FILES)))


def write_cifar10_bin(path, num_records, seed=0, num_classes=10, pattern=True):
    """Write ``num_records`` CIFAR-10 binary records (label byte + R, G, B planes).

    With ``pattern`` each class gets a distinct, learnable image (a bright square whose position
    depends on the label, plus noise), so a few training steps can reduce the loss.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, num_records).astype(np.uint8)
    images = rng.integers(0, 60, (num_records, 3, 32, 32)).astype(np.uint8)
    if pattern:
        for i, lab in enumerate(labels):
            r, c = divmod(int(lab), 4)
            images[i, :, r * 8:(r + 1) * 8, c * 8:(c + 1) * 8] = 250
    records = np.concatenate([labels[:, None], images.reshape(num_records, -1)], axis=1)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    records.astype(np.uint8).tofile(path)
    return labels


@pytest.fixture
def cifar_dir(tmp_path):
    """A tiny CIFAR-10 binary folder: 96 training and 40 test records."""
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar10_bin(str(folder / "data_batch_1.bin"), 96, seed=1)
    write_cifar10_bin(str(folder / "test_batch.bin"), 40, seed=2)
    return str(folder)


@pytest.fixture
def mmnist_dir(tmp_path):
    """Tiny Moving MNIST files in the real formats: an idx file of 20 blob 'digits' (28x28) and a
    mnist_test_seq.npy of 6 sequences of 20 frames at 32x32."""
    return write_mmnist_dir(tmp_path / "mmnist")


def write_mmnist_dir(folder):
    """The files of :func:`mmnist_dir` in ``folder`` (a pathlib.Path, created); returns its path."""
    from src.data.mnist_idx import write_idx_images
    from src.data.moving_mnist import MovingMNISTGenerator, write_mnist_test_seq
    rng = np.random.default_rng(0)
    digits = np.zeros((20, 28, 28), np.uint8)
    for d in digits:
        r, c = rng.integers(4, 16, 2)
        d[r:r + 10, c:c + 8] = 255
    folder.mkdir(parents=True)
    write_idx_images(str(folder / "train-images-idx3-ubyte.gz"), digits)
    gen = MovingMNISTGenerator(digits, num_sequences=6, seq_len=20, image_size=32, seed=5)
    seqs = np.stack([np.concatenate(gen[i], axis=0)[:, 0] for i in range(6)], axis=1)
    write_mnist_test_seq(str(folder / "mnist_test_seq.npy"), (seqs * 255).astype(np.uint8))
    return str(folder)


TINY_CONVLSTM = ["--image_size", "32", "--hidden_channels", "4,4", "--input_kernel", "3",
                 "--state_kernel", "3", "--input_frames", "3", "--output_frames", "3",
                 "--train_sequences", "8", "--val_sequences", "4", "--batch_size", "4"]
