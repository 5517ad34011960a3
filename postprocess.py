"""Accuracy / video metrics of offline-inference outputs (Ascend 310 or ``python -m src.infer``).

    python postprocess.py --config_path config/cifar10_config_cpu.yaml --result_dir ./result_Files \\
        --label_path ./preprocess_Result/label.npy

Reads every ``<name>_0.bin`` of ``--result_dir`` (output 0 of input ``<name>.bin`` written by
preprocess.py) and matches it with its label / target:

* Tiny-DarkNet: ``--label_path`` is preprocess.py's ``label.npy`` (or the folder holding it); the
  outputs are float32 logits (1, num_classes). Prints top-1 / top-5 (the same counting as eval.py).
* ConvLSTM: ``--label_path`` is preprocess.py's ``01_target`` folder (or the folder holding it);
  the outputs are float32 logits (1, T_out, C, H, W), turned into probabilities with a sigmoid.
  Prints MSE / MAE / SSIM / PSNR / cross-entropy (src.metrics, OpenSTL conventions) as eval.py
  does, with the blank-frames baseline and the copy-last-frame baseline (when preprocess.py's
  ``00_data`` sits beside ``01_target``).

The scripts (scripts/run_infer_310.sh, run_infer_cpu.sh) redirect this output to ``acc.log``.
"""
import glob
import os
import sys

from src.model_utils.config import get_config
from src.model_utils.errors import UserError, exit_on_user_error

DEFAULT_CONFIG = "config/cifar10_config_cpu.yaml"
SCRIPT_DEFAULTS = {"label_path": ""}
SCRIPT_HELPS = {
    "label_path": "postprocess.py: preprocess.py's label.npy (classifier) or 01_target/ (ConvLSTM), "
                  "or the preprocess result folder holding them",
    "result_dir": "postprocess.py: the inference outputs (<name>_0.bin files, e.g. result_Files)",
}
OUTPUT_SUFFIX = "_0.bin"


def result_files(result_dir):
    """{sample stem: output-0 file} of a result folder."""
    if not result_dir or not os.path.isdir(result_dir):
        raise UserError(f"result folder not found: --result_dir='{result_dir}'")
    files = sorted(glob.glob(os.path.join(result_dir, "*" + OUTPUT_SUFFIX)))
    if not files:
        raise UserError(f"no *{OUTPUT_SUFFIX} files in {result_dir}: run the inference first")
    return {os.path.basename(f)[: -len(OUTPUT_SUFFIX)]: f for f in files}


def _read(path, shape):
    import numpy as np
    data = np.fromfile(path, dtype=np.float32)
    if data.size != int(np.prod(shape)):
        raise UserError(f"{path} holds {data.size} float32 values, expected {int(np.prod(shape))} "
                        f"{tuple(shape)}: pass the config the model was exported with")
    return data.reshape(shape)


def postprocess_classifier(cfg, result_dir, label_path, log=print):
    """Top-1 / top-5 over the result files. Returns a dict like ``evaluate_classifier``'s, plus counts."""
    import numpy as np
    from preprocess import LABEL_FILE, index_of
    from src.metrics import topk_accuracy
    files = result_files(result_dir)
    if label_path and os.path.isdir(label_path):
        label_path = os.path.join(label_path, LABEL_FILE)
    if not label_path or not os.path.isfile(label_path):
        raise UserError(f"label file not found: --label_path='{label_path}' (preprocess.py writes "
                        f"{LABEL_FILE})")
    labels = np.load(label_path)
    logits, targets = [], []
    for stem, path in files.items():
        try:
            index = index_of(stem)
        except ValueError as exc:
            raise UserError(f"{path}: {exc}") from None
        if index >= len(labels):
            raise UserError(f"{path}: sample {index} has no label in {label_path} ({len(labels)} labels)")
        logits.append(_read(path, (cfg.num_classes,)))
        targets.append(int(labels[index]))
    logits, targets = np.stack(logits), np.asarray(targets)
    total = len(targets)
    # counted as eval.py's evaluate_classifier counts (src.metrics.topk_accuracy, stable ties)
    correct1 = round(topk_accuracy(logits, targets, 1) * total)
    correct5 = round(topk_accuracy(logits, targets, 5) * total)
    k5 = min(5, cfg.num_classes)
    result = {"top_1_accuracy": correct1 / total, f"top_{k5}_accuracy": correct5 / total,
              "num_samples": total, "top_1_correct": correct1, f"top_{k5}_correct": correct5,
              "num_labels": int(len(labels))}
    if log:
        if total < len(labels):
            log(f"warning: {total} result files for {len(labels)} labels; accuracy over {total}")
        log(f"top1_correct={correct1}, tot={total}, acc={100.0 * correct1 / total:.2f}%")
        log(f"top{k5}_correct={correct5}, tot={total}, acc={100.0 * correct5 / total:.2f}%")
        accs = ", ".join(f"'{k}': {v:.4f}" for k, v in result.items() if k.endswith("accuracy"))
        log(f"result: {{{accs}}} ({total} images)")
    return result


