#!/bin/bash
# Evaluate a checkpoint on one GPU, in the foreground; the log is also written to
# <output_dir>/logs/eval_gpu/log.txt (RUN_DIR=<folder> to choose another log folder).
#
# usage: bash scripts/run_eval_gpu.sh CONFIG_PATH DATA_PATH CKPT_FILE [DEVICE_ID] [--key value ...]
# DATA_PATH: the evaluation data (given to eval.py as --eval_data_path). CKPT_FILE: a .ckpt file or
# a folder (its newest .ckpt).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
eval_main GPU run_eval_gpu.sh "$@"
