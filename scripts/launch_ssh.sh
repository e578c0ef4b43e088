#!/usr/bin/env bash
# Runs one batch on several machines over ssh: the sink and the ventilator on the first host of
# HOSTS_FILE, workers on the others (or on the head too when the file names only one host).
# taskfarm must be installed at the same place on every host (a package from `cpack`, a folder
# from scripts/bundle.sh, or PATH); ssh must log in without a password (keys, BatchMode).
#
# Usage: scripts/launch_ssh.sh [options] HOSTS_FILE [--] VENTILATOR_ARGS...
#   e.g. scripts/launch_ssh.sh hosts.txt --job examples/demo.json
#        scripts/launch_ssh.sh --dry-run --worker-args "--device cuda" hosts.txt --kernel saxpy --tasks 1000 --size 1048576
#
# HOSTS_FILE: one host per line ([user@]host[:ssh-port]), optionally followed by how many workers
# to start there (default --workers-per-host); '#' starts a comment. Example:
#     head.cluster          # sink + ventilator
#     gpu1   4              # four workers (e.g. one per GPU with --per-gpu)
#     alice@cpu7
#
# Options:
#   --dry-run             print the commands that would run, one per line, and run nothing
#   --prefix DIR          taskfarm is in DIR/bin on every host (default: found on PATH)
#   --head-address ADDR   address workers use to reach the head (default: its name in HOSTS_FILE)
#   --port-base P         ventilator P, sink results P+1, control P+2 (default 5557)
#   --workers-per-host N  workers on each worker host (default 1)
#   --per-gpu             worker i on a host runs on GPU i (--device cuda:i)
#   --worker-args "ARGS"  extra worker flags, e.g. "--threads 8" (word-split)
#   --report FILE         report path on the head (default taskfarm-report.json, in the ssh home)
#   --log-dir DIR         local folder for every process's output (default ./taskfarm-logs)
#   --ssh-option OPT      extra ssh option, repeatable (e.g. --ssh-option "-i ~/.ssh/farm")
#
# Exit code: the ventilator's (0 all tasks ok, 2 some failed, 1 setup error, 130 interrupted);
# 1 with a one-line message for an unreadable hosts file or a host ssh cannot reach.
set -euo pipefail

me=$(basename "$0")
die() { echo "$me: $*" >&2; exit 1; }

dry_run=0 prefix="" head_address="" port_base=5557 per_host=1 per_gpu=0 worker_args=""
report=taskfarm-report.json log_dir=./taskfarm-logs hosts_file=""
ssh_opts=(-o ConnectTimeout=5 -o BatchMode=yes)
ssh_cmd=${TASKFARM_SSH:-ssh}  # tests substitute a local stand-in

while (($#)); do
  case $1 in
    --dry-run) dry_run=1 ;;
    --prefix) prefix=${2:?--prefix needs a folder}; shift ;;
    --head-address) head_address=${2:?--head-address needs an address}; shift ;;
    --port-base) port_base=${2:?--port-base needs a port}; shift ;;
    --workers-per-host) per_host=${2:?--workers-per-host needs a number}; shift ;;
    --per-gpu) per_gpu=1 ;;
    --worker-args) worker_args=${2?--worker-args needs flags}; shift ;;
    --report) report=${2:?--report needs a file}; shift ;;
    --log-dir) log_dir=${2:?--log-dir needs a folder}; shift ;;
    --ssh-option) ssh_opts+=(${2:?--ssh-option needs an option}); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    -*) [ -z "$hosts_file" ] && die "unknown option '$1' (see --help)"; break ;;
    *) if [ -z "$hosts_file" ]; then hosts_file=$1; else break; fi ;;
  esac
  shift
