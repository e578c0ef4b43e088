#!/usr/bin/env bash
# Runs this folder's examples on a private local farm (sink, job service, one worker with
# --allow-exec and this folder on its PATH), on ipc:// sockets in a temporary folder so that
# nothing else on the machine is disturbed:
#   1. walks.json, a job array of 100 `walk.py --seed {index}` commands, fetched with
#      `taskfarm results` into OUT/walks and summarized by summarize.py;
#   2. logistic-sweep.json, a grid sweep, submitted and followed with the Python package
#      (sweep.py, Job.results()), kept in OUT/sweep.
#
#   examples/exec/run.sh [OUT]    (OUT: default a new temporary folder)
#
# Needs the programs built (scripts/run_local.sh or scripts/build.sh: build/bin; another place
# with TASKFARM_BIN_DIR) and python3 with python3-zmq and python3-protobuf.
# Exit: 0 when every task succeeded and the results check out, else non-zero.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${TASKFARM_BIN_DIR:-$root/${BUILD_DIR:-build}/bin}
for p in taskfarm taskfarm-sink taskfarm-ventilator taskfarm-worker; do
  [ -x "$bin/$p" ] || { echo "$bin/$p is missing: build first (scripts/run_local.sh)" >&2; exit 1; }
done
# A python3 with Debian's python3-zmq and python3-protobuf (PYTHON overrides).
python=${PYTHON:-}
for candidate in python3 /usr/bin/python3; do
  [ -n "$python" ] && break
  "$candidate" -c 'import zmq, google.protobuf' 2>/dev/null && python=$candidate
done
[ -n "$python" ] || { echo "needs python3 with python3-zmq and python3-protobuf" >&2; exit 1; }
out=${1:-$(mktemp -d "${TMPDIR:-/tmp}/taskfarm-exec-example.XXXXXX")}
mkdir -p "$out"
farm=$(mktemp -d "${TMPDIR:-/tmp}/taskfarm-exec-farm.XXXXXX")
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$farm"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ep=ipc://$farm
server=$ep/submit sink=$ep/results-service
"$bin/taskfarm-sink" --serve --bind "$ep/results" --control "$ep/control" \
  --results-dir "$out/sink" --results-service "$sink" --log-level warn &
pids+=($!)
"$bin/taskfarm-ventilator" --serve --bind "$ep/tasks" --submit "$server" \
  --sink-results "$ep/results" --sink-control "$ep/control" --http off --log-level warn &
pids+=($!)
# The commands are named by file name: the worker finds them on its PATH (each task runs in
# a working folder of its own, so relative paths would not reach this folder).
PATH="$here:$PATH" "$bin/taskfarm-worker" --ventilator "$ep/tasks" --sink-results "$ep/results" \
  --sink-control "$ep/control" --threads "$(nproc)" --device cpu --allow-exec --log-level warn &
pids+=($!)

tf() { "$bin/taskfarm" --server "$server" "$@"; }
for _ in $(seq 1 100); do tf status >/dev/null 2>&1 && break; sleep 0.1; done

echo "== job array: examples/exec/walks.json"
id=$(tf submit "$here/walks.json")
tf results "$id" --sink "$sink" --out "$out/walks"   # follows the job to its end
"$python" "$here/summarize.py" "$out/walks"

echo "== sweep: examples/exec/logistic-sweep.json, through the Python package"
PYTHONPATH="$root/python${PYTHONPATH:+:$PYTHONPATH}" \
  TASKFARM_PYTHON_DIR=${TASKFARM_PYTHON_DIR:-$(dirname "$bin")/python} \
  "$python" "$here/sweep.py" --server "$server" --sink "$sink" --out "$out/sweep"
echo "results in $out"
