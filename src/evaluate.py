"""``eval.py``'s work: load a checkpoint strictly, evaluate it with its task, write metrics.json.

What is measured is the task's (``src/tasks``): top-1/top-5 for classification; MSE, MAE, SSIM,
PSNR and cross-entropy beside two baselines, plus PNG strips, for video prediction.
"""
import json
import os

from src.checkpoint import load_network
from src.data import check_validation_split, create_dataset_from_config
from src.model_utils.device import setup_device
from src.model_utils.errors import atomic_write_text
from src.tasks import create_task


def predict_batches(net, dataset):
    """Run ``net`` over a dataset; yields (outputs numpy, target numpy) per batch."""
    for inputs, target in dataset.create_tuple_iterator(num_epochs=1):
        yield net(inputs).asnumpy(), target.asnumpy()


def default_result_dir(output_dir, ckpt_file):
    """``<run>/eval`` for a checkpoint in ``<run>/checkpoints``, else ``<output_dir>/eval``."""
    folder = os.path.dirname(os.path.abspath(ckpt_file))
    if os.path.basename(folder) == "checkpoints":
        return os.path.join(os.path.dirname(folder), "eval")
    return os.path.join(os.path.abspath(output_dir), "eval")


def run_eval(cfg, log=print):
    """Load ``cfg.ckpt_file``, evaluate it on the evaluation data (``cfg.eval_split``: ``val``
    evaluates Moving MNIST's validation sequences instead), write ``metrics.json``.

    The class names stored in the checkpoint (if any) give the label order of folder data sets.
    Returns the task's result dict plus ``ckpt_file`` and ``metrics_file``.
    """
    if cfg.eval_split == "val":  # before the checkpoint is loaded
        check_validation_split(cfg, instead="--eval_split eval")
    setup_device(cfg.device_target, cfg.device_id, cfg.mode)
    task = create_task(cfg)
    net, meta = load_network(cfg, cfg.ckpt_file)
    dataset = create_dataset_from_config(cfg, cfg.eval_split, class_names=meta.get("class_names"))
    result_dir = cfg.result_dir or default_result_dir(cfg.output_dir, meta["ckpt_file"])
    result = task.evaluate(net, dataset, log=log, result_dir=result_dir)
    result["ckpt_file"] = meta["ckpt_file"]
    os.makedirs(result_dir, exist_ok=True)
    atomic_write_text(os.path.join(result_dir, "metrics.json"), json.dumps(result, indent=2))
    result["metrics_file"] = os.path.join(result_dir, "metrics.json")
    return result
