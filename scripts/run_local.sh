#!/usr/bin/env bash
# Installs missing dependencies, builds the four programs, then runs a local farm (one sink,
# three workers, one ventilator) on a demo batch that uses several kernels, and prints the sink's
# report. Then builds the rest (tests, benchmarks), so scripts/test.sh starts at once.
# Uses ports 5557-5559 unless TASKFARM_PORT_BASE is set (then BASE, BASE+1, BASE+2).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
TARGETS="taskfarm taskfarm-sink taskfarm-worker taskfarm-ventilator" scripts/build.sh
bin=${BUILD_DIR:-build}/bin
base=${TASKFARM_PORT_BASE:-5557}
tasks=127.0.0.1:$base results=127.0.0.1:$((base + 1)) control=127.0.0.1:$((base + 2))
out=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$bin/taskfarm-sink" --bind "$results" --control "$control" --report "$out/report.json" &
sink=$!
for i in 1 2 3; do
  "$bin/taskfarm-worker" --ventilator "$tasks" --sink-results "$results" \
    --sink-control "$control" --id "worker-$i" --threads 1 --log-level warn &
  pids+=($!)
done
"$bin/taskfarm-ventilator" --bind "$tasks" --sink-results "$results" --sink-control "$control" \
  --job examples/demo.json --log-level warn
status=0
wait "$sink" || status=$?
echo
echo "JSON report: $out/report.json"
echo
echo "building the rest (tests, benchmarks) ..."
scripts/build.sh >"$out/build.log" 2>&1 || { tail -n 30 "$out/build.log" >&2; exit 1; }
echo
echo "To run the commands of README.md from this shell:"
echo "  export PATH=$PWD/$bin:\$PATH"
exit "$status"
