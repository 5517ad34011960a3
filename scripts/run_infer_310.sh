#!/bin/bash
# Ascend 310 offline inference of an exported MindIR: build ascend310_infer, preprocess the
# evaluation set into .bin files, run ascend310_infer/out/main, compute the metrics into acc.log.
#
# Usage: bash scripts/run_infer_310.sh MINDIR_PATH DATASET DATA_PATH [LABEL_FILE] [DEVICE_ID]
#   MINDIR_PATH  model exported with export.py (batch 1, --file_format MINDIR)
#   DATASET      cifar10 | imagenet | moving_mnist (picks the default config, see CONFIG_PATH)
#   DATA_PATH    evaluation data: CIFAR-10 folder with test_batch.bin, ImageNet-style folder with
#                val/<class>/ (or the val folder), or mnist_test_seq.npy
#   LABEL_FILE   imagenet only: label order = the training checkpoint (.ckpt, its stored class
#                names) or a text file with one class name per line; "-" or absent = sorted
#                folder names. Ignored by cifar10 / moving_mnist (pass "-" to give DEVICE_ID).
#   DEVICE_ID    Ascend device (default 0)
# Env: CONFIG_PATH  config of the exported model (default by DATASET: config/cifar10_config_cpu.yaml,
#                   config/imagenet_config_cpu.yaml, config/mmnist_config_cpu.yaml); its image_size,
#                   num_classes, frames, ... must be the ones the MindIR was exported with.
#      PYTHON       interpreter with MindSpore (default python3)
#      MINDSPORE_PATH, BUILD_DIR, OUTPUT_DIR, CXX11_ABI  passed to ascend310_infer/build.sh; the
#                   program run is ${OUTPUT_DIR:-ascend310_infer/out}/main
#      DRY_RUN=1    check the arguments, then print each stage's command ("+ ...") and run none
# Runs from any directory; writes preprocess_Result/, result_Files/, time_Result/, infer.log and
# acc.log into the current directory. scripts/run_infer_cpu.sh sources this file with
# RUN_INFER_DEVICE=CPU: the same stages with `python -m src.infer` instead of the C++ program.
# Exit status: 2 for a usage or input error (nothing is run), 1 when a stage fails.
set -u
RUN_INFER_DEVICE="${RUN_INFER_DEVICE:-Ascend310}"

usage() {
    echo "Usage: bash $(basename "$0") MINDIR_PATH DATASET DATA_PATH [LABEL_FILE] [DEVICE_ID]" >&2
    echo "  DATASET: cifar10 | imagenet | moving_mnist; LABEL_FILE: imagenet label order (.ckpt or" >&2
    echo "  class-name list, '-' = folder names); DEVICE_ID default 0; env CONFIG_PATH overrides" >&2
    echo "  the config chosen by DATASET" >&2
}
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    usage 2>&1
    exit 0
fi
if [ $# -lt 3 ] || [ $# -gt 5 ]; then
    usage
    exit 2
fi

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"  # also when sourced
ROOT="$(dirname "${SCRIPT_DIR}")"
PYTHON="${PYTHON:-python3}"

get_real_path() {
    if [ "${1:0:1}" == "/" ]; then echo "$1"; else realpath -m "${PWD}/$1"; fi
}

MINDIR_PATH="$(get_real_path "$1")"
DATASET="$(echo "$2" | tr '[:upper:]' '[:lower:]')"
DATA_PATH="$(get_real_path "$3")"
LABEL_FILE="${4:--}"
DEVICE_ID="${5:-0}"

case "${DATASET}" in
    cifar10) DEFAULT_CONFIG="${ROOT}/config/cifar10_config_cpu.yaml" ;;
    imagenet|imagefolder) DEFAULT_CONFIG="${ROOT}/config/imagenet_config_cpu.yaml" ;;
    moving_mnist|mmnist) DEFAULT_CONFIG="${ROOT}/config/mmnist_config_cpu.yaml" ;;
    *) echo "error: DATASET must be cifar10, imagenet or moving_mnist, got '$2'" >&2; usage; exit 2 ;;
esac
CONFIG="$(get_real_path "${CONFIG_PATH:-${DEFAULT_CONFIG}}")"

if [ ! -f "${MINDIR_PATH}" ]; then echo "error: MINDIR_PATH ${MINDIR_PATH} is not a file" >&2; exit 2; fi
if [ "${RUN_INFER_DEVICE}" != "CPU" ] && [[ "${MINDIR_PATH,,}" == *.onnx ]]; then
    echo "error: Ascend 310 inference takes a MindIR; run an .onnx model with scripts/run_infer_cpu.sh" >&2
    exit 2
fi
if [ ! -e "${DATA_PATH}" ]; then echo "error: DATA_PATH ${DATA_PATH} does not exist" >&2; exit 2; fi
if [ ! -f "${CONFIG}" ]; then echo "error: config ${CONFIG} not found (set CONFIG_PATH)" >&2; exit 2; fi
if ! [[ "${DEVICE_ID}" =~ ^[0-9]+$ ]]; then echo "error: DEVICE_ID must be a number, got '${DEVICE_ID}'" >&2; exit 2; fi
CLASS_ARGS=()
if [ "${LABEL_FILE}" != "-" ]; then
    LABEL_FILE="$(get_real_path "${LABEL_FILE}")"
    if [ ! -f "${LABEL_FILE}" ]; then echo "error: LABEL_FILE ${LABEL_FILE} is not a file" >&2; exit 2; fi
    if [ "${DATASET}" == "imagenet" ] || [ "${DATASET}" == "imagefolder" ]; then
        CLASS_ARGS=(--class_names_file "${LABEL_FILE}")
    else
        echo "note: LABEL_FILE is only used for imagenet; ignored for ${DATASET}"
    fi
