"""Train Tiny-DarkNet or ConvLSTM: ``python train.py --config_path config/<name>.yaml [--key value ...]``.

Every key of the YAML can be overridden on the command line; ``--help`` lists them. Ctrl-C ends
with one line naming the newest checkpoint and the command that resumes from it (exit code 130).
"""
import sys

from src.entry import entry_config
from src.model_utils.errors import exit_on_user_error
from src.run_guard import resume_hint_on_stop


@exit_on_user_error
def main(argv=None):
    cfg = entry_config(argv)  # before MindSpore: CPU tuning
    with resume_hint_on_stop(cfg):
        from src.trainer import train  # after the config: --help and config errors need no MindSpore
        train(cfg)


if __name__ == "__main__":
    sys.exit(main())
