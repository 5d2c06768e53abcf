#!/usr/bin/env bash
# Run every benchmark in bench/ (bench_*.py), each writing bench/results/<name>.json, then regenerate
# the benchmark table of docs/performance.md from those files. A subset: ./tools/bench.sh bench_core.py
set -eo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck disable=SC1091
source env.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST ROS_LOG_DIR="${ROS_LOG_DIR:-$(mktemp -d)}"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 100) + 1 ))}"
scripts=("$@")
[ ${#scripts[@]} -gt 0 ] || mapfile -t scripts < <(cd bench && ls bench_*.py)
failed=0
for s in "${scripts[@]}"; do
  echo "bench: $s"
  python "bench/$(basename "$s")" || { echo "bench: $s failed" >&2; failed=1; }
done
python tools/bench_table.py --update docs/performance.md
exit "$failed"
