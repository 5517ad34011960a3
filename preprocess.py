"""Offline-inference inputs: ``python preprocess.py --config_path config/<name>.yaml --data_path DATA``.

Writes the evaluation set as batch-1 float32 ``.bin`` files (``00_data/``) and the targets
(``label.npy`` or ``01_target/``) under ``--result_path`` for ``python -m src.infer`` or
ascend310_infer; ``postprocess.py`` scores the outputs. The logic is in ``src/preprocess.py``.
"""
import os
import sys

from src.entry import entry_config
from src.model_utils.errors import UserError, exit_on_user_error
from src.preprocess import SCRIPT_DEFAULTS, SCRIPT_HELPS, preprocess  # MindSpore loads later


@exit_on_user_error
def main(argv=None):
    cfg = entry_config(argv, script_defaults=SCRIPT_DEFAULTS, script_helps=SCRIPT_HELPS)
    data_path = cfg.data_path or cfg.eval_data_path
    if not data_path:
        raise UserError("no data given: pass --data_path (the evaluation data)")
    preprocess(cfg, os.path.abspath(cfg.result_path), data_path=data_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
