#!/usr/bin/env bash
# Run the whole test suite (unit, ROS integration over real DDS, lint) against the colcon install.
# Extra arguments go to pytest, e.g. ./tools/test.sh -k codec
set -eo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck disable=SC1091
source env.sh
set -u
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_LOG_DIR="${ROS_LOG_DIR:-$(mktemp -d)}"
# A ROS domain of this run's own (1..100), so two runs on one machine cannot hear each other.
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 100) + 1 ))}"
set +e
python -m pytest "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "test.sh: pytest collected no tests: treating that as a failure" >&2
  exit 1
fi
exit "$rc"
