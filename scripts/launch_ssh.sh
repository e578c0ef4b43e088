#!/usr/bin/env bash
# Runs one batch on several machines over ssh: the sink and the ventilator on the first host of
# HOSTS_FILE, workers on the others (or on the head too when the file names only one host).
# taskfarm must be installed at the same place on every host (a package from `cpack`, a folder
# from scripts/bundle.sh, or PATH); ssh must log in without a password (keys, BatchMode).
#
# Usage: scripts/launch_ssh.sh HOSTS_FILE [options] VENTILATOR_ARGS... [-- MORE_VENTILATOR_ARGS...]
#   e.g. scripts/launch_ssh.sh hosts.txt --job examples/demo.json
#        scripts/launch_ssh.sh hosts.txt --job job.json --per-gpu --dry-run
#        scripts/launch_ssh.sh hosts.txt --worker-args "--threads 8" --kernel saxpy --tasks 1000 --size 1048576
# The options below are the launcher's wherever they stand; every other argument, and
# everything after `--`, goes to the ventilator.
#
# HOSTS_FILE: one host per line ([user@]host[:ssh-port]), optionally followed by how many workers
# to start there (default --workers-per-host); '#' starts a comment. Example:
#     head.cluster          # sink + ventilator
#     gpu1   4              # four workers
#     alice@cpu7
#
# Options:
#   --dry-run             print the commands that would run, one per line, and run nothing
#   --prefix DIR          taskfarm is in DIR/bin on every host (default: found on PATH)
#   --head-address ADDR   address workers use to reach the head (default: its name in HOSTS_FILE)
#   --port-base P         ventilator P, sink results P+1, control P+2 (default 5557)
#   --workers-per-host N  workers on each worker host (default 1)
#   --per-gpu             ask each worker host for its GPUs (`nvidia-smi -L` over ssh) and start
#                         one worker per GPU (--device cuda:i); hosts without a GPU get CPU
#                         workers (--device cpu), as many as the hosts file says
#   --worker-args "ARGS"  extra worker flags, e.g. "--threads 8" (word-split)
#   --remote-dir DIR      working folder on every host, for the job file and the report
#                         (default: the ssh login folder)
#   --report FILE         report path on the head (default taskfarm-report.json, in --remote-dir)
#   --log-dir DIR         local folder for every process's output (default ./taskfarm-logs)
#   --ssh-option OPT      extra ssh option, repeatable (e.g. --ssh-option "-i ~/.ssh/farm")
#
# Exit code: the ventilator's (0 all tasks ok, 2 some failed, 1 setup error); 130 when
# interrupted (Ctrl-C, SIGTERM: every remote process is stopped, as closing its ssh session
# hangs it up); 1 with a one-line message for an unreadable hosts file or a host ssh cannot reach.
set -euo pipefail

me=$(basename "$0")
die() { echo "$me: $*" >&2; exit 1; }

dry_run=0 prefix="" head_address="" port_base=5557 per_host=1 per_gpu=0 worker_args=""
report=taskfarm-report.json log_dir=./taskfarm-logs hosts_file="" remote_dir=""
ssh_opts=(-o ConnectTimeout=5 -o BatchMode=yes)
ssh_cmd=${TASKFARM_SSH:-ssh}  # tests substitute a local stand-in
vent_args=()

# Launcher options are recognized anywhere before `--`: `hosts.txt --job j.json --dry-run` must
# not hand --dry-run to the ventilator (and start a farm).
while (($#)); do
  case $1 in
    --dry-run) dry_run=1 ;;
    --prefix) prefix=${2:?--prefix needs a folder}; shift ;;
    --head-address) head_address=${2:?--head-address needs an address}; shift ;;
    --port-base) port_base=${2:?--port-base needs a port}; shift ;;
    --workers-per-host) per_host=${2:?--workers-per-host needs a number}; shift ;;
    --per-gpu) per_gpu=1 ;;
    --worker-args) worker_args=${2?--worker-args needs flags}; shift ;;
    --remote-dir) remote_dir=${2:?--remote-dir needs a folder}; shift ;;
    --report) report=${2:?--report needs a file}; shift ;;
    --log-dir) log_dir=${2:?--log-dir needs a folder}; shift ;;
    --ssh-option) ssh_opts+=(${2:?--ssh-option needs an option}); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; vent_args+=("$@"); break ;;
    -*) [ -n "$hosts_file" ] || die "unknown option '$1' before the hosts file (see --help)"
        vent_args+=("$1") ;;
    *) if [ -z "$hosts_file" ]; then hosts_file=$1; else vent_args+=("$1"); fi ;;
  esac
  shift
