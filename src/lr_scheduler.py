"""Learning-rate schedules as per-step lists (what MindSpore optimizers take as a dynamic LR).

``create_lr`` is the one factory: ``multistep`` (the zoo's "exponential": x gamma at milestone
epochs), ``cosine`` (annealing to ``end_lr``), ``poly`` (darknet: (1 - t/T)^power), ``constant``;
each with optional linear warm-up from ``warmup_init_lr`` over ``warmup_epochs``.
"""
import math

import numpy as np

SCHEDULES = ("multistep", "exponential", "cosine", "poly", "constant")


def linear_warmup(step, warmup_steps, init_lr, base_lr):
    return init_lr + (base_lr - init_lr) * (step + 1) / warmup_steps


def _decayed(schedule, step, total, steps_per_epoch, base_lr, end_lr, milestones, gamma, power):
    if schedule in ("multistep", "exponential"):
        passed = sum(1 for m in milestones if step >= m * steps_per_epoch)
        return base_lr * gamma ** passed
    if schedule == "cosine":
        return end_lr + 0.5 * (base_lr - end_lr) * (1 + math.cos(math.pi * step / total))
    if schedule == "poly":
        return end_lr + (base_lr - end_lr) * (1 - step / total) ** power
    return base_lr


def create_lr(schedule, base_lr, steps_per_epoch, epochs, warmup_epochs=0, warmup_init_lr=0.0,
              milestones=(), gamma=0.1, end_lr=0.0, power=4.0):
    """Per-step learning rates (float32 array of ``steps_per_epoch * epochs`` values)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown lr_scheduler '{schedule}': choose one of {', '.join(SCHEDULES)}")
    if steps_per_epoch < 1 or epochs < 1:
        raise ValueError(f"need at least one step and one epoch, got {steps_per_epoch} steps x {epochs} epochs")
    total = steps_per_epoch * epochs
    warmup = int(round(warmup_epochs * steps_per_epoch))
    lrs = []
    for step in range(total):
        if step < warmup:
            lrs.append(linear_warmup(step, warmup, warmup_init_lr, base_lr))
        else:
            lrs.append(_decayed(schedule, step - warmup, max(1, total - warmup), steps_per_epoch,
                                base_lr, end_lr, [m - warmup_epochs for m in milestones], gamma, power))
    return np.asarray(lrs, dtype=np.float32)
