#!/usr/bin/env bash
# Mixed pools against their ideal split: see bench/hetero.py (--gpu on a GPU node).
set -euo pipefail
command -v python3 >/dev/null || { echo "hetero.sh: needs python3" >&2; exit 1; }
exec python3 "$(dirname "$0")/hetero.py" "$@"
