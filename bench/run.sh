#!/usr/bin/env bash
# Issue #8 benchmark: taskfarm end to end against a bare libzmq pipeline, in one run, on this
# machine, over loopback TCP. Builds what it needs (Release) into $BUILD_DIR (default build/),
# prints one table with both figures, the ratios and PASS/FAIL against the targets, and writes
# the same rows to bench/out/results.csv (untracked; bench/results.csv is the committed copy:
# --csv bench/results.csv to update it). Exit status 1 when a row is FAIL or a run failed.
#
#   bench/run.sh [--tasks N] [--repeat R] [--payload-tasks M] [--micro] [--csv FILE]
#
#   --tasks N          no-op tasks (and bare messages) in the throughput run (default 1000000;
#                      --tasks 10000000 checks the 10-million-task memory bound)
#   --repeat R         throughput runs of each side, interleaved; the median is reported (5)
#   --payload-tasks M  1 MiB inline-payload tasks (and bare 1 MiB messages) per run (1000)
#   --micro            also run the Google Benchmark micro-benchmarks (bench/micro_bench)
#   --csv FILE         where to write the rows (default bench/out/results.csv)
#
# Environment: BUILD_DIR, WORKER_THREADS (CPU slots per worker, 1), RUN_TIMEOUT (s per process,
# 300), PAYLOAD_WORKER_ARGS (extra worker flags for the payload run, default none:
# see bench/RESULTS.md for why).
set -euo pipefail
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/lib.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

TASKS=1000000 REPEAT=5 PAYLOAD_TASKS=1000 MICRO=0 CSV=$BENCH_OUT/results.csv
while [ $# -gt 0 ]; do
  case $1 in
    --tasks) TASKS=$2; shift 2 ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --payload-tasks) PAYLOAD_TASKS=$2; shift 2 ;;
    --micro) MICRO=1; shift ;;
    --csv) CSV=$2; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 1 ;;
  esac
done
require_tools cmake awk sed timeout
mkdir -p "$(dirname "$CSV")"
WORKERS=2 RELAYS=2
NOOP_BYTES=48                # bare message size standing for one no-op task (~ its protobuf size)
PAYLOAD_BYTES=$((1 << 20))
LAT_TASKS=2000
read -r -a PAYLOAD_WORKER_ARGS <<<"${PAYLOAD_WORKER_ARGS-}"

echo "building ($BUILD_DIR) ..."
bench_build
commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
git -C "$ROOT" diff --quiet HEAD 2>/dev/null || commit="$commit+dirty"
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
echo "machine: $(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); commit $commit; $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "load average before the runs: $(cut -d' ' -f1-3 /proc/loadavg)"
busy=$(ps -eo pcpu=,comm= --sort=-pcpu | awk '$1 > 20 { printf "%s (%s%%) ", $2, $1 }')
[ -z "$busy" ] || echo "warning: other processes are using the CPU: ${busy}- figures will be lower and noisier"

# ---------------------------------------------------------------- no-op throughput + memory
echo "no-op throughput: $TASKS tasks, $WORKERS workers x $WORKER_THREADS thread(s) vs bare $RELAYS relays x $NOOP_BYTES B, $REPEAT runs each"
tf_rates=() bare_rates=() tf_cpu=() bare_cpu=() tf_ok=1 st_rates=() st_cpu=() st_ok=1
for r in $(seq 1 "$REPEAT"); do
  run_bare "bare-noop-$r" --messages "$TASKS" --size "$NOOP_BYTES" --relays "$RELAYS"
  bare_rates+=("$(json_num "$BENCH_TMP/bare-noop-$r.json" msgs_per_s)")
  bare_cpu+=("$(json_num "$BENCH_TMP/bare-noop-$r.json" cpu_s)")
  run_farm "tf-noop-$r" "$WORKERS" --kernel noop --tasks "$TASKS" || true
  f=$BENCH_TMP/tf-noop-$r.json
  [ "$FARM_STATUS" -eq 0 ] && [ "$(json_num "$f" tasks_ok)" = "$TASKS" ] || tf_ok=0
  tf_rates+=("$(json_num "$f" tasks_per_s)")
  tf_cpu+=("$FARM_CPU_S")
  printf '  run %d: bare %10.0f msgs/s, %6s CPU s   taskfarm %10.0f tasks/s (sink), %6s CPU s, ventilator wall %s s\n' \
    "$r" "${bare_rates[-1]}" "${bare_cpu[-1]}" "${tf_rates[-1]}" "$FARM_CPU_S" "$FARM_WALL_S"
  # The same batch with the journals of a durable head node (--state on sink and ventilator).
  FARM_STATE=1 run_farm "st-noop-$r" "$WORKERS" --kernel noop --tasks "$TASKS" || true
  f=$BENCH_TMP/st-noop-$r.json
  [ "$FARM_STATUS" -eq 0 ] && [ "$(json_num "$f" tasks_ok)" = "$TASKS" ] || st_ok=0
  st_rates+=("$(json_num "$f" tasks_per_s)")
  st_cpu+=("$FARM_CPU_S")
  printf '         with --state: taskfarm %10.0f tasks/s (sink), %6s CPU s, ventilator wall %s s\n' \
    "${st_rates[-1]}" "$FARM_CPU_S" "$FARM_WALL_S"
