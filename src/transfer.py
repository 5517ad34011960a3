"""Transfer learning policy: which parameters of a checkpoint to load, and freezing the backbone.

The loading itself (name-and-shape matching) is ``src.checkpoint.load_matching``.
"""
import mindspore.nn as nn

from src.checkpoint import adapt_params, load_matching, read_checkpoint, resolve_checkpoint, stored_meta
from src.model_utils.errors import UserError
from src.models import get_model_spec


def is_head(name, model_name):
    """Whether parameter ``name`` belongs to the model's task head (``ModelSpec.head_prefixes``)."""
    return name.startswith(get_model_spec(model_name).head_prefixes)


def apply_pretrained(network, path, model_name, log=print, class_names=None):
    """Initialise ``network`` from the checkpoint at ``path`` (a file, or a folder: its newest
    checkpoint) where names and shapes match.

    A classifier head whose class count differs stays freshly initialised, and so does one whose
    classes differ by name (``class_names`` of the new data vs the names stored in the
    checkpoint), since its rows would mean other classes. Every skipped parameter is printed with
    the reason. A file that is not a checkpoint, or one that matches nothing, is a one-line
    :class:`UserError`.
    """
    path = resolve_checkpoint(path, "--pre_trained", log=log)
    params = adapt_params(read_checkpoint(path), network, model_name)
    old_names = stored_meta(params).get("class_names")
    if class_names is not None and old_names is not None and list(old_names) != list(class_names):
        params = {k: v for k, v in params.items() if not is_head(k, model_name)}
        source = f"checkpoint's head (trained for classes {_short(old_names)}, not {_short(class_names)})"
        loaded, skipped = load_matching(network, params, source="checkpoint")
        skipped = [(n, f"not loaded from the {source}" if is_head(n, model_name) else why)
                   for n, why in skipped]
    else:
        loaded, skipped = load_matching(network, params)
    if not loaded:
        raise UserError(f"{path} shares no parameter (same name and shape) with {model_name}: "
                        "is it a checkpoint of this model?")
    if log:
        log(f"pre_trained: loaded {len(loaded)} parameters from {path}")
        for name, why in skipped:
            log(f"pre_trained: skipped {name}: {why} (left freshly initialised)")
    return loaded, skipped


def _short(names, limit=6):
    names = list(names)
    return "[" + ", ".join(names[:limit]) + (", ..." if len(names) > limit else "") + "]"


def trainable_params(network, model_name, freeze_backbone=False):
    """The parameters the optimizer updates: all trainable ones, or only the head when frozen."""
    params = network.trainable_params()
    if not freeze_backbone:
        return params
    head = [p for p in params if is_head(p.name, model_name)]
    if not head:
        raise UserError(f"freeze_backbone: {model_name} has no head parameters to train")
    for p in params:
        if not is_head(p.name, model_name):
            p.requires_grad = False
    # frozen BatchNorm layers normalise with their stored statistics and stop updating them
    for name, cell in network.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d) and not is_head(name + ".", model_name):
            cell.use_batch_statistics = False
    return head
