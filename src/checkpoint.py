"""Every checkpoint read, write, match and resume helper, in one module.

What a checkpoint written by ``train.py`` holds: the network parameters, the optimizer state
(moments, ``global_step`` and so the learning-rate position), ``epoch_num`` / ``step_num`` and the
strings of :func:`checkpoint_meta` (model name, class names, format version). Rules:

* naming: every checkpoint argument takes a file or a folder (its newest ``.ckpt``, also searched
  in its ``checkpoints/``): :func:`resolve_checkpoint`;
* reading: :func:`read_checkpoint` (a missing or unreadable file is a one-line ``UserError``);
* eval / export load strictly (:func:`load_network`): every parameter present with its shape;
* transfer learning loads leniently (:func:`load_matching`, used by ``src/transfer.py``) and the
  caller prints what was skipped;
* checkpoints of an older parameter layout are mapped by the model's ``convert_params`` hook
  (``src/models/__init__.py``) before matching, so they keep loading;
* our own copies are written atomically (:func:`save_checkpoint_atomic`: ``name.tmp`` in the same
  folder, then ``os.replace``); :func:`latest_checkpoint` never picks such a temporary file, and
  :func:`remove_orphan_tmp` deletes the ones a killed run left;
* integrity: every checkpoint is saved with MindSpore's CRC32 (``crc_check=True``) and
  :func:`read_checkpoint` checks it (:func:`crc_status`); a checkpoint without a CRC (written by an
  older version) still loads, unchecked;
* resuming (:func:`check_resume`, :func:`resume_state`): the model, then the shapes, then the
  epoch are checked; another optimizer's state is reported in one line; the learning-rate
  position is re-mapped to this run's steps per epoch.
"""
import binascii
import contextlib
import glob
import hashlib
import json
import logging
import os

import mindspore as ms
from mindspore.train import ModelCheckpoint

from src.manifest import load_manifest
from src.model_utils.errors import UserError, atomic_write_text, make_parent_folder, os_error_message, writing
from src.models import create_model_from_config, get_model_spec

CHECKPOINT_INFO = ("epoch_num", "step_num")
FORMAT_VERSION = "1"
# MindSpore appends ".ckpt" to a name without it, so a temporary checkpoint is "<name>.tmp.ckpt"
TMP_SUFFIX = ".tmp.ckpt"
# MindSpore itself writes "<name>.tmp" and renames it to "<name>.ckpt" when complete
TMP_PATTERNS = ("*.tmp", "*" + TMP_SUFFIX)
# MindSpore's ".ckpt" integrity record: b"crc_num" + the CRC32 of the rest, 10 bytes big-endian
CRC_MARK = b"crc_num"
CRC_TAIL = len(CRC_MARK) + 10


def checkpoint_meta(model_name, class_names=None, optimizer=None):
    """Strings stored inside every checkpoint, so eval/export/inference (and a resumed run: the
    optimizer whose state it holds) know what they load."""
    meta = {"model_name": model_name, "format_version": FORMAT_VERSION}
    if class_names is not None:
        meta["class_names"] = json.dumps(list(class_names))
    if optimizer is not None:
        meta["optimizer"] = optimizer
    return meta


def crc_status(path):
    """``"ok"``, ``"bad"`` (the content does not match its CRC32: a flipped bit, a bad copy) or
    ``"none"`` (saved without ``crc_check``; nothing to check)."""
    with open(path, "rb") as f:
        content = f.read()
    if len(content) < CRC_TAIL or content[-CRC_TAIL:-10] != CRC_MARK:
        return "none"
    stored = int.from_bytes(content[-10:], byteorder="big")
    return "ok" if binascii.crc32(content[:-CRC_TAIL]) == stored else "bad"


class _DropRecords(logging.Filter):
    def __init__(self, prefixes):
        super().__init__()
        self.prefixes = tuple(prefixes)

    def filter(self, record):
        return not str(record.msg).startswith(self.prefixes)


@contextlib.contextmanager
def quiet_mindspore_log(*prefixes):
    """Drop MindSpore's own log lines starting with ``prefixes`` while the block runs: the failure
    they announce is reported as our one line instead."""
    try:
        from mindspore import log as ms_log
        logger = ms_log._get_logger()  # pylint: disable=protected-access
    except Exception:  # pylint: disable=broad-except  (no such logger: nothing to filter)
        logger = None
    flt = _DropRecords(prefixes)
    if logger is not None:
        logger.addFilter(flt)
    try:
        yield
    finally:
        if logger is not None:
            logger.removeFilter(flt)


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest_file(path):
    return os.path.splitext(path)[0] + ".json"


