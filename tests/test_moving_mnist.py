"""MNIST idx files, the Moving MNIST generator, the test-set loader and the dataset pipeline."""
import gzip
import os
import struct

import numpy as np
import pytest

from src.data.mnist_idx import (read_idx_images, read_idx_labels, write_idx_images,
                                write_idx_labels)
from src.data.moving_mnist import (VAL_STREAM, EpochSampler, MovingMNISTGenerator,
                                   create_moving_mnist_dataset, create_moving_mnist_val_dataset,
                                   load_mnist_test_seq, write_mnist_test_seq)


def random_digits(n=20, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


@pytest.fixture()
def data_dir(tmp_path):
    rng = np.random.default_rng(1)
    write_idx_images(str(tmp_path / "train-images-idx3-ubyte.gz"), random_digits(30))
    write_mnist_test_seq(str(tmp_path / "mnist_test_seq.npy"),
                         rng.integers(0, 256, (20, 7, 64, 64), dtype=np.uint8))
    return tmp_path


# ---------------------------------------------------------------- idx files
@pytest.mark.parametrize("name", ["imgs-idx3-ubyte", "imgs-idx3-ubyte.gz"])
def test_idx_roundtrip(tmp_path, name):
    images = random_digits(5)
    write_idx_images(str(tmp_path / name), images)
    np.testing.assert_array_equal(read_idx_images(str(tmp_path / name)), images)
    labels = np.arange(5, dtype=np.uint8)
    write_idx_labels(str(tmp_path / "labels.gz"), labels)
    np.testing.assert_array_equal(read_idx_labels(str(tmp_path / "labels.gz")), labels)
    if name.endswith(".gz"):
        with gzip.open(tmp_path / name, "rb") as f:
            assert struct.unpack(">4i", f.read(16)) == (2051, 5, 28, 28)  # big-endian header


def test_idx_bad_magic_and_truncated(tmp_path):
    labels_path = str(tmp_path / "labels-idx1-ubyte")
    write_idx_labels(labels_path, np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match=r"labels-idx1-ubyte.*magic.*2049.*expected 2051"):
        read_idx_images(labels_path)
    images_path = tmp_path / "images-idx3-ubyte"
    write_idx_images(str(images_path), random_digits(2))
    images_path.write_bytes(images_path.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"images-idx3-ubyte.*expected 1568"):
        read_idx_images(str(images_path))
    (tmp_path / "short").write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="truncated"):
        read_idx_labels(str(tmp_path / "short"))


# ---------------------------------------------------------------- generator
def test_generator_reproducible_and_varies_by_epoch_and_seed():
    a = MovingMNISTGenerator(random_digits(), num_sequences=4, seed=3)
    b = MovingMNISTGenerator(random_digits(), num_sequences=4, seed=3)
    inp, tgt = a[1]
    assert inp.shape == (10, 1, 64, 64) and tgt.shape == (10, 1, 64, 64)
    assert inp.dtype == np.float32 and tgt.dtype == np.float32
    assert inp.min() >= 0.0 and max(inp.max(), tgt.max()) <= 1.0
    np.testing.assert_array_equal(a.sequence(1), b.sequence(1))
    np.testing.assert_array_equal(np.concatenate(a[1]), a.sequence(1))
    assert not np.array_equal(a.sequence(1), a.sequence(2))
    assert not np.array_equal(a.sequence(1, epoch=0), a.sequence(1, epoch=1))
    c = MovingMNISTGenerator(random_digits(), num_sequences=4, seed=4)
    assert not np.array_equal(a.sequence(1), c.sequence(1))
    # keys beyond num_sequences address later epochs; set_epoch shifts the base epoch
    np.testing.assert_array_equal(np.concatenate(a[4 * 2 + 1]), a.sequence(1, epoch=2))
    a.set_epoch(5)
    np.testing.assert_array_equal(np.concatenate(a[1]), a.sequence(1, epoch=5))


def test_generator_motion_is_bouncing_constant_speed():
    square = np.full((1, 28, 28), 255, np.uint8)  # a digit whose bounding box is its position
    gen = MovingMNISTGenerator(square, num_sequences=50, num_digits=1, seed=0)
    max_step = int(np.ceil(0.1 * 36)) + 1
    for index in range(50):
        positions, _ = gen.trajectory(index)
        frames = gen.sequence(index)[:, 0]
        assert positions.min() >= 0 and positions.max() <= 36  # digit stays inside the canvas
        for t in range(20):
            rows, cols = np.nonzero(frames[t])
            assert (rows.min(), cols.min()) == tuple(positions[0, t])
            assert rows.max() - rows.min() == 27 and cols.max() - cols.min() == 27
        assert np.abs(np.diff(positions[0], axis=0)).max() <= max_step
    # without a bounce the displacement is the constant velocity (up to int truncation)
    steps = np.abs(np.diff(gen.trajectory(0)[0][0], axis=0)).sum(axis=1)
    assert steps.max() >= 3


