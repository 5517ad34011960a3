"""The first step of every entry point: read the config, then set the oneDNN ISA before MindSpore loads.

``entry_config`` = :func:`src.model_utils.config.get_config` + the oneDNN ISA cap
(:func:`src.kernels.tuning.apply_onednn_isa`). The cap must be in the environment before
MindSpore runs its first oneDNN kernel, so entry scripts call this before importing anything
that imports mindspore; msrun/mpirun workers run train.py and so pass here too.

The kernel choices of a run hold for all of it: with ``--resume`` (training) or ``--ckpt_file``
(evaluation) the ``kernel_choices.json`` of the checkpoint's run is found here
(:func:`src.kernels.plan.find_record`) and returned as the config's ``kernel_choices``, so the
ISA it recorded is applied now and its kernels when the network is built; a ``kernel_choices``
given in the config or on the command line wins.
"""
import os

from src.kernels import onednn_conv
from src.kernels.plan import find_record, read_record
from src.kernels.tuning import apply_onednn_isa
from src.model_utils.config import DEFAULT_CONFIG, get_config
from src.model_utils.errors import UserError


def entry_config(argv=None, default_config=DEFAULT_CONFIG, script_defaults=None, script_helps=None,
                 log=print, native_convs=False):
    """``get_config(...)``, then the oneDNN ISA setting (one log line). Returns the config, with
    ``kernel_choices`` set to the record of the resumed / evaluated checkpoint's run if any.

    ``native_convs``: the process runs native convolutions whatever ``conv_impl`` says (export,
    and preprocess / the inference pipeline, which run exported graphs), so the ISA is chosen
    for them and no record is read."""
    cfg = get_config(argv, default_config=default_config, script_defaults=script_defaults,
                     script_helps=script_helps)
    record_path = None if native_convs else cfg.get("kernel_choices") or find_record(
        cfg.get("resume") or cfg.get("ckpt_file"))
    if record_path and not os.path.isfile(record_path):
        raise UserError(f"kernel_choices {record_path}: no such file: pass the kernel_choices.json "
                        "of a training run's output folder, or leave kernel_choices empty")
    if record_path:
        isa = read_record(record_path)["isa"]["isa"]
        apply_onednn_isa(isa, log=log, source=f"recorded in {record_path}")
        return cfg.replace(kernel_choices=record_path)
    apply_onednn_isa(cfg.get("onednn_isa", "auto"), log=log,
                     conv_impl="native" if native_convs else cfg.get("conv_impl", "auto"),
                     direct_kernel=onednn_conv.availability)
    return cfg