def manifest_beside(path):
    """The manifest beside a checkpoint (``<stem>.json`` naming it, with its ``sha256``: the
    shipped checkpoints of ``pretrained/``) as a dict, or None when there is none of ours."""
    manifest = load_manifest(_manifest_file(path))
    return manifest if manifest and manifest["ckpt_file"] == os.path.basename(path) else None


def verify_manifest(path):
    """A checkpoint with a manifest beside it (:func:`manifest_beside`) must match its checksum:
    one-line error otherwise."""
    manifest = manifest_beside(path)
    if manifest is not None and file_sha256(path) != manifest["sha256"]:
        raise UserError(f"{path} does not match the SHA-256 in {_manifest_file(path)} (a damaged, partial or "
                        "replaced file): restore it (git checkout -- pretrained/) or fetch it again")


def read_checkpoint(path):
    """Load a checkpoint file, its CRC32 checked when it has one and its SHA-256 when a manifest
    sits beside it (:func:`verify_manifest`); one-line error when it is missing, corrupt or not a
    checkpoint."""
    if not path or not os.path.isfile(path):
        raise UserError(f"checkpoint not found: {path!r} (pass the .ckpt file written by train.py)")
    verify_manifest(path)
    try:
        status = crc_status(path)
    except OSError as exc:
        raise UserError(os_error_message(exc, path) or f"{path}: cannot be read") from None
    if status == "bad":
        raise UserError(f"{path} is corrupt: its content does not match the CRC32 saved with it (a "
                        "flipped bit or an incomplete copy): copy it again or use another checkpoint")
    try:
        with quiet_mindspore_log("Failed to read the checkpoint file", "For 'load_checkpoint'"):
            return ms.load_checkpoint(path, crc_check=status == "ok")
    except (ValueError, RuntimeError, TypeError) as exc:
        raise UserError(f"{path} is not a MindSpore checkpoint: {str(exc).splitlines()[0][:160]}") from None


def stored_meta(params):
    """The strings of a checkpoint (model_name, class_names decoded to a list, ...)."""
    meta = {k: v for k, v in params.items() if isinstance(v, str)}
    if "class_names" in meta:
        meta["class_names"] = json.loads(meta["class_names"])
    return meta


def average_weights(checkpoints, names):
    """The mean of the parameters ``names`` over ``checkpoints``, ``(path, params)`` pairs as
    :func:`read_checkpoint` gives them (checkpoint averaging: several checkpoints of one run, taken
    where the learning rate was low, averaged into one network; accumulated in float64). Returns
    ``{name: float32 array}``. A file without one of the parameters, or with another shape than the
    first file's, is a one-line UserError."""
    import numpy as np
    if not checkpoints:
        raise UserError("no checkpoints to average: name at least one .ckpt file")
    first = checkpoints[0][0]
    total, shapes = {}, {}
    for path, params in checkpoints:
        for name in names:
            if name not in params:
                raise UserError(f"{path} lacks the parameter {name}: average checkpoints of one "
                                "network (one run's, or runs of the same config)")
            value = params[name].asnumpy()
            if shapes.setdefault(name, value.shape) != value.shape:
                raise UserError(f"{path}: {name} has shape {value.shape}, {first} has {shapes[name]}: "
                                "average checkpoints of one network")
            total[name] = total.get(name, 0.0) + value.astype(np.float64)
    return {name: (total[name] / len(checkpoints)).astype(np.float32) for name in names}


def checkpoint_epoch(params):
    """The epoch a checkpoint written by train.py ended (0 when it holds no epoch)."""
    return int(params["epoch_num"].asnumpy()) if "epoch_num" in params else 0


def _checkpoints_in(folder, prefix=""):
    """The finished ``.ckpt`` files directly in ``folder`` (temporary files left out)."""
    if not os.path.isdir(folder):
        return []
    return [os.path.join(folder, f) for f in os.listdir(folder)
            if f.endswith(".ckpt") and not f.endswith(TMP_SUFFIX) and f.startswith(prefix)
            and os.path.isfile(os.path.join(folder, f))]


def latest_checkpoint(ckpt_dir, prefix=""):
    """The newest ``.ckpt`` of a folder and of its ``checkpoints/`` subfolder (so a train.py
    output folder works as well as its checkpoints/ folder): what a checkpoint argument given a
    folder loads."""
    files = _checkpoints_in(ckpt_dir, prefix) + _checkpoints_in(os.path.join(ckpt_dir, "checkpoints"),
                                                                prefix)
    if not files:
        raise UserError(f"no .ckpt file in {ckpt_dir} (nor in its checkpoints/): pass a checkpoint "
                        "file or the folder train.py wrote it to")
    return max(files, key=os.path.getmtime)


