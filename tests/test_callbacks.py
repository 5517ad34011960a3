"""ValidationMonitor: learning-curve records, keep-best checkpoint, early stopping, resume."""
import json
import mindspore as ms
import numpy as np
from mindspore import nn
from mindspore.train import RunContext
from mindspore.train.callback._callback import InternalCallbackParam

import pytest

from src.callbacks import TimeBudget, ValidationMonitor


class Scripted:
    """A validate() that returns the given losses in turn and marks the network with the epoch."""

    def __init__(self, losses):
        self.losses = list(losses)
        self.calls = 0

    def __call__(self, network):
        assert not network.training  # validation runs in inference mode
        network.weight.set_data(ms.Tensor(np.full((1, 2), self.calls, np.float32)))
        self.calls += 1
        return self.losses[self.calls - 1], {"mse": 1.0, "ssim": 0.5}


def run_epochs(monitor, epochs):
    """Drive the callback like Model.train; returns the epoch after which a stop was requested."""
    params = InternalCallbackParam()  # what Model.train hands its callbacks
    params.cur_epoch_num = 0
    ctx = RunContext(params)
    monitor.on_train_begin(ctx)
    for epoch in epochs:
        ctx.original_args().cur_epoch_num = epoch
        monitor.on_train_epoch_end(ctx)
        if ctx.get_stop_requested():
            monitor.on_train_end(ctx)
            return epoch
    monitor.on_train_end(ctx)
    return None


def test_keep_best_and_early_stop(tmp_path):
    net = nn.Dense(2, 1)
    net.set_train(True)
    records, best = str(tmp_path / "curve.jsonl"), str(tmp_path / "best.ckpt")
    drawn = []
    monitor = ValidationMonitor(Scripted([5.0, 3.0, 4.0, 3.5, 1.0]), net, interval=1,
                                total_epochs=10, records_file=records, best_file=best, patience=2,
                                checkpoint_meta={"model_name": "dense"},
                                on_end=lambda: drawn.append(1), log=None)
    assert run_epochs(monitor, range(1, 11)) == 4  # 3.0 at epoch 2, then two worse validations
    assert net.training  # back in training mode
    lines = [json.loads(line) for line in open(records, encoding="utf-8")]
    assert [(r["epoch"], r["val_loss"], r["best"]) for r in lines] == [
        (1, 5.0, True), (2, 3.0, True), (3, 4.0, False), (4, 3.5, False)]
    assert all(r["mse"] == 1.0 and r["minutes"] >= 0 for r in lines)
    saved = ms.load_checkpoint(best)
    assert int(saved["epoch_num"].asnumpy()) == 2 and saved["model_name"] == "dense"
    assert saved["weight"].asnumpy()[0, 0] == 1.0  # the weights as validated at epoch 2
    assert monitor.stopped_early and drawn == [1]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp.ckpt")]


def test_interval_last_epoch_no_patience_and_resume(tmp_path):
    net = nn.Dense(2, 1)
    records = str(tmp_path / "curve.jsonl")
    monitor = ValidationMonitor(Scripted([2.0, 3.0, 3.5]), net, interval=2, total_epochs=5,
                                records_file=records, log=None)
    assert run_epochs(monitor, range(1, 6)) is None  # no patience: never stops
    # every interval-th epoch, and always the last one
    assert [json.loads(line)["epoch"] for line in open(records, encoding="utf-8")] == [2, 4, 5]
    # a run stopped after epoch 4 and resumed continues the curve, the best loss and the minutes
    lines = open(records, encoding="utf-8").readlines()[:2]
    open(records, "w", encoding="utf-8").writelines(lines)
    resumed = ValidationMonitor(Scripted([2.5]), net, interval=2, total_epochs=5,
                                records_file=records, log=None)
    assert resumed.best_loss == 2.0 and resumed.best_epoch == 2
    run_epochs(resumed, [5])
    last = [json.loads(line) for line in open(records, encoding="utf-8")][-1]
    assert last["epoch"] == 5 and not last["best"] and last["minutes"] >= resumed.minutes_before


