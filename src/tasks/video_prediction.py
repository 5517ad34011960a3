"""Video prediction (ConvLSTM): per-pixel loss on logits; MSE / MAE / SSIM / PSNR / cross-entropy
of the model beside two baselines (copy-last-frame, blank frames), and PNG strips."""
import os

import numpy as np

from src.metrics import VideoMetricAccumulator
from src.model_utils.errors import UserError
from src.offline import DATA_DIR, TARGET_DIR, read_bin, result_files, write_bin
from src.tasks.base import Task

BASELINES = ("copy_last_frame", "blank_frames")
BLANK_PREDICTION = 0.1  # a model whose every predicted pixel is below this predicts blank frames


def sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-logits))


def format_per_frame(result):
    """The per-frame table: MSE and SSIM of each predicted frame, model beside the baselines."""
    names = [n for n in ("model",) + BASELINES if n in result and "ssim_per_frame" in result[n]]
    if not names:
        return []
    short = {"model": "model", "copy_last_frame": "copy-last", "blank_frames": "blank"}
    header = "frame" + "".join(f"{'MSE ' + short[n]:>16s}" for n in names) + \
        "".join(f"{'SSIM ' + short[n]:>16s}" for n in names)
    lines = ["per predicted frame:", header]
    for j in range(len(result["model"]["mse_per_frame"])):
        lines.append(f"{j + 1:5d}" + "".join(f"{result[n]['mse_per_frame'][j]:16.2f}" for n in names)
                     + "".join(f"{result[n]['ssim_per_frame'][j]:16.4f}" for n in names))
    return lines


class VideoEvaluator:
    """Accumulates the model's metrics and the baselines' over batches of (inputs (N, T_in, C, H,
    W) or None, logits (N, T_out, C, H, W), targets). Copy-last-frame needs the inputs: it is left
    out of the result when any batch came without them. Keeps the first ``num_pictures`` samples."""

    def __init__(self, num_pictures=4):
        self.model = VideoMetricAccumulator()
        self.copy_last = VideoMetricAccumulator()
        self.blank = VideoMetricAccumulator()
        self.with_inputs = True
        self.num_pictures = num_pictures
        self.pictures = []
        self.max_prediction = 0.0

    @property
    def num_samples(self):
        return self.model.num_sequences

    def update(self, inputs, logits, targets):
        pred = sigmoid(logits)
        self.max_prediction = max(self.max_prediction, float(pred.max()))
        self.model.update(pred, targets)
        self.blank.update(np.zeros_like(targets), targets)
        self.with_inputs = self.with_inputs and inputs is not None
        if self.with_inputs:
            self.copy_last.update(np.repeat(inputs[:, -1:], targets.shape[1], axis=1), targets)
            for i in range(min(len(inputs), self.num_pictures - len(self.pictures))):
                self.pictures.append((inputs[i], targets[i], pred[i]))

    def progress(self):
        return f"evaluated {self.num_samples} sequences"

    def result(self):
        result = {"model": self.model.result()}
        if self.with_inputs:
            result["copy_last_frame"] = self.copy_last.result()
        result["blank_frames"] = self.blank.result()
        result["num_samples"] = self.num_samples
        result["max_prediction"] = self.max_prediction
        if self.num_samples and self.max_prediction < BLANK_PREDICTION:
            result["warning"] = (f"the model predicts blank frames (no pixel above "
                                 f"{self.max_prediction:.3f}): it has collapsed to the blank-frame "
                                 "baseline; with loss mse (sigmoid + squared error saturates) train "
                                 "with --loss bce, or lower --lr")
        return result


class TargetFrames:
    """preprocess.py's targets: ``01_target/<name>.bin`` per sample."""

    def __init__(self, result_path):
        self.folder = os.path.join(result_path, TARGET_DIR)
        os.makedirs(self.folder, exist_ok=True)

    def add(self, name, target):
        write_bin(os.path.join(self.folder, name + ".bin"), target)

    def close(self):
        return {"target_dir": self.folder}


