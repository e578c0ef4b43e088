#!/usr/bin/env bash
# A one-node Slurm cluster for tests, in folder DIR: munged, slurmctld and slurmd (Debian's
# slurm-wlm) with their own configuration, state, sockets and ports, in the foreground until
# killed. Prints "slurm ready" once the node accepts jobs. Run it as the init of a private PID
# namespace (`unshare --pid --fork --kill-child --mount-proc`) so that killing it ends every
# daemon and every job step it started. Commands reach it with SLURM_CONF=DIR/slurm.conf.
#
# Usage: tests/cluster/slurm_cluster.sh DIR SLURMCTLD_PORT SLURMD_PORT CPUS
set -euo pipefail
dir=$1 ctld_port=$2 slurmd_port=$3 cpus=$4
mkdir -p "$dir"/{ctld,slurmd,munge}
chmod 700 "$dir/munge"
host=$(hostname -s)

# munge refuses keys that others can read, and sockets in world-writable folders.
dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
socket="$dir/munge/munge.socket"
munged --foreground --force --socket="$socket" --key-file="$dir/munge/munge.key" \
  --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
  --seed-file="$dir/munge/munged.seed" &

cat >"$dir/slurm.conf" <<CONF
ClusterName=taskfarm-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$socket
CredType=cred/munge
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/slurmd
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
KillWait=5
MailProg=/bin/true
NodeName=tfnode NodeHostname=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=tf Nodes=tfnode Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF=$dir/slurm.conf
for _ in $(seq 100); do [ -S "$socket" ] && break; sleep 0.05; done
[ -S "$socket" ] || { echo "munged did not start (socket $socket)" >&2; exit 1; }
slurmctld -D -i -f "$SLURM_CONF" &
slurmd -D -N tfnode -f "$SLURM_CONF" &
for _ in $(seq 200); do
  if sinfo -h -N -o '%t' 2>/dev/null | grep -qx idle; then echo "slurm ready"; wait; exit; fi
  sleep 0.1
done
echo "slurm did not come up" >&2
tail -n 5 "$dir"/*.log >&2
exit 1
