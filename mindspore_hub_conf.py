"""MindSpore Hub entry: ``create_network(name, **kwargs)`` for both model families."""
from src.models import MODELS, create_model


def create_network(name, **kwargs):
    """``create_network("tinydarknet", num_classes=1000)`` or ``create_network("convlstm",
    hidden_channels=(128, 64, 64))``; aliases: ``tiny_darknet``, ``conv_lstm``."""
    key = name.lower().replace("-", "").replace("_", "")
    aliases = {m.replace("_", ""): m for m in MODELS}
    if key not in aliases:
        raise NotImplementedError(f"{name} is not implemented in this repo: choose one of {', '.join(MODELS)}")
    return create_model(aliases[key], **kwargs)
