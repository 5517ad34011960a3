"""Optimizers. ``create_optimizer`` is the one factory.

Weight decay is applied to convolution/dense weights only: BatchNorm parameters and biases are
excluded (``filter_bias_and_bn``), as is standard for image classifiers.
"""
import mindspore.nn as nn

OPTIMIZERS = ("momentum", "sgd", "rmsprop", "adam")


def _no_decay(param):
    name = param.name.lower()
    return len(param.shape) <= 1 or name.endswith(".bias") or ".bn." in name or "beta" in name or "gamma" in name


def param_groups(params, weight_decay, filter_bias_and_bn=True):
    params = list(params)
    if not filter_bias_and_bn or weight_decay == 0:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if not _no_decay(p)]
    no_decay = [p for p in params if _no_decay(p)]
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def create_optimizer(name, params, lr, weight_decay=0.0, momentum=0.9, loss_scale=1.0,
                     filter_bias_and_bn=True, rmsprop_decay=0.9, eps=1e-8, nesterov=False):
    """Build an optimizer over ``params`` (trainable Parameters) with a float or per-step ``lr``."""
    groups = param_groups(params, weight_decay, filter_bias_and_bn)
    if name == "momentum":
        return nn.Momentum(groups, learning_rate=lr, momentum=momentum, loss_scale=loss_scale,
                           use_nesterov=nesterov)
    if name == "sgd":
        return nn.SGD(groups, learning_rate=lr, momentum=momentum, loss_scale=loss_scale,
                      nesterov=nesterov)
    if name == "rmsprop":
        return nn.RMSProp(groups, learning_rate=lr, decay=rmsprop_decay, momentum=0.0, epsilon=eps,
                          loss_scale=loss_scale)
    if name == "adam":
        return nn.Adam(groups, learning_rate=lr, eps=eps, loss_scale=loss_scale)
    raise ValueError(f"unknown optimizer '{name}': choose one of {', '.join(OPTIMIZERS)}")
