#!/usr/bin/env bash
# The main job: the end-to-end demo on the embedded default stream.
# Until the nodes land (issue "ROS 2 nodes"), it is the interface smoke run: the installed smoke_node process and a
# driver exchange every edgesync_ros message and call every service over real DDS.
set -eo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck disable=SC1091
source env.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export ROS_LOG_DIR="${ROS_LOG_DIR:-$ROOT/log/ros}"
edgesync smoke "$@"
