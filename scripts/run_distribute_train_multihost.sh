#!/bin/bash
# Data-parallel training over several hosts (CPU, GPU or Ascend) with MindSpore's dynamic cluster:
# run the same command on every host, changing only HOST_INDEX.
#
# usage: bash scripts/run_distribute_train_multihost.sh DEVICE_TARGET HOST_NUM HOST_INDEX MASTER_ADDR[:PORT] RANKS_PER_HOST CONFIG_PATH DATA_PATH [--key value ...]
#   e.g. 2 hosts x 8 GPUs, host 0 reachable at 10.0.0.1:
#     on host 0: bash scripts/run_distribute_train_multihost.sh GPU 2 0 10.0.0.1:8118 8 config/imagenet_config_gpu.yaml /data/imagenet
#     on host 1: bash scripts/run_distribute_train_multihost.sh GPU 2 1 10.0.0.1:8118 8 config/imagenet_config_gpu.yaml /data/imagenet
#
# What starts where (MindSpore's "dynamic cluster" roles, the ones msrun starts underneath):
#   * host 0 starts the scheduler (MS_ROLE=MS_SCHED), which listens on MASTER_ADDR:PORT (an
#     address of host 0), and its RANKS_PER_HOST workers;
#   * every other host waits until the scheduler answers (at most CLUSTER_TIME_OUT seconds), then
#     starts its RANKS_PER_HOST workers;
#   * worker i of host h is global rank h x RANKS_PER_HOST + i (MS_NODE_ID and RANK_ID) on local
#     device i (DEVICE_ID); RANK_SIZE = HOST_NUM x RANKS_PER_HOST. The training set is sharded by
#     global rank, the seed is the same everywhere, only global rank 0 writes checkpoints,
#     config.yaml and loss_history.jsonl (on host 0). See run_distribute_train_msrun.sh for the
#     data-parallel semantics (global batch = batch_size x RANK_SIZE; --lr is for that batch).
# The scheduler role follows HOST_INDEX, not the address: msrun starts a scheduler on every host
# that owns --master_addr, so it cannot run two "hosts" on one machine (the second scheduler fails
# to bind), which is how this launcher is tested (tests/test_multihost.py).
#
# Runs in the foreground until this host's processes end and returns 0 when all succeeded. The
# terminal shows this host's first rank (MindSpore's INFO/WARNING lines left out); every rank's
# full log is <log dir>/worker_<global rank>.log, the scheduler's <log dir>/scheduler.log; the log
# dir is <output_dir>/logs/train_multihost_<target> (RUN_DIR=<folder> to choose another); the
# processes run inside it. If a rank fails or a host stops, the job stops on every host: the
# scheduler declares a rank lost after MS_NODE_TIMEOUT seconds without its heartbeat (MindSpore's
# default 30), the other ranks are stopped, and each launcher ends with one line saying which rank
# was lost (or, on the other hosts, that the master was lost); restart every host with
# --resume <the newest checkpoint>.
#
# Environment: MASTER_PORT (default 8118; the port when MASTER_ADDR has no :PORT), CLUSTER_TIME_OUT
# (seconds, default 300: how long a host waits for the master, and the scheduler for every rank to
# join; also how long a CPU AllReduce waits for a slower host, MS_CPU_COMM_OP_TIMEOUT), MS_NODE_TIMEOUT
# (see above), RUN_DIR, PYTHON, DRY_RUN=1 (print the commands only).
# Each host needs the same code and environment, the data at DATA_PATH (the whole set: every rank
# reads its own shard of it), host 0's PORT reachable from the others, and output_dir on storage
# every host sees for the checkpoints to resume from. On CPU with measured kernels (conv_impl /
# layer_impl / gate_impl auto) the other ranks also wait there for rank 0's kernel_choices.json:
# share output_dir or give --kernel_choices FILE on every host (GPU / Ascend need neither).
{ # the whole script is read before it runs: editing the file cannot change a running launcher
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

LINE="bash scripts/run_distribute_train_multihost.sh DEVICE_TARGET HOST_NUM HOST_INDEX MASTER_ADDR[:PORT] RANKS_PER_HOST CONFIG_PATH DATA_PATH [--key value ...]"
MORE="Data-parallel training over HOST_NUM hosts: run it on every host with its HOST_INDEX (0..HOST_NUM-1); host 0 runs MindSpore's scheduler on MASTER_ADDR:PORT (one of its addresses). DEVICE_TARGET is CPU, GPU or Ascend; RANKS_PER_HOST the processes (devices) per host. Env: MASTER_PORT (default 8118), CLUSTER_TIME_OUT (default 300 s), MS_NODE_TIMEOUT, RUN_DIR, PYTHON, DRY_RUN."
if wants_help "$@"; then USAGE_STATUS=0 usage "$LINE" "$MORE"; fi
[ $# -ge 7 ] || usage "$LINE" "$MORE"

TARGET="$1"
device_target_or_usage "$LINE" "$TARGET"
HOST_NUM="$2"
{ is_uint "$HOST_NUM" && [ "$HOST_NUM" -ge 1 ]; } || die "HOST_NUM must be the number of hosts (1 or more), got '$HOST_NUM'"
HOST_INDEX="$3"
{ is_uint "$HOST_INDEX" && [ "$HOST_INDEX" -lt "$HOST_NUM" ]; } || \
    die "HOST_INDEX must be this host's index, 0..$((HOST_NUM - 1)) for $HOST_NUM host(s) (0 on the master host), got '$HOST_INDEX'"
MASTER="$4"
MASTER_PORT="${MASTER_PORT:-8118}"
if [[ "$MASTER" =~ ^\[(.+)\]:([0-9]+)$ ]] || [[ "$MASTER" =~ ^([^:]+):([0-9]+)$ ]]; then
    MASTER_ADDR="${BASH_REMATCH[1]}"
    MASTER_PORT="${BASH_REMATCH[2]}"
else
    MASTER_ADDR="${MASTER#[}"
    MASTER_ADDR="${MASTER_ADDR%]}"
fi
[ -n "$MASTER_ADDR" ] || die "MASTER_ADDR must be host 0's address (e.g. 10.0.0.1 or 10.0.0.1:8118), got '$MASTER'"
{ is_uint "$MASTER_PORT" && [ "$MASTER_PORT" -ge 1024 ] && [ "$MASTER_PORT" -le 65535 ]; } || \
    die "the master port must be a port number in 1024..65535, got '$MASTER_PORT'"
RANKS_PER_HOST="$5"
{ is_uint "$RANKS_PER_HOST" && [ "$RANKS_PER_HOST" -ge 1 ]; } || \
    die "RANKS_PER_HOST must be a positive number of processes (devices) per host, got '$RANKS_PER_HOST'"
CLUSTER_TIME_OUT="${CLUSTER_TIME_OUT:-300}"
{ is_uint "$CLUSTER_TIME_OUT" && [ "$CLUSTER_TIME_OUT" -ge 1 ]; } || \
    die "CLUSTER_TIME_OUT must be a number of seconds, got '$CLUSTER_TIME_OUT'"
if [ -n "${MS_NODE_TIMEOUT:-}" ]; then
    { is_uint "$MS_NODE_TIMEOUT" && [ "$MS_NODE_TIMEOUT" -ge 1 ]; } || \
        die "MS_NODE_TIMEOUT must be a number of seconds, got '$MS_NODE_TIMEOUT'"
fi
RANK_SIZE=$((HOST_NUM * RANKS_PER_HOST))
FIRST_RANK=$((HOST_INDEX * RANKS_PER_HOST))

take_config_and_data "$6" "$7"
shift 7
resolve_extra_args "$@"
ARGS=(--config_path "$CONFIG_PATH" --data_path "$DATA_PATH" --run_distribute true
      --device_target "$TARGET" "${EXTRA_ARGS[@]}")
check_run "train_multihost_$(echo "$TARGET" | tr '[:upper:]' '[:lower:]')" "${ARGS[@]}"

# cluster_check resolve|bind|reach ADDR PORT [SECONDS]: one line on stderr and exit 2 on failure.
#   resolve: print ADDR's IP address (MindSpore wants an IP in MS_SCHED_HOST);
#   bind: can the scheduler listen on ADDR:PORT here (host 0)?
#   reach: wait until something listens on ADDR:PORT, at most SECONDS (hosts 1..N-1).
cluster_check() {
    "$PYTHON" - "$@" <<'PY'
import errno
import socket
import sys
import time

mode, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


try:
    ip = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0][4][0]
except OSError as exc:
    fail(f"cannot resolve MASTER_ADDR '{addr}' ({exc.strerror or exc}): give host 0's IP address")
family = socket.AF_INET6 if ":" in ip else socket.AF_INET
if mode == "resolve":
    print(ip)
elif mode == "bind":
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                fail(f"port {port} on {addr} is in use (another job, or host 0 started twice?): "
                     "choose a free port, MASTER_ADDR:PORT, the same on every host")
            if exc.errno == errno.EADDRNOTAVAIL:
                fail(f"MASTER_ADDR {addr} ({ip}) is not an address of this host: run HOST_INDEX 0 on "
                     "the host that owns MASTER_ADDR (its scheduler listens there)")
            fail(f"cannot listen on {addr}:{port} ({exc.strerror or exc})")
else:
    limit = int(sys.argv[4])
    deadline = time.monotonic() + limit
    while True:
        try:
            with socket.create_connection((ip, port), timeout=5):
                break
        except OSError:
            if time.monotonic() >= deadline:
                fail(f"the master {addr}:{port} did not answer within {limit} s (CLUSTER_TIME_OUT): "
                     "start host 0 first, and check MASTER_ADDR:PORT and that the port is open "
                     "between the hosts")
            time.sleep(1)
PY
}

MASTER_IP="$(cluster_check resolve "$MASTER_ADDR" "$MASTER_PORT")" || exit 2
if ! is_dry_run && [ "$HOST_INDEX" -eq 0 ]; then
    cluster_check bind "$MASTER_ADDR" "$MASTER_PORT" || exit 2
fi
dry_run_banner
echo "host $HOST_INDEX of $HOST_NUM: global ranks $FIRST_RANK..$((FIRST_RANK + RANKS_PER_HOST - 1)) of $RANK_SIZE, master $MASTER_ADDR:$MASTER_PORT$([ "$HOST_INDEX" -eq 0 ] && echo " (its scheduler runs here)")"
if ! is_dry_run && [ "$HOST_INDEX" -gt 0 ]; then
    echo "waiting for the master $MASTER_ADDR:$MASTER_PORT (at most $CLUSTER_TIME_OUT s) ..."
    cluster_check reach "$MASTER_ADDR" "$MASTER_PORT" "$CLUSTER_TIME_OUT" || exit 2
fi

# MindSpore's dynamic-cluster variables, the same on every host and role; a stale RANK_TABLE_FILE
# from an Ascend shell would make the workers use it instead. MS_CPU_COMM_OP_TIMEOUT: how long a
# CPU collective (the gradient AllReduce) waits for its peers, 30 s by default in MindSpore: hosts
# that start or compile later than others would fail the first step, so it is CLUSTER_TIME_OUT
# (a rank that died is still found within MS_NODE_TIMEOUT by the heartbeat).
CLUSTER_ENV=(env -u RANK_TABLE_FILE MS_SCHED_HOST="$MASTER_IP" MS_SCHED_PORT="$MASTER_PORT"
             MS_WORKER_NUM="$RANK_SIZE" MS_TOPO_TIMEOUT="$CLUSTER_TIME_OUT" RANK_SIZE="$RANK_SIZE"
             MS_CPU_COMM_OP_TIMEOUT="${MS_CPU_COMM_OP_TIMEOUT:-$CLUSTER_TIME_OUT}")
ROLES=()   # "scheduler" or the global rank, per entry of LAUNCHED_PIDS
LOGS=()
# setsid: each process (and its children) is its own process group, stopped as one
if [ "$HOST_INDEX" -eq 0 ]; then
    launch bg "$LOG_DIR" "$LOG_DIR/scheduler.log" setsid "${CLUSTER_ENV[@]}" MS_ROLE=MS_SCHED RANK_ID=0 \
        "$PYTHON" "$REPO_ROOT/train.py" "${RUN_ARGS[@]}"
    ROLES+=(scheduler)
    LOGS+=("$LOG_DIR/scheduler.log")
fi
for ((local_rank = 0; local_rank < RANKS_PER_HOST; local_rank++)); do
    rank=$((FIRST_RANK + local_rank))
    launch bg "$LOG_DIR" "$LOG_DIR/worker_$rank.log" setsid "${CLUSTER_ENV[@]}" MS_ROLE=MS_WORKER \
        MS_NODE_ID="$rank" RANK_ID="$rank" DEVICE_ID="$local_rank" \
        "$PYTHON" "$REPO_ROOT/train.py" "${RUN_ARGS[@]}"
    ROLES+=("$rank")
    LOGS+=("$LOG_DIR/worker_$rank.log")
done
is_dry_run && exit 0

START=$SECONDS
# this host's first rank on the terminal, without MindSpore's INFO/WARNING lines
FIRST_LOG="$LOG_DIR/worker_$FIRST_RANK.log"
tail -n +1 -F --pid=$$ "$FIRST_LOG" 2>/dev/null > >(grep --line-buffered -v -E '^\[(DEBUG|INFO|WARNING)\] ') &
TAIL_PID=$!

stop_group() {   # stop_group PID: SIGTERM the process group, SIGKILL what is left after 5 s
    kill -TERM -- "-$1" 2>/dev/null || return 0
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        kill -0 -- "-$1" 2>/dev/null || return 0
        sleep 0.5
    done
    kill -KILL -- "-$1" 2>/dev/null || true
}

stop_all() {
    local pid
    for pid in "${LAUNCHED_PIDS[@]}"; do stop_group "$pid"; done
}

on_signal() {
    trap - INT TERM
    [ -n "${STDERR_SAVED:-}" ] || exec 3>&2 2>/dev/null
    stop_all
    kill "$TAIL_PID" 2>/dev/null || true
    wait 2>/dev/null || true
    exec 2>&3 3>&-
    echo "error: interrupted: stopped the ${#LAUNCHED_PIDS[@]} process(es) of host $HOST_INDEX; the other hosts stop within MS_NODE_TIMEOUT (30 s by default); restart every host with --resume <newest checkpoint> to continue" >&2
    exit 130
}
trap on_signal INT TERM

# wait for every process; when a worker fails, stop this host's other workers (as msrun does) but
# let the scheduler run: it tells the other hosts' ranks to stop, then exits. When the cluster
# gives up (a rank or the master lost), MindSpore logs "Kill this process with SIGTERM" in a
# worker and signals it; a worker blocked in a collective (waiting for the lost peer) may not act
# on the signal before MS_CPU_COMM_OP_TIMEOUT, so it is stopped here 5 s later.
declare -A STATUS=() ASKED=()
FIRST_FAILED=""
remaining=("${LAUNCHED_PIDS[@]}")
# bash reports a child killed by a signal ("line N: PID Killed ...") on stderr: not on the terminal
exec 3>&2 2>/dev/null
STDERR_SAVED=1
while [ ${#remaining[@]} -gt 0 ]; do
    sleep 1
    left=()
    for pid in "${remaining[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            left+=("$pid")
            continue
        fi
        status=0
        wait "$pid" 2>/dev/null || status=$?
        STATUS[$pid]=$status
        if [ "$status" -ne 0 ] && [ -z "$FIRST_FAILED" ]; then
            FIRST_FAILED="$pid"
        fi
    done
    remaining=("${left[@]+"${left[@]}"}")
    for i in "${!LAUNCHED_PIDS[@]}"; do
        pid="${LAUNCHED_PIDS[$i]}"
        [ "${ROLES[$i]}" != scheduler ] && [ -z "${STATUS[$pid]:-}" ] || continue
        if [ -z "${ASKED[$pid]:-}" ]; then
            if tail -c 100000 "${LOGS[$i]}" 2>/dev/null | grep -q "Kill this process with SIGTERM"; then
                ASKED[$pid]=$SECONDS
            fi
        elif [ $((SECONDS - ASKED[$pid])) -ge 5 ]; then
            kill -KILL -- "-$pid" 2>/dev/null || true
        fi
    done
    if [ -n "$FIRST_FAILED" ]; then
        for i in "${!LAUNCHED_PIDS[@]}"; do
            pid="${LAUNCHED_PIDS[$i]}"
            if [ "${ROLES[$i]}" != scheduler ] && [ -z "${STATUS[$pid]:-}" ]; then
                stop_group "$pid"
            fi
        done
    fi
done
exec 2>&3 3>&-
STDERR_SAVED=""
sleep 0.5
kill "$TAIL_PID" 2>/dev/null || true
wait "$TAIL_PID" 2>/dev/null || true
ELAPSED=$((SECONDS - START))

if [ -z "$FIRST_FAILED" ]; then
    echo "host $HOST_INDEX: ranks $FIRST_RANK..$((FIRST_RANK + RANKS_PER_HOST - 1)) finished in $ELAPSED s; logs: $LOG_DIR/worker_N.log$([ "$HOST_INDEX" -eq 0 ] && echo ", $LOG_DIR/scheduler.log")"
    if [ "$HOST_INDEX" -eq 0 ]; then
        echo "checkpoints, config.yaml and loss_history.jsonl (global rank 0 only): $OUTPUT_DIR"
    fi
    exit 0
fi

# One line on why the job stopped: a rank MindSpore declared lost (scheduler and worker logs name
# it), a rank's own one-line error, a rank killed by a signal, the master lost, or a rank's status.
STATUSES=()
for i in "${!LAUNCHED_PIDS[@]}"; do STATUSES+=("${ROLES[$i]}=${STATUS[${LAUNCHED_PIDS[$i]}]:-0}"); done
REASON="$("$PYTHON" - "$HOST_INDEX" "$FIRST_FAILED" "$OUTPUT_DIR" "$MASTER_ADDR:$MASTER_PORT" \
    "${LAUNCHED_PIDS[*]}" "${STATUSES[*]}" "${LOGS[@]}" <<'PY'
import glob
import os
import re
import signal
import sys

host, first_pid, out_dir, master = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
pids = sys.argv[5].split()
roles, statuses = zip(*(item.split("=") for item in sys.argv[6].split()))
logs = sys.argv[7:]


def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


texts = [read(p) for p in logs]
resume = ""
if host == 0:
    ckpts = [p for p in glob.glob(os.path.join(out_dir, "checkpoints", "*.ckpt"))
             if not p.endswith(".tmp.ckpt")]
    if ckpts:
        resume = f" --resume {max(ckpts, key=os.path.getmtime)}"
restart = f"restart every host with --resume <newest checkpoint>{' (here:' + resume + ')' if resume else ''}"

# 1. MindSpore's cluster declared ranks lost (node ids are the global ranks)
lost = []
for text in texts:
    for found in re.findall(r"Timed out node list is: \[const vector\]\{([0-9, ]+)\}", text):
        lost += [int(n) for n in found.replace(" ", "").split(",") if n]
    lost += [int(n) for n in re.findall(r"The node: (\d+) is timed out", text)]
lost = sorted(set(lost))
i = pids.index(first_pid)
own_death = roles[i] != "scheduler" and int(roles[i]) in lost  # this host's rank died first
if lost and not own_death:
    ranks = ", ".join(map(str, lost))
    print(f"lost rank {ranks} (no heartbeat for MS_NODE_TIMEOUT s: its process or host stopped); "
          f"the job stopped on every host; {restart}")
    sys.exit()
# 2. the master went away (a worker of another host lost the scheduler)
for role, text in zip(roles, texts):
    if role != "scheduler" and "Retry to reconnect to the meta server" in text \
            and "Kill this process with SIGTERM" in text:
        print(f"rank {role} lost the master {master} (host 0 stopped or unreachable); {restart}")
        sys.exit()
# 3. the first process that failed: its own one-line error, a signal, or its status
role, status, text = roles[i], int(statuses[i]), texts[i]
who = "the scheduler" if role == "scheduler" else f"rank {role}"
errors = [line[len("error: "):] for line in text.splitlines() if line.startswith("error: ")]
if errors:
    print(f"{who}: {errors[-1]} (log: {logs[i]})")
elif status > 128:
    try:
        name = signal.Signals(status - 128).name
    except ValueError:
        name = f"signal {status - 128}"
    print(f"{who} was stopped by {name} on host {host}; the job stops on every host; {restart}")
else:
    print(f"{who} failed (exit status {status}): see {logs[i]}; the job stops on every host")
PY
)" || REASON="a process failed: see the logs in $LOG_DIR"
run_failed "$REASON"
exit
}
