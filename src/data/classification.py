"""Image-classification pipelines: CIFAR-10 binary and ImageNet-style ImageFolder.

Training augmentation is applied only to the training split; evaluation is deterministic.
"""
import os

import numpy as np
import mindspore as ms
import mindspore.dataset as ds
import mindspore.dataset.transforms as T
import mindspore.dataset.vision as V

from src.model_utils.errors import DataError

CIFAR_RECORD = 1 + 3 * 32 * 32
CIFAR_RECORDS_PER_FILE = 10000
CIFAR_MEAN = (0.4914 * 255, 0.4822 * 255, 0.4465 * 255)
CIFAR_STD = (0.2470 * 255, 0.2435 * 255, 0.2616 * 255)
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".bmp", ".JPEG", ".JPG", ".PNG", ".BMP")


def default_workers(num_shards=None, requested=None):
    """Workers per pipeline: what was asked, capped by the cores this process may use."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    share = max(1, cores // max(1, num_shards or 1))
    return max(1, min(requested, share)) if requested else share


# --------------------------------------------------------------------------- CIFAR-10 binary
def cifar10_files(data_path, split):
    """The CIFAR-10 binary files of a split, validated. ``data_path`` is the folder holding them
    (``cifar-10-batches-bin``) or its parent."""
    if not os.path.isdir(data_path):
        raise FileNotFoundError(f"CIFAR-10 folder not found: {data_path} (expected the folder with "
                                "data_batch_1.bin ... data_batch_5.bin and test_batch.bin)")
    nested = os.path.join(data_path, "cifar-10-batches-bin")
    if not any(f.endswith(".bin") for f in os.listdir(data_path)) and os.path.isdir(nested):
        data_path = nested
    if split == "train":
        names = sorted(f for f in os.listdir(data_path) if f.startswith("data_batch_") and f.endswith(".bin"))
        expected = "data_batch_1.bin ... data_batch_5.bin"
    else:
        names = [f for f in ("test_batch.bin",) if os.path.isfile(os.path.join(data_path, f))]
        expected = "test_batch.bin"
    if not names:
        raise FileNotFoundError(f"no CIFAR-10 {split} file in {data_path}: expected {expected} "
                                "(the binary version, cifar-10-binary.tar.gz)")
    files = [os.path.join(data_path, n) for n in names]
    for path in files:
        size = os.path.getsize(path)
        if size == 0 or size % CIFAR_RECORD:
            cut = f" (cut {size % CIFAR_RECORD} bytes into record {size // CIFAR_RECORD + 1})" if size else ""
            raise DataError(f"{path} is not a CIFAR-10 binary file: its size {size} is not a multiple "
                            f"of {CIFAR_RECORD} bytes (1 label byte + 3072 pixel bytes per record)"
                            f"{cut}: re-download or re-extract cifar-10-binary.tar.gz")
    return data_path, files


def cifar10_labels(path):
    """The label bytes of a CIFAR-10 binary file (read without loading the pixels)."""
    records = np.memmap(path, dtype=np.uint8, mode="r").reshape(-1, CIFAR_RECORD)
    return np.array(records[:, 0])


def check_cifar10_labels(files, num_classes=None):
    """One-line error when a file holds a label byte outside [0, num_classes) (default 10):
    a wrong file or a model with too few classes would otherwise train on out-of-range labels."""
    limit = num_classes or 10
    for path in files:
        labels = cifar10_labels(path)
        if labels.size and int(labels.max()) >= limit:
            bad = int(np.argmax(labels >= limit))
            top = int(labels.max())
            fix = (f"pass --num_classes {top + 1} if the data has that many classes" if top < 10
                   else "CIFAR-10 labels are 0..9: is this a CIFAR-10 binary file?")
            raise DataError(f"{path}: record {bad} has label {int(labels[bad])}, outside the "
                            f"{limit} classes [0, {limit - 1}]: {fix}")


class Cifar10BinarySource:
    """Random-access reader of CIFAR-10 binary files with any number of records per file.

    ``Cifar10Dataset`` insists on exactly 10,000 records per file; subsets and home-made sets in
    the same format go through this reader instead. Yields (HWC uint8 image, int32 label).
    """

    def __init__(self, files):
        self.records = np.concatenate([np.fromfile(f, dtype=np.uint8).reshape(-1, CIFAR_RECORD)
                                       for f in files])

    def __len__(self):
        return len(self.records)

    def __getitem__(self, index):
        rec = self.records[index]
        image = rec[1:].reshape(3, 32, 32).transpose(1, 2, 0)
        return np.ascontiguousarray(image), np.array(rec[0], dtype=np.int32)


def cifar10_transforms(train, image_size, hflip=True):
    ops = []
    if train:
        ops.append(V.RandomCrop(32, padding=4))
        if hflip:
            ops.append(V.RandomHorizontalFlip())
    if image_size != 32:
        ops.append(V.Resize((image_size, image_size)))
    ops += [V.Normalize(mean=CIFAR_MEAN, std=CIFAR_STD), V.HWC2CHW()]
    return ops


def create_cifar10_dataset(data_path, split, batch_size, image_size=32, shuffle=None,
                           num_parallel_workers=None, shard_id=None, num_shards=None,
                           num_samples=None, augment=True, hflip=True, drop_remainder=None,
                           num_classes=None):
    """CIFAR-10 binary pipeline -> batches of (float32 NCHW image, int32 label).

    The files are validated here, in the calling thread (sizes, and labels below ``num_classes``,
    default 10), so a bad file is a one-line :class:`DataError` instead of an error inside the
    pipeline's worker threads."""
    train = split == "train"
    shuffle = train if shuffle is None else shuffle
    workers = default_workers(num_shards, num_parallel_workers)
    folder, files = cifar10_files(data_path, split)
    check_cifar10_labels(files, num_classes)
    standard = all(os.path.getsize(f) == CIFAR_RECORD * CIFAR_RECORDS_PER_FILE for f in files)
    if standard:
        dataset = ds.Cifar10Dataset(folder, usage="train" if train else "test", shuffle=shuffle,
                                    num_samples=num_samples, num_parallel_workers=workers,
                                    num_shards=num_shards, shard_id=shard_id)
    else:
        dataset = ds.GeneratorDataset(Cifar10BinarySource(files), ["image", "label"], shuffle=shuffle,
                                      num_samples=num_samples, num_shards=num_shards,
                                      shard_id=shard_id)
    dataset = dataset.map(T.TypeCast(ms.int32), input_columns="label", num_parallel_workers=workers)
    dataset = dataset.map(cifar10_transforms(train and augment, image_size, hflip),
                          input_columns="image", num_parallel_workers=workers)
    return dataset.batch(batch_size, drop_remainder=train if drop_remainder is None else drop_remainder)


