"""ValidationMonitor: learning-curve records, keep-best checkpoint, early stopping, resume."""
import json
import mindspore as ms
import numpy as np
from mindspore import nn
from mindspore.train import RunContext
from mindspore.train.callback._callback import InternalCallbackParam

from src.callbacks import ValidationMonitor


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