class FakeClock:
    """Seconds that advance only when told (no timing in tests)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def drive_steps(callback, steps, seconds_per_step, clock, steps_per_epoch=100):
    """Drive ``callback`` like Model.train for ``steps`` steps; returns the steps run."""
    params = InternalCallbackParam()
    params.cur_epoch_num, params.cur_step_num, params.batch_num = 1, 0, steps_per_epoch
    ctx = RunContext(params)
    callback.on_train_begin(ctx)
    for i in range(steps):
        params.cur_step_num = i + 1
        params.cur_epoch_num = i // steps_per_epoch + 1
        callback.on_train_step_begin(ctx)
        clock.now += seconds_per_step
        callback.on_train_step_end(ctx)
        if ctx.get_stop_requested():
            return i + 1
    return steps


def test_time_budget_follows_steps_when_time_suffices():
    clock, assigned = FakeClock(), []
    lr = np.linspace(1.0, 0.1, 10)
    budget = TimeBudget(1.0, lr, assigned.append, log=None, clock=clock)
    assert drive_steps(budget, 10, 3.0, clock) == 10  # 30 s of 60: never stops
    assert np.allclose(assigned, lr)  # the step schedule as configured
    assert not budget.stopped and budget.lr_of(7) == assigned[-1]


def test_time_budget_anneals_by_the_deadline_and_stops():
    clock, assigned, lines = FakeClock(), [], []
    lr = np.linspace(1.0, 0.0, 100)  # 100 steps configured, but only 60 s at 10 s per step
    budget = TimeBudget(1.0, lr, assigned.append, log=lines.append, clock=clock)
    assert drive_steps(budget, 100, 10.0, clock) == 6
    # before step k (0-based) k x 10 s have passed: position k x 10 / 60 x 100
    assert np.allclose(assigned, [lr[int(k * 10 / 60 * 100)] for k in range(6)])
    assert budget.stopped and "time budget: 1.00 of 1 minutes" in lines[0]
    # a clock that leaves validation out (the validation monitor's) is used when given
    minutes = [0.0]
    budget = TimeBudget(2.0, lr, assigned.append, minutes=lambda: minutes[0], log=None, clock=clock)
    assert budget.position(3) == 3
    minutes[0] = 1.0
    assert budget.position(3) == 50
    minutes[0] = 5.0
    assert budget.position(3) == 99
    with pytest.raises(ValueError, match="> 0 minutes"):
        TimeBudget(0, lr, assigned.append)


def test_validation_runs_where_a_budget_stopped_training(tmp_path):
    net = nn.Dense(2, 1)
    records = str(tmp_path / "curve.jsonl")
    monitor = ValidationMonitor(Scripted([2.0, 1.0]), net, interval=5, total_epochs=20,
                                records_file=records, log=None)
    params = InternalCallbackParam()
    ctx = RunContext(params)
    monitor.on_train_begin(ctx)
    for epoch in (1, 2, 3):
        params.cur_epoch_num = epoch
        if epoch == 3:
            ctx.request_stop()  # what TimeBudget does in a step of epoch 3
        monitor.on_train_epoch_end(ctx)
    assert [json.loads(line)["epoch"] for line in open(records, encoding="utf-8")] == [3]


def test_time_budget_sets_the_learning_rate_of_a_compiled_step():
    """The assigned LR reaches the optimizer of a GRAPH-mode training step: LR 0 from the
    second step on leaves the weights where the first step put them."""
    import mindspore.ops as ops
    from mindspore.train import Model
    import mindspore.dataset as ds
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_seed(0)
    net = nn.Dense(3, 1)
    opt = nn.Momentum(net.trainable_params(), learning_rate=0.5, momentum=0.0)
    model = Model(net, nn.MSELoss(), opt)
    rng = np.random.default_rng(0)
    data = ds.NumpySlicesDataset({"x": rng.normal(size=(12, 3)).astype(np.float32),
                                  "y": rng.normal(size=(12, 1)).astype(np.float32)},
                                 shuffle=False).batch(4)
    snapshots = []

    class Snapshot(ms.train.Callback):
        def on_train_step_end(self, run_context):
            snapshots.append(net.weight.asnumpy().copy())

    budget = TimeBudget(60.0, [0.1, 0.0, 0.0],
                        lambda v: ops.assign(opt.learning_rate, ms.Tensor(v, ms.float32)), log=None)
    before = net.weight.asnumpy().copy()
    model.train(1, data, callbacks=[budget, Snapshot()], dataset_sink_mode=False)
    assert len(snapshots) == 3 and not np.allclose(snapshots[0], before)  # LR 0.1 moved it
    assert np.allclose(snapshots[1], snapshots[0]) and np.allclose(snapshots[2], snapshots[0])
    assert abs(float(opt.learning_rate.asnumpy()) - 0.0) < 1e-12
