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
        kwargs_from_config: ``(cfg, use_unfold) -> dict`` of plain network arguments.
        input_shape: ``(cfg, batch_size) -> tuple``: the network input of one batch.
        convert_params: optional ``(params, network) -> params`` that maps a checkpoint written
            with an older parameter layout onto the current network (None: nothing to convert).
    """

    build: Callable
    task: str
    head_prefixes: Tuple[str, ...]
    kwargs_from_config: Callable
    input_shape: Callable
    convert_params: Optional[Callable] = None


def _build_tinydarknet(**kwargs):
    from src.models.tinydarknet import tinydarknet
    return tinydarknet(**kwargs)


def _build_convlstm(**kwargs):
    from src.models.convlstm import ConvLSTM
    return ConvLSTM(**kwargs)


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
        kwargs_from_config=lambda cfg, use_unfold: dict(
            num_classes=cfg.num_classes, in_channels=cfg.in_channels, use_unfold=use_unfold),
        input_shape=_image_input),
    "convlstm": ModelSpec(
        build=_build_convlstm, task="video_prediction", head_prefixes=("head.",),
        kwargs_from_config=lambda cfg, use_unfold: dict(
            in_channels=cfg.in_channels, patch_size=cfg.patch_size,
            hidden_channels=tuple(cfg.hidden_channels), input_kernel=cfg.input_kernel,
            state_kernel=cfg.state_kernel, input_frames=cfg.input_frames,
            output_frames=cfg.output_frames, use_unfold=use_unfold),
        input_shape=_video_input, convert_params=_convert_convlstm),
}


def get_model_spec(name):
    """The :class:`ModelSpec` of ``name``; ValueError naming the choices for an unknown name."""
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}': choose one of {', '.join(MODELS)}")
    return MODELS[name]


def create_model(name, **kwargs):
    """Build a network by name with plain keyword arguments (channels, kernels, classes)."""
    return get_model_spec(name).build(**kwargs)


def use_unfold_for(conv_impl, device_target):
    """Resolve ``conv_impl`` (auto | native | unfold): im2col + GEMM is the fast path on CPU only."""
    if conv_impl not in ("auto", "native", "unfold"):
        raise ValueError(f"conv_impl must be auto, native or unfold, got '{conv_impl}'")
    return conv_impl == "unfold" or (conv_impl == "auto" and device_target == "CPU")


def model_kwargs(cfg, export=False):
    """Network arguments from a config. ``export=True`` forces native convolutions (exportable)."""
    use_unfold = False if export else use_unfold_for(cfg.conv_impl, cfg.device_target)
    return get_model_spec(cfg.model_name).kwargs_from_config(cfg, use_unfold)


def create_model_from_config(cfg, export=False):
    return create_model(cfg.model_name, **model_kwargs(cfg, export=export))


def input_shape(cfg, batch_size):
    """The network's input shape for a batch (used by export and inference)."""
    return get_model_spec(cfg.model_name).input_shape(cfg, batch_size)