def resolve_checkpoint(path, option="--ckpt_file", log=None):
    """The checkpoint file a checkpoint argument names: ``path`` itself when it is a file, the
    newest ``.ckpt`` in it (:func:`latest_checkpoint`) when it is a folder. Every argument that
    takes a checkpoint (``--resume``, ``--pre_trained``, ``--ckpt_file``, ``--class_names_file``,
    the darknet converter) goes through here, so a file and a folder work alike. ``""`` stays
    ``""`` (no checkpoint given); a missing path is a one-line UserError naming ``option``.
    ``log`` (e.g. ``print``) is told which file a folder resolved to."""
    if not path or os.path.isfile(path):
        return path
    if not os.path.exists(path):
        raise UserError(f"{option}: checkpoint not found: {path} (pass a .ckpt file, or a folder "
                        "to use its newest checkpoint)")
    found = latest_checkpoint(path)
    if log:
        log(f"{option} {path}: its newest checkpoint is {found}")
    return found


def adapt_params(params, network, model_name):
    """Map a checkpoint of an older parameter layout onto ``network`` (the model's hook)."""
    convert = get_model_spec(model_name).convert_params
    return convert(params, network) if convert else params


def load_matching(network, params, source="checkpoint"):
    """Copy every parameter whose name and shape match; returns (loaded, skipped[(name, why)])."""
    loaded, skipped = load_matching_check(network, params, source)
    if loaded:
        ms.load_param_into_net(network, {name: params[name] for name in loaded}, strict_load=False)
    return loaded, skipped


def load_network(cfg, ckpt_file, export=False):
    """Build the configured network and load ``ckpt_file`` (or a folder's newest) into it, strictly.

    Returns ``(net, meta)``; ``meta`` holds the stored strings (class_names as a list) and
    ``ckpt_file``. A checkpoint of another model, or one whose shapes do not fit the config, is a
    one-line UserError.
    """
    ckpt_file = resolve_checkpoint(ckpt_file, "--ckpt_file")
    params = read_checkpoint(ckpt_file)
    meta = stored_meta(params)
    if meta.get("model_name") and meta["model_name"] != cfg.model_name:
        raise UserError(f"{ckpt_file} holds a {meta['model_name']} model but the config builds "
                        f"{cfg.model_name}: pass the config it was trained with")
    net = create_model_from_config(cfg, export=export)
    _, skipped = load_matching(net, adapt_params(params, net, cfg.model_name))
    if skipped:
        raise _does_not_fit(ckpt_file, cfg, skipped[0], "use")
    net.set_train(False)
    meta["ckpt_file"] = ckpt_file
    return net, meta


def check_resume(path, params, cfg, network=None):
    """Refuse a checkpoint that cannot continue this run, most telling reason first: another
    model, then (with ``network``) parameters missing or of other shapes (e.g. other
    hidden_channels). Returns the epoch the checkpoint ended."""
    meta = stored_meta(params)
    if meta.get("model_name") and meta["model_name"] != cfg.model_name:
        raise UserError(f"{path} holds a {meta['model_name']} model but the config builds "
                        f"{cfg.model_name}: resume with the config it was trained with")
    if network is not None:
        _, skipped = load_matching_check(network, adapt_params(params, network, cfg.model_name))
        if skipped:
            raise _does_not_fit(path, cfg, skipped[0], "resume with")
    return checkpoint_epoch(params)


def _does_not_fit(path, cfg, skipped, verb):
    """The one-line error for a checkpoint whose parameters do not fit the configured network:
    the first misfit, and the config to ``verb`` (its manifest's when one is beside it, else the
    config keys that decide the shapes)."""
    name, why = skipped
    manifest = manifest_beside(path) or {}
    if manifest.get("config"):
        hint = f"{verb} the config it was trained with, {manifest['config']} (its manifest says so)"
    else:
        keys = get_model_spec(cfg.model_name).shape_keys
        which = "keys that decide its shapes: " + ", ".join(keys) if keys else "the same model keys"
        hint = f"{verb} the config it was trained with ({which})"
    return UserError(f"{path} does not fit the network of {os.path.basename(cfg.config_path)} "
                     f"({name}: {why}): {hint}")


def load_matching_check(network, params, source="checkpoint"):
    """What :func:`load_matching` would load and skip, without loading anything."""
    tensors = {k: v for k, v in params.items() if isinstance(v, ms.Parameter)}
    loaded, skipped = [], []
    for param in network.get_parameters():
        if param.name not in tensors:
            skipped.append((param.name, f"not in the {source}"))
        elif tuple(tensors[param.name].shape) != tuple(param.shape):
            skipped.append((param.name, f"shape {tuple(tensors[param.name].shape)} in the {source}, "
                                        f"{tuple(param.shape)} in the network"))
        else:
            loaded.append(param.name)
    return loaded, skipped


