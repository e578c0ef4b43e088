#!/usr/bin/env bash
# A private OpenSSH server for tests in folder DIR, on 127.0.0.1:PORT, in the foreground until
# killed: host and client keys made here, root may log in with the client key only, and nothing
# of the machine's ssh configuration is used. Writes DIR/ssh_config for the client
# (`ssh -F DIR/ssh_config -p PORT 127.0.0.1`). Run it as the init of a private PID namespace
# (`unshare --pid --fork --kill-child --mount-proc`) so that killing it ends every session.
#
# Usage: tests/cluster/sshd.sh DIR PORT
set -euo pipefail
dir=$1 port=$2
mkdir -p "$dir"
chmod 700 "$dir"
ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key"
ssh-keygen -q -t ed25519 -N '' -f "$dir/client_key"
cp "$dir/client_key.pub" "$dir/authorized_keys"
cat >"$dir/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $port
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
MaxStartups 100
MaxSessions 100
LogLevel ERROR
CONF
cat >"$dir/ssh_config" <<CONF
Host *
  User root
  IdentityFile $dir/client_key
  IdentitiesOnly yes
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  LogLevel ERROR
CONF
mkdir -p /run/sshd  # sshd's privilege separation folder (Debian's service makes it)
exec /usr/sbin/sshd -D -e -f "$dir/sshd_config"
