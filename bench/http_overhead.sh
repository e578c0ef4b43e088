#!/usr/bin/env bash
# Issue 16 benchmark: what the dashboard costs the farm. The same no-op batch with the
# ventilator's HTTP service on (a snapshot every 250 ms, a client polling /api/state and
# /metrics twice a second, as an open dashboard and a Prometheus do) and off, interleaved; the
# ratio of the medians. The sink publishes its statistics in both runs (they are always on).
#
#   bench/http_overhead.sh [--tasks N] [--repeat R]
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
TASKS=1000000 REPEAT=5
while [ $# -gt 0 ]; do
  case $1 in
    --tasks) TASKS=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    -h|--help) sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 1 ;;
  esac
done
bench_build taskfarm-sink taskfarm-worker taskfarm-ventilator
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }

poll_dashboard() {  # polls the dashboard on port $1 twice a second until it goes away
  local port=$1 up=0
  for _ in $(seq 1 500); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && { up=1; break; }
    sleep 0.01
  done
  [ "$up" = 1 ] || return 0
  while curl -sf -o /dev/null "http://127.0.0.1:$port/api/state" &&
        curl -sf -o /dev/null "http://127.0.0.1:$port/metrics"; do sleep 0.5; done
}
http_port=$((${TASKFARM_PORT_BASE:-7100} + 90))

on=() off=()
for r in $(seq 1 "$REPEAT"); do
  for mode in off on; do
    args=(--kernel noop --tasks "$TASKS" --size 0)
    if [ "$mode" = on ]; then
      port_free "$http_port" || { echo "port $http_port in use (TASKFARM_PORT_BASE)" >&2; exit 1; }
      args+=(--http "$http_port")
      poll_dashboard "$http_port" &
    fi
    run_farm "$mode$r" 2 "${args[@]}"
    rate=$(json_num "$BENCH_TMP/$mode$r.json" tasks_per_s)
    echo "run $r http $mode: $rate tasks/s" >&2
    if [ "$mode" = on ]; then on+=("$rate"); else off+=("$rate"); fi
  done
done
wait
m_off=$(printf '%s\n' "${off[@]}" | median)
m_on=$(printf '%s\n' "${on[@]}" | median)
printf '%-28s %12s\n' "no-op tasks/s, http off" "$m_off" "no-op tasks/s, http on" "$m_on"
awk -v a="$m_on" -v b="$m_off" 'BEGIN { printf "%-28s %12.3f\n", "ratio on/off", a / b }'
