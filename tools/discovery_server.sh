#!/usr/bin/env bash
# Run the Fast DDS Discovery Server through which the cloud and robots on other networks find each other
# (docs/fleet.md, "Robots beyond one LAN"). It runs in the foreground until Ctrl-C.
#
#   tools/discovery_server.sh [PORT] [ADDRESS] [SERVER_ID]
#
# PORT (UDP) defaults to 11888, ADDRESS to 0.0.0.0 (every interface), SERVER_ID to 0 (a second, redundant server
# takes 1 and comes second in ROS_DISCOVERY_SERVER). Participants then use ROS_DISCOVERY_SERVER=<host>:<PORT>.
# On a ROS distro this is plain `fastdds discovery -i SERVER_ID -l ADDRESS -p PORT`; in the pip venv (env.sh) the
# wheel's server binary finds its libraries only through the two directories added to LD_LIBRARY_PATH below, and
# the `fastdds` front-end needs psutil (tools/requirements.txt).
set -euo pipefail
port=${1:-11888}
address=${2:-0.0.0.0}
server_id=${3:-0}
if ! command -v fastdds >/dev/null 2>&1; then
  echo "discovery_server.sh: no fastdds on PATH: source env.sh (ros-fastdds wheel) or your ROS distro's setup.bash" >&2
  exit 127
fi
if [ -n "${VIRTUAL_ENV:-}" ]; then
  for libs in "$VIRTUAL_ENV"/lib/python3*/site-packages/ros_fastdds.libs; do
    [ -d "$libs" ] && LD_LIBRARY_PATH="$VIRTUAL_ENV/lib:$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  done
  export LD_LIBRARY_PATH
fi
exec fastdds discovery -i "$server_id" -l "$address" -p "$port"
