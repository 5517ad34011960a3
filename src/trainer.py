"""The training logic shared by every model: data, network, loss, LR, optimizer, callbacks, resume.

``train(cfg)`` is what ``train.py`` runs. Checkpoints hold the network, the optimizer state
(moments, ``global_step`` and so the LR position), the epoch and a CRC32, so ``--resume``
continues a run exactly where it stopped. A checkpoint of another model or of other shapes is
refused before anything is built from it; with another batch size the LR position is re-mapped to
the new steps per epoch; ``loss_history.jsonl`` drops the records of the epochs trained again.
In data-parallel runs only rank 0 writes checkpoints and logs files. One training at a time
per output folder: rank 0 holds its ``train.lock`` (``src/run_guard.py``).
"""
import os
import time

import numpy as np
import mindspore as ms
import mindspore.dataset as ds
import mindspore.ops as ops
from mindspore.train import CheckpointConfig

from src.callbacks import TimeBudget, TrainMonitor, ValidationMonitor
from src.checkpoint import (CHECKPOINT_INFO, SafeModelCheckpoint, check_resume, checkpoint_meta,
                            read_checkpoint, remove_orphan_tmp, resolve_checkpoint, resume_state,
                            trim_history)
from src.data import create_dataset_from_config
from src.kernels.plan import record_run
from src.lr_scheduler import create_lr
from src.model_utils.config import save_config
from src.model_utils.device import setup_device
from src.model_utils.errors import UserError
from src.models import create_model_from_config
from src.optimizer import create_optimizer
from src.precision import build_train_model, precision_settings
from src.run_guard import RunLock, holds_run_lock
from src.tasks import create_task
from src.train_step import ScheduledSamplingLoss
from src.transfer import apply_pretrained, trainable_params


def set_seed(seed):
    """Same seed on every rank: identical initial weights; the shards make the data differ."""
    ms.set_seed(seed)
    np.random.seed(seed)
    ds.config.set_seed(seed)


def build_training(cfg, network, params, loss_fn, steps_per_epoch, amp_level, loss_scale):
    """The training ``Model`` of ``network``: the per-step learning rates and the optimizer over
    ``params`` from ``cfg``, at the precision ``(amp_level, loss_scale)`` given (see
    ``src/precision.py``; ``train`` takes it from ``precision_settings``, so the device decides).
    The optimizer un-scales the gradients by the same ``loss_scale``.

    With ``cfg.scheduled_sampling_steps`` > 0, or a ConvLSTM ``stack`` (trained on every next
    frame), the network is trained through ``src.train_step.ScheduledSamplingLoss`` (it reads true
    frames with a falling probability).

    Returns ``(model, optimizer, lr, callbacks)`` with ``lr`` the per-step learning rates (numpy)
    and ``callbacks`` those the training step needs (the scheduled-sampling probability).
    """
    lr = create_lr(cfg.lr_scheduler, cfg.lr, steps_per_epoch, cfg.epoch_size,
                   warmup_epochs=cfg.warmup_epochs, warmup_init_lr=cfg.warmup_init_lr,
                   milestones=cfg.milestones, gamma=cfg.lr_gamma, end_lr=cfg.end_lr,
                   power=cfg.poly_power)

    # with a time budget the LR is one value that src.callbacks.TimeBudget sets before each step
    opt_lr = float(lr[0]) if getattr(cfg, "time_budget_minutes", 0) > 0 else ms.Tensor(lr)

    def make_optimizer(scale):
        return create_optimizer(cfg.optimizer, params, opt_lr, weight_decay=cfg.weight_decay,
                                momentum=cfg.momentum, loss_scale=scale,
                                filter_bias_and_bn=cfg.filter_bias_and_bn,
                                rmsprop_decay=cfg.rmsprop_decay, eps=cfg.opt_eps)

    callbacks = []
    sampling_steps = getattr(cfg, "scheduled_sampling_steps", 0)
    if sampling_steps > 0 and not getattr(network, "feed_prediction", False):
        raise UserError("scheduled_sampling_steps needs a network that reads its own "
                        "predictions: set forecaster_input: prediction (or "
                        "scheduled_sampling_steps: 0)")
    if sampling_steps > 0 or getattr(network, "single_stack", False):
        network = ScheduledSamplingLoss(network, loss_fn, sampling_steps)
        if sampling_steps:
            callbacks.append(network.callback())
        loss_fn = None
    model, optimizer = build_train_model(network, loss_fn, make_optimizer, amp_level, loss_scale,
                                         grad_clip_norm=cfg.grad_clip_norm)
    return model, optimizer, lr, callbacks


