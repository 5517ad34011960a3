"""Image classification (Tiny-DarkNet): softmax cross-entropy, top-1 / top-k accuracy."""
import os

import numpy as np

from src.metrics import topk_correct
from src.model_utils.errors import UserError, writing
from src.offline import LABEL_FILE, index_of, read_bin, result_files
from src.tasks.base import Task

TOP_K = 5


class ClassificationEvaluator:
    """Counts top-1 / top-k hits over batches of (logits (N, classes), labels (N,))."""

    def __init__(self, num_classes):
        self.k = min(TOP_K, num_classes)
        self.num_samples = self.correct1 = self.correctk = 0

    def update(self, inputs, logits, labels):
        labels = np.asarray(labels).reshape(-1)
        self.num_samples += len(labels)
        self.correct1 += topk_correct(logits, labels, 1)
        self.correctk += topk_correct(logits, labels, self.k)

    def progress(self):
        return f"evaluated {self.num_samples} images, top-1 so far {self.correct1 / self.num_samples:.4f}"

    def result(self):
        n = self.num_samples
        return {"top_1_accuracy": self.correct1 / n, f"top_{self.k}_accuracy": self.correctk / n,
                "num_samples": n, "top_1_correct": self.correct1, f"top_{self.k}_correct": self.correctk}


class TargetLabels:
    """preprocess.py's label file: one int32 label per sample, in sample order."""

    def __init__(self, result_path):
        self.path = os.path.join(result_path, LABEL_FILE)
        self.labels = []

    def add(self, name, target):
        self.labels.append(int(np.asarray(target).reshape(-1)[0]))

    def close(self):
        with writing(self.path, partial=[self.path]):
            np.save(self.path, np.asarray(self.labels, dtype=np.int32))
        return {"label_file": self.path}


class ClassificationTask(Task):
    """Tiny-DarkNet's task.

    Args:
        num_classes (int): classes of the classifier head.
        sample_shape (tuple): one input image (C, H, W).
        loss (str): ``ce`` (softmax cross-entropy on logits), the only classification loss.
        label_smoothing (float): of the cross-entropy loss.
        log_interval (int): batches between evaluation progress lines (0: none).
    """

    name = "classification"

    losses = ("ce",)

    def __init__(self, num_classes, sample_shape, loss="ce", label_smoothing=0.0, log_interval=0):
        super().__init__(sample_shape, loss, log_interval)
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing

    @classmethod
    def from_config(cls, cfg, sample_shape):
        return cls(cfg.num_classes, sample_shape, loss=cfg.loss, label_smoothing=cfg.label_smoothing,
                   log_interval=cfg.log_interval)

    def create_loss(self):
        from src.loss import create_loss
        return create_loss(self.loss, self.label_smoothing)

    def training_class_names(self, cfg):
        """The data's class names (stored in checkpoints); they must number ``num_classes``."""
        from src.data import class_names_of
        names = class_names_of(cfg)
        if len(names) != self.num_classes:
            raise UserError(f"the data has {len(names)} classes but num_classes is {self.num_classes}: "
                            f"pass --num_classes {len(names)}")
        return names

    def new_evaluator(self):
        return ClassificationEvaluator(self.num_classes)

    def random_targets(self, batch_size, rng):
        return rng.integers(0, self.num_classes, batch_size).astype(np.int32)

    def format_result(self, result):
        accs = ", ".join(f"'{k}': {v:.4f}" for k, v in result.items() if k.endswith("accuracy"))
        ckpt = f" ckpt={result['ckpt_file']}" if "ckpt_file" in result else ""
        return f"result: {{{accs}}}{ckpt} ({result['num_samples']} images)"

    def target_writer(self, result_path):
        return TargetLabels(result_path)

    def postprocess(self, result_dir, label_path, log=print):
        """Top-1 / top-k of offline-inference logits (``<name>_0.bin``) against preprocess.py's
        labels, counted as ``evaluate`` counts."""
        files = result_files(result_dir)
        if label_path and os.path.isdir(label_path):
            label_path = os.path.join(label_path, LABEL_FILE)
        if not label_path or not os.path.isfile(label_path):
            raise UserError(f"label file not found: --label_path='{label_path}' (preprocess.py writes "
                            f"{LABEL_FILE})")
        labels = np.load(label_path)
        evaluator = self.new_evaluator()
        for stem, path in files.items():
            try:
                index = index_of(stem)
            except ValueError as exc:
                raise UserError(f"{path}: {exc}") from None
            if index >= len(labels):
                raise UserError(f"{path}: sample {index} has no label in {label_path} ({len(labels)} labels)")
            evaluator.update(None, read_bin(path, (1, self.num_classes)), labels[index:index + 1])
        result = dict(evaluator.result(), num_labels=int(len(labels)))
        if log:
            total, k = result["num_samples"], evaluator.k
            if total < len(labels):
                log(f"warning: {total} result files for {len(labels)} labels; accuracy over {total}")
            log(f"top1_correct={evaluator.correct1}, tot={total}, acc={100.0 * evaluator.correct1 / total:.2f}%")
            log(f"top{k}_correct={evaluator.correctk}, tot={total}, acc={100.0 * evaluator.correctk / total:.2f}%")
            log(self.format_result(result))
        return result
