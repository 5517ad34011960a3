"""Write the evaluation set as network-input ``.bin`` files for offline inference (Ascend 310 /
CPU): what ``preprocess.py`` runs.

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

from src.model_utils.errors import UserError
from src.offline import DATA_DIR, sample_names

# data_path defaults to "" here (not the YAML's training folder): preprocess.py reads the
# evaluation data named on its command line, --data_path (or --eval_data_path)
SCRIPT_DEFAULTS = {"result_path": "./preprocess_Result", "class_names_file": "", "data_path": ""}
SCRIPT_HELPS = {
    "result_path": "preprocess.py: output folder (00_data/, label.npy or 01_target/)",
    "class_names_file": "preprocess.py, ImageFolder: label order from a training checkpoint (.ckpt) or a "
                        "text file with one class name per line; empty = class_names / folder names",
    "data_path": "preprocess.py: the evaluation data (wins over eval_data_path)",
}


def read_class_names(path):
    """Class names in label order from a checkpoint (its stored ``class_names``; a folder: its
    newest checkpoint), a JSON list or a text file with one name per line."""
    if os.path.isdir(path):
        from src.checkpoint import resolve_checkpoint
        path = resolve_checkpoint(path, "--class_names_file")
    if not os.path.isfile(path):
        raise UserError(f"class names file not found: {path}")
    if path.endswith(".ckpt") or path.endswith(".safetensors"):
        from src.checkpoint import read_checkpoint, stored_meta
        names = stored_meta(read_checkpoint(path)).get("class_names")
        if names is None:
            raise UserError(f"{path} stores no class_names (it was not written by train.py)")
        return names
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        return [str(n) for n in json.loads(text)]
    return [line.strip() for line in text.splitlines() if line.strip()]


def preprocess(cfg, result_path, data_path=None, log=print):
    """Write the eval set of ``cfg`` (or of ``data_path``) as batch-1 ``.bin`` files and the
    task's targets. Returns a summary dict."""
    import numpy as np
    from src.data import create_dataset_from_config
    from src.offline import write_bin
    from src.tasks import create_task

    class_names = read_class_names(cfg.class_names_file) if cfg.get("class_names_file") else None
    try:
        dataset = create_dataset_from_config(cfg, "eval", data_path=data_path, batch_size=1,
                                             class_names=class_names)
    except (ValueError, FileNotFoundError) as exc:
        raise UserError(str(exc).splitlines()[0]) from None
    count = dataset.get_dataset_size()
    if count == 0:
        raise UserError("the evaluation data set is empty")
    data_dir = os.path.join(result_path, DATA_DIR)
    os.makedirs(data_dir, exist_ok=True)
    targets = create_task(cfg).target_writer(result_path)
    shape, written = None, 0
    samples = dataset.create_tuple_iterator(num_epochs=1, output_numpy=True)
    for name, (inputs, target) in zip(sample_names(cfg.dataset, count), samples):
        shape = np.shape(inputs)
        write_bin(os.path.join(data_dir, name + ".bin"), inputs)
        targets.add(name, target)
        written += 1
    summary = dict(targets.close(), num_samples=written, input_shape=tuple(shape), data_dir=data_dir)
    if log:
        log(f"wrote {written} {cfg.dataset} samples of shape {tuple(shape)} float32 to {data_dir}")
        log(f"targets: {summary.get('target_dir') or summary.get('label_file')}")
    return summary
