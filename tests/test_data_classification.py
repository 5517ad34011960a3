"""CIFAR-10 binary and ImageFolder pipelines on tiny files in the real formats."""
import os

import numpy as np
import pytest

from conftest import ROOT, write_cifar10_bin
from src.data import create_dataset
from src.data.classification import CIFAR_RECORD, Cifar10BinarySource, cifar10_files


def batches(ds):
    return [(x.asnumpy(), y.asnumpy()) for x, y in ds.create_tuple_iterator(num_epochs=1)]


def test_cifar_reader_decodes_the_record_layout(tmp_path):
    rec = np.zeros((2, CIFAR_RECORD), np.uint8)
    rec[:, 0] = [3, 7]
    rec[1, 1:1025] = 10  # R plane
    rec[1, 1025:2049] = 20  # G plane
    rec[1, 2049:] = 30  # B plane
    path = tmp_path / "data_batch_1.bin"
    rec.tofile(path)
    src = Cifar10BinarySource([str(path)])
    image, label = src[1]
    assert len(src) == 2 and int(label) == 7 and image.shape == (32, 32, 3)
    assert tuple(image[5, 9]) == (10, 20, 30)


def test_cifar_train_and_eval_pipelines(cifar_dir):
    train = batches(create_dataset("cifar10", cifar_dir, "train", 32, shuffle=False, augment=True))
    assert len(train) == 3 and train[0][0].shape == (32, 3, 32, 32) and train[0][0].dtype == np.float32
    assert train[0][1].dtype == np.int32
    ev1 = batches(create_dataset("cifar10", cifar_dir, "eval", 16))
    ev2 = batches(create_dataset("cifar10", cifar_dir, "eval", 16))
    assert [len(b[1]) for b in ev1] == [16, 16, 8]  # eval keeps the remainder
    # evaluation is deterministic: no training augmentation leaks into it
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(ev1, ev2))
    # and it is plain normalisation of the stored pixels
    raw = Cifar10BinarySource([os.path.join(cifar_dir, "test_batch.bin")])[0][0].astype(np.float32)
    expect = (raw[..., 0] - 0.4914 * 255) / (0.2470 * 255)
    assert np.allclose(ev1[0][0][0, 0], expect, atol=1e-3)


def test_cifar_train_augmentation_is_random(cifar_dir):
    """Two epochs of the same pipeline see other crops / flips of the same images (whatever global
    seed an earlier test in this process fixed)."""
    ds = create_dataset("cifar10", cifar_dir, "train", 96, shuffle=False)
    epochs = ds.create_tuple_iterator(num_epochs=2)
    a = [x.asnumpy() for x, _ in epochs][0]  # the iterator's first epoch ...
    b = [x.asnumpy() for x, _ in epochs][0]  # ... and its second
    assert a.shape == b.shape and not np.array_equal(a, b)


def test_cifar_standard_files_use_cifar10dataset(tmp_path):
    folder = tmp_path / "cifar-10-batches-bin"
    write_cifar10_bin(str(folder / "test_batch.bin"), 10000, pattern=False)
    ds = create_dataset("cifar10", str(tmp_path), "eval", 50, num_samples=100)
    assert ds.get_dataset_size() == 2
    assert "Cifar10" in type(ds.children[0].children[0].children[0]).__name__


def test_cifar_sharding_is_disjoint(cifar_dir):
    labels = []
    for shard in range(2):
        ds = create_dataset("cifar10", cifar_dir, "eval", 8, shard_id=shard, num_shards=2,
                            shuffle=False)
        labels.append(np.concatenate([y for _, y in batches(ds)]))
    assert len(labels[0]) == len(labels[1]) == 20


@pytest.mark.parametrize("case, words", [
    ("missing", "CIFAR-10 folder not found"),
    ("empty", "no CIFAR-10 train file"),
    ("truncated", "is not a CIFAR-10 binary file"),
])
def test_cifar_errors_name_what_was_expected(tmp_path, case, words):
    folder = tmp_path / "c"
    if case != "missing":
        folder.mkdir()
    if case == "truncated":
        (folder / "data_batch_1.bin").write_bytes(b"\0" * 1000)
    with pytest.raises((FileNotFoundError, ValueError), match=words):
        cifar10_files(str(folder), "train")


