#!/usr/bin/env bash
# Installs a taskfarm package on a clean Debian 12 and runs a batch with the installed programs.
# For tests/cluster_test.cpp.
#
# MODE deb:
#   1. `cpack -G DEB` of BUILD_DIR into WORK/pkg.
#   2. A Debian 12 minbase made by debootstrap, kept in CACHE/bookworm (made once, never
#      changed after; CACHE defaults to /var/cache/taskfarm-tests): every run starts from it
#      through an overlay, so nothing of an earlier run remains. Downloaded packages are kept in
#      CACHE/apt-archives so that later runs need no download.
#   3. `apt-get install ./taskfarm_*.deb` in it: dependencies come from Debian's archive, so
#      the .deb must declare them.
#   4. The sink, ventilator and a CPU worker run as the units' ExecStart= lines, as the user the
#      units name, with /etc/taskfarm/taskfarm.conf (ports from PORT_BASE) as their environment
#      (EnvironmentFile=); the installed `taskfarm submit --wait` submits JOB_FILE and writes
#      WORK/report.json.
# MODE tgz: `cpack -G TGZ`, unpacked in /opt of the same clean Debian, where none of the
#   libraries it needs is installed; its sink, worker and ventilator run a one-shot batch.
#
# Run it as the init of private mount and PID namespaces (`unshare --mount --pid --fork
# --kill-child --mount-proc`): the mounts and every process started here end with it.
#
# Usage: tests/cluster/package_chroot.sh deb|tgz BUILD_DIR WORK JOB_FILE PORT_BASE
# Exit 0 when the batch ran (WORK/report.json written); 77 with the reason on stdout when no
# Debian can be made here (no archive reachable); 1 with the reason on stderr otherwise.
set -euo pipefail
mode=$1 build=$2 work=$3 job=$4 port=$5
cache=${TASKFARM_TEST_CACHE:-/var/cache/taskfarm-tests}
step() { echo "package_chroot: $*" >&2; }
die() { echo "package_chroot: $*" >&2; exit 1; }
mkdir -p "$work" "$cache"

generator=$(echo "$mode" | tr a-z A-Z)
step "cpack -G $generator"
cpack -G "$generator" -B "$work/pkg" --config "$build/CPackConfig.cmake" >"$work/cpack.log" 2>&1 ||
  die "cpack failed: $(tail -n 3 "$work/cpack.log")"

