#!/bin/bash
# Data-parallel training on Ascend with an HCCL rank table: one train.py process per device of
# this server, started in the background (nohup).
#
# usage: bash scripts/run_distribute_train.sh RANK_TABLE_FILE CONFIG_PATH DATA_PATH [--key value ...]
#   e.g. bash scripts/run_distribute_train.sh /path/hccl_8p.json config/cifar10_config.yaml /data/cifar-10-batches-bin
#
# RANK_TABLE_FILE is the HCCL JSON (made by hccl_tools.py):
#   {"server_list": [{"server_id": "10.0.0.1",
#                     "device": [{"device_id": "0", "device_ip": "...", "rank_id": "0"}, ...]}], ...}
# RANK_SIZE is the number of devices in the whole table (every server). With several servers, run
# this script on each; the server is the one whose server_id is $SERVER_ID or one of this host's
# addresses. Each process gets RANK_TABLE_FILE, RANK_SIZE, RANK_ID and DEVICE_ID from the table and
# runs `train.py --run_distribute true --device_target Ascend`. Logs: <output_dir>/logs/
# train_parallel_ascend/rank_N/log.txt (RUN_DIR=<folder> to choose another folder); each process
# runs inside its rank_N folder. Only rank 0 writes checkpoints, config.yaml and loss_history.jsonl.
# See run_distribute_train_msrun.sh for the data-parallel semantics. DRY_RUN=1 prints one command
# per device and starts nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

LINE="bash scripts/run_distribute_train.sh RANK_TABLE_FILE CONFIG_PATH DATA_PATH [--key value ...]"
MORE="Data-parallel training on the Ascend devices of an HCCL rank table (one background process per device of this server)."
if wants_help "$@"; then USAGE_STATUS=0 usage "$LINE" "$MORE"; fi
[ $# -ge 3 ] || usage "$LINE" "$MORE"

RANK_TABLE="$(abs_path "$1")"
need_python

# Prints "RANK_SIZE n" then "DEVICE_ID RANK_ID" per device of this server; one error line
# (exit 2) otherwise.
read_rank_table() {
    HOST_ADDRESSES="$(hostname -I 2>/dev/null || true) $(hostname 2>/dev/null || true)" \
    "$PYTHON" - "$1" <<'PY'
import json
import os
import sys

path = sys.argv[1]
FORMAT = ('expected the HCCL format {"server_list": [{"server_id": ..., "device": '
          '[{"device_id": "0", "rank_id": "0", ...}, ...]}]}')


def fail(message):
    print(f"error: rank table {path}: {message}", file=sys.stderr)
    sys.exit(2)


if not os.path.isfile(path):
    print(f"error: rank table not found: {path}", file=sys.stderr)
    sys.exit(2)
try:
    with open(path, encoding="utf-8") as f:
        table = json.load(f)
except (ValueError, UnicodeDecodeError) as exc:
    fail(f"not valid JSON ({str(exc).splitlines()[0]})")
servers = table.get("server_list") if isinstance(table, dict) else None
if not isinstance(servers, list) or not servers:
    fail(f"no servers in server_list; {FORMAT}")
count = table.get("server_count")
if count is not None and str(count) != str(len(servers)):
    fail(f"server_count is {count} but server_list has {len(servers)} server(s): regenerate the table")
entries = []  # (server index, device_id, rank_id)
for i, server in enumerate(servers):
    devices = server.get("device") if isinstance(server, dict) else None
    if not isinstance(devices, list) or not devices:
        fail(f"server_list[{i}] has no device list; {FORMAT}")
    for j, dev in enumerate(devices):
        try:
            device, rank = int(dev["device_id"]), int(dev["rank_id"])
        except (TypeError, KeyError, ValueError):
            device = rank = -1
        if device < 0 or rank < 0:
            fail(f"server_list[{i}].device[{j}] needs integer device_id and rank_id >= 0, got {json.dumps(dev)}")
        entries.append((i, device, rank))
ranks = sorted(rank for _, _, rank in entries)
if ranks != list(range(len(entries))):
    fail(f"rank_id values must be 0..{len(entries) - 1}, each once; got {ranks}")
for i in range(len(servers)):
    ids = [d for s, d, _ in entries if s == i]
    if len(set(ids)) != len(ids):
        fail(f"server_list[{i}] lists a device_id twice: {ids}")
if len(servers) == 1:
    local = 0
else:
    names = [str(s.get("server_id", "")) for s in servers]
    wanted = os.environ.get("SERVER_ID", "").split() or os.environ.get("HOST_ADDRESSES", "").split()
    matches = [i for i, name in enumerate(names) if name in wanted]
    if len(matches) != 1:
        fail(f"cannot tell which of the servers {names} this host is: export SERVER_ID=<its server_id>")
    local = matches[0]
print("RANK_SIZE", len(entries))
for s, device, rank in entries:
    if s == local:
        print(device, rank)
PY
}

TABLE_LINES="$(read_rank_table "$RANK_TABLE")" || exit 2
RANK_SIZE="$(echo "$TABLE_LINES" | sed -n '1s/^RANK_SIZE //p')"

take_config_and_data "$2" "$3"
shift 3
resolve_extra_args "$@"
ARGS=(--config_path "$CONFIG_PATH" --data_path "$DATA_PATH" --run_distribute true
      --device_target Ascend "${EXTRA_ARGS[@]}")
check_run train_parallel_ascend "${ARGS[@]}"
dry_run_banner

echo "rank table $RANK_TABLE: RANK_SIZE=$RANK_SIZE, $(($(echo "$TABLE_LINES" | wc -l) - 1)) device(s) on this server"
while read -r device_id rank_id; do
    launch bg "$LOG_DIR/rank_$rank_id" "$LOG_DIR/rank_$rank_id/log.txt" \
        env RANK_TABLE_FILE="$RANK_TABLE" RANK_SIZE="$RANK_SIZE" RANK_ID="$rank_id" \
        DEVICE_ID="$device_id" "$PYTHON" "$REPO_ROOT/train.py" "${RUN_ARGS[@]}"
done < <(echo "$TABLE_LINES" | tail -n +2)

is_dry_run && exit 0
echo "started ${#LAUNCHED_PIDS[@]} process(es) in the background (pids ${LAUNCHED_PIDS[*]})"
echo "logs: $LOG_DIR/rank_N/log.txt   (follow rank 0 with: tail -f $LOG_DIR/rank_0/log.txt)"
echo "checkpoints, config.yaml and loss_history.jsonl (rank 0 only): $OUTPUT_DIR"
