#!/usr/bin/env bash
# A Slurm cluster for tests: munged, slurmctld (Debian's slurm-wlm) in network namespace HEAD_NS
# as host "tfhead", and one slurmd per node, each in its own network namespace with its own host
# name (tests/netns.h makes the namespaces), all with their configuration, state, sockets and
# logs in folder DIR, in the foreground until killed. Prints "slurm ready" once every node
# accepts jobs. Run it as the init of a private PID namespace (`unshare --pid --fork
# --kill-child --mount-proc`) so that killing it ends every daemon and every job step.
# Commands reach it from HEAD_NS with SLURM_CONF=DIR/slurm.conf.
#
# GPUS > 0 gives every node that many GPUs as a Slurm GRES (`--gpus-per-node`): Slurm binds
# each task to its own (CUDA_VISIBLE_DEVICES), though the device files behind them are stand-ins.
#
# Usage: tests/cluster/slurm_cluster.sh DIR HEAD_NS HEAD_ADDR CPUS GPUS NODE_NS=NODE_NAME=NODE_ADDR...
set -euo pipefail
dir=$1 head_ns=$2 head_addr=$3 cpus=$4 gpus=$5
shift 5
(($#)) || { echo "slurm_cluster.sh: no node" >&2; exit 1; }
mkdir -p "$dir"/{ctld,munge}
chmod 700 "$dir/munge"

# munge refuses keys that others can read. One munged serves every namespace: its socket is a
# file (keep DIR short: a socket path has at most 108 bytes).
dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
socket="$dir/munge/munge.socket"
munged --foreground --force --socket="$socket" --key-file="$dir/munge/munge.key" \
  --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
  --seed-file="$dir/munge/munged.seed" &

nodes=() node_lines="" gres=""
: >"$dir/gres.conf"  # next to slurm.conf, where Slurm reads it
if ((gpus > 0)); then gres="Gres=gpu:$gpus"; fi
for spec in "$@"; do
  IFS== read -r ns name addr <<<"$spec"
  nodes+=("$ns=$name")
  mkdir -p "$dir/slurmd-$name"
  node_lines+="NodeName=$name NodeAddr=$addr CPUs=$cpus $gres State=UNKNOWN"$'\n'
  if ((gpus > 0)); then
    mkdir -p "$dir/dev-$name"
    for ((g = 0; g < gpus; g++)); do mknod "$dir/dev-$name/nvidia$g" c 1 3; done  # like /dev/null
    echo "NodeName=$name Name=gpu File=$dir/dev-$name/nvidia[0-$((gpus - 1))]" >>"$dir/gres.conf"
  fi
done
names=$(printf '%s\n' "$@" | cut -d= -f2 | paste -sd,)
cat >"$dir/slurm.conf" <<CONF
ClusterName=taskfarm-test
SlurmctldHost=tfhead($head_addr)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/slurmd-%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd-%n.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=5
GresTypes=gpu
$node_lines
PartitionName=tf Nodes=$names Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$dir/slurm.conf
for _ in $(seq 100); do [ -S "$socket" ] && break; sleep 0.05; done
[ -S "$socket" ] || { echo "munged did not start (socket $socket)" >&2; exit 1; }

# Each daemon in its namespace, under its host name (slurmctld checks it is SlurmctldHost).
# nsenter, not `ip netns exec`: that remounts /sys, without the cgroup folder slurmd needs.
in_host() {  # NS HOSTNAME COMMAND...
  local ns=$1 host=$2
  shift 2
  nsenter --net="/run/netns/$ns" unshare --uts /bin/sh -c 'hostname "$0" && exec "$@"' "$host" "$@"
}
in_host "$head_ns" tfhead slurmctld -D -i -f "$SLURM_CONF" &
for n in "${nodes[@]}"; do
  in_host "${n%%=*}" "${n#*=}" slurmd -D -N "${n#*=}" -f "$SLURM_CONF" &
done
for _ in $(seq 300); do
  states=$(nsenter --net="/run/netns/$head_ns" sinfo -h -N -o '%t' 2>/dev/null | sort -u | paste -sd,)
  if [ "$states" = idle ]; then echo "slurm ready"; wait; exit; fi
  sleep 0.1
done
echo "slurm did not come up (node states: ${states:-none})" >&2
tail -n 5 "$dir"/*.log >&2
exit 1
