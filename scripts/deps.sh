#!/usr/bin/env bash
# Installs the Debian packages taskfarm needs, only those that are missing.
# --test: also what the test suite drives (pytest, a Prometheus server, headless Chromium).
# --bench: also what the benchmarks compare with (GNU parallel, GNU time).
set -euo pipefail
packages=(build-essential cmake ninja-build pkg-config libzmq3-dev cppzmq-dev libprotobuf-dev
          protobuf-compiler libfmt-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev
          python3-zmq python3-protobuf zlib1g-dev iproute2 libnetfilter-queue-dev
          libcpp-httplib-dev libjs-chart.js nlohmann-json3-dev python3-venv python3-pip
          libsqlite3-dev)
for arg in "$@"; do
  case $arg in
    --test) packages+=(python3-pytest python3-selenium prometheus chromium chromium-driver) ;;
    --bench) packages+=(parallel time) ;;
    *) echo "deps.sh: unknown argument $arg (--test, --bench)" >&2; exit 1 ;;
  esac
done
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
