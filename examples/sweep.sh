#!/usr/bin/env bash
# Submits a sweep of saxpy jobs over vector sizes to a running job service, then waits for each
# and prints one line per job. Start the service first:
#   taskfarm-sink --serve & taskfarm-ventilator --serve & taskfarm-worker &
# Usage: examples/sweep.sh [--server HOST]
set -euo pipefail
# The client: $TASKFARM, else `taskfarm` on PATH, else this checkout's build/bin/taskfarm.
taskfarm=${TASKFARM:-taskfarm}
if [ -z "${TASKFARM:-}" ] && ! command -v taskfarm >/dev/null; then
  taskfarm=$(cd "$(dirname "$0")/.." && pwd)/${BUILD_DIR:-build}/bin/taskfarm
  [ -x "$taskfarm" ] || { echo "sweep.sh: taskfarm not found: build it, put build/bin on PATH or set TASKFARM" >&2; exit 1; }
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
ids=()
for size in 1024 16384 262144 1048576; do
  cat > "$dir/saxpy-$size.json" <<JSON
{ "name": "saxpy-$size", "tasks": [ { "kernel": "saxpy", "count": 200, "size": $size, "seed": 1 } ] }
JSON
  ids+=("$("$taskfarm" "$@" submit "$dir/saxpy-$size.json")")
done
status=0
for id in "${ids[@]}"; do
  "$taskfarm" "$@" wait "$id" --quiet --report "$dir/$id.json" || status=$?
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"{r['job']:<16} {r['tasks_ok']}/{r['tasks_total']} ok  {r['elapsed_s']:.3f} s  {r['mb_per_s']:.0f} MB/s  digest {r['result_digest']}\")" "$dir/$id.json"
done
exit "$status"
