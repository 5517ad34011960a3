#!/bin/bash
# Data-parallel training on the GPUs of one host with OpenMPI (mpirun), in the background (nohup).
#
# usage: bash scripts/run_distribute_train_gpu.sh RANK_SIZE CONFIG_PATH DATA_PATH [--key value ...]
#   e.g. bash scripts/run_distribute_train_gpu.sh 8 config/cifar10_config_gpu.yaml /data/cifar-10-batches-bin
#
# Starts `mpirun -n RANK_SIZE ... python train.py --run_distribute true --device_target GPU`; each
# rank uses the GPU of its local rank (CUDA_VISIBLE_DEVICES chooses which GPUs are seen). Logs:
# <log dir>/log.txt (mpirun's merged output) and <log dir>/mpi_log/1/rank.N/stdout per rank; the
# log dir is <output_dir>/logs/train_parallel_gpu (RUN_DIR=<folder> to choose another). Without
# OpenMPI use scripts/run_distribute_train_msrun.sh GPU RANK_SIZE ... instead. MPIRUN=<path> picks
# another mpirun; DRY_RUN=1 prints the command only. Data-parallel semantics: see
# run_distribute_train_msrun.sh.
#
# Several hosts: HOSTFILE=<OpenMPI hostfile> spreads the RANK_SIZE ranks over its hosts (one line
# per host, "10.0.0.1 slots=8"); run it on ONE host only (mpirun starts the other hosts' ranks over
# passwordless ssh), e.g. for 2 hosts x 8 GPUs:
#   HOSTFILE=/path/hostfile bash scripts/run_distribute_train_gpu.sh 16 config/imagenet_config_gpu.yaml /data/imagenet
# Every host needs the same OpenMPI, NCCL, Python environment and code at the same paths, and the
# data at DATA_PATH; PATH and LD_LIBRARY_PATH of this shell are passed to every rank (-x). Without
# ssh between the hosts use scripts/run_distribute_train_multihost.sh (run on each host).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

LINE="bash scripts/run_distribute_train_gpu.sh RANK_SIZE CONFIG_PATH DATA_PATH [--key value ...]"
MORE="Data-parallel training on RANK_SIZE GPUs of this host with mpirun (OpenMPI), in the background."
if wants_help "$@"; then USAGE_STATUS=0 usage "$LINE" "$MORE"; fi
[ $# -ge 3 ] || usage "$LINE" "$MORE"
RANK_SIZE="$1"
{ is_uint "$RANK_SIZE" && [ "$RANK_SIZE" -ge 1 ]; } || usage "$LINE" "RANK_SIZE must be a positive number of GPUs, got '$RANK_SIZE'"
MPIRUN="${MPIRUN:-mpirun}"
if ! command -v "$MPIRUN" >/dev/null 2>&1 && ! is_dry_run; then
    die "'$MPIRUN' not found: install OpenMPI (e.g. apt-get install openmpi-bin) or use scripts/run_distribute_train_msrun.sh GPU $RANK_SIZE CONFIG_PATH DATA_PATH"
fi

HOST_ARGS=()
if [ -n "${HOSTFILE:-}" ]; then
    HOSTFILE="$(abs_path "$HOSTFILE")"
    need_file "HOSTFILE" "$HOSTFILE"
    # hosts and slots of an OpenMPI hostfile ("host [slots=N] ..."; # comments)
    read -r HOSTS SLOTS COUNTED < <(awk '{sub(/#.*/, "")} NF {hosts++; if (match($0, /slots=[0-9]+/)) slots += substr($0, RSTART + 6, RLENGTH - 6); else unknown = 1} END {print hosts + 0, slots + 0, unknown ? "no" : "yes"}' "$HOSTFILE")
    [ "$HOSTS" -gt 0 ] || die "HOSTFILE $HOSTFILE lists no host: one line per host, e.g. '10.0.0.1 slots=8'"
    if [ "$COUNTED" = yes ] && [ "$SLOTS" -lt "$RANK_SIZE" ]; then
        die "HOSTFILE $HOSTFILE has $SLOTS slot(s) on $HOSTS host(s), fewer than RANK_SIZE=$RANK_SIZE: raise slots= or lower RANK_SIZE"
    fi
    HOST_ARGS=(--hostfile "$HOSTFILE" -x PATH -x LD_LIBRARY_PATH)
fi

take_config_and_data "$2" "$3"
shift 3
resolve_extra_args "$@"
ARGS=(--config_path "$CONFIG_PATH" --data_path "$DATA_PATH" --run_distribute true
      --device_target GPU "${EXTRA_ARGS[@]}")
check_run train_parallel_gpu "${ARGS[@]}"
dry_run_banner

launch bg "$LOG_DIR" "$LOG_DIR/log.txt" \
    "$MPIRUN" -n "$RANK_SIZE" "${HOST_ARGS[@]+"${HOST_ARGS[@]}"}" --allow-run-as-root \
    --output-filename "$LOG_DIR/mpi_log" --merge-stderr-to-stdout "$PYTHON" "$REPO_ROOT/train.py" "${RUN_ARGS[@]}"
is_dry_run && exit 0
echo "mpirun started in the background (pid ${LAUNCHED_PIDS[*]}) with $RANK_SIZE rank(s)${HOSTFILE:+ on the hosts of $HOSTFILE}"
echo "logs: $LOG_DIR/log.txt (all ranks), $LOG_DIR/mpi_log/1/rank.N/stdout (one per rank)"
echo "   follow them with: tail -f $LOG_DIR/log.txt"
echo "checkpoints, config.yaml and loss_history.jsonl (rank 0 only): $OUTPUT_DIR"
