"""What every task family shares: the evaluation loop over a data set.

A task (OpenSTL's "method", timm's task) owns what differs between model families: the loss, how
a batch is evaluated and accumulated, how results are printed, the offline-inference file layout
(preprocess / postprocess) and the pictures. The trainer, ``eval.py``, ``export.py``,
``preprocess.py``, ``postprocess.py`` and the benchmark ask ``src.tasks.create_task(cfg)`` for it
and never test the model name. Tasks take plain constructor arguments; ``from_config`` is the one
place that reads them from a config.

Interface (see ``ClassificationTask`` and ``VideoPredictionTask``):

* ``create_loss()``: the loss cell the trainer wraps with the network;
* ``training_class_names(cfg)``: class names stored in checkpoints (None when the task has none);
* ``new_evaluator()``: an accumulator with ``update(inputs, outputs, targets)`` (numpy),
  ``num_samples``, ``progress()`` and ``result()``; ``evaluate`` and ``postprocess`` both use it,
  so offline-inference numbers equal ``eval.py``'s;
* ``format_result(result)``: the printed summary;
* ``example_batch(batch_size, rng)``: random (inputs, targets) of the right shapes and dtypes;
* ``target_writer(result_path)`` and ``postprocess(result_dir, label_path, log)``: offline files.
"""
import time

import numpy as np

from src.model_utils.errors import UserError


class Task:
    """Base class: the evaluation loop; subclasses define the rest of the interface."""

    name = "task"
    losses = ()

    def __init__(self, sample_shape, loss, log_interval=0):
        if loss not in self.losses:
            raise UserError(f"loss '{loss}' does not fit {self.name}: pass --loss "
                            f"{' or --loss '.join(self.losses)}")
        self.sample_shape = tuple(sample_shape)
        self.loss = loss
        self.log_interval = log_interval

    def input_shape(self, batch_size):
        """The network input of a batch: ``(batch_size,) + sample_shape``."""
        return (batch_size,) + self.sample_shape

    def evaluate(self, net, dataset, log=print, result_dir=None):
        """Run ``net`` over ``dataset`` (batches of (inputs, targets)) and return the metrics dict
        (plus ``seconds``, and ``pictures`` when the task draws some into ``result_dir``)."""
        evaluator = self.new_evaluator()
        start, batches = time.time(), 0
        for inputs, targets in dataset.create_tuple_iterator(num_epochs=1):
            evaluator.update(inputs.asnumpy(), net(inputs).asnumpy(), targets.asnumpy())
            batches += 1
            if log and self.log_interval and batches % self.log_interval == 0:
                log(evaluator.progress())
        if evaluator.num_samples == 0:
            raise UserError("the evaluation data set is empty")
        result = dict(evaluator.result(), seconds=time.time() - start)
        if result_dir:
            result.update(self.save_pictures(evaluator, result_dir))
        return result

    def save_pictures(self, evaluator, result_dir):
        """Pictures of an evaluation (none by default); returns entries for the result dict."""
        return {}

    def example_batch(self, batch_size, rng):
        """Random inputs in [0, 1) of the network's input shape and matching random targets."""
        inputs = rng.random(self.input_shape(batch_size), dtype=np.float32)
        return inputs, self.random_targets(batch_size, rng)
