"""The first step of every entry point: read the config, then tune the CPU before MindSpore loads.

``entry_config`` = :func:`src.model_utils.config.get_config` + the oneDNN ISA cap
(:func:`src.model_utils.cpu_tuning.apply_onednn_isa` with the config's ``onednn_isa``). The cap
must be in the environment before MindSpore runs its first oneDNN kernel, so entry scripts call
this before importing anything that imports mindspore; msrun/mpirun workers run train.py and so
pass here too (a cap set by the parent is inherited and logged as such).
"""
from src.model_utils.config import DEFAULT_CONFIG, get_config
from src.model_utils.cpu_tuning import apply_onednn_isa


def entry_config(argv=None, default_config=DEFAULT_CONFIG, script_defaults=None, script_helps=None,
                 log=print, native_convs=False):
    """``get_config(...)``, then the oneDNN ISA setting (one log line). Returns the config.

    ``native_convs``: the process runs native convolutions whatever ``conv_impl`` says (export,
    and preprocess / the inference pipeline, which run exported graphs), so the ISA is chosen
    for them."""
    cfg = get_config(argv, default_config=default_config, script_defaults=script_defaults,
                     script_helps=script_helps)
    from src.models import onednn_conv  # standard library only: MindSpore is not imported
    apply_onednn_isa(cfg.get("onednn_isa", "auto"), log=log,
                     conv_impl="native" if native_convs else cfg.get("conv_impl", "auto"),
                     direct_kernel=onednn_conv.availability)
    return cfg