def test_generator_combines_digits_with_max():
    digits = random_digits(6)
    gen = MovingMNISTGenerator(digits, num_sequences=3, num_digits=2, seed=7)
    positions, ids = gen.trajectory(2)
    frames = gen.sequence(2)[:, 0]
    for t in (0, 19):
        canvas = np.zeros((2, 64, 64), np.float32)
        for d in range(2):
            r, c = positions[d, t]
            canvas[d, r:r + 28, c:c + 28] = digits[ids[d]] / 255.0
        np.testing.assert_allclose(frames[t], canvas.max(axis=0), atol=1e-7)


# ---------------------------------------------------------------- test-set loader
def test_load_mnist_test_seq(tmp_path):
    raw = np.random.default_rng(0).integers(0, 256, (20, 3, 64, 64), dtype=np.uint8)
    path = str(tmp_path / "mnist_test_seq.npy")
    write_mnist_test_seq(path, raw)
    seqs = load_mnist_test_seq(path)
    assert seqs.shape == (3, 20, 1, 64, 64) and len(seqs) == 3
    item = seqs[1]
    assert item.dtype == np.float32 and item.shape == (20, 1, 64, 64)
    np.testing.assert_allclose(item[:, 0], raw[:, 1] / 255.0, atol=1e-7)
    batch = seqs[0:2]
    assert batch.shape == (2, 20, 1, 64, 64)
    np.testing.assert_array_equal(batch[1], item)


def test_load_mnist_test_seq_rejects_wrong_layout(tmp_path):
    path = str(tmp_path / "bad_seq.npy")
    np.save(path, np.zeros((3, 20, 64, 64), np.uint8))  # (N, T, H, W): wrong axis order
    with pytest.raises(ValueError, match=r"bad_seq\.npy.*expected uint8 \(time=20"):
        load_mnist_test_seq(path)
    np.save(path, np.zeros((20, 3, 64, 64), np.float32))
    with pytest.raises(ValueError, match=r"bad_seq\.npy.*float32"):
        load_mnist_test_seq(path)


# ---------------------------------------------------------------- dataset pipeline
def collect(dataset, epochs=1):
    it = dataset.create_tuple_iterator(num_epochs=epochs, output_numpy=True)
    return [[(a, b) for a, b in it] for _ in range(epochs)]


def test_train_pipeline_shapes_and_new_sequences_each_epoch(data_dir):
    dataset = create_moving_mnist_dataset(str(data_dir), "train", batch_size=3, num_sequences=7)
    assert dataset.get_dataset_size() == 2  # drop_remainder
    epochs = collect(dataset, epochs=2)
    inp, tgt = epochs[0][0]
    assert inp.shape == (3, 10, 1, 64, 64) and tgt.shape == (3, 10, 1, 64, 64)
    assert inp.dtype == np.float32 and tgt.dtype == np.float32
    assert len(epochs[1]) == 2
    assert not np.array_equal(epochs[0][0][0], epochs[1][0][0])
    again = collect(create_moving_mnist_dataset(str(data_dir), "train", 3, num_sequences=7))
    np.testing.assert_array_equal(again[0][0][0], epochs[0][0][0])  # reproducible


def test_fixed_training_set_repeats_the_same_sequences(data_dir):
    fixed = create_moving_mnist_dataset(str(data_dir), "train", 2, num_sequences=4,
                                        resample_each_epoch=False)
    epochs = collect(fixed, epochs=3)
    sets = [{a.tobytes() for batch, _ in e for a in batch} for e in epochs]
    assert len(sets[0]) == 4 and sets[0] == sets[1] == sets[2]
    orders = [[a.tobytes() for batch, _ in e for a in batch] for e in epochs]
    assert orders[0] != orders[1] or orders[1] != orders[2]  # reshuffled each epoch
    fresh = collect(create_moving_mnist_dataset(str(data_dir), "train", 2, num_sequences=4), 2)
    assert {a.tobytes() for b, _ in fresh[0] for a in b} == sets[0]  # epoch 0 is the same set
    assert not {a.tobytes() for b, _ in fresh[1] for a in b} & sets[0]  # then new ones


