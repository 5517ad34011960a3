"""Every checkpoint read, write, match and resume helper, in one module.

What a checkpoint written by ``train.py`` holds: the network parameters, the optimizer state
(moments, ``global_step`` and so the learning-rate position), ``epoch_num`` / ``step_num`` and the
strings of :func:`checkpoint_meta` (model name, class names, format version). Rules:

* reading: :func:`read_checkpoint` (a missing or unreadable file is a one-line ``UserError``);
* eval / export load strictly (:func:`load_network`): every parameter present with its shape;
* transfer learning loads leniently (:func:`load_matching`, used by ``src/transfer.py``) and the
  caller prints what was skipped;
* checkpoints of an older parameter layout are mapped by the model's ``convert_params`` hook
  (``src/models/__init__.py``) before matching, so they keep loading;
* our own copies are written atomically (:func:`save_checkpoint_atomic`: ``name.tmp`` in the same
  folder, then ``os.replace``); :func:`latest_checkpoint` never picks such a temporary file.
"""
import json
import os

import mindspore as ms

from src.model_utils.errors import UserError
from src.models import create_model_from_config, get_model_spec

CHECKPOINT_INFO = ("epoch_num", "step_num")
FORMAT_VERSION = "1"
# MindSpore appends ".ckpt" to a name without it, so a temporary checkpoint is "<name>.tmp.ckpt"
TMP_SUFFIX = ".tmp.ckpt"


def checkpoint_meta(model_name, class_names=None):
    """Strings stored inside every checkpoint, so eval/export/inference know what they load."""
    meta = {"model_name": model_name, "format_version": FORMAT_VERSION}
    if class_names is not None:
        meta["class_names"] = json.dumps(list(class_names))
    return meta


def read_checkpoint(path):
    """Load a checkpoint file; one-line error when it is missing or not a checkpoint."""
    if not path or not os.path.isfile(path):
        raise UserError(f"checkpoint not found: {path!r} (pass the .ckpt file written by train.py)")
    try:
        return ms.load_checkpoint(path)
    except (ValueError, RuntimeError, TypeError) as exc:
        raise UserError(f"{path} is not a MindSpore checkpoint: {str(exc).splitlines()[0][:160]}") from None


def stored_meta(params):
    """The strings of a checkpoint (model_name, class_names decoded to a list, ...)."""
    meta = {k: v for k, v in params.items() if isinstance(v, str)}
    if "class_names" in meta:
        meta["class_names"] = json.loads(meta["class_names"])
    return meta


def checkpoint_epoch(params):
    """The epoch a checkpoint written by train.py ended (0 when it holds no epoch)."""
    return int(params["epoch_num"].asnumpy()) if "epoch_num" in params else 0


def latest_checkpoint(ckpt_dir, prefix=""):
    """The newest ``.ckpt`` in a directory (what eval/export use when given a folder)."""
    files = [os.path.join(ckpt_dir, f) for f in os.listdir(ckpt_dir)
             if f.endswith(".ckpt") and not f.endswith(TMP_SUFFIX) and f.startswith(prefix)
             ] if os.path.isdir(ckpt_dir) else []
    if not files:
        raise UserError(f"no .ckpt file in {ckpt_dir}")
    return max(files, key=os.path.getmtime)


def adapt_params(params, network, model_name):
    """Map a checkpoint of an older parameter layout onto ``network`` (the model's hook)."""
    convert = get_model_spec(model_name).convert_params
    return convert(params, network) if convert else params


def load_matching(network, params, source="checkpoint"):
    """Copy every parameter whose name and shape match; returns (loaded, skipped[(name, why)])."""
    own = {p.name: p for p in network.get_parameters()}
    tensors = {k: v for k, v in params.items() if isinstance(v, ms.Parameter)}
    loaded, skipped, matching = [], [], {}
    for name, param in own.items():
        if name not in tensors:
            skipped.append((name, f"not in the {source}"))
        elif tuple(tensors[name].shape) != tuple(param.shape):
            skipped.append((name, f"shape {tuple(tensors[name].shape)} in the {source}, "
                                  f"{tuple(param.shape)} in the network"))
        else:
            matching[name] = tensors[name]
            loaded.append(name)
    if matching:
        ms.load_param_into_net(network, matching, strict_load=False)
    return loaded, skipped


def load_network(cfg, ckpt_file, export=False):
    """Build the configured network and load ``ckpt_file`` (or a folder's newest) into it, strictly.

    Returns ``(net, meta)``; ``meta`` holds the stored strings (class_names as a list) and
    ``ckpt_file``. A checkpoint of another model, or one whose shapes do not fit the config, is a
    one-line UserError.
    """
    if ckpt_file and os.path.isdir(ckpt_file):
        ckpt_file = latest_checkpoint(ckpt_file)
    params = read_checkpoint(ckpt_file)
    meta = stored_meta(params)
    if meta.get("model_name") and meta["model_name"] != cfg.model_name:
        raise UserError(f"{ckpt_file} holds a {meta['model_name']} model but the config builds "
                        f"{cfg.model_name}: pass the config it was trained with")
    net = create_model_from_config(cfg, export=export)
    _, skipped = load_matching(net, adapt_params(params, net, cfg.model_name))
    if skipped:
        name, why = skipped[0]
        raise UserError(f"{ckpt_file} does not fit the network of {os.path.basename(cfg.config_path)} "
                        f"({name}: {why}): use the config (e.g. num_classes) it was trained with")
    net.set_train(False)
    meta["ckpt_file"] = ckpt_file
    return net, meta


def resume_state(path, params, network, optimizer, model_name):
    """Load network + optimizer state (weights, moments, global_step) from the checkpoint
    ``params`` read from ``path``."""
    params = adapt_params(params, network, model_name)
    tensors = {k: v for k, v in params.items() if isinstance(v, ms.Parameter)}
    missing, _ = ms.load_param_into_net(network, tensors, strict_load=True)
    if missing:
        raise UserError(f"{path} does not match this network (missing {missing[:3]}...): "
                        "resume with the config the checkpoint was trained with")
    # the per-step LR list is rebuilt from the config (its length follows epoch_size); the
    # position in it is the restored global_step
    tensors.pop("learning_rate", None)
    ms.load_param_into_net(optimizer, tensors, strict_load=False)


def save_checkpoint_atomic(save_obj, path, append_dict=None):
    """Write a checkpoint to ``<path>.tmp.ckpt`` in the same folder, then rename it onto ``path``:
    the previous file stays valid until the swap, and a crash leaves no half-written ``path``."""
    tmp = path + TMP_SUFFIX
    try:
        ms.save_checkpoint(save_obj, tmp, append_dict=append_dict)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
