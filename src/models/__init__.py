"""Model registry: one :class:`ModelSpec` per model tells everything the rest of the code needs.

``MODELS[name]`` gives the network builder, the task family that trains and evaluates it
(``src/tasks``), the parameter-name prefixes of its head (transfer learning), how its keyword
arguments and input shape follow from a config, and an optional converter for checkpoints of an
older parameter layout. Adding a model = a network file, a ``ModelSpec`` entry here, a YAML and a
test (README, "Adding a model").
"""
from dataclasses import dataclass
from typing import Callable, Optional, Tuple


@dataclass(frozen=True)
class ModelSpec:
    """What the code needs to know about one model.

    Attributes:
        build: ``build(**kwargs) -> nn.Cell`` (imports the network module lazily).
        task: task family name, a key of ``src.tasks.TASKS``.
        head_prefixes: parameter-name prefixes of the task head; the rest is the backbone.
        kwargs_from_config: ``cfg -> dict`` of plain network arguments (without the convolution
            implementation, which :func:`model_kwargs` adds).
        conv_shapes: ``cfg -> [(in_ch, out_ch, kernel, h, w)]`` of the network's convolutions
            at the configured image size (what the convolution probe times).
        input_shape: ``(cfg, batch_size) -> tuple``: the network input of one batch.
        convert_params: optional ``(params, network) -> params`` that maps a checkpoint written
            with an older parameter layout onto the current network (None: nothing to convert).
        shape_keys: the config keys that decide parameter shapes (named by the error for a
            checkpoint that does not fit the configured network).
        runtime_kwargs: optional ``(cfg, log) -> dict`` of kernel choices that change speed, not
            values or parameters, for networks that train or evaluate here (export leaves them
            out: exported graphs hold portable ops only).
    """

    build: Callable
    task: str
    head_prefixes: Tuple[str, ...]
    kwargs_from_config: Callable
    conv_shapes: Callable
    input_shape: Callable
    convert_params: Optional[Callable] = None
    shape_keys: Tuple[str, ...] = ()
    runtime_kwargs: Optional[Callable] = None


def _build_tinydarknet(**kwargs):
    from src.models.tinydarknet import tinydarknet
    return tinydarknet(**kwargs)


def _build_convlstm(**kwargs):
    from src.models.convlstm import ConvLSTM
    return ConvLSTM(**kwargs)


def _tinydarknet_convs(cfg):
    from src.models.tinydarknet import conv_shapes
    return conv_shapes(cfg.num_classes, cfg.in_channels, cfg.image_size)


def _convlstm_kwargs(cfg):
    if cfg.structure == "stack" and cfg.forecaster_input != "prediction":
        from src.model_utils.config import ConfigError
        raise ConfigError("structure: stack reads its own predictions: set forecaster_input: "
                          "prediction (or structure: encoder_forecaster)")
    return dict(in_channels=cfg.in_channels, patch_size=cfg.patch_size,
                hidden_channels=tuple(cfg.hidden_channels), input_kernel=cfg.input_kernel,
                state_kernel=cfg.state_kernel, input_frames=cfg.input_frames,
                output_frames=cfg.output_frames, forecaster_input=cfg.forecaster_input,
                structure=cfg.structure, head_kernel=cfg.head_kernel)


def _convlstm_convs(cfg):
    from src.models.convlstm import conv_shapes
    return conv_shapes(cfg.in_channels, cfg.patch_size, tuple(cfg.hidden_channels), cfg.input_kernel,
                       cfg.state_kernel, cfg.image_size, forecaster_input=cfg.forecaster_input,
                       structure=cfg.structure, head_kernel=cfg.head_kernel)


def _convert_convlstm(params, network):
    from src.models.convlstm import convert_legacy_params
    return convert_legacy_params(params, network)


def _tinydarknet_runtime(cfg, log):
    from src.models.fused_layers import layer_impl_policy
    return {"layer_impl": layer_impl_policy(cfg.layer_impl, cfg.device_target, log=log)}


def _convlstm_runtime(cfg, log):
    from src.models.lstm_gates import gate_impl_policy
    return {"gate_impl": gate_impl_policy(cfg.gate_impl, cfg.device_target, log=log)}


def _image_input(cfg, batch_size):
    return (batch_size, cfg.in_channels, cfg.image_size, cfg.image_size)


def _video_input(cfg, batch_size):
    return (batch_size, cfg.input_frames, cfg.in_channels, cfg.image_size, cfg.image_size)


MODELS = {
    "tinydarknet": ModelSpec(
        build=_build_tinydarknet, task="classification", head_prefixes=("classifier.",),
        kwargs_from_config=lambda cfg: dict(num_classes=cfg.num_classes, in_channels=cfg.in_channels),
        conv_shapes=_tinydarknet_convs, input_shape=_image_input,
        shape_keys=("num_classes", "in_channels"), runtime_kwargs=_tinydarknet_runtime),
    "convlstm": ModelSpec(
        build=_build_convlstm, task="video_prediction", head_prefixes=("head.",),
        kwargs_from_config=_convlstm_kwargs,
        conv_shapes=_convlstm_convs, input_shape=_video_input, convert_params=_convert_convlstm,
        shape_keys=("structure", "forecaster_input", "hidden_channels", "input_kernel",
                    "state_kernel", "head_kernel", "patch_size", "in_channels"),
        runtime_kwargs=_convlstm_runtime),
}


def get_model_spec(name):
    """The :class:`ModelSpec` of ``name``; ValueError naming the choices for an unknown name."""
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}': choose one of {', '.join(MODELS)}")
    return MODELS[name]


def create_model(name, **kwargs):
    """Build a network by name with plain keyword arguments (channels, kernels, classes)."""
    return get_model_spec(name).build(**kwargs)


def conv_policy(cfg, batch_size=None, log=print):
    """Which implementation (native / im2col / oneDNN's direct kernel) each convolution of the
    configured network uses:
    ``conv_impl`` auto = measured per layer shape on this machine at ``batch_size`` (default the
    training batch) and cached (``src.model_utils.cpu_tuning``); native / unfold = every layer.
    ``ZOO_CONV_IMPL`` overrides the config. Logs one line."""
    from src.model_utils.cpu_tuning import conv_impl_policy
    from src.models import onednn_conv
    shapes = get_model_spec(cfg.model_name).conv_shapes(cfg)
    return conv_impl_policy(shapes, batch_size or cfg.batch_size, cfg.conv_impl, cfg.device_target,
                            log=log, onednn=onednn_conv.availability)


def model_kwargs(cfg, export=False, batch_size=None, log=print):
    """Network arguments from a config, with the per-layer convolution choice of
    :func:`conv_policy` and the model's other kernel choices (``ModelSpec.runtime_kwargs``).
    ``export=True`` builds native ops only (exportable)."""
    spec = get_model_spec(cfg.model_name)
    kwargs = spec.kwargs_from_config(cfg)
    if export:
        return dict(kwargs, use_unfold=False)
    if spec.runtime_kwargs:
        kwargs.update(spec.runtime_kwargs(cfg, log))
    return dict(kwargs, conv_impl=conv_policy(cfg, batch_size, log), image_size=cfg.image_size)


def create_model_from_config(cfg, export=False, batch_size=None, log=print):
    return create_model(cfg.model_name, **model_kwargs(cfg, export, batch_size, log))


def input_shape(cfg, batch_size):
    """The network's input shape for a batch (used by export and inference)."""
    return get_model_spec(cfg.model_name).input_shape(cfg, batch_size)
