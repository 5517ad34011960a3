"""The manifest of a shipped checkpoint: ``<stem>.json`` beside ``<stem>.ckpt`` (config, data,
training, held-out metrics, ``sha256``; written by ``python -m src.pretrained pack``). Read here
for both readers: :mod:`src.pretrained` (by name, strict) and :mod:`src.checkpoint` (beside a
file being loaded, to verify its checksum). Standard library only."""
import json


def load_manifest(path):
    """The checkpoint manifest at ``path`` (a JSON object with ``ckpt_file`` and ``sha256``) as
    a dict, or None when the file is not one (unreadable, not JSON, other fields)."""
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("ckpt_file"), str) \
            or not isinstance(manifest.get("sha256"), str):
        return None
    return manifest
