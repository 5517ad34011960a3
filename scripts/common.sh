#!/bin/bash
# Shared helpers of the launchers in scripts/ (sourced by them, never run on its own).
#
# Conventions of every launcher:
#   * runs from any directory: the repository root is found from the script's own path;
#   * relative paths (positional arguments, and the values of the path options --data_path,
#     --eval_data_path, --output_dir, --resume, --pre_trained, --ckpt_file, --result_dir among the
#     extra arguments) are resolved against the directory you call the launcher from;
#   * the config and the extra `--key value` arguments are checked by the repo's own config parser
#     before anything starts (unknown key, wrong type -> one line, exit 2);
#   * a relative output_dir in the config is relative to the repository root (as when running
#     `python train.py` from there); logs go to <output_dir>/logs/<launcher>/... unless RUN_DIR is
#     set; each process runs inside its own log folder (Ascend writes kernel_meta/ etc. there);
#   * extra `--key value` arguments are passed through to train.py / eval.py after the launcher's
#     own ones, so they win;
#   * environment knobs: DRY_RUN=1 prints the commands instead of running them (nothing is created);
#     RUN_DIR=<folder> sets the log folder; PYTHON=<interpreter> (default: python on PATH);
#   * exit status: 2 for a usage or input error (one line on stderr, nothing started; the same
#     status as train.py / eval.py give for bad input), 1 when the started run itself failed.

set -euo pipefail

SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(dirname "$SCRIPTS_DIR")"
CALLER_PWD="$(pwd)"
PYTHON="${PYTHON:-python}"
PATH_KEYS=" data_path eval_data_path output_dir resume pre_trained ckpt_file result_dir "
EXTRA_ARGS=()
LAUNCHED_PIDS=()

# die MESSAGE: a usage or input error, found before anything started: one line, exit 2
die() {
    echo "error: $*" >&2
    exit 2
}

# run_failed MESSAGE: the started training / evaluation failed: one line, exit 1
run_failed() {
    echo "error: $*" >&2
    exit 1
}

