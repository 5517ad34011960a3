"""Read and write MNIST idx files (``train-images-idx3-ubyte[.gz]``, ``...-labels-idx1-ubyte[.gz]``).

Format (big-endian): images = magic 2051, count, rows, cols, then count*rows*cols uint8 pixels;
labels = magic 2049, count, then count uint8 labels. ``.gz`` files are read/written transparently.
"""
import gzip
import os
import struct
import zlib

import numpy as np

from src.model_utils.errors import DataError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049


def _open(path, mode):
    return gzip.open(path, mode) if str(path).endswith(".gz") else open(path, mode)


def _first(err):
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _read(path, magic, header_ints, what):
    try:
        with _open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:  # corrupt / truncated gzip stream
        if isinstance(err, OSError) and err.errno is not None:
            raise  # missing file, no permission: the environment's error, reported as such
        raise DataError(f"{path}: cannot read MNIST {what} idx file ({_first(err)}): the file is "
                        "truncated or corrupt, download it again") from None
    header_len = 4 * header_ints
    if len(data) >= 4 and struct.unpack(">i", data[:4])[0] != magic:
        raise DataError(f"{path}: bad idx magic number {struct.unpack('>i', data[:4])[0]}, "
                        f"expected {magic} (MNIST {what} file, big-endian header)")
    if len(data) < header_len:
        raise DataError(f"{path}: truncated idx file ({len(data)} bytes), expected an MNIST {what} "
                        f"file with a {header_len}-byte big-endian header")
    header = struct.unpack(f">{header_ints}i", data[:header_len])
    dims = header[1:]
    expected = int(np.prod(dims)) if dims else 0
    payload = np.frombuffer(data, dtype=np.uint8, offset=header_len)
    if payload.size != expected:
        raise DataError(f"{path}: idx {what} file holds {payload.size} data bytes, expected "
                        f"{expected} for dimensions {tuple(dims)}: the file is truncated or corrupt, "
                        "download it again")
    return payload.reshape(dims).copy()


def read_idx_images(path):
    """Images of an idx3 file as a (N, rows, cols) uint8 array."""
    return _read(path, IMAGES_MAGIC, 4, "images")


def read_idx_labels(path):
    """Labels of an idx1 file as a (N,) uint8 array."""
    return _read(path, LABELS_MAGIC, 2, "labels")


def _write(path, magic, array, ndim, what):
    """Write a uint8 array of ``ndim`` dimensions as an idx file (header: magic, then each size)."""
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != ndim:
        raise ValueError(f"write_idx_{what} expects a {ndim}-d uint8 array, got {array.dtype} "
                         f"{array.shape}")
    with _open(path, "wb") as f:
        f.write(struct.pack(f">{1 + ndim}i", magic, *array.shape))
        f.write(np.ascontiguousarray(array).tobytes())


def write_idx_images(path, images):
    """Write a (N, rows, cols) uint8 array as an idx3 file (gzip-compressed if path ends in .gz)."""
    _write(path, IMAGES_MAGIC, images, 3, "images")


def write_idx_labels(path, labels):
    """Write a (N,) uint8 array as an idx1 file (gzip-compressed if path ends in .gz)."""
    _write(path, LABELS_MAGIC, labels, 1, "labels")


def find_idx_file(folder, name):
    """Path of ``name`` or ``name + '.gz'`` inside ``folder``, or None when neither exists."""
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None