def test_validation_split_is_fixed_and_disjoint_from_training(data_dir):
    val = create_moving_mnist_val_dataset(str(data_dir), batch_size=4, num_sequences=6, seed=1)
    first = collect(val)[0]
    assert [b[0].shape for b in first] == [(4, 10, 1, 64, 64), (2, 10, 1, 64, 64)]  # remainder kept
    again = collect(create_moving_mnist_dataset(str(data_dir), "val", 4, num_sequences=6, seed=1))
    for (a, b), (c, d) in zip(first, again[0]):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    val_rows = {row.tobytes() for a, _ in first for row in a}
    train = create_moving_mnist_dataset(str(data_dir), "train", 2, num_sequences=6, seed=1)
    train_rows = {row.tobytes() for e in collect(train, 3) for a, _ in e for row in a}
    assert len(val_rows) == 6 and not val_rows & train_rows
    # the streams draw independently: same seed, epoch and index, different trajectories
    digits = random_digits()
    train_gen = MovingMNISTGenerator(digits, 3, seed=1)
    val_gen = MovingMNISTGenerator(digits, 3, seed=1, stream=VAL_STREAM)
    assert not np.array_equal(train_gen.trajectory(0)[0], val_gen.trajectory(0)[0])
    with pytest.raises(ValueError, match="num_sequences >= 1"):
        create_moving_mnist_val_dataset(str(data_dir), 4, 0)


def test_config_keys_reach_the_pipelines(data_dir):
    from src.data import create_dataset_from_config, dataset_kwargs
    from src.model_utils.config import get_config
    cfg = get_config(["--data_path", str(data_dir), "--eval_data_path", "/nonexistent",
                      "--resample_each_epoch", "false", "--val_sequences", "5",
                      "--train_sequences", "4"], default_config="config/mmnist_config_cpu.yaml")
    assert dataset_kwargs(cfg, "train")["resample_each_epoch"] is False
    assert dataset_kwargs(cfg, "val")["num_sequences"] == 5
    val = create_dataset_from_config(cfg, "val")  # reads the training digits in data_path
    assert sum(a.shape[0] for a, _ in collect(val)[0]) == 5
    # the validation sequences follow the run's seed unless val_seed fixes them
    assert dataset_kwargs(cfg, "val")["seed"] == cfg.seed
    for seed in ("3", "4"):
        fixed = get_config(["--seed", seed, "--val_seed", "0"], default_config="config/mmnist_config_cpu.yaml")
        assert dataset_kwargs(fixed, "val")["seed"] == 0 and dataset_kwargs(fixed, "train")["seed"] == int(seed)


def test_epoch_sampler_shards_are_disjoint_and_cover():
    shards = [EpochSampler(12, shuffle=True, seed=0, num_shards=3, shard_id=i) for i in range(3)]
    for epoch in (0, 1):
        keys = [set(s.indices(epoch).tolist()) for s in shards]
        assert [len(k) for k in keys] == [4, 4, 4]
        assert set.union(*keys) == set(range(epoch * 12, epoch * 12 + 12))  # disjoint cover
    assert not np.array_equal(shards[0].indices(0) % 12, shards[0].indices(1) % 12)
    uneven = [EpochSampler(10, num_shards=3, shard_id=i) for i in range(3)]
    assert [len(s) for s in uneven] == [4, 4, 4]  # equal steps per rank: padded by wrapping
    assert set(np.concatenate([s.indices(0) for s in uneven]).tolist()) == set(range(10))
    fixed = EpochSampler(10, shuffle=False, resample=False)
    np.testing.assert_array_equal(fixed.indices(3), np.arange(10))


def test_train_pipeline_shards_disjoint(data_dir):
    seen = []
    for shard in range(2):
        dataset = create_moving_mnist_dataset(str(data_dir), "train", 1, num_sequences=6,
                                              num_shards=2, shard_id=shard)
        seen.append([a.tobytes() for a, _ in collect(dataset)[0]])
    assert len(seen[0]) == len(seen[1]) == 3
    assert not set(seen[0]) & set(seen[1])


def test_test_pipeline_shapes_order_and_shards(data_dir):
    raw = np.load(str(data_dir / "mnist_test_seq.npy"))
    dataset = create_moving_mnist_dataset(str(data_dir / "mnist_test_seq.npy"), "test", 4)
    batches = collect(dataset)[0]
    assert [b[0].shape[0] for b in batches] == [4, 3]  # keeps the remainder
    np.testing.assert_allclose(batches[0][1][2, :, 0], raw[10:, 2] / 255.0, atol=1e-7)
    shard_rows = []
    for shard in range(2):
        ds_shard = create_moving_mnist_dataset(str(data_dir), "eval", 2, num_sequences=6,
                                               num_shards=2, shard_id=shard)
        shard_rows.append({row.tobytes() for a, _ in collect(ds_shard)[0] for row in a})
    assert len(shard_rows[0]) == len(shard_rows[1]) == 3
    assert not shard_rows[0] & shard_rows[1]


def test_missing_files_and_bad_split(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        create_moving_mnist_dataset(str(tmp_path), "train", 2)
    with pytest.raises(FileNotFoundError, match="mnist_test_seq.npy"):
        create_moving_mnist_dataset(str(tmp_path), "test", 2)
    with pytest.raises(ValueError, match="split"):
        create_moving_mnist_dataset(str(tmp_path), "valid", 2)
    assert not os.listdir(tmp_path)
