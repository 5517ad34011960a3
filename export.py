"""Export a checkpoint: ``python export.py --config_path config/<name>.yaml --ckpt_file FILE_OR_DIR``.

``--file_format MINDIR`` (default, portable), ``ONNX`` (onnxruntime) or ``AIR`` (Ascend only);
``--file_name`` is the output path without extension; ``--batch_size`` defaults to 1 here. The
logic is in ``src/export.py``.
"""
import sys

from src.entry import entry_config
from src.export import SCRIPT_DEFAULTS, SCRIPT_HELPS, export_network  # MindSpore loads later
from src.model_utils.errors import exit_on_user_error


@exit_on_user_error
def main(argv=None):
    cfg = entry_config(argv, script_defaults=SCRIPT_DEFAULTS, script_helps=SCRIPT_HELPS,
                       native_convs=True)  # the exported graph has native convolutions
    export_network(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
