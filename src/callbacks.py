"""Training callbacks: zoo-style loss/time logs, a progress display and a loss history file."""
import json
import os
import sys
import time

import numpy as np
from mindspore.train import Callback


def _loss_value(outputs):
    """The scalar loss out of what a train step returned (loss, or (loss, overflow, scale))."""
    if isinstance(outputs, (tuple, list)):
        outputs = outputs[0]
    return float(np.mean(outputs.asnumpy()))


class TrainMonitor(Callback):
    """Prints ``epoch: 1 step: 390, loss is 1.48`` every ``log_interval`` steps and at the end of
    each epoch ``epoch time: ... ms, per step time: ... ms``; draws a progress bar on a terminal;
    appends every step's loss to ``history_file`` (JSON lines) when given.

    With data sinking (GPU / Ascend, ``dataset_sink_mode``) MindSpore runs a whole epoch per call
    and reports once, at its end: the epoch's time is then divided by the steps it covered, and
    the log and history get one line per epoch.

    Args:
        steps_per_epoch (int): steps in one epoch (for the progress display).
        log_interval (int): steps between log lines (0: only the last step of each epoch).
        history_file (str): where to append ``{"epoch", "step", "loss", "lr"}`` records, or None.
        progress (bool): draw a progress bar (default: when stdout is a terminal).
        lr_per_step (array): per-step learning rates, to log the current lr.
    """

    def __init__(self, steps_per_epoch, log_interval=50, history_file=None, progress=None,
                 lr_per_step=None, stream=None):
        super().__init__()
        self.steps_per_epoch = steps_per_epoch
        self.log_interval = log_interval
        self.history_file = history_file
        self.stream = stream or sys.stdout
        self.progress = self.stream.isatty() if progress is None else progress
        self.lr = lr_per_step
        self.epoch_start = self.step_start = 0.0
        self.step_times, self.losses = [], []
        self.steps_seen = 0  # steps of the current epoch reported so far

    def on_train_epoch_begin(self, run_context):
        self.epoch_start = time.time()
        self.step_times, self.losses = [], []
        self.steps_seen = 0

    def on_train_step_begin(self, run_context):
        self.step_start = time.time()

    def on_train_step_end(self, run_context):
        cb = run_context.original_args()
        step = (cb.cur_step_num - 1) % self.steps_per_epoch + 1
        covered = max(1, step - self.steps_seen)  # > 1 when the device ran a sink of steps
        self.steps_seen = step
        self.step_times.append((time.time() - self.step_start) / covered)
        loss = _loss_value(cb.net_outputs)
        self.losses.append(loss)
        epoch = cb.cur_epoch_num
        if not np.isfinite(loss):
            print(f"epoch: {epoch} step: {step}, loss is {loss} (not finite: lower the lr or the "
                  "loss_scale, or check the data)", file=self.stream, flush=True)
            run_context.request_stop()
        global_step = (epoch - 1) * self.steps_per_epoch + step
        lr = float(self.lr[min(global_step, len(self.lr)) - 1]) if self.lr is not None else None
        if self.history_file:
            with open(self.history_file, "a", encoding="utf-8") as f:
                f.write(json.dumps({"epoch": epoch, "step": step, "global_step": global_step,
                                    "loss": loss, "lr": lr}) + "\n")
        if self.progress:
            done = int(30 * step / self.steps_per_epoch)
            ms_step = 1000 * float(np.mean(self.step_times[-20:]))
            self.stream.write(f"\r[{'#' * done}{'.' * (30 - done)}] epoch {epoch} "
                              f"{step}/{self.steps_per_epoch} loss {loss:.4f} {ms_step:.0f} ms/step")
            self.stream.flush()
        if (self.log_interval and step % self.log_interval == 0) or step == self.steps_per_epoch:
            if self.progress:
                self.stream.write("\n")
            lr_text = f", lr {lr:.6g}" if lr is not None else ""
            print(f"epoch: {epoch} step: {step}, loss is {loss:.6g}{lr_text}", file=self.stream,
                  flush=True)

    def on_train_epoch_end(self, run_context):
        cb = run_context.original_args()
        epoch_ms = 1000 * (time.time() - self.epoch_start)
        steps = max(1, self.steps_seen)
        # the first step of a run includes graph compilation: leave it out of the per-step time
        steady = self.step_times[1:] if len(self.step_times) > 1 else self.step_times
        per_step = 1000 * float(np.mean(steady)) if steady else 0.0
        if self.progress:
            self.stream.write("\n")
        mean_loss = float(np.mean(self.losses)) if self.losses else float("nan")
        print(f"epoch: {cb.cur_epoch_num} epoch time: {epoch_ms:.1f} ms, per step time: "
              f"{per_step:.1f} ms, steps: {steps}, mean loss {mean_loss:.6g}", file=self.stream,
              flush=True)