# --------------------------------------------------------------------------- ImageFolder
def image_folder_classes(root):
    """Sorted class folder names of an ImageFolder split; one-line errors for a wrong layout."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder not found: {root} (expected <data_path>/train/<class>/*.JPEG "
                                "and <data_path>/val/<class>/*.JPEG)")
    classes = sorted(d for d in _listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not classes:
        raise DataError(f"{root} has no class sub-folders: expected {root}/<class_name>/<image>.JPEG")
    for name in classes:
        folder = os.path.join(root, name)
        if not any(f.endswith(IMAGE_EXTENSIONS) for f in _listdir(folder)):
            raise DataError(f"class folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS[:4])})")
    return classes


def _listdir(folder):
    """``os.listdir`` whose failure (no permission, not a folder) is a one-line DataError."""
    try:
        return os.listdir(folder)
    except OSError as err:
        raise DataError(f"cannot read the image folder {folder}: {err.strerror}: fix its "
                        "permissions or pass another --data_path") from None


def split_folder(data_path, split):
    """``<data_path>/train`` or ``<data_path>/val`` (``data_path`` itself when it is the split)."""
    sub = "train" if split == "train" else "val"
    candidate = os.path.join(data_path, sub)
    return candidate if os.path.isdir(candidate) else data_path


def imagenet_transforms(train, image_size, augment=True, hflip=True, min_crop_scale=0.08):
    if train and augment:
        ops = [V.RandomCropDecodeResize(image_size, scale=(min_crop_scale, 1.0), ratio=(0.75, 1.333))]
        if hflip:
            ops.append(V.RandomHorizontalFlip())
        ops.append(V.RandomColorAdjust(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1))
    else:
        ops = [V.Decode(), V.Resize(int(round(image_size / 0.875))), V.CenterCrop(image_size)]
    return ops + [V.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD), V.HWC2CHW()]


def create_imagefolder_dataset(data_path, split, batch_size, image_size=224, shuffle=None,
                               num_parallel_workers=None, shard_id=None, num_shards=None,
                               num_samples=None, augment=True, hflip=True, drop_remainder=None,
                               class_names=None, min_crop_scale=0.08):
    """ImageNet-style folder pipeline (``train/<class>/*.JPEG``, ``val/<class>/*.JPEG``).

    ``class_names`` fixes the label order (e.g. the one stored with a checkpoint); by default the
    sorted sub-folder names of the split. Images are converted to RGB by the decoder.
    """
    train = split == "train"
    shuffle = train if shuffle is None else shuffle
    workers = default_workers(num_shards, num_parallel_workers)
    root = split_folder(data_path, split)
    found = image_folder_classes(root)
    names = list(class_names) if class_names else found
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise DataError(f"{root} has classes not in the model's class list: {unknown[:5]}: "
                        "evaluate with the class folders the model was trained on")
    dataset = ds.ImageFolderDataset(root, shuffle=shuffle, num_samples=num_samples,
                                    num_parallel_workers=workers, num_shards=num_shards,
                                    shard_id=shard_id, class_indexing={n: i for i, n in enumerate(names)})
    dataset = dataset.map(imagenet_transforms(train, image_size, augment, hflip, min_crop_scale),
                          input_columns="image", num_parallel_workers=workers)
    dataset = dataset.map(T.TypeCast(ms.int32), input_columns="label", num_parallel_workers=workers)
    return dataset.batch(batch_size, drop_remainder=train if drop_remainder is None else drop_remainder)
