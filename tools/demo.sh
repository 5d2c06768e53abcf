#!/usr/bin/env bash
# The main job: the end-to-end demo. The cloud node and two robots run from the installed YAML in one process
# (`edgesync run`, no launch system needed): each robot's camera is a packaged street video with the shipped
# detector as its upstream region source; robot2's stream is darkened (drift). Both classify every frame, upload
# their best samples (Algorithm 1), the cloud labels them with the teacher, schedules by urgency (Eq. 4), retrains
# heads (Algorithm 2) and sends them back; the robots apply them in place. A summary table ends the run.
set -eo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# shellcheck disable=SC1091
source env.sh
export ROS_AUTOMATIC_DISCOVERY_RANGE=${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}
export ROS_LOG_DIR="${ROS_LOG_DIR:-$ROOT/log/ros}"
echo "demo: interface smoke run (every message and service over DDS)"
edgesync smoke
echo
echo "demo: cloud + 2 robots for ${EDGESYNC_DEMO_SECONDS:-90} s (robot2 darkened)"
edgesync run --robots 2 --duration "${EDGESYNC_DEMO_SECONDS:-90}" --expect-updates \
  --set robot2/video_source.video=vtest --set robot2/video_source.brightness=0.4 "$@"