# usage "<usage line>" "<more text>": print to stderr and exit 2 (exit 0 for -h/--help)
usage() {
    if [ "${USAGE_STATUS:-1}" = 0 ]; then
        echo "usage: $1"
        [ $# -lt 2 ] || echo "$2"
        exit 0
    fi
    echo "usage: $1" >&2
    [ $# -lt 2 ] || echo "$2" >&2
    exit 2
}

# wants_help "$@": true when the first argument is -h or --help
wants_help() {
    [ $# -gt 0 ] && { [ "$1" = "-h" ] || [ "$1" = "--help" ]; }
}

is_dry_run() {
    [ -n "${DRY_RUN:-}" ] && [ "${DRY_RUN}" != "0" ]
}

is_uint() {
    [[ "${1:-}" =~ ^[0-9]+$ ]]
}

# device_target_or_usage "<usage line>" TARGET: usage error unless TARGET is CPU, GPU or Ascend
device_target_or_usage() {
    case "$2" in
        CPU|GPU|Ascend) ;;
        *) usage "$1" "DEVICE_TARGET must be CPU, GPU or Ascend, got '$2'" ;;
    esac
}

# abs_path PATH: absolute, normalised path (relative to the caller's directory; ~ expanded).
# The path need not exist.
abs_path() {
    local p="$1"
    case "$p" in
        "~") p="$HOME" ;;
        "~/"*) p="$HOME/${p#\~/}" ;;
    esac
    [[ "$p" = /* ]] || p="$CALLER_PWD/$p"
    realpath -m -s -- "$p" 2>/dev/null || echo "$p"
}

need_file() {   # need_file WHAT PATH
    [ -f "$2" ] || die "$1 not found (or not a file): $2"
}

need_path() {   # need_path WHAT PATH
    [ -e "$2" ] || die "$1 not found: $2"
}

need_python() {
    command -v "$PYTHON" >/dev/null 2>&1 || \
        die "'$PYTHON' not found on PATH: activate the Python environment that has MindSpore"
}

# resolve_extra_args ARGS...: copy the extra --key value arguments into EXTRA_ARGS, making the
# values of path keys absolute. Anything that is not an option is an error.
resolve_extra_args() {
    EXTRA_ARGS=()
    local arg key val
    while [ $# -gt 0 ]; do
        arg="$1"
        shift
        case "$arg" in
            --help)
                die "to list train.py's options run: python $REPO_ROOT/train.py --config_path CONFIG_PATH --help" ;;
            --config_path|--config_path=*|--config-path|--config-path=*)
                die "give the config as the CONFIG_PATH argument, not as $arg" ;;
            --?*=*)
                key="${arg%%=*}"
                key="${key#--}"
                val="${arg#*=}"
                if [[ "$PATH_KEYS" == *" ${key//-/_} "* ]] && [ -n "$val" ]; then
                    val="$(abs_path "$val")"
                fi
                EXTRA_ARGS+=("--$key=$val") ;;
            --?*)
                EXTRA_ARGS+=("$arg")
                if [ $# -gt 0 ] && [[ "$1" != --?* ]]; then
                    val="$1"
                    shift
                    key="${arg#--}"
                    if [[ "$PATH_KEYS" == *" ${key//-/_} "* ]] && [ -n "$val" ]; then
                        val="$(abs_path "$val")"
                    fi
                    EXTRA_ARGS+=("$val")
                fi ;;
            *)
                die "unexpected argument '$arg': extra options are --key value pairs (python train.py --help lists the keys)" ;;
        esac
    done
}

# config_output_dir ARGS...: check train.py/eval.py arguments (--config_path FILE --key value ...)
# with the repo's own parser (one line on error, exit 2) and print the absolute output_dir; a
# relative output_dir is relative to the repository root, as when train.py runs from there.
config_output_dir() {
    (cd "$REPO_ROOT" && "$PYTHON" - "$@" <<'PY'
import os
import sys

sys.path.insert(0, os.getcwd())
from src.model_utils.config import get_config  # no MindSpore import: fast
from src.model_utils.errors import UserError

try:
    cfg = get_config(sys.argv[1:])
except UserError as exc:
    print(f"error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
    sys.exit(2)
print(os.path.abspath(os.path.expanduser(cfg.output_dir)))
PY
    ) || exit 2
}

# check_run NAME ARGS...: check the arguments (see config_output_dir); sets OUTPUT_DIR, LOG_DIR
# (RUN_DIR when set, else <output_dir>/logs/NAME) and RUN_ARGS = ARGS + --output_dir OUTPUT_DIR:
# the processes run inside LOG_DIR, where a relative output_dir of the config would land
# otherwise, so they get the absolute one the launcher reports.
check_run() {
    local name="$1"
    shift
    need_python
    OUTPUT_DIR="$(config_output_dir "$@")"
    RUN_ARGS=("$@" --output_dir "$OUTPUT_DIR")
    if [ -n "${RUN_DIR:-}" ]; then
        LOG_DIR="$(abs_path "$RUN_DIR")"
    else
        LOG_DIR="$OUTPUT_DIR/logs/$name"
    fi
}

# take_config_and_data CONFIG_PATH DATA_PATH: set CONFIG_PATH / DATA_PATH (absolute, must exist)
take_config_and_data() {
    CONFIG_PATH="$(abs_path "$1")"
    DATA_PATH="$(abs_path "$2")"
    need_file "config file" "$CONFIG_PATH"
    need_path "data path" "$DATA_PATH"
}

# quote_cmd ARGS...: the command as one shell-quoted line (what DRY_RUN prints)
quote_cmd() {
    local out="" a
    for a in "$@"; do
        out+="$(printf '%q' "$a") "
    done
    echo "${out% }"
}

# launch fg|bg WORKDIR LOGFILE CMD...: run CMD inside WORKDIR with its output in LOGFILE.
# fg: in the foreground, output also on the terminal (tee); returns CMD's status.
# bg: in the background under nohup; the pid is appended to LAUNCHED_PIDS.
# The command is printed first ("+ cd ... && ..."); with DRY_RUN nothing else happens.
launch() {
    local mode="$1" workdir="$2" log="$3"
    shift 3
    local shown
    shown="+ cd $(printf '%q' "$workdir") && $(quote_cmd "$@")"
    if [ "$mode" = bg ]; then
        shown+=" > $(printf '%q' "$log") 2>&1 &"
    else
        shown+=" 2>&1 | tee $(printf '%q' "$log")"
    fi
    echo "$shown"
    is_dry_run && return 0
    mkdir -p "$workdir" "$(dirname "$log")"
    if [ "$mode" = bg ]; then
        (cd "$workdir" && exec nohup "$@" < /dev/null > "$log" 2>&1) &
        LAUNCHED_PIDS+=("$!")
    else
        local status=0
        (cd "$workdir" && exec "$@" < /dev/null) 2>&1 | tee "$log" || status=$?
        return "$status"
    fi
}

dry_run_banner() {
    if is_dry_run; then
        echo "DRY_RUN=$DRY_RUN: printing the commands only, nothing is started"
    fi
}

# ------------------------------------------------------------------ launchers with one process
# train_one_main TARGET SCRIPT ARGS...: body of run_train_cpu.sh / run_standalone_train*.sh.
# CPU: CONFIG_PATH DATA_PATH [--key value ...], foreground (output on the terminal and in the log).
# GPU/Ascend: CONFIG_PATH DATA_PATH [DEVICE_ID] [--key value ...], background (nohup).
train_one_main() {
    local target="$1" script="$2" name device_id=0 line
    shift 2
    if [ "$target" = CPU ]; then
        line="bash scripts/$script CONFIG_PATH DATA_PATH [--key value ...]"
        name=train_cpu
    else
        line="bash scripts/$script CONFIG_PATH DATA_PATH [DEVICE_ID] [--key value ...]"
        name="train_$(echo "$target" | tr '[:upper:]' '[:lower:]')"
    fi
    local more="Train on $target$([ "$target" = CPU ] && echo " in the foreground" || echo " in the background (device DEVICE_ID, default 0)"); log in <output_dir>/logs/$name/log.txt (or RUN_DIR)."
    if wants_help "$@"; then USAGE_STATUS=0 usage "$line" "$more"; fi
    [ $# -ge 2 ] || usage "$line" "$more"
    take_config_and_data "$1" "$2"
    shift 2
    if [ "$target" != CPU ] && [ $# -gt 0 ] && [[ "$1" != --* ]]; then
        is_uint "$1" || usage "$line" "DEVICE_ID must be a device number, got '$1'"
        device_id="$1"
        shift
    fi
    resolve_extra_args "$@"
    local args=(--config_path "$CONFIG_PATH" --data_path "$DATA_PATH" --device_target "$target")
    [ "$target" = CPU ] || args+=(--device_id "$device_id")
    args+=("${EXTRA_ARGS[@]}")
    check_run "$name" "${args[@]}"
    dry_run_banner
    local log="$LOG_DIR/log.txt"
    if [ "$target" = CPU ]; then
        local status=0
        launch fg "$LOG_DIR" "$log" "$PYTHON" "$REPO_ROOT/train.py" "${RUN_ARGS[@]}" || status=$?
        is_dry_run && return 0
        [ "$status" -eq 0 ] || run_failed "training failed (exit status $status): see $log"
        echo "log: $log"
        echo "checkpoints, config.yaml and loss_history.jsonl: $OUTPUT_DIR"
    else
        launch bg "$LOG_DIR" "$log" env DEVICE_ID="$device_id" RANK_ID=0 RANK_SIZE=1 \
            "$PYTHON" "$REPO_ROOT/train.py" "${RUN_ARGS[@]}"
        is_dry_run && return 0
        echo "training started in the background (pid ${LAUNCHED_PIDS[*]}) on $target device $device_id"
        echo "log: $log   (follow it with: tail -f $log)"
        echo "checkpoints, config.yaml and loss_history.jsonl: $OUTPUT_DIR"
    fi
}

# eval_main TARGET SCRIPT ARGS...: body of run_eval*.sh, in the foreground.
# CONFIG_PATH DATA_PATH CKPT_FILE [DEVICE_ID] [--key value ...] (no DEVICE_ID on CPU).
# DATA_PATH is the evaluation data (passed as --eval_data_path); CKPT_FILE a .ckpt or a folder
# (its newest .ckpt).
eval_main() {
    local target="$1" script="$2" name device_id=0 line
    shift 2
    name="eval_$(echo "$target" | tr '[:upper:]' '[:lower:]')"
    if [ "$target" = CPU ]; then
        line="bash scripts/$script CONFIG_PATH DATA_PATH CKPT_FILE [--key value ...]"
    else
        line="bash scripts/$script CONFIG_PATH DATA_PATH CKPT_FILE [DEVICE_ID] [--key value ...]"
    fi
    local more="Evaluate CKPT_FILE (a .ckpt, or a folder: its newest .ckpt) on the evaluation data DATA_PATH on $target; log in <output_dir>/logs/$name/log.txt (or RUN_DIR), metrics.json beside the checkpoints' run."
    if wants_help "$@"; then USAGE_STATUS=0 usage "$line" "$more"; fi
    [ $# -ge 3 ] || usage "$line" "$more"
    take_config_and_data "$1" "$2"
    local ckpt
    ckpt="$(abs_path "$3")"
    need_path "checkpoint" "$ckpt"
    shift 3
    if [ "$target" != CPU ] && [ $# -gt 0 ] && [[ "$1" != --* ]]; then
        is_uint "$1" || usage "$line" "DEVICE_ID must be a device number, got '$1'"
        device_id="$1"
        shift
    fi
    resolve_extra_args "$@"
    local args=(--config_path "$CONFIG_PATH" --eval_data_path "$DATA_PATH" --ckpt_file "$ckpt"
                --device_target "$target")
    [ "$target" = CPU ] || args+=(--device_id "$device_id")
    args+=("${EXTRA_ARGS[@]}")
    check_run "$name" "${args[@]}"
    dry_run_banner
    local log="$LOG_DIR/log.txt" status=0
    local cmd=("$PYTHON" "$REPO_ROOT/eval.py" "${RUN_ARGS[@]}")
    [ "$target" = CPU ] || cmd=(env DEVICE_ID="$device_id" RANK_ID=0 RANK_SIZE=1 "${cmd[@]}")
    launch fg "$LOG_DIR" "$log" "${cmd[@]}" || status=$?
    is_dry_run && return 0
    [ "$status" -eq 0 ] || run_failed "evaluation failed (exit status $status): see $log"
    echo "log: $log"
}
