"""Mixed precision and loss scaling: which settings a device trains with, and the training model
built from them.

``precision_settings`` is the only place where the device matters: GPU and Ascend train with the
config's ``amp_level`` and ``loss_scale``; CPU trains in fp32 (fp16 is slower than fp32 on CPU).
``build_train_model`` is a plain function of ``(amp_level, loss_scale)``, so the GPU/Ascend
training step can be built and run on a CPU (``tests/test_device_branches.py`` does).

What MindSpore does under ``amp_level='O2'`` (checked on CPU, MindSpore 2.10, GRAPH mode): every
cell is cast to fp16 except BatchNorm, which keeps fp32 (wrapped to hand fp16 back to the next
layer); the network output and the labels are cast to fp32 before the loss, so the loss is fp32.
Parameters stay fp32, and so do the checkpoints: they load into an fp32 network for evaluation
and export. ``O3`` casts BatchNorm too. ``O1`` is not offered: MindSpore's O1 rewrites the
network's source and fails on this repository's layers.

The loss scale is fixed (``FixedLossScaleManager(loss_scale, drop_overflow_update=False)``) and the
optimizer gets the same ``loss_scale`` to divide the gradients by. ``drop_overflow_update=False``
(an overflowing step is applied, not skipped) is the only fixed scaling MindSpore accepts on CPU;
using it on every device keeps the step that CPU tests run identical to the GPU/Ascend one.
"""
from mindspore.train import FixedLossScaleManager, Model

from src.model_utils.errors import UserError

AMP_LEVELS = ("O0", "O2", "O3")


def precision_settings(device_target, amp_level, loss_scale, allow_on_cpu=False):
    """``(amp_level, loss_scale)`` to train with on ``device_target``.

    GPU / Ascend: the given values. CPU: ``("O0", 1.0)`` (fp32) unless ``allow_on_cpu``, which
    returns the given values (to run a device's mixed-precision step on a CPU).
    """
    check_precision(amp_level, loss_scale)
    if device_target == "CPU" and not allow_on_cpu:
        return "O0", 1.0
    return amp_level, float(loss_scale)


def check_precision(amp_level, loss_scale):
    """One-line error for an amp level or loss scale the training set-up cannot use."""
    if amp_level not in AMP_LEVELS:
        raise UserError(f"amp_level must be one of {', '.join(AMP_LEVELS)}, got {amp_level!r} "
                        "(O1 fails on these networks in MindSpore; use O2)")
    if not loss_scale >= 1.0:
        raise UserError(f"loss_scale must be >= 1 (1 = no scaling), got {loss_scale}")


def build_train_model(network, loss_fn, make_optimizer, amp_level="O0", loss_scale=1.0,
                      grad_clip_norm=0.0):
    """The training ``Model`` for ``network`` at the given precision.

    Args:
        network, loss_fn: the network (returns predictions) and its loss cell; with ``loss_fn``
            None, ``network`` is the loss network (``(x, y) -> loss``, e.g.
            ``src.train_step.ScheduledSamplingLoss``).
        make_optimizer: ``make_optimizer(loss_scale)`` -> optimizer; it is called with the loss
            scale used here, so the optimizer's gradient un-scaling always matches.
        amp_level: ``O0`` (fp32), ``O2`` (fp16, BatchNorm and loss fp32) or ``O3`` (all fp16).
        loss_scale: fixed loss scale; 1 = none.
        grad_clip_norm: > 0 clips the (unscaled) gradients to this global norm
            (``src/train_step.py``); fp32 (``O0``) only.

    Returns ``(model, optimizer)``. With O2 / O3 MindSpore casts ``network``'s cells in place, so
    the object keeps computing in fp16 afterwards: evaluate or export from a network built anew
    and loaded from the (fp32) checkpoint, as eval.py and export.py do.
    """
    check_precision(amp_level, loss_scale)
    loss_scale = float(loss_scale)
    optimizer = make_optimizer(loss_scale)
    if grad_clip_norm > 0:
        if amp_level != "O0":
            raise UserError(f"grad_clip_norm needs fp32 training: pass --amp_level O0 (or "
                            f"--grad_clip_norm 0 to train with amp_level {amp_level})")
        from src.train_step import clipped_train_network
        return Model(clipped_train_network(network, loss_fn, optimizer, grad_clip_norm,
                                           loss_scale)), optimizer
    manager = FixedLossScaleManager(loss_scale, drop_overflow_update=False) if loss_scale > 1 else None
    model = Model(network, loss_fn=loss_fn, optimizer=optimizer, amp_level=amp_level,
                  loss_scale_manager=manager)  # loss_fn None: network is the loss network
    return model, optimizer
