"""Train Tiny-DarkNet or ConvLSTM: ``python train.py --config_path config/<name>.yaml [--key value ...]``.

Every key of the YAML can be overridden on the command line; ``--help`` lists them.
"""
import sys

from src.entry import entry_config
from src.model_utils.errors import exit_on_user_error



@exit_on_user_error
def main(argv=None):
    cfg = entry_config(argv)  # before MindSpore: CPU tuning
    from src.trainer import train  # after the config: --help and config errors need no MindSpore
    train(cfg)


if __name__ == "__main__":
    sys.exit(main())
