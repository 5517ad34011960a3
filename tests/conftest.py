"""Shared test set-up: the repo root on sys.path, fp32 CPU, small helpers to write data files."""
import os
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
os.environ.setdefault("GLOG_v", "3")  # MindSpore: errors only


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
