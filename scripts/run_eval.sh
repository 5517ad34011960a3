#!/bin/bash
# Evaluate a checkpoint on one Ascend device, in the foreground; the log is also written to
# <output_dir>/logs/eval_ascend/log.txt (RUN_DIR=<folder> to choose another log folder).
#
# usage: bash scripts/run_eval.sh CONFIG_PATH DATA_PATH CKPT_FILE [DEVICE_ID] [--key value ...]
#   e.g. bash scripts/run_eval.sh config/cifar10_config.yaml /data/cifar-10-batches-bin output/tinydarknet_cifar10/checkpoints
# DATA_PATH: the evaluation data (given to eval.py as --eval_data_path). CKPT_FILE: a .ckpt file or
# a folder (its newest .ckpt). metrics.json goes next to the run (see eval.py).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
eval_main Ascend run_eval.sh "$@"
