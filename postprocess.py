"""Accuracy / video metrics of offline-inference outputs (Ascend 310 or ``python -m src.infer``).

    python postprocess.py --config_path config/cifar10_config_cpu.yaml --result_dir ./result_Files \\
        --label_path ./preprocess_Result/label.npy

Reads every ``<name>_0.bin`` of ``--result_dir`` (output 0 of input ``<name>.bin`` written by
preprocess.py) and matches it with its label / target:

* Tiny-DarkNet: ``--label_path`` is preprocess.py's ``label.npy`` (or the folder holding it); the
  outputs are float32 logits (1, num_classes). Prints top-1 / top-5 (the same counting as eval.py).
* ConvLSTM: ``--label_path`` is preprocess.py's ``01_target`` folder (or the folder holding it);
  the outputs are float32 logits (1, T_out, C, H, W), turned into probabilities with a sigmoid.
  Prints MSE / MAE / SSIM / PSNR / cross-entropy (src.metrics, OpenSTL conventions) as eval.py
  does, with the blank-frames baseline and the copy-last-frame baseline (when preprocess.py's
  ``00_data`` sits beside ``01_target``).

The scripts (scripts/run_infer_310.sh, run_infer_cpu.sh) redirect this output to ``acc.log``.
"""
import os
import sys

from src.model_utils.config import get_config
from src.model_utils.errors import UserError, exit_on_user_error

SCRIPT_DEFAULTS = {"label_path": ""}
SCRIPT_HELPS = {
    "label_path": "postprocess.py: preprocess.py's label.npy (classifier) or 01_target/ (ConvLSTM), "
                  "or the preprocess result folder holding them",
    "result_dir": "postprocess.py: the inference outputs (<name>_0.bin files, e.g. result_Files)",
}


@exit_on_user_error
def main(argv=None):
    cfg = get_config(argv, script_defaults=SCRIPT_DEFAULTS, script_helps=SCRIPT_HELPS)
    if not cfg.result_dir:
        raise UserError("no results given: pass --result_dir DIR (the inference's result_Files)")
    from src.tasks import create_task  # the task's postprocess (src/tasks/): after the config
    create_task(cfg).postprocess(os.path.abspath(cfg.result_dir),
                                 cfg.label_path and os.path.abspath(cfg.label_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
