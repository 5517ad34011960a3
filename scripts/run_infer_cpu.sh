#!/bin/bash
# CPU version of scripts/run_infer_310.sh: the same stages and files -- preprocess the evaluation
# set into .bin files (preprocess.py), run the model over them with the Python runner
# `python -m src.infer` (same flags and outputs as ascend310_infer/out/main: result_Files/*_0.bin,
# time_Result/test_perform_static.txt with mean / p50 / p90 batch-1 latency), then postprocess.py
# into acc.log. No C++ build and no Ascend toolkit needed.
#
# Usage: bash scripts/run_infer_cpu.sh MINDIR_PATH DATASET DATA_PATH [LABEL_FILE] [DEVICE_ID]
#   MINDIR_PATH  a .mindir (run in MindSpore) or a .onnx (run in onnxruntime, the faster CPU
#                runtime; export.py --file_format ONNX), exported with batch 1
#   Other arguments, CONFIG_PATH and PYTHON as in run_infer_310.sh; DEVICE_ID is accepted and unused.
# Runs from any directory; outputs go to the current directory.
RUN_INFER_DEVICE=CPU
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/run_infer_310.sh"