done
[ -n "$hosts_file" ] || die "no hosts file (usage: $me [options] HOSTS_FILE [--] VENTILATOR_ARGS...)"
vent_args=("$@")
((${#vent_args[@]})) || die "no batch to run: give ventilator flags, e.g. --job FILE or --kernel K --tasks N --size S"
[[ $port_base =~ ^[0-9]+$ ]] && ((port_base > 0 && port_base < 65534)) || die "invalid --port-base '$port_base'"
[[ $per_host =~ ^[0-9]+$ ]] && ((per_host >= 1)) || die "invalid --workers-per-host '$per_host'"

# ---- hosts file
[ -f "$hosts_file" ] && [ -r "$hosts_file" ] || die "cannot read hosts file '$hosts_file'"
hosts=() counts=()
lineno=0
while IFS= read -r line || [ -n "$line" ]; do
  lineno=$((lineno + 1))
  line=${line%%#*}
  read -r host count extra <<<"$line" || true
  [ -n "${host:-}" ] || continue
  [ -z "${extra:-}" ] || die "$hosts_file:$lineno: expected 'HOST [WORKERS]', got '$line'"
  [[ $host =~ ^([A-Za-z0-9._-]+@)?[A-Za-z0-9._-]+(:[0-9]+)?$ ]] || die "$hosts_file:$lineno: invalid host '$host'"
  [ -z "${count:-}" ] || [[ $count =~ ^[1-9][0-9]*$ ]] || die "$hosts_file:$lineno: invalid worker count '$count'"
  hosts+=("$host")
  counts+=("${count:-$per_host}")
done <"$hosts_file"
((${#hosts[@]})) || die "hosts file '$hosts_file' names no host"

head=${hosts[0]}
worker_hosts=("${hosts[@]:1}") worker_counts=("${counts[@]:1}")
if ((${#worker_hosts[@]} == 0)); then  # one machine: it runs the workers too
  worker_hosts=("$head") worker_counts=("${counts[0]}")
fi
name_of() { local h=${1#*@}; echo "${h%%:*}"; }             # user@host:port -> host
[ -n "$head_address" ] || head_address=$(name_of "$head")
tasks_port=$port_base results_port=$((port_base + 1)) control_port=$((port_base + 2))
bin=""
[ -z "$prefix" ] || bin="${prefix%/}/bin/"

# ---- commands
quote() { local out="" a; for a in "$@"; do out+="${out:+ }$(printf '%q' "$a")"; done; echo "$out"; }
# ssh argv for running `remote command` on host (user@host:port split for ssh).
ssh_argv() {
  local host=$1 port=""
  [[ $host == *:* ]] && port=${host##*:} host=${host%:*}
  SSH_ARGV=("$ssh_cmd" "${ssh_opts[@]}")
  [ -z "$port" ] || SSH_ARGV+=(-p "$port")
  SSH_ARGV+=("$host")
}
remote() {  # remote HOST ARGS... : sets CMD to the local argv; the remote side gets one string
  local host=$1; shift
  ssh_argv "$host"
  CMD=("${SSH_ARGV[@]}" "exec $(quote "$@")")
}

# A local job file is copied to the head (its ssh home) before the run.
job_upload=""
for i in "${!vent_args[@]}"; do
  a=${vent_args[$i]}
  if [ "$a" = --job ] && ((i + 1 < ${#vent_args[@]})); then
    job_local=${vent_args[$((i + 1))]}
    [ -r "$job_local" ] || die "cannot read job file '$job_local'"
    job_upload="taskfarm-job-$(basename "$job_local")"
    vent_args[$((i + 1))]=$job_upload
  elif [[ $a == --job=* ]]; then
    job_local=${a#--job=}
    [ -r "$job_local" ] || die "cannot read job file '$job_local'"
    job_upload="taskfarm-job-$(basename "$job_local")"
    vent_args[$i]="--job=$job_upload"
  fi
done

remote "$head" "${bin}taskfarm-sink" --bind "$results_port" --control "$control_port" --report "$report"
sink_cmd=("${CMD[@]}")
remote "$head" "${bin}taskfarm-ventilator" --bind "$tasks_port" \
  --sink-results "localhost:$results_port" --sink-control "localhost:$control_port" "${vent_args[@]}"
vent_cmd=("${CMD[@]}")
worker_cmds=() worker_names=()
# shellcheck disable=SC2206  # --worker-args is a list of flags on purpose
extra_worker_args=($worker_args)
for i in "${!worker_hosts[@]}"; do
  h=${worker_hosts[$i]}
  for ((k = 0; k < ${worker_counts[$i]}; k++)); do
    id="$(name_of "$h")-$k"
    args=("${bin}taskfarm-worker" --ventilator "$head_address:$tasks_port"
          --sink-results "$head_address:$results_port" --sink-control "$head_address:$control_port"
          --id "$id")
    ((per_gpu)) && args+=(--device "cuda:$k")
    remote "$h" "${args[@]}" "${extra_worker_args[@]}"
    worker_cmds+=("$(quote "${CMD[@]}")")
    worker_names+=("$id")
  done
done

# A command as one would type it: ssh options quoted, the remote command in single quotes.
sq() { local s=$1 q="'"; echo "'${s//$q/$q\\$q$q}'"; }  # single-quoted for a shell
display() {
  local argv=("$@")
  local n=$((${#argv[@]} - 1))
  echo "$(quote "${argv[@]:0:n}") $(sq "${argv[n]}")"
}

if ((dry_run)); then
  echo "# head $head: sink and ventilator; ${#worker_cmds[@]} workers; report $head:$report"
  if [ -n "$job_upload" ]; then
    ssh_argv "$head"
    echo "$(display "${SSH_ARGV[@]}" "cat > $(quote "$job_upload")") < $(quote "$job_local")"
  fi
  echo "$(display "${sink_cmd[@]}") &"
  for c in "${worker_cmds[@]}"; do eval "set -- $c"; echo "$(display "$@") &"; done
  display "${vent_cmd[@]}"
  exit 0
fi

# ---- reachability: every host, in parallel, before starting anything
unique_hosts=($(printf '%s\n' "${hosts[@]}" | awk '!seen[$0]++'))
check_dir=$(mktemp -d)
trap 'rm -rf "$check_dir"' EXIT
for h in "${unique_hosts[@]}"; do
  ssh_argv "$h"
  f="$check_dir/${h//\//_}"
  ("${SSH_ARGV[@]}" true </dev/null >"$f" 2>&1 && echo 0 >"$f.rc" || echo 1 >"$f.rc") &
done
wait
for h in "${unique_hosts[@]}"; do
  if [ "$(cat "$check_dir/${h//\//_}.rc")" != 0 ]; then
    why=$(grep -v '^$' "$check_dir/${h//\//_}" | tail -n 1)
    die "cannot reach host '$h' over ssh (ConnectTimeout=5, BatchMode): ${why:-no reason given}"
  fi
done

# ---- run
mkdir -p "$log_dir"
if [ -n "$job_upload" ]; then
  ssh_argv "$head"
  "${SSH_ARGV[@]}" "cat > $(quote "$job_upload")" <"$job_local" || die "cannot copy '$job_local' to $head"
fi
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$check_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# -tt: closing the ssh session hangs up the remote program, so nothing outlives this script.
"${sink_cmd[@]:0:1}" -tt "${sink_cmd[@]:1}" </dev/null >"$log_dir/sink.log" 2>&1 &
pids+=($!)
for i in "${!worker_cmds[@]}"; do
  eval "set -- ${worker_cmds[$i]}"
  "$1" -tt "${@:2}" </dev/null >"$log_dir/worker-${worker_names[$i]}.log" 2>&1 &
  pids+=($!)
done
echo "$me: sink on $head, ${#worker_cmds[@]} workers on ${#worker_hosts[@]} hosts; logs in $log_dir" >&2
set +e
"${vent_cmd[@]:0:1}" -tt "${vent_cmd[@]:1}" </dev/null 2>&1 | tee "$log_dir/ventilator.log"
rc=${PIPESTATUS[0]}
set -e
# The sink exits once the batch is reported; give it a moment to print its table.
for _ in $(seq 50); do kill -0 "${pids[0]}" 2>/dev/null || break; sleep 0.2; done
cat "$log_dir/sink.log"
ssh_argv "$head"
if "${SSH_ARGV[@]}" "cat $(quote "$report")" </dev/null >"$log_dir/report.json" 2>/dev/null; then
  echo "$me: ventilator exit code $rc; report in $log_dir/report.json (and $head:$report)" >&2
else
  echo "$me: ventilator exit code $rc; no report on $head:$report" >&2
fi
exit "$rc"