done
st_rate=$(printf '%s\n' "${st_rates[@]}" | median)
st_us=$(printf '%s\n' "${st_cpu[@]}" | median | awk -v n="$TASKS" '{ print $1 == "nan" ? "nan" : $1 / n * 1e6 }')
# CPU microseconds per task over all processes: robust to other load on the machine.
tf_us=$(printf '%s\n' "${tf_cpu[@]}" | median | awk -v n="$TASKS" '{ print $1 == "nan" ? "nan" : $1 / n * 1e6 }')
bare_us=$(printf '%s\n' "${bare_cpu[@]}" | median | awk -v n="$TASKS" '{ print $1 == "nan" ? "nan" : $1 / n * 1e6 }')
tf_rate=$(printf '%s\n' "${tf_rates[@]}" | median)
bare_rate=$(printf '%s\n' "${bare_rates[@]}" | median)
proc_rss() {  # proc_rss PREFIX ROLE: max over the repeats
  for r in $(seq 1 "$REPEAT"); do rss_mb "$1-$r-$2"; done | maxof
}
rss_vent=$(proc_rss tf-noop ventilator) rss_sink=$(proc_rss tf-noop sink)
rss_w1=$(proc_rss tf-noop worker-1) rss_w2=$(proc_rss tf-noop worker-2)
bare_rss=$(for r in $(seq 1 "$REPEAT"); do
  sed -n 's/.*"rss_kb":{\(.*\)}}/\1/p' "$BENCH_TMP/bare-noop-$r.json" | tr -c '0-9\n' ' ' | tr ' ' '\n'
done | grep -E '^[0-9]+$' | maxof)
bare_rss_mb=$(awk -v k="$bare_rss" 'BEGIN { if (k == "nan") print "nan"; else printf "%.1f", k * 1024 / 1e6 }')

# ---------------------------------------------------------------- latency at low load
echo "latency: $LAT_TASKS no-op tasks, one at a time (--window 1)"
run_farm tf-lat "$WORKERS" --kernel noop --tasks "$LAT_TASKS" --window 1 || true
lat_ok=$([ "$FARM_STATUS" -eq 0 ] && [ "$(json_num "$BENCH_TMP/tf-lat.json" tasks_ok)" = "$LAT_TASKS" ] && echo 1 || echo 0)
lat_p50=$(json_num "$BENCH_TMP/tf-lat.json" p50)
lat_p99=$(json_num "$BENCH_TMP/tf-lat.json" p99)

# ---------------------------------------------------------------- 1 MiB payloads
echo "payload: $PAYLOAD_TASKS tasks of 1 MiB inline payload (worker flags: ${PAYLOAD_WORKER_ARGS[*]:-none}) vs bare 1 MiB messages, $REPEAT runs each"
job=$BENCH_TMP/payload-1MiB.json
make_payload_job "$job" "$PAYLOAD_BYTES" "$PAYLOAD_TASKS"
tf_mbs=() bare_mbs=() bare_zc_mbs=() pay_ok=1
FARM_WORKER_ARGS=("${PAYLOAD_WORKER_ARGS[@]}")
for r in $(seq 1 "$REPEAT"); do
  run_bare "bare-pay-$r" --messages "$PAYLOAD_TASKS" --size "$PAYLOAD_BYTES" --relays "$RELAYS"
  bare_mbs+=("$(json_num "$BENCH_TMP/bare-pay-$r.json" mb_per_s)")
  run_bare "bare-payzc-$r" --messages "$PAYLOAD_TASKS" --size "$PAYLOAD_BYTES" --relays "$RELAYS" --zero-copy
  bare_zc_mbs+=("$(json_num "$BENCH_TMP/bare-payzc-$r.json" mb_per_s)")
  run_farm "tf-pay-$r" "$WORKERS" --job "$job" || true
  f=$BENCH_TMP/tf-pay-$r.json
  [ "$FARM_STATUS" -eq 0 ] && [ "$(json_num "$f" tasks_ok)" = "$PAYLOAD_TASKS" ] || pay_ok=0
  tf_mbs+=("$(json_num "$f" mb_per_s)")
  printf '  run %d: bare %8.1f MB/s (zero-copy %8.1f)   taskfarm %8.1f MB/s\n' \
    "$r" "${bare_mbs[-1]}" "${bare_zc_mbs[-1]}" "${tf_mbs[-1]}"
done
FARM_WORKER_ARGS=()
tf_mb=$(printf '%s\n' "${tf_mbs[@]}" | median)
bare_mb=$(printf '%s\n' "${bare_mbs[@]}" | median)
bare_zc_mb=$(printf '%s\n' "${bare_zc_mbs[@]}" | median)
pay_rss=$(for x in ventilator sink worker-1 worker-2; do proc_rss tf-pay "$x"; done | maxof)