@holds_run_lock
def train(cfg):
    """Train the configured model. Returns a summary dict (checkpoint dir, last loss, timings)."""
    # 1. device, seed, output folders
    rank, group_size = setup_device(cfg.device_target, cfg.device_id, cfg.mode, cfg.run_distribute)
    set_seed(cfg.seed)
    is_main = rank == 0
    out_dir = os.path.abspath(cfg.output_dir)
    ckpt_dir = os.path.join(out_dir, "checkpoints")
    if is_main:  # one live training per output folder (src/run_guard.py); released on return
        RunLock(out_dir).acquire()
    if cfg.resume:  # a file, or a folder: its newest checkpoint
        cfg = cfg.replace(resume=resolve_checkpoint(cfg.resume, "--resume",
                                                    log=print if is_main else None))
    task = create_task(cfg)

    # 2. a resumed run: the checkpoint's model first (cheap), its shapes once the network exists
    resume_params = read_checkpoint(cfg.resume) if cfg.resume else None
    if cfg.resume:
        check_resume(cfg.resume, resume_params, cfg)
    class_names = task.training_class_names(cfg)

    # 3. network (optionally from a pre-trained checkpoint)
    # its kernels: decided by rank 0 (or read from the resumed run) and recorded in out_dir
    network = create_model_from_config(cfg, run_dir=out_dir, rank=rank, write_record=False)
    initial_epoch = check_resume(cfg.resume, resume_params, cfg, network) if cfg.resume else 0
    if initial_epoch >= cfg.epoch_size:
        raise UserError(f"{cfg.resume} already finished epoch {initial_epoch}; pass "
                        f"--epoch_size larger than {initial_epoch} to train further")
    if cfg.pre_trained:
        apply_pretrained(network, cfg.pre_trained, cfg.model_name, log=print if is_main else None,
                         class_names=class_names)

    # 4. data (this rank's shard) and the parameters to train
    dataset = create_dataset_from_config(cfg, "train", shard_id=rank, num_shards=group_size,
                                         start_epoch=initial_epoch)
    steps_per_epoch = dataset.get_dataset_size()
    if steps_per_epoch == 0:
        raise UserError(f"the training data at {cfg.data_path} has fewer samples per rank than one "
                        f"batch ({cfg.batch_size}): lower --batch_size or add data")
    record_run(network.kernel_record)  # the data is readable: the run folder gets its kernels
    params = trainable_params(network, cfg.model_name, cfg.freeze_backbone)

    # 5. precision (the device decides), learning rate, optimizer, loss
    amp_level, loss_scale = precision_settings(cfg.device_target, cfg.amp_level, cfg.loss_scale)
    if is_main and (amp_level, loss_scale) != (cfg.amp_level, cfg.loss_scale):
        print(f"{cfg.device_target} trains in fp32: amp_level {cfg.amp_level} and loss_scale "
              f"{cfg.loss_scale:g} apply on GPU/Ascend", flush=True)
    model, optimizer, lr, step_callbacks = build_training(cfg, network, params, task.create_loss(),
                                                          steps_per_epoch, amp_level, loss_scale)
    if cfg.resume:
        resume_state(cfg.resume, resume_params, network, optimizer, cfg.model_name,
                     optimizer_name=cfg.optimizer, global_step=initial_epoch * steps_per_epoch,
                     log=print if is_main else None)

    # 6. callbacks: logs, loss history, checkpoints (rank 0 writes files)
    history = os.path.join(out_dir, "loss_history.jsonl") if is_main else None
    budget = None
    if cfg.time_budget_minutes > 0:
        budget = TimeBudget(cfg.time_budget_minutes, lr,
                            lambda value: ops.assign(optimizer.learning_rate,
                                                     ms.Tensor(value, ms.float32)),
                            log=print if is_main else None)
    callbacks = [TrainMonitor(steps_per_epoch, cfg.log_interval, history,
                              lr_per_step=budget.lr_of if budget else lr,
                              progress=None if cfg.progress_bar == "auto" else cfg.progress_bar == "on")]
    callbacks += step_callbacks
    if is_main:
        os.makedirs(ckpt_dir, exist_ok=True)
        orphans = remove_orphan_tmp(ckpt_dir)
        if orphans:
            print(f"removed {len(orphans)} unfinished checkpoint file(s) of an earlier run from {ckpt_dir}")
        remove_orphan_tmp(out_dir)  # an unfinished best.ckpt of a killed run
        curve = os.path.join(out_dir, LEARNING_CURVE)
        if not cfg.resume and os.path.exists(curve):
            os.remove(curve)
        elif cfg.resume:
            trim_history(curve, initial_epoch)  # validations of epochs trained again
        if history and not cfg.resume and os.path.exists(history):
            os.remove(history)
        elif history and cfg.resume:
            dropped = trim_history(history, initial_epoch)
            if dropped:
                print(f"{history}: dropped {dropped} records after epoch {initial_epoch} (trained again)")
        save_config(cfg, out_dir)
        append = list(CHECKPOINT_INFO) + [checkpoint_meta(cfg.model_name, class_names, cfg.optimizer)]
        ckpt_cfg = CheckpointConfig(save_checkpoint_steps=steps_per_epoch * cfg.save_checkpoint_epochs,
                                    keep_checkpoint_max=cfg.keep_checkpoint_max, append_info=append,
                                    crc_check=True)
        callbacks.append(SafeModelCheckpoint(prefix=cfg.model_name, directory=ckpt_dir, config=ckpt_cfg))
        print(f"training {cfg.model_name} on {cfg.dataset} ({steps_per_epoch} steps/epoch x "
              f"{cfg.epoch_size} epochs, batch {cfg.batch_size} x {group_size} rank(s), "
              f"device {cfg.device_target}); outputs in {out_dir}", flush=True)

    validation = validation_monitor(cfg, task, network, out_dir, is_main, class_names)
    if validation:
        callbacks.insert(1, validation)
    if budget:  # minutes of training as the learning curve counts them (validation left out)
        if validation:
            budget.minutes = validation.training_minutes
        callbacks.insert(1, budget)
        if is_main:
            print(f"time budget: at most {cfg.time_budget_minutes:g} minutes of training; the LR "
                  f"schedule runs over whichever ends first, the minutes or the "
                  f"{len(lr)} steps", flush=True)

    # 7. train
    sink = cfg.dataset_sink_mode and cfg.device_target != "CPU"
    start = time.time()
    model.train(cfg.epoch_size, dataset, callbacks=callbacks, dataset_sink_mode=sink,
                initial_epoch=initial_epoch)
    elapsed = time.time() - start
    if is_main:
        print(f"training done in {elapsed:.1f} s; checkpoints in {ckpt_dir}", flush=True)
    return {"output_dir": out_dir, "checkpoint_dir": ckpt_dir, "seconds": elapsed,
            "rank": rank, "group_size": group_size, "network": network,
            "steps_per_epoch": steps_per_epoch,
            "best_checkpoint": validation.best_file if validation and validation.best_epoch else None,
            "stopped_early": bool(validation and validation.stopped_early),
            "stopped_by_time_budget": bool(budget and budget.stopped)}


