"""MindSpore Hub entry: ``create_network(name, pretrained=False, **kwargs)`` for both model families."""
from src.models import MODELS, create_model


def create_network(name, pretrained=False, **kwargs):
    """``create_network("tinydarknet", num_classes=1000)`` or ``create_network("convlstm",
    hidden_channels=(128, 64, 64))``; aliases: ``tiny_darknet``, ``conv_lstm``.

    ``pretrained=True`` returns the network of the checkpoint shipped in ``pretrained/`` for that
    family (built from its config, weights loaded after their SHA-256 is checked, inference mode);
    ``pretrained="<name>"`` picks a shipped checkpoint by name (``python -m src.pretrained list``).
    """
    key = name.lower().replace("-", "").replace("_", "")
    aliases = {m.replace("_", ""): m for m in MODELS}
    if key not in aliases:
        raise NotImplementedError(f"{name} is not implemented in this repo: choose one of {', '.join(MODELS)}")
    if not pretrained:
        return create_model(aliases[key], **kwargs)
    from src.pretrained import DEFAULT_PRETRAINED, load_pretrained
    if kwargs:
        raise ValueError(f"pretrained=True builds the shipped network from its config: pass no other "
                         f"arguments (got {', '.join(sorted(kwargs))})")
    if pretrained is True:
        if aliases[key] not in DEFAULT_PRETRAINED:
            raise ValueError(f"no shipped checkpoint for {aliases[key]}: shipped ones are for "
                             f"{', '.join(DEFAULT_PRETRAINED)}")
        pretrained = DEFAULT_PRETRAINED[aliases[key]]
    net, manifest = load_pretrained(pretrained)
    if manifest["model_name"] != aliases[key]:
        raise ValueError(f"the shipped checkpoint {pretrained} is a {manifest['model_name']}, not a {aliases[key]}")
    return net
