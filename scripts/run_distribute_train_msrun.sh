#!/bin/bash
# Data-parallel training with msrun (MindSpore's own launcher) on CPU, GPU or Ascend, one host.
#
# usage: bash scripts/run_distribute_train_msrun.sh DEVICE_TARGET RANK_SIZE CONFIG_PATH DATA_PATH [--key value ...]
#   e.g. bash scripts/run_distribute_train_msrun.sh CPU 2 config/cifar10_config_cpu.yaml ~/data/cifar-10-batches-bin
#        bash scripts/run_distribute_train_msrun.sh GPU 8 config/cifar10_config_gpu.yaml /data/cifar-10-batches-bin
#
# Runs in the foreground until every worker ends (msrun --join=True) and returns msrun's status.
# Rank 0's output is shown on the terminal (and kept in <log dir>/msrun.log); every rank's log is
# <log dir>/worker_N.log, msrun's scheduler log <log dir>/scheduler.log. The log dir is
# <output_dir>/logs/train_msrun_<target> (RUN_DIR=<folder> to choose another); the workers run
# inside it. Environment: MASTER_PORT (default 8118; the scheduler's port on 127.0.0.1),
# CLUSTER_TIME_OUT (seconds to wait for all workers to join, default 300), MSRUN (default msrun),
# DRY_RUN=1 (print the command only). For several hosts run msrun yourself with --worker_num,
# --local_worker_num, --master_addr and --node_rank (the train.py arguments stay the same).
# Workers run the `python` found on PATH: activate the environment with MindSpore first.
#
# Data-parallel semantics (train.py with --run_distribute true, whatever the launcher):
#   * every rank builds the same network with the same --seed, so the initial weights are the same;
#   * the training set is sharded by rank (shard_id = rank, num_shards = RANK_SIZE): one epoch is
#     (samples / RANK_SIZE) / batch_size steps, and --num_samples limits each rank's shard;
#   * --batch_size is per rank: the global batch is batch_size x RANK_SIZE; gradients are averaged
#     over the ranks (DATA_PARALLEL, gradients_mean=True) before every update, so the trainable
#     weights stay identical on all ranks (BatchNorm moving statistics are per rank, and rank 0's
#     are saved);
#   * --lr is the learning rate for that global batch: nothing rescales it. Going from 1 to N
#     ranks at the same batch_size multiplies the global batch by N (raise lr, e.g. linearly, or
#     lower batch_size to keep the single-device behaviour);
#   * only rank 0 writes checkpoints, config.yaml and loss_history.jsonl (in output_dir); every
#     rank prints its own loss lines to its own log.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

LINE="bash scripts/run_distribute_train_msrun.sh DEVICE_TARGET RANK_SIZE CONFIG_PATH DATA_PATH [--key value ...]"
MORE="Data-parallel training with msrun on one host: DEVICE_TARGET is CPU, GPU or Ascend, RANK_SIZE the number of processes (devices). Env: MASTER_PORT (default 8118), CLUSTER_TIME_OUT, RUN_DIR, DRY_RUN."
if wants_help "$@"; then USAGE_STATUS=0 usage "$LINE" "$MORE"; fi
[ $# -ge 4 ] || usage "$LINE" "$MORE"

TARGET="$1"
device_target_or_usage "$LINE" "$TARGET"
RANK_SIZE="$2"
{ is_uint "$RANK_SIZE" && [ "$RANK_SIZE" -ge 1 ]; } || usage "$LINE" "RANK_SIZE must be a positive number of processes, got '$RANK_SIZE'"
MASTER_PORT="${MASTER_PORT:-8118}"
{ is_uint "$MASTER_PORT" && [ "$MASTER_PORT" -ge 1024 ] && [ "$MASTER_PORT" -le 65535 ]; } || \
    die "MASTER_PORT must be a port number in 1024..65535, got '$MASTER_PORT'"
CLUSTER_TIME_OUT="${CLUSTER_TIME_OUT:-300}"
is_uint "$CLUSTER_TIME_OUT" || die "CLUSTER_TIME_OUT must be a number of seconds, got '$CLUSTER_TIME_OUT'"
MSRUN="${MSRUN:-msrun}"
if ! command -v "$MSRUN" >/dev/null 2>&1; then
    die "'$MSRUN' not found on PATH: activate the Python environment with MindSpore >= 2.3 (it installs msrun)"
fi

take_config_and_data "$3" "$4"
shift 4
resolve_extra_args "$@"
ARGS=(--config_path "$CONFIG_PATH" --data_path "$DATA_PATH" --run_distribute true
      --device_target "$TARGET" "${EXTRA_ARGS[@]}")
check_run "train_msrun_$(echo "$TARGET" | tr '[:upper:]' '[:lower:]')" "${ARGS[@]}"
dry_run_banner

if ! is_dry_run && ! "$PYTHON" - "$MASTER_PORT" <<'PY' 2>/dev/null
import socket
import sys

with socket.socket() as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", int(sys.argv[1])))
PY
then
    die "port $MASTER_PORT is in use (another msrun job?): set MASTER_PORT to a free port"
fi

STATUS=0
# a stale RANK_TABLE_FILE from an Ascend shell would make the workers use it instead of msrun
launch fg "$LOG_DIR" "$LOG_DIR/msrun.log" env -u RANK_TABLE_FILE \
    "$MSRUN" --worker_num="$RANK_SIZE" --local_worker_num="$RANK_SIZE" --master_port="$MASTER_PORT" \
    --log_dir="$LOG_DIR" --join=True --cluster_time_out="$CLUSTER_TIME_OUT" --tail_worker_log=0 \
    "$REPO_ROOT/train.py" "${RUN_ARGS[@]}" || STATUS=$?
is_dry_run && exit 0
echo "logs: $LOG_DIR/worker_N.log (N = 0..$((RANK_SIZE - 1))), msrun: $LOG_DIR/scheduler.log"
[ "$STATUS" -eq 0 ] || run_failed "msrun ended with status $STATUS: see the worker logs above"
echo "checkpoints, config.yaml and loss_history.jsonl (rank 0 only): $OUTPUT_DIR"
