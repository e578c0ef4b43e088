# shellcheck shell=bash
# shellcheck disable=SC2034  # FARM_* and LAUNCHED are outputs for the sourcing script
# Shared by bench/run.sh and bench/plot.sh (sourced, not run): build, free ports, one taskfarm
# batch or one bare pipeline run with the max RSS of every process, JSON field extraction.
# Needs bash, coreutils, awk, sed; /usr/bin/time (GNU time) when present, else /proc polling.

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
BUILD_DIR=${BUILD_DIR:-build}
case $BUILD_DIR in /*) ;; *) BUILD_DIR=$ROOT/$BUILD_DIR ;; esac
BIN=$BUILD_DIR/bin
# Figures go here unless a script is told otherwise: untracked (.gitignore), so a run never
# overwrites the committed results by accident.
BENCH_OUT=${BENCH_OUT:-$BENCH_DIR/out}
WORKER_THREADS=${WORKER_THREADS:-1}   # CPU slots per worker
RUN_TIMEOUT=${RUN_TIMEOUT:-300}       # seconds before a stuck run is killed and reported failed
BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/taskfarm-bench.XXXXXX")
_bench_pids=()
FARM_WORKER_ARGS=()
FARM_SINK_ARGS=()
FARM_STATE=0   # 1: the sink and the ventilator keep their journals (--state) in $BENCH_TMP

# require_tools TOOL...: exits 1 at once, naming what is missing, before any work is done.
require_tools() {
  local missing=() t
  for t in "$@"; do command -v "$t" >/dev/null || missing+=("$t"); done
  if ((${#missing[@]})); then
    echo "$(basename "$0"): missing tools: ${missing[*]} (gnuplot: apt install gnuplot-nox;" \
      "the build tools: scripts/deps.sh)" >&2
    exit 1
  fi
}

bench_cleanup() {
  local p
  for p in "${_bench_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${KEEP_TMP:-}" ]; then echo "kept $BENCH_TMP" >&2; else rm -rf "$BENCH_TMP"; fi
}

# Configures (Release) when BUILD_DIR has no cache yet, then builds what the benchmarks run.
bench_build() {
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    local gen=()
    command -v ninja >/dev/null && gen=(-G Ninja)
    cmake -S "$ROOT" -B "$BUILD_DIR" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release >"$BENCH_TMP/configure.log" 2>&1 ||
      { cat "$BENCH_TMP/configure.log" >&2; return 1; }
  fi
  local type
  type=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$BUILD_DIR/CMakeCache.txt")
  [ "$type" = Release ] || echo "warning: $BUILD_DIR is a '$type' build, not Release" >&2
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target taskfarm-sink taskfarm-worker \
    taskfarm-ventilator bare_pipeline >"$BENCH_TMP/build.log" 2>&1 ||
    { tail -n 40 "$BENCH_TMP/build.log" >&2; return 1; }
  # micro_bench exists only when Google Benchmark was found.
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target micro_bench >>"$BENCH_TMP/build.log" 2>&1 || true
}

# True when nothing listens on 127.0.0.1:$1.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Sets PORT_BASE to a base with three free consecutive ports (tasks, results, control), away
# from taskfarm's defaults (5557-5560) so a farm running on this machine is left alone, and
# below the kernel's ephemeral range, where outgoing connections of earlier runs take ports
# that a connect() probe cannot see.
pick_ports() {
  local base low
  low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
  for _ in $(seq 1 50); do
    base=$((20000 + (RANDOM % (low - 20003))))
    if port_free "$base" && port_free $((base + 1)) && port_free $((base + 2)); then
      PORT_BASE=$base
      return 0
    fi
  done
  echo "no free ports found" >&2
  return 1
}

# launch NAME CMD...: starts CMD in the background under a time limit, recording its max RSS
# (KB) and CPU seconds (user, system) in $BENCH_TMP/NAME.rss as "KB USER SYS". Sets LAUNCHED to
# the pid to wait for.
launch() {
  local name=$1
  shift
  rm -f "$BENCH_TMP/$name.rss"
  if [ -x /usr/bin/time ]; then
    timeout "$RUN_TIMEOUT" /usr/bin/time -f '%M %U %S' -o "$BENCH_TMP/$name.rss" "$@" &
    LAUNCHED=$!
  else  # poll the high-water mark and CPU times until the process is gone
    "$@" &
    LAUNCHED=$!
    local pid=$LAUNCHED
    (
      tck=$(getconf CLK_TCK)
      while kill -0 "$pid" 2>/dev/null; do
        v=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null)
        t=$(awk -v t="$tck" '{ printf "%.2f %.2f", $14 / t, $15 / t }' "/proc/$pid/stat" 2>/dev/null)
        [ -n "$v" ] && [ -n "$t" ] && echo "$v $t" >"$BENCH_TMP/$name.rss"
        sleep 0.05
      done
    ) &
    (sleep "$RUN_TIMEOUT"; kill "$pid" 2>/dev/null) &
    _bench_pids+=($!)
  fi
  _bench_pids+=("$LAUNCHED")
}

# rss_mb NAME: the max RSS recorded for NAME, in MB (1e6 bytes), or "nan".
rss_mb() {
  local kb
  kb=$(grep -E '^[0-9]+ ' "$BENCH_TMP/$1.rss" 2>/dev/null | tail -n 1 | cut -d' ' -f1)
  [ -n "$kb" ] && awk -v k="$kb" 'BEGIN { printf "%.1f\n", k * 1024 / 1e6 }' || echo nan
}

# cpu_s NAME: user + system CPU seconds recorded for NAME, or "nan".
cpu_s() {
  grep -E '^[0-9]+ ' "$BENCH_TMP/$1.rss" 2>/dev/null | tail -n 1 |
    awk '{ printf "%.2f\n", $2 + $3; n++ } END { if (!n) print "nan" }'
}

# json_num FILE KEY: the first numeric value of "KEY" in a one-line JSON file, or "nan".
json_num() {
  local v
  v=$(grep -o "\"$2\":[-0-9.eE+]*" "$1" 2>/dev/null | head -n 1 | cut -d: -f2)
  echo "${v:-nan}"
}

# median of the numbers on stdin (nan when none).
median() {
  sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2];
                   else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# max of the numbers on stdin, ignoring nan.
maxof() { awk '$1 != "nan" { if (!n++ || $1 > m) m = $1 } END { print n ? m : "nan" }'; }

# make_payload_job FILE SIZE COUNT: a job file of COUNT noop tasks with an inline SIZE-byte payload.
make_payload_job() {
  {
    printf '{"name":"noop-payload-%s","tasks":[{"kernel":"noop","count":%s,"payload":"' "$2" "$3"
    head -c "$2" /dev/urandom | base64 -w0
    printf '"}]}\n'
  } >"$1"
}

# run_farm TAG WORKERS VENTILATOR-ARGS... : one batch through a sink, WORKERS workers and a
# ventilator on loopback TCP. Worker and sink flags can be added with FARM_WORKER_ARGS and
# FARM_SINK_ARGS (arrays); with FARM_STATE=1 the sink and the ventilator journal to a fresh
# --state folder each.
# Leaves the sink's report in $BENCH_TMP/TAG.json, RSS files TAG-sink, TAG-ventilator,
# TAG-worker-I; sets FARM_STATUS (0 when every process exited 0), FARM_WALL_S (ventilator) and
# FARM_CPU_S (user + system seconds of all its processes).
run_farm() {
  local tag=$1 workers=$2 i
  FARM_STATUS=1 FARM_WALL_S=nan FARM_CPU_S=nan
  shift 2
  pick_ports || return 1
  local tasks=tcp://127.0.0.1:$PORT_BASE results=tcp://127.0.0.1:$((PORT_BASE + 1))
  local control=tcp://127.0.0.1:$((PORT_BASE + 2))
  rm -f "$BENCH_TMP/$tag.json"
  local sink_state=() vent_state=()
  if [ "$FARM_STATE" = 1 ]; then
    rm -rf "$BENCH_TMP/$tag-state"
    sink_state=(--state "$BENCH_TMP/$tag-state/sink") vent_state=(--state "$BENCH_TMP/$tag-state/ventilator")
  fi
  launch "$tag-sink" "$BIN/taskfarm-sink" --bind "$results" --control "$control" \
    --report "$BENCH_TMP/$tag.json" -q --log-level warn "${sink_state[@]}" "${FARM_SINK_ARGS[@]}"
  local sink=$LAUNCHED wpids=()
  for i in $(seq 1 "$workers"); do
    launch "$tag-worker-$i" "$BIN/taskfarm-worker" --ventilator "$tasks" --sink-results "$results" \
      --sink-control "$control" --threads "$WORKER_THREADS" --device cpu --id "bench-w$i" \
      --log-level warn "${FARM_WORKER_ARGS[@]}"
    wpids+=("$LAUNCHED")
  done
  local t0 t1 st=0
  t0=$(date +%s%N)
  launch "$tag-ventilator" "$BIN/taskfarm-ventilator" --bind "$tasks" --sink-results "$results" \
    --sink-control "$control" --log-level warn "${vent_state[@]}" "$@"
  wait "$LAUNCHED" || st=$?
  t1=$(date +%s%N)
  FARM_WALL_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
  wait "$sink" || st=$((st ? st : $?))
  for i in "${wpids[@]}"; do wait "$i" || st=$((st ? st : $?)); done
  FARM_STATUS=$st
  FARM_CPU_S=$( { cpu_s "$tag-sink"; cpu_s "$tag-ventilator"
                  for i in $(seq 1 "$workers"); do cpu_s "$tag-worker-$i"; done; } |
                awk '$1 == "nan" { bad = 1 } { t += $1 } END { if (bad) print "nan"; else printf "%.2f", t }')
  [ "$st" -eq 0 ] || echo "  run $tag: a process exited with status $st" >&2
}

# run_bare TAG ARGS...: one bare_pipeline run; its JSON line goes to $BENCH_TMP/TAG.json.
run_bare() {
  local tag=$1
  shift
  timeout "$RUN_TIMEOUT" "$BIN/bare_pipeline" "$@" >"$BENCH_TMP/$tag.json" ||
    { echo "  bare_pipeline $* failed" >&2; echo '{}' >"$BENCH_TMP/$tag.json"; }
}