# ---------------------------------------------------------------- table + CSV
rows=()
# row METRIC TASKFARM BARE RATIO TARGET RESULT
row() { rows+=("$(printf '%s|%s|%s|%s|%s|%s' "$@")"); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan" || b == 0) print "nan"; else printf "%.2f", a / b }'; }
atleast() { awk -v a="$1" -v b="$2" -v ok="$3" 'BEGIN { print (ok && a != "nan" && a + 0 >= b) ? "PASS" : "FAIL" }'; }
below() { awk -v a="$1" -v b="$2" -v ok="${3:-1}" 'BEGIN { print (ok && a != "nan" && a + 0 < b) ? "PASS" : "FAIL" }'; }
fmt() { awk -v a="$1" -v d="${2:-0}" 'BEGIN { if (a == "nan") print "n/a"; else printf "%.*f", d, a }'; }

n_h=$(awk -v n="$TASKS" 'BEGIN { if (n % 1000000 == 0) printf "%dM", n / 1e6; else print n }')
q=$(ratio "$tf_rate" "$bare_rate")
row "no-op msgs/s, $n_h tasks, 2 workers" "$(fmt "$tf_rate")" "$(fmt "$bare_rate")" "$q" ">= 0.50x" "$(atleast "$q" 0.5 "$tf_ok")"
row "CPU us per no-op task, all processes" "$(fmt "$tf_us" 2)" "$(fmt "$bare_us" 2)" "$(ratio "$tf_us" "$bare_us")" "info" "info"
# Durable head node (issue 14): journals on, against taskfarm without them in the same run.
q=$(ratio "$st_rate" "$tf_rate")
row "no-op tasks/s with --state vs without" "$(fmt "$st_rate")" "$(fmt "$tf_rate")" "$q" ">= 0.90x" "$(atleast "$q" 0.9 "$((tf_ok && st_ok))")"
row "CPU us per no-op task with --state vs without" "$(fmt "$st_us" 2)" "$(fmt "$tf_us" 2)" "$(ratio "$st_us" "$tf_us")" "info" "info"
row "max RSS ventilator (MB), $n_h" "$rss_vent" "$bare_rss_mb" "" "< 100" "$(below "$rss_vent" 100 "$tf_ok")"
row "max RSS worker 1 (MB), $n_h" "$rss_w1" "" "" "< 100" "$(below "$rss_w1" 100 "$tf_ok")"
row "max RSS worker 2 (MB), $n_h" "$rss_w2" "" "" "< 100" "$(below "$rss_w2" 100 "$tf_ok")"
row "max RSS sink (MB), $n_h" "$rss_sink" "" "" "< 100" "$(below "$rss_sink" 100 "$tf_ok")"
row "latency p50 (us), window 1" "$(fmt "$lat_p50")" "" "" "info" "$([ "$lat_ok" = 1 ] && echo info || echo FAIL)"
row "latency p99 (us), window 1" "$(fmt "$lat_p99")" "" "" "< 500" "$(below "$lat_p99" 500 "$lat_ok")"
q=$(ratio "$tf_mb" "$bare_mb")
row "1 MiB payload MB/s" "$(fmt "$tf_mb" 1)" "$(fmt "$bare_mb" 1)" "$q" ">= 0.70x" "$(atleast "$q" 0.7 "$pay_ok")"
row "1 MiB payload MB/s vs bare zero-copy" "$(fmt "$tf_mb" 1)" "$(fmt "$bare_zc_mb" 1)" "$(ratio "$tf_mb" "$bare_zc_mb")" "info" "info"
row "max RSS any process (MB), payload run" "$pay_rss" "" "" "info" "info"

echo
printf '%-42s %14s %14s %7s %9s %6s\n' metric taskfarm "bare libzmq" ratio target result
printf '%.0s-' $(seq 1 97); echo
for line in "${rows[@]}"; do
  IFS='|' read -r m a b c t s <<<"$line"
  printf '%-42s %14s %14s %7s %9s %6s\n' "$m" "$a" "$b" "$c" "$t" "$s"
done
echo "(msgs/s: taskfarm tasks/s from the sink report, first send -> last receive; bare: first send ->"
echo " last receive, $NOOP_BYTES-byte messages; medians of $REPEAT runs; MB = 1e6 bytes)"

{
  echo "date,commit,cores,metric,taskfarm,bare,ratio,target,result"
  for line in "${rows[@]}"; do
    IFS='|' read -r m a b c t s <<<"$line"
    printf '%s,%s,%s,"%s",%s,%s,%s,"%s",%s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$commit" "$(nproc)" "$m" "$a" "$b" "$c" "$t" "$s"
  done
} >"$CSV"
echo "rows written to $CSV"
failed=()
for line in "${rows[@]}"; do
  IFS='|' read -r m _ _ _ _ s <<<"$line"
  if [ "$s" = FAIL ]; then failed+=("$m"); fi
done

if [ "$MICRO" = 1 ]; then
  if [ -x "$BIN/micro_bench" ]; then
    echo
    "$BIN/micro_bench" --benchmark_counters_tabular=true
  else
    echo "micro_bench was not built (Google Benchmark not found)" >&2
  fi
fi
if ((${#failed[@]})); then
  printf 'FAIL: %s\n' "${failed[@]}" >&2
  exit 1
fi