done
[ -n "$hosts_file" ] || die "no hosts file (usage: $me HOSTS_FILE [options] VENTILATOR_ARGS...)"
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
# The remote shell's command: run in --remote-dir when given.
in_dir() {
  if [ -n "$remote_dir" ]; then
    echo "mkdir -p $(quote "$remote_dir") && cd $(quote "$remote_dir") && $1"
  else
    echo "$1"
  fi
}
remote() {  # remote HOST ARGS... : sets CMD to the local argv; the remote side gets one string
  local host=$1; shift
  ssh_argv "$host"
  CMD=("${SSH_ARGV[@]}" "$(in_dir "exec $(quote "$@")")")
}

# A local job file is copied to the head before the run, under a name of this launch (two
# launches from one account do not overwrite each other's), and removed at the end.
job_upload=""
for i in "${!vent_args[@]}"; do
  a=${vent_args[$i]}
  if [ "$a" = --job ] && ((i + 1 < ${#vent_args[@]})); then
    job_local=${vent_args[$((i + 1))]}
    [ -r "$job_local" ] || die "cannot read job file '$job_local'"
    job_upload="taskfarm-job-$$-$(basename "$job_local")"
    vent_args[$((i + 1))]=$job_upload
  elif [[ $a == --job=* ]]; then
    job_local=${a#--job=}
    [ -r "$job_local" ] || die "cannot read job file '$job_local'"
    job_upload="taskfarm-job-$$-$(basename "$job_local")"
    vent_args[$i]="--job=$job_upload"
  fi
done

# ---- reachability (and GPUs with --per-gpu): every host, in parallel, before starting anything
declare -A gpus=()
gpu_query='nvidia-smi -L 2>/dev/null | grep -c "^GPU " || true'
if ((!dry_run)); then
  unique_hosts=($(printf '%s\n' "${hosts[@]}" | awk '!seen[$0]++'))
  check_dir=$(mktemp -d)
  trap 'rm -rf "$check_dir"' EXIT
  for h in "${unique_hosts[@]}"; do
    ssh_argv "$h"
    f="$check_dir/${h//\//_}"
    probe=true
    ((per_gpu)) && probe=$gpu_query
    ("${SSH_ARGV[@]}" "$probe" </dev/null >"$f" 2>"$f.err" && echo 0 >"$f.rc" || echo 1 >"$f.rc") &
  done
  wait
  for h in "${unique_hosts[@]}"; do
    f="$check_dir/${h//\//_}"
    if [ "$(cat "$f.rc")" != 0 ]; then
      why=$(grep -v '^$' "$f.err" | tail -n 1 | tr -d '\r')
      die "cannot reach host '$h' over ssh (ConnectTimeout=5, BatchMode): ${why:-no reason given}"
    fi
    n=$(tail -n 1 "$f" | tr -dc 0-9)
    gpus[$h]=${n:-0}
  done
fi

remote "$head" "${bin}taskfarm-sink" --bind "$results_port" --control "$control_port" --report "$report"
sink_cmd=("${CMD[@]}")
remote "$head" "${bin}taskfarm-ventilator" --bind "$tasks_port" \
  --sink-results "localhost:$results_port" --sink-control "localhost:$control_port" "${vent_args[@]}"
vent_cmd=("${CMD[@]}")
worker_cmds=() worker_names=() notes=()
# shellcheck disable=SC2206  # --worker-args is a list of flags on purpose
extra_worker_args=($worker_args)
for i in "${!worker_hosts[@]}"; do
  h=${worker_hosts[$i]} n=${worker_counts[$i]} device=""
  if ((per_gpu)); then
    if ((dry_run)); then  # not asked: show one per GPU as the hosts file's count
      device=cuda
      notes+=("# --per-gpu: $h is asked at launch ($gpu_query); one worker per GPU it lists,"
              "#   or $n CPU worker(s) (--device cpu) if none")
    elif ((${gpus[$h]} > 0)); then
      n=${gpus[$h]} device=cuda
    else
      device=cpu
      notes+=("# --per-gpu: $h has no GPU (nvidia-smi -L lists none): $n CPU worker(s)")
    fi
  fi
  for ((k = 0; k < n; k++)); do
    id="$(name_of "$h")-$k"
    args=("${bin}taskfarm-worker" --ventilator "$head_address:$tasks_port"
          --sink-results "$head_address:$results_port" --sink-control "$head_address:$control_port")
    case $device in
      cuda) id="$(name_of "$h")-gpu$k"; args+=(--device "cuda:$k") ;;
      cpu) args+=(--device cpu) ;;
    esac
    args+=(--id "$id")
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
upload_cmd() { ssh_argv "$head"; UPLOAD=("${SSH_ARGV[@]}" "$(in_dir "cat > $(quote "$job_upload")")"); }
cleanup_cmd() { ssh_argv "$head"; CLEANUP=("${SSH_ARGV[@]}" "$(in_dir "rm -f $(quote "$job_upload")")"); }

if ((dry_run)); then
  echo "# head $head: sink and ventilator; ${#worker_cmds[@]} workers; report $head:$report"
  for n in "${notes[@]}"; do echo "$n"; done
  if [ -n "$job_upload" ]; then
    upload_cmd
    echo "$(display "${UPLOAD[@]}") < $(quote "$job_local")"
  fi
  echo "$(display "${sink_cmd[@]}") &"
  for c in "${worker_cmds[@]}"; do eval "set -- $c"; echo "$(display "$@") &"; done
  display "${vent_cmd[@]}"
  if [ -n "$job_upload" ]; then cleanup_cmd; display "${CLEANUP[@]}"; fi
  exit 0
fi
for n in "${notes[@]}"; do echo "$me: ${n#\# }" >&2; done

# ---- run
mkdir -p "$log_dir"
if [ -n "$job_upload" ]; then
  upload_cmd
  "${UPLOAD[@]}" <"$job_local" || die "cannot copy '$job_local' to $head"
fi
pids=()
cleanup() {
  local p
  trap - INT TERM
  # Closing an ssh session hangs up its remote program (-tt): nothing outlives this script.
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$job_upload" ]; then cleanup_cmd; "${CLEANUP[@]}" </dev/null >/dev/null 2>&1 || true; fi
  rm -rf "$check_dir"
}
trap cleanup EXIT
trap 'echo "$me: interrupted: stopping every remote process" >&2; exit 130' INT TERM
"${sink_cmd[@]:0:1}" -tt "${sink_cmd[@]:1}" </dev/null >"$log_dir/sink.log" 2>&1 &
sink_pid=$!
pids+=("$sink_pid")
for i in "${!worker_cmds[@]}"; do
  eval "set -- ${worker_cmds[$i]}"
  "$1" -tt "${@:2}" </dev/null >"$log_dir/worker-${worker_names[$i]}.log" 2>&1 &
  pids+=($!)
done
echo "$me: sink on $head, ${#worker_cmds[@]} workers on ${#worker_hosts[@]} hosts; logs in $log_dir" >&2
# In the background and waited for, so that a signal is handled at once (bash runs traps only
# between foreground commands).
"${vent_cmd[@]:0:1}" -tt "${vent_cmd[@]:1}" </dev/null > >(tee "$log_dir/ventilator.log") 2>&1 &
vent_pid=$!
pids+=("$vent_pid")
set +e
wait "$vent_pid"
rc=$?
set -e
# The sink exits once the batch is reported; give it a moment to print its table.
for _ in $(seq 50); do kill -0 "$sink_pid" 2>/dev/null || break; sleep 0.2; done
cat "$log_dir/sink.log"
ssh_argv "$head"
if "${SSH_ARGV[@]}" "$(in_dir "cat $(quote "$report")")" </dev/null >"$log_dir/report.json" 2>/dev/null; then
  echo "$me: ventilator exit code $rc; report in $log_dir/report.json (and $head:$report)" >&2
else
  echo "$me: ventilator exit code $rc; no report on $head:$report" >&2
fi
exit "$rc"
