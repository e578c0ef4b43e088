#!/usr/bin/env bash
# Installs missing dependencies, builds, and runs the whole test suite with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
werror=OFF
[ "${CI:-}" = "true" ] && werror=ON
scripts/build.sh -DTASKFARM_BUILD_TESTS=ON -DTASKFARM_WERROR="$werror" "$@"
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 300 -j2
