"""Evaluation shared by eval.py and the tests: top-1/top-5 for the classifier; MSE, MAE, SSIM,
PSNR and cross-entropy (plus the copy-last-frame baseline and PNG strips) for ConvLSTM."""
import json
import os
import time

import numpy as np

from src.data import create_dataset_from_config
from src.metrics import VideoMetricAccumulator, topk_accuracy
from src.model_utils.errors import UserError
from src.models import create_model_from_config
from src.transfer import load_matching


def load_network(cfg, ckpt_file, export=False):
    """Build the configured network and load ``ckpt_file`` into it (strict). Returns (net, meta)."""
    from src.trainer import latest_checkpoint, read_checkpoint
    if ckpt_file and os.path.isdir(ckpt_file):
        ckpt_file = latest_checkpoint(ckpt_file)
    params = read_checkpoint(ckpt_file)
    meta = {k: v for k, v in params.items() if isinstance(v, str)}
    if meta.get("model_name") and meta["model_name"] != cfg.model_name:
        raise UserError(f"{ckpt_file} holds a {meta['model_name']} model but the config builds "
                        f"{cfg.model_name}: pass the config it was trained with")
    net = create_model_from_config(cfg, export=export)
    _, skipped = load_matching(net, params)
    if skipped:
        name, why = skipped[0]
        raise UserError(f"{ckpt_file} does not fit the network of {os.path.basename(cfg.config_path)} "
                        f"({name}: {why}): use the config (e.g. num_classes) it was trained with")
    net.set_train(False)
    if "class_names" in meta:
        meta["class_names"] = json.loads(meta["class_names"])
    meta["ckpt_file"] = ckpt_file
    return net, meta


def predict_batches(net, dataset):
    """Run ``net`` over a dataset; yields (outputs numpy, target numpy) per batch."""
    for inputs, target in dataset.create_tuple_iterator(num_epochs=1):
        yield net(inputs).asnumpy(), target.asnumpy()


def evaluate_classifier(cfg, net, dataset, log=print):
    """Top-1 / top-5 accuracy over ``dataset``."""
    total = correct1 = correct5 = 0
    start = time.time()
    for logits, labels in predict_batches(net, dataset):
        total += len(labels)
        correct1 += round(topk_accuracy(logits, labels, 1) * len(labels))
        correct5 += round(topk_accuracy(logits, labels, 5) * len(labels))
        if log and cfg.log_interval and (total // len(labels)) % cfg.log_interval == 0:
            log(f"evaluated {total} images, top-1 so far {correct1 / total:.4f}")
    if total == 0:
        raise UserError("the evaluation data set is empty")
    k5 = min(5, cfg.num_classes)
    return {"top_1_accuracy": correct1 / total, f"top_{k5}_accuracy": correct5 / total,
            "num_samples": total, "seconds": time.time() - start}


def evaluate_video(cfg, net, dataset, result_dir=None, num_pictures=4, log=print):
    """ConvLSTM metrics over ``dataset`` of the model and of two baselines: copy-last-frame (the
    last input frame repeated) and blank frames (all zeros), so a reader sees whether the model
    learned motion rather than only to fade the digits out."""
    from src.visualize import save_sequence_strip
    model_acc, base_acc, blank_acc = (VideoMetricAccumulator(), VideoMetricAccumulator(),
                                      VideoMetricAccumulator())
    start, seen, pictures = time.time(), 0, []
    for inputs, target in dataset.create_tuple_iterator(num_epochs=1):
        logits = net(inputs).asnumpy()
        pred = 1.0 / (1.0 + np.exp(-logits))
        x, y = inputs.asnumpy(), target.asnumpy()
        model_acc.update(pred, y)
        base_acc.update(np.repeat(x[:, -1:], y.shape[1], axis=1), y)
        blank_acc.update(np.zeros_like(y), y)
        for i in range(min(len(x), num_pictures - len(pictures))):
            pictures.append((x[i], y[i], pred[i]))
        seen += len(x)
        if log and cfg.log_interval and (seen // len(x)) % cfg.log_interval == 0:
            log(f"evaluated {seen} sequences")
    if seen == 0:
        raise UserError("the evaluation data set is empty")
    result = {"model": model_acc.result(), "copy_last_frame": base_acc.result(),
              "blank_frames": blank_acc.result(),
              "num_samples": seen, "seconds": time.time() - start}
    if result_dir:
        os.makedirs(result_dir, exist_ok=True)
        result["pictures"] = [save_sequence_strip(os.path.join(result_dir, f"sequence_{i}.png"), *p)
                              for i, p in enumerate(pictures)]
    return result


def default_result_dir(cfg, ckpt_file):
    """``<run>/eval`` for a checkpoint in ``<run>/checkpoints``, else ``<output_dir>/eval``."""
    folder = os.path.dirname(os.path.abspath(ckpt_file))
    if os.path.basename(folder) == "checkpoints":
        return os.path.join(os.path.dirname(folder), "eval")
    return os.path.join(os.path.abspath(cfg.output_dir), "eval")


def run_eval(cfg, log=print):
    """eval.py: load the checkpoint, evaluate, print and write ``metrics.json``."""
    from src.model_utils.device import setup_device
    setup_device(cfg.device_target, cfg.device_id, cfg.mode)
    net, meta = load_network(cfg, cfg.ckpt_file)
    if meta.get("class_names"):
        cfg["class_names"] = meta["class_names"]
    dataset = create_dataset_from_config(cfg, "eval")
    result_dir = cfg.result_dir or default_result_dir(cfg, meta["ckpt_file"])
    if cfg.model_name == "convlstm":
        result = evaluate_video(cfg, net, dataset, result_dir, log=log)
    else:
        result = evaluate_classifier(cfg, net, dataset, log=log)
    result["ckpt_file"] = meta["ckpt_file"]
    os.makedirs(result_dir, exist_ok=True)
    with open(os.path.join(result_dir, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)
    result["metrics_file"] = os.path.join(result_dir, "metrics.json")
    return result


def format_result(cfg, result):
    """Zoo-style summary lines of an eval result."""
    if cfg.model_name != "convlstm":
        accs = ", ".join(f"'{k}': {v:.4f}" for k, v in result.items() if k.endswith("accuracy"))
        return f"result: {{{accs}}} ckpt={result['ckpt_file']} ({result['num_samples']} images)"
    lines = [f"{'':18s}{'MSE':>10s}{'MAE':>10s}{'SSIM':>8s}{'PSNR':>8s}{'CE/seq':>11s}"]
    for name in ("model", "copy_last_frame", "blank_frames"):
        m = result[name]
        lines.append(f"{name:18s}{m['mse']:10.2f}{m['mae']:10.2f}{m['ssim']:8.4f}{m['psnr']:8.2f}"
                     f"{m['cross_entropy']:11.1f}")
    lines.append(f"({result['num_samples']} sequences; MSE/MAE per frame summed over pixels in [0,1]; "
                 f"ckpt={result['ckpt_file']})")
    return "\n".join(lines)
