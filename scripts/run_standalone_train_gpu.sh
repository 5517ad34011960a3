#!/bin/bash
# Train on one GPU, in the background (nohup); the log is
# <output_dir>/logs/train_gpu/log.txt (RUN_DIR=<folder> to choose another log folder).
#
# usage: bash scripts/run_standalone_train_gpu.sh CONFIG_PATH DATA_PATH [DEVICE_ID] [--key value ...]
#   e.g. bash scripts/run_standalone_train_gpu.sh config/cifar10_config_gpu.yaml /data/cifar-10-batches-bin 0
# DEVICE_ID (default 0) is the index among the visible GPUs (CUDA_VISIBLE_DEVICES). Extra
# --key value options go to train.py. DRY_RUN=1 prints the command.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
train_one_main GPU run_standalone_train_gpu.sh "$@"
