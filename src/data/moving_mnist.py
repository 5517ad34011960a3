"""Moving MNIST: on-the-fly training sequences and the standard ``mnist_test_seq.npy`` test set.

Training sequences follow Srivastava et al. 2015 (``BouncingMNISTDataHandler``): a 64x64 canvas,
28x28 digits at integer positions in [0, 36], each digit with a random start, a random direction
and a constant speed of ``step_length`` of the free range per frame (~3.6 px), reflected at the
borders; digits are combined with ``max`` and scaled to [0, 1].

Sequence ``index`` of ``epoch`` is a pure function of (seed, epoch, index) and of the generator's
``stream``: stream 0 are training sequences, stream ``VAL_STREAM`` the validation split (generated
from the same training digits, never equal to a training sequence's random draws). With
``resample_each_epoch=False`` training reuses epoch 0's ``num_sequences`` sequences every epoch (a
fixed training set, as Shi et al.'s 10,000). Otherwise the training pipeline
gets new sequences every epoch through ``EpochSampler``: its ``__iter__`` runs once per epoch (in the
pipeline's own copy; the counter is shared between copies) and yields keys
``epoch * num_sequences + index``, which ``MovingMNISTGenerator.__getitem__`` decodes. The epoch
travels inside the key, so it is right in any worker thread/process. Shuffling and sharding for
training are done by that sampler (GeneratorDataset refuses a user sampler together with
num_shards); every shard gets ceil(num_sequences / num_shards) keys per epoch.
"""
import math
import os

import numpy as np
import mindspore.dataset as ds

from src.data.mnist_idx import find_idx_file, read_idx_images
from src.model_utils.errors import DataError

TEST_SEQ_FILE = "mnist_test_seq.npy"
TRAIN_IMAGES_FILE = "train-images-idx3-ubyte"
TEST_SEQ_URL = "http://www.cs.toronto.edu/~nitish/unsupervised_video/mnist_test_seq.npy"
MNIST_URL = "http://yann.lecun.com/exdb/mnist/ (mirror: https://ossci-datasets.s3.amazonaws.com/mnist/)"
TRAIN_STREAM = 0
VAL_STREAM = 1


