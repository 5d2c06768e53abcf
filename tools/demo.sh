#!/usr/bin/env bash
# The main job: the end-to-end demo on the embedded default stream.
#  1. interface smoke run: every edgesync_ros message and service over real DDS;
#  2. live evaluation: the default drifting street stream (built from packaged video into a rosbag2 on first use,
#     then cached) is replayed through the real edge nodes (one per camera) and the cloud node in one process;
#     an evaluator node scores every prediction against the bag's ground truth and counts upload/download bytes.
# EDGESYNC_DEMO_STREAM_SECONDS (default 240) sets how much stream time is replayed (at 2x speed).
set -eo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck disable=SC1091
source env.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export ROS_LOG_DIR="${ROS_LOG_DIR:-$ROOT/log/ros}"
mkdir -p "$ROOT/log/demo"
echo "demo 1/2: interface smoke run (every message and service over DDS)"
edgesync smoke
echo
echo "demo 2/2: live run of the default stream through the cloud and edge nodes (evaluated against ground truth)"
edgesync run --bag default --rate 2 --stream-seconds "${EDGESYNC_DEMO_STREAM_SECONDS:-240}" --expect-updates \
  --output "$ROOT/log/demo/live.json" "$@" 2> >(grep -v '^\[INFO\]' >&2)
