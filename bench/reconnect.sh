#!/usr/bin/env bash
# How long a job service takes to work again after its sink restarts: the sink is killed, stays
# down DOWN to DOWN+6 seconds (random, so that restarts fall anywhere in the peers' reconnect
# back-off, which has reached its cap by then), is started again, and a 10-task job is
# submitted at once; the figure is the time from the new sink's start to that job's end, next
# to the same job on a running farm. Run with the reconnect cap of this build (1 s) and with
# the 5 s taskfarm used before (the baseline, through TASKFARM_RECONNECT_MAX_MS), interleaved,
# over loopback TCP.
#
#   bench/reconnect.sh [--repeat R] [--down S]      (defaults: 5 runs, 8 s down at least)
#
# Environment: BUILD_DIR (default build), RUN_TIMEOUT (s per process, 300).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

REPEAT=5 DOWN=8
while [ $# -gt 0 ]; do
  case $1 in
    --repeat) REPEAT=$2; shift 2 ;;
    --down) DOWN=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 1 ;;
  esac
done
require_tools cmake awk sed timeout
echo "building ($BUILD_DIR) ..."
bench_build
cmake --build "$BUILD_DIR" --target taskfarm >>"$BENCH_TMP/build.log" 2>&1 ||
  { tail -n 40 "$BENCH_TMP/build.log" >&2; exit 1; }
printf '{"name": "tiny", "tasks": [{"kernel": "noop", "count": 10}]}\n' >"$BENCH_TMP/tiny.json"

now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }

# one_run CAP_MS: prints "STEADY_S RESTART_S" for one restart with that reconnect cap.
one_run() {
  export TASKFARM_RECONNECT_MAX_MS=$1
  pick_ports || return 1
  local tasks=tcp://127.0.0.1:$PORT_BASE results=tcp://127.0.0.1:$((PORT_BASE + 1))
  local control=tcp://127.0.0.1:$((PORT_BASE + 2)) submit=tcp://127.0.0.1:$((PORT_BASE + 3))
  local sink_args=(--serve --bind "$results" --control "$control" --results-dir "$BENCH_TMP/results"
                   --results-service off --log-level warn)
  # Started directly (not through `launch`): kill -9 must reach the sink itself.
  "$BIN/taskfarm-sink" "${sink_args[@]}" &
  local sink=$!
  "$BIN/taskfarm-ventilator" --serve --http off --bind "$tasks" --submit "$submit" \
    --sink-results "$results" --sink-control "$control" --log-level warn &
  local vent=$!
  "$BIN/taskfarm-worker" --ventilator "$tasks" --sink-results "$results" \
    --sink-control "$control" --device cpu --threads 1 --log-level warn &
  local worker=$!
  _bench_pids+=("$sink" "$vent" "$worker")
  local client=("$BIN/taskfarm" --server "$submit" --timeout 30)
  "${client[@]}" submit "$BENCH_TMP/tiny.json" --wait -q  # warm: everyone connected
  local t0 t1 t2 t3
  t0=$(now_ns)
  "${client[@]}" submit "$BENCH_TMP/tiny.json" --wait -q
  t1=$(now_ns)
  kill -9 "$sink"
  wait "$sink" 2>/dev/null || true
  sleep "$(awk -v d="$DOWN" -v r="$RANDOM" 'BEGIN { printf "%.2f", d + 6 * r / 32768 }')"
  t2=$(now_ns)
  "$BIN/taskfarm-sink" "${sink_args[@]}" &
  sink=$!
  _bench_pids+=("$sink")
  "${client[@]}" submit "$BENCH_TMP/tiny.json" --wait -q
  t3=$(now_ns)
  kill "$sink" "$vent" "$worker" 2>/dev/null || true
  wait "$sink" "$vent" "$worker" 2>/dev/null || true
  echo "$(secs "$t0" "$t1") $(secs "$t2" "$t3")"
}

declare -A steady restart
for r in $(seq 1 "$REPEAT"); do
  for cap in 1000 5000; do
    read -r s t < <(one_run "$cap")
    steady[$cap]+="$s "
    restart[$cap]+="$t "
    printf '  run %d, reconnect cap %4d ms: job on a running farm %s s, after a sink restart %s s\n' \
      "$r" "$cap" "$s" "$t"
  done
done
med() { tr ' ' '\n' <<<"$1" | grep -v '^$' | median; }
top() { tr ' ' '\n' <<<"$1" | grep -v '^$' | maxof; }
echo
printf '%-40s %10s %10s\n' "$REPEAT runs, sink down ${DOWN}-$((DOWN + 6)) s" "cap 1 s" "cap 5 s"
printf '%-40s %10s %10s\n' "10-task job, running farm: median (s)" "$(med "${steady[1000]}")" "$(med "${steady[5000]}")"
printf '%-40s %10s %10s\n' "sink start -> job done: median (s)" "$(med "${restart[1000]}")" "$(med "${restart[5000]}")"
printf '%-40s %10s %10s\n' "sink start -> job done: max (s)" "$(top "${restart[1000]}")" "$(top "${restart[5000]}")"