class MovingMNISTGenerator:
    """Random-access bouncing-digits sequences.

    Args:
        digits: (N, h, w) uint8 digit images (MNIST: 28x28).
        num_sequences (int): sequences per epoch (``len``).
        seq_len (int): frames per generated sequence.
        image_size (int): canvas size.
        num_digits (int): digits per sequence.
        seed (int): base seed.
        step_length (float): speed as a fraction of the free range per frame.
        input_frames, output_frames (int): split of a sequence returned by ``__getitem__``.
        stream (int): random stream: ``TRAIN_STREAM`` (0) or ``VAL_STREAM``; sequences of
            different streams are drawn independently.

    ``__getitem__(key)`` -> (input (T_in, 1, S, S), target (T_out, 1, S, S)) float32 for sequence
    ``key % num_sequences`` of epoch ``self.epoch + key // num_sequences``.
    """

    def __init__(self, digits, num_sequences, seq_len=20, image_size=64, num_digits=2, seed=0,
                 step_length=0.1, input_frames=10, output_frames=10, stream=TRAIN_STREAM):
        digits = np.asarray(digits)
        if digits.ndim != 3 or digits.dtype != np.uint8 or len(digits) == 0:
            raise DataError(f"digits must be a non-empty (N, h, w) uint8 array, got {digits.dtype} "
                            f"{digits.shape}: pass the MNIST train-images-idx3-ubyte file")
        if digits.shape[1] > image_size or digits.shape[2] > image_size:
            raise DataError(f"digits of {digits.shape[1]}x{digits.shape[2]} do not fit a "
                            f"{image_size}x{image_size} canvas: raise --image_size")
        if input_frames + output_frames > seq_len:
            raise ValueError(f"input_frames + output_frames = {input_frames + output_frames} "
                             f"exceeds seq_len = {seq_len}")
        self.digits = digits
        self.num_sequences = int(num_sequences)
        self.seq_len = seq_len
        self.image_size = image_size
        self.num_digits = num_digits
        self.seed = seed
        self.step_length = step_length
        self.input_frames = input_frames
        self.output_frames = output_frames
        self.stream = int(stream)
        self.epoch = 0

    def set_epoch(self, epoch):
        """Base epoch added to the epoch decoded from the key."""
        self.epoch = int(epoch)

    def __len__(self):
        return self.num_sequences

    def trajectory(self, index, epoch=0):
        """(positions (num_digits, seq_len, 2) int [row, col] of the top-left corner, digit ids)."""
        # stream 0 keeps the three-word key of the original generator ([s, e, i] seeds exactly as
        # [s, e, i, 0]), so other streams never reproduce a training sequence's draws
        key = [self.seed, epoch, index] + ([self.stream] if self.stream else [])
        rng = np.random.default_rng(key)
        dh, dw = self.digits.shape[1:]
        free = np.array([self.image_size - dh, self.image_size - dw], np.float64)
        positions = np.zeros((self.num_digits, self.seq_len, 2), np.int64)
        ids = rng.integers(0, len(self.digits), size=self.num_digits)
        for d in range(self.num_digits):
            pos = rng.random(2)
            theta = rng.random() * 2 * np.pi
            vel = np.array([np.sin(theta), np.cos(theta)])
            for t in range(self.seq_len):
                pos = pos + vel * self.step_length
                for axis in range(2):  # reflect at the borders
                    if pos[axis] <= 0:
                        pos[axis] = 0.0
                        vel[axis] = -vel[axis]
                    if pos[axis] >= 1.0:
                        pos[axis] = 1.0
                        vel[axis] = -vel[axis]
                positions[d, t] = (free * pos).astype(np.int64)
        return positions, ids

    def sequence(self, index, epoch=0):
        """Full sequence (seq_len, 1, S, S) float32 in [0, 1]."""
        positions, ids = self.trajectory(index, epoch)
        dh, dw = self.digits.shape[1:]
        frames = np.zeros((self.seq_len, self.image_size, self.image_size), np.uint8)
        for d, digit_id in enumerate(ids):
            digit = self.digits[digit_id]
            for t in range(self.seq_len):
                r, c = positions[d, t]
                window = frames[t, r:r + dh, c:c + dw]
                np.maximum(window, digit, out=window)
        return (frames.astype(np.float32) / 255.0)[:, None]

    def __getitem__(self, key):
        key = int(key)
        if key < 0:
            raise IndexError(f"negative sequence key {key}")
        seq = self.sequence(key % self.num_sequences, self.epoch + key // self.num_sequences)
        return seq[:self.input_frames], seq[self.input_frames:self.input_frames + self.output_frames]


class _SharedCounter:
    """Counter that survives the deep copy the dataset pipeline makes of its sampler."""

    def __init__(self, start=0):
        self.value = start

    def __deepcopy__(self, memo):
        return self

    def next(self):
        self.value += 1
        return self.value - 1


class EpochSampler(ds.Sampler):
    """Per-epoch keys ``epoch * num_sequences + index`` for ``MovingMNISTGenerator``.

    Epoch e (= start_epoch + number of earlier passes) uses the permutation of
    ``default_rng([seed, e])`` (identity when shuffle=False), padded by wrapping to a multiple of
    num_shards, and keeps every num_shards-th entry from shard_id. With ``resample=False`` the key
    is the bare index (a fixed training set, as in Shi et al.'s 10,000 sequences).
    """

    def __init__(self, num_sequences, shuffle=True, seed=0, num_shards=None, shard_id=None,
                 start_epoch=0, resample=True):
        self.n = int(num_sequences)
        self.shuffle = shuffle
        self.seed = seed
        self.num_shards = num_shards or 1
        self.shard_id = shard_id or 0
        if not 0 <= self.shard_id < self.num_shards:
            raise ValueError(f"shard_id {shard_id} is not in [0, num_shards={self.num_shards})")
        self.resample = resample
        self.epochs = _SharedCounter(start_epoch)
        super().__init__()

    def __len__(self):
        return math.ceil(self.n / self.num_shards)

    def indices(self, epoch):
        """Keys of ``epoch`` for this shard (np.int64 array)."""
        order = (np.random.default_rng([self.seed, epoch]).permutation(self.n) if self.shuffle
                 else np.arange(self.n))
        total = len(self) * self.num_shards
        order = np.resize(order, total)[self.shard_id::self.num_shards]
        return order + epoch * self.n if self.resample else order

    def __iter__(self):
        return iter(self.indices(self.epochs.next()).tolist())


class MovingMNISTSequences:
    """Lazy float32 view (N, T, 1, H, W) in [0, 1] of a (T, N, H, W) uint8 ``.npy`` (memory-mapped)."""

    def __init__(self, path, array):
        self.path = path
        self._array = array
        seq_len, num, height, width = array.shape
        self.shape = (num, seq_len, 1, height, width)

    def _data(self):
        if self._array is None:  # reopened after pickling into a worker process
            self._array = np.load(self.path, mmap_mode="r")
        return self._array

    def __getstate__(self):
        return {**self.__dict__, "_array": None}

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, key):
        arr = np.asarray(self._data()[:, key], dtype=np.float32) / 255.0
        if arr.ndim == 3:  # single sequence: (T, H, W)
            return arr[:, None]
        return arr.transpose(1, 0, 2, 3)[:, :, None]


