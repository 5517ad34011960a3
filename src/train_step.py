"""Training-step cells: gradient clipping by global norm, and scheduled sampling.

``ClipGradTrainOneStepCell`` is ``nn.TrainOneStepCell`` with one more operation between the
gradients and the optimizer: ``ops.clip_by_global_norm``. It is a plain ``Cell`` that
``mindspore.train.Model`` runs in GRAPH mode like its own training cell, so clipping keeps the
fast compiled path (``@ms.jit`` on a functional step was ~1.5x slower on CPU).

Clipping happens after the data-parallel gradient reduction (every rank clips the same averaged
gradients) and on the unscaled gradients: with a loss scale ``s`` the gradients arrive multiplied
by ``s`` and are clipped at ``s * clip_norm`` (the optimizer divides by ``s`` afterwards).
"""
import mindspore as ms
import mindspore.nn as nn
import mindspore.ops as ops
from mindspore import Parameter, Tensor
from mindspore.train import Callback


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
    """``Model``-ready training cell: ``network`` + ``loss_fn`` (or, with ``loss_fn`` None,
    ``network`` is already the loss network), gradients clipped to ``clip_norm``. fp32 only
    (mixed precision would need the cast handling ``Model`` does for its own cell)."""
    loss_network = network if loss_fn is None else nn.WithLossCell(network, loss_fn)
    return ClipGradTrainOneStepCell(loss_network, optimizer, clip_norm, loss_scale)


def global_step(cb_params):
    """0-based training step about to run, counted from the start of the whole training.

    ``Model.train(initial_epoch=k)`` (a resumed run) restarts ``cur_step_num`` at 0 but numbers
    the epochs from ``k + 1``, so the step is taken from the epoch number and the position in the
    epoch (both 1-based in ``cb_params``).
    """
    steps_per_epoch = max(int(cb_params.batch_num), 1)
    in_epoch = (int(cb_params.cur_step_num) - 1) % steps_per_epoch
    return (int(cb_params.cur_epoch_num) - 1) * steps_per_epoch + in_epoch


class ScheduledSamplingLoss(nn.Cell):
    """``loss_fn(network(x, y, p), network.training_targets(x, y))``: the network reads the true
    frame ``y[:, t]`` instead of its own prediction with probability ``p`` per sequence and step
    (scheduled sampling, Bengio et al. 2015). ``p`` falls linearly from 1 to 0 over ``steps``
    training steps (``steps`` 0: always 0, the network reads its own predictions); the
    :meth:`callback` sets it before each step (from the global step, :func:`global_step`, so a
    resumed run continues the schedule). The targets are the network's: ``y``, or every next
    frame for a ConvLSTM ``stack``, which is trained on the input phase's predictions too.
    """

    def __init__(self, network, loss_fn, steps):
        super().__init__(auto_prefix=False)
        if steps < 0:
            raise ValueError(f"scheduled sampling needs steps >= 0, got {steps}")
        self.network = network
        self.loss_fn = loss_fn
        self.steps = int(steps)
        self.truth_prob = Parameter(Tensor(self.prob_at(0), ms.float32),
                                    name="scheduled_sampling_truth_prob", requires_grad=False)

    def construct(self, x, y):
        # steps 0: the probability is always 0, so no random draw and blend per forecast step
        logits = self.network(x, y, self.truth_prob if self.steps else None)
        return self.loss_fn(logits, self.network.training_targets(x, y))

    def prob_at(self, step):
        """Probability of reading the true frame at (0-based) global training step ``step``."""
        if not self.steps:
            return 0.0
        return max(0.0, 1.0 - float(step) / self.steps)

    def callback(self):
        """A ``Callback`` that sets the probability before every training step."""
        loss_cell = self

        class _SetTruthProb(Callback):
            def on_train_step_begin(self, run_context):
                loss_cell.truth_prob.set_data(Tensor(loss_cell.prob_at(global_step(
                    run_context.original_args())), ms.float32))

        return _SetTruthProb()