def _write_folder(root, classes, per_class, size=(40, 30)):
    from PIL import Image
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i, name in enumerate(classes):
            d = root / split / name
            d.mkdir(parents=True)
            for j in range(per_class):
                arr = rng.integers(0, 255, (size[1], size[0], 3)).astype(np.uint8)
                arr[..., i % 3] = 255
                Image.fromarray(arr).save(d / f"{j}.JPEG")


def test_imagefolder_pipeline(tmp_path):
    _write_folder(tmp_path, ["n01", "n02", "n03"], 4)
    ds = create_dataset("imagenet", str(tmp_path), "train", 4, image_size=32)
    out = batches(ds)
    assert len(out) == 3 and out[0][0].shape == (4, 3, 32, 32)
    ev = batches(create_dataset("imagefolder", str(tmp_path), "eval", 5, image_size=32))
    assert sorted(np.concatenate([y for _, y in ev]).tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    ev2 = batches(create_dataset("imagefolder", str(tmp_path), "eval", 5, image_size=32))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(ev, ev2))
    # a fixed class order (e.g. from a checkpoint) maps folder names to those labels
    ev3 = batches(create_dataset("imagefolder", str(tmp_path), "eval", 12, image_size=32,
                                 shuffle=False, class_names=["n03", "n02", "n01"]))
    images, labels = ev3[0]
    assert sorted(labels.tolist()) == [0] * 4 + [1] * 4 + [2] * 4
    # folder n01 (red channel saturated) must now carry label 2, n03 (blue) label 0
    assert np.argmax(images[labels == 2].mean(axis=(0, 2, 3))) == 0
    assert np.argmax(images[labels == 0].mean(axis=(0, 2, 3))) == 2


def test_imagefolder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="image folder not found"):
        create_dataset("imagenet", str(tmp_path / "none"), "train", 2)
    (tmp_path / "train").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        create_dataset("imagenet", str(tmp_path), "train", 2)
    (tmp_path / "train" / "cat").mkdir()
    (tmp_path / "train" / "cat" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="holds no images"):
        create_dataset("imagenet", str(tmp_path), "train", 2)
    with pytest.raises(FileNotFoundError, match="--data_path"):
        create_dataset("cifar10", "", "train", 2)


@pytest.mark.parametrize("config", ["cifar10_config_cpu.yaml", "imagenet_config_cpu.yaml"])
def test_a_resumed_pipeline_continues_the_shuffle_order(tmp_path, cifar_dir, config):
    """Training resumed after epoch 1 (``start_epoch=1``) reads epochs 2 and 3 in the order an
    uninterrupted run with the same seed reads them, not epoch 1's order again."""
    import mindspore.dataset as mds
    from src.data import create_dataset_from_config
    from src.model_utils.config import get_config
    if config.startswith("imagenet"):
        _write_folder(tmp_path, ["n01", "n02", "n03"], 8)
        data = str(tmp_path)
    else:
        data = cifar_dir
    cfg = get_config(["--config_path", os.path.join(ROOT, "config", config), "--data_path", data,
                      "--batch_size", "4", "--image_size", "32", "--num_parallel_workers", "1"])
    seed = mds.config.get_seed()

    def epochs(start):  # the labels of each epoch after `start`, as Model.train iterates (3 epochs)
        mds.config.set_seed(cfg.seed)  # as train.py does, in both runs
        dataset = create_dataset_from_config(cfg, "train", start_epoch=start)
        iterator = dataset.create_tuple_iterator(num_epochs=3, output_numpy=True)
        return [np.concatenate([labels for _, labels in iterator]).tolist() for _ in range(3 - start)]

    try:
        straight, resumed = epochs(0), epochs(1)
    finally:
        mds.config.set_seed(seed)
    assert straight[0] != straight[1] != straight[2]  # each epoch has its own order
    assert resumed == straight[1:]
