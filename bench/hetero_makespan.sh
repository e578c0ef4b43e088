#!/usr/bin/env bash
# Heterogeneous pool: one worker with 4 slots and one with 1 slot on `sleep` tasks. Prints the
# batch's makespan (the sink's elapsed_s) against the ideal split, total work / total slots.
# Target (issue 5): within 10% of the ideal.
#
# Usage: bench/hetero_makespan.sh [BUILD_DIR] [TASKS] [TASK_US]   (defaults: build 500 20000)
set -euo pipefail
build=${1:-build}
tasks=${2:-500}
task_us=${3:-20000}
bin=$build/bin
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$dir"' EXIT
ep="ipc://$dir"
common=(--sink-results "$ep/r" --sink-control "$ep/c" --device cpu --log-level warn)
"$bin/taskfarm-sink" --bind "$ep/r" --control "$ep/c" --report "$dir/report.json" -q --log-level warn &
sink=$!
"$bin/taskfarm-worker" --ventilator "$ep/t" "${common[@]}" --threads 4 --id fast-4-slots &
"$bin/taskfarm-worker" --ventilator "$ep/t" "${common[@]}" --threads 1 --id slow-1-slot &
sleep 0.5  # both connected: measure dispatch, not start-up
"$bin/taskfarm-ventilator" --bind "$ep/t" --sink-results "$ep/r" --sink-control "$ep/c" \
  --kernel sleep --tasks "$tasks" --size "$task_us" --log-level warn
wait "$sink"
python3 - "$dir/report.json" "$tasks" "$task_us" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
tasks, us = int(sys.argv[2]), int(sys.argv[3])
ideal = tasks * us * 1e-6 / 5
ratio = r["elapsed_s"] / ideal
print(f"tasks {tasks} x {us} us on 4+1 slots: makespan {r['elapsed_s']:.3f} s, ideal {ideal:.3f} s, "
      f"ratio {ratio:.3f} ({'PASS' if ratio <= 1.10 else 'FAIL'} vs 1.10)")
for w in r["workers"]:
    print(f"  {w['id']:<14} {w['tasks']:>5} tasks ({w['tasks'] / tasks:.1%}), busy {w['busy_s']:.3f} s")
PY
