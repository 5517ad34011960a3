"""Training callbacks: zoo-style loss/time logs, a progress display, a loss history file,
validation during training (learning curve, keep-best checkpoint, early stopping) and a budget of
training minutes (the LR schedule runs over the minutes when they end before the steps)."""
import json
import os
import sys
import time

import numpy as np
from mindspore.train import Callback

from src.train_step import global_step


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
        lr_per_step (array or callable): per-step learning rates, or ``f(global_step) -> lr``,
            to log the current lr.
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
        if callable(self.lr):
            lr = float(self.lr(global_step))
        else:
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


class ValidationMonitor(Callback):
    """Validation during training: every ``interval`` epochs (and after the last one) runs
    ``validate(network)`` -> ``(loss, record)``, appends ``{"epoch", "minutes", "val_loss",
    "best", **record}`` to ``records_file`` (JSON lines), keeps the network with the lowest
    validation loss in ``best_file`` (written atomically, outside ModelCheckpoint's
    keep_checkpoint_max rotation), stops training after ``patience`` evaluations in a row without
    a lower loss (0 = never), and at the end calls ``on_end()`` (e.g. draws the learning curve).

    A run stopped by another callback (a time budget) is validated at the end of the epoch it
    stopped in. ``minutes`` counts training time only: the validation time is left out, so a curve reads in
    minutes of training. A resumed run appends to an existing ``records_file`` and continues its
    best loss and minutes.

    Args:
        validate (callable): ``validate(network) -> (float loss, dict record)``.
        network (Cell): the network being trained (evaluated as is, and saved as best).
        interval (int): epochs between evaluations, >= 1.
        total_epochs (int): the run's last epoch (always evaluated).
        records_file (str): the learning-curve JSON-lines file, or None (no file, no best file).
        best_file (str): where the best network goes, or None.
        patience (int): evaluations without improvement before stopping (0: no early stop).
        checkpoint_meta (dict): strings stored in ``best_file`` (model name, ...).
        on_end (callable): called without arguments when training ends (if records exist).
        log (callable): progress lines (None: quiet).
    """

    def __init__(self, validate, network, interval, total_epochs, records_file=None,
                 best_file=None, patience=0, checkpoint_meta=None, on_end=None, log=print):
        super().__init__()
        if interval < 1:
            raise ValueError(f"validation interval must be >= 1 epoch, got {interval}")
        self.validate = validate
        self.network = network
        self.interval = interval
        self.total_epochs = total_epochs
        self.records_file = records_file
        self.best_file = best_file
        self.patience = patience
        self.meta = dict(checkpoint_meta or {})
        self.on_end = on_end
        self.log = log
        self.best_loss, self.best_epoch, self.bad_evals = float("inf"), 0, 0
        self.minutes_before, self.eval_seconds, self.start = 0.0, 0.0, None
        self.stopped_early = False
        if records_file and os.path.exists(records_file):  # a resumed run continues the curve
            with open(records_file, encoding="utf-8") as f:
                old = [json.loads(line) for line in f if line.strip()]
            if old:
                best = min(old, key=lambda r: r["val_loss"])
                self.best_loss, self.best_epoch = best["val_loss"], best["epoch"]
                self.minutes_before = old[-1]["minutes"]

    def on_train_begin(self, run_context):
        self.start = time.time()

    def training_minutes(self):
        return self.minutes_before + (time.time() - self.start - self.eval_seconds) / 60.0

    def on_train_epoch_end(self, run_context):
        epoch = run_context.original_args().cur_epoch_num
        # a run that ends early (time budget, a non-finite loss) is validated where it stopped
        if epoch % self.interval and epoch != self.total_epochs and not run_context.get_stop_requested():
            return
        minutes = self.training_minutes()
        began = time.time()
        was_training = self.network.training
        self.network.set_train(False)
        try:
            loss, record = self.validate(self.network)
        finally:
            self.network.set_train(was_training)
        improved = loss < self.best_loss
        if improved:
            self.best_loss, self.best_epoch, self.bad_evals = loss, epoch, 0
            self._save_best(epoch, loss)
        else:
            self.bad_evals += 1
        if self.records_file:
            with open(self.records_file, "a", encoding="utf-8") as f:
                f.write(json.dumps(dict({"epoch": epoch, "minutes": round(minutes, 4),
                                         "val_loss": loss, "best": improved}, **record)) + "\n")
        self.eval_seconds += time.time() - began
        if self.log:
            self.log(f"epoch: {epoch} validation loss {loss:.6g} (best {self.best_loss:.6g} at epoch "
                     f"{self.best_epoch}), MSE {record.get('mse', float('nan')):.2f}, SSIM "
                     f"{record.get('ssim', float('nan')):.4f}; {minutes:.2f} min of training, "
                     f"validation took {time.time() - began:.1f} s")
            if record.get("warning"):
                self.log(f"warning: {record['warning']}")
        if self.patience and self.bad_evals >= self.patience:
            self.stopped_early = True
            if self.log:
                self.log(f"early stop: no lower validation loss in {self.bad_evals} evaluations; "
                         f"best epoch {self.best_epoch}")
            run_context.request_stop()

    def _save_best(self, epoch, loss):
        if not self.best_file:
            return
        from src.checkpoint import save_checkpoint_atomic
        append = dict(self.meta, epoch_num=int(epoch), val_loss=str(loss))
        save_checkpoint_atomic(self.network, self.best_file, append_dict=append)

    def on_train_end(self, run_context):
        if self.on_end and self.records_file and os.path.exists(self.records_file):
            self.on_end()