class VideoPredictionTask(Task):
    """ConvLSTM's task.

    Args:
        input_frames (int), output_frames (int): frames read and predicted.
        frame_shape (tuple): one frame (C, H, W).
        loss (str): ``bce`` (the paper's per-pixel cross-entropy) or ``mse``, on logits.
        loss_reduction (str): ``sequence_sum`` (the paper's: summed over a sequence's pixels and
            frames, averaged over the batch) or ``mean`` (over every pixel); see ``src/loss.py``.
        ssim_weight (float): weight of the SSIM term added to the loss (``src/loss.py``).
        num_pictures (int): sequences drawn as PNG strips by ``evaluate``.
        log_interval (int): batches between evaluation progress lines (0: none).
    """

    name = "video_prediction"

    losses = ("bce", "mse")

    def __init__(self, input_frames, output_frames, frame_shape, loss="bce",
                 loss_reduction="sequence_sum", num_pictures=4, log_interval=0, ssim_weight=0.0):
        super().__init__((input_frames,) + tuple(frame_shape), loss, log_interval)
        self.loss_reduction = loss_reduction
        self.ssim_weight = ssim_weight
        self.input_frames = input_frames
        self.output_frames = output_frames
        self.frame_shape = tuple(frame_shape)
        self.num_pictures = num_pictures

    @classmethod
    def from_config(cls, cfg, sample_shape):
        return cls(cfg.input_frames, cfg.output_frames, sample_shape[1:], loss=cfg.loss,
                   loss_reduction=cfg.loss_reduction, log_interval=cfg.log_interval,
                   ssim_weight=cfg.ssim_loss_weight)

    def create_loss(self):
        from src.loss import SSIMLoss, create_loss
        if self.ssim_weight and min(self.frame_shape[-2:]) < SSIMLoss.WINDOW:
            raise UserError(f"ssim_loss_weight needs frames of at least {SSIMLoss.WINDOW}x"
                            f"{SSIMLoss.WINDOW} (SSIM's window), got {self.frame_shape[-2]}x"
                            f"{self.frame_shape[-1]}: pass --ssim_loss_weight 0 or a larger --image_size")
        return create_loss(self.loss, reduction=self.loss_reduction, ssim_weight=self.ssim_weight)

    def validate(self, net, dataset):
        """Evaluate on the validation sequences during training: returns (validation loss, the
        learning-curve record). The loss is the training loss's quantity on the validation set:
        cross-entropy per sequence for ``bce``, MSE per frame for ``mse`` (both proportional to
        the training loss whatever its reduction), so keep-best and early stopping follow it."""
        result = self.evaluate(net, dataset, log=None)
        model = result["model"]
        loss = model["cross_entropy"] if self.loss == "bce" else model["mse"]
        keys = ("mse", "mae", "ssim", "ssim_openstl", "psnr", "cross_entropy")
        record = {k: model[k] for k in keys}
        for name in BASELINES:
            if name in result:
                record[name] = {k: result[name][k] for k in keys}
        record["num_samples"] = result["num_samples"]
        if "warning" in result:
            record["warning"] = result["warning"]
        return loss, record

    def save_learning_curve(self, records_file, path):
        """The learning-curve PNG of a ``learning_curve.jsonl`` written by ``validate`` records."""
        from src.visualize import save_learning_curve
        return save_learning_curve(records_file, path, title="ConvLSTM on the validation sequences")

    def training_class_names(self, cfg):
        return None

    def new_evaluator(self):
        return VideoEvaluator(self.num_pictures)

    def random_targets(self, batch_size, rng):
        return rng.random((batch_size, self.output_frames) + self.frame_shape, dtype=np.float32)

    def save_pictures(self, evaluator, result_dir):
        """Frame strips of the first sequences and the per-frame MSE / SSIM plot."""
        from src.visualize import save_frame_metrics, save_sequence_strip
        os.makedirs(result_dir, exist_ok=True)
        pictures = [save_sequence_strip(os.path.join(result_dir, f"sequence_{i}.png"), *p)
                    for i, p in enumerate(evaluator.pictures)]
        curve = save_frame_metrics(os.path.join(result_dir, "frame_metrics.png"), evaluator.result())
        return {"pictures": pictures, "frame_metrics_plot": curve}

    def format_result(self, result):
        lines = [f"{'':18s}{'MSE':>10s}{'MAE':>10s}{'SSIM':>8s}{'PSNR':>8s}{'CE/seq':>11s}"]
        for name in ("model",) + BASELINES:
            if name in result:
                m = result[name]
                lines.append(f"{name:18s}{m['mse']:10.2f}{m['mae']:10.2f}{m['ssim']:8.4f}"
                             f"{m['psnr']:8.2f}{m['cross_entropy']:11.1f}")
        ckpt = f"; ckpt={result['ckpt_file']}" if "ckpt_file" in result else ""
        lines.append(f"({result['num_samples']} sequences; MSE/MAE per frame summed over pixels in "
                     f"[0,1]{ckpt})")
        lines.extend(format_per_frame(result))
        if "warning" in result:
            lines.append(f"warning: {result['warning']}")
        return "\n".join(lines)

    def target_writer(self, result_path):
        return TargetFrames(result_path)

    def postprocess(self, result_dir, label_path, log=print):
        """Metrics of offline-inference logits (``<name>_0.bin``) against preprocess.py's
        ``01_target``; copy-last-frame too when its ``00_data`` sits beside ``01_target``."""
        if label_path and os.path.isdir(os.path.join(label_path, TARGET_DIR)):
            label_path = os.path.join(label_path, TARGET_DIR)
        if not label_path or not os.path.isdir(label_path):
            raise UserError(f"target folder not found: --label_path='{label_path}' (preprocess.py writes "
                            f"{TARGET_DIR}/)")
        input_dir = os.path.join(os.path.dirname(os.path.abspath(label_path)), DATA_DIR)
        out_shape = (1, self.output_frames) + self.frame_shape
        evaluator = VideoEvaluator(num_pictures=0)
        for stem, path in result_files(result_dir).items():
            target_file = os.path.join(label_path, stem + ".bin")
            if not os.path.isfile(target_file):
                raise UserError(f"{path}: no target {target_file}")
            input_file = os.path.join(input_dir, stem + ".bin")
            inputs = read_bin(input_file, self.input_shape(1)) if os.path.isfile(input_file) else None
            evaluator.update(inputs, read_bin(path, out_shape), read_bin(target_file, out_shape))
        result = evaluator.result()
        if log:
            log(self.format_result(result))
        return result
