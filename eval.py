"""Evaluate a checkpoint: ``python eval.py --config_path config/<name>.yaml --ckpt_file FILE``.

Tiny-DarkNet: top-1 / top-5 accuracy. ConvLSTM: MSE, MAE, SSIM, PSNR and cross-entropy per
sequence beside the copy-last-frame baseline, plus PNG strips. Results go to ``metrics.json``.
"""
import sys

from src.entry import entry_config
from src.model_utils.errors import UserError, exit_on_user_error



@exit_on_user_error
def main(argv=None):
    cfg = entry_config(argv)  # before MindSpore: CPU tuning
    if not cfg.ckpt_file:
        raise UserError("no checkpoint given: pass --ckpt_file FILE.ckpt (or a checkpoint folder)")
    from src.evaluate import run_eval
    from src.tasks import create_task
    result = run_eval(cfg)
    print(create_task(cfg).format_result(result))
    print(f"metrics written to {result['metrics_file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