# The archive the machine itself installs from (its apt sources), so no address is written here.
mirror=$(awk '/^URIs:/ {u = $2} /^Suites:/ && / bookworm( |$)/ {print u; exit}' \
           /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
if [ -z "$mirror" ] && [ -r /etc/apt/sources.list ]; then
  mirror=$(sed -n 's/^deb \(\[[^]]*\] \)\{0,1\}\([^ ]*\) bookworm .*/\2/p' /etc/apt/sources.list | head -n 1)
fi
base=$cache/bookworm
exec 9>"$cache/bookworm.lock"
flock -w 600 9 || die "timed out waiting for $cache/bookworm.lock"
if [ ! -e "$base/.taskfarm-complete" ]; then
  [ -n "$mirror" ] || die "no bookworm archive in /etc/apt/sources.list*: cannot debootstrap"
  step "debootstrap --variant=minbase bookworm (once, into $base)"
  rm -rf "$base.tmp"
  if ! debootstrap --variant=minbase bookworm "$base.tmp" "$mirror" >"$work/debootstrap.log" 2>&1; then
    echo "cannot make a Debian 12 (debootstrap from $mirror): $(tail -n 1 "$work/debootstrap.log")"
    exit 77  # no archive here: the test skips
  fi
  # The machine's apt settings (e.g. for a snapshot archive), not its hooks.
  for f in /etc/apt/apt.conf.d/*; do
    grep -qi -e invoke -e '^Dir::Cache' "$f" || cp "$f" "$base.tmp/etc/apt/apt.conf.d/"
  done
  mount -t proc proc "$base.tmp/proc"
  chroot "$base.tmp" apt-get update -qq >"$work/apt-update.log" 2>&1 ||
    die "apt-get update in the new Debian failed: $(tail -n 2 "$work/apt-update.log")"
  umount "$base.tmp/proc"
  touch "$base.tmp/.taskfarm-complete"
  mv "$base.tmp" "$base"
fi
flock -u 9

root=$work/root
mkdir -p "$root" "$work/upper" "$work/overlay-work" "$cache/apt-archives/partial"
mount -t overlay overlay \
  -o "lowerdir=$base,upperdir=$work/upper,workdir=$work/overlay-work" "$root"
mount -t proc proc "$root/proc"
mount --rbind /dev "$root/dev"
mount --bind "$cache/apt-archives" "$root/var/cache/apt/archives"
[ ! -r /etc/resolv.conf ] || cp /etc/resolv.conf "$root/etc/resolv.conf"
# debootstrap leaves /etc/hosts to the installer; an installed system names localhost there.
[ -s "$root/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }
cp "$job" "$root/tmp/job.json"

if [ "$mode" = tgz ]; then
  tarball=$(ls "$work"/pkg/taskfarm-[0-9]*.tar.gz)
  tar xzf "$tarball" -C "$root/opt"
  top=/opt/$(basename "$tarball" .tar.gz)
  if in_root sh -c 'ls /usr/lib/*/libzmq.so* /usr/lib/*/libprotobuf.so* /usr/lib/*/libfmt.so*' >/dev/null 2>&1; then
    die "the clean Debian already has libzmq, libprotobuf or libfmt: the test proves nothing"
  fi
  step "one-shot batch with $top/bin"
  in_root "$top/bin/taskfarm-sink" --bind $((port + 1)) --control $((port + 2)) \
    --report /tmp/report.json -q >"$work/sink.log" 2>&1 &
  sink=$!
  in_root "$top/bin/taskfarm-worker" --ventilator "localhost:$port" \
    --sink-results "localhost:$((port + 1))" --sink-control "localhost:$((port + 2))" \
    --device cpu --threads 2 >"$work/worker.log" 2>&1 &
  set +e
  in_root timeout 60 "$top/bin/taskfarm-ventilator" --bind "$port" \
    --sink-results "localhost:$((port + 1))" --sink-control "localhost:$((port + 2))" \
    --job /tmp/job.json >"$work/ventilator.log" 2>&1
  rc=$?
  set -e
  [ "$rc" = 0 ] || die "ventilator exited $rc: $(tail -n 3 "$work"/*.log)"
  timeout 10 tail --pid="$sink" -f /dev/null || die "the sink did not exit after the batch"
  cp "$root/tmp/report.json" "$work/report.json"
  step "done: $work/report.json"
  exit 0
fi

deb=$(ls "$work"/pkg/taskfarm_*.deb)
step "apt-get install ./$(basename "$deb")"
cp "$deb" "$root/tmp/"
install_deb() {
  in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "/tmp/$(basename "$deb")" >"$work/apt-install.log" 2>&1
}
# One apt at a time on the shared download cache (its lock file is in it).
exec 8>"$cache/apt-archives.lock"
flock -w 600 8 || die "timed out waiting for $cache/apt-archives.lock"
if ! install_deb; then  # the archive moved on since the lists were fetched
  in_root apt-get update -qq >>"$work/apt-install.log" 2>&1 || true
  install_deb || die "apt-get install failed: $(grep -v '^$' "$work/apt-install.log" | tail -n 3)"
fi
flock -u 8
[ "$(in_root dpkg-query -W -f='${Status}' taskfarm)" = "install ok installed" ] ||
  die "taskfarm is not installed after apt-get install"
for p in taskfarm taskfarm-sink taskfarm-worker taskfarm-ventilator; do
  missing=$(in_root ldd "/usr/bin/$p" | grep 'not found' || true)
  [ -z "$missing" ] || die "/usr/bin/$p: libraries not found: $missing"
done

units=$root/usr/lib/systemd/system
# systemd's own check of the installed units, where systemd-analyze is at hand: any complaint
# (an unknown key, a missing program) fails. It needs the system's targets beside them.
if command -v systemd-analyze >/dev/null; then
  for f in /lib/systemd/system/*.target /lib/systemd/system/*.slice; do
    [ -e "$units/$(basename "$f")" ] || cp "$f" "$units/"
  done
  verify=$(cd "$root" && systemd-analyze verify --root="$root" usr/lib/systemd/system/taskfarm-sink.service \
             usr/lib/systemd/system/taskfarm-ventilator.service \
             usr/lib/systemd/system/taskfarm-worker@0.service \
             usr/lib/systemd/system/taskfarm-worker@cpu.service 2>&1) || true
  [ -z "$verify" ] || die "systemd-analyze verify: $verify"
  step "systemd-analyze verify: the units are valid"
fi

# The farm's ports in the installed configuration, as an administrator would set them (the
# dashboard on any free port: this chroot shares the machine's network).
conf=$root/etc/taskfarm/taskfarm.conf
sed -i -e "s/^TASKFARM_TASKS_PORT=.*/TASKFARM_TASKS_PORT=$port/" \
       -e "s/^TASKFARM_RESULTS_PORT=.*/TASKFARM_RESULTS_PORT=$((port + 1))/" \
       -e "s/^TASKFARM_CONTROL_PORT=.*/TASKFARM_CONTROL_PORT=$((port + 2))/" \
       -e "s/^TASKFARM_SUBMIT_PORT=.*/TASKFARM_SUBMIT_PORT=$((port + 3))/" \
       -e "s/^TASKFARM_RESULTS_SERVICE_PORT=.*/TASKFARM_RESULTS_SERVICE_PORT=$((port + 4))/" \
       -e 's/^TASKFARM_VENTILATOR_ARGS=.*/TASKFARM_VENTILATOR_ARGS="--http 0"/' "$conf"

unit_value() { sed -n "s/^$2=//p" "$units/$1"; }
# What systemd does for these units: StateDirectory= owned by User=, then ExecStart= (with %i)
# as User= with EnvironmentFile= in the environment.
start_unit() {  # UNIT [INSTANCE]
  local unit=$1 instance=${2:-} user exec_start
  user=$(unit_value "$unit" User)
  exec_start=$(unit_value "$unit" ExecStart)
  exec_start=${exec_start//%i/$instance}
  [ "$(unit_value "$unit" EnvironmentFile)" = /etc/taskfarm/taskfarm.conf ] ||
    die "$unit does not read /etc/taskfarm/taskfarm.conf"
  in_root getent passwd "$user" >/dev/null || die "$unit: user '$user' does not exist"
  if [ -n "$(unit_value "$unit" StateDirectory)" ]; then
    mkdir -p "$root/var/lib/$(unit_value "$unit" StateDirectory)"
    in_root chown "$user:" "/var/lib/$(unit_value "$unit" StateDirectory)"
  fi
  step "start ${unit/@/@$instance} as $user: $exec_start"
  chroot --userspec="$user:$user" "$root" /usr/bin/env -i PATH=/usr/bin:/bin \
    /bin/sh -c "set -a; . /etc/taskfarm/taskfarm.conf; set +a; exec $exec_start" \
    >"$work/${unit/@/@$instance}.log" 2>&1 &
  unit_pids+=("$!") unit_names+=("${unit/@/@$instance}")
}
unit_pids=() unit_names=()
start_unit taskfarm-sink.service
start_unit taskfarm-ventilator.service
start_unit taskfarm-worker@.service cpu

# Fail fast when a unit's command dies (bad flags, missing library) instead of waiting for the
# client's timeout: wait for the job service's port while every unit runs.
for _ in $(seq 100); do
  for i in "${!unit_pids[@]}"; do
    kill -0 "${unit_pids[$i]}" 2>/dev/null ||
      die "${unit_names[$i]} exited: $(tail -n 3 "$work/${unit_names[$i]}.log")"
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$((port + 3))") 2>/dev/null && break
  sleep 0.1
done

step "taskfarm submit /tmp/job.json --wait"
set +e
in_root timeout 60 taskfarm --server "localhost:$((port + 3))" --timeout 20 submit /tmp/job.json \
  --wait --quiet --report /tmp/report.json >"$work/submit.log" 2>&1
rc=$?
set -e
[ "$rc" = 0 ] || die "taskfarm submit --wait exited $rc: $(tail -n 3 "$work/submit.log"; tail -n 3 "$work"/taskfarm-*.log)"
cp "$root/tmp/report.json" "$work/report.json"
ls "$root/var/lib/taskfarm/results" >"$work/results.txt"
step "done: $work/report.json"
