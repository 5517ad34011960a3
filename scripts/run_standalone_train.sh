#!/bin/bash
# Train on one Ascend device, in the background (nohup); the log is
# <output_dir>/logs/train_ascend/log.txt (RUN_DIR=<folder> to choose another log folder).
#
# usage: bash scripts/run_standalone_train.sh CONFIG_PATH DATA_PATH [DEVICE_ID] [--key value ...]
#   e.g. bash scripts/run_standalone_train.sh config/cifar10_config.yaml /data/cifar-10-batches-bin 0
# DEVICE_ID defaults to 0. Extra --key value options go to train.py. DRY_RUN=1 prints the command.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
train_one_main Ascend run_standalone_train.sh "$@"
