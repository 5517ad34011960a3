"""One training step with gradient clipping by global norm.

``ClipGradTrainOneStepCell`` is ``nn.TrainOneStepCell`` with one more operation between the
gradients and the optimizer: ``ops.clip_by_global_norm``. It is a plain ``Cell`` that
``mindspore.train.Model`` runs in GRAPH mode like its own training cell, so clipping keeps the
fast compiled path (``@ms.jit`` on a functional step was ~1.5x slower on CPU).

Clipping happens after the data-parallel gradient reduction (every rank clips the same averaged
gradients) and on the unscaled gradients: with a loss scale ``s`` the gradients arrive multiplied
by ``s`` and are clipped at ``s * clip_norm`` (the optimizer divides by ``s`` afterwards).
"""
import mindspore.nn as nn
import mindspore.ops as ops


class ClipGradTrainOneStepCell(nn.TrainOneStepCell):
    """``network(*inputs)`` -> loss; gradients clipped to global L2 norm ``clip_norm``.

    Args:
        network (Cell): the loss network (e.g. ``nn.WithLossCell(net, loss_fn)``).
        optimizer (Optimizer): updates ``optimizer.parameters``.
        clip_norm (float): largest global norm of the (unscaled) gradients, > 0.
        loss_scale (float): fixed loss scale the optimizer was built with (1 = none).
    """

    def __init__(self, network, optimizer, clip_norm, loss_scale=1.0):
        if clip_norm <= 0:
            raise ValueError(f"clip_norm must be > 0, got {clip_norm} (use nn.TrainOneStepCell "
                             "for no clipping)")
        super().__init__(network, optimizer, sens=float(loss_scale))
        self.scaled_clip_norm = float(clip_norm) * float(loss_scale)

    def construct(self, *inputs):
        loss = self.network(*inputs)
        sens = ops.fill(loss.dtype, loss.shape, self.sens)
        grads = self.grad(self.network, self.weights)(*inputs, sens)
        grads = self.grad_reducer(grads)
        grads = ops.clip_by_global_norm(grads, self.scaled_clip_norm)
        return ops.depend(loss, self.optimizer(grads))


def clipped_train_network(network, loss_fn, optimizer, clip_norm, loss_scale=1.0):
    """``Model``-ready training cell: ``network`` + ``loss_fn``, gradients clipped to ``clip_norm``.
    fp32 only (mixed precision would need the cast handling ``Model`` does for its own cell)."""
    return ClipGradTrainOneStepCell(nn.WithLossCell(network, loss_fn), optimizer, clip_norm,
                                    loss_scale)
