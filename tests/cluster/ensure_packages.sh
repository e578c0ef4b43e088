#!/usr/bin/env bash
# Installs the Debian packages a cluster test needs, only those that are missing (as
# scripts/deps.sh does). Exit 0 once all are installed; exit 77 with one line on stdout saying why
# when they cannot be (not root, no apt-get, no package archive reachable): the test skips.
#
# Usage: tests/cluster/ensure_packages.sh PACKAGE...
set -uo pipefail
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0
[ "$(id -u)" = 0 ] || { echo "needs root to install ${missing[*]}"; exit 77; }
command -v apt-get >/dev/null || { echo "no apt-get to install ${missing[*]}"; exit 77; }
# Installing a daemon must not start the machine's own copy of it (sshd on port 22, munged):
# the tests start private ones. policy-rc.d is Debian's switch for that.
policy=/usr/sbin/policy-rc.d made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
fi
trap 'if ((made_policy)); then rm -f "$policy"; fi' EXIT
log=$(mktemp)
apt_install() {
  flock -w 900 /tmp/taskfarm-apt.lock env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1
}
if ! apt_install; then
  flock -w 900 /tmp/taskfarm-apt.lock apt-get update -qq >"$log" 2>&1
  if ! apt_install; then
    echo "cannot install ${missing[*]}: $(grep -v '^$' "$log" | tail -n 1)"
    rm -f "$log"
    exit 77
  fi
fi
rm -f "$log"
echo "installed ${missing[*]}" >&2