def resume_state(path, params, network, optimizer, model_name, optimizer_name=None,
                 global_step=None, log=print):
    """Load network + optimizer state (weights, moments, global_step) from the checkpoint
    ``params`` read from ``path``.

    ``global_step``: the step this run continues at (epoch x this run's steps per epoch). The
    stored one differs when the batch size or the number of ranks changed: the learning-rate
    schedule is then re-mapped to this run's steps (one line says so). An optimizer state the
    checkpoint lacks (trained with another optimizer) is reported in one line and starts fresh.
    """
    params = adapt_params(params, network, model_name)
    tensors = {k: v for k, v in params.items() if isinstance(v, ms.Parameter)}
    own = {p.name for p in network.get_parameters()}
    ms.load_param_into_net(network, {k: v for k, v in tensors.items() if k in own}, strict_load=False)
    # the per-step LR list is rebuilt from the config (its length follows epoch_size); the
    # position in it is global_step
    tensors.pop("learning_rate", None)
    state = [p.name for p in optimizer.get_parameters()
             if p.name not in own and p.name not in ("learning_rate", "global_step")]
    missing = [name for name in state if name not in tensors]
    stored = stored_meta(params).get("optimizer")
    if missing and log:
        trained = f"trained with {stored}" if stored else "saved with another optimizer or none"
        log(f"warning: {path} holds no {optimizer_name or 'optimizer'} state ({trained}): the "
            f"weights are restored, the optimizer's {len(missing)} state tensors start from zero")
    ms.load_param_into_net(optimizer, {k: v for k, v in tensors.items() if k != "global_step" or
                                       global_step is None}, strict_load=False)
    if global_step is None:
        return
    old = int(tensors["global_step"].asnumpy().reshape(-1)[0]) if "global_step" in tensors else None
    optimizer.global_step.set_data(ms.Tensor([global_step], optimizer.global_step.dtype))
    if old is not None and old != global_step and log:
        log(f"note: {path} was saved at step {old}; this run has another number of steps per epoch "
            f"(batch size or ranks changed): the learning-rate schedule continues at step "
            f"{global_step}, the start of the next epoch")


def remove_orphan_tmp(ckpt_dir):
    """Delete the temporary checkpoint files a killed or failed save left in ``ckpt_dir``;
    returns their paths."""
    removed = []
    for pattern in TMP_PATTERNS:
        for path in glob.glob(os.path.join(ckpt_dir, pattern)):
            with contextlib.suppress(OSError):
                os.remove(path)
                removed.append(path)
    return removed


class SafeModelCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` (CRC32 on, through the config) whose failed save (full disk, read-only
    folder) is one line naming the folder and leaves no temporary file behind."""

    def _save_ckpt(self, cb_params, force_to_save=False):
        try:
            with quiet_mindspore_log("Failed to save the checkpoint file"):
                super()._save_ckpt(cb_params, force_to_save)
        except OSError as exc:
            remove_orphan_tmp(self._directory)
            msg = os_error_message(exc, self._directory) if exc.errno is not None else None
            raise UserError(f"saving a checkpoint failed: {msg or f'{self._directory}: {exc}'}") from exc


def trim_history(history_file, last_epoch):
    """Keep the ``loss_history.jsonl`` records of epochs <= ``last_epoch``: a run resumed from
    that epoch trains the later ones again. Returns how many records were dropped."""
    if not os.path.isfile(history_file):
        return 0
    kept, dropped = [], 0
    with open(history_file, encoding="utf-8") as f:
        for line in f:
            try:
                keep = int(json.loads(line).get("epoch", 0)) <= last_epoch
            except (ValueError, AttributeError):
                keep = False  # a line cut by the kill
            if keep:
                kept.append(line if line.endswith("\n") else line + "\n")
            elif line.strip():
                dropped += 1
    if dropped:
        atomic_write_text(history_file, "".join(kept))
    return dropped


def save_checkpoint_atomic(save_obj, path, append_dict=None):
    """Write a checkpoint (with its CRC32) to ``<path>.tmp.ckpt`` in the same folder, then rename
    it onto ``path`` (its folder is made if missing): the previous file stays valid until the swap,
    and a failure (full disk, read-only folder) is one line and leaves neither ``path``
    half-written nor a temporary file."""
    tmp = path + TMP_SUFFIX
    with writing(path, partial=[tmp, path + ".tmp.tmp"]):
        make_parent_folder(path)
        with quiet_mindspore_log("Failed to save the checkpoint file"):
            ms.save_checkpoint(save_obj, tmp, append_dict=append_dict, crc_check=True)
        os.replace(tmp, path)
    return path
