#!/bin/bash
# Train on CPU, in the foreground: the output is shown and also written to
# <output_dir>/logs/train_cpu/log.txt (RUN_DIR=<folder> to choose another log folder).
#
# usage: bash scripts/run_train_cpu.sh CONFIG_PATH DATA_PATH [--key value ...]
#   e.g. bash scripts/run_train_cpu.sh config/cifar10_config_cpu.yaml ~/data/cifar-10-batches-bin --epoch_size 5
# Extra --key value options go to train.py (python train.py --help lists them). DRY_RUN=1 prints
# the command only. Checkpoints, config.yaml and loss_history.jsonl go to the config's output_dir
# (relative to the repository root).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
train_one_main CPU run_train_cpu.sh "$@"
