"""Model registry: ``create_model(name, **kwargs)`` and the config -> network-arguments mapping."""


def _tinydarknet(**kwargs):
    from src.models.tinydarknet import tinydarknet
    return tinydarknet(**kwargs)


def _convlstm(**kwargs):
    from src.models.convlstm import ConvLSTM
    return ConvLSTM(**kwargs)


MODELS = {"tinydarknet": _tinydarknet, "convlstm": _convlstm}


def create_model(name, **kwargs):
    """Build a network by name with plain keyword arguments (channels, kernels, classes)."""
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}': choose one of {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


def use_unfold_for(conv_impl, device_target):
    """Resolve ``conv_impl`` (auto | native | unfold): im2col + GEMM is the fast path on CPU only."""
    if conv_impl not in ("auto", "native", "unfold"):
        raise ValueError(f"conv_impl must be auto, native or unfold, got '{conv_impl}'")
    return conv_impl == "unfold" or (conv_impl == "auto" and device_target == "CPU")


def model_kwargs(cfg, export=False):
    """Network arguments from a config. ``export=True`` forces native convolutions (exportable)."""
    use_unfold = False if export else use_unfold_for(cfg.conv_impl, cfg.device_target)
    if cfg.model_name == "tinydarknet":
        return dict(num_classes=cfg.num_classes, in_channels=cfg.in_channels, use_unfold=use_unfold)
    if cfg.model_name == "convlstm":
        return dict(in_channels=cfg.in_channels, patch_size=cfg.patch_size,
                    hidden_channels=tuple(cfg.hidden_channels), input_kernel=cfg.input_kernel,
                    state_kernel=cfg.state_kernel, input_frames=cfg.input_frames,
                    output_frames=cfg.output_frames, use_unfold=use_unfold)
    raise ValueError(f"unknown model_name '{cfg.model_name}': choose one of {', '.join(MODELS)}")


def create_model_from_config(cfg, export=False):
    return create_model(cfg.model_name, **model_kwargs(cfg, export=export))


def input_shape(cfg, batch_size):
    """The network's input shape for a batch (used by export and inference)."""
    if cfg.model_name == "convlstm":
        return (batch_size, cfg.input_frames, cfg.in_channels, cfg.image_size, cfg.image_size)
    return (batch_size, cfg.in_channels, cfg.image_size, cfg.image_size)
