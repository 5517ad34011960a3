"""File layout of offline inference (Ascend 310 / ``python -m src.infer``), shared by
``preprocess.py``, ``postprocess.py`` and the tasks::

    RESULT_PATH/00_data/<dataset>_<i>.bin   network input of sample i, float32, batch 1
    RESULT_PATH/label.npy                   classification: int32 labels, entry i for sample i
    RESULT_PATH/01_target/<dataset>_<i>.bin video prediction: target frames, float32
    RESULT_DIR/<dataset>_<i>_0.bin          output 0 of the inference of sample i
"""
import glob
import os

import numpy as np

from src.model_utils.errors import UserError, writing

DATA_DIR = "00_data"
TARGET_DIR = "01_target"
LABEL_FILE = "label.npy"
OUTPUT_SUFFIX = "_0.bin"


def sample_names(prefix, count):
    """``<prefix>_<i>`` with ``i`` zero-padded to at least 5 digits, for ``count`` samples."""
    width = max(5, len(str(max(count - 1, 0))))
    return [f"{prefix}_{i:0{width}d}" for i in range(count)]


def index_of(stem):
    """Sample index encoded in a preprocess file stem (``cifar10_00012`` -> 12)."""
    tail = stem.rsplit("_", 1)[-1]
    if not tail.isdigit():
        raise ValueError(f"'{stem}' is not a preprocess.py sample name (<dataset>_<index>)")
    return int(tail)


def write_bin(path, array):
    """Write ``array`` as raw float32 (C order); a failed write is one line and leaves no partial file."""
    with writing(path, partial=[path]):
        np.ascontiguousarray(array, dtype=np.float32).tofile(path)


def read_bin(path, shape):
    """Read a raw float32 file of ``shape``; one-line error when its size does not fit."""
    data = np.fromfile(path, dtype=np.float32)
    if data.size != int(np.prod(shape)):
        raise UserError(f"{path} holds {data.size} float32 values, expected {int(np.prod(shape))} "
                        f"{tuple(shape)}: pass the config the model was exported with")
    return data.reshape(shape)


def result_files(result_dir):
    """{sample stem: output-0 file} of a result folder."""
    if not result_dir or not os.path.isdir(result_dir):
        raise UserError(f"result folder not found: --result_dir='{result_dir}'")
    files = sorted(glob.glob(os.path.join(result_dir, "*" + OUTPUT_SUFFIX)))
    if not files:
        raise UserError(f"no *{OUTPUT_SUFFIX} files in {result_dir}: run the inference first")
    return {os.path.basename(f)[: -len(OUTPUT_SUFFIX)]: f for f in files}
