"""Write the evaluation set as network-input ``.bin`` files for offline inference (Ascend 310 / CPU).

    python preprocess.py --config_path config/cifar10_config_cpu.yaml --data_path DATA \\
        [--result_path ./preprocess_Result] [--class_names_file CKPT_OR_TXT]

The samples come from the **evaluation pipeline of src/data** (``create_dataset_from_config(cfg,
"eval")`` with batch 1, no augmentation), so the inputs are exactly what ``eval.py`` feeds the
network. Written files (sample ``i`` is named ``<dataset>_<i>`` with zero-padded ``i``)::

    RESULT_PATH/00_data/<name>.bin     network input, float32, batch 1:
                                       (1, C, H, W) classifier; (1, T_in, C, H, W) ConvLSTM
    RESULT_PATH/label.npy              classifier: int32 labels, entry i for sample i
    RESULT_PATH/01_target/<name>.bin   ConvLSTM: target frames, float32 (1, T_out, C, H, W)

``--data_path`` is the evaluation data (CIFAR-10 folder with test_batch.bin, ImageNet-style folder
with val/<class>/, or mnist_test_seq.npy); it takes the place of the config's eval_data_path.
For ImageFolder data the label order is the model's: pass ``--class_names_file`` = the training
checkpoint (class names stored in it) or a text file with one class name per line; otherwise the
config's class_names or the sorted folder names. ``--eval_num_samples N`` limits the count.
"""
import json
import os
import sys

from src.model_utils.config import get_config, parse_cli
from src.model_utils.errors import UserError, exit_on_user_error

DEFAULT_CONFIG = "config/cifar10_config_cpu.yaml"
SCRIPT_DEFAULTS = {"result_path": "./preprocess_Result", "class_names_file": ""}
SCRIPT_HELPS = {
    "result_path": "preprocess.py: output folder (00_data/, label.npy or 01_target/)",
    "class_names_file": "preprocess.py, ImageFolder: label order from a training checkpoint (.ckpt) or a "
                        "text file with one class name per line; empty = class_names / folder names",
    "data_path": "preprocess.py: the evaluation data (replaces eval_data_path)",
}
DATA_DIR = "00_data"
TARGET_DIR = "01_target"
LABEL_FILE = "label.npy"


def read_class_names(path):
    """Class names in label order from a checkpoint (its stored ``class_names``), a JSON list or a
    text file with one name per line."""
    if not os.path.isfile(path):
        raise UserError(f"class names file not found: {path}")
    if path.endswith(".ckpt") or path.endswith(".safetensors"):
        from src.trainer import read_checkpoint
        params = read_checkpoint(path)
        names = params.get("class_names")
        if not isinstance(names, str):
            raise UserError(f"{path} stores no class_names (it was not written by train.py)")
        return json.loads(names)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        return [str(n) for n in json.loads(text)]
    return [line.strip() for line in text.splitlines() if line.strip()]


def sample_names(prefix, count):
    width = max(5, len(str(max(count - 1, 0))))
    return [f"{prefix}_{i:0{width}d}" for i in range(count)]


def index_of(stem):
    """Sample index encoded in a preprocess file stem (``cifar10_00012`` -> 12)."""
    tail = stem.rsplit("_", 1)[-1]
    if not tail.isdigit():
        raise ValueError(f"'{stem}' is not a preprocess.py sample name (<dataset>_<index>)")
    return int(tail)


def preprocess(cfg, result_path, log=print):
    """Write the eval set of ``cfg`` as batch-1 ``.bin`` files. Returns a summary dict."""
    import numpy as np
    from src.data import create_dataset_from_config

    if cfg.get("class_names_file"):
        cfg["class_names"] = read_class_names(cfg.class_names_file)
    eval_cfg = type(cfg)(cfg)
    eval_cfg["eval_batch_size"] = 1
    try:
        dataset = create_dataset_from_config(eval_cfg, "eval")
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    count = dataset.get_dataset_size()
    if count == 0:
        raise UserError("the evaluation data set is empty")
    names = sample_names(cfg.dataset, count)
    data_dir = os.path.join(result_path, DATA_DIR)
    os.makedirs(data_dir, exist_ok=True)
    video = cfg.model_name == "convlstm"
    if video:
        os.makedirs(os.path.join(result_path, TARGET_DIR), exist_ok=True)
    labels, shape, written = [], None, 0
    for name, (inputs, target) in zip(names, dataset.create_tuple_iterator(num_epochs=1, output_numpy=True)):
        inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        shape = inputs.shape
        inputs.tofile(os.path.join(data_dir, name + ".bin"))
        if video:
            np.ascontiguousarray(target, dtype=np.float32).tofile(
                os.path.join(result_path, TARGET_DIR, name + ".bin"))
        else:
            labels.append(int(np.asarray(target).reshape(-1)[0]))
        written += 1
    summary = {"num_samples": written, "input_shape": tuple(shape), "data_dir": data_dir}
    if video:
        summary["target_dir"] = os.path.join(result_path, TARGET_DIR)
    else:
        label_file = os.path.join(result_path, LABEL_FILE)
        np.save(label_file, np.asarray(labels, dtype=np.int32))
        summary["label_file"] = label_file
    if log:
        log(f"wrote {written} {cfg.dataset} samples of shape {tuple(shape)} float32 to {data_dir}")
        log(f"{'targets' if video else 'labels'}: {summary.get('target_dir') or summary['label_file']}")
    return summary


@exit_on_user_error
def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = get_config(argv, default_config=DEFAULT_CONFIG, script_defaults=SCRIPT_DEFAULTS,
                     script_helps=SCRIPT_HELPS)
    given = parse_cli(argv)[0]
    if "data_path" in given and "eval_data_path" not in given:
        cfg["eval_data_path"] = cfg.data_path
    if not (cfg.eval_data_path or cfg.data_path):
        raise UserError("no data given: pass --data_path (the evaluation data)")
    preprocess(cfg, os.path.abspath(cfg.result_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