LEARNING_CURVE = "learning_curve.jsonl"
BEST_CHECKPOINT = "best.ckpt"


def validation_monitor(cfg, task, network, out_dir, is_main, class_names=None):
    """The validation callback (None when ``eval_interval`` is 0): every rank validates on the
    whole validation split (identical weights give identical losses, so every rank takes the same
    early-stop decision); rank 0 writes ``learning_curve.jsonl``, ``best.ckpt`` (the network with
    the lowest validation loss, in the run folder, outside the checkpoints/ rotation) and
    ``learning_curve.png``."""
    if cfg.eval_interval <= 0:
        if cfg.patience > 0:
            raise UserError("patience (early stopping) needs validation: pass --eval_interval N")
        return None
    val_dataset = create_dataset_from_config(cfg, "val")
    records = os.path.join(out_dir, LEARNING_CURVE) if is_main else None
    return ValidationMonitor(
        lambda net: task.validate(net, val_dataset), network, cfg.eval_interval, cfg.epoch_size,
        records_file=records, best_file=os.path.join(out_dir, BEST_CHECKPOINT) if is_main else None,
        patience=cfg.patience,
        checkpoint_meta=checkpoint_meta(cfg.model_name, class_names, cfg.optimizer),
        on_end=(lambda: task.save_learning_curve(records, os.path.join(out_dir, "learning_curve.png")))
        if is_main else None,
        log=print if is_main else None)