fi

echo "model: ${MINDIR_PATH}"
echo "dataset: ${DATASET}  data: ${DATA_PATH}  config: ${CONFIG}  device: ${RUN_INFER_DEVICE} ${DEVICE_ID}"

# Ascend toolkit environment (CANN), as in the MindSpore model zoo.
ASCEND_HOME=${ASCEND_HOME:-/usr/local/Ascend}
if [ "${RUN_INFER_DEVICE}" != "CPU" ] && [ -d "${ASCEND_HOME}/ascend-toolkit" ]; then
    export PATH=${ASCEND_HOME}/ascend-toolkit/latest/compiler/ccec_compiler/bin:${ASCEND_HOME}/ascend-toolkit/latest/compiler/bin:${PATH}
    export LD_LIBRARY_PATH=${ASCEND_HOME}/driver/lib64:${ASCEND_HOME}/ascend-toolkit/latest/lib64:${LD_LIBRARY_PATH:-}
    export ASCEND_OPP_PATH=${ASCEND_HOME}/ascend-toolkit/latest/opp
    export TBE_IMPL_PATH=${ASCEND_HOME}/ascend-toolkit/latest/opp/built-in/op_impl/ai_core/tbe
    export PYTHONPATH=${TBE_IMPL_PATH}:${PYTHONPATH:-}
fi
export PYTHONPATH="${ROOT}:${PYTHONPATH:-}"

is_dry_run() {
    [ -n "${DRY_RUN:-}" ] && [ "${DRY_RUN}" != "0" ]
}

# show CMD...: print the command as one shell-quoted line ("+ ..."), what DRY_RUN shows
show() {
    local out="+" a
    for a in "$@"; do out+=" $(printf '%q' "$a")"; done
    echo "$out"
}

compile_app() {
    echo "building ascend310_infer ..."
    show env PYTHON="${PYTHON}" bash "${ROOT}/ascend310_infer/build.sh"
    is_dry_run && return 0
    if ! PYTHON="${PYTHON}" bash "${ROOT}/ascend310_infer/build.sh" &> build.log; then
        echo "error: building ascend310_infer failed, see $(pwd)/build.log" >&2
        tail -n 3 build.log >&2
        exit 1
    fi
}

preprocess_data() {
    local cmd=("${PYTHON}" "${ROOT}/preprocess.py" --config_path "${CONFIG}" --data_path "${DATA_PATH}"
               --result_path ./preprocess_Result ${CLASS_ARGS[@]+"${CLASS_ARGS[@]}"})
    show "${cmd[@]}"
    is_dry_run && return 0
    rm -rf ./preprocess_Result
    if ! "${cmd[@]}"; then
        echo "error: preprocess failed" >&2
        exit 1
    fi
}

infer() {
    local runner=("${OUTPUT_DIR:-${ROOT}/ascend310_infer/out}/main")
    if [ "${RUN_INFER_DEVICE}" == "CPU" ]; then
        runner=("${PYTHON}" -m src.infer --device_target CPU)
    fi
    local cmd=("${runner[@]}" --mindir_path="${MINDIR_PATH}" --input0_path=./preprocess_Result/00_data
               --device_id="${DEVICE_ID}" --output_path=./result_Files --time_path=./time_Result)
    echo "running inference ($(basename "${runner[0]}") ${runner[*]:1}) ..."
    show "${cmd[@]}"
    is_dry_run && return 0
    rm -rf ./result_Files ./time_Result
    mkdir -p ./result_Files ./time_Result
    if ! "${cmd[@]}" &> infer.log; then
        echo "error: inference failed, see $(pwd)/infer.log" >&2
        tail -n 3 infer.log >&2
        exit 1
    fi
}

cal_acc() {
    # preprocess.py writes label.npy for a classifier, 01_target/ for ConvLSTM
    local labels=./preprocess_Result/label.npy
    if [ -d ./preprocess_Result/01_target ] || { is_dry_run && [[ "${DATASET}" == *mnist ]]; }; then
        labels=./preprocess_Result/01_target
    fi
    local cmd=("${PYTHON}" "${ROOT}/postprocess.py" --config_path "${CONFIG}" --result_dir ./result_Files
               --label_path "${labels}")
    show "${cmd[@]}"
    is_dry_run && return 0
    if ! "${cmd[@]}" &> acc.log; then
        echo "error: postprocess failed, see $(pwd)/acc.log" >&2
        tail -n 3 acc.log >&2
        exit 1
    fi
}

if is_dry_run; then
    echo "DRY_RUN=${DRY_RUN}: printing the commands only, nothing is run (run from $(pwd))"
fi
if [ "${RUN_INFER_DEVICE}" != "CPU" ]; then
    compile_app
fi
preprocess_data
infer
cal_acc
is_dry_run && exit 0
cat acc.log
cat ./time_Result/test_perform_static.txt
echo "results: $(pwd)/acc.log, latency: $(pwd)/time_Result/test_perform_static.txt"
