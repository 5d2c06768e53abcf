# Enter the edgesync_ros environment in a shell:   source env.sh
# Activates .venv/ (ROS 2 Kilted wheels, torch, ...) and sources the colcon install/ so that `import edgesync_ros.msg`,
# `edgesync ...` and the installed node executables work. Run ./tools/setup.sh (or `make demo`) first.
_edgesync_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)"
if [ ! -f "$_edgesync_root/.venv/bin/activate" ] || [ ! -f "$_edgesync_root/install/setup.bash" ]; then
  echo "env.sh: no environment yet: run $_edgesync_root/tools/setup.sh first" >&2
  return 1 2>/dev/null || exit 1
fi
# shellcheck disable=SC1091
. "$_edgesync_root/.venv/bin/activate"
export AMENT_PREFIX_PATH="$_edgesync_root/.venv${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$_edgesync_root/.venv${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
# colcon's setup script reads unset variables (COLCON_TRACE): it fails under `set -u`.
case $- in *u*) _edgesync_u=1; set +u ;; *) _edgesync_u=0 ;; esac
# shellcheck disable=SC1091
. "$_edgesync_root/install/setup.bash"
[ "$_edgesync_u" = 1 ] && set -u
export PATH="$_edgesync_root/install/bin:$PATH"
unset _edgesync_root _edgesync_u