class TimeBudget(Callback):
    """At most ``budget_minutes`` minutes of training, with the LR schedule over whichever ends
    first, the steps or the minutes.

    Before each step the optimizer's learning rate is set to ``lr_per_step[i]`` with ``i`` the
    larger of the step's index and ``minutes / budget_minutes x len(lr_per_step)``: a machine that
    runs all the steps within the budget trains with the step schedule as configured; a slower one
    is annealed by the deadline (cosine reaches its end), and training stops at the first step
    that ends past the budget. The validation monitor then validates the network where it stopped.

    Args:
        budget_minutes (float): minutes of training, > 0.
        lr_per_step (array): the configured per-step learning rates (``src.lr_scheduler``).
        assign_lr (callable): ``assign_lr(float)`` sets the optimizer's learning rate.
        minutes (callable): ``minutes() -> float`` minutes of training so far (the validation
            monitor's clock, which leaves validation out); None = wall minutes since training began.
        log (callable): the line printed when the budget ends (None: quiet).
    """

    def __init__(self, budget_minutes, lr_per_step, assign_lr, minutes=None, log=print,
                 clock=time.time):
        super().__init__()
        if budget_minutes <= 0:
            raise ValueError(f"time budget must be > 0 minutes, got {budget_minutes}")
        self.budget = float(budget_minutes)
        self.lr = np.asarray(lr_per_step, dtype=np.float64)
        self.assign_lr = assign_lr
        self.clock = clock
        self.minutes = minutes or (lambda: (self.clock() - self.start) / 60.0)
        self.log = log
        self.start = self.clock()
        self.assigned = False
        self.current_lr = float(self.lr[0])
        self.stopped = False

    def position(self, step):
        """Index into ``lr_per_step`` for the 0-based global ``step`` about to run."""
        by_time = int(self.minutes() / self.budget * len(self.lr))
        return min(max(step, by_time), len(self.lr) - 1)

    def lr_of(self, _global_step=None):
        """The learning rate the last step ran with (for the log)."""
        return self.current_lr

    def on_train_begin(self, run_context):
        self.start = self.clock()

    def on_train_step_begin(self, run_context):
        step = global_step(run_context.original_args())
        lr = float(self.lr[self.position(step)])
        if lr != self.current_lr or not self.assigned:
            self.assign_lr(lr)
            self.assigned = True
        self.current_lr = lr

    def on_train_step_end(self, run_context):
        minutes = self.minutes()
        if minutes < self.budget:
            return
        cb = run_context.original_args()
        self.stopped = True
        if self.log:
            self.log(f"time budget: {minutes:.2f} of {self.budget:g} minutes of training used at "
                     f"epoch {cb.cur_epoch_num}, step {global_step(cb) + 1} of {len(self.lr)}; "
                     "stopping")
        run_context.request_stop()