def postprocess_video(cfg, result_dir, label_path, log=print):
    """ConvLSTM metrics over the result files (sigmoid of the logits vs the targets)."""
    import numpy as np
    from preprocess import DATA_DIR, TARGET_DIR
    from src.metrics import VideoMetricAccumulator
    if label_path and os.path.isdir(os.path.join(label_path, TARGET_DIR)):
        label_path = os.path.join(label_path, TARGET_DIR)
    if not label_path or not os.path.isdir(label_path):
        raise UserError(f"target folder not found: --label_path='{label_path}' (preprocess.py writes "
                        f"{TARGET_DIR}/)")
    input_dir = os.path.join(os.path.dirname(os.path.abspath(label_path)), DATA_DIR)
    frame = (cfg.in_channels, cfg.image_size, cfg.image_size)
    out_shape = (1, cfg.output_frames) + frame
    in_shape = (1, cfg.input_frames) + frame
    model_acc, base_acc, blank_acc = (VideoMetricAccumulator(), VideoMetricAccumulator(),
                                      VideoMetricAccumulator())
    baseline = True
    for stem, path in result_files(result_dir).items():
        target_file = os.path.join(label_path, stem + ".bin")
        if not os.path.isfile(target_file):
            raise UserError(f"{path}: no target {target_file}")
        target = _read(target_file, out_shape)
        logits = _read(path, out_shape)
        model_acc.update(1.0 / (1.0 + np.exp(-logits)), target)
        blank_acc.update(np.zeros_like(target), target)
        input_file = os.path.join(input_dir, stem + ".bin")
        baseline = baseline and os.path.isfile(input_file)
        if baseline:
            last = _read(input_file, in_shape)[:, -1:]
            base_acc.update(np.repeat(last, cfg.output_frames, axis=1), target)
    result = {"model": model_acc.result(), "num_samples": model_acc.num_sequences}
    if baseline:
        result["copy_last_frame"] = base_acc.result()
    result["blank_frames"] = blank_acc.result()
    if log:
        log(f"{'':18s}{'MSE':>10s}{'MAE':>10s}{'SSIM':>8s}{'PSNR':>8s}{'CE/seq':>11s}")
        for name in ("model", "copy_last_frame", "blank_frames"):
            if name in result:
                m = result[name]
                log(f"{name:18s}{m['mse']:10.2f}{m['mae']:10.2f}{m['ssim']:8.4f}{m['psnr']:8.2f}"
                    f"{m['cross_entropy']:11.1f}")
        log(f"({result['num_samples']} sequences; MSE/MAE per frame summed over pixels in [0,1])")
    return result


def postprocess(cfg, result_dir, label_path, log=print):
    if cfg.model_name == "convlstm":
        return postprocess_video(cfg, result_dir, label_path, log=log)
    return postprocess_classifier(cfg, result_dir, label_path, log=log)


@exit_on_user_error
def main(argv=None):
    cfg = get_config(argv, default_config=DEFAULT_CONFIG, script_defaults=SCRIPT_DEFAULTS,
                     script_helps=SCRIPT_HELPS)
    if not cfg.result_dir:
        raise UserError("no results given: pass --result_dir DIR (the inference's result_Files)")
    postprocess(cfg, os.path.abspath(cfg.result_dir), cfg.label_path and os.path.abspath(cfg.label_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
