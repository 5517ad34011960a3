"""Model registry: one :class:`ModelSpec` per model tells everything the rest of the code needs.

``MODELS[name]`` gives the network builder, the task family that trains and evaluates it
(``src/tasks``), the parameter-name prefixes of its head (transfer learning), how its keyword
arguments and input shape follow from a config, and an optional converter for checkpoints of an
older parameter layout. Adding a model = a network file, a ``ModelSpec`` entry here, a YAML and a
test (README, "Adding a model").
"""
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

from src.kernels.plan import configure
from src.kernels.tuning import unset_isa_warning
from src.model_utils.config import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    """What the code needs to know about one model.

    Attributes:
        build: ``build(**kwargs) -> nn.Cell`` (imports the network module lazily).
        task: task family name, a key of ``src.tasks.TASKS``.
        head_prefixes: parameter-name prefixes of the task head; the rest is the backbone.
        kwargs_from_config: ``cfg -> dict`` of plain network arguments (sizes; the kernels are
            chosen afterwards by ``src.kernels``, from the built network).
        input_shape: ``(cfg, batch_size) -> tuple``: the network input of one batch.
        convert_params: optional ``(params, network) -> params`` that maps a checkpoint written
            with an older parameter layout onto the current network (None: nothing to convert).
        shape_keys: the config keys that decide parameter shapes (named by the error for a
            checkpoint that does not fit the configured network).
    """

    build: Callable
    task: str
    head_prefixes: Tuple[str, ...]
    kwargs_from_config: Callable
    input_shape: Callable
    convert_params: Optional[Callable] = None
    shape_keys: Tuple[str, ...] = ()


def _build_tinydarknet(**kwargs):
    from src.models.tinydarknet import tinydarknet
    return tinydarknet(**kwargs)


def _build_convlstm(**kwargs):
    from src.models.convlstm import ConvLSTM
    return ConvLSTM(**kwargs)


def _convlstm_kwargs(cfg):
    if cfg.structure == "stack" and cfg.forecaster_input != "prediction":
        raise ConfigError("structure: stack reads its own predictions: set forecaster_input: "
                          "prediction (or structure: encoder_forecaster)")
    return dict(in_channels=cfg.in_channels, patch_size=cfg.patch_size,
                hidden_channels=tuple(cfg.hidden_channels), input_kernel=cfg.input_kernel,
                state_kernel=cfg.state_kernel, input_frames=cfg.input_frames,
                output_frames=cfg.output_frames, forecaster_input=cfg.forecaster_input,
                structure=cfg.structure, head_kernel=cfg.head_kernel)


def _convert_convlstm(params, network):
    from src.models.convlstm import convert_legacy_params
    return convert_legacy_params(params, network)


def _image_input(cfg, batch_size):
    return (batch_size, cfg.in_channels, cfg.image_size, cfg.image_size)


def _video_input(cfg, batch_size):
    return (batch_size, cfg.input_frames, cfg.in_channels, cfg.image_size, cfg.image_size)


MODELS = {
    "tinydarknet": ModelSpec(
        build=_build_tinydarknet, task="classification", head_prefixes=("classifier.",),
        kwargs_from_config=lambda cfg: dict(num_classes=cfg.num_classes, in_channels=cfg.in_channels),
        input_shape=_image_input, shape_keys=("num_classes", "in_channels")),
    "convlstm": ModelSpec(
        build=_build_convlstm, task="video_prediction", head_prefixes=("head.",),
        kwargs_from_config=_convlstm_kwargs,
        input_shape=_video_input, convert_params=_convert_convlstm,
        shape_keys=("structure", "forecaster_input", "hidden_channels", "input_kernel",
                    "state_kernel", "head_kernel", "patch_size", "in_channels")),
}


def get_model_spec(name):
    """The :class:`ModelSpec` of ``name``; ValueError naming the choices for an unknown name."""
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}': choose one of {', '.join(MODELS)}")
    return MODELS[name]


_WARNED = []


def _build(spec, kwargs, device_target=None):
    """``spec.build(**kwargs)``, with a one-time warning when this process left MindSpore's
    default oneDNN ISA on a CPU where it is slow (:func:`src.kernels.tuning.unset_isa_warning`)."""
    network = spec.build(**kwargs)
    if not _WARNED:
        import mindspore as ms
        message = unset_isa_warning(device_target or ms.get_context("device_target"))
        _WARNED.append(message)
        if message:
            warnings.warn(message, RuntimeWarning, stacklevel=3)
    return network


def create_model(name, **kwargs):
    """Build a network by name with plain keyword arguments (channels, kernels, classes)."""
    return _build(get_model_spec(name), kwargs)


KERNEL_KEYS = ("conv_impl", "layer_impl", "gate_impl")  # the config keys src.kernels decides by


def create_model_from_config(cfg, export=False, batch_size=None, log=print, run_dir=None, rank=0,
                             write_record=True):
    """The configured network: built from plain sizes, then (unless ``export``) its kernels chosen
    and set by ``src.kernels.plan.configure`` at ``batch_size`` (default the training batch):
    from ``cfg.kernel_choices`` when set, else decided (``conv_impl`` / ``layer_impl`` /
    ``gate_impl``) and, with ``run_dir``, recorded there by rank 0 (ranks > 0 read it).
    ``write_record=False``: the record is kept as ``network.kernel_record`` for the caller to
    write with ``src.kernels.plan.record_run``. ``export=True``: native ops only (exportable)."""
    spec = get_model_spec(cfg.model_name)
    network = _build(spec, spec.kwargs_from_config(cfg), cfg.device_target)
    if not export:
        network.kernel_record = configure(
            network, spec.input_shape(cfg, 1), batch_size or cfg.batch_size,
            {key: cfg.get(key, "auto") for key in KERNEL_KEYS}, cfg.device_target,
            pinned=cfg.get("kernel_choices") or None, out_dir=run_dir, rank=rank, log=log,
            write=write_record)
    return network


def input_shape(cfg, batch_size):
    """The network's input shape for a batch (used by export and inference)."""
    return get_model_spec(cfg.model_name).input_shape(cfg, batch_size)