def load_mnist_test_seq(path, seq_len=20, image_size=64):
    """Open ``mnist_test_seq.npy`` (uint8, (20, N, 64, 64) = time, sequence, H, W) lazily."""
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError, EOFError) as err:  # truncated, not .npy, pickled objects
        if isinstance(err, OSError) and err.errno is not None:
            raise  # missing file, no permission: the environment's error, reported as such
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"{path}: not a readable .npy file ({first}): expected uint8 "
                        f"(time={seq_len}, sequences, {image_size}, {image_size}); the file may be "
                        f"truncated, download it again from {TEST_SEQ_URL}") from None
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 4 or \
            array.shape[0] != seq_len or array.shape[2:] != (image_size, image_size):
        got = f"{array.dtype} {array.shape}" if isinstance(array, np.ndarray) else type(array).__name__
        raise DataError(f"{path}: got {got}, expected uint8 (time={seq_len}, sequences, "
                        f"{image_size}, {image_size}) pixel values 0..255 as in mnist_test_seq.npy "
                        "(--image_size must match the file)")
    if array.shape[1] == 0:
        raise DataError(f"{path}: holds no sequences (shape {array.shape}): pass a file with at "
                        "least one, e.g. python -m src.data.demo_data writes one of real digits")
    return MovingMNISTSequences(path, array)


def write_mnist_test_seq(path, sequences):
    """Write uint8 (T, N, H, W) sequences in the ``mnist_test_seq.npy`` layout."""
    sequences = np.asarray(sequences)
    if sequences.dtype != np.uint8 or sequences.ndim != 4:
        raise ValueError(f"write_mnist_test_seq expects uint8 (T, N, H, W), got {sequences.dtype} "
                         f"{sequences.shape}")
    np.save(path, sequences)


class _SplitSequences:
    """(input, target) pairs from a ``MovingMNISTSequences``."""

    def __init__(self, sequences, input_frames, output_frames, limit):
        self.sequences = sequences
        self.input_frames = input_frames
        self.output_frames = output_frames
        self.limit = limit

    def __len__(self):
        return self.limit

    def __getitem__(self, index):
        seq = self.sequences[int(index)]
        return seq[:self.input_frames], seq[self.input_frames:self.input_frames + self.output_frames]


def _train_images(data_path):
    if os.path.isfile(data_path):
        return data_path
    path = find_idx_file(data_path, TRAIN_IMAGES_FILE) if os.path.isdir(data_path) else None
    if path is None:
        raise FileNotFoundError(f"Moving MNIST split 'train' needs the MNIST training digits "
                                f"{TRAIN_IMAGES_FILE}[.gz] in folder {data_path!r}; get it from "
                                f"{MNIST_URL}")
    return path


def _test_file(data_path):
    path = data_path if os.path.isfile(data_path) else os.path.join(data_path, TEST_SEQ_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Moving MNIST split 'test' needs {TEST_SEQ_FILE} (uint8, 20 x N x "
                                f"64 x 64) at {path!r}; get it from {TEST_SEQ_URL}")
    return path


def create_moving_mnist_val_dataset(data_path, batch_size, num_sequences, input_frames=10,
                                    output_frames=10, seed=0, image_size=64, num_digits=2,
                                    num_parallel_workers=1, shard_id=None, num_shards=None):
    """The validation split: ``num_sequences`` fixed sequences generated from the training digits
    (``train-images-idx3-ubyte[.gz]`` in ``data_path``) with the validation random stream, so
    none is a training sequence; the same sequences in the same order at every call, no shuffle,
    the last partial batch kept. Used to pick the best checkpoint and to stop early; the test set
    (``mnist_test_seq.npy``) stays untouched for the final figures."""
    if not num_sequences or num_sequences < 1:
        raise ValueError(f"the validation split needs num_sequences >= 1, got {num_sequences}")
    digits = read_idx_images(_train_images(data_path))
    source = MovingMNISTGenerator(digits, num_sequences, seq_len=input_frames + output_frames,
                                  image_size=image_size, num_digits=num_digits, seed=seed,
                                  input_frames=input_frames, output_frames=output_frames,
                                  stream=VAL_STREAM)
    dataset = ds.GeneratorDataset(source, column_names=["input", "target"], shuffle=False,
                                  num_parallel_workers=num_parallel_workers or 1,
                                  python_multiprocessing=False, num_shards=num_shards,
                                  shard_id=shard_id)
    return dataset.batch(batch_size, drop_remainder=False)


def create_moving_mnist_dataset(data_path, split, batch_size, input_frames=10, output_frames=10,
                                num_sequences=None, seed=0, shuffle=None, num_parallel_workers=1,
                                shard_id=None, num_shards=None, image_size=64, num_digits=2,
                                start_epoch=0, resample_each_epoch=True, drop_remainder=None,
                                python_multiprocessing=False):
    """Batched GeneratorDataset with float32 columns ["input", "target"], (B, T, 1, S, S).

    split 'train': sequences generated from ``train-images-idx3-ubyte[.gz]`` in ``data_path``
    (folder or the file itself); ``num_sequences`` per epoch (default 10,000), new sequences every
    epoch unless ``resample_each_epoch=False``; ``start_epoch`` when resuming; shuffle default True;
    drop_remainder default True. split 'test'/'eval': ``mnist_test_seq.npy`` in ``data_path`` (or
    the file), first ``num_sequences`` sequences (default all), shuffle default False,
    drop_remainder default False; sharding there uses GeneratorDataset's DistributedSampler
    (which pads with repeated samples when N is not a multiple of num_shards). split 'val':
    ``create_moving_mnist_val_dataset`` with ``num_sequences`` sequences.
    """
    if (num_shards is None) != (shard_id is None):
        raise ValueError("num_shards and shard_id must be given together")
    if split == "val":
        return create_moving_mnist_val_dataset(
            data_path, batch_size, num_sequences, input_frames, output_frames, seed=seed,
            image_size=image_size, num_digits=num_digits,
            num_parallel_workers=num_parallel_workers, shard_id=shard_id, num_shards=num_shards)
    is_train = split == "train"
    if is_train:
        digits = read_idx_images(_train_images(data_path))
        source = MovingMNISTGenerator(digits, num_sequences or 10000, seq_len=input_frames +
                                      output_frames, image_size=image_size, num_digits=num_digits,
                                      seed=seed, input_frames=input_frames,
                                      output_frames=output_frames)
        sampler = EpochSampler(len(source), True if shuffle is None else shuffle, seed, num_shards,
                               shard_id, start_epoch, resample_each_epoch)
        sharding = dict(sampler=sampler)
    elif split in ("test", "eval"):
        sequences = load_mnist_test_seq(_test_file(data_path), image_size=image_size)
        if input_frames + output_frames > sequences.shape[1]:
            raise DataError(f"input_frames + output_frames = {input_frames + output_frames} > "
                             f"{sequences.shape[1]} frames in the test file")
        limit = min(num_sequences or len(sequences), len(sequences))
        source = _SplitSequences(sequences, input_frames, output_frames, limit)
        sharding = dict(shuffle=bool(shuffle), num_shards=num_shards, shard_id=shard_id)
    else:
        raise ValueError(f"unknown Moving MNIST split {split!r}; use 'train', 'val', 'test' or 'eval'")
    dataset = ds.GeneratorDataset(source, column_names=["input", "target"],
                                  num_parallel_workers=num_parallel_workers or 1,
                                  python_multiprocessing=python_multiprocessing, **sharding)
    drop = is_train if drop_remainder is None else drop_remainder
    return dataset.batch(batch_size, drop_remainder=drop)
